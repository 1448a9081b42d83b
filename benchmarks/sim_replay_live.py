"""Replay a live `gcode bench versus` row through the simulator, with round dispatch (to check
the simulator against the measurement) and with dispatch at arrival (to predict it).

Each (round, worker) time is the worker's measured compute plus its injected delay, rebuilt
from the bench's seed and base. A cut worker's compute comes from its call's reply when it
gave up for the next round (the log's ``cut_replies``, in runs since they were logged), else
it is taken as the round's median. So an older run whose policy cut on-time workers (slow
ones, whose compute is not known) replays faster than it ran: the table gives that count. The row's
scheme and policy come from its JSON; DDP's wall time is the measured one.

    python benchmarks/sim_replay_live.py RESULT.json ROUNDS.jsonl [RESULT.json ROUNDS.jsonl ...]

With ``--policy NAME[:VALUE]`` (repeatable: ``gap:0.05``, ``earliest``, ``partial:0.2``) it
replays each run under those round-ending policies instead, at ``--dispatch`` (default
arrival): what the same workers' times would have given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gcode.bench.versus import VersusConfig, delay_table, row_sections
from gcode.codes import make_scheme
from gcode.sim import make_policy, simulate


def replayed_trace(result: dict, records: list[dict]) -> np.ndarray:
    """(rounds, workers) seconds: measured compute + the injected delay of the bench's table."""
    c = result["config"]
    cfg = VersusConfig(model=c["model"], workers=c["workers"], jobs=c["jobs"],
                       batch_size=c["batch_size"], seed=c["seed"])
    table, inject = delay_table(cfg, c["jobs"] + 16, c["compute_s_per_worker"])
    if inject["params"] != c["inject"]["params"]:
        raise SystemExit(f"the rebuilt delay table differs from the run's: {inject['params']}")
    trace = np.zeros((len(records), c["workers"]))
    cut = {(reply["round"], reply["worker"]): reply["compute_s"]
           for rec in records for reply in rec.get("cut_replies", [])}
    for rec in records:
        compute = {**{w: s for (r, w), s in cut.items() if r == rec["round"]},
                   **{int(w): s for w, s in rec["compute_s"].items()}}
        typical = float(np.median([float(s) for s in rec["compute_s"].values()]))
        for w in range(c["workers"]):
            trace[rec["round"], w] = compute.get(w, typical) + table[rec["round"], w]
    return trace


#: the one parameter a policy spec NAME:VALUE sets
POLICY_PARAM = {"gap": "gap", "partial": "mu", "paper": "mu", "deadline": "seconds"}


def parse_policy(spec: str) -> tuple[str, dict]:
    """(name, params) of ``NAME[:VALUE]``."""
    name, _, value = spec.partition(":")
    if not value:
        return name, {}
    if name not in POLICY_PARAM:
        raise SystemExit(f"--policy {spec}: {name} takes no value")
    try:
        return name, {POLICY_PARAM[name]: float(value)}
    except ValueError:
        raise SystemExit(f"--policy {spec}: {value!r} is not a number") from None


def _load_run(result_path: Path, rounds_path: Path):
    """(result, its gcode row, the row's scheme and policy sections, the replayed trace, the
    table row's common fields)."""
    result = json.loads(result_path.read_text())
    records = [json.loads(line) for line in rounds_path.read_text().splitlines()]
    ddp = next(r for r in result["rows"] if r["system"] == "ddp")
    row = next(r for r in result["rows"] if r["system"] == "gcode")
    scheme, policy, _ = row_sections(row["row"], result["config"].get("gap"))
    common = {"run": result_path.stem, "row": row["row"], "ddp_s": ddp["wall_s"],
              "measured_s": row["wall_s"]}
    return result, row, scheme, policy, replayed_trace(result, records), common


def _simulated_s(result: dict, row: dict, scheme: dict, policy, trace, dispatch: str) -> float:
    """The row's scheme over ``trace`` under ``policy`` (built afresh: schemes are stateful)."""
    s = make_scheme(scheme["name"], n=result["config"]["workers"], jobs=row["steps"],
                    **{k: v for k, v in scheme.items() if k != "name"})
    return simulate(s, trace, policy, 0.0, dispatch=dispatch).runtime_s


def replay_policies(result_path: Path, rounds_path: Path, specs: list[str],
                    dispatch: str) -> dict:
    """The run's row replayed under each policy of ``specs``: {spec: simulated seconds}."""
    result, row, scheme, _, trace, common = _load_run(result_path, rounds_path)
    out = {**common, "dispatch": dispatch, "sim_s": {}}
    for spec in specs:
        name, params = parse_policy(spec)
        try:
            policy = make_policy(name, **params)
        except ValueError as exc:
            raise SystemExit(f"--policy {spec}: {exc}") from None
        out["sim_s"][spec] = _simulated_s(result, row, scheme, policy, trace, dispatch)
    return out


def replay(result_path: Path, rounds_path: Path) -> dict:
    """The run's row replayed under its own policy, with round dispatch and at arrival."""
    result, row, scheme, policy, trace, common = _load_run(result_path, rounds_path)
    out = {**common, "on_time_cut_live": row.get("on_time_declared")}
    for dispatch in ("round", "arrival"):
        p = make_policy(policy["name"], **{k: v for k, v in policy.items() if k != "name"})
        out[f"sim_{dispatch}_s"] = _simulated_s(result, row, scheme, p, trace, dispatch)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="pairs: RESULT.json ROUNDS.jsonl")
    parser.add_argument("--json", metavar="F", help="also write the rows as JSON")
    parser.add_argument("--policy", action="append", metavar="NAME[:VALUE]",
                        help="replay under this policy instead (repeatable)")
    parser.add_argument("--dispatch", choices=("round", "arrival"), default="arrival",
                        help="dispatch of the --policy replays (default arrival)")
    args = parser.parse_args()
    if len(args.files) % 2:
        parser.error("give RESULT.json ROUNDS.jsonl pairs")
    pairs = list(zip(args.files[::2], args.files[1::2]))
    if args.policy:
        print_policy_table([replay_policies(Path(a), Path(b), args.policy, args.dispatch)
                            for a, b in pairs], args.policy, args.json)
        return
    rows = [replay(Path(a), Path(b)) for a, b in pairs]
    print(replay_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def _cell(seconds: float, ddp: float) -> str:
    return f"{seconds:.1f} ({ddp / seconds:.3f}x)"


def replay_table(rows: list[dict]) -> str:
    """One line per run: measured, then its replay under round dispatch and at arrival
    (seconds and x DDP); the rows ``replay`` returns, as sim_replay_live.json keeps them."""
    lines = [("| run | row | on-time cut (live) | DDP s | measured s (vs DDP) | sim, round dispatch "
             "| sim, at arrival |"), "|---|---|---|---|---|---|---|"]
    for r in rows:
        cut = "-" if r["on_time_cut_live"] is None else r["on_time_cut_live"]
        lines.append(f"| {r['run']} | {r['row']} | {cut} | {r['ddp_s']:.1f} | "
                     f"{_cell(r['measured_s'], r['ddp_s'])} | {_cell(r['sim_round_s'], r['ddp_s'])} | "
                     f"{_cell(r['sim_arrival_s'], r['ddp_s'])} |")
    return "\n".join(lines)


def policy_table(rows: list[dict]) -> str:
    """One line per run: measured, then each policy's replay (seconds and x DDP), and the best;
    the rows ``replay_policies`` returns, as sim_replay_policies.json keeps them."""
    specs = list(rows[0]["sim_s"])
    lines = [f"| run | row | DDP s | measured s | {' | '.join(specs)} | best |",
             "|---|---|---|---|" + "---|" * (len(specs) + 1)]
    for r in rows:
        cells = [_cell(r["sim_s"][p], r["ddp_s"]) for p in specs]
        best = min(specs, key=lambda p: r["sim_s"][p])
        lines.append(f"| {r['run']} | {r['row']} | {r['ddp_s']:.1f} | "
                     f"{_cell(r['measured_s'], r['ddp_s'])} | {' | '.join(cells)} | {best} |")
    return "\n".join(lines)


def print_policy_table(rows: list[dict], specs: list[str], json_path: str | None) -> None:
    print(policy_table(rows))
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
