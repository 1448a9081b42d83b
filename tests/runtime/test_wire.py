"""The typed wire (:mod:`gcode.runtime.wire`): a call's header round-trips and refuses another
version; a result is validated against the call it answers, then its values where it decodes."""

import pickle

import numpy as np
import pytest

from gcode.runtime.loop.decode import Decoder
from gcode.runtime.loop.finite_checks import Staged
from gcode.runtime.wire import WIRE_VERSION, Call, Result, WireError, WireTask

CALL = Call(ctx="c", round=3, tasks=(WireTask(3, 0, (1,), (1.0,)),), jobs=(3,), dtype="float32")


def test_a_call_round_trips_through_its_header():
    call = Call(ctx="run", round=7, tasks=(WireTask(6, 1, (0, 2), (1.0, -0.5)),
                                          WireTask(7, 0, (1,), (1.0,))),
                jobs=(6, 7), dtype="float64", delay_s=0.25, inject_mode="target", fault="nan",
                attempt=2)
    assert Call.decode(call.encode()) == call
    assert call.tags == [(6, 1), (7, 0)]
    assert isinstance(Call.decode(call.encode()).tasks[0], WireTask)


def test_a_header_of_another_version_is_refused():
    fields = pickle.loads(CALL.encode())
    with pytest.raises(WireError, match=f"wire version {WIRE_VERSION + 1}"):
        Call.decode(pickle.dumps((WIRE_VERSION + 1, *fields[1:])))
    with pytest.raises(WireError):
        Call.decode(pickle.dumps({"round": 3}))


def _result(**kw):
    fields = {"status": "ok", "round": 3, "worker": 1, "tags": [(3, 0)],
              "grads": np.zeros((1, 5), np.float32), "losses": [0.5]}
    fields.update(kw)
    return Result(**fields)


@pytest.mark.parametrize("result, reason", [
    (_result(), None),
    (_result(grads=np.zeros((1, 4), np.float32)), "wrong shape"),
    (_result(grads=np.array([[0, np.nan, 0, 0, 0]], np.float32)), "non-finite"),
    (_result(grads=np.array([[0, np.inf, 0, 0, 0]], np.float32)), "non-finite"),
    (_result(grads=np.zeros((1, 5), np.float64)), "wrong dtype"),
    (_result(grads=None), "not a numpy array"),
    (_result(round=2), "tagged round"),
    (_result(worker=0), "tagged round 3 worker 0"),
    (_result(tags=[(2, 0)]), "tags"),
    (_result(status="stale"), "status"),
    (_result(losses=[float("nan")]), "non-finite"),
    (_result(losses=[1]), "non-float"),
    (_result(losses=[]), "losses"),
    (_result(version=WIRE_VERSION + 1), "wire version"),
    ({"status": "ok"}, "not a result"),
    ("garbage", "not a result"),
])
def test_a_result_is_checked_against_its_call(result, reason):
    """A result's validation as the coordinator composes it: its form (Result.problem), then
    its values' finiteness where it decodes (Decoder.stage, read at once)."""
    got = Result.problem(result, CALL, 1, 5)
    if got is None:
        item = Staged(3, 1, [], *Decoder(5).stage(result.grads))
        got = None if item.passed() else item.reason()
    assert (got is None) if reason is None else (reason in got)


def test_the_wire_imports_neither_torch_nor_ray():
    import subprocess
    import sys
    code = ("import sys, gcode.runtime.wire; "
            "print(any(m in sys.modules for m in ('torch', 'ray')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_plane_whose_results_carry_no_gradients_checks_that_they_carry_none():
    """The collective plane's results hold coded losses and timings only."""
    assert Result.problem(_result(grads=None), CALL, 1, 5, gradients=False) is None
    assert "carry none" in Result.problem(_result(), CALL, 1, 5, gradients=False)
    assert "losses" in Result.problem(_result(grads=None, losses=[]), CALL, 1, 5, gradients=False)
