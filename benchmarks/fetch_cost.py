"""What a GPU coordinator's fetch costs per round, phase by phase, and what an asynchronous
fetch would leave of it (for the beat-DDP issue's overhead goal at mlp-wide, where fetch is
the largest phase: 5.9-6.9 ms a round for M-SGC's 16 results of 3.26M values).

``k`` results of ``d`` float32 values sit in page-locked host memory, as the shared-memory
transport's result buffers do for a GPU coordinator. Each mode handles all k as one round
(median ms over ``--repeats``):
  staged   what the coordinator did before its finite checks were deferred: per result, one
           copy to the device, then its finite check, read back at once;
  copy     the copies alone, each waited for;
  check    the finite checks alone, on results already on the device, each read back;
  async    what the coordinator does now: ``Decoder.stage`` per result (copy and check queued,
           the flag kept on the device), then one ``PendingChecks.settle`` (one wait, one read
           of all flags): the host's share is the time to queue (``async_queue``), the rest
           overlaps whatever the host does meanwhile (dispatching, waiting for arrivals).
On a machine without a GPU it runs on the CPU (the figures then only show that it runs).

    python benchmarks/fetch_cost.py [--results 16] [--params 3256330] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gcode.runtime.loop.decode import Decoder
from gcode.runtime.loop.finite_checks import PendingChecks, Staged


def measure(k: int, d: int, repeats: int) -> dict:
    """Median ms per round of k results of d values, for each mode of the module docstring."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pinned = device.type == "cuda"
    host = [torch.randn(d, pin_memory=pinned) for _ in range(k)]
    arrays = [h.numpy() for h in host]
    decoder = Decoder(d, device=device, torch_math=True)
    on_device = [h.to(device) for h in host]
    sync = torch.cuda.synchronize if pinned else (lambda: None)

    def staged():
        for a in arrays:
            on = torch.from_numpy(a).to(device)
            bool(torch.isfinite(on).all())

    def copy():
        for h in host:
            h.to(device)
            sync()

    def check():
        for t in on_device:
            bool(torch.isfinite(t).all())

    checks = PendingChecks()

    def async_queue():
        for a in arrays:
            staged, flag, event = decoder.stage(a)
            checks.add(Staged(0, 0, [], staged, flag, event, a))

    def async_round():
        async_queue()
        assert not checks.settle(block=True)[1]

    out = {"device": str(device), "results": k, "params": d, "repeats": repeats}
    for name, fn in (("staged", staged), ("copy", copy), ("check", check),
                     ("async", async_round), ("async_queue", async_queue)):
        times = []
        for i in range(repeats + 2):
            sync()
            t0 = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t0))
            checks.settle(block=True)
            sync()
        out[name] = statistics.median(times[2:])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=int, default=16, help="results a round (default 16)")
    ap.add_argument("--params", type=int, default=3_256_330,
                    help="values a result (default 3256330, mlp-wide)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", metavar="F", help="also write the figures as JSON")
    args = ap.parse_args()
    r = measure(args.results, args.params, args.repeats)
    print(f"{r['results']} results of {r['params']:,} float32 on {r['device']} "
          f"(median ms a round over {r['repeats']})")
    print("| staged (before) | copy | check | async, whole | async, host's share |")
    print("|---|---|---|---|---|")
    print(f"| {r['staged']:.2f} | {r['copy']:.2f} | {r['check']:.2f} | {r['async']:.2f} | "
          f"{r['async_queue']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
