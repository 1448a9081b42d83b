"""Checkpoints composed of the loop's parts, written and resumed through the in-process
transport (no Ray): every checkpoint of a run resumes to its final parameters, and the state
captured right after a restore is the checkpoint's own."""

import shutil

import pytest
from runtime_helpers import config, rel
from trees import assert_same_tree

from gcode.runtime.checkpoint import capture, checkpoints_in, read_checkpoint, resume_config
from gcode.runtime.loop.coordinator import Coordinator
from gcode.runtime.run import execute, preset_workload_of
from gcode.runtime.transport.inprocess import Script

#: stragglers every other round, and calls that take 20 ms to reach a worker: checkpoints hold
#: stored results, jobs in flight and straggler calls still out
SCRIPT = Script(latency_s=0.02, delays={(r, r % 4): 0.04 for r in range(1, 40, 2)})
CASES = {
    "msgc-fr-adam": ({"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr"},
                     {"optimizer": "adam", "lr": 0.01}),
    "msgc-cyclic-momentum": ({"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "cyclic"},
                             {"optimizer_params": {"momentum": 0.9}}),
    "gc-delayed": ({"name": "gc", "s": 1, "gc_code": "fr"}, {"mode": "delayed", "models": None}),
}


def run(cfg):
    return execute(cfg, preset_workload_of(cfg), in_process=SCRIPT)[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_checkpoint_resumes_to_the_final_parameters(tmp_path, case):
    scheme, train = CASES[case]
    cfg = config(scheme=scheme, train=train,
                 checkpoint={"dir": str(tmp_path / "ck"), "every": 3, "keep": 100})
    full = run(cfg)
    written = checkpoints_in(tmp_path / "ck")
    jobs = cfg.scheme.jobs  # every 3 rounds, at round jobs and at the end
    want = sorted({*range(3, full["rounds"], 3), jobs, full["rounds"]})
    assert [int(p.name.split("-")[1]) for p in written] == want
    assert any(read_checkpoint(p).tree["late"] for p in written)  # calls still out were saved
    for path in written:
        res = run(resume_config(path).replace(**{"checkpoint.dir": None}))
        assert res["sessions"] == 2 and res["decoded_jobs"] == full["decoded_jobs"]
        assert res["late_results_dropped"] == len(read_checkpoint(path).tree["late"])
        if scheme["gc_code"] == "fr":  # the same fp32 vectors summed, whoever straggled
            assert res["param_checksum"] == full["param_checksum"], path.name
        else:
            for got, want in zip(res["param_checksum"], full["param_checksum"]):
                assert rel(got, want) <= 1e-6, path.name




def test_the_state_captured_after_a_restore_is_the_checkpoints(tmp_path, monkeypatch):
    from gcode.runtime.checkpoint import files
    scheme, train = CASES["msgc-cyclic-momentum"]
    run(config(scheme=scheme, train=train, checkpoint={"dir": str(tmp_path / "ck"), "every": 3}))
    captured = []
    original = Coordinator.run

    def capture_then_run(self):
        arrays = {}  # encoded at once: the capture refers to live tensors
        doc = files._encode(capture(self, self.session.start_round, 0.0), arrays, "")
        captured.append(files._decode(doc, arrays))
        return original(self)
    monkeypatch.setattr(Coordinator, "run", capture_then_run)
    for path in checkpoints_in(tmp_path / "ck"):
        copy = tmp_path / "copy" / path.name
        shutil.copytree(path, copy)
        saved = read_checkpoint(copy).tree
        run(resume_config(copy).replace(**{"checkpoint.dir": None}))
        again = captured[-1]
        assert again["run"]["sessions"] == saved["run"]["sessions"] + 1
        for tree in (saved, again):
            for key in ("sessions", "runtime_s"):
                tree["run"].pop(key)
            tree.pop("late")                            # calls in flight do not survive
            tree["coordinator"].pop("late_dropped")
            tree["config"]["checkpoint"].pop("dir")     # the copy lives elsewhere
        assert_same_tree(again, saved, path.name, ordered=True)
