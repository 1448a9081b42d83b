"""The collective plane on GPUs, one process per GPU (no Ray): NCCL where there are two or more
GPUs, and gloo on CUDA tensors as a functional check. Skipped without CUDA."""

import os
import socket
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.gpu  # skipped without CUDA (tests/conftest.py)

NUMEL = 1001


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _member(rank: int, world: int, port: int, backend: str, gpus: int, out: str):
    import json

    from gcode.runtime.collective import CollectiveConfig, CollectivePlane, GroupConfig, Rendezvous
    device = torch.device("cuda", rank % gpus)
    plane = CollectivePlane(NUMEL, device, CollectiveConfig(group=GroupConfig(backend=backend)))
    report = {}
    try:  # an exception ends this process, and start_processes raises it in the test
        plane.join_group(Rendezvous("127.0.0.1", port, world, 0, backend, 60.0), rank).result(timeout=120)
        gen = torch.Generator().manual_seed(rank)
        message = torch.randn(NUMEL, generator=gen, dtype=torch.float64)
        plane.keep((rank, 0, 0), 0, message.to(device))
        plane.fold(0, [((rank, 0, 0), 0.5 + rank)]).result(timeout=120)
        total = plane.reduce(0).result(timeout=120)
        want = sum((0.5 + r) * torch.randn(NUMEL, generator=torch.Generator().manual_seed(r),
                                           dtype=torch.float64) for r in range(world))
        report["reduce_rel_error"] = float((total.cpu() - want).norm() / want.norm())
        report["reduce_device"] = str(total.device)
        from gcode.runtime.collective.sharding import ShardedReplica
        from gcode.train import FlatModel
        model = FlatModel(torch.nn.Linear(NUMEL, 1, bias=False), device)
        model.load(torch.linspace(-1, 1, NUMEL))
        params = model.params
        sharded = ShardedReplica(model, torch.optim.SGD(model.module.parameters(), lr=0.1), rank, world)
        plane.submit("zero=1 step", lambda: sharded.step(plane.jobs.accumulator(0), 1.0)).result(timeout=120)
        expect = torch.linspace(-1, 1, NUMEL) - 0.1 * want.float()
        report["zero1_max_error"] = float((params.cpu() - expect).abs().max())
        report["checksums"] = plane.check_replicas({"params": [params]}).result(timeout=120)
        tree = plane.broadcast({"w": params * 2, "step": 3} if rank == 0 else None, 0).result(timeout=120)
        report["broadcast_ok"] = bool(torch.equal(tree["w"].to(device), params * 2)) and tree["step"] == 3
    finally:
        plane.close()
    with open(f"{out}.{rank}", "w") as f:
        json.dump(report, f)


@pytest.mark.parametrize("backend", ["nccl", "gloo"])
def test_plane_on_gpus(tmp_path, backend):
    gpus = torch.cuda.device_count()
    if backend == "nccl" and gpus < 2:
        pytest.skip("NCCL needs a GPU per worker: fewer than two GPUs here")
    world = 2
    import json

    import torch.multiprocessing as mp
    out = str(tmp_path / "report")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.start_processes(_member, args=(world, _free_port(), backend, gpus, out), nprocs=world,
                       start_method="spawn", join=True)
    reports = [json.loads(Path(f"{out}.{r}").read_text()) for r in range(world)]
    for r in reports:
        assert r["reduce_rel_error"] <= 1e-12 and r["reduce_device"].startswith("cuda")
        assert r["zero1_max_error"] <= 1e-6 and r["broadcast_ok"]
    assert reports[0]["checksums"] == reports[1]["checksums"]
