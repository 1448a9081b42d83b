"""ZeRO-1 on the collective plane (``cluster.zero = 1``): each worker keeps 1/n of every replica's
optimizer state, for the user's optimizer with its param groups and LR scheduler.

Layout (:class:`ShardLayout`). Each param group's parameters, concatenated in the group's order,
are one flat vector, cut into n shards of ``ceil(len / n)`` values (the last padded); the
parameters in no group form one more such vector (never stepped, kept for the gradient's norm).
Rank r holds shard r of every vector. Within a shard each parameter's part is a tensor of its
own (a *piece*), so the optimizer sees per-parameter tensors as zero=0's does: a parameter
without a ``.grad`` (frozen, or unreached by the job's samples) has all its pieces skipped, and
a piece's state (``step``, ``exp_avg``...) is its parameter's, cut the same way.

A step (:meth:`ShardedReplica.step`, the replica's :func:`gcode.train.step.step` for zero=1):

1. reduce-scatter the job's accumulator, laid out rank-major, so rank r gets its shards' sums;
2. the global L2 norm: an allreduce of the shards' float64 sums of squares; a non-finite one
   skips the step on every rank (they all see the same sum), clipping uses it as torch does;
3. each piece's ``.grad`` is ``(sum · scale · clip).to(float32)``, as zero=0 forms it;
4. the shard's optimizer (the user's class, each group's hyperparameters copied from the
   replica's own optimizer just before, so whatever its scheduler set applies) steps, then the
   scheduler (attached to the replica's optimizer, which holds no state) steps;
5. all-gather the shards into the replica's flat parameters.

Exactness: only element-wise optimizers shard (:data:`ELEMENTWISE`: each value's update reads
that value's gradient and state, and per-parameter scalars that depend on the step count only);
on CPU their kernels give each value the same bits wherever it sits in a tensor, and gloo's
reduce-scatter gives the same bits as its allreduce (both checked by tests), so a zero=1 run
ends with zero=0's parameters bit for bit, except (a) with clipping, whose norm sums squares in
another order (a float64 rounding, 1e-16 relative, that may move the float32 gradient by one
ulp), and (b) ``fused=True`` kernels, whose vector body and scalar tail round differently (one
ulp, within 1e-6).

The full optimizer state is the zero=0 ``state_dict`` form (:meth:`ShardedReplica.full_state`,
an all-gather for checkpoints), and a full state is cut into shards (:meth:`take_state`) when
loaded, so checkpoints keep their format and either setting resumes either's.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ...train.optim import optimizer_class
from ...train.step import StepReport, clip_factor, learning_rates
from ...train.workload import WorkloadError
from .replicas import _all_gather, _reduce_scatter, broadcast_tree

O = torch.optim
#: optimizers whose update is element-wise: the ones that can shard (exact types: a subclass may
#: step otherwise). Not LBFGS (a line search over the whole vector), Adafactor (factored second
#: moments of matrices), Muon (orthogonalized matrices), SparseAdam (sparse gradients).
ELEMENTWISE = (O.SGD, O.Adam, O.AdamW, O.Adamax, O.NAdam, O.RAdam, O.RMSprop, O.Adagrad,
               O.Adadelta, O.ASGD, O.Rprop)


def check_shardable(optimizer: torch.optim.Optimizer, model=None) -> None:
    """WorkloadError (one line) unless ``optimizer`` can step shard by shard (and, given
    ``model``, a :class:`gcode.train.FlatModel`, holds only its parameters)."""
    if type(optimizer) not in ELEMENTWISE:
        raise WorkloadError(f"optimizer_fn: cluster.zero=1 shards the optimizer's state value by "
                            f"value, which {optimizer_class(optimizer)} does not allow (its update "
                            f"is not element-wise); use zero=0, or one of "
                            f"{', '.join(c.__name__ for c in ELEMENTWISE)}")
    if model is not None:
        own = {id(p) for p in model.parameters}
        if any(id(p) not in own for g in optimizer.param_groups for p in g["params"]):
            raise WorkloadError("optimizer_fn: the optimizer holds a tensor that is not one of the "
                                "model's parameters; cluster.zero=1 shards the model's parameters "
                                "only (use zero=0)")


def lost_shards(hint: str):
    """The RunFailed that ends a zero=1 run whose group would re-form (docs/COLLECTIVE.md,
    "Faults: the run stops"); ``hint``: how to resume from the last checkpoint."""
    from ..errors import RunFailed
    return RunFailed(f"a worker failed on the collective plane with cluster.zero=1, which cannot "
                     f"repair it (each worker held the only copy of its shard of the optimizers' "
                     f"state; docs/COLLECTIVE.md){hint}")


@dataclass(frozen=True)
class Piece:
    """Parameter ``param``'s values ``lo:hi`` (its flat order), at ``at`` in this rank's shard;
    ``key``: the parameter's index in the optimizer's ``state_dict``; ``group``: its group."""

    param: int
    key: int
    group: int
    lo: int
    hi: int
    at: int


class ShardLayout:
    """Where every value of a model's flat parameters goes for rank ``rank`` of ``world``
    (module docstring, "Layout"). ``segments`` are (position in the rank-major vector of
    ``world · size`` values, position in the model's flat vector, length): runs of values that
    move together, a few per parameter, so the layout costs no index per value; ``pieces`` are
    this rank's parts of the grouped parameters."""

    def __init__(self, model, optimizer: torch.optim.Optimizer, rank: int, world: int):
        index = {id(p): i for i, p in enumerate(model.parameters)}
        sizes = [p.numel() for p in model.parameters]
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        groups = [[index[id(p)] for p in g["params"]] for g in optimizer.param_groups]
        held = {i for g in groups for i in g}
        vectors = [*groups, [i for i in range(len(sizes)) if i not in held]]
        self.numel, self.rank, self.world = model.numel, rank, world
        lens = [-(-sum(sizes[i] for i in v) // world) for v in vectors]
        self.size = sum(lens)
        self.segments: list[tuple[int, int, int]] = []
        self.pieces: list[Piece] = []
        key, at = 0, 0
        for g, (vector, n) in enumerate(zip(vectors, lens)):
            pos = 0
            for i in vector:
                for r in range(pos // n if n else 0, world):
                    lo, hi = max(pos, r * n), min(pos + sizes[i], (r + 1) * n)
                    if lo >= hi:
                        break
                    self.segments.append((r * self.size + at + lo - r * n, offsets[i] + lo - pos, hi - lo))
                    if r == rank and g < len(groups):
                        self.pieces.append(Piece(i, key, g, lo - pos, hi - pos, at + lo - r * n))
                pos += sizes[i]
                key += g < len(groups)
            at += n
        self.mine = [(a - rank * self.size, f, k) for a, f, k in self.segments
                     if rank * self.size <= a < (rank + 1) * self.size]

    def scatter_order(self, flat: torch.Tensor) -> torch.Tensor:
        """``flat`` (the model's order) laid out rank-major for a reduce-scatter (padding 0)."""
        out = flat.new_zeros(self.world * self.size)
        for a, f, k in self.segments:
            out[a: a + k] = flat[f: f + k]
        return out

    def model_order(self, gathered: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """A rank-major vector (an all-gather's) written into ``out`` in the model's order."""
        for a, f, k in self.segments:
            out[f: f + k] = gathered[a: a + k]
        return out


def _elementwise(value, numel: int) -> bool:
    """Whether an optimizer state entry holds one value per parameter value (else a scalar)."""
    return isinstance(value, torch.Tensor) and value.dim() >= 1 and value.numel() == numel


class ShardedReplica:
    """One replica's parameters stepped with this rank's shard of its optimizer's state.

    ``optimizer`` (the replica's, built as zero=0 builds it) keeps the class, the param
    groups' hyperparameters and the scheduler, and no state: the state lives in ``shard_opt``,
    the same class over this rank's pieces."""

    def __init__(self, model, optimizer: torch.optim.Optimizer, rank: int, world: int):
        check_shardable(optimizer, model)
        self.model, self.optimizer = model, optimizer
        self.layout = layout = ShardLayout(model, optimizer, rank, world)
        device = model.params.device
        self.shard = torch.zeros(layout.size, dtype=torch.float32, device=device)
        self.pieces = [self.shard[p.at: p.at + p.hi - p.lo] for p in layout.pieces]
        groups = [{**_hyper(g), "params": [t for t, p in zip(self.pieces, layout.pieces)
                                          if p.group == k]}
                  for k, g in enumerate(optimizer.param_groups)]
        cls = type(optimizer)
        defaults = {k: v for k, v in optimizer.defaults.items() if k in inspect.signature(cls).parameters}
        self.shard_opt = cls(groups, **defaults)
        self.take_state()

    # ---- state --------------------------------------------------------------------------
    def take_state(self) -> None:
        """Cut the replica optimizer's full state (fresh, or just loaded) into this rank's
        pieces, and drop it there."""
        state = self.optimizer.state_dict()["state"]
        self.shard_opt.state.clear()
        for tensor, p in zip(self.pieces, self.layout.pieces):
            entry = state.get(p.key)
            if entry:
                numel = self.model.parameters[p.param].numel()
                self.shard_opt.state[tensor] = {
                    k: (v.reshape(-1)[p.lo: p.hi].clone() if _elementwise(v, numel)
                        else v.clone() if isinstance(v, torch.Tensor) else v)
                    for k, v in entry.items()}
        self.optimizer.state.clear()

    def full_state(self) -> dict[int, dict]:
        """The optimizer state as zero=0's ``state_dict()["state"]`` holds it, gathered from
        every rank (a collective: every rank calls it; each gets the whole)."""
        mine = {"pieces": [[p.key, p.param, p.lo, p.hi] for p in self.layout.pieces],
                "state": [dict(self.shard_opt.state.get(t, {})) for t in self.pieces]}
        out: dict[int, dict] = {}
        shapes: dict[int, torch.Size] = {}
        for src in range(self.layout.world):
            tree = broadcast_tree(mine if src == self.layout.rank else None, src, self.shard.device)
            for (key, param, lo, hi), entry in zip(tree["pieces"], tree["state"]):
                whole = out.setdefault(key, {}) if entry else {}
                shapes[key] = self.model.parameters[param].shape
                for k, v in entry.items():
                    if _elementwise(v, hi - lo):  # this piece's values of a per-value entry
                        if k not in whole:
                            whole[k] = torch.zeros(shapes[key].numel(), dtype=v.dtype, device=v.device)
                        whole[k][lo: hi] = v
                    elif k not in whole:  # a scalar of the parameter: every piece holds it
                        whole[k] = v.clone() if isinstance(v, torch.Tensor) else v
        return {key: {k: v.view(shapes[key]) if _elementwise(v, shapes[key].numel()) else v
                      for k, v in out[key].items()}
                for key in sorted(out)}

    # ---- step ---------------------------------------------------------------------------
    def step(self, accumulator: torch.Tensor, scale: float, *, scheduler=None,
             max_grad_norm: float | None = None, what: str = "", optimizer_fn: object = None,
             unreached=(), round_sum: bool = False, gather_sum: bool = False,
             times: dict | None = None) -> tuple[StepReport, torch.Tensor | None]:
        """The zero=1 update of the replica with its job's ``accumulator`` (module docstring,
        "A step"); returns (its StepReport, the whole reduced sum when ``gather_sum``, an extra
        all-gather for ``check_decode``)."""
        from ...train.optim import step as optimizer_step
        layout, t0 = self.layout, time.perf_counter()
        grad = torch.empty(layout.size, dtype=accumulator.dtype, device=accumulator.device)
        _reduce_scatter(grad, layout.scatter_order(accumulator))
        if round_sum:
            grad = grad.to(torch.float32).to(grad.dtype)
        squares = grad.to(torch.float64).square().sum().reshape(1)
        dist.all_reduce(squares)
        total = (layout.model_order(self._gather(grad), grad.new_zeros(layout.numel))
                 if gather_sum else None)
        norm = math.sqrt(float(squares)) * abs(scale)
        t1 = time.perf_counter()
        if times is not None:
            times["allreduce"] = t1 - t0
        if not math.isfinite(norm):  # every rank saw the same sum: none steps
            return StepReport(norm, 1.0, learning_rates(self.optimizer)), total
        factor = clip_factor(norm, max_grad_norm)
        grad = grad.mul(scale * factor).to(torch.float32)
        skip = set(unreached) | {i for i, ok in enumerate(self.model.trainable) if not ok}
        with torch.no_grad():  # the replica's values (a load may have changed them)
            for a, f, k in layout.mine:
                self.shard[a: a + k] = self.model.params[f: f + k]
        for tensor, p in zip(self.pieces, layout.pieces):
            tensor.grad = None if p.param in skip else grad[p.at: p.at + p.hi - p.lo]
        for shard_group, group in zip(self.shard_opt.param_groups, self.optimizer.param_groups):
            shard_group.update(_hyper(group))  # what the scheduler set (lr, momentum, betas...)
        lrs = learning_rates(self.optimizer)
        optimizer_step(self.shard_opt, optimizer_fn, what)
        if scheduler is not None:
            self.optimizer._opt_called = True  # it stepped, through its shards (torch's check)
            scheduler.step()
        with torch.no_grad():
            layout.model_order(self._gather(self.shard), self.model.params)
        for tensor in self.pieces:
            tensor.grad = None
        if times is not None:
            times["step"] = time.perf_counter() - t1
        return StepReport(norm, factor, lrs), total

    def _gather(self, shard: torch.Tensor) -> torch.Tensor:
        """Every rank's ``shard``, rank-major (``world · size`` values)."""
        gathered = torch.empty(self.layout.world * self.layout.size, dtype=shard.dtype,
                               device=shard.device)
        _all_gather(gathered, shard.contiguous())
        return gathered


def _hyper(group: dict) -> dict:
    return {k: v for k, v in group.items() if k != "params"}


class ShardedBank:
    """A worker's zero=1 steps of every replica of ``bank`` (a
    :class:`gcode.runtime.loop.models.ModelBank`): each replica's :class:`ShardedReplica`,
    built on first use in the group ``member`` is in (its rank and size), on the
    communication thread."""

    def __init__(self, bank, member):
        for model, optimizer in zip(bank.models, bank.optimizers):
            check_shardable(optimizer, model)
        self.bank, self.member = bank, member
        self.replicas: list[ShardedReplica] | None = None
        self.generation: int | None = None

    def _built(self) -> list[ShardedReplica]:
        generation = self.member.generation
        if self.replicas is None:
            rank, world = self.member.rank, self.member.world_size
            self.replicas = [ShardedReplica(model, opt, rank, world)
                             for model, opt in zip(self.bank.models, self.bank.optimizers)]
            self.generation = generation
        elif generation != self.generation:  # the shards of the old group's ranks are gone
            raise RuntimeError(f"zero=1 shards were cut for group generation {self.generation}, "
                               f"not {generation}")
        return self.replicas

    def step(self, m: int, accumulator: torch.Tensor, scale: float, what: str, unreached=(),
             gather_sum: bool = False, times: dict | None = None):
        """Replica m's zero=1 update (:meth:`ShardedReplica.step`, with the bank's scheduler,
        clipping and canonical-sum mode)."""
        bank = self.bank
        return self._built()[m].step(
            accumulator, scale, scheduler=bank.schedulers[m], max_grad_norm=bank.max_grad_norm,
            what=what, optimizer_fn=bank.workload.optimizer_fn, unreached=unreached,
            round_sum=bool(getattr(bank.workload, "exact_blocks", 0)), gather_sum=gather_sum,
            times=times)

    def state_dict(self) -> list[dict]:
        """:meth:`ModelBank.state_dict` with every optimizer's state gathered whole (a
        collective: every rank calls it)."""
        out = self.bank.state_dict()
        for entry, replica in zip(out, self._built()):
            entry["optimizer"]["state"] = replica.full_state()
        return out

    def loaded(self) -> None:
        """The bank's optimizers were just loaded whole: cut their state into the shards (or
        leave it there until the shards are built)."""
        for replica in self.replicas or ():
            replica.take_state()
