"""A torch.distributed process group among Ray worker actors, formed and re-formed by generation.

The rendezvous is arranged through Ray, as Ray Train does: the coordinator asks the rank-0 actor
for a free port on its node's address (:func:`rendezvous_point`), passes that address to every
actor, and each calls ``init_process_group`` with its rank (:meth:`GroupMember.join`), bounded
by ``timeout_s``. Gloo serves CPU workers, NCCL workers that each have a GPU of their own
(``backend="auto"``). Gloo binds the network interface that holds the actor's node address, so
a node in its own network namespace (or on loopback) talks over the right link.

A group is one generation. When a member dies, or does not enter a collective within the bound,
the survivors abort their collectives (:meth:`GroupMember.abort`), leave the group, and every
member, the restarted actor included, joins generation g+1 at a new address
(:func:`form_group` with ``generation=g+1``). Work submitted for an older generation is refused
(:class:`StaleGeneration`), so no collective of a dead group is ever entered again.

Actor methods the coordinator calls (the worker actor delegates them to its
:class:`~gcode.runtime.collective.plane.CollectivePlane`): ``rendezvous_point()``,
``join_group(rendezvous, rank)``, ``leave_group()``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

BACKENDS = ("auto", "gloo", "nccl")


class CollectiveError(RuntimeError):
    """A collective failed: a member died, or did not enter it within the group's timeout."""


class StaleGeneration(CollectiveError):
    """Work for a group generation this member has left."""


@dataclass(frozen=True)
class GroupConfig:
    """How the workers' group is formed: the backend (auto: NCCL when every worker has a GPU of
    its own, else gloo) and the bound, in seconds, on the rendezvous and on every collective."""

    backend: str = "auto"
    timeout_s: float = 60.0

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"collective backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"collective timeout_s must be > 0, got {self.timeout_s!r}")


@dataclass(frozen=True)
class Rendezvous:
    """Where generation ``generation`` of a group of ``world_size`` meets."""

    host: str
    port: int
    world_size: int
    generation: int
    backend: str
    timeout_s: float

    @property
    def init_method(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto``: NCCL for a worker on its own CUDA device, gloo otherwise."""
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ValueError("collective backend nccl needs each worker on a GPU of its own; use gloo for "
                         "CPU workers")
    return backend


def node_address() -> str:
    """This process's node address as Ray knows it (127.0.0.1 outside Ray)."""
    try:
        import ray
        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except ImportError:
        pass
    return "127.0.0.1"


def free_port(host: str) -> int:
    """A port free on ``host`` right now (the group's store binds it moments later)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def rendezvous_point() -> tuple[str, int]:
    """(address, free port) on this actor's node: where the group's store will listen."""
    host = node_address()
    return host, free_port(host)


def interface_of(address: str) -> str | None:
    """The network interface that holds IPv4 ``address`` (``lo`` for loopback), or None where
    it cannot be told (then gloo picks its default)."""
    want = ipaddress.ip_address(address)
    try:
        import fcntl
        import struct
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _, name in socket.if_nameindex():
                try:  # SIOCGIFADDR: the interface's IPv4 address (Linux)
                    raw = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))
                except OSError:
                    continue
                if ipaddress.ip_address(raw[20:24]) == want:
                    return name
    except (ImportError, OSError):
        pass
    return "lo" if want.is_loopback else None


class GroupMember:
    """One worker's membership of the current generation (the default process group)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.rank: int | None = None
        self.rendezvous: Rendezvous | None = None

    @property
    def generation(self) -> int | None:
        return None if self.rendezvous is None else self.rendezvous.generation

    @property
    def world_size(self) -> int:
        return 0 if self.rendezvous is None else self.rendezvous.world_size

    def join(self, rendezvous: Rendezvous, rank: int) -> None:
        """Leave any older group, then meet the others at ``rendezvous`` (bounded by its timeout)."""
        if not 0 <= rank < rendezvous.world_size:
            raise ValueError(f"rank {rank} outside a group of {rendezvous.world_size}")
        self.leave()
        backend = resolve_backend(rendezvous.backend, self.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if backend == "gloo":
            interface = interface_of(node_address())
            if interface is not None:
                os.environ["GLOO_SOCKET_IFNAME"] = interface
        try:
            dist.init_process_group(backend, init_method=rendezvous.init_method, rank=rank,
                                    world_size=rendezvous.world_size,
                                    timeout=datetime.timedelta(seconds=rendezvous.timeout_s),
                                    **({"device_id": self.device} if backend == "nccl" else {}))
        except Exception as exc:  # torch raises DistStoreError, RuntimeError, ValueError
            raise CollectiveError(f"rank {rank} could not join generation {rendezvous.generation} at "
                                  f"{rendezvous.init_method} within {rendezvous.timeout_s:g} s: "
                                  f"{' '.join(str(exc).split())[:300]}") from exc
        self.rank, self.rendezvous = rank, rendezvous

    def check(self, generation: int | None, what: str = "collective") -> None:
        """Raise StaleGeneration unless this member is in group ``generation`` (the one current
        when the work was asked for)."""
        if self.rendezvous is None:
            raise StaleGeneration(f"{what} refused: this worker is in no group (join one, or re-form "
                                  f"the group after a fault)")
        if generation != self.rendezvous.generation:
            raise StaleGeneration(f"{what} refused: asked for in generation {generation}, but this "
                                  f"worker is now in generation {self.generation}")

    def abort(self) -> None:
        """Make collectives in flight on this member fail now (a peer died): the group is then
        unusable and must be left."""
        if dist.is_initialized():
            try:
                dist.distributed_c10d._get_default_group().abort()
            except (RuntimeError, AttributeError):
                pass

    def leave(self) -> None:
        """Destroy this member's process group, if any (idempotent)."""
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except RuntimeError:
                pass
        self.rank, self.rendezvous = None, None


def form_group(actors: list, config: GroupConfig, generation: int = 0, *,
               backend: str | None = None) -> Rendezvous:
    """Coordinator side: form generation ``generation`` among ``actors`` (rank = position).

    The rank-0 actor picks the address; every actor joins in parallel; the call returns once all
    have joined, or raises :class:`CollectiveError` naming the ranks that did not within the
    bound. ``backend`` overrides ``config.backend`` (e.g. after resolving ``auto`` once)."""
    import ray
    bound = config.timeout_s + 30.0  # the store's own timeout, plus Ray's call overhead
    host, port = ray.get(actors[0].rendezvous_point.remote(), timeout=bound)
    rdv = Rendezvous(host, int(port), len(actors), generation, backend or config.backend, config.timeout_s)
    calls = [actor.join_group.remote(rdv, rank) for rank, actor in enumerate(actors)]
    ready, pending = ray.wait(calls, num_returns=len(calls), timeout=bound)
    failed = [rank for rank, call in enumerate(calls) if call in pending]
    errors = []
    for rank, call in enumerate(calls):
        if call in ready:
            try:
                ray.get(call)
            except ray.exceptions.RayError as exc:  # the actor died, or raised CollectiveError
                failed.append(rank)
                errors.append(f"rank {rank}: {' '.join(str(exc).split())[:200]}")
    if failed:
        for call in pending:
            ray.cancel(call)
        raise CollectiveError(f"generation {generation}: ranks {sorted(failed)} of {len(actors)} did not "
                              f"join within {bound:g} s" + (f" ({'; '.join(errors)})" if errors else ""))
    return rdv


def leave_group(actors: list, timeout_s: float) -> list[int]:
    """Coordinator side: every live actor aborts and leaves its group; returns the ranks the
    caller must restart before re-forming: those that did not answer within ``timeout_s`` (hung
    in a collective) or whose call raised. An actor that died is left alone: it restarts by
    itself, and killing its new process too would race the restart (the next call could meet
    it restarting a second time)."""
    import ray
    calls = [actor.leave_group.remote() for actor in actors]
    ready, pending = ray.wait(calls, num_returns=len(calls), timeout=timeout_s)
    restart = [rank for rank, call in enumerate(calls) if call in pending]
    for rank, call in enumerate(calls):
        if call in ready:
            try:
                ray.get(call)
            except ray.exceptions.RayActorError:  # died (or is restarting): comes back by itself
                pass
            except ray.exceptions.RayError:
                restart.append(rank)
    return sorted(restart)


def reform_group(actors: list, config: GroupConfig, generation: int, *, backend: str | None = None,
                 ready: Callable[[object], object] | None = None) -> Rendezvous:
    """Coordinator side, after a fault: every actor leaves its group (a dead one is skipped),
    each is waited for until it answers ``ready(actor)`` (an actor call; a restarted actor is
    back), then generation ``generation`` forms. The restarted actor's replicas come next, by
    :meth:`CollectivePlane.broadcast` from a survivor."""
    leave_group(actors, config.timeout_s + 30.0)
    if ready is not None:
        wait_ready(actors, ready, config.timeout_s + 60.0)
    return form_group(actors, config, generation, backend=backend)


def wait_ready(actors: list, ready: Callable[[object], object], timeout_s: float) -> None:
    """Wait until every actor answers ``ready(actor)``, asking again while one is restarting;
    raise CollectiveError naming those that did not within ``timeout_s``."""
    import time

    import ray
    deadline = time.monotonic() + timeout_s
    waiting = dict(enumerate(actors))
    while waiting:
        for rank, actor in list(waiting.items()):
            try:
                ray.get(ready(actor), timeout=max(0.1, min(5.0, deadline - time.monotonic())))
                del waiting[rank]
            except (ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
                pass
            except ray.exceptions.RayActorError as exc:  # died for good: no restart left
                raise CollectiveError(f"rank {rank} is dead and will not restart: "
                                      f"{' '.join(str(exc).split())[:200]}") from exc
        if waiting and time.monotonic() > deadline:
            raise CollectiveError(f"ranks {sorted(waiting)} were not back within {timeout_s:g} s")
        if waiting:
            time.sleep(0.2)
