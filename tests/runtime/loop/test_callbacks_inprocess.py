"""gcode.callbacks in the loop, on in-process workers: the events and their order, early
stopping (a stopped run resumes), and the loggers (each tested when its package is installed)."""

import pytest
from runtime_helpers import config

from gcode.callbacks import Callback, CallbackList, EarlyStopping, MLflowLogger, TensorBoardLogger
from gcode.runtime.checkpoint import resume_config
from gcode.runtime.run import execute, preset_workload_of
from gcode.runtime.transport.inprocess import Script

SCHEME = {"name": "msgc", "B": 1, "W": 2, "lam": 1, "gc_code": "fr", "jobs": 16}


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_job_decoded(self, job):
        self.events.append(("job", job["job"], job["model"], job["lr"]))

    def on_evaluation(self, evals):
        self.events.append(("eval", evals[0]["round"], len(evals)))

    def on_round(self, record):
        self.events.append(("round", record["round"]))

    def on_checkpoint(self, path):
        self.events.append(("checkpoint", path))


def run(cfg, *callbacks):
    return execute(cfg, preset_workload_of(cfg), in_process=Script(),
                   callbacks=CallbackList(callbacks))[0]


def test_events_in_order(tmp_path):
    rec = Recorder()
    res = run(config(scheme=SCHEME, train={"eval_every": 4},
                     checkpoint={"dir": str(tmp_path), "every": 8}), rec)
    kinds = [e[0] for e in rec.events]
    assert kinds.count("round") == res["rounds"] and kinds.count("job") == 16
    assert sorted(e[1] for e in rec.events if e[0] == "job") == list(range(16))
    assert [e[1] for e in rec.events if e[0] == "eval"] == [3, 7, 11, 15]
    assert [e[1] for e in rec.events if e[0] == "checkpoint"] == res["checkpoints"]
    r3 = rec.events.index(("round", 3))  # a round's jobs and evaluation come before its record
    assert rec.events[r3 - 1][0] == "eval" and rec.events[r3 - 2][0] == "job"


def test_early_stopping_ends_the_run_and_it_resumes(tmp_path):
    """lr 50 diverges the held-out loss at once: patience 2 stops at the second evaluation."""
    stop = EarlyStopping(patience=1)
    cfg = config(scheme=SCHEME, train={"eval_every": 2, "optimizer": "sgd", "lr": 50.0},
                 checkpoint={"dir": str(tmp_path)})
    res = run(cfg, stop)
    assert res["stopped"] and res["stop_reason"].startswith("early stopping: held-out loss")
    assert stop.evaluations == 2 and res["decoded_jobs"] < 16
    rest = run(resume_config(tmp_path))
    assert rest["decoded_jobs"] == 16 and not rest["stopped"]


def test_early_stopping_checks_its_arguments():
    for bad in ({"patience": 0}, {"min_delta": -1}, {"metric": "f1"}):
        with pytest.raises(ValueError, match="EarlyStopping: "):
            EarlyStopping(**bad)
    with pytest.raises(TypeError, match="callbacks: each must be a gcode.callbacks.Callback"):
        CallbackList([print])


def test_tensorboard_logger(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    logger = TensorBoardLogger(tmp_path / "tb")
    res = run(config(scheme=SCHEME, train={"eval_every": 4}), logger)
    logger.on_end(None)
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"model0/loss", "model1/lr", "model0/grad_norm", "model1/eval_loss",
            "round/duration_s"} <= set(tags)
    assert [e.step for e in acc.Scalars("model0/loss")] == list(range(1, 9))
    assert len(acc.Scalars("round/stragglers")) == res["rounds"]


def test_mlflow_logger(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    import mlflow
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a local folder, no server
    logger = MLflowLogger(experiment="gcode-test", tracking_uri=(tmp_path / "mlruns").as_uri())
    res = run(config(scheme=SCHEME, train={"eval_every": 4}), logger)

    class Result:
        metrics = res
    logger.on_end(Result())
    client = mlflow.tracking.MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    history = client.get_metric_history(logger.run.info.run_id, "model1/loss")
    assert [m.step for m in history] == list(range(1, 9))
    assert client.get_run(logger.run.info.run_id).data.metrics["decoded_jobs"] == 16


def test_run_log_names_the_users_workload(tmp_path):
    """A workload of the user's own functions: the run log (and gcode replay) names its model
    class, dataset class, optimizer class and loss function; presets keep their names."""
    import dataclasses

    import torch

    from gcode.telemetry.report import config_lines
    from gcode.telemetry.runlog import read_run_log

    class TinyNet(torch.nn.Sequential):
        pass

    def my_loss(model, batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(model(x), y, reduction="none")

    cfg = config(scheme=SCHEME, log={"run_log": str(tmp_path / "run")})
    preset = preset_workload_of(cfg)
    mine = dataclasses.replace(
        preset, model_fn=lambda: TinyNet(torch.nn.Flatten(), torch.nn.Linear(64, 10)), loss_fn=my_loss,
        optimizer_fn=lambda p: torch.optim.AdamW(p, lr=0.01), labels=None)
    execute(cfg, mine, in_process=Script())
    line = next(x for x in config_lines(read_run_log(tmp_path / "run.pb").config)
                if x.startswith("training:"))
    assert "TinyNet on" in line and "optimizer AdamW" in line and "my_loss" in line
    execute(cfg.replace(**{"log.run_log": str(tmp_path / "preset")}), preset, in_process=Script())
    line = next(x for x in config_lines(read_run_log(tmp_path / "preset.pb").config)
                if x.startswith("training:"))
    assert "logistic on digits, optimizer sgd" in line
