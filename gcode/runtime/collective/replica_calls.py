"""The coordinator's calls that read or write every worker's replicas and kept results on the
collective data plane: the identity check, a checkpoint's models and jobs in flight, a resume.

Invariant: a read first settles every decode issued so far (``settle``, the transport's), so
it sees the replicas every queued step has reached; writes replace what the workers hold.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...codes import ResultKey


class ReplicaCalls:
    """Ray calls to the workers ``actors`` about their replicas, each bounded by the round's
    timeout (plus 30 s); ``gathered`` (zero=1): reading the replicas' state is a collective
    that every worker takes part in."""

    def __init__(self, actors: list, timeout_s: float, settle: Callable[[], None],
                 gathered: bool = False):
        self.actors, self.timeout_s, self.settle = actors, timeout_s, settle
        self.gathered = gathered

    def _get(self, calls):
        import ray
        return ray.get(calls, timeout=self.timeout_s + 30)

    def checksums(self) -> dict:
        """{replica: checksum}, once every worker's replicas compared equal."""
        self.settle()
        return self._get([a.check_replicas.remote() for a in self.actors])[0]

    def state(self) -> list[dict]:
        """The M replicas and their optimizers' state as worker 0 holds them (zero=1: as every
        worker gathers them)."""
        self.settle()
        if self.gathered:
            return self._get([a.replica_state.remote() for a in self.actors])[0]
        return self._get(self.actors[0].replica_state.remote())

    def load(self, state: list[dict]) -> None:
        """Every worker's replicas from ``state`` (a checkpoint's models)."""
        import ray
        ref = ray.put(state)
        self._get([a.load_replicas.remote(ref) for a in self.actors])

    def kept_results(self, keys: list[ResultKey]) -> dict[ResultKey, np.ndarray]:
        """The workers' kept results ``keys`` (a checkpoint's jobs in flight)."""
        by_worker: dict[int, list] = {}
        for key in keys:
            by_worker.setdefault(key.worker, []).append(key)
        arrays = self._get([self.actors[w].kept_results.remote([tuple(k) for k in ks])
                            for w, ks in by_worker.items()])
        return {k: a for ks, got in zip(by_worker.values(), arrays) for k, a in zip(ks, got)}

    def keep_results(self, items: list[tuple[ResultKey, int, np.ndarray]]) -> None:
        """Give each worker its results back (a checkpoint's, on resume)."""
        by_worker: dict[int, list] = {}
        for key, job, array in items:
            by_worker.setdefault(key.worker, []).append((tuple(key), job, array))
        self._get([self.actors[w].keep_results.remote(it) for w, it in by_worker.items()])
