"""Checkpoint/resume on the session's Ray pool: a resumed run ends with the same parameters as the
uninterrupted one, a stop request checkpoints, a changed config is refused by field name, the
CLI's --resume continues the JSONL log."""

import argparse
import json
import shutil

import pytest
from runtime_helpers import BURSTY, config, rel
from trees import assert_same_tree

from gcode.cli.train import add_train_arguments, run_from_args
from gcode.config import ConfigError
from gcode.runtime import train
from gcode.runtime.checkpoint import checkpoints_in, read_checkpoint, resume_config
from gcode.runtime.loop.jsonl_log import read_jsonl

pytestmark = pytest.mark.ray

#: FR codes: a job's decoded gradient is the same sum of the same fp32 vectors whichever workers
#: straggled, so two runs of one scheme agree bit for bit whatever the live timing was
SCHEMES = {
    "gc": {"name": "gc", "s": 1, "gc_code": "fr"},
    "srsgc": {"name": "srsgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"},
    "msgc": {"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"},
    "auto": {"name": "auto"},
}
#: scheme x optimizer state x mode: Adam (step, moments), SGD momentum buffers, plain SGD,
#: delayed mode (one model, gradients applied T rounds late from parameter snapshots)
CASES = {
    "gc-adam": ("gc", {"optimizer": "adam", "lr": 0.01}),
    "srsgc-momentum": ("srsgc", {"optimizer_params": {"momentum": 0.9}}),
    "msgc-sgd": ("msgc", {}),
    "msgc-delayed": ("msgc", {"mode": "delayed", "models": None}),
    "auto-adam": ("auto", {"optimizer": "adam", "lr": 0.01}),
}


def _checkpointed(cfg, root, every=3):
    return cfg.replace(**{"checkpoint.dir": str(root), "checkpoint.every": every,
                          "checkpoint.keep": 100})


@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_gives_the_same_final_parameters(ray_pool, tmp_path, case):
    """A run resumed from its checkpoints ends where the uninterrupted run ends: bit for bit for
    the FR schemes (whichever workers straggle, a job decodes to the same fp32 sum). Not for auto:
    its group code's decode coefficients depend on which workers arrived, so two runs, resumed or
    not, with the same switches differ by the decode's rounding (each decode is within the 1e-6
    budget of the exact sum; ~1e-7 seen at the end), and its tuner's switches after the resume
    depend on live timings (then the chunking, and the rounds, differ too). For auto the final
    parameters agree within 1e-5 relative, and the round count when the switches agree."""
    name, train_section = CASES[case]
    cfg = config(scheme=SCHEMES[name], inject=BURSTY, train=train_section)
    full = train(_checkpointed(cfg, tmp_path / "ck"), pool=ray_pool)
    assert full["stragglers"] > 0 and full["decoded_jobs"] == 12
    updates = [12] if cfg.train.mode == "delayed" else [6, 6]
    rounds = [int(p.name.split("-")[1]) for p in checkpoints_in(tmp_path / "ck")]

    def due(after, last):  # every 3 rounds, at round jobs = 12 and at the end (round `last`)
        return sorted({*range(3, last, 3), 12, last} - set(range(after + 1)))
    assert rounds == due(0, full["rounds"])
    for start in (6, 3):   # resume from two different points of the same run
        rc = resume_config(tmp_path / "ck" / f"round-{start:08d}")
        if start == 6:     # without checkpoints; from 3, rewriting the later ones (new timeline)
            rc = rc.replace(**{"checkpoint.dir": None})
        res = train(rc, pool=ray_pool)
        assert res["resumed_from"].endswith(f"round-{start:08d}") and res["sessions"] == 2
        assert len(res["checkpoints"]) == (0 if start == 6 else len(due(start, res["rounds"])))
        assert res["decoded_jobs"] == 12
        assert res["updates_per_model"] == updates and res["max_decode_rel_error"] < 1e-5
        if name != "auto":
            assert res["rounds"] == full["rounds"]
            assert res["param_checksum"] == full["param_checksum"], (case, start)
            continue
        if res["switches"] == full["switches"]:
            assert res["rounds"] == full["rounds"]
        for got, want in zip(res["param_checksum"], full["param_checksum"]):
            assert rel(got, want) <= 1e-5, (case, start, res["switches"], full["switches"])


def test_restoring_then_capturing_gives_the_checkpoint_back(ray_pool, tmp_path, monkeypatch):
    """The auto scheme mid-run (tuner history, switches, pending jobs, stored results and
    accumulators, RNGs): restore into a fresh coordinator, capture again, compare every value."""
    from gcode.runtime import checkpoint as ckmod
    from gcode.runtime.checkpoint import files as ckfiles
    from gcode.runtime.loop.coordinator import Coordinator
    jobs = 10
    cfg = config(scheme={"name": "auto", "jobs": jobs}, inject=BURSTY)
    full = train(_checkpointed(cfg, tmp_path / "ck", every=2), pool=ray_pool)
    assert full["switches"], "the tuner should have switched at least once"
    captured = []
    original = Coordinator.run

    def run_after_capture(self):
        arrays = {}  # encode at once: the capture refers to live tensors
        doc = ckfiles._encode(ckmod.capture(self, self.session.start_round,
                                         self.session.runtime_before), arrays, "")
        captured.append(ckfiles._decode(doc, arrays))
        return original(self)
    monkeypatch.setattr(Coordinator, "run", run_after_capture)
    for i, original_path in enumerate(checkpoints_in(tmp_path / "ck")):
        # resume from a copy: a resumed run writes (and prunes) checkpoints beside its own
        path = tmp_path / f"copy{i}" / original_path.name
        shutil.copytree(original_path, path)
        saved = read_checkpoint(path).tree
        train(resume_config(path), pool=ray_pool)
        again = captured[-1]
        assert again["run"]["sessions"] == saved["run"]["sessions"] + 1
        for tree in (saved, again):
            tree["run"].pop("sessions")
            tree.pop("late")                            # in-flight calls do not survive
            tree["config"]["checkpoint"].pop("dir")     # the copy lives elsewhere
            tree["coordinator"].pop("late_dropped")
        assert_same_tree(again, saved, path.name)
        # the tuner saw every round before the checkpoint that had tasks: every job's round,
        # and those tail rounds (r >= jobs) whose plan was not empty (it depends on the scheme
        # the tuner had switched to, so on timing)
        observed = [e["r"] for e in saved["tuner"]["events"] if e["kind"] == "round"]
        assert observed[:jobs] == list(range(min(jobs, saved["round"])))
        assert observed[jobs:] == sorted(set(observed[jobs:]))
        assert all(jobs <= r < saved["round"] for r in observed[jobs:])


def test_a_stop_request_writes_a_checkpoint_and_resume_finishes_the_run(ray_pool, tmp_path):
    from gcode.telemetry.monitor import MonitorClient, MonitorServer
    cfg = config(scheme=SCHEMES["gc"], inject=BURSTY)
    full = train(cfg, pool=ray_pool)
    server = MonitorServer("127.0.0.1:0")
    client = MonitorClient(server.target)
    early = {}

    def progress(rec):
        early[rec["round"]] = rec["next_started_early"]
        if rec["round"] == 4:
            client.request_stop("maintenance", timeout=5.0)
    try:
        stopped = train(_checkpointed(cfg, tmp_path / "ck", every=100), pool=ray_pool,
                        progress=progress, monitor=server)
    finally:
        client.close()
        server.close()
    boundary = 6 if early[4] else 5  # round 5 finishes too when it was already dispatched
    assert stopped["stopped"] and stopped["rounds"] == boundary
    assert stopped["checkpoint"].endswith(f"round-{boundary:08d}")
    assert len(stopped["checkpoints"]) == 1
    res = train(resume_config(tmp_path / "ck"), pool=ray_pool)
    assert not res["stopped"] and res["rounds"] == full["rounds"] and res["decoded_jobs"] == 12
    assert res["param_checksum"] == full["param_checksum"]


def test_a_changed_config_is_refused_by_field_name(ray_pool, tmp_path):
    cfg = _checkpointed(config(scheme=SCHEMES["gc"]), tmp_path / "ck", every=4)
    train(cfg, pool=ray_pool)
    base = resume_config(tmp_path / "ck")
    for key, value in [("scheme.jobs", 8), ("train.lr", 0.1), ("scheme.s", 2),
                       ("inject.model", "shifted_exp")]:
        extra = {"inject.params": {"shift": 0.01, "rate": 50.0}} if key == "inject.model" else {}
        with pytest.raises(ConfigError) as info:
            train(base.replace(**{key: value}, **extra), pool=ray_pool)
        assert info.value.field == key
    # a fresh run may not write into a directory holding another run's checkpoints
    with pytest.raises(ConfigError, match="^checkpoint.dir: .* already holds checkpoints"):
        train(cfg, pool=ray_pool)


def test_cli_resume_continues_the_jsonl_log(ray_pool, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    log = tmp_path / "run.jsonl"
    common = ["--workers", "4", "--jobs", "10", "--model", "logistic", "--scheme", "msgc",
              "--B", "1", "--W", "2", "--lam", "1", "--gc-code", "fr", "--models", "2",
              "--json", "--quiet", "--log-jsonl", str(log), "--run-log", str(tmp_path / "rl")]
    ck = tmp_path / "ck"
    assert run_from_args(parser.parse_args(common + ["--checkpoint-dir", str(ck),
                                                     "--checkpoint-every", "4",
                                                     "--checkpoint-keep", "5"]),
                         pool=ray_pool) == 0
    full = json.loads(capsys.readouterr().out)
    assert [r["round"] for r in read_jsonl(log)] == list(range(full["rounds"]))
    # as if the run had died after writing round 4's checkpoint and logging rounds 4..10
    resumed_from = ck / "round-00000004"
    assert run_from_args(parser.parse_args(["--resume", str(resumed_from), "--json", "--quiet"]),
                         pool=ray_pool) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["param_checksum"] == full["param_checksum"] and res["rounds"] == full["rounds"]
    records = read_jsonl(log)
    assert [r["round"] for r in records] == list(range(full["rounds"]))
    assert records[-1]["decoded_jobs"] == 10
    # the first session's telemetry run log is kept aside; the new one starts at the resume round
    from gcode.telemetry.runlog import read_run_log
    _cfg, first, _summary = read_run_log(tmp_path / "rl.before-r00000004")
    _cfg, second, _summary = read_run_log(tmp_path / "rl")
    assert [r.round for r in first] == list(range(full["rounds"]))
    assert [r.round for r in second] == list(range(4, full["rounds"]))
