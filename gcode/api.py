"""``gcode.fit``: train your own model, loss and dataset with a coding scheme, on Ray.

Three small typed configs, shaped like Ray Train's, say *how* to train; four functions say
*what*::

    result = gcode.fit(model_fn, loss_fn, dataset_fn, optimizer_fn,
                       scaling=gcode.ScalingConfig(workers=4),
                       run=gcode.RunConfig(jobs=40, batch_size=256, seed=0))
    model = result.models[0]   # one model: coding "auto" among uncoded and GC (T = 0)

``coding=gcode.CodingConfig(scheme="msgc", B=1, W=2, lam=2)`` (delay T = 1) trains M = T+1 = 2
models round-robin instead, each getting half of the 40 steps
(``result.metrics["models"]``, ``["steps_per_model"]``).

The configs are declared with every other setting in :mod:`gcode.config.settings` (docs/API.md
lists their fields); they are validated in one place, and errors name the field as you wrote it
(``coding.B: must be >= 1, got 0``).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .config import (
    CheckpointConfig,
    CodingConfig,
    ConfigError,
    InjectConfig,
    LogConfig,
    RunConfig,
    ScalingConfig,
    from_train_config,
    in_public_words,
    public_field,
    speaking,
    to_train_config,
)
from .config.spelling import front


@dataclass
class FitResult:
    """What :func:`fit` returns (:data:`FIT_RESULT_FIELDS` says what each field holds)."""

    metrics: dict
    models: list
    checkpoint: str | None


FIT_RESULT_FIELDS = {
    "metrics": "what `gcode train --json` prints: runtime_s, rounds, waits, decoded_jobs, "
               "models (M), steps_per_model (the least-trained model's optimizer steps; each "
               "model's in updates_per_model), final_loss per model, param_checksum, "
               "max_decode_rel_error, ...",
    "models": "the M trained `nn.Module`s, on CPU (job t trained model t mod M); one unless "
              "RunConfig(models=M) or a delayed scheme asks for more",
    "checkpoint": "the final checkpoint's folder (always written at the end when "
                  "RunConfig(checkpoint=CheckpointConfig(dir=...))), or None; load its models "
                  "with gcode.load_checkpoint(path, model_fn=...)",
}

#: the keys of the record that ``progress=callable`` receives after every round (the line that
#: ``LogConfig(jsonl=...)`` writes); the last four appear only when they apply
PROGRESS_FIELDS = {
    "round": "this round's index, from 0",
    "rounds": "the rounds the run takes: jobs + T",
    "duration_s": "seconds from the round's dispatch to its end",
    "wall_time_s": "seconds since the run started, at the round's end",
    "wait_s": "seconds the coordinator waited for the round's results",
    "cut_s": "the policy's cut, seconds after dispatch (None: no cut)",
    "fell_back": "whether the stragglers at the cut broke the scheme's model, so that the round "
                 "waited for more workers (a 'wait')",
    "stragglers": "the workers whose results the round did not use",
    "failures": "worker failures seen in the round: {round, worker, attempt, reason} each",
    "arrival_s": "{worker: seconds after dispatch when its results arrived}",
    "compute_s": "{worker: seconds it computed}",
    "sleep_s": "{worker: injected seconds it slept}",
    "decoded": "the jobs decoded in this round: {job, model, loss, lr, grad_norm} each (the "
               "job's mean loss per sample, the learning rate its optimizer step used, the decoded "
               "mean gradient's L2 norm before clipping), with clip_factor when max_grad_norm "
               "clipped it and rel_error under check_decode",
    "decoded_jobs": "jobs decoded so far",
    "jobs": "the jobs the run computes",
    "waits": "rounds so far that fell back",
    "loss": "the mean loss of the newest decoded job (None before the first)",
    "late_used": "results used after their round's cut, so far",
    "load": "the round's normalized load: the largest share of a job's samples one worker computes",
    "next_started_early": "whether the next round was dispatched before this round's decodes "
                          "and steps (pipeline)",
    "head_start_s": "{worker: seconds its tasks were sent before the round started} (dispatch "
                    "at arrival)",
    "cut_replies": "results of workers cut in earlier rounds that had finished computing: "
                   "{round, worker, compute_s, sleep_s} each",
    "fallback_stragglers": "the stragglers at the cut that broke the scheme's model (rounds that "
                           "fell back)",
    "evals": "every model's held-out loss (and accuracy): {model, updates, loss, accuracy} each "
             "(rounds that eval_every selects)",
}


def fit(model_fn, loss_fn, dataset_fn, optimizer_fn, *, coding: CodingConfig | None = None,
        scaling: ScalingConfig | None = None, run: RunConfig | None = None,
        collate_fn: Callable | None = None, eval_dataset_fn: Callable | None = None,
        metric_fn: Callable | None = None, scheduler_fn: Callable | None = None,
        callbacks: Iterable | None = None, progress: bool | Callable[[dict], None] = True,
        pool=None) -> FitResult:
    """Train live on Ray with a coding scheme and return the metrics and trained models.

    * ``model_fn() -> nn.Module``: gcode seeds torch before each call, so replicas start equal;
    * ``loss_fn(model, batch) -> Tensor`` of shape ``(len(batch),)``: the per-sample losses;
    * ``dataset_fn() -> Dataset``: a map-style dataset, called once on each worker, which reads
      only the items of its chunks (nothing of the dataset travels through Ray);
    * ``optimizer_fn(params) -> torch.optim.Optimizer``;
    * ``collate_fn``: turns a list of items into a batch (default
      ``torch.utils.data.default_collate``: tensors, tuples and dicts);
    * ``eval_dataset_fn() -> Dataset``: the held-out set that ``RunConfig(eval_every=K)``
      evaluates every model on, every K rounds (its mean loss);
    * ``metric_fn(model, batch) -> Tensor`` of shape ``(len(batch),)``: optional, each held-out
      sample's correctness (1.0 right, 0.0 wrong), averaged into the reported ``accuracy``;
      ``model`` is in eval mode under ``torch.no_grad()``, ``batch`` what ``collate_fn`` made of
      held-out items, on the coordinator's device;
    * ``scheduler_fn(optimizer) -> torch.optim.lr_scheduler.LRScheduler``: optional, stepped once
      after every optimizer step of its model (with M models, each counts its own steps),
      checkpointed and resumed with it; ``RunConfig(max_grad_norm=...)`` clips each decoded
      gradient first (:mod:`gcode.train.step`);
    * ``callbacks``: :class:`gcode.callbacks.Callback` objects (``EarlyStopping``,
      ``TensorBoardLogger``, ``MLflowLogger``, your own) told of every decoded job, evaluation,
      round, checkpoint and the end; one may stop the run;
    * ``progress``: True for a progress bar on stderr, or a callable given each round's record
      (its keys: ``gcode.api.PROGRESS_FIELDS``, listed in docs/API.md);
    * ``pool``: running worker actors to reuse (:func:`gcode.runtime.start_workers`).

    Exactness: a coded run's decoded gradient equals the uncoded run's within fp32 summation
    order (about 1e-7 relative), which chaotic optimizers such as AdamW can amplify over many
    steps. ``RunConfig(exact_blocks=K)`` makes it bit-identical: each batch is cut into blocks
    of K samples, every chunk is whole blocks, a worker runs one backward pass per block and
    sums in fp64, and the decoded sum is rounded to fp32 once, so every scheme, worker count
    and straggler pattern (bf16 too) gives the same bits, except for rare ties (docs/TRAINING.md,
    "Bit-identical runs").

    Ray: a ``ray.init()`` already made in this process is used as it is; otherwise gcode joins
    ``ScalingConfig(address=...)`` (or $RAY_ADDRESS), or starts a local loopback-only instance
    and shuts it down at the end.
    """
    with speaking("python"):
        return _fit(model_fn, loss_fn, dataset_fn, optimizer_fn, coding, scaling, run,
                    collate_fn, eval_dataset_fn, metric_fn, scheduler_fn, callbacks, progress,
                    pool)


def _fit(model_fn, loss_fn, dataset_fn, optimizer_fn, coding, scaling, run, collate_fn,
         eval_dataset_fn, metric_fn, scheduler_fn, callbacks, progress, pool) -> FitResult:
    from .callbacks import CallbackList
    from .runtime.run import execute
    from .train import Workload
    run = run if run is not None else RunConfig()
    cfg = to_train_config(coding or CodingConfig(), scaling or ScalingConfig(), run)
    workload = Workload(model_fn, loss_fn, dataset_fn, optimizer_fn, collate_fn, eval_dataset_fn,
                        metric_fn, name=getattr(model_fn, "__name__", "custom"),
                        scheduler_fn=scheduler_fn)
    if run.tags.get("model"):  # presets (gcode train): the run log names them
        tr = cfg.train
        workload = dataclasses.replace(workload, name=run.tags["model"], labels={
            "model": tr.model, "dataset": tr.dataset, "optimizer": tr.optimizer,
            "loss": getattr(loss_fn, "__name__", "")})
    monitor = None
    if run.monitor:
        from .telemetry.monitor import MonitorServer
        monitor = MonitorServer(run.monitor, token=run.monitor_token)
        print(f"monitor: serving on {' and '.join(monitor.addresses)} (gcode watch "
              f"{monitor.target})", file=sys.stderr)
    bar = None
    if progress is True:
        print(_starting(cfg, pool), file=sys.stderr, flush=True)
        bar = _ProgressBar()
    hooks = CallbackList(callbacks or ())
    try:
        try:
            metrics, models = execute(cfg, workload, pool=pool, monitor=monitor, callbacks=hooks,
                                      progress=bar.update if bar else (progress or None))
        except ConfigError as exc:  # found at run time (the dataset's size, a GPU): name it as set
            if front() != "python":
                raise
            raise in_public_words(exc) from None
    except BaseException:
        hooks.failed()  # loggers close, then the run's own error surfaces
        raise
    finally:
        if bar is not None:
            bar.close()
        if monitor is not None:
            monitor.close()
    result = FitResult(metrics, models, metrics.get("checkpoint"))
    hooks.end(result)
    return result


def load_checkpoint(path, *, model_fn: Callable, optimizer_fn: Callable | None = None,
                    scheduler_fn: Callable | None = None):
    """The trained models of a checkpoint (``result.checkpoint``, a ``round-NNNNNNNN`` folder, or
    a checkpoint directory: its newest), each built by ``model_fn()`` and loaded with its saved
    parameters and buffers, equal to ``result.models``; with ``optimizer_fn`` (and
    ``scheduler_fn``) also their optimizers (and schedulers) in their saved state. Returns a
    :class:`gcode.runtime.checkpoint.load.LoadedCheckpoint` (``.models``, ``.optimizers``,
    ``.schedulers``, ``.round``, ``.config``, ``.updates``). Nothing is unpickled."""
    from .runtime.checkpoint.load import load_checkpoint as load
    with speaking("python"):
        return load(path, model_fn=model_fn, optimizer_fn=optimizer_fn, scheduler_fn=scheduler_fn)


def _who() -> str:
    return "gcode train" if front() == "cli" else "gcode.fit"


def _starting(cfg, pool) -> str:
    """What a run is about to start: its workers, and the Ray they run on."""
    import os
    n = cfg.cluster.workers
    if pool is not None:
        where = "the given pool's actors"
    else:
        import ray
        address = cfg.cluster.address or os.environ.get("RAY_ADDRESS")
        if ray.is_initialized():
            where = "the Ray this process already started (ray.init())"
        elif address:
            where = f"the Ray cluster at {address}"
        else:
            where = ("a new local Ray instance (loopback only; a ray.init() made beforehand is "
                     "reused and saves its start)")
    return f"{_who()}: starting {n} workers on {where}..."


class _ProgressBar:
    """A tqdm bar on stderr, created at the first round, from the round a resumed run starts
    at; the setup before it is reported in one line."""

    def __init__(self):
        import time
        self.bar, self.started = None, time.perf_counter()

    def update(self, rec: dict) -> None:
        if self.bar is None:
            import time

            from tqdm import tqdm
            print(f"{_who()}: workers ready after {time.perf_counter() - self.started:.1f} s; "
                  f"training from round {rec['round']} of {rec['rounds']}", file=sys.stderr)
            self.bar = tqdm(total=rec["rounds"], initial=rec["round"], desc="train", unit="round",
                            file=sys.stderr, leave=False)
        loss = rec.get("loss")
        self.bar.set_postfix_str(f"decoded {rec['decoded_jobs']}/{rec['jobs']} "
                                 f"stragglers {len(rec['stragglers'])} waits {rec['waits']}"
                                 + (f" loss {loss:.4f}" if loss is not None else ""), refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = ["FIT_RESULT_FIELDS", "PROGRESS_FIELDS", "CheckpointConfig", "CodingConfig",
           "FitResult", "InjectConfig", "LogConfig", "RunConfig", "ScalingConfig", "fit",
           "from_train_config", "load_checkpoint", "public_field", "to_train_config"]
