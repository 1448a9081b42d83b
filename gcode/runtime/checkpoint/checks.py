"""Consistency of a checkpoint's content with itself and with the run that resumes it.

Checksums prove only that the files are the ones the manifest names; someone who edits a
checkpoint can recompute them. So a checkpoint is also checked against itself before a run
resumes from it, and each failure names the field:

* :func:`check_tree` (no torch, right after reading): the round against the scheme's event log
  (rounds 0 .. round-1 recorded, in order) and against the manifest and folder name (in
  :func:`gcode.runtime.checkpoint.read_checkpoint`); counters are integers >= 0 and agree with
  the event log (decoded jobs = decode events = optimizer updates); the run's totals are finite
  and >= 0; every stored parameter and optimizer tensor is finite (a checkpoint of a diverged
  model is refused, naming the model and the tensor);
* :func:`check_against` (once the resuming run has built its models): parameter names and
  shapes, and optimizer state shapes against the parameters they belong to, job snapshots
  against the parameter count.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...terminal import escape


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _nonfinite(arr: Any) -> int:
    a = np.asarray(arr)
    if a.dtype.kind not in "fc":
        return 0
    return int(a.size - np.count_nonzero(np.isfinite(a)))


def _scheme_problem(tree: dict) -> str | None:
    events = tree["scheme"].get("events") if isinstance(tree["scheme"], dict) else None
    if not isinstance(events, list) or not all(isinstance(e, list) and e for e in events):
        return "scheme.events must be a list of events"
    records = [e[1] for e in events if e[0] == "record"]
    if len(records) != tree["round"] or any(rr != i for i, rr in enumerate(records)):
        have = (f"rounds {records[0]}..{records[-1]}" if records else "no rounds")
        return (f"round is {tree['round']} but the scheme's event log records {have} "
                f"(a checkpoint before round r records rounds 0..r-1)")
    return None


def _counter_problem(tree: dict) -> str | None:
    c = tree["coordinator"]
    if not isinstance(c, dict):
        return "coordinator must be an object"
    for key in ("waits", "decoded", "late_used", "late_dropped", "retries", "stragglers_total"):
        if not _count(c.get(key)):
            return f"coordinator.{key} must be an integer >= 0, got {c.get(key)!r}"
    r = tree["round"]
    if c["waits"] > r:
        return f"coordinator.waits={c['waits']} exceeds the {r} rounds run"
    updates = c.get("updates")
    if not isinstance(updates, list) or not all(_count(u) for u in updates):
        return f"coordinator.updates must be a list of integers >= 0, got {updates!r}"
    if sum(updates) != c["decoded"]:
        return (f"coordinator.decoded={c['decoded']} but the models took {sum(updates)} "
                f"optimizer steps")
    if isinstance(tree.get("scheme"), dict):
        decodes = sum(1 for e in tree["scheme"].get("events", ()) if e[0] == "decode")
        if decodes != c["decoded"]:
            return (f"coordinator.decoded={c['decoded']} but the scheme's event log decodes "
                    f"{decodes} jobs")
    return None


def _run_problem(tree: dict) -> str | None:
    run = tree["run"]
    if not isinstance(run, dict):
        return "run must be an object"
    if not isinstance(run.get("run_id"), str) or not run["run_id"]:
        return f"run.run_id must be a non-empty string, got {run.get('run_id')!r}"
    rt = run.get("runtime_s")
    if isinstance(rt, bool) or not isinstance(rt, (int, float)) or not (math.isfinite(rt) and rt >= 0):
        return f"run.runtime_s must be a finite number >= 0, got {rt!r}"
    if not isinstance(run.get("sessions"), int) or run["sessions"] < 1:
        return f"run.sessions must be an integer >= 1, got {run.get('sessions')!r}"
    for key in ("n", "models", "num_params"):
        if not isinstance(run.get(key), int) or isinstance(run[key], bool) or run[key] < 1:
            return f"run.{key} must be an integer >= 1, got {run.get(key)!r}"
    return None


def _models_problem(tree: dict) -> str | None:
    models = tree["models"]
    if not isinstance(models, list):
        return "models must be a list"
    for m, saved in enumerate(models):
        if not isinstance(saved, dict) or not isinstance(saved.get("params"), dict):
            return f"models[{m}].params must be an object"
        for name, value in saved["params"].items():
            bad = _nonfinite(value)
            if bad:
                return (f"models[{m}].params[{name!r}] holds {bad} non-finite values (model {m} "
                        f"had diverged)")
        opt = saved.get("optimizer")
        if not isinstance(opt, dict) or not isinstance(opt.get("state"), dict):
            return f"models[{m}].optimizer.state must be an object"
        for k, st in opt["state"].items():
            if not isinstance(st, dict):
                return f"models[{m}].optimizer.state[{k}] must be an object"
            for key, value in st.items():
                bad = _nonfinite(value)
                if bad:
                    return (f"models[{m}].optimizer.state[{k}][{key!r}] holds {bad} non-finite "
                            f"values")
    return None


def check_tree(ck) -> str | None:
    """What is inconsistent in a read checkpoint, or None. Sections a full run checkpoint has
    (run, scheme, coordinator, models) are checked when present."""
    tree = ck.tree
    if not _count(tree.get("round")):
        return f"round must be an integer >= 0, got {tree.get('round')!r}"
    for section, check in (("run", _run_problem), ("scheme", _scheme_problem),
                           ("coordinator", _counter_problem), ("models", _models_problem)):
        if section in tree:
            problem = check(tree)
            if problem is not None:
                return problem
    return None


def _shape(value: Any) -> tuple:
    return tuple(np.shape(value))


def params_problem(m: int, module, have: dict) -> str | None:
    """What in model m's saved ``params`` (its state_dict) does not fit ``module``, or None."""
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    if missing or extra:
        return (f"models[{m}].params: missing {missing[:3]}, unexpected {extra[:3]} (not "
                f"this run's model)")
    for key, shape in want.items():
        if _shape(have[key]) != shape:
            return (f"models[{m}].params[{key!r}] has shape {_shape(have[key])}, the model's "
                    f"is {shape}")
    return None


def check_against(models: list, optimizers: list | None, num_params: int, tree: dict) -> str | None:
    """What in a checkpoint's ``tree`` does not fit the run that resumes it, or None: its
    ``models`` (FlatModels built from the same config), their ``optimizers`` (None: not checked),
    its parameter count."""
    saved_models = tree.get("models")
    if not isinstance(saved_models, list) or len(saved_models) != len(models):
        have = len(saved_models) if isinstance(saved_models, list) else "no"
        return f"{have} models, expected {len(models)}"
    for m, (model, saved) in enumerate(zip(models, saved_models)):
        problem = params_problem(m, model.module, saved["params"])
        if problem is None and optimizers is not None:
            problem = _optimizer_problem(m, optimizers[m], saved["optimizer"])
        if problem is not None:
            return problem
    d = num_params
    for t, job in (tree.get("jobs") or {}).items():
        if _shape(job.get("params")) != (d,):
            return f"jobs[{t}].params has shape {_shape(job.get('params'))}, expected ({d},)"
        if _nonfinite(job["params"]):
            return f"jobs[{t}].params holds non-finite values"
        tensors = len(list(models[0].module.parameters())) if models else 0
        unreached = job.get("unreached", [])
        if not isinstance(unreached, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < tensors for i in unreached):
            return (f"jobs[{t}].unreached must be a list of parameter indices below {tensors}, "
                    f"got {escape(repr(unreached))[:200]}")
    return None


def _optimizer_swap(opt, saved_class: Any, groups: list) -> str | None:
    """Why the checkpoint's optimizer is not ``opt``'s kind, or None. A checkpoint names its
    optimizer's class; one written before it did is judged by its settings: a setting ``opt``
    has and the checkpoint lacks (or the reverse) tells another optimizer. Flags (booleans,
    None), which torch adds between versions and fills in on load, are not compared."""
    from gcode.train.optim import optimizer_class
    mine = optimizer_class(opt)
    remedy = ("resume with the optimizer that wrote the checkpoint (optimizer_fn, or "
              "train.optimizer), or start a new run")
    if saved_class is not None:
        if saved_class != mine:
            return f"written with {escape(str(saved_class))[:200]}, but optimizer_fn builds {mine}; {remedy}"
        return None
    for g, (saved, group) in enumerate(zip(groups, opt.param_groups)):
        if not isinstance(saved, dict):
            return f"param_groups[{g}] must be an object"
        settings = {k for k, v in group.items() if k != "params" and not isinstance(v, (bool, type(None)))}
        lacks = sorted(settings - set(saved))
        extra = sorted(k for k, v in saved.items() if k not in group and k not in ("params", "param_names")
                       and not isinstance(v, (bool, type(None))))
        if lacks or extra:
            what = "; ".join(filter(None, (
                f"lacks {', '.join(lacks)}" if lacks else "",
                f"has {', '.join(escape(str(k))[:40] for k in extra[:5])}, which it does not take"
                if extra else "")))
            return (f"written with another optimizer than the {mine} optimizer_fn builds (its "
                    f"param_groups[{g}] {what}); {remedy}")
    return None


def _optimizer_problem(m: int, opt, saved: dict) -> str | None:
    """What in model m's saved optimizer state does not fit ``opt``, or None."""
    shapes = [tuple(p.shape) for group in opt.param_groups for p in group["params"]]
    groups = saved.get("param_groups")
    if not isinstance(groups, list) or len(groups) != len(opt.param_groups):
        return f"models[{m}].optimizer.param_groups: expected {len(opt.param_groups)} groups"
    swapped = _optimizer_swap(opt, saved.get("class"), groups)
    if swapped:
        return f"models[{m}].optimizer: {swapped}"
    for k, st in saved["state"].items():
        try:
            index = int(k)
        except (TypeError, ValueError):
            return f"models[{m}].optimizer.state key {k!r} is not a parameter index"
        if not 0 <= index < len(shapes):
            return (f"models[{m}].optimizer.state[{k}] names parameter {index}; the model "
                    f"has {len(shapes)}")
        for key, value in st.items():
            if isinstance(value, np.ndarray) and value.ndim > 0 and value.shape != shapes[index]:
                return (f"models[{m}].optimizer.state[{k}][{key!r}] has shape {value.shape}, "
                        f"parameter {index} has shape {shapes[index]}")
    return None


__all__ = ["check_against", "check_tree", "params_problem"]
