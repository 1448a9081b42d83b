"""The per-worker scheme state machines as they were before plans became arrays (issue 15):
one MiniTask per worker per round, dicts of ResultKeys, decode coefficients from the dense
encoding. A test oracle only: tests/codes/test_scheme_arrays.py drives it next to gcode.codes round
by round and requires the same plans, checks, decodability and decodings.

Kept as the original code, trimmed to the protocol; it shares only the straggler models and
the gradient codes' encodings with the package."""

from __future__ import annotations

import numpy as np

from gcode.codes import DecodeError, MiniTask, ResultKey
from gcode.codes.models import Bursty, SPerRound
from gcode.codes.srsgc import srsgc_s


def dense_task(code, worker, job, slot=0, offset=0) -> MiniTask:
    support = np.flatnonzero(code.encoding[worker])
    return MiniTask(job, slot, tuple(offset + int(c) for c in support),
                    tuple(float(c) for c in code.encoding[worker, support]))


def dense_decode(code, finished) -> dict[int, float]:
    """The original decode: FR's first finished member per group; cyclic: QR on the first n−s;
    the group code (added later): least squares on each group's first ρ+1 finished members with
    distinct nodes, in worker order."""
    finished = frozenset(finished)
    if code.kind == "group":
        out = {}
        for k, members in enumerate(code.groups):
            chosen, nodes = [], set()
            for w in (int(w) for w in members if int(w) in finished):
                if code.node_of[w] not in nodes and len(chosen) <= code.group_rho[k]:
                    chosen.append(w)
                    nodes.add(code.node_of[w])
            if len(chosen) <= code.group_rho[k]:
                raise DecodeError("group has too few finished nodes")
            parts = np.flatnonzero(code.encoding[members].any(axis=0))
            rows = code.encoding[np.ix_(chosen, parts)]
            a = np.linalg.lstsq(rows.T, np.ones(len(parts)), rcond=None)[0]
            out.update({w: float(c) for w, c in zip(chosen, a)})
        return out
    if code.kind == "fr":
        out = {}
        for members in code.groups:
            present = [int(w) for w in members if int(w) in finished]
            if not present:
                raise DecodeError("FR group has no finished member")
            out[present[0]] = 1.0
        return out
    workers = sorted(finished)[: code.n - code.s]
    if len(workers) < code.n - code.s:
        raise DecodeError("too few")
    sub = code.encoding[workers]
    q, r = np.linalg.qr(np.ascontiguousarray(sub.T))
    a = np.linalg.solve(r, q.T @ np.ones(code.n))
    return {w: float(c) for w, c in zip(workers, a) if c != 0.0}


def can_decode(code, finished) -> bool:
    try:
        dense_decode(code, finished)
    except DecodeError:
        return False
    return True


class RefScheme:
    def __init__(self, n, jobs, model, delay):
        self.n, self.jobs, self.model, self.delay = n, jobs, model, delay
        self.history, self.counted, self._plans, self._decoded = [], [], {}, set()

    def job_exists(self, t):
        return t >= 0 and (self.jobs is None or t < self.jobs)

    def plan(self, r):
        if r not in self._plans:
            self._plans[r] = self._plan(r)
        return self._plans[r]

    def conforms(self, r, stragglers):
        return self.model.conforms(self.counted, np.asarray(stragglers, dtype=bool))

    def record(self, r, arrived):
        arrived = np.asarray(arrived, dtype=bool)
        plan = self.plan(r)
        for worker in np.flatnonzero(arrived):
            for task in plan[worker]:
                self._accept(int(worker), r, task)
        self.counted.append(self._counted_stragglers(r, ~arrived))
        self.history.append(~arrived)
        self._plans.pop(r - self.delay - 1, None)

    def accept_late(self, r, worker):
        plan = self._plans.get(r)
        if plan is None:
            return
        for task in plan[worker]:
            if task.job not in self._decoded:
                self._accept(worker, r, task)

    def _counted_stragglers(self, r, stragglers):
        return stragglers

    def decodable(self, t):
        return self.job_exists(t) and t not in self._decoded and self._decodable(t)

    def decode(self, t):
        self._decoded.add(t)
        decoding = self._decode(t)
        self._forget(t)
        return decoding


class RefOneRound(RefScheme):
    def __init__(self, kind, n, jobs, s=0, code=None):
        super().__init__(n, jobs, SPerRound(s), 0)
        self.kind, self.s, self.code, self._arrived = kind, s, code, {}

    def _plan(self, r):
        if not self.job_exists(r):
            return [[] for _ in range(self.n)]
        if self.code is None:
            return [[MiniTask(r, 0, (i,), (1.0,))] for i in range(self.n)]
        return [[dense_task(self.code, i, r)] for i in range(self.n)]

    def _accept(self, worker, r, task):
        self._arrived.setdefault(task.job, set()).add(worker)

    def _forget(self, t):
        self._arrived.pop(t, None)

    def _finished(self, t):
        return frozenset(self._arrived.get(t, ()))

    def _decodable(self, t):
        finished = self._finished(t)
        if self.kind == "uncoded":
            return len(finished) == self.n
        if self.kind == "ignore":
            return len(finished) >= max(1, self.n - self.s)
        return can_decode(self.code, finished)

    def _decode(self, t):
        finished = sorted(self._finished(t))
        if self.kind == "uncoded":
            return [(ResultKey(w, t, 0), 1.0) for w in finished]
        if self.kind == "ignore":
            return [(ResultKey(w, t, 0), self.n / len(finished)) for w in finished]
        return [(ResultKey(w, t, 0), c) for w, c in sorted(dense_decode(self.code, finished).items())]


class RefSRSGC(RefScheme):
    def __init__(self, n, jobs, B, W, lam, code):
        super().__init__(n, jobs, Bursty(B, W, lam), B)
        self.B, self.s, self.code, self._arrived = B, srsgc_s(B, W, lam), code, {}

    def _plan(self, r):
        job_of_worker = np.full(self.n, r if self.job_exists(r) else -1)
        old = r - self.B
        if self.job_exists(old) and old not in self._decoded:
            missing = [i for i in range(self.n) if i not in self._arrived.get(old, {})]
            if len(missing) > self.s:
                job_of_worker[missing[: len(missing) - self.s]] = old
        return [[dense_task(self.code, i, int(j))] if j >= 0 else [] for i, j in enumerate(job_of_worker)]

    def _accept(self, worker, r, task):
        self._arrived.setdefault(task.job, {}).setdefault(worker, ResultKey(worker, r, task.slot))

    def _counted_stragglers(self, r, stragglers):
        own_job_only = all(len(tasks) == 1 and tasks[0].job == r for tasks in self.plan(r))
        if own_job_only and int(np.count_nonzero(stragglers)) <= self.s:
            return np.zeros_like(stragglers)
        return stragglers

    def _decodable(self, t):
        finished = frozenset(self._arrived.get(t, {}))
        return len(finished) >= self.n - self.s and can_decode(self.code, finished)

    def _decode(self, t):
        keys = self._arrived[t]
        return [(keys[w], c) for w, c in sorted(dense_decode(self.code, keys).items())]

    def _forget(self, t):
        self._arrived.pop(t, None)


class RefMSGC(RefScheme):
    def __init__(self, n, jobs, B, W, lam, code):
        super().__init__(n, jobs, Bursty(B, W, lam), W - 2 + B)
        self.B, self.W, self.code, self._jobs = B, W, code, {}
        self.slots = W - 1 + B

    def _state(self, t):
        if t not in self._jobs:
            self._jobs[t] = ([{} for _ in range(self.n)], [{} for _ in range(self.B if self.code else 0)])
        return self._jobs[t]

    def _missing(self, d1, i):
        return [c for c in range(self.W - 1) if c not in d1[i]]

    def _plan(self, r):
        plan = [[] for _ in range(self.n)]
        for slot in range(self.slots):
            t = r - slot
            if not self.job_exists(t) or t in self._decoded:
                continue
            d1, _ = self._state(t)
            for i in range(self.n):
                missing = self._missing(d1, i)
                if missing:
                    plan[i].append(MiniTask(t, slot, (i * (self.W - 1) + missing[0],), (1.0,)))
                elif slot >= self.W - 1 and self.code is not None:
                    group = slot - (self.W - 1)
                    offset = self.n * (self.W - 1) + group * self.code.num_parts
                    plan[i].append(dense_task(self.code, i, t, slot, offset))
        return plan

    def _accept(self, worker, r, task):
        d1, d2 = self._state(task.job)
        key = ResultKey(worker, r, task.slot)
        first_d2 = self.n * (self.W - 1)
        if task.chunks[0] < first_d2:
            d1[worker].setdefault(task.chunks[0] - worker * (self.W - 1), key)
        else:
            d2[(task.chunks[0] - first_d2) // self.code.num_parts].setdefault(worker, key)

    def _decodable(self, t):
        if t not in self._jobs:
            return False
        d1, d2 = self._jobs[t]
        if any(self._missing(d1, i) for i in range(self.n)):
            return False
        return all(can_decode(self.code, group) for group in d2)

    def _decode(self, t):
        d1, d2 = self._jobs[t]
        decoding = [(key, 1.0) for chunks in d1 for key in chunks.values()]
        for group in d2:
            decoding += [(group[w], c) for w, c in sorted(dense_decode(self.code, group).items())]
        return decoding

    def _forget(self, t):
        self._jobs.pop(t, None)


def reference_of(scheme) -> RefScheme:
    """The reference state machine for a fresh gcode.codes scheme."""
    n, jobs = scheme.n, scheme.jobs
    if scheme.name in ("uncoded", "ignore"):
        return RefOneRound(scheme.name, n, jobs, getattr(scheme, "s", 0))
    if scheme.name == "gc":
        return RefOneRound("gc", n, jobs, scheme.s, scheme.code)
    if scheme.name == "srsgc":
        return RefSRSGC(n, jobs, scheme.B, scheme.W, scheme.lam, scheme.code)
    return RefMSGC(n, jobs, scheme.B, scheme.W, scheme.lam, scheme.code)
