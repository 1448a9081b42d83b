"""The collective data plane's :class:`Reducer` (:mod:`gcode.runtime.transport.base`): results stay
on the workers; the coordinator keeps their coded losses and tasks, and a decode queues each
worker's coefficients on the :class:`~gcode.runtime.collective.transport.CollectiveTransport`
(whose module docstring tells how decodes ride on the next calls). A checkpoint's decoder
section has the star plane's :class:`~gcode.runtime.loop.decode.Decoder` form, so either plane
resumes either's checkpoint where it can."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...codes import MiniTask, ResultKey
from ..data import message_dtype
from ..errors import DivergedError
from ..transport.base import PlaneStep
from .transport import CollectiveTransport

#: decodes between two checks that every worker's replicas are bit-identical
CHECK_EVERY = 10
#: bytes of one (result key, coefficient, task) entry in a decode request, as it travels
PAIR_BYTES = 64


class CollectiveReducer:
    """The collective plane's :class:`Reducer`: results stay on the workers; the coordinator
    keeps their coded losses and asks the workers to sum and step (module docstring)."""

    on_device = False

    def __init__(self, transport: CollectiveTransport, stats, batch_size: int, scheme,
                 check_decode: bool = False, exact_blocks: int = 0):
        self.transport, self.stats, self.batch_size = transport, stats, batch_size
        self.scheme, self.check_decode = scheme, check_decode
        self.message_dtype = message_dtype(scheme, exact_blocks).name
        self.losses: dict[ResultKey, float] = {}
        self.tasks: dict[ResultKey, MiniTask] = {}
        self.dtypes: dict[int, str] = {}  # job -> message dtype (to compute a lost result again)
        self.decodes = 0
        self.stepped = False  # the replicas stepped since the coordinator's models were read

    def stage(self, array: Any, threads: int = 1) -> tuple[Any, Any, Any]:
        return array, True, None  # results carry no gradient rows: nothing is staged

    def add(self, key: ResultKey, task: MiniTask, array: Any, loss: float = 0.0) -> None:
        self.losses.setdefault(key, float(loss))
        self.tasks.setdefault(key, task)
        self.dtypes.setdefault(task.job, self.message_dtype)

    def discard(self, keys: Any) -> None:
        for key in keys:
            self.losses.pop(key, None)
            self.tasks.pop(key, None)

    def flush(self, min_pending: int | None = None) -> None:
        """Workers fold when the coefficients come: nothing to do ahead."""

    def decode(self, t: int, decoding: list, unreached=()) -> tuple[PlaneStep, float]:
        """Job t's decode, queued for the workers' next calls (they sum and step before they
        compute; parameters ``unreached`` by every result are left without a ``.grad``);
        returns (a pending step, its batch loss). With ``check_decode`` the workers apply it
        now and the step is rank 0's, with the sum to check."""
        pairs: list[list] = [[] for _ in self.transport.actors]
        loss = 0.0
        for key, coefficient in decoding:
            task = self.tasks[key]
            pairs[key.worker].append((tuple(key), float(coefficient),
                                      (tuple(task.chunks), tuple(task.coefficients))))
            loss += float(coefficient) * self.losses[key]
        self.decodes += 1
        self.transport.defer(t, pairs, self.decodes % CHECK_EVERY == 0, 1.0 / self.batch_size,
                             self.dtypes.get(t, "float64"), self.check_decode, unreached)
        self.stats.coordinator_bytes += PAIR_BYTES * (len(decoding) + len(pairs))
        self.stepped = True
        self.forget(t)
        if not self.check_decode:
            return PlaneStep(pending=True), loss
        self.transport.settle()
        return self.step_of(t), loss

    def step_of(self, t: int) -> PlaneStep | None:
        """Job t's step as a worker reported it (None before a report came)."""
        report = self.transport.take_report(t)
        if report is None:
            return None
        if not report["finite"]:
            m = self.transport.model_of(t)
            raise DivergedError(f"model {m} diverged: job {t}'s all-reduced gradient is not "
                                f"finite on the workers (lower the learning rate?)")
        step = PlaneStep(report.get("lr"), report.get("grad_norm"), report.get("clip_factor", 1.0),
                         report.get("decoded"), report.get("params"))
        self.stats.coordinator_bytes += sum(a.nbytes for a in (step.decoded, step.params)
                                            if a is not None)
        return step

    def settle(self) -> None:
        """Every decode queued applied on the workers (their reports then come in)."""
        self.transport.settle()

    def forget(self, t: int) -> None:
        self.dtypes.pop(t, None)
        for key in [k for k, task in self.tasks.items() if task.job == t]:
            del self.losses[key], self.tasks[key]

    def forget_before(self, t: int) -> None:
        for key in [k for k, task in self.tasks.items() if task.job < t]:
            del self.losses[key], self.tasks[key]

    # ---- the coordinator's models ------------------------------------------------------------
    def refresh(self, bank) -> None:
        """Load the replicas' state into the coordinator's ``bank`` when they stepped since."""
        if self.stepped:
            self.stepped = False
            bank.load_state_dict(self.transport.replicas.state(), to_replicas=False)

    def push(self, state: list[dict]) -> None:
        """A state loaded into the coordinator's models goes to every replica (a resume)."""
        self.transport.replicas.load(state)

    def check_replicas(self) -> dict:
        """{replica: checksum} once every worker's replicas compared bit-identical."""
        return self.transport.replicas.checksums()

    # ---- checkpoint: the star's Decoder format, so either plane resumes either -------------
    def state_dict(self) -> dict:
        """The stored results of jobs in flight (fetched from the workers that keep them) in
        :meth:`gcode.runtime.loop.decode.Decoder.state_dict`'s form, without accumulators."""
        from ..loop.decode import signature
        arrays = self.transport.replicas.kept_results(list(self.losses))
        jobs: dict[int, list] = {}
        for key, task in self.tasks.items():
            jobs.setdefault(task.job, []).append(tuple(key))
        return {"streaming": False, "streamed": 0, "fallbacks": 0,
                "results": [[tuple(key), signature(self.tasks[key]), arrays[key], loss]
                            for key, loss in self.losses.items()],
                "jobs": [[t, {"acc": None, "loss": 0.0, "folded": [], "keys": sorted(keys)}]
                         for t, keys in sorted(jobs.items())]}

    def load_state_dict(self, state: dict) -> None:
        """A checkpoint's stored results: losses here, arrays back to the workers that made
        them. Results a star run had already folded into an accumulator are not in it, so
        such a checkpoint resumes on the star plane only."""
        if any(job["acc"] is not None for _, job in state["jobs"]):
            raise ValueError("this checkpoint holds partial sums of the star plane's decoder; "
                             "resume it with cluster.data_plane = star")
        items = []
        for key, sig, array, loss in state["results"]:
            k = ResultKey(*key)
            job, chunks, coefficients = sig
            self.tasks[k] = MiniTask(job=int(job), slot=k.slot, chunks=tuple(chunks),
                                     coefficients=tuple(coefficients))
            self.losses[k] = float(loss)
            self.dtypes[int(job)] = np.asarray(array).dtype.name
            items.append((k, int(job), np.asarray(array)))
        self.transport.replicas.keep_results(items)
