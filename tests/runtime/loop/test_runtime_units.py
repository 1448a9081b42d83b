"""Runtime pieces that need no Ray: round decisions, fp64/streaming decode, result checks,
job batches and injected delays."""

import math

import numpy as np
import pytest
import torch

from gcode.codes import ResultKey, make_scheme
from gcode.config import InjectConfig
from gcode.runtime.data import job_indices, model_seed
from gcode.runtime.loop.decode import Decoder, weighted_sum
from gcode.runtime.loop.finite_checks import PendingChecks, Staged
from gcode.runtime.loop.inject import injected_delays
from gcode.sim import DeadlinePolicy, GapPolicy, PaperPolicy, WaitAllPolicy
from gcode.sim.rounds import End, FallBack, RoundState, Wait, decide

ALWAYS = lambda s: True
NEVER = lambda s: not s.any()


# ---- decide: poll -> policy -> decision -------------------------------------------------
def test_head_starts_time_each_worker_from_its_own_dispatch():
    """Worker 1 was sent its tasks 0.5 s before the round's dispatch: it reaches a cut of 1.1 s
    of task time 0.5 s earlier on the round's clock; the round waits for the missing worker
    with the least head start."""
    gap = GapPolicy(0.1)
    st = RoundState(3, arrived={0: 1.0}, head_start={1: 0.5, 2: 0.5})
    assert decide(st, 0.5, gap, ALWAYS) == Wait(pytest.approx(0.6))
    assert isinstance(decide(st, 0.61, gap, ALWAYS), End)
    st = RoundState(3, arrived={0: 1.0}, head_start={1: 0.5})  # worker 2 started at t0
    assert decide(st, 0.6, gap, ALWAYS) == Wait(pytest.approx(1.1))
    paper = RoundState(3, arrived={0: 1.0}, head_start={1: 0.25, 2: 0.5})
    assert decide(paper, 1.7, PaperPolicy(1.0), ALWAYS) == Wait(pytest.approx(1.75))
    end = decide(paper, 1.76, PaperPolicy(1.0), ALWAYS)
    assert isinstance(end, End) and end.cut == 2.0 and end.arrived.tolist() == [True, False, False]


def test_waits_for_first_arrival_then_until_the_paper_cut():
    st = RoundState(4)
    assert decide(st, 0.0, PaperPolicy(1.0), ALWAYS) == Wait(math.inf)
    st.arrived[2] = 0.10
    d = decide(st, 0.11, PaperPolicy(1.0), ALWAYS)
    assert isinstance(d, Wait) and d.until == pytest.approx(0.20)


def test_cut_ends_round_with_conforming_stragglers():
    st = RoundState(4, arrived={0: 0.1, 1: 0.15, 2: 0.19})
    d = decide(st, 0.2, PaperPolicy(1.0), ALWAYS)
    assert isinstance(d, End) and d.arrived.tolist() == [True, True, True, False] and not d.fell_back


def test_everyone_before_the_cut_ends_early():
    st = RoundState(2, arrived={0: 0.1, 1: 0.12})
    d = decide(st, 0.12, PaperPolicy(1.0), NEVER)
    assert isinstance(d, End) and d.arrived.all()


def test_non_conforming_cut_falls_back_then_retries_failed_workers():
    st = RoundState(3, arrived={0: 0.1}, failed={2: "raised"})
    d = decide(st, 0.25, PaperPolicy(1.0), NEVER)
    assert isinstance(d, FallBack) and d.stragglers.tolist() == [False, True, True]
    st.fell_back = True
    assert decide(st, 0.3, PaperPolicy(1.0), NEVER) == Wait(math.inf, (2,))
    st.failed.clear()
    st.arrived.update({1: 0.5, 2: 0.9})
    d = decide(st, 0.9, PaperPolicy(1.0), NEVER)
    assert isinstance(d, End) and d.fell_back and d.arrived.all()


def test_failure_is_a_straggler_without_waiting_for_the_cut():
    st = RoundState(3, arrived={0: 0.1, 1: 0.1}, failed={2: "nan"})
    d = decide(st, 0.11, PaperPolicy(1.0), ALWAYS)
    assert isinstance(d, End) and d.arrived.tolist() == [True, True, False]


def test_deadline_policy_cuts_even_without_arrivals_and_all_waits():
    st = RoundState(2)
    assert isinstance(decide(st, 0.5, DeadlinePolicy(0.5), NEVER), FallBack)
    assert decide(st, 100.0, WaitAllPolicy(), ALWAYS) == Wait(math.inf)


# ---- decoding ------------------------------------------------------------------------------
def _drive(scheme, rng, d, stragglers_by_round, torch_math=False):
    """Run a scheme with random chunk gradients; return (decoder results, exact sums)."""
    k = len(scheme.chunk_fractions)
    jobs = scheme.jobs
    chunk_grads = rng.standard_normal((jobs, k, d))
    chunk_losses = rng.random((jobs, k))
    dec = Decoder(d, streaming=True, torch_math=torch_math)
    ref = Decoder(d, streaming=False)
    out = {}
    for r in range(scheme.total_rounds):
        plan = scheme.plan(r)
        strag = stragglers_by_round(r)
        if not scheme.conforms(r, strag):
            strag = np.zeros(scheme.n, bool)
        for w in np.flatnonzero(~strag):
            for task in plan[w]:
                msg = sum(c * chunk_grads[task.job, ch] for ch, c in zip(task.chunks, task.coefficients))
                msg = msg.astype(scheme.message_dtype)
                loss = sum(c * chunk_losses[task.job, ch] for ch, c in zip(task.chunks, task.coefficients))
                staged = dec.stage(msg)[0] if torch_math else msg  # as the coordinator does
                dec.add(ResultKey(int(w), r, task.slot), task, staged, loss)
                ref.add(ResultKey(int(w), r, task.slot), task, msg, loss)
        scheme.record(r, ~strag)
        for t in range(max(0, r - scheme.delay), r + 1):
            if scheme.decodable(t):
                decoding = scheme.decode(t)
                (grad, loss), (ref_grad, ref_loss) = dec.decode(t, decoding), ref.decode(t, decoding)
                assert loss == pytest.approx(ref_loss, rel=1e-12)
                if scheme.exact:
                    assert loss == pytest.approx(chunk_losses[t].sum(), rel=1e-9)
                out[t] = (grad.numpy(), ref_grad.numpy(), chunk_grads[t].sum(0))
    return out, dec


@pytest.mark.parametrize("name, params", [
    ("uncoded", {}), ("gc", {"s": 1, "gc_code": "fr"}), ("gc", {"s": 2, "gc_code": "cyclic"}),
    ("srsgc", {"B": 1, "W": 2, "lam": 2, "gc_code": "fr"}),
    ("msgc", {"B": 1, "W": 2, "lam": 2, "gc_code": "fr"}),
    ("msgc", {"B": 2, "W": 3, "lam": 2, "gc_code": "cyclic"}),
])
def test_streaming_decode_equals_batch_decode_and_the_exact_sum(name, params):
    rng = np.random.default_rng(0)
    scheme = make_scheme(name, n=6, jobs=8, **params)
    pattern = rng.random((20, 6)) < 0.2
    out, dec = _drive(scheme, rng, 257, lambda r: pattern[r])
    assert len(out) == 8
    for streamed, batch, exact in out.values():
        np.testing.assert_allclose(streamed, batch, rtol=1e-12, atol=1e-12)
        assert np.linalg.norm(streamed - exact) / np.linalg.norm(exact) < 1e-6
    if name in ("uncoded",) or params.get("gc_code") == "fr":
        assert dec.streamed == 8 and dec.fallbacks == 0
    assert not dec.results  # everything forgotten after decoding


@pytest.mark.parametrize("name, params", [
    ("gc", {"s": 2, "gc_code": "cyclic"}), ("msgc", {"B": 1, "W": 2, "lam": 2, "gc_code": "fr"})])
def test_the_device_decode_path_runs_on_the_cpu_and_equals_the_host_decode(name, params):
    """The torch math a GPU coordinator uses (results staged on the device on arrival, folds
    with torch), run on the CPU: the same decodes as numpy's, to fp64 rounding."""
    pattern = np.random.default_rng(3).random((20, 6)) < 0.2
    host, _ = _drive(make_scheme(name, n=6, jobs=8, **params), np.random.default_rng(0), 257,
                     lambda r: pattern[r])
    device, dec = _drive(make_scheme(name, n=6, jobs=8, **params), np.random.default_rng(0), 257,
                         lambda r: pattern[r], torch_math=True)
    assert dec.on_device and sorted(device) == sorted(host) == list(range(8))
    for t in host:
        np.testing.assert_allclose(device[t][0], host[t][0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("torch_math", [True, False])
def test_a_staged_result_s_finite_check_is_read_when_settled(torch_math):
    """Decoder.stage queues a result's check (a device flag, or a bool on the host); settling
    reads every check at once and names the non-finite results with their count."""
    dec = Decoder(5, torch_math=torch_math)
    checks = PendingChecks()
    for w, values in enumerate(([1, np.nan, 2, np.inf, -np.inf], [1, 2, 3, 4, 5])):
        source = np.array(values, np.float32)
        staged, flag, event = dec.stage(source)
        assert isinstance(staged, torch.Tensor) == torch_math and event is None  # CPU: no event
        checks.add(Staged(3, w, [], staged, flag, event, source))
        assert checks.items[-1].passed() == (w == 1)  # read at once (a late result's check)
    assert checks.pending_for(0) and checks.pending_for(1) and not checks.pending_for(2)
    good, bad = checks.settle(block=False)  # on the CPU every check is done at once
    assert [(item.worker, reason) for item, reason in bad] == [(0, "3 non-finite values")]
    assert [item.worker for item in good] == [1]
    assert not checks.items and bad[0][0].source is None  # the host array is let go
    assert checks.settle(block=True) == ([], [])


@pytest.mark.parametrize("torch_math", [True, False])
@pytest.mark.parametrize("name, params", [("uncoded", {}), ("gc", {"s": 1, "gc_code": "fr"}),
                                          ("msgc", {"B": 1, "W": 2, "lam": 2, "gc_code": "fr"})])
def test_a_result_discarded_after_it_was_folded_never_reaches_a_decode(name, params, torch_math):
    """A result found non-finite after it was stored and folded into its job's accumulator is
    discarded; the job streams again from the rest, the worker's retry is stored under the same
    keys, and every job decodes exactly."""
    d, n = 65, 4
    scheme = make_scheme(name, n=n, jobs=3, **params)
    rng = np.random.default_rng(5)
    chunk_grads = rng.standard_normal((scheme.jobs, len(scheme.chunk_fractions), d))
    dec = Decoder(d, streaming=True, torch_math=torch_math, fold_batch=1)

    def message(task):
        return sum(c * chunk_grads[task.job, ch]
                   for ch, c in zip(task.chunks, task.coefficients)).astype(np.float32)
    decoded = {}
    for r in range(scheme.total_rounds):
        plan = scheme.plan(r)
        for w in range(n):  # worker 0 first sends garbage, found only after it was folded
            for task in plan[w]:
                bad = np.full(d, np.nan, np.float32)
                dec.add(ResultKey(w, r, task.slot), task, bad if w == 0 else message(task))
            dec.flush()
        dec.discard([ResultKey(0, r, task.slot) for task in plan[0]])
        for task in plan[0]:  # its retry
            dec.add(ResultKey(0, r, task.slot), task, message(task))
        scheme.record(r, np.ones(n, dtype=bool))
        for t in range(max(0, r - scheme.delay), r + 1):
            if scheme.decodable(t) and t not in decoded:
                decoded[t] = np.asarray(dec.decode(t, scheme.decode(t))[0])
    assert sorted(decoded) == list(range(scheme.jobs))
    for t, grad in decoded.items():
        exact = chunk_grads[t].sum(0)
        assert np.linalg.norm(grad - exact) / np.linalg.norm(exact) < 1e-6


def test_ignore_scheme_rescales_so_streaming_falls_back_to_batch():
    rng = np.random.default_rng(1)
    scheme = make_scheme("ignore", n=4, s=1, jobs=4)
    out, dec = _drive(scheme, rng, 33, lambda r: np.array([r % 2 == 0, False, False, False]))
    for streamed, batch, _ in out.values():
        np.testing.assert_allclose(streamed, batch, rtol=1e-12)
    assert dec.fallbacks == 2  # the rounds with a straggler used rescaled coefficients


def test_weighted_sum_is_fp64_and_blocked():
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(100_003).astype(np.float32) for _ in range(5)]
    coefs = [1.0, -2.5, 1e-3, 7.0, 1.0]
    got = weighted_sum(arrays, coefs, block=4096)
    want = sum(c * a.astype(np.float64) for a, c in zip(arrays, coefs))
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-12)
    assert got.dtype == np.float64


def test_decoder_refuses_unknown_results():
    dec = Decoder(4)
    with pytest.raises(KeyError):
        dec.decode(0, [(ResultKey(0, 0, 0), 1.0)])


# ---- data and injection -------------------------------------------------------------------
def test_job_batches_are_deterministic_distinct_and_per_job():
    a = job_indices(0, 5, 100, 1797)
    assert np.array_equal(a, job_indices(0, 5, 100, 1797)) and len(set(a.tolist())) == 100
    assert not np.array_equal(a, job_indices(0, 6, 100, 1797))
    assert not np.array_equal(a, job_indices(1, 5, 100, 1797))
    assert sorted(job_indices(0, 1, 10, 10).tolist()) == list(range(10))
    assert model_seed(0, 0) != model_seed(0, 1)


def test_trace_injection_uses_first_n_columns_scaled(tmp_path):
    path = tmp_path / "t.csv"
    trace = np.arange(1, 31, dtype=float).reshape(5, 6)
    path.write_text("\n".join(",".join(str(v) for v in row) for row in trace))
    got = injected_delays(InjectConfig(trace=str(path), time_scale=0.5), n=4, rounds=3, seed=0)
    np.testing.assert_allclose(got, trace[:3, :4] * 0.5)
    with pytest.raises(ValueError, match="rounds"):
        injected_delays(InjectConfig(trace=str(path)), n=4, rounds=9, seed=0)


def test_model_injection_is_seeded_and_scaled():
    ic = InjectConfig(model="shifted_exp", params={"shift": 1.0, "rate": 2.0}, time_scale=0.1)
    a = injected_delays(ic, 3, 10, seed=1)
    assert a.shape == (10, 3) and np.array_equal(a, injected_delays(ic, 3, 10, seed=1))
    assert (a >= 0.1 - 1e-12).all()
    assert not injected_delays(InjectConfig(), 3, 4, 0).any()


def test_threaded_weighted_sum_matches():
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(50_001).astype(np.float32) for _ in range(4)]
    coefs = [0.5, -1.0, 3.0, 1.0]
    np.testing.assert_allclose(weighted_sum(arrays, coefs, block=1024, threads=3),
                               weighted_sum(arrays, coefs, block=1024), rtol=0, atol=0)


def test_partial_wait_fallback_stops_once_the_missing_set_conforms():
    from gcode.sim import PartialWaitPolicy
    at_most_one = lambda s: s.sum() <= 1
    st = RoundState(4, arrived={0: 0.1})
    assert isinstance(decide(st, 0.3, PartialWaitPolicy(1.0), at_most_one), FallBack)
    st.fell_back = True
    assert isinstance(decide(st, 0.3, PartialWaitPolicy(1.0), at_most_one), Wait)
    st.arrived[2] = 0.4
    assert isinstance(decide(st, 0.4, PartialWaitPolicy(1.0), at_most_one), Wait)
    st.arrived[1] = 0.5
    d = decide(st, 0.5, PartialWaitPolicy(1.0), at_most_one)
    assert isinstance(d, End) and d.fell_back and d.arrived.tolist() == [True, True, True, False]
    # the paper policy would keep waiting for worker 3
    assert isinstance(decide(st, 0.5, PaperPolicy(1.0), at_most_one), Wait)


def test_a_region_larger_than_shared_memory_is_a_clear_error_not_a_sigbus():
    """Regions reserve their memory when made, so a full /dev/shm fails there, in one line."""
    import tempfile

    from gcode.runtime.errors import RunFailed
    from gcode.runtime.transport.shm_frames import Region, shm_root
    folder = tempfile.mkdtemp(dir=shm_root())
    try:
        small = Region(f"{folder}/ok", 4096, create=True)
        small.array(np.float32, 1024)[:] = 1.0
        small.close()
        with pytest.raises(RunFailed, match=r"shared memory is full: .*--transport ray"):
            Region(f"{folder}/huge", 1 << 50, create=True)
    finally:
        import shutil
        shutil.rmtree(folder, ignore_errors=True)
