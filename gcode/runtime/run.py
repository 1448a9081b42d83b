"""The live run: ``execute(config, workload)`` drives a run on Ray and returns its metrics and
trained models; ``train(config)`` is the config-only entry point (presets named in the config),
which ``gcode train`` and ``gcode.fit`` share."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import ConfigError, TrainConfig, how_to_set, validate
from ..config.rules import check_injected_delays, check_memory
from .build import (
    arrays_workload,
    build_models,
    build_scheme,
    devices,
    live_run_config,
    preset_arrays,
    preset_workload_of,
)
from .data import WorkSpec, message_dtype
from .loop.compose import compose
from .loop.inject import DelaySource
from .loop.jsonl_log import JsonlWriter
from .loop.metrics import coordinator_bytes_per_round, run_metrics, steps_per_model
from .probe import StartupProbe
from .signals import SignalStop

ProgressFn = Callable[[dict], None]


def train(config: TrainConfig | None = None, *, progress: ProgressFn | None = None,
          dataset=None, model_factory: Callable | None = None, pool=None,
          monitor=None) -> dict[str, Any]:
    """Train the config's presets live on Ray; returns the run's metrics (see :func:`execute`).

    ``dataset`` (a :class:`gcode.train.Dataset` of arrays) replaces ``train.dataset`` and
    ``model_factory(input_shape, num_classes, **train.model_params)`` replaces ``train.model``;
    for anything else (other losses, batches, data read by index, GPUs) use ``gcode.fit``.
    """
    cfg = config if config is not None else TrainConfig()
    validate(cfg)
    workload = (preset_workload_of(cfg) if dataset is None and model_factory is None
                else arrays_workload(cfg, dataset if dataset is not None else preset_arrays(cfg),
                                     model_factory))
    return execute(cfg, workload, progress=progress, pool=pool, monitor=monitor)[0]


def execute(cfg: TrainConfig, workload, *, progress: ProgressFn | None = None, pool=None,
            monitor=None, in_process=None, callbacks=None) -> tuple[dict[str, Any], list]:
    """Run ``workload`` live under ``cfg``; returns (metrics, the M trained nn.Modules on CPU).

    ``in_process`` (a :class:`gcode.runtime.transport.inprocess.Script`) runs the same loop on
    fake workers in this process, on a virtual clock, instead of Ray workers (the loop's tests).

    ``progress(record)`` is called after every round with the round's log record (round,
    rounds, decoded_jobs, jobs, stragglers, loss, fell_back, ...; ``gcode.api.PROGRESS_FIELDS``).
    ``callbacks`` (a :class:`gcode.callbacks.CallbackList`) hears every round's record before
    ``progress`` does, and every checkpoint written; a stop one requests ends the run before
    its next round. ``pool`` (from
    :func:`gcode.runtime.cluster.start_workers`, at least n actors) reuses running actors instead
    of starting n new ones (Ray must then already be initialised); its first n actors are used.
    ``monitor`` (a started ``gcode.telemetry.monitor.MonitorServer``) streams every round's
    RoundRecord, as does the run log at ``log.run_log``; a stop requested through the monitor
    ends the run after the current round (``stopped`` in the metrics).

    Checkpoints (``cfg.checkpoint``, :mod:`gcode.runtime.checkpoint`): with ``checkpoint.dir`` the
    full run state is written there every ``checkpoint.every`` rounds and when a stop request
    ends the run; ``checkpoint.resume`` continues from a checkpoint, which must have been written
    with the same config (except the fields in ``checkpoint.SAFE_OVERRIDES``; get it with
    ``checkpoint.resume_config(path)``). A resumed run ends with the same parameters as the
    uninterrupted run (bit-exact for exact FR codes; see the module docs).

    Keys of the metrics: runtime_s (wall clock of the rounds), setup_s, rounds, waits (rounds
    that fell back), decode_checks (gcode.codes.base: rounds refused because a decode would
    miss the decode error budget, least-norm decodes), decoded_jobs, final_loss (per model: the
    mean loss of its last job's batch, decoded like its gradient) and param_checksum (per model:
    float64 sum of all parameters), signal (the SIGTERM or SIGINT that stopped the run, see
    :mod:`gcode.runtime.signals`, else None),
    evals (held-out loss/accuracy every train.eval_every rounds) and final_eval,
    max_decode_rel_error (with train.check_decode, else None), approximate, stragglers,
    failures, restarts, late_results_used, load, real_load and worker_samples (the per-worker
    load in whole samples), delay_T, models, compute_s_mean,
    response_s_mean, load_slope_s (response time minus injected sleep, per unit load: the
    simulator's load slope), overhead_s_per_round (all the coordinator's own work),
    exposed_overhead_s_per_round (the part of it that workers waited for: not overlapped with
    the next round's compute), pipelined_rounds (rounds dispatched before the previous round's
    decodes, see gcode.runtime.loop.coordinator.Coordinator.run), compute_s_per_round and
    timings_s_per_round (coordinator seconds per round by phase), coordinator_device, worker_peak_rss_mb,
    durations_s, stopped, checkpoints (paths written by this session), checkpoint (the last one,
    or None), resumed_from (the checkpoint this session started from, or None), sessions,
    session_runtime_s, late_results_dropped, exactness_probe (a coded run's startup probe,
    :mod:`gcode.runtime.probe`; None when not probed), data_plane, coordinator_bytes_per_round
    (bytes through the coordinator per round: calls, parameters shipped, results), and
    replica_checksums (the collective plane: each replica's digest, once every worker's compared
    bit-identical at the end; None on the star). Across a resume, runtime_s, rounds and
    the counters cover the whole run.
    """
    validate(cfg)
    from .checkpoint.lock import claimed
    with _one_blas_thread(), claimed(cfg), SignalStop() as stop:  # one run per checkpoint dir
        if callbacks is not None:
            progress = _both(callbacks.round, progress)
        return _execute(cfg, workload, progress, pool, monitor, in_process, callbacks, stop)


def _both(first: ProgressFn, then: ProgressFn | None) -> ProgressFn:
    def each_round(record: dict) -> None:
        first(record)
        if then is not None:
            then(record)
    return each_round


def _one_blas_thread():
    """Limit BLAS to one thread for the run: the coordinator's only BLAS work is small QR solves
    (cyclic decode vectors), which OpenBLAS's thread handoff makes up to 50x slower on a busy
    2-core box (measured 465 ms vs 9 ms for n=256, s=27); decoding itself is numpy ufuncs."""
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib
        return contextlib.nullcontext()


def _checkpoint_root(cfg: TrainConfig, ck) -> Path | None:
    """checkpoint.dir, checked before anything starts: writable, and not holding another run's
    checkpoints (a resumed run may write into the folder it resumes from)."""
    from .checkpoint import checkpoints_in, probe_writable
    if cfg.checkpoint.dir is None:
        return None
    root = Path(cfg.checkpoint.dir)
    existing = checkpoints_in(root)
    if existing:
        if ck is None:
            raise ConfigError("checkpoint.dir", f"{root} already holds checkpoints (newest "
                                                f"{existing[-1].name}); continue that run with "
                                                f"{how_to_set('checkpoint.resume', str(root))}, "
                                                f"or choose an empty directory")
        if root.resolve() != ck.path.parent.resolve():
            raise ConfigError("checkpoint.dir", f"{root} holds checkpoints of another run; a "
                                                f"resumed run writes into the directory it resumes "
                                                f"from ({ck.path.parent}) or an empty one")
    probe_writable(root)
    return root


def _remove_leftovers() -> None:
    """Remove what runs that died left behind (:mod:`gcode.runtime.cluster.leftovers`), and say so."""
    import sys

    from ..terminal import escape
    from .cluster.leftovers import sweep
    for what in sweep():
        print(f"gcode: removed what a run that died left behind: {escape(what)}", file=sys.stderr)


def _keep_run_log(prefix: str, round_: int) -> None:
    """Before a resumed session writes its run log, move an existing log at the same prefix to
    PREFIX.before-rNNNNNNNN.{pb,jsonl} so the earlier session's rounds are not overwritten."""
    base = Path(prefix)
    if base.suffix in (".pb", ".jsonl"):
        base = base.with_suffix("")
    for suffix in (".pb", ".jsonl"):
        path = base.with_name(base.name + suffix)
        if path.exists():
            path.rename(base.with_name(f"{base.name}.before-r{round_:08d}{suffix}"))


def _connect(cfg: TrainConfig, spec: WorkSpec, pool, in_process, pin: bool, scheme, models: int):
    """(transport, run context, clock): the pool's first n actors adopt the run's context
    and a transport connects them (on the collective plane they build the ``models`` replicas
    and form their group); or n in-process workers on a virtual clock."""
    n = cfg.cluster.workers
    ctx_id = uuid.uuid4().hex  # a fresh id per session: workers drop an earlier session's state
    collective = cfg.cluster.data_plane == "collective"
    if in_process is not None and collective:
        raise ConfigError("cluster.data_plane", "collective needs Ray workers (they hold the "
                                                "replicas); the in-process workers are star only")
    if in_process is not None:
        from .transport.inprocess import InProcessTransport
        transport = InProcessTransport(n, spec, ctx_id, in_process)
        return transport, (ctx_id, None), transport.clock
    import ray

    from .transport import make_transport
    from .transport.base import WallClock
    ctx = (ctx_id, ray.put(spec))
    pool.wait_ready(cfg.cluster.startup_timeout_s)
    pool.prepare(ctx, n, cfg.cluster.startup_timeout_s)
    if collective:
        from .collective.transport import CollectiveTransport
        from .transport.ray_transport import RayTransport
        transport = CollectiveTransport(pool.actors[:n], RayTransport(pool.actors[:n], ctx), models,
                                        cfg.train.mode == "delayed",
                                        accumulate_dtype(scheme, cfg.train.exact_blocks),
                                        "nccl" if cfg.cluster.gpus_per_worker >= 1 else "gloo",
                                        cfg.cluster.round_timeout_s, cfg.train.max_grad_norm,
                                        push_decodes=cfg.train.dispatch == "arrival",
                                        zero=cfg.cluster.zero)
        transport.start()
        return transport, ctx, WallClock()
    transport = make_transport(cfg.cluster.transport, pool.actors[:n], ctx,
                               cfg.cluster.startup_timeout_s, pin=pin)
    return transport, ctx, WallClock()


def accumulate_dtype(scheme, exact_blocks: int = 0) -> str:
    """The collective plane's accumulator dtype: float32 for uncoded, whose every decode sums
    all n results (DDP's allreduce), unless in the canonical-sum mode (``exact_blocks``);
    float64 otherwise, so that a decode is exact whichever workers' copies it sums (FR codes
    then decode bit for bit whoever straggles, as on the star) and coefficients other than 1
    lose nothing."""
    return "float32" if scheme.name == "uncoded" and not exact_blocks else "float64"


def _execute(cfg: TrainConfig, workload, progress, pool, monitor, in_process, callbacks,
             stop: SignalStop) -> tuple[dict[str, Any], list]:
    import torch

    from gcode.train import open_dataset
    from gcode.train.workload import describe, model_buffers

    from .checkpoint import (
        Checkpointer,
        check_resume_config,
        continue_from,
        read_checkpoint,
        restore_buffers,
        restore_coordinator,
        restore_scheme_and_policy,
    )
    from .cluster import ensure_ray, launch_workers, shutdown_ray
    from .cluster.reaper import Reaper

    setup_start = time.perf_counter()
    tr, n = cfg.train, cfg.cluster.workers
    # the workers' forward and backward: their precision, and blocks in the canonical-sum mode
    workload = dataclasses.replace(workload, precision=tr.precision, exact_blocks=tr.exact_blocks)
    ck = None
    if cfg.checkpoint.resume is not None:
        ck = read_checkpoint(cfg.checkpoint.resume)
        check_resume_config(ck.config, cfg)
        ck = continue_from(ck, cfg)  # more jobs: where the longer run continues
    ckpt_root = _checkpoint_root(cfg, ck)
    scheme, policy, default_models = build_scheme(cfg)
    probe = StartupProbe.of(cfg, scheme)  # the fresh scheme's job 0, before a resume replays it
    if ck is not None:
        scheme, policy = restore_scheme_and_policy(ck, scheme, policy)
    try:
        delays = DelaySource(cfg.inject, n, scheme.total_rounds, tr.seed)
    except ValueError as exc:
        raise ConfigError("inject", str(exc)) from None
    check_injected_delays(delays.table, cfg.cluster.round_timeout_s)
    own_pool = pool is None
    if not own_pool and len(pool.actors) < n:
        raise ConfigError("cluster.workers", f"the given pool has {len(pool.actors)} actors, "
                                             f"fewer than workers={n}")
    M = 1 if tr.mode == "delayed" else (tr.models or default_models)
    run_id = ck.tree["run"]["run_id"] if ck is not None else uuid.uuid4().hex
    device, decode_device, threads = devices(cfg)
    check_memory(cfg, workload.model_fn, M if device.type == "cpu" else 0)

    live = in_process is None
    if live:
        _remove_leftovers()
    started = live and ensure_ray(cfg.cluster)
    stop.reclaim()  # from Ray's handlers: SIGTERM ends the round and checkpoints
    own_pool = own_pool and live
    prev_threads = torch.get_num_threads()
    writer = recorder = transport = None
    reaper = Reaper.start(kill_tree=started) if live else None  # if this process is killed
    try:
        if own_pool:  # actors import torch while the driver builds its models
            pool = launch_workers(cfg.cluster)
        torch.set_num_threads(threads)
        dataset = open_dataset(workload.dataset_fn)  # its length and name: no item is read
        num_samples = len(dataset)
        if tr.batch_size > num_samples:
            raise ConfigError("train.batch_size", f"must be <= the dataset size {num_samples}, "
                                                  f"got {tr.batch_size}")
        models, optimizers, schedulers = build_models(cfg, workload, M, device)
        if cfg.cluster.zero:  # one line here, before any worker builds its shards
            from .collective.sharding import check_shardable
            check_shardable(optimizers[0], models[0])
        if ck is not None:  # before the spec sends their buffers to the workers
            restore_buffers(ck, models)
        d = models[0].numel
        eval_dataset = None
        if tr.eval_every and workload.eval_dataset_fn is not None:
            eval_dataset = open_dataset(workload.eval_dataset_fn, "eval_dataset_fn")
        spec = WorkSpec(workload=workload, seed=tr.seed, batch_size=tr.batch_size,
                        num_samples=num_samples, num_params=d,
                        use_gpu=cfg.cluster.gpus_per_worker > 0,
                        prefetch=cfg.cluster.reads_ahead,
                        buffers=model_buffers([model.module for model in models]),
                        # exact_blocks: a block's gradient must be the same bits on any GPU worker
                        deterministic=probe.deterministic or tr.exact_blocks > 0)
        writer = JsonlWriter(cfg.log.jsonl, resume_round=ck.round if ck is not None else None)
        messages = message_dtype(scheme, tr.exact_blocks)
        if cfg.log.run_log is not None or monitor is not None:
            from gcode.telemetry.recorder import RunRecorder
            if ck is not None and cfg.log.run_log is not None:
                _keep_run_log(cfg.log.run_log, ck.round)
            names = describe(workload, models[0].module, optimizers[0], dataset)
            recorder = RunRecorder(live_run_config(cfg, scheme, M, messages,
                                                   run_id[:16], names),
                                   log_prefix=cfg.log.run_log, monitor=monitor)
        transport, ctx, clock = _connect(cfg, spec, pool, in_process,
                                         "cuda" in (device.type, decode_device.type), scheme, M)
        # the result buffers a run keeps in flight (about T+2 rounds' per worker), made now
        transport.reserve_results(n, scheme.delay + 2, scheme.max_tasks_per_round * d
                                  * messages.itemsize)
        # a coupled model stops here (the collective plane probes through Ray, with gradients)
        probed = probe.run(getattr(transport, "star", transport), ctx[0], models[0], clock)
        coord = compose(cfg, scheme, policy, transport, clock, spec, models, optimizers, delays,
                        writer, ctx_id=ctx[0], schedulers=schedulers, run_id=run_id,
                        progress=progress,
                        recorder=recorder, decode_device=decode_device, decode_threads=threads,
                        eval_dataset=eval_dataset,
                        should_stop=lambda: stop.stop_reason or (
                            callbacks.stop_reason() if callbacks is not None else None))
        if hasattr(transport, "resume_hint"):  # the collective plane's failures name it too
            transport.resume_hint = coord.session.resume_hint
        if ck is not None:
            restore_coordinator(coord, ck)
        if ckpt_root is not None:
            coord.session.checkpointer = Checkpointer(
                ckpt_root, cfg.checkpoint.every, cfg.checkpoint.keep, marks=(cfg.scheme.jobs,),
                on_save=callbacks.checkpoint if callbacks is not None else None)
        setup_s = time.perf_counter() - setup_start
        session_s = coord.run()
        replicas = None  # the collective plane: a mismatch stops here, naming the replica
        if cfg.cluster.data_plane == "collective":
            replicas = {name: f"{value:014x}" for name, value in coord.reducer.check_replicas().items()}
        runtime_s = coord.session.runtime_before + session_s
        final_loss = [coord.stats.model_loss.get(m) for m in range(M)]
        final_eval = coord.final_evaluation()
        checksum = coord.models.checksums()
        if recorder is not None:
            recorder.finish(runtime_s=runtime_s, wall_time_s=runtime_s,
                            final_losses={m: v for m, v in enumerate(final_loss) if v is not None},
                            param_checksums={m: repr(c) for m, c in enumerate(checksum)},
                            checksum_algorithm="float64-sum",
                            max_decode_rel_error=coord.stats.max_rel_error,
                            stopped=coord.session.stopped, stop_reason=coord.session.stop_reason,
                            final_evals=final_eval or (),
                            models=M, steps_per_model=steps_per_model(coord),
                            data_plane=cfg.cluster.data_plane,
                            coordinator_bytes_per_round=coordinator_bytes_per_round(coord))
    finally:
        if transport is not None:
            transport.close()
        if writer is not None:
            writer.close()
        if recorder is not None:
            recorder.close()
        torch.set_num_threads(prev_threads)
        if own_pool and pool is not None:
            pool.kill()
        if started:
            shutdown_ray()
        if reaper is not None:
            reaper.close()
    metrics = run_metrics(cfg, coord, scheme, policy, pool, M, d, runtime_s, setup_s, session_s)
    metrics.update(final_loss=final_loss, final_eval=final_eval, param_checksum=checksum,
                   run_id=run_id[:16], coordinator_device=str(device),
                   decode_device=str(decode_device), decode_threads=threads,
                   transport=coord.transport.name, transport_calls=dict(coord.transport.stats),
                   model=workload.name, exactness_probe=probed and probed.as_dict(),
                   replica_checksums=replicas, signal=stop.name)
    return metrics, [model.module.cpu() for model in models]
