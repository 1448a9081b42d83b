"""cluster/: the launcher configs parse and say what cluster/README.md promises, and
cluster/local.sh runs a multi-node job on loopback from a fresh clone and stops only what it
started.

The end-to-end test clones this repository (HEAD) into a temporary folder, links the existing
virtual environment into the clone (no reinstall), starts an unrelated Ray head of the same user
beside it (which `ray stop` would kill), runs ``cluster/local.sh --nodes 2`` with a tiny
training job, and then checks the JSON result, that no process of the script survived, and
that the unrelated Ray instance is untouched. Everything binds 127.0.0.x; nothing contacts
another address.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import tomllib
import yaml

REPO = Path(__file__).resolve().parents[3]
CLUSTER = REPO / "cluster"
LOCAL_SH = CLUSTER / "local.sh"


def _venv() -> Path:
    """The environment to reuse: $GCODE_TEST_VENV, else the running interpreter's, else .venv."""
    for cand in (os.environ.get("GCODE_TEST_VENV"), sys.prefix, REPO / ".venv"):
        if cand and (Path(cand) / "bin" / "gcode").exists() and (Path(cand) / "bin" / "ray").exists():
            return Path(cand)
    pytest.skip("no virtual environment with bin/gcode and bin/ray (set GCODE_TEST_VENV)")


# ------------------------------------------------------------------------ launcher configs
@pytest.mark.parametrize("name,provider", [("aws.yaml", "aws"), ("gcp.yaml", "gcp")])
def test_cluster_launcher_config(name, provider):
    text = (CLUSTER / name).read_text()
    cfg = yaml.safe_load(text)
    assert cfg["cluster_name"]
    assert cfg["provider"]["type"] == provider
    types = cfg["available_node_types"]
    head = cfg["head_node_type"]
    assert head in types
    assert types[head]["resources"]["CPU"] == 0          # the head runs the driver only
    workers = {k: v for k, v in types.items() if k != head}
    assert workers, "no worker node type"
    # autoscaling CPU workers whose CPUs at full scale cover the 64 gcode workers (1 CPU each)
    cpus = sum(v["max_workers"] * v["resources"]["CPU"] for v in workers.values())
    assert cpus >= 64
    assert all(v["min_workers"] < v["max_workers"] for v in workers.values())
    assert cfg["max_workers"] * min(v["resources"]["CPU"] for v in workers.values()) >= 64
    setup = "\n".join(cfg["setup_commands"])
    assert "torch==" in setup and "whl/cpu" in setup     # the CPU wheel, never the CUDA build
    assert re.search(r"pip install .*gcode", setup)
    assert "REPLACE-WITH" in setup                       # the gcode URL is a marked placeholder
    starts = "\n".join(cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"])
    assert starts.count("RAY_AUTH_MODE=token") == 2      # token auth on every node
    assert "~/.ray/auth_token" in cfg["file_mounts"]
    assert re.search(r"#\s*\w*gpu\w*:", text)            # the commented GPU worker type
    # Ray's own loader: defaults filled in, then checked against its JSON schema (offline)
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config
    validate_config(prepare_config(yaml.safe_load(text)))


def test_rayjob_manifest():
    docs = [d for d in yaml.safe_load_all((CLUSTER / "rayjob.yaml").read_text()) if d]
    job = next(d for d in docs if d.get("kind") == "RayJob")
    cm = next(d for d in docs if d.get("kind") == "ConfigMap")
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert spec["entrypoint"].startswith("gcode train --address auto --config ")
    assert spec["shutdownAfterJobFinishes"] is True
    rc = spec["rayClusterSpec"]
    assert rc["rayVersion"]
    head = rc["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    mounts = head["template"]["spec"]["containers"][0]["volumeMounts"]
    cfg_path = spec["entrypoint"].split("--config ")[1].split()[0]
    assert any(cfg_path.startswith(m["mountPath"] + "/") for m in mounts)
    cpus = 0
    for group in rc["workerGroupSpecs"]:
        per_pod = int(group["rayStartParams"]["num-cpus"])
        res = group["template"]["spec"]["containers"][0]["resources"]
        assert int(res["limits"]["cpu"]) == per_pod          # one Ray CPU per pod CPU
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        cpus += group["replicas"] * per_pod
    run = tomllib.loads(cm["data"][Path(cfg_path).name])
    assert run["scheme"]["name"] == "msgc" and run["cluster"]["workers"] == 64
    assert cpus == run["cluster"]["workers"] * run["cluster"]["cpus_per_worker"] == 64
    # the inline config is cluster/msgc64.toml
    assert run == tomllib.loads((CLUSTER / "msgc64.toml").read_text())


def test_msgc64_config_is_valid():
    from gcode.config import load_config
    cfg = load_config(CLUSTER / "msgc64.toml")
    assert cfg.scheme.name == "msgc" and cfg.cluster.workers == 64
    assert cfg.cluster.cpus_per_worker == 1.0
    assert cfg.scheme_params() == {"B": 1, "W": 2, "lam": 4, "gc_code": "group"}


def test_recipes_data_plane_lines_are_valid(tmp_path):
    """The collective plane the recipes name (docs/SCALING.md): the configs' commented line loads
    once uncommented, and the multi-node GPU command passes the flag."""
    from gcode.config import load_config
    for name in ("msgc64.toml", "gpu8.toml"):
        text = (CLUSTER / name).read_text()
        assert load_config(CLUSTER / name).cluster.data_plane == "star"
        line = '\n# data_plane = "collective"\n'
        assert line in text, name
        (tmp_path / name).write_text(text.replace(line, line.replace("# ", "")))
        assert load_config(tmp_path / name).cluster.data_plane == "collective"
    assert "--data-plane collective" in (CLUSTER / "aws-gpu.yaml").read_text()
    assert "--data-plane collective" in (CLUSTER / "gpu8.toml").read_text()


def test_dockerfile_installs_cpu_torch_then_gcode():
    text = (CLUSTER / "Dockerfile").read_text()
    assert re.search(r"^FROM rayproject/ray:\S+-cpu", text, re.MULTILINE)
    assert text.index("torch==") < text.index("pip install --no-cache-dir .")
    assert "whl/cpu" in text


# ------------------------------------------------------------------------ local.sh, fast checks
def _run(args, env=None, timeout=30, cwd=None):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          check=False, env=env if env is not None else os.environ.copy())


def test_local_sh_help_and_usage_errors(tmp_path):
    help_ = _run([str(LOCAL_SH), "--help"])
    assert help_.returncode == 0
    for word in ("--nodes", "--auth", "RAY_AUTH_MODE", "127.0.0.3", "--temp-dir", "--hold",
                 "ray stop", "--"):
        assert word in help_.stdout, word
    for bad, msg in ((["--nodes", "0"], "--nodes"), (["--head-ip", "10.0.0.1"], "loopback"),
                     (["--auth", "maybe"], "--auth"), (["--bogus"], "unknown option"),
                     (["--", "--address", "1.2.3.4:6379"], "--address")):
        res = _run([str(LOCAL_SH), *bad])
        assert res.returncode == 2 and msg in res.stderr, (bad, res.stderr)
    # a checkout without .venv and without gcode on PATH: a clear error, nothing started
    lone = tmp_path / "checkout" / "cluster"
    lone.mkdir(parents=True)
    shutil.copy2(LOCAL_SH, lone / "local.sh")
    env = {k: v for k, v in os.environ.items() if k != "GCODE"}
    env["PATH"] = "/usr/bin:/bin"
    res = _run([str(lone / "local.sh")], env=env)
    if shutil.which("gcode", path=env["PATH"]) is None:
        assert res.returncode == 2 and "no gcode executable" in res.stderr, res.stderr
    res = _run([str(LOCAL_SH)], env=dict(os.environ, GCODE=str(tmp_path / "nope")))
    assert res.returncode == 2 and "GCODE=" in res.stderr


# ------------------------------------------------------------------------ local.sh, end to end
def _session_pids(sids: set[int]) -> dict[int, str]:
    """Live (non-zombie) processes whose session id is in ``sids``: pid -> command line."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            state, sid = fields[0], int(fields[3])
            if sid in sids and state != "Z":
                out[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace")
        except (OSError, ValueError):
            continue
    return out


def _pids_naming(text: str) -> dict[int, str]:
    """Live processes whose command line contains ``text``."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (d / "stat").read_text()
            if text in cmd and stat[stat.rindex(")") + 2] != "Z":
                out[int(d.name)] = cmd
        except (OSError, ValueError):
            continue
    return out


def _kill_sessions(sids: set[int], grace: float = 5.0) -> None:
    """Test cleanup: SIGTERM, then SIGKILL, every process of the given sessions."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _session_pids(sids)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while _session_pids(sids) and time.monotonic() < deadline:
            time.sleep(0.2)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def loopback_clone_test(fn):
    """Marks of the end-to-end tests: slow, Ray, Linux (127.0.0.x beyond .1, /proc), git."""
    for mark in (pytest.mark.slow, pytest.mark.ray,
                 pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only"),
                 pytest.mark.skipif(shutil.which("git") is None, reason="needs git to clone")):
        fn = mark(fn)
    return fn


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory):
    """``git clone`` of this repository (HEAD) with the existing environment linked in as .venv."""
    venv = _venv()
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: no fresh clone to make")
    clone = tmp_path_factory.mktemp("clone") / "gcode"
    _run(["git", "clone", "-q", str(REPO), str(clone)], timeout=60).check_returncode()
    (clone / ".venv").symlink_to(venv, target_is_directory=True)   # reuse, do not reinstall
    assert (clone / "cluster" / "local.sh").exists(), "cluster/local.sh is not committed"
    return clone


def _local_env(home: Path) -> dict:
    """The caller's environment without Ray address or token, and with a private HOME (so no
    test reads or writes the user's ~/.ray)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "GCODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    env["RAY_AUTH_MODE"] = "disabled"
    return env


def _communicate(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)            # local.sh tears down on SIGTERM
        _, err = proc.communicate(timeout=90)
        pytest.fail(f"local.sh took over {timeout} s\n{err[-3000:]}")


def _result(out: str) -> dict:
    return json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])


def _sessions(err: str) -> set[int]:
    """The session ids local.sh reports on a clean teardown."""
    m = re.search(r"\(sessions ([\d ]+)\)", err)
    return {int(s) for s in m.group(1).split()} if m else set()


def _cleanup_after_failure(proc, temp_dir: str, sids: set[int]) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)
    for f in Path(temp_dir).glob(".sid.*"):        # only left when the script did not clean up
        try:
            sids.add(int(f.read_text()))
        except ValueError:
            pass
    if sids:
        _kill_sessions(sids)
    shutil.rmtree(temp_dir, ignore_errors=True)


@loopback_clone_test
def test_local_sh_two_nodes_from_fresh_clone(fresh_clone, tmp_path):
    script = fresh_clone / "cluster" / "local.sh"
    env = _local_env(tmp_path / "home")
    venv = fresh_clone / ".venv"
    # short paths: Ray's socket paths are length-limited
    other_tmp = tempfile.mkdtemp(prefix="gco")
    run_tmp = tempfile.mkdtemp(prefix="gct")
    other = proc = None
    run_sids: set[int] = set()
    try:
        # An unrelated Ray instance of the same user, in its own session: `ray stop` would kill it.
        other_port = _free_port("127.0.0.1")
        other = subprocess.Popen(
            [str(venv / "bin" / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1",
             "--port", str(other_port), "--num-cpus", "1", "--temp-dir", other_tmp,
             "--include-dashboard", "false", "--disable-usage-stats",
             "--ray-client-server-port", str(_free_port("127.0.0.1")),
             "--dashboard-agent-listen-port", str(_free_port("127.0.0.1")),
             "--min-worker-port", "0", "--max-worker-port", "0"],
            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [str(script), "--nodes", "2", "--temp-dir", run_tmp, "--start-timeout", "90", "--",
             "--scheme", "msgc", "--workers", "4", "--jobs", "6", "--model", "logistic",
             "--batch-size", "120", "--check-decode", "--json", "--quiet"],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        other_out, _ = other.communicate(timeout=120)
        assert other.returncode == 0, other_out[-2000:]
        other_pids = _session_pids({other.pid})
        assert any("gcs_server" in c for c in other_pids.values()), other_pids
        out, err = _communicate(proc, 240)
        elapsed = time.monotonic() - t0
        run_sids = _sessions(err)
        assert proc.returncode == 0, f"local.sh exited {proc.returncode}\n{err[-4000:]}"

        # the training result: 6 jobs decoded exactly by 4 workers spread over both worker nodes
        res = _result(out)
        assert res["scheme"] == "msgc" and res["n"] == 4
        assert res["decoded_jobs"] == res["jobs"] == 6
        assert res["max_decode_rel_error"] < 1e-5
        assert res["nodes"] == 2
        assert res["node_ips"] == ["127.0.0.3", "127.0.0.4"]   # the head (0 CPUs) runs no actor
        assert 0 < res["worker_cpus"] < 1                      # fractional CPUs per actor
        assert "--address 127.0.0.2:" in err

        # nothing the script started survives; its temp dir is gone
        assert len(run_sids) == 3, err[-2000:]                 # head + 2 worker nodes
        assert _session_pids(run_sids) == {}
        assert _pids_naming(run_tmp) == {}
        assert not Path(run_tmp).exists()

        # the unrelated Ray instance is untouched: same processes, GCS still accepting
        alive = _session_pids({other.pid})
        gone = {p: c for p, c in other_pids.items() if p not in alive}
        assert not gone, gone
        with socket.create_connection(("127.0.0.1", other_port), timeout=5):
            pass
        print(f"local.sh end to end: {elapsed:.1f} s")
    finally:
        _cleanup_after_failure(proc, run_tmp, run_sids)
        if other is not None:
            if other.poll() is None:
                other.kill()
            _kill_sessions({other.pid})
        shutil.rmtree(other_tmp, ignore_errors=True)


@loopback_clone_test
def test_local_sh_token_auth(fresh_clone, tmp_path):
    """--auth token: every node and the driver use a fresh token from the run's temp dir; the
    user's ~/.ray is neither read nor written."""
    home = tmp_path / "home"
    env = _local_env(home)
    run_tmp = tempfile.mkdtemp(prefix="gct")
    proc = None
    sids: set[int] = set()
    try:
        proc = subprocess.Popen(
            [str(fresh_clone / "cluster" / "local.sh"), "--auth", "token", "--nodes", "1",
             "--temp-dir", run_tmp, "--", "--workers", "2", "--jobs", "3", "--model", "logistic",
             "--batch-size", "60", "--json", "--quiet"],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = _communicate(proc, 180)
        sids = _sessions(err)
        assert proc.returncode == 0, err[-4000:]
        assert "auth token" in err
        res = _result(out)
        assert res["decoded_jobs"] == 3 and res["node_ips"] == ["127.0.0.3"]
        assert len(sids) == 2 and _session_pids(sids) == {}
        assert not (home / ".ray").exists()
        assert not Path(run_tmp).exists()
    finally:
        _cleanup_after_failure(proc, run_tmp, sids)


def test_gpu_cluster_recipe():
    """cluster/aws-gpu.yaml (8-GPU nodes) passes Ray's own schema, and cluster/gpu8.toml is a
    valid run config with one GPU per worker."""
    text = (CLUSTER / "aws-gpu.yaml").read_text()
    cfg = yaml.safe_load(text)
    types = cfg["available_node_types"]
    assert all(t["resources"]["GPU"] == 8 for t in types.values())
    setup = "\n".join(cfg["setup_commands"])
    assert "whl/cu" in setup and "REPLACE-WITH" in setup
    assert "\n".join(cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]).count(
        "RAY_AUTH_MODE=token") == 2
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config
    validate_config(prepare_config(cfg))
    from gcode.config import load_config
    run = load_config(CLUSTER / "gpu8.toml")
    assert run.cluster.workers == 8 and run.cluster.gpus_per_worker == 1.0
    assert run.train.model == "resnet18" and run.policy.name == "earliest"


def _lines(stream, sink: list) -> None:
    sink.extend(iter(stream.readline, ""))  # one line at a time, as they come


def _wait_for(lines: list, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        if proc.poll() is not None:
            time.sleep(0.5)  # let the reader threads drain
            pytest.fail(f"local.sh exited {proc.returncode} before '{text}'\n{''.join(lines)[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no '{text}' from local.sh within {timeout} s\n{''.join(lines)[-3000:]}")
        time.sleep(0.2)


@loopback_clone_test
def test_local_sh_four_nodes_collective_plane_and_train(fresh_clone, tmp_path):
    """cluster/local.sh --nodes 4 --hold: four worker nodes on loopback. Across them the collective
    plane's gloo group decodes GC and M-SGC under stragglers exactly, the same sum on every worker
    (tests/runtime/collective/nodes_driver.py), and gcode train runs one worker on each node on both
    data planes, ending with the same parameters; SIGTERM then stops exactly what local.sh started."""
    import threading
    env = _local_env(tmp_path / "home")
    venv = fresh_clone / ".venv"
    run_tmp = tempfile.mkdtemp(prefix="gcf")
    proc = None
    sids: set[int] = set()
    out_lines: list[str] = []
    err_lines: list[str] = []
    try:
        proc = subprocess.Popen([str(fresh_clone / "cluster" / "local.sh"), "--nodes", "4", "--hold",
                                 "--temp-dir", run_tmp, "--start-timeout", "150"],
                                env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        for stream, sink in ((proc.stdout, out_lines), (proc.stderr, err_lines)):
            threading.Thread(target=_lines, args=(stream, sink), daemon=True).start()
        _wait_for(err_lines, "Ctrl-C stops the cluster", proc, 600)
        _wait_for(out_lines, "RAY_ADDRESS=", proc, 30)
        address = re.search(r"RAY_ADDRESS=(\S+)", "".join(out_lines)).group(1)
        assert address.startswith("127.0.0.2:")
        nodes = ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"]
        driver_env = dict(env, RAY_ADDRESS=address, PYTHONPATH=str(fresh_clone),
                          RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")

        # the collective plane's group across the four nodes
        driver = fresh_clone / "tests" / "runtime" / "collective" / "nodes_driver.py"
        res = _run([str(venv / "bin" / "python"), str(driver)],
                   env=driver_env, timeout=600, cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-4000:]
        report = _result(res.stdout)
        assert report["worker_nodes"] == nodes and report["placed"] == nodes
        for row in report["schemes"]:
            assert row["world"] == 4 and row["host"] == nodes[0]
            assert row["decoded"] == row["jobs"] and row["stragglers"] > 0, row
            assert row["max_rel_error"] <= 1e-6 and row["identical"], row

        # the live runtime across the four nodes, on both data planes, to the same parameters
        checksums = {}
        for plane in ("star", "collective"):
            res = _run([str(venv / "bin" / "gcode"), "train", "--address", address, "--workers", "4",
                        "--jobs", "6", "--model", "logistic", "--batch-size", "120", "--check-decode",
                        "--json", "--quiet", "--data-plane", plane],
                       env=driver_env, timeout=600, cwd=tmp_path)
            assert res.returncode == 0, (plane, res.stderr[-4000:])
            result = _result(res.stdout)
            assert result["data_plane"] == plane
            assert result["decoded_jobs"] == result["jobs"] == 6, plane
            assert result["max_decode_rel_error"] < 1e-5, plane
            assert result["nodes"] == 4 and result["node_ips"] == nodes, plane
            checksums[plane] = result["param_checksum"]
        assert checksums["collective"] == pytest.approx(checksums["star"], rel=1e-6)

        proc.send_signal(signal.SIGTERM)  # --hold ends with Ctrl-C or SIGTERM (SIGINT may be ignored here)
        proc.wait(timeout=180)
        time.sleep(0.5)
        sids = _sessions("".join(err_lines))
        assert proc.returncode == 0, "".join(err_lines)[-4000:]
        assert len(sids) == 5, "".join(err_lines)[-2000:]      # head + 4 worker nodes
        assert _session_pids(sids) == {}
        assert _pids_naming(run_tmp) == {}
        assert not Path(run_tmp).exists()
    finally:
        _cleanup_after_failure(proc, run_tmp, sids)
