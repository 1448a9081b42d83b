"""The exactness probe live, with real Ray workers (issue 27, item 3): gcode.fit of a BatchNorm
model or of an in-batch contrastive loss under a coded scheme stops before round 0 with the
cause named; a sound model's run reports the probe (its decode within 1e-6) and trains."""

import sys

import coupled_models
import pytest
from coupled_models import Blobs, batchnorm_net, cross_entropy, info_nce, layernorm_net, sgd

import gcode
from gcode.train import WorkloadError

ray = pytest.importorskip("ray")
ray.cloudpickle.register_pickle_by_value(coupled_models)  # workers cannot import tests/
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.ray


def fit(model_fn, loss_fn, coding, pool, **run):
    return gcode.fit(model_fn, loss_fn, Blobs, sgd, coding=gcode.CodingConfig(**coding),
                     scaling=gcode.ScalingConfig(workers=4, round_timeout_s=60),
                     run=gcode.RunConfig(jobs=3, batch_size=96, **run), progress=False, pool=pool)


def test_batchnorm_stops_a_coded_fit_before_training(ray_pool):
    rounds = []
    with pytest.raises(WorkloadError, match=r"misses its directly computed gradient.*BatchNorm1d "
                                            r"layer '1'.*GroupNorm or LayerNorm"):
        gcode.fit(batchnorm_net, cross_entropy, Blobs, sgd,
                  coding=gcode.CodingConfig(scheme="gc", s=1, gc_code="cyclic"),
                  scaling=gcode.ScalingConfig(workers=4, round_timeout_s=60),
                  run=gcode.RunConfig(jobs=3, batch_size=96), progress=rounds.append, pool=ray_pool)
    assert rounds == []  # stopped before round 0


def test_an_in_batch_contrastive_loss_stops_a_coded_fit(ray_pool):
    with pytest.raises(WorkloadError, match=r"loss_fn or the model mixes the samples of a batch"):
        fit(layernorm_net, info_nce, {"scheme": "msgc", "B": 1, "W": 2, "lam": 1}, ray_pool)


def test_a_sound_model_is_probed_on_the_workers_and_trains(ray_pool):
    res = fit(layernorm_net, cross_entropy, {"scheme": "gc", "s": 1, "gc_code": "fr"}, ray_pool,
              check_decode=True).metrics
    probe = res["exactness_probe"]
    assert probe["skipped"] is None and probe["rel_error"] < 1e-6 and probe["repeat_error"] < 1e-6
    assert res["decoded_jobs"] == 3 and res["max_decode_rel_error"] < 1e-6
