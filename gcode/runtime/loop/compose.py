"""Build a :class:`gcode.runtime.loop.coordinator.Coordinator` from its parts.

Each part owns its state and is handed the parts it uses; nothing reaches into another part's
fields. Who uses whom::

    Session, RunStats                  (what the run is and counts: everyone writes stats)
    ModelBank                          the M models and optimizers
    Decoder (the Reducer)              stored results and their fp64 sums (the star plane), or
                                       CollectiveReducer: the workers sum (the collective plane)
    JobBook    <- ModelBank, Decoder, transport           issue, decode, step, release
    Health     <- JobBook, ModelBank, RunStats            faulty worker, code or model?
    Reporter   <- Session                                 the policy's view, round records
    Pipeline   <- JobBook, Session, Reporter              may round r start early?
    Dispatcher <- JobBook, Pipeline, transport, delays    calls out, at arrival too
    Intake     <- Dispatcher, Decoder, Health, JobBook    results in: fetch, check, store
    LateResults<- Intake, Dispatcher                      results of ended rounds
    Arrivals   <- Intake, LateResults, Dispatcher         poll -> policy -> decision
"""

from __future__ import annotations

from collections.abc import Callable

from ...config import TrainConfig
from ..data import WorkSpec
from .arrivals import Arrivals
from .coordinator import Coordinator
from .decode import Decoder
from .dispatch import Dispatcher, Pipeline
from .health import DirectGradient, Health
from .inject import DelaySource
from .intake import Intake
from .jobs import JobBook
from .jsonl_log import JsonlWriter
from .late import LateResults
from .models import ModelBank
from .reporting import Reporter
from .stats import RunStats, Session


def compose(cfg: TrainConfig, scheme, policy, transport, clock, spec: WorkSpec, models: list,
            optimizers: list, delays: DelaySource, writer: JsonlWriter, *, ctx_id: str,
            schedulers: list | None = None,
            run_id: str = "", progress: Callable[[dict], None] | None = None, recorder=None,
            decode_device=None, decode_threads: int = 1, eval_dataset=None,
            should_stop: Callable[[], str | None] | None = None) -> Coordinator:
    """The coordinator of a run under ``cfg``: its parts built around ``transport`` (and the
    ``clock`` it runs on), the M ``models``, their ``optimizers`` and ``schedulers``."""
    tr, n, d = cfg.train, scheme.n, spec.num_params
    session = Session(run_id=run_id)
    stats = RunStats(models=len(models))
    bank = ModelBank(models, optimizers, tr.mode == "delayed", spec.workload,
                     hint=session.last_good_hint, schedulers=schedulers,
                     max_grad_norm=tr.max_grad_norm)
    if transport.carries_gradients:
        reducer = Decoder(d, streaming=tr.streaming_decode, threads=decode_threads,
                          device=decode_device)
    else:  # the collective plane: workers sum and step their replicas
        from ..collective.reducer import CollectiveReducer
        reducer = bank.replicas = CollectiveReducer(transport, stats, tr.batch_size, scheme,
                                                    tr.check_decode, tr.exact_blocks)
    direct = DirectGradient(spec)
    jobs = JobBook(scheme, bank, transport, reducer, stats, tr.batch_size, direct,
                   tr.check_decode, clock, hint=session.resume_hint)
    health = Health(jobs, bank, direct, stats, hint=session.last_good_hint)
    reporter = Reporter(scheme, policy, stats, session, n, writer, recorder, progress,
                        auto_slope=cfg.scheme.name == "auto" and cfg.scheme.load_slope is None,
                        should_stop=should_stop)
    pipeline = Pipeline(tr.pipeline, scheme, jobs, session, reporter.stop_requested)
    dispatcher = Dispatcher(transport, jobs, delays, ctx_id, cfg.inject.mode, cfg.faults, d,
                            stats, clock, pipeline, at_arrival=tr.dispatch == "arrival")
    intake = Intake(transport, dispatcher, reducer, scheme, stats, health, d, decode_threads, jobs)
    late = LateResults(transport, intake, dispatcher, scheme, stats, n, clock, policy)
    arrivals = Arrivals(transport, intake, late, dispatcher, scheme, policy, stats, clock,
                        cfg.cluster, hint=session.resume_hint)
    config = cfg.to_dict()
    config["checkpoint"]["resume"] = None
    return Coordinator(scheme=scheme, policy=policy, transport=transport, reducer=reducer,
                       clock=clock, session=session, stats=stats, models=bank, jobs=jobs,
                       pipeline=pipeline, dispatcher=dispatcher, late=late, arrivals=arrivals,
                       reporter=reporter, delays=delays, num_params=d, config=config,
                       eval_dataset=eval_dataset, eval_every=tr.eval_every)
