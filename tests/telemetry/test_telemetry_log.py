"""Run logs: round trips of real simulations, corrupt files, replay and plot output."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from paths import TRACES

from gcode.cli import build_parser
from gcode.cli import runs as tcli
from gcode.codes import make_scheme
from gcode.sim import make_policy, simulate
from gcode.stragglers import load_trace
from gcode.telemetry.messages import (
    ROUND_FIELDS,
    ModelLoss,
    RoundRecord,
    Task,
    WorkerRound,
    params_from_proto,
    round_record,
    round_to_dict,
    run_config,
    run_summary,
    summary_from_rounds,
    to_dict,
    trace_from_proto,
    trace_to_proto,
)
from gcode.telemetry.runlog import MAGIC, RunLogError, RunLogWriter, read_run_log
from gcode.telemetry.sim_logging import simulate_with_log

BUNDLED = Path(__file__).resolve().parents[2] / "gcode" / "data" / \
    "lambda-cnn-w256-r30-canada.csv"


@pytest.fixture(scope="module")
def trace():
    path = TRACES / "lambda-cnn-w256-r30-canada.csv"
    return load_trace(path if path.is_file() else BUNDLED)


def _scheme():
    return make_scheme("msgc", n=8, jobs=10, B=1, W=2, lam=2)


@pytest.fixture(scope="module")
def sim_log(tmp_path_factory, trace):
    prefix = tmp_path_factory.mktemp("log") / "msgc"
    policy = make_policy("paper", mu=0.2)  # mu small enough that there are stragglers
    result = simulate_with_log(_scheme(), trace, policy, 2.2013, 1.0, prefix, trace_name="lambda")
    return prefix, result, policy


def test_sim_round_trip_matches_simulator(sim_log, trace):
    prefix, _result, policy = sim_log
    cfg, rounds, summary = read_run_log(f"{prefix}.pb")
    plain = simulate(_scheme(), trace, policy, 2.2013, 1.0)
    assert summary is not None
    assert summary.runtime_s == pytest.approx(plain.runtime_s, rel=1e-12)
    assert (summary.rounds, summary.waits, summary.decoded_jobs) == \
        (plain.rounds, plain.waits, plain.decoded_jobs)
    assert [r.round for r in rounds] == list(range(plain.rounds))
    assert [r.duration_s for r in rounds] == pytest.approx(plain.durations)
    strag = np.array([[w.straggler for w in r.workers] for r in rounds])
    np.testing.assert_array_equal(strag, plain.stragglers)
    assert strag.any(), "the test should exercise stragglers"
    assert sum(len(r.decoded_jobs) for r in rounds) == 10
    # config: scheme, typed parameters, the exact trace slice
    assert cfg.scheme == "msgc" and cfg.n == 8 and cfg.jobs == 10 and cfg.policy == "paper"
    assert params_from_proto(cfg.params) == {"B": 1, "W": 2, "lam": 2, "gc_code": "group"}
    np.testing.assert_array_equal(trace_from_proto(cfg.trace), trace[:, :8])
    # plans: the same mini-tasks the scheme hands out
    fresh = _scheme()
    plan0 = fresh.plan(0)
    assert [[(t.job, t.slot, tuple(t.chunks), tuple(t.coefficients)) for t in w.tasks]
            for w in rounds[0].workers] == \
        [[(t.job, t.slot, t.chunks, t.coefficients) for t in tasks] for tasks in plan0]
    assert rounds[-1].wall_time_s == pytest.approx(summary.runtime_s)


def test_jsonl_equals_pb(sim_log):
    prefix, _, _ = sim_log
    assert read_run_log(f"{prefix}.jsonl") == read_run_log(f"{prefix}.pb")
    assert read_run_log(prefix) == read_run_log(f"{prefix}.pb")  # a bare prefix works
    lines = Path(f"{prefix}.jsonl").read_text().splitlines()
    assert list(json.loads(lines[0])) == ["config"] and list(json.loads(lines[-1])) == ["summary"]
    assert json.loads(lines[1])["round"]["round"] == 0


def test_fast_round_dict_equals_json_format(sim_log):
    prefix, _, _ = sim_log
    _, rounds, _ = read_run_log(prefix)
    rec = RoundRecord()
    rec.CopyFrom(rounds[2])
    rec.losses.add(model=1, loss=float("nan"))
    rec.losses.add(model=0, job=3, loss=0.25)
    rec.max_decode_rel_error = 1e-7
    rec.workers[0].ClearField("arrival_s")
    rec.workers[1].compute_s = 0.125
    rec.workers[1].injected_sleep_s = 1.5
    rec.workers[2].failure = "ActorDiedError"
    rec.load = 0.5
    rec.switches.add(round=4, scheme="gc", params={"s": "2"})
    for r in (*rounds, rec):
        assert round_to_dict(r) == to_dict(r)
    for msg in (RoundRecord, WorkerRound, Task, ModelLoss):  # a new field needs the fast path too
        assert tuple(f.name for f in msg.DESCRIPTOR.fields) == ROUND_FIELDS[msg.DESCRIPTOR.name]


def test_crash_leaves_readable_prefix(tmp_path, sim_log):
    prefix, _, _ = sim_log
    data = Path(f"{prefix}.pb").read_bytes()
    cfg, rounds, _summary = read_run_log(f"{prefix}.pb")
    cut = tmp_path / "cut.pb"
    cut.write_bytes(data[:-7])  # the summary is cut short
    with pytest.raises(RunLogError, match="truncated"):
        read_run_log(cut)
    c2, r2, s2 = read_run_log(cut, allow_truncated=True)
    assert (c2, r2, s2) == (cfg, rounds, None)
    # a writer that dies mid-run (no summary) leaves a valid, unfinished log
    with pytest.raises(RuntimeError), RunLogWriter(tmp_path / "crash", cfg) as w:
        w.write_round(rounds[0])
        raise RuntimeError("boom")
    assert read_run_log(tmp_path / "crash") == (cfg, rounds[:1], None)
    assert read_run_log(tmp_path / "crash.jsonl") == (cfg, rounds[:1], None)
    jl = tmp_path / "cut.jsonl"
    jl.write_text(Path(f"{prefix}.jsonl").read_text()[:-30])
    with pytest.raises(RunLogError, match="truncated: line"):
        read_run_log(jl)
    assert read_run_log(jl, allow_truncated=True).summary is None


@pytest.mark.parametrize("content, match", [
    (b"", "truncated inside the file header"),
    (b"\x80\x03\x00garbage garbage garbage", "not a gcode run log"),
    (MAGIC + b"\xff\xff\xff\xff\x0f" + b"x" * 50, "garbage"),
    (MAGIC + b"\x05\xff\xff\xff\xff\xff", "not a valid LogEntry"),
    (MAGIC + b"\x02\x08\x01", "empty or unknown"),
    (MAGIC, "empty run log"),
])
def test_garbage_pb_is_rejected_clearly(tmp_path, content, match):
    path = tmp_path / "bad.pb"
    path.write_bytes(content)
    with pytest.raises(RunLogError, match=match):
        read_run_log(path)


def test_out_of_order_and_bad_jsonl(tmp_path, sim_log):
    prefix, _, _ = sim_log
    cfg, rounds, summary = read_run_log(prefix)
    with RunLogWriter(tmp_path / "x", cfg) as w:
        w.write_round(rounds[1])
        with pytest.raises(ValueError, match="rounds must increase"):
            w.write_round(rounds[0])
        w.write_summary(summary)
    with pytest.raises(ValueError, match="no summary yet"):
        w.write_round(rounds[2])
    lines = (tmp_path / "x.jsonl").read_text().splitlines()
    (tmp_path / "swap.jsonl").write_text("\n".join([lines[1], lines[0]]) + "\n")
    with pytest.raises(RunLogError, match="expected the RunConfig"):
        read_run_log(tmp_path / "swap.jsonl")
    (tmp_path / "junk.jsonl").write_text(lines[0] + "\n{\"nope\": 1}\n")
    with pytest.raises(RunLogError, match="line 2"):
        read_run_log(tmp_path / "junk.jsonl")
    with pytest.raises(RunLogError, match="no such run log"):
        read_run_log(tmp_path / "missing")


def test_round_record_constructor_validates_and_drops_nan():
    plans = [[], []]
    rec = round_record(round=3, plans=plans, arrival_s=[0.5, float("nan")],
                       stragglers=[False, True], duration_s=1.0, deadline_s=0.8,
                       losses={0: 1.5, 1: (7, 2.5)}, decoded_jobs=[1])
    assert rec.workers[0].arrival_s == 0.5 and not rec.workers[1].HasField("arrival_s")
    assert [w.late for w in rec.workers] == [False, True]
    assert [(x.model, x.HasField("job"), x.loss) for x in rec.losses] == \
        [(0, False, 1.5), (1, True, 2.5)]
    live = round_record(round=0, plans=plans, duration_s=1.0, compute_s={1: 0.25},
                        injected_sleep_s=[0.5, float("nan")], failures={0: "ActorDiedError"})
    assert not live.workers[0].HasField("compute_s") and live.workers[1].compute_s == 0.25
    assert live.workers[0].injected_sleep_s == 0.5
    assert not live.workers[1].HasField("injected_sleep_s")
    assert [w.failure for w in live.workers] == ["ActorDiedError", ""]
    with pytest.raises(ValueError, match="compute_s"):
        round_record(round=0, plans=plans, duration_s=1.0, compute_s={5: 1.0})
    with pytest.raises(ValueError, match="shape"):
        round_record(round=0, plans=plans, stragglers=[True], duration_s=1.0)
    with pytest.raises(ValueError, match="duration_s"):
        round_record(round=0, plans=plans, duration_s=float("nan"))
    with pytest.raises(ValueError, match="source"):
        run_config(source="replay", scheme="gc", n=2)
    sw = round_record(round=5, plans=plans, duration_s=1.0, load=0.75,
                      switches=[{"round": 6, "scheme": "msgc", "params": {"B": 1, "W": 2}}])
    assert sw.load == 0.75 and sw.switches[0].scheme == "msgc"
    assert params_from_proto(sw.switches[0].params) == {"B": 1, "W": 2}


def test_nonscalar_params_survive_as_json():
    segments = [{"start_job": 0, "scheme": "gc", "s": 1}, {"start_job": 4, "scheme": "msgc"}]
    cfg = run_config(source="sim", scheme="auto", n=4,
                     params={"segments": segments, "mu": 0.5, "gc_code": "fr", "flag": True})
    assert cfg.params["segments"].startswith("[")
    assert params_from_proto(cfg.params) == {"segments": segments, "mu": 0.5, "gc_code": "fr",
                                             "flag": "True"}


def test_trace_bytes_round_trip():
    times = np.random.default_rng(0).random((5, 3))
    t = trace_to_proto(times, "x")
    assert list(t.shape) == [5, 3] and t.dtype == "float64" and len(t.times) == 120
    np.testing.assert_array_equal(trace_from_proto(t), times)
    t.times = t.times[:-8]
    with pytest.raises(ValueError, match="bytes"):
        trace_from_proto(t)


def test_replay_prints_summary_table(sim_log, capsys):
    prefix, result, _ = sim_log
    parser = build_parser()
    assert tcli.cmd_replay(parser.parse_args(["replay", f"{prefix}.pb", "--rounds"])) == 0
    out = capsys.readouterr().out
    assert "runtime s" in out and f"{result.runtime_s:.4f}" in out and "msgc" in out
    assert "n=8" in out and "B=1" in out
    assert tcli.cmd_replay(parser.parse_args(["replay", f"{prefix}.jsonl", "--json"])) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["summary"]["runtime_s"] == pytest.approx(result.runtime_s)
    assert obj["finished"] is True and "times" not in obj["config"]["trace"]


def _png_ok(path):
    import matplotlib.image as mpimg
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert len(data) > 5_000, (path, len(data))
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
    assert float(img[..., :3].var()) > 1e-3, f"{path} looks blank"


def _live_like_log(prefix, trace):
    """A log shaped like a live run's: losses for M=2 models, wall time."""
    scheme = make_scheme("gc", n=4, jobs=6, s=1)
    cfg = run_config(source="live", scheme="gc", params=scheme.params, n=4, jobs=6, models=2,
                     model="mlp", dataset="digits", optimizer="sgd")
    wall = 0.0
    with RunLogWriter(prefix, cfg) as w:
        for r in range(6):
            times = trace[r, :4]
            stragglers = times > np.sort(times)[2]
            wall += float(times.max())
            w.write_round(round_record(round=r, plans=scheme.plan(r), arrival_s=times,
                                       stragglers=stragglers, duration_s=float(times.max()),
                                       decoded_jobs=[r], wall_time_s=wall,
                                       losses={r % 2: (r, 2.0 * math.exp(-0.3 * r))}))
            scheme.record(r, ~stragglers)
            scheme.decode(r)
        w.write_summary(run_summary(runtime_s=wall, rounds=6, waits=0, decoded_jobs=6,
                                    final_losses={0: 0.6, 1: 0.5}, param_checksums={0: "ab", 1: "cd"}))


def test_plot_writes_nontrivial_pngs(sim_log, tmp_path, trace, capsys):
    prefix, _, _ = sim_log
    parser = build_parser()
    out = tmp_path / "plots"
    assert tcli.cmd_plot(parser.parse_args(["plot", f"{prefix}.pb", "--out", str(out)])) == 0
    printed = capsys.readouterr()
    assert "skipped the loss plot" in printed.err
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == ["msgc_stragglers.png", "msgc_timeline.png"]
    for f in files:
        _png_ok(f)
    _live_like_log(tmp_path / "live", trace)
    assert tcli.cmd_plot(parser.parse_args(["plot", str(tmp_path / "live"), "--out", str(out)])) == 0
    _png_ok(out / "live_loss.png")
    assert tcli.cmd_replay(parser.parse_args(["replay", str(tmp_path / "live.jsonl")])) == 0
    text = capsys.readouterr().out
    assert "final batch losses: model 0: 0.60000, model 1: 0.50000" in text and "sha256 ab" in text


def test_summary_from_rounds_for_unfinished_runs(sim_log):
    prefix, _result, _ = sim_log
    _, rounds, summary = read_run_log(prefix)
    again = summary_from_rounds(rounds)
    assert (again.rounds, again.waits, again.decoded_jobs) == \
        (summary.rounds, summary.waits, summary.decoded_jobs)
    assert again.runtime_s == pytest.approx(summary.runtime_s)
