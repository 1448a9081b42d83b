"""Ray connection and the worker actors.

Local runs start a loopback-only Ray instance (no dashboard, token auth off, explicit CPUs): see
docs/OPERATING.md. To use a real cluster pass its address (``--address ray://...`` or
``host:port``); token auth then follows that cluster's own settings (``RAY_AUTH_MODE``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field

from ...config import ClusterConfig
from ...terminal import escape
from .leftovers import private_folder, ray_temp_root


def _loopback_env() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # resolve "127.0.0.1" to loopback
    try:  # the constant is read when ray is imported; keep it consistent if ray already was
        import ray._private.ray_constants as rc
        rc.ENABLE_RAY_CLUSTER = False
    except (ImportError, AttributeError):  # pragma: no cover - a Ray without that constant
        pass


#: Ray's session folder that :func:`start_local_ray` made (removed by :func:`shutdown_ray`)
_made_temp: list[str] = []


def start_local_ray(num_cpus: int | None = None, temp_dir: str | None = None, **kwargs) -> None:
    """Start a single-node Ray bound to 127.0.0.1 (no dashboard, auth off, explicit CPUs). Its
    session folder is ``temp_dir``, else a private one under a temp folder short enough for
    Ray's socket paths (:func:`gcode.runtime.cluster.leftovers.ray_temp_root`), which
    :func:`shutdown_ray` removes."""
    _loopback_env()
    if temp_dir is None:
        root = ray_temp_root()
        if root != tempfile.gettempdir():
            print(f"gcode: the temp folder {escape(tempfile.gettempdir())} is too long for Ray's "
                  f"socket paths; Ray's session folder goes under {root}", file=sys.stderr)
        temp_dir = private_folder("gcray", root)
        _made_temp.append(temp_dir)
    try:
        _init(num_cpus, temp_dir, **kwargs)
    except BaseException:
        shutdown_ray()
        raise


def _init(num_cpus: int | None, temp_dir: str, **kwargs) -> None:
    import ray
    ray.init(num_cpus=num_cpus or os.cpu_count() or 1, _node_ip_address="127.0.0.1",
             include_dashboard=False, _temp_dir=temp_dir, log_to_driver=kwargs.pop("log_to_driver", False),
             logging_level=kwargs.pop("logging_level", "WARNING"), **kwargs)


def shutdown_ray() -> None:
    """``ray.shutdown()``, then remove the session folder :func:`start_local_ray` made."""
    import ray
    ray.shutdown()
    while _made_temp:
        shutil.rmtree(_made_temp.pop(), ignore_errors=True)


def ensure_ray(cc: ClusterConfig) -> bool:
    """Connect to Ray as configured (``cluster.address``, else $RAY_ADDRESS, else a local
    loopback instance); returns True when this call connected (the caller then calls
    :func:`shutdown_ray`)."""
    import ray
    if ray.is_initialized():
        return False
    address = cc.address or os.environ.get("RAY_ADDRESS")  # set inside `ray job submit`
    if address:
        from ..connect import connect
        connect(address)  # bounded: a one-line error when nothing answers there
        return True
    start_local_ray(cc.num_cpus)
    return True


@dataclass
class WorkerPool:
    """n GradientWorker actors, index i = worker i of the scheme."""

    actors: list
    info: list[dict] = field(default_factory=list)
    options: dict = field(default_factory=dict)

    @property
    def nodes(self) -> int:
        return len({i.get("node") for i in self.info})

    def wait_ready(self, timeout_s: float) -> None:
        """Block until every actor answered ``ready`` (kills the pool on failure)."""
        import ray
        refs = getattr(self, "_ready", None)
        if refs is None:
            return
        try:
            self.info = ray.get(refs, timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            self.kill()
            raise RuntimeError(f"{len(self.actors)} workers were not ready within "
                               f"cluster.startup_timeout_s={timeout_s}s; does the cluster have "
                               f"{len(self.actors)} x {self.options.get('num_cpus')} CPUs "
                               f"free?") from None
        except Exception:
            self.kill()
            raise
        self._ready = None

    def prepare(self, ctx: tuple, n: int, timeout_s: float) -> None:
        """Have the first n actors adopt run context ``ctx`` (model, dataset) before round 0. A
        user error (model_fn, dataset_fn) surfaces here, named, instead of in round 0."""
        import ray

        from gcode.train.workload import WorkloadError
        refs = [a.prepare.remote(ctx[0], [ctx[1]]) for a in self.actors[:n]]
        try:
            ray.get(refs, timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise RuntimeError(f"workers did not build the model and dataset within "
                               f"cluster.startup_timeout_s={timeout_s}s") from None
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, (WorkloadError, ValueError, TypeError)):
                raise WorkloadError(f"on a worker: {type(cause).__name__}: {cause}") from None
            raise

    def kill(self) -> None:
        import ray
        for a in self.actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001, S110 - already dead or gone with its cluster
                pass


@contextmanager
def pool_session(cc: ClusterConfig, n: int | None = None):
    """n worker actors shared by several runs (benchmarks, tests): on the Ray this process is
    connected to, else on a local loopback instance started here; everything started here is
    stopped on exit."""
    import ray
    started = not ray.is_initialized()
    if started:
        start_local_ray(cc.num_cpus)
    pool = None
    try:
        pool = start_workers(cc, n)
        yield pool
    finally:
        if pool is not None:
            pool.kill()
        if started:
            shutdown_ray()


def start_workers(cc: ClusterConfig, n: int | None = None) -> WorkerPool:
    """Create and await ``n`` (default ``cc.workers``) actors with fractional CPUs, spread over
    the nodes when ``cc.placement == "spread"``. A pool can serve several runs (``train(...,
    pool=pool)``): each run ships its context with every call, so actors (and restarted actors)
    need no per-run setup call."""
    pool = launch_workers(cc, n)
    pool.wait_ready(cc.startup_timeout_s)
    return pool


def launch_workers(cc: ClusterConfig, n: int | None = None) -> WorkerPool:
    """Create the actors without waiting (they import torch meanwhile); then ``wait_ready``."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from ..worker.actor import GradientWorker

    n = cc.workers if n is None else int(n)
    cpus = cc.cpus_per_worker
    alive = [nd for nd in ray.nodes() if nd.get("Alive") and nd.get("Resources", {}).get("CPU", 0) > 0]
    free_now = ray.available_resources().get("CPU", 0.0)
    if cpus is None and free_now <= 0 and (cc.address or os.environ.get("RAY_ADDRESS")):
        cpus = 1.0  # a cluster with no CPU up yet (autoscaling): ask for one each, so it scales
    if cpus is None:  # share the CPUs that are free now (another pool may hold some)
        total = sum(nd["Resources"]["CPU"] for nd in alive) or 1.0
        cpus = min(1.0, (free_now if free_now > 0 else total) / n)
        cpus = max(0.01, int(cpus * 100) / 100.0)  # round down so n actors always fit
    remote_cls = ray.remote(GradientWorker)
    actors = []
    for i in range(n):
        opts = {"num_cpus": cpus, "max_restarts": cc.max_restarts, "max_task_retries": 0,
                "max_concurrency": 64}
        if cc.gpus_per_worker > 0:
            opts["num_gpus"] = cc.gpus_per_worker
        if cc.placement == "spread" and len(alive) > 1:
            node = alive[i % len(alive)]["NodeID"]
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
        actors.append(remote_cls.options(**opts).remote(i))
    pool = WorkerPool(actors, options={"num_cpus": cpus, "num_gpus": cc.gpus_per_worker,
                                       "placement": cc.placement})
    pool._ready = [a.ready.remote() for a in actors]
    return pool
