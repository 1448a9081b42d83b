"""Straggler injection: the seconds each worker sleeps in each round.

* ``inject.trace``: replay a CSV trace; worker i follows column i (the first n columns are used
  when the trace is wider), round r follows row r, times multiplied by ``time_scale``.
* ``inject.model``: sample any :mod:`gcode.stragglers` delay model (seeded), times multiplied by
  ``time_scale``.

With ``inject.mode = "add"`` (default) a worker sleeps its injected time *after* computing, so
its round time is compute + injected, exactly the simulator's ``trace·time_scale + load·slope``
with the load term measured live. With ``"target"`` it sleeps only what is left of the injected
time after computing, so the round time follows the injected time when compute is shorter.
"""

from __future__ import annotations

import numpy as np

from ...config import InjectConfig


class DelaySource:
    """Injected seconds per (round, worker), extended on demand when an adaptive scheme runs
    more rounds than first planned (a trace must then have those rows; a delay model is
    re-sampled with twice the rounds from the same seed, keeping what was already used)."""

    def __init__(self, ic: InjectConfig, n: int, rounds: int, seed: int):
        self.ic, self.n, self.seed = ic, n, seed
        self.table = injected_delays(ic, n, rounds, seed)

    def get(self, r: int, w: int) -> float:
        if r >= self.table.shape[0]:
            rows = r + 1 if self.ic.trace is not None else max(r + 1, 2 * self.table.shape[0])
            more = injected_delays(self.ic, self.n, rows, self.seed)
            more[: self.table.shape[0]] = self.table
            self.table = more
        return float(self.table[r, w])

    def state_dict(self, next_round: int) -> dict:
        """The table drawn so far (a resumed run injects the same delays)."""
        return {"table": self.table, "next_round": int(next_round)}

    def load_state_dict(self, state: dict, n: int) -> None:
        table = np.asarray(state["table"], dtype=np.float64)
        if table.ndim != 2 or table.shape[1] != n:
            raise ValueError(f"delay table shape {table.shape}, expected (rounds, {n})")
        rows = table.shape[0]
        if rows < self.table.shape[0] and np.array_equal(self.table[:rows], table):
            return  # an extended run: the longer table drawn now begins with the saved one
        self.table = table


def injected_delays(ic: InjectConfig, n: int, rounds: int, seed: int) -> np.ndarray:
    """(rounds, n) float64 seconds to sleep; zeros when nothing is injected."""
    if ic.trace is not None:
        from ...sim.simulator import worker_times
        from ...stragglers import load_trace
        trace = load_trace(ic.trace)
        try:
            return worker_times(trace, n, rounds, load=0.0, load_slope=0.0, time_scale=ic.time_scale)
        except ValueError as exc:
            raise ValueError(f"inject.trace: {ic.trace}: {exc}") from None
    if ic.model is not None:
        from ...stragglers import make_delay_model
        model = make_delay_model(ic.model, **ic.params)
        times = model.sample(rounds, n, seed if ic.seed is None else ic.seed)
        return np.asarray(times, dtype=np.float64) * ic.time_scale
    return np.zeros((rounds, n), dtype=np.float64)
