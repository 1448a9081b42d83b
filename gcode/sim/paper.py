"""The paper's setting, which ``gcode simulate``, ``tune`` and the benchmarks default to: the
bundled 30-round Lambda trace, the scheme parameters the authors picked by grid search for 256
Lambda workers (scaled to other n by :func:`default_params`) and their load-slope fit."""

from __future__ import annotations

from importlib import resources

from ..codes import srsgc_s

BUNDLED_TRACE = "lambda-cnn-w256-r30-canada.csv"
#: the parameters the paper picked by grid search for 256 Lambda workers
PAPER_DEFAULTS = {"uncoded": {}, "ignore": {"s": 15}, "gc": {"s": 15},
                  "srsgc": {"B": 2, "W": 3, "lam": 23}, "msgc": {"B": 1, "W": 2, "lam": 27}}
PAPER_N = 256
PAPER_LOAD_SLOPE = 2.2013  # the authors' fit, seconds per unit load for a 4096-sample job


def bundled_trace():
    """A context manager giving the bundled trace's path."""
    return resources.as_file(resources.files("gcode") / "data" / BUNDLED_TRACE)


def default_params(name: str, n: int) -> dict:
    """The paper's parameters scaled to n workers (exactly the paper's at n = 256).

    s (GC, ignore) and λ (SR-SGC, M-SGC) keep their share of the workers: round(value·n/256),
    at least 1, with s ≤ n−1, λ ≤ n and SR-SGC's own s = ⌈λ/2⌉ ≤ n−1; B and W stay the paper's.
    """
    params = dict(PAPER_DEFAULTS[name])
    for key in ("s", "lam"):
        if key in params:
            params[key] = max(1, int(params[key] * n / PAPER_N + 0.5))
    if "s" in params:
        params["s"] = min(params["s"], n - 1)
    if "lam" in params:
        params["lam"] = min(params["lam"], n)
        while name == "srsgc" and params["lam"] > 1 and srsgc_s(params["B"], params["W"], params["lam"]) >= n:
            params["lam"] -= 1
    return params


__all__ = ["BUNDLED_TRACE", "PAPER_DEFAULTS", "PAPER_LOAD_SLOPE", "PAPER_N", "bundled_trace",
           "default_params"]
