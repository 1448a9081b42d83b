"""What the network-model benchmarks share: the accuracy target and the model of a fitted
setting (benchmarks/network_calibration.py fits; network_live_model.py predicts live rounds)."""

from __future__ import annotations

import math

#: a prediction within this fraction of the measured round counts as met (issue 26: 15%)
TARGET = 0.15
#: a fitted β of inf (the bytes explain nothing beyond the other terms), as a finite rate
UNBOUND = 1e15


def finite(rate: float | None) -> float:
    """A fitted rate as a finite one (None, JSON's form of inf, and inf: unbound)."""
    return UNBOUND if rate is None or math.isinf(rate) else rate


def model_for(fit: dict, params: float, links_only: bool = False, **more):
    """The network model of a setting's fit (``links_only``: the ring without the host term)."""
    from gcode.sim.network import NetworkModel
    ring = fit["ring_links_only" if links_only else "ring"]
    host = finite(ring.get("host_beta"))
    return NetworkModel(alpha=ring["alpha"], beta=finite(ring["beta"]),
                        host_beta=None if host == UNBOUND else host,
                        coord_alpha=fit["star"]["alpha"], coord_beta=finite(fit["star"]["beta"]),
                        control_alpha=fit["control_alpha"], params=params, **more)
