"""The scheme state machine shared by the simulator and the live coordinator.

Each round r a driver asks, in this order:

1. ``plan(r)``: the mini-tasks each worker runs in round r, a :class:`Plan` of task blocks
   (``plan[w]`` is worker w's list of :class:`MiniTask`, built on demand);
2. ``conforms(r, stragglers)``: is this straggler set inside the scheme's straggler model;
3. ``record(r, arrived)``: which workers' round-r results arrived (all-or-nothing per worker);
4. ``decodable(t)`` / ``decode(t)``: is job t complete, and with which coefficients over which
   received results, a :class:`Decoding` (arrays; iterating gives (ResultKey, coefficient)).
   Σ coefficient · result equals the full gradient of job t.

Every step costs O(n) numpy work per round and no Python object per worker; only a driver that
asks for ``plan[w]`` or iterates a decoding builds objects, for the workers it asks about.

Invariant: if every recorded round conforms (a round that did not conform was waited out and is
recorded with everyone arrived), every job t < jobs is decodable by the end of round t + delay.

Exactness (:mod:`gcode.codes.exactness`): every decode is within the decode error budget. With
certified codes (``certified``) that follows from the straggler model alone. A scheme with an
uncertified code (a cyclic code too large to enumerate) also asks, in ``conforms``, whether every
job whose decoding round r's arrivals settle would decode within the budget; a straggler set
that the model allows but that fails this is refused like one the model forbids, so the round
waits, in the simulator and live alike. ``decode_checks`` counts those rounds, the decodes that
took a least-norm vector over more workers than usual, and (SR-SGC) the workers asked to redo a
job beyond the model's need so that it decodes within the budget.

``history`` holds each round's recorded stragglers; ``counted`` holds the ones that count against
the straggler model in later rounds (the same masks, unless a scheme proves a round's stragglers
harmless, as SR-SGC does for a round that decodes its own job).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod

import numpy as np

from .gradient_code import DecodeError
from .models import StragglerModel
from .plan import Decoding, MiniTask, Plan, TaskBlock


def coded_task(code, worker: int, job: int, slot: int = 0, chunk_offset: int = 0) -> MiniTask:
    """``worker``'s task of gradient code ``code``, over chunks numbered from ``chunk_offset``."""
    return MiniTask(job, slot, *code.row_tuples(worker, chunk_offset))


def mask_text(mask: np.ndarray) -> str:
    """A bool mask as a string of '0'/'1' (the event log's arrival masks)."""
    return (np.asarray(mask, dtype=np.uint8) + ord("0")).tobytes().decode("ascii")


class CodeBacked:
    """Mixin for schemes whose job data are exactly the parts of one gradient code ``self.code``."""

    @property
    def load(self) -> float:
        return self.code.load

    @property
    def chunk_fractions(self) -> np.ndarray:
        return self.code.part_fractions

    @property
    def chunk_groups(self) -> tuple[int, ...]:
        return self.code.part_groups

    @property
    def codes(self) -> tuple:
        return (self.code,)


class Scheme(ABC):
    """Base class: round bookkeeping, history and the driver-facing protocol."""

    name: str
    #: False for approximations (``ignore``): the decoded gradient is not the exact sum
    exact: bool = True
    #: True when worker w's round-(r+1) tasks depend only on w's own arrivals (and on which jobs
    #: are decoded, which round r's record cannot change): once w's round-r results arrived,
    #: ``next_plan_if_all_arrive(r)[w]`` is w's next task list whoever else arrives. A live
    #: coordinator may then send it at w's arrival (``train.dispatch = "arrival"``).
    plans_from_own_arrivals: bool = False

    def __init__(self, n: int, jobs: int | None):
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got n={n!r}")
        if jobs is not None and (not isinstance(jobs, (int, np.integer)) or jobs < 1):
            raise ValueError(f"jobs must be an integer >= 1, got jobs={jobs!r}")
        self.n = int(n)
        self.jobs = None if jobs is None else int(jobs)
        self.history: list[np.ndarray] = []
        #: the straggler masks that later rounds' model checks see (see the module docstring)
        self.counted: list[np.ndarray] = []
        #: every state-changing call, in order; replaying them rebuilds the state (checkpoints)
        self.events: list[list] = []
        self._plans: dict[int, Plan] = {}
        self._decoded: set[int] = set()
        #: rounds in which a set the model allows was refused for a decode over the budget
        self.refused_rounds: set[int] = set()
        self.min_norm_decodes = 0
        #: workers planned to redo a job beyond the model's need, for the budget (SR-SGC)
        self.extra_repeats = 0

    # ---- properties every scheme defines -------------------------------------------------
    @property
    @abstractmethod
    def delay(self) -> int:
        """T: job t is decodable by the end of round t + T."""

    @property
    @abstractmethod
    def load(self) -> float:
        """Normalized load: data one worker processes per round, as a fraction of one job."""

    @property
    @abstractmethod
    def chunk_fractions(self) -> np.ndarray:
        """Fraction of one job's data in each chunk; sums to 1."""

    @property
    def chunk_groups(self) -> tuple[int, ...]:
        """Sizes of the consecutive groups of equal chunks that sample allocation rounds as one
        (:mod:`gcode.codes.chunking`); one group unless a scheme has several codes."""
        return (len(self.chunk_fractions),)

    @property
    @abstractmethod
    def model(self) -> StragglerModel:
        """The straggler model under which decoding is guaranteed."""

    @property
    def message_dtype(self) -> np.dtype:
        """dtype workers use for their result arrays (fp64 only when a code needs it)."""
        return np.result_type(np.float32, *(code.message_dtype for code in self.codes))

    @property
    def codes(self) -> tuple:
        """The gradient codes this scheme decodes with (none for uncoded chunks)."""
        return ()

    @property
    def certified(self) -> bool:
        """Every code is certified: the straggler model alone guarantees exact decodes."""
        return all(code.certified for code in self.codes)

    @property
    def decode_checks(self) -> dict:
        """What the exactness rule did (module docstring): the worst error factor of any decode
        (the budget when checked per set), rounds refused, least-norm decodes, extra repeats."""
        return {"certified": self.certified,
                "error_bound": max((code.error_bound for code in self.codes), default=0.0),
                "refused_rounds": len(self.refused_rounds), "min_norm_decodes": self.min_norm_decodes,
                "extra_repeats": self.extra_repeats}

    @property
    def max_tasks_per_round(self) -> int:
        """The most mini-tasks one worker runs in a round (its result holds one message each)."""
        return 1

    @property
    def params(self) -> dict:
        """The constructor parameters (besides n and jobs), for logs and JSON."""
        return {}

    @property
    def spec(self) -> dict:
        """What ``make_scheme`` needs to rebuild this scheme (name, n, jobs, parameters)."""
        from . import SCHEMES
        accepted = SCHEMES[self.name][1]
        return {"name": self.name, "n": self.n, "jobs": self.jobs,
                "params": {k: v for k, v in self.params.items() if k in accepted}}

    @property
    def total_rounds(self) -> int:
        """Rounds needed to finish all jobs: jobs + delay."""
        if self.jobs is None:
            raise ValueError("total_rounds needs a finite number of jobs")
        return self.jobs + self.delay

    def job_exists(self, t: int) -> bool:
        return t >= 0 and (self.jobs is None or t < self.jobs)

    def round_load(self, r: int) -> float:
        """Load charged to round r (constant for a single scheme, as in the paper's replay)."""
        return self.load

    def chunk_fractions_for(self, t: int) -> np.ndarray:
        """Chunk fractions of job t (the same for every job of a single scheme)."""
        return self.chunk_fractions

    def chunk_groups_for(self, t: int) -> tuple[int, ...]:
        """Chunk groups of job t (the same for every job of a single scheme)."""
        return self.chunk_groups

    def decode_deadline(self, t: int) -> int:
        """The round by whose end job t is decodable under a conforming pattern."""
        return t + self.delay

    # ---- the protocol ----------------------------------------------------------------------
    def plan(self, r: int) -> Plan:
        """Mini-tasks per worker for round r (computed once; r must be the next round)."""
        if r != len(self.history):
            raise ValueError(f"plan({r}) called but the next round is {len(self.history)}")
        if r not in self._plans:
            self._plans[r] = Plan(self.n, self._plan(r))
        return self._plans[r]

    def conforms(self, r: int, stragglers: np.ndarray) -> bool:
        """The straggler model allows ``stragglers`` in round r and, with an uncertified code,
        every decode they settle is within the budget (module docstring)."""
        if r != len(self.history):
            raise ValueError(f"conforms({r}) called but the next round is {len(self.history)}")
        mask = self._mask(stragglers, "stragglers")
        if not self.model.conforms(self.counted, mask):
            return False
        if self.certified or self._decodes_in_budget(r, ~mask):
            return True
        self.refused_rounds.add(r)
        return False

    def record(self, r: int, arrived: np.ndarray) -> None:
        """Record round r: ``arrived[i]`` means all of worker i's round-r results arrived."""
        arrived = self._mask(arrived, "arrived")
        for block in self.plan(r).blocks:
            workers = np.flatnonzero(block.workers & arrived)
            if len(workers):
                self._accept(block, r, workers)
        self.counted.append(self._counted_stragglers(r, ~arrived))
        self.history.append(~arrived)
        self.events.append(["record", r, mask_text(arrived)])
        self._plans.pop(r - self.delay - 1, None)

    def accept_late(self, r: int, worker: int) -> None:
        """Use worker's round-r results that arrived after round r ended (history unchanged)."""
        if r >= len(self.history):
            raise ValueError(f"round {r} has not been recorded yet")
        plan = self._plans.get(r)
        if plan is None:
            return
        self.events.append(["late", r, int(worker)])
        for block in plan.blocks:
            if block.workers[worker] and block.job not in self._decoded:
                self._accept(block, r, np.array([int(worker)]))

    def fork(self) -> Scheme:
        """A copy whose record/plan calls leave this scheme untouched (history shared read-only:
        lists are copied, their arrays never written)."""
        clone = copy.copy(self)
        clone.history, clone.counted, clone.events = list(self.history), list(self.counted), []
        clone._plans, clone._decoded = dict(self._plans), set(self._decoded)
        clone.refused_rounds = set(self.refused_rounds)
        self._fork_state(clone)
        return clone

    def _fork_state(self, clone: Scheme) -> None:
        """Give ``clone`` its own copy of the scheme-specific state that record() mutates."""
        raise NotImplementedError(f"{self.name} cannot fork")

    def next_plan_if_all_arrive(self, r: int) -> Plan:
        """Round r+1's plan should every worker's round-r results arrive (this scheme unchanged).
        Under ``plans_from_own_arrivals``, row w is w's actual next task list once w arrived."""
        clone = self.fork()
        clone.record(r, np.ones(self.n, dtype=bool))
        return clone.plan(r + 1)

    def is_decoded(self, t: int) -> bool:
        return t in self._decoded

    def decodable(self, t: int) -> bool:
        return self.job_exists(t) and t not in self._decoded and self._decodable(t)

    def decode(self, t: int) -> Decoding:
        """Coefficients over received results whose weighted sum is job t's full gradient."""
        if not self._decodable(t):
            raise DecodeError(f"{self.name}: job {t} is not decodable yet")
        decoding = self._decode(t)
        if not isinstance(decoding, Decoding):
            decoding = Decoding.from_pairs(decoding)
        self._decoded.add(t)
        self.events.append(["decode", t])
        self._forget(t)
        return decoding

    def _mask(self, values, name: str) -> np.ndarray:
        mask = np.asarray(values, dtype=bool)
        if mask.shape != (self.n,):
            raise ValueError(f"{name} must be a bool array of shape ({self.n},), got {mask.shape}")
        return mask

    def _coded(self, code, arrived: np.ndarray, rounds, slots) -> Decoding:
        """:meth:`Decoding.coded`, counting a least-norm decode."""
        self.min_norm_decodes += code.decode_uses_min_norm(arrived)
        return Decoding.coded(code, arrived, rounds, slots)

    def _decodes_in_budget(self, r: int, arrived: np.ndarray) -> bool:
        """Whether every job whose decode round r's arrivals ``arrived`` settle (no later round
        can add to its decode set) decodes within the budget; asked only with an uncertified
        code, while round r's plan is current."""
        return True

    def _counted_stragglers(self, r: int, stragglers: np.ndarray) -> np.ndarray:
        """The part of round r's stragglers that later model checks count (all of them here).
        Called by ``record`` while round r's plan is still current."""
        return stragglers

    # ---- what each scheme implements -------------------------------------------------------
    @abstractmethod
    def _plan(self, r: int) -> list[TaskBlock]:
        """Round r's task blocks, in slot order (empty blocks are dropped)."""

    @abstractmethod
    def _accept(self, block: TaskBlock, r: int, workers: np.ndarray) -> None:
        """Store that ``workers``' (int array) results of ``block`` in round r arrived;
        duplicates are ignored (the first arrival is kept)."""

    @abstractmethod
    def _decodable(self, t: int) -> bool: ...

    @abstractmethod
    def _decode(self, t: int) -> Decoding: ...

    @abstractmethod
    def _forget(self, t: int) -> None:
        """Drop job t's state once it is decoded."""
