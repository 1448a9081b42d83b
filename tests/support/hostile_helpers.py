"""Shared builders of the hostile-input catalogue (tests/cli/test_hostile_files.py and
tests/cli/test_hostile_cli.py): an in-process ``gcode`` runner (tests/sim's CLI tests use it too),
the one-line assertion, and a full run checkpoint built without Ray."""

import contextlib
import hashlib
import io
import json
import subprocess
import time
from pathlib import Path

import numpy as np

from gcode.cli import main as gcode_main
from gcode.config import TrainConfig
from gcode.runtime import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[2]


def gcode_in_process(*argv) -> subprocess.CompletedProcess:
    """Run ``gcode ARGV`` in this process (no interpreter start-up), as ``subprocess.run`` with
    ``capture_output=True, text=True`` would report it. argparse errors exit through SystemExit,
    which counts as the exit code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = gcode_main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return subprocess.CompletedProcess(["gcode", *argv], code, out.getvalue(), err.getvalue())


def cli(*argv, timeout_s=60):
    """Run ``gcode ARGV`` in this process: (exit code, stdout, last stderr line, all stderr,
    seconds)."""
    start = time.monotonic()
    proc = gcode_in_process(*argv)
    seconds = time.monotonic() - start
    assert seconds < timeout_s, f"{argv} took {seconds:.1f} s"
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return proc.returncode, proc.stdout, (lines[-1] if lines else ""), proc.stderr, seconds


def assert_one_line(code, last, full, *needles, status=2):
    assert code == status, full
    assert "Traceback" not in full, full
    assert last.startswith("gcode"), full
    for needle in needles:
        assert needle in last, (needle, full)


def write(path, data):
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def rehash(folder):
    """Recompute the manifest after an edit, as an attacker would: only content checks remain."""
    m = json.loads((folder / ckpt.MANIFEST_FILE).read_text())
    m.pop("manifest_sha256")
    for name in (ckpt.STATE_FILE, ckpt.ARRAYS_FILE):
        m["files"][name] = {"bytes": (folder / name).stat().st_size,
                            "sha256": ckpt.sha256_file(folder / name)}
    m["manifest_sha256"] = hashlib.sha256(ckpt.canonical_json(m)).hexdigest()
    (folder / ckpt.MANIFEST_FILE).write_text(json.dumps(m))


def full_tree(rounds=4, run_id="a" * 32):
    """A run checkpoint with every section a live run writes that check_tree reads: a real
    scheme driven through ``rounds`` rounds, a real torch model and Adam state."""
    import torch

    from gcode.codes import make_scheme
    from gcode.codes.state import scheme_state
    scheme = make_scheme("gc", n=2, s=1, jobs=rounds, gc_code="fr")
    for r in range(rounds):
        scheme.plan(r)
        scheme.record(r, np.ones(2, dtype=bool))
        if scheme.decodable(r):
            scheme.decode(r)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sd = opt.state_dict()
    return {"format": ckpt.FORMAT, "version": ckpt.VERSION, "round": rounds,
            "config": TrainConfig().to_dict(),
            "run": {"run_id": run_id, "runtime_s": 1.5, "sessions": 1, "n": 2, "models": 1,
                    "num_params": 8, "scheme": "gc"},
            "scheme": scheme_state(scheme),
            "coordinator": {"waits": 0, "decoded": rounds, "late_used": 0, "late_dropped": 0,
                            "retries": 0, "stragglers_total": 0, "updates": [rounds]},
            "models": [{"params": {k: v.clone() for k, v in model.state_dict().items()},
                        "optimizer": {"state": dict(sd["state"]),
                                      "param_groups": sd["param_groups"]}}]}


def snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
