"""Tables about the schemes, read from the packages that own them when a config is checked (never
at import: gcode.codes and gcode.sim load numpy). Each is derived, none is copied:

* :func:`scheme_parameters`: the parameters each scheme takes, from :data:`gcode.codes.SCHEMES`
  (and the online tuner, ``auto``, takes only its code);
* :func:`arrival_schemes`: the schemes whose workers' next tasks follow their own arrivals
  (``Scheme.plans_from_own_arrivals``), which ``dispatch = "arrival"`` needs;
* :func:`scheme_delay`: a scheme's delay T (the online tuner's: the largest it may switch to,
  :func:`auto_max_delay`);
* :func:`policy_name`: the round-ending policy a run uses (unset: the tuner's pick for ``auto``,
  else ``paper``).
"""

from __future__ import annotations


def _default_code(n: int) -> str:
    from ..codes import DEFAULT_GC_CODE
    return DEFAULT_GC_CODE


#: defaults of the scheme parameters a [scheme] section leaves out, for n workers
SMALL_DEFAULTS = {"s": lambda n: 1 if n > 1 else 0, "B": lambda n: 1, "W": lambda n: 2,
                  "lam": lambda n: min(2, n), "gc_code": _default_code}


def scheme_parameters(name: str) -> tuple[str, ...]:
    """The parameters scheme ``name`` takes (``auto``: the tuner's gradient code only)."""
    from ..codes import SCHEMES
    return ("gc_code",) if name == "auto" else SCHEMES[name][1]


def arrival_schemes() -> tuple[str, ...]:
    from ..codes import SCHEMES
    return tuple(name for name, (cls, _) in SCHEMES.items() if cls.plans_from_own_arrivals)


def auto_max_delay(models: int | None = None, mode: str = "concurrent") -> int:
    """The largest delay T the online tuner may switch to. One model unless asked for more:
    T = 0 (uncoded, GC) when ``models`` is unset or 1; with M > 1 concurrent models, T <= M - 1
    (each model gets 1/M of the steps), capped by the tuner's own largest; mode ``delayed``
    (one model, stale gradients) allows the tuner's largest."""
    from ..sim.online import OnlineConfig
    largest = OnlineConfig().max_delay
    if mode == "delayed":
        return largest
    return min(largest, max(0, (models or 1) - 1))


def policy_name(sc, pc) -> str:
    """The policy a run ends rounds with: ``pc.name``, or when unset, ``partial`` for ``auto``
    (the tuner picks among every policy) and ``paper`` for a fixed scheme."""
    if pc.name is not None:
        return pc.name
    return "partial" if sc.name == "auto" else "paper"


def scheme_delay(sc, n: int, train=None) -> int:
    """The delay T of a [scheme] section's scheme for n workers (auto: the tuner's largest under
    the [train] section's models and mode); ValueError from the scheme for parameters that do
    not fit."""
    if sc.name == "auto":
        return auto_max_delay(*((train.models, train.mode) if train is not None else ()))
    from ..codes import make_scheme
    return make_scheme(sc.name, n=n, jobs=sc.jobs, **scheme_params(sc, n)).delay


def scheme_params(sc, n: int) -> dict:
    """``make_scheme`` parameters of a [scheme] section for n workers: the scheme's own fields,
    with :data:`SMALL_DEFAULTS` for those left out (``auto``: only gc_code, when given)."""
    if sc.name == "auto":
        return {} if sc.gc_code is None else {"gc_code": sc.gc_code}
    params = {}
    for key in scheme_parameters(sc.name):
        value = getattr(sc, key)
        params[key] = SMALL_DEFAULTS[key](n) if value is None else value
    return params


__all__ = ["SMALL_DEFAULTS", "arrival_schemes", "auto_max_delay", "policy_name", "scheme_delay",
           "scheme_parameters", "scheme_params"]
