"""``gcode replay | plot | watch``.

Each ``add_*_arguments(parser)`` fills a subparser; each ``cmd_*(args)`` returns an exit code
and raises ValueError for user errors (:mod:`gcode.cli.main` prints those as ``gcode: error:
...``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import TextIO

from ..telemetry.messages import round_to_dict, to_dict
from ..telemetry.monitor_client import GIVE_UP_AFTER_S
from ..telemetry.runlog import read_run_log
from ..terminal import escape, escape_lines, one_line
from . import types

TOKEN_ENV = "GCODE_MONITOR_TOKEN"


def _add_log_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("log", metavar="LOG",
                   help="run log: PREFIX.pb, PREFIX.jsonl, or PREFIX (tries .pb, then .jsonl)")
    p.add_argument("--allow-truncated", action="store_true",
                   help="accept a log whose last entry is incomplete (a crashed run)")


# ---- replay --------------------------------------------------------------------------------
def add_replay_arguments(p: argparse.ArgumentParser) -> None:
    _add_log_arg(p)
    p.add_argument("--rounds", action="store_true", help="also print one line per round")
    p.add_argument("--json", action="store_true",
                   help="print {config, summary} as one JSON object instead of the table")


def cmd_replay(args) -> int:
    from ..telemetry.messages import summary_from_rounds
    from ..telemetry.report import round_lines, summary_table
    cfg, rounds, summary = read_run_log(args.log, allow_truncated=args.allow_truncated)
    if args.json:
        cfg_dict = to_dict(cfg)
        cfg_dict.get("trace", {}).pop("times", None)  # bytes: not for terminals
        out = {"config": cfg_dict, "finished": summary is not None,
               "summary": to_dict(summary if summary is not None else summary_from_rounds(rounds))}
        if args.rounds:
            out["rounds"] = [round_to_dict(r) for r in rounds]
        print(json.dumps(out))
        return 0
    print(f"run log {escape(args.log)}")
    print(escape_lines(summary_table(cfg, rounds, summary)))
    if args.rounds:
        print()
        print(round_lines(rounds))
    return 0


# ---- plot ----------------------------------------------------------------------------------
def add_plot_arguments(p: argparse.ArgumentParser) -> None:
    _add_log_arg(p)
    p.add_argument("--out", metavar="DIR", default="results",
                   help="directory for the PNG files (default ./results, as gcode bench)")
    p.add_argument("--stem", help="file name stem (default: the log's name without suffix)")


def cmd_plot(args) -> int:
    from ..paths import output_dir_problem
    from ..telemetry.plots import plot_run
    problem = output_dir_problem(args.out)
    if problem is not None:
        raise ValueError(f"--out: {problem}")
    cfg, rounds, _ = read_run_log(args.log, allow_truncated=args.allow_truncated)
    stem = args.stem or Path(args.log).name.removesuffix(".pb").removesuffix(".jsonl")
    written, notes = plot_run(cfg, rounds, args.out, stem=stem)
    for path in written:
        print(escape(path))
    for note in notes:
        print(f"note: {escape(note)}", file=sys.stderr)
    return 0


# ---- watch ---------------------------------------------------------------------------------
def add_watch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("address", metavar="HOST:PORT", help="the run's monitor (gcode train --monitor)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON line per RoundRecord; exit when the run ends")
    p.add_argument("--token", default=None,
                   help=f"bearer token for a non-loopback monitor (default: ${TOKEN_ENV}; "
                        "prefer the variable, a flag shows up in process listings)")
    p.add_argument("--from-round", type=types.count, default=0, metavar="R",
                   help="start from round R (default 0: replay the whole run, then follow)")
    p.add_argument("--retries", type=types.count, default=10,
                   help="reconnect attempts in a row before giving up (default 10, backoff "
                        "0.2 s doubling to 5 s; each attempt waits at most 5 s for an answer)")
    p.add_argument("--give-up-after", type=types.positive, default=GIVE_UP_AFTER_S, metavar="SECONDS",
                   help=f"give up after this many seconds of trying to (re)connect, whatever "
                        f"--retries says (default {GIVE_UP_AFTER_S:g}): against an address where "
                        f"nothing or something silent listens, gcode watch exits with status 1 "
                        f"within about this long")
    p.add_argument("--stop", metavar="REASON", nargs="?", const="requested by gcode watch",
                   help="ask the run to stop gracefully, print the reply and exit")


def watch(address: str, *, token: str | None = None, as_json: bool = False,
          from_round: int = 0, retries: int = 10, out: TextIO | None = None,
          err: TextIO | None = None, backoff_s: float = 0.2,
          give_up_after_s: float = GIVE_UP_AFTER_S) -> int:
    """The body of ``gcode watch``; returns the exit code (0: the run ended, 1: gave up, at
    most about ``give_up_after_s`` + 2 s after the server stopped answering)."""
    import grpc

    from ..telemetry.monitor import MonitorClient, WatchGaveUp
    from ..telemetry.report import watch_line
    out = out or sys.stdout
    err = err or sys.stderr
    if from_round < 0:
        raise ValueError(f"--from-round must be >= 0, got {from_round}")
    if retries < 0:
        raise ValueError(f"--retries must be >= 0, got {retries}")
    if not (math.isfinite(give_up_after_s) and give_up_after_s > 0):
        raise ValueError(f"--give-up-after must be a positive number of seconds, got {give_up_after_s}")
    live = not as_json and out.isatty()
    waits = decoded = 0
    losses: dict[int, float] = {}
    planned = 0

    def on_retry(attempt, exc, delay):
        if live:
            out.write("\n")
        print(f"gcode watch: {escape(address)}: {exc.code().name}; reconnecting in {delay:.1f} s "
              f"(attempt {attempt}/{retries})", file=err, flush=True)

    client = MonitorClient(address, token=token)
    try:
        if not as_json:
            try:
                planned = client.status(timeout=2.0).rounds_planned
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAUTHENTICATED,):
                    raise
        for rec in client.follow(from_round, retries=retries, backoff_s=backoff_s,
                                 give_up_after_s=give_up_after_s, on_retry=on_retry):
            if as_json:
                out.write(json.dumps(round_to_dict(rec)) + "\n")
                out.flush()
                continue
            waits += int(rec.fell_back)
            decoded += len(rec.decoded_jobs)
            losses.update({x.model: x.loss for x in rec.losses})
            line = watch_line(rec, waits=waits, decoded=decoded, planned=planned, losses=losses)
            out.write(f"\r\x1b[2K{line}" if live else line + "\n")
            out.flush()
        if not as_json:
            if live:
                out.write("\n")
            out.write("run finished\n")
            try:
                s = client.status(timeout=2.0)
                if s.HasField("summary"):
                    out.write(f"runtime {s.summary.runtime_s:.4f} s, {s.summary.rounds} rounds, "
                              f"{s.summary.waits} waits, {s.summary.decoded_jobs} jobs decoded"
                              f"{' (stopped early)' if s.summary.stopped else ''}\n")
            except grpc.RpcError:
                pass  # the server may already be gone; the stream ended cleanly anyway
            out.flush()
        return 0
    except WatchGaveUp as exc:
        print(f"gcode watch: {one_line(exc)}", file=err)
        return 1
    except grpc.RpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            raise ValueError(f"{address}: {exc.details()} (--token or ${TOKEN_ENV})") from None
        raise ValueError(f"{address}: {code.name}: {exc.details()}") from None
    finally:
        client.close()


def cmd_watch(args) -> int:
    from ..telemetry.monitor import MonitorClient
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    if args.stop is not None:
        import grpc
        with MonitorClient(args.address, token=token) as client:
            try:
                reply = client.request_stop(args.stop)
            except grpc.RpcError as exc:
                raise ValueError(f"{args.address}: {exc.code().name}: {exc.details()}") from None
        print(("stop accepted: " if reply.accepted else "stop refused: ") + escape(reply.message))
        return 0 if reply.accepted else 1
    return watch(args.address, token=token, as_json=args.json, from_round=args.from_round,
                 retries=args.retries, give_up_after_s=args.give_up_after)


def add_subcommands(sub) -> None:
    """Register ``replay``, ``plot`` and ``watch`` on an argparse subparsers object."""
    for name, add, cmd, text in (
            ("replay", add_replay_arguments, cmd_replay, "re-render a finished run's summary from its log"),
            ("plot", add_plot_arguments, cmd_plot,
             "write PNG plots (timeline, straggler heatmap, loss) of a run log"),
            ("watch", add_watch_arguments, cmd_watch, "follow a live run through its gRPC monitor")):
        p = sub.add_parser(name, help=text, description=text)
        add(p)
        p.set_defaults(func=cmd)
