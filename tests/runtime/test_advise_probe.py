"""gcode.advise.probe: a short uncoded run of the user's own gcode.fit functions, then the advice
from its log (the predicted speedups and the CodingConfig that runs the recommendation)."""

import pytest

import gcode
from gcode.advise import probe
from gcode.train.presets import preset_workload

pytestmark = pytest.mark.ray


def test_probe_runs_uncoded_and_recommends_a_one_model_config(ray_pool):
    w = preset_workload("logistic", "digits", optimizer="sgd", lr=0.1)
    inject = gcode.InjectConfig(model="bursty", params={"B": 1, "W": 2, "lam": 1, "base": 0.01,
                                                        "slowdown": 10.0, "straggle_prob": 0.5})
    advice = probe(w.model_fn, w.loss_fn, w.dataset_fn, w.optimizer_fn,
                   scaling=gcode.ScalingConfig(workers=4, round_timeout_s=60),
                   run=gcode.RunConfig(batch_size=128, inject=inject), jobs=8, bootstrap=10,
                   pool=ray_pool, collate_fn=w.collate_fn)
    assert advice["probe"]["jobs"] == 8 and advice["probe"]["models"] == 1
    assert advice["probe"]["steps_per_model"] == 8
    assert advice["source"].startswith("uncoded probe") and advice["n"] == 4 and advice["models"] == 1
    config = advice["recommended"]["coding_config"]
    assert config["scheme"] in ("uncoded", "gc")  # one model: T = 0 schemes only
    gcode.CodingConfig(**config)  # a config gcode.fit takes as it is
    p = advice["predicted"]
    assert p["speedup_vs_uncoded"] >= 1.0 and p["runtime_s"] > 0
    assert advice["confidence"]["bootstrap"] == 10
