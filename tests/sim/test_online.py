"""The online auto scheme: decodes every job, switches, fits the load model, and never looks at
future rounds."""

import numpy as np
import pytest
from paths import TRACES

from gcode.bench.auto import SuiteTrace, _by_source, evaluate, markdown_table
from gcode.codes import make_scheme
from gcode.sim import PaperPolicy, simulate
from gcode.sim.load_model import LoadModel
from gcode.sim.online import OnlineConfig, OnlineTuner
from gcode.stragglers import GilbertElliottDelay, load_trace

R30 = "lambda-cnn-w256-r30-canada.csv"


@pytest.mark.parametrize("name,jobs", [(R30, 26), ("lambda-cnn-w256-r20-canada.csv", 16)])
def test_auto_decodes_every_job(name, jobs):
    trace = load_trace(TRACES / name)
    tuner = OnlineTuner(256, jobs, 2.2013)
    result = simulate(tuner.scheme, trace, tuner, 2.2013)  # raises on any missed decode
    assert result.decoded_jobs == jobs
    assert tuner.decisions and all(d["rounds_weighed"] >= 1 for d in tuner.decisions)


def test_decisions_use_only_past_rounds():
    trace = load_trace(TRACES / R30)
    altered = trace.copy()
    altered[12:] = np.random.default_rng(0).uniform(0.5, 3.0, altered[12:].shape)
    runs = []
    for t in (trace, altered):
        tuner = OnlineTuner(256, 26, 2.2013)
        simulate(tuner.scheme, t, tuner, 2.2013)
        runs.append(tuner)
    before = [[s for s in tuner.scheme.switches if s["round"] <= 12] for tuner in runs]
    assert before[0] == before[1]
    first, second = ([d for d in run.decisions if d["round"] <= 12] for run in runs[:2])
    assert first == second


@pytest.mark.parametrize("field,value,message", [
    ("window", 1, "window must be >= 2"), ("every", 0, "every must be >= 1"),
    ("margin", 1.5, "margin must be in"), ("mus", (), "mus must be"), ("max_delay", -1, "max_delay"),
    ("confidence", -1, "confidence must be"), ("start", "msgc", "start must be"),
    ("gc_code", "nope", "gc_codes must name"), ("start_s_fraction", 1.0, "start_s_fraction must be in"),
])
def test_online_config_validation(field, value, message):
    with pytest.raises(ValueError, match=message):
        OnlineConfig(**{field: value})


@pytest.mark.parametrize("model", [LoadModel("additive", 0.7), LoadModel("proportional")])
def test_the_tuner_fits_the_load_model_from_the_compute_times(model):
    trace = GilbertElliottDelay().sample(20, 16, seed=3)
    tuner = OnlineTuner(16, 16, LoadModel("additive", 0.0), OnlineConfig())  # a wrong prior
    simulate(tuner.scheme, trace, tuner, model)
    assert tuner.loads.kind == model.kind
    assert tuner.loads.slope == pytest.approx(model.slope)


class _Recording(PaperPolicy):
    def __init__(self):
        super().__init__(0.1)
        self.late = []

    def observe_late(self, r, worker, time):
        self.late.append((r, worker, time))


def test_a_cut_workers_result_comes_in_late_with_its_time():
    trace = np.ones((6, 4))
    trace[1, 2] = 3.5  # cut at 1.1 in round 1; finishes 3.5 s after round 1 began
    policy = _Recording()
    simulate(make_scheme("gc", n=4, jobs=6, s=1, gc_code="fr"), trace, policy)
    # rounds last 1.0 s (round 1: 1.1 s), so its result is in once round 3 ends (clock 4.1 s)
    assert policy.late == [(1, 2, 3.5)]


class _Order(PaperPolicy):
    def __init__(self):
        super().__init__(0.1)
        self.events = []

    def observe(self, r, times, load, end, compute=None):
        self.events.append(("round", r))

    def observe_late(self, r, worker, time):
        self.events.append(("late", r, worker))


def test_a_late_result_is_seen_before_the_decision_of_the_round_it_came_in():
    """Round 1's cut worker finishes at clock 4.5 s, during round 4 (4.1–5.1 s): a live
    coordinator has it when round 4 ends, so the policy sees it before round 4's times."""
    trace = np.ones((6, 4))
    trace[1, 2] = 3.5
    policy = _Order()
    simulate(make_scheme("gc", n=4, jobs=6, s=1, gc_code="fr"), trace, policy)
    at = policy.events.index(("late", 1, 2))
    assert policy.events[at + 1] == ("round", 4) and ("round", 3) in policy.events[:at]


def test_cut_workers_still_out_finish_after_their_rounds_latest_late_result():
    """Late results come in in finish order: once one is in, the round's other cut workers are
    guessed later than it, and uncoded (waiting for all) costs more than waiting for it."""
    tuner = OnlineTuner(8, 16, LoadModel("additive", 0.0), OnlineConfig(start="uncoded", min_history=4))
    times = np.array([1.0, 1.02, 1.04, 1.06, 1.1, np.nan, np.nan, np.nan])
    a, c = tuner.replay.affine()
    tuner.observe(0, times, 1 / 8, 1.2)
    tuner.observe_late(0, 5, 1.9)
    tuner.observe(1, np.ones(8), 1 / 8, 1.0)  # the late result is in round 0's costs by now
    assert tuner.costs[0, 0] > a[0] * 1.9 + c[0]
    tuner.observe_late(0, 6, 1.95)
    tuner.observe(2, np.ones(8), 1 / 8, 1.0)
    assert tuner.costs[0, 0] > a[0] * 1.95 + c[0]


def _two_speed_round(n: int, slow: int) -> np.ndarray:
    times = 1.0 + 0.001 * np.arange(n)
    times[n - slow:] *= 3.0
    return times


def test_the_straggler_count_is_the_workers_after_the_largest_jump():
    tuner = OnlineTuner(32, 16, LoadModel("additive", 1.0))
    assert tuner._straggler_count(np.sort(_two_speed_round(32, 5))) == 5
    assert tuner._straggler_count(np.ones(32)) in range(17)


@pytest.mark.parametrize("model", [LoadModel("additive", 1.0), LoadModel("proportional")])
def test_gc_that_only_just_copes_with_a_cliff_pays_for_a_slightly_worse_round(model):
    """Two speeds, 6 slow workers in every round seen: GC with s = 6 is charged part of a slow
    round (the smoothed count exceeds 6 now and then), GC with s far above 6 almost nothing, and
    none of it under the proportional model, where one more s is itself costly."""
    n = 32
    tuner = OnlineTuner(n, 16, model, OnlineConfig(min_history=8, window=8))
    for r in range(4):
        tuner.observe(r, _two_speed_round(n, 6), 1 / n, 4.0, compute=None)
    block, extra = tuner.grid.s_block, tuner.smoothing[3]
    at = {int(s): float(e) for s, e, p in zip(block.s, extra, block.policy) if p == 0}
    if model.kind == "proportional":
        assert not extra.any()
        return
    assert at[6] > 0.2 and abs(at[max(at)]) < 0.01 and at[6] > at[min(s for s in at if s > 6)]


def test_restore_rebuilds_the_tuners_estimates():
    trace = GilbertElliottDelay().sample(24, 12, seed=1)
    tuner = OnlineTuner(12, 20, LoadModel("additive", 1.0))
    simulate(tuner.scheme, trace, tuner, LoadModel("additive", 1.0))
    again = OnlineTuner(12, 20, LoadModel("additive", 1.0))
    again.restore(tuner.state(), tuner.scheme)
    assert np.array_equal(again.costs, tuner.costs) and np.array_equal(again.ratios, tuner.ratios)
    assert np.array_equal(again.smoothing, tuner.smoothing) and again.counts == tuner.counts
    assert again.current == tuner.current and again.loads == tuner.loads
    assert again.decisions == tuner.decisions


@pytest.mark.parametrize("seed", [0, 1])
def test_auto_is_not_slower_than_uncoded_when_coding_cannot_pay(seed):
    """Proportional load and stragglers 3x slow: every coded choice costs more than it saves."""
    item = SuiteTrace("ge", "ge", GilbertElliottDelay().sample(30, 32, seed=seed), 26, 2.2013)
    row = evaluate(item, "proportional", OnlineConfig())
    assert row["vs_uncoded"] <= 0.01, row


def test_bench_auto_rows_and_table():
    item = SuiteTrace("ge-n16", "ge", GilbertElliottDelay().sample(20, 16, seed=0), 16, 2.2013)
    rows = [evaluate(item, kind, OnlineConfig()) for kind in ("additive", "proportional")]
    for row in rows:
        assert row["hindsight_s"] <= row["uncoded_s"] + 1e-9
        assert row["regret"] == pytest.approx(row["auto_s"] / row["hindsight_s"] - 1)
        assert row["tuner_ms_per_round"] > 0
    result = {"rows": rows, "meta_selection": None,
              "summary": {"runs": 2, "max_regret": 0.0, "mean_regret": 0.0, "max_vs_uncoded": 0.0,
                          "misses": 0}}
    table = markdown_table(result)
    assert "ge-n16 | additive" in table and "ge-n16 | proportional" in table


def test_a_delayed_scheme_needs_evidence_that_covers_every_candidate():
    """Into a delayed scheme from T = 0 the bound is confidence × sqrt(2 ln P): with multiplicity
    off it is confidence alone."""
    on = OnlineTuner(8, 16, LoadModel("additive", 1.0), OnlineConfig(confidence=0.5, multiplicity=True))
    off = OnlineTuner(8, 16, LoadModel("additive", 1.0), OnlineConfig(confidence=0.5, multiplicity=False))
    assert on._union_z == pytest.approx(0.5 * np.sqrt(2 * np.log(len(on.grid))))
    assert off._union_z == 0.5


def test_bench_auto_reports_the_fixed_choice_a_generated_traces_chain_favours():
    model = GilbertElliottDelay()
    item = SuiteTrace("ge-n16", "ge", model.sample(20, 16, seed=0), 16, 2.2013, generator=model)
    row = evaluate(item, "additive", OnlineConfig(), bayes=True)
    assert row["bayes_regret"] >= 0 and row["bayes_label"]
    assert "bayes_regret" not in evaluate(item, "additive", OnlineConfig())


def test_bench_auto_reports_each_source_and_held_out_seeds_apart():
    """The JSON's by_source has a line per source and load model (regret per trace under both
    load models), and the table lists held-out rows apart from the totals."""
    ge = SuiteTrace("ge-n16", "ge", GilbertElliottDelay().sample(20, 16, seed=0), 16, 2.2013)
    held = SuiteTrace("ge-n16-seed2", "ge-heldout", GilbertElliottDelay().sample(20, 16, seed=2), 16, 2.2013)
    kinds = ("additive", "proportional")
    rows = [evaluate(item, kind, OnlineConfig()) for item in (ge, held) for kind in kinds]
    groups = _by_source(rows)
    assert [(g["source"], g["load_model"]) for g in groups] == [
        (source, kind) for source in ("ge", "ge-heldout") for kind in kinds]
    assert all(g["runs"] == 1 and 0 <= g["met"] <= 1 for g in groups)
    result = {"rows": rows[:2], "held_out": rows[2:], "by_source": groups, "meta_selection": None,
              "summary": {"runs": 2, "max_regret": 0.0, "mean_regret": 0.0, "max_vs_uncoded": 0.0,
                          "misses": 0}}
    table = markdown_table(result)
    assert "| ge-heldout | proportional | 1 |" in table and "ge-n16-seed2 | additive" in table


def test_a_late_result_revises_what_a_delayed_candidate_waited_for():
    """A delayed candidate that waited for a cut worker keeps the stragglers it recorded, but
    once that worker's result is in, its round costs the wait for it (not the guess)."""
    tuner = OnlineTuner(8, 16, LoadModel("additive", 0.0), OnlineConfig(start="uncoded", min_history=4))
    times = np.array([1.0, 1.02, 1.04, 1.06, 1.08, np.nan, np.nan, np.nan])
    tuner.observe(0, times, 1 / 8, 1.1)
    columns, kept = tuner.evidence.guessed[0][0]
    first = columns[kept == 2]  # waited for the fastest cut worker, guessed at twice the fastest
    assert len(first) and (columns >= tuner.replay.bounds[1]).all()
    a, c = tuner.replay.affine()
    assert np.allclose(tuner.costs[0, first], a[first] * 2.0 + c[first])
    tuner.observe_late(0, 5, 1.5)
    tuner.observe(1, np.ones(8), 1 / 8, 1.0)
    assert np.allclose(tuner.costs[0, first], a[first] * 1.5 + c[first])


def test_a_switch_pays_the_drain_and_the_tail_but_not_between_policies():
    tuner = OnlineTuner(8, 16, LoadModel("additive", 1.0), OnlineConfig(start="uncoded", min_history=8))
    for r in range(3):
        tuner.observe(r, _two_speed_round(8, 1), 1 / 8, 3.1)
    window = tuner.costs[:3]
    delays, grid = tuner._delays, tuner.grid.candidates
    cost = tuner._switch_cost(window, 0)  # from uncoded: T = 0 is free, a delayed scheme its tail
    assert not cost[delays == 0].any()
    assert np.allclose(cost[delays > 0], delays[delays > 0] * window[:, delays > 0].mean(axis=0))
    msgc = next(i for i, c in enumerate(grid) if c.scheme == "msgc")
    tuner.current = grid[msgc]
    cost = tuner._switch_cost(window, msgc)
    same = tuner._codes == tuner._codes[msgc]
    assert same.sum() > 1 and not cost[same].any()
    assert (cost[delays == 0] > 0).all()  # the drain round carries both loads


def test_no_move_rests_on_a_guess_without_data():
    """Round 0 under GC cuts 2 workers and no ratio tells how slow they are: uncoded's cost is a
    guess, so the tuner cannot move there on it; a full round gives it data."""
    tuner = OnlineTuner(16, 16, LoadModel("additive", 1.0))
    times = np.concatenate([1.0 + 0.01 * np.arange(14), np.full(2, np.nan)])
    tuner.scheme.record(0, np.isfinite(times))
    tuner.observe(0, times, tuner.scheme.round_load(0), 1.2)
    assert tuner.evidence.blind[0] and tuner.current.scheme != "uncoded"
    tuner.scheme.record(1, np.ones(16, dtype=bool))
    tuner.observe(1, 1.0 + 0.01 * np.arange(16), tuner.scheme.round_load(1), 1.2)
    assert not tuner.evidence.blind.any()


def test_a_rounds_late_results_are_one_event_and_old_checkpoints_restore():
    """Late results that come in one after another for one round are one event of arrays; a
    state with one event per late result (checkpoints before batches) restores the same."""
    trace = GilbertElliottDelay().sample(24, 32, seed=2)
    tuner = OnlineTuner(32, 20, LoadModel("additive", 1.0))
    simulate(tuner.scheme, trace, tuner, LoadModel("additive", 1.0))
    state = tuner.state()
    batches = [e for e in state["events"] if e["kind"] == "lates"]
    assert batches and all(isinstance(e["times"], np.ndarray) for e in batches)
    assert any(len(e["times"]) > 1 for e in batches)
    old = dict(state, events=[single for e in state["events"] for single in (
        [{"kind": "late", "r": e["r"], "worker": int(w), "time": float(t)}
         for w, t in zip(e["workers"], e["times"])] if e["kind"] == "lates" else [e])])
    for saved in (state, old):
        again = OnlineTuner(32, 20, LoadModel("additive", 1.0))
        again.restore(saved, tuner.scheme)
        assert np.array_equal(again.costs, tuner.costs) and np.array_equal(again.ratios, tuner.ratios)
