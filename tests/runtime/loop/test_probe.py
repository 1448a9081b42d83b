"""The exactness probe without Ray (issue 27, item 3): its plan decodes to the exact sum for
every scheme, and through the in-process transport a coded run of a model that couples the
samples of a batch (BatchNorm, an in-batch contrastive loss, dropout) stops before round 0 with
its cause named, while sound models and uncoded runs train."""

import numpy as np
import pytest
from coupled_models import (
    batchnorm_net,
    dropout_net,
    info_nce,
    layernorm_net,
    workload,
)
from runtime_helpers import config
from torch import nn

from gcode.codes import make_scheme
from gcode.runtime.probe import (
    PROBE_TOLERANCE,
    check_decoded,
    plan_probe,
    replicas_must_match,
)
from gcode.runtime.run import execute
from gcode.runtime.transport.inprocess import Script
from gcode.train import WorkloadError

SCHEMES = {
    "gc-fr": {"name": "gc", "s": 1, "gc_code": "fr"},
    "gc-cyclic": {"name": "gc", "s": 1, "gc_code": "cyclic"},
    "srsgc": {"name": "srsgc", "B": 1, "W": 2, "lam": 1},
    "msgc": {"name": "msgc", "B": 1, "W": 2, "lam": 1},
}


def run(scheme, wl, **train):
    cfg = config(scheme=dict(scheme, jobs=4), train={"check_decode": False, "batch_size": 96,
                                                      "optimizer": "sgd", **train})
    return execute(cfg, wl, in_process=Script())[0]


@pytest.mark.parametrize(("name", "kwargs"), [
    ("gc", {"s": 1, "gc_code": "fr"}), ("gc", {"s": 2, "gc_code": "cyclic"}),
    ("gc", {"s": 3, "gc_code": "cyclic"}), ("srsgc", {"B": 1, "W": 2, "lam": 2}),
    ("msgc", {"B": 1, "W": 2, "lam": 2}), ("msgc", {"B": 2, "W": 3, "lam": 2, "gc_code": "fr"})])
@pytest.mark.parametrize("n", [4, 8, 12])
def test_the_plan_decodes_to_the_sum_of_its_chunks(name, kwargs, n):
    """Random chunk gradients through the plan's tasks and weights give their exact sum, and
    the direct tasks read the whole probe batch."""
    plan = plan_probe(make_scheme(name, n=n, jobs=5, **kwargs), batch_size=200, job=5)
    chunks = len(plan.bounds) - 1
    g = np.random.default_rng(n).standard_normal((chunks + 1, 3))
    g[chunks] = g[:chunks].sum(axis=0)  # the whole batch's gradient
    decoded = np.zeros(3)
    for phase, calls in enumerate(plan.calls):
        for w, tasks in calls.items():
            for task in tasks:
                message = sum(c * g[k] for k, c in zip(task.chunks, task.coefficients))
                decoded += plan.weights.get((phase, w, task.slot), 0.0) * message
                assert task.job == 5
    assert np.allclose(decoded, g[chunks], rtol=1e-9, atol=1e-12)
    assert plan.stragglers >= 1 and plan.bounds[-1] == (0, plan.batch)
    assert all(b - a >= 2 for a, b in plan.bounds) and plan.batch <= 200
    (p1, w1, _), (p2, w2, _) = plan.direct
    assert p1 == p2 == len(plan.calls) - 1 and w1 != w2


def test_what_is_not_probed_and_what_needs_identical_replicas():
    assert plan_probe(make_scheme("uncoded", n=4), 64, job=1) is None
    assert plan_probe(make_scheme("ignore", n=4, s=1), 64, job=1) is None
    assert not replicas_must_match(make_scheme("gc", n=4, s=1, gc_code="fr"))
    assert not replicas_must_match(make_scheme("uncoded", n=4))
    assert replicas_must_match(make_scheme("gc", n=4, s=1, gc_code="cyclic"))
    assert replicas_must_match(make_scheme("msgc", n=4, B=1, W=2, lam=2, gc_code="cyclic"))


@pytest.mark.parametrize("scheme", SCHEMES.values(), ids=SCHEMES.keys())
def test_batchnorm_stops_a_coded_run_before_round_0(scheme):
    with pytest.raises(WorkloadError, match=r"misses its directly computed gradient by .*"
                       r"BatchNorm1d layer '1' normalizes over the batch.*GroupNorm or LayerNorm"):
        run(scheme, workload(batchnorm_net))


@pytest.mark.parametrize("scheme", [SCHEMES["gc-fr"], SCHEMES["msgc"]], ids=["gc-fr", "msgc"])
def test_an_in_batch_contrastive_loss_stops_a_coded_run(scheme):
    with pytest.raises(WorkloadError, match="loss_fn or the model mixes the samples of a batch "
                                            r"\(an in-batch contrastive loss"):
        run(scheme, workload(layernorm_net, info_nce))


def test_dropout_stops_a_coded_run():
    with pytest.raises(WorkloadError, match=r"two direct computations of it differ.*Dropout '2' "
                                            r"\(dropout 0.1\) draws another random mask.*dropout off"):
        run(SCHEMES["gc-cyclic"], workload(dropout_net))


@pytest.mark.parametrize("scheme", SCHEMES.values(), ids=SCHEMES.keys())
def test_a_sound_model_is_probed_and_trains(scheme):
    res = run(scheme, workload(layernorm_net), check_decode=True)
    probe = res["exactness_probe"]
    assert probe["skipped"] is None and probe["rel_error"] < 1e-6 and probe["repeat_error"] == 0.0
    assert probe["batch"] >= 16 and probe["samples"] >= 2 * probe["batch"]
    assert res["decoded_jobs"] == 4 and res["max_decode_rel_error"] < 1e-6


def test_uncoded_runs_batchnorm_as_ddp_does():
    """Uncoded: each worker's chunk is its batch, as in torch DDP; not probed, and check_decode
    records the difference from the full batch without stopping."""
    res = run({"name": "uncoded"}, workload(batchnorm_net), check_decode=True)
    assert res["exactness_probe"] is None and res["decoded_jobs"] == 4
    assert res["max_decode_rel_error"] > PROBE_TOLERANCE


def test_check_decode_stops_a_coded_run_that_misses():
    bn = batchnorm_net()
    check_decoded(PROBE_TOLERANCE, 3, bn, "gc")  # at the tolerance: goes on
    check_decoded(0.3, 3, bn, "uncoded")
    with pytest.raises(WorkloadError, match=r"check_decode: job 3's decoded gradient misses .* "
                                            r"3\.0e-01.*BatchNorm1d layer '1'"):
        check_decoded(0.3, 3, bn, "msgc")
    attention = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.1)
    with pytest.raises(WorkloadError, match=r"Dropout 'dropout' \(dropout 0.1\) draws another"):
        check_decoded(0.3, 0, attention, "gc")
