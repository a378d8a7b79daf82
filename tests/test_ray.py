"""Grids on Ray: the real run notebook as Ray tasks, threads from the CPUs Ray gives a run, a killed
driver, a killed worker, joining a running head with --address. One Ray head (2 CPUs, started with
`ray start --head --block` and stopped by ending that process: `ray stop` would stop every Ray
instance of the user) serves the module; the kill tests use a stub run notebook (same parameters,
writes the run's record after a sleep) so that they take seconds."""
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from conftest import tiny_run_config

from glscl.config import ConfigError, save_config
from glscl.engine.record import RECORD_FILE, read_record, write_record
from glscl.lab.grids import cluster, folder, runner
from glscl.lab.grids import spec as grids

# Token authentication, Ray's default, with a token of this test run's own (nothing written to ~/.ray): a
# driver that names its cluster (--address) joins only with both variables, as users export them.
if "RAY_AUTH_MODE" not in os.environ:
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

STUB_CODE = """\
import os, time
from pathlib import Path
from glscl.engine.record import finish_record
run_dir = Path(out_dir) / name
run_dir.mkdir(parents=True, exist_ok=True)
(run_dir / f"kernel-{os.getpid()}.started").touch()
time.sleep(float(overrides.get("train.epochs", 1)))
record = {"status": "ok", "t2v_R@1": 10.0 + overrides.get("loss.icl_weight", 0) + overrides["train.seed"], "run_s": 0.01,
          "omp_threads": int(os.environ.get("OMP_NUM_THREADS", 0)), "kernel_pid": os.getpid(),
          "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
finish_record(run_dir, record)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
    except OSError:
        return ""


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


@pytest.fixture(scope="module")
def head():
    """A Ray head with 2 CPUs and 2 GPUs (declared: Ray schedules them and sets CUDA_VISIBLE_DEVICES whether
    or not they exist) on a free port, joined by this process; stopped at the end of the module."""
    port, temp = _free_port(), tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a limit
    log = Path(temp) / "head.log"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log, "w") as f:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
                                 "--num-cpus=2", "--num-gpus=2", "--include-dashboard=false", f"--temp-dir={temp}"],
                                stdout=f, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 120
    while "block forever" not in log.read_text() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert proc.poll() is None, log.read_text()[-2000:]
    address = f"127.0.0.1:{port}"
    try:
        assert cluster.connect(address)  # this process joins; run_grid uses the connection as it is
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started, and only those
        proc.wait(timeout=90)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    nb = nbformat.v4.new_notebook()
    params = "\n".join(["name = 'run'", "out_dir = 'runs'", "base = 'embedded'", "overrides = {}", "quick = False",
                        "prepare_world = True", "progress = True"])
    nb.cells = [nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(STUB_CODE)]
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    path = tmp_path_factory.mktemp("stub") / "stub.ipynb"
    nbformat.write(nb, path)
    return path


def _stub_grid(path: Path, sleep: int, seeds=(0, 1), icl=(0.0, 0.5)) -> Path:
    path.write_text(yaml.safe_dump({
        "description": "stub grid", "base": "embedded", "prepare_world": False,
        "fixed": {"train.epochs": sleep, "data.cache_dir": None, "model.freeze_backbone": False},
        "vary": {"loss.icl_weight": list(icl)}, "seeds": list(seeds), "workers": 2}, sort_keys=False))
    return path


def _mtimes(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob(f"*/{RECORD_FILE}")}


def _info(out: Path, run_id: str) -> dict:
    return read_record(out / "runs" / run_id)


def _cli(*args, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "glscl.cli", "ablate", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# -- the real run notebook through Ray ---------------------------------------------------------------

def test_real_notebook_runs_as_ray_tasks_with_threads_from_the_cpus_ray_gives(head, tmp_path, tiny_world, tiny_clip):
    save_config(tiny_run_config(tiny_world, tiny_clip, tmp_path / "unused", cache_dir=tmp_path / "cache", epochs=1),
                tmp_path / "tiny-base.yaml")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"description": "tiny", "base": "tiny-base.yaml", "prepare_world": False,
                                    "vary": {"model.interaction": ["global", "both"]}, "seeds": [0]}))
    spec, out = grids.load_grid(path), tmp_path / "out"
    table = runner.run_grid(spec, out, cpus_per_run=1, progress=False, figures=False)
    assert sorted(table["run_id"]) == sorted(r.run_id for r in grids.expand(spec)) and (table["status"] == "ok").all()
    assert table["t2v_R@1"].between(0, 100).all() and (table["wall_s"] > table["run_s"]).all()
    for run_id in table["run_id"]:
        info = _info(out, run_id)
        assert info["pid"] != os.getpid() and info["host"] == platform.node()  # a Ray worker on this node
        assert (info["cpus"], info["threads"], info["attempt"]) == (1.0, 1, 1)
        assert info["fingerprint"] == folder.fingerprint(info["fields"])
        nb = nbformat.read(out / "notebooks" / f"{run_id}.ipynb", as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.execution_count is not None for c in code)
        assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
        printed = "".join(o.get("text", "") for c in code for o in c.outputs)
        assert ", 1 threads," in printed  # the kernel took the CPUs Ray assigned (GLSCL_THREADS -> torch)
        assert yaml.safe_load((out / "runs" / run_id / "config.yaml").read_text())["train"]["epochs"] == 1
    assert pd.read_csv(out / "results.csv")["run_id"].tolist() == table["run_id"].tolist()


# -- a killed driver, a killed worker --------------------------------------------------------------

def test_killed_driver_loses_nothing_duplicates_nothing_and_its_runs_stop(head, tmp_path, stub):
    path, out = _stub_grid(tmp_path / "g.yaml", sleep=4), tmp_path / "out"
    ids = [r.run_id for r in grids.expand(grids.load_grid(path))]
    proc = _cli(path, "--out", out, "--notebook", stub, cwd=tmp_path)  # no --address: a local Ray instance of its own
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline and not (
            (out / "results.csv").exists() and any(folder.run_status(out / "runs" / i) == "ok" for i in ids)):
        time.sleep(0.2)
    below = _descendants(proc.pid)  # Ray's processes, its workers and their kernels
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
    # the runs' processes (Ray workers, their kernels) and Ray's core go at once; Ray's per-node agents
    # exit by themselves after Ray's GCS reconnect timeout (60 s), not waited for here: ended by pid
    agents = {p for p in below if _cmdline(p).startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent"))}
    deadline = time.time() + 30
    while any(_alive(p) for p in below - agents) and time.time() < deadline:
        time.sleep(0.5)
    left = {p: _cmdline(p) for p in below - agents if _alive(p)}
    for p in below:
        if _alive(p):
            os.kill(p, signal.SIGKILL)
    assert not left, f"outlived the killed driver: {left}"
    states = {i: folder.run_status(out / "runs" / i) for i in ids}
    finished, running = _mtimes(out), [i for i in ids if _info(out, i).get("status") == "running"]
    assert "ok" in states.values() and running and all(states[i] == "pending" for i in running)
    table_at_kill = pd.read_csv(out / "results.csv")
    assert table_at_kill["run_id"].is_unique and table_at_kill.loc[table_at_kill["status"] == "ok", "wall_s"].notna().all()

    table = runner.run_grid(grids.load_grid(path), out, notebook=stub, progress=False, figures=False)  # rerun, on the head
    assert table["run_id"].tolist() == ids and (table["status"] == "ok").all() and table["wall_s"].notna().all()
    after = _mtimes(out)
    for run_id, state in states.items():
        if state == "ok":  # finished before the kill: not run again
            assert after[run_id] == finished[run_id] and _info(out, run_id)["attempt"] == 1
        elif run_id in running:  # in flight at the kill: ran again
            assert _info(out, run_id)["attempt"] == 2
    assert pd.read_csv(out / "results.csv")["run_id"].tolist() == ids
    assert table.loc[table["seed"] == 0, "t2v_R@1"].tolist() == [10.0, 10.5]


def test_killed_worker_is_retried_by_ray_and_its_kernel_exits(head, tmp_path, stub):
    path, out = _stub_grid(tmp_path / "g.yaml", sleep=5, seeds=(0,)), tmp_path / "out"
    spec = grids.load_grid(path)
    target = grids.expand(spec)[0].run_id
    result = {}
    driver = threading.Thread(target=lambda: result.update(
        table=runner.run_grid(spec, out, notebook=stub, cpus_per_run=1, progress=False, figures=False)))
    driver.start()
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "runs" / target).glob("kernel-*.started")):
        time.sleep(0.1)
    first = _info(out, target)
    assert first["status"] == "running" and first["attempt"] == 1
    os.kill(first["pid"], signal.SIGKILL)  # the Ray worker executing the run
    driver.join(timeout=240)
    assert not driver.is_alive()
    table = result["table"]
    assert (table["status"] == "ok").all() and table["run_id"].is_unique and not table.attrs["lost"]
    again = _info(out, target)
    assert again["attempt"] == 2 and again["pid"] != first["pid"] and again["status"] == "ok"
    final = read_record(out / "runs" / target)["kernel_pid"]
    kernels = [int(p.name.split("-")[1].split(".")[0]) for p in (out / "runs" / target).glob("kernel-*.started")]
    assert len(kernels) == 2 and final in kernels
    deadline = time.time() + 10
    while any(_alive(p) for p in kernels if p != final) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in kernels if p != final)  # the lost attempt's kernel saw its parent go and exited
    other = [i for i in table["run_id"] if i != target]
    assert all(_info(out, i)["attempt"] == 1 for i in other)


# -- joining a running head --------------------------------------------------------------------------

def test_address_joins_the_running_head_and_cpus_per_run_sets_the_threads(head, tmp_path, stub):
    path, out = _stub_grid(tmp_path / "g.yaml", sleep=1, seeds=(0,)), tmp_path / "out"
    proc = _cli(path, "--out", out, "--notebook", stub, "--address", head, "--cpus-per-run", 2, cwd=tmp_path)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    assert "2 runs: 2 ok" in stdout
    table = pd.read_csv(out / "results.csv")
    assert (table["status"] == "ok").all() and (table["omp_threads"] == 2).all()
    assert all((_info(out, i)["cpus"], _info(out, i)["threads"]) == (2.0, 2) for i in table["run_id"])


def test_gpus_per_run_gives_each_run_its_own_gpu_and_a_run_given_none_sees_none(head, tmp_path, stub):
    path, out = _stub_grid(tmp_path / "g.yaml", sleep=2, seeds=(0,)), tmp_path / "out"
    table = runner.run_grid(path, out, notebook=stub, cpus_per_run=1, gpus_per_run=1, progress=False, figures=False)
    assert (table["status"] == "ok").all()
    for run_id, seen in zip(table["run_id"], table["cuda_visible_devices"]):
        assert str(seen) in ("0", "1") and _info(out, run_id)["gpus"] == str(seen)  # the kernel saw what Ray gave
    assert table["omp_threads"].tolist() == [1, 1]
    table = runner.run_grid(path, tmp_path / "cpu", notebook=stub, gpus_per_run=0, progress=False, figures=False)
    assert (table["cuda_visible_devices"] == "").all()
    assert all(_info(tmp_path / "cpu", i)["gpus"] == "" for i in table["run_id"])


def test_resources_no_node_has_stop_with_one_line(head, tmp_path, stub):
    path = _stub_grid(tmp_path / "g.yaml", sleep=1, seeds=(0,))
    with pytest.raises(ConfigError, match=r"--gpus-per-run 3: no node of the Ray cluster has that much \(2 CPUs/2 GPUs\)"):
        runner.run_grid(path, tmp_path / "out", notebook=stub, gpus_per_run=3, progress=False)
    with pytest.raises(ConfigError, match="--address 127.0.0.1:1: no Ray head answers there"):
        cluster.check_address("127.0.0.1:1")


def test_overwrite_sets_the_runs_that_differ_aside_and_runs_them_again(head, tmp_path, stub):
    path, out = _stub_grid(tmp_path / "g.yaml", sleep=1, seeds=(0,)), tmp_path / "out"
    runner.run_grid(path, out, notebook=stub, progress=False, figures=False)
    first = _mtimes(out)
    data = yaml.safe_load(path.read_text())
    data["fixed"]["train.epochs"] = 2
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"another base or fixed settings \(train.epochs: 1 -> 2\) \(2 runs differ\)"):
        runner.run_grid(path, out, notebook=stub, progress=False)
    table = runner.run_grid(path, out, notebook=stub, overwrite=True, progress=False, figures=False)
    assert (table["status"] == "ok").all() and table["attempt"].tolist() == [1, 1]
    [aside] = out.glob("replaced-*")
    assert sorted(p.name for p in (aside / "runs").iterdir()) == sorted(first)  # nothing deleted
    assert sorted(p.name for p in (aside / "notebooks").iterdir()) == sorted(f"{i}.ipynb" for i in first)
    assert all(_info(out, i)["fields"]["train.epochs"] == 2 for i in first)
    assert folder.read_json(out / folder.GRID_STAMP)["fields"]["train.epochs"] == 2
    assert runner.run_grid(path, out, notebook=stub, progress=False, figures=False)["status"].eq("ok").all()  # agrees now


def test_default_resources_share_a_node_among_workers_runs(head):
    assert cluster.resources_per_run(workers=2) == (1, 1.0)  # the head: 2 CPUs, 2 GPUs
    assert cluster.resources_per_run(workers=1) == (2, 1.0)  # one GPU per run at most: a run is one process
    assert cluster.resources_per_run(workers=4) == (1, 0.5)  # never below one CPU; GPUs shared
    assert cluster.resources_per_run(workers=1, cpus=0.5, gpus=0) == (0.5, 0)
    with pytest.raises(ConfigError, match="--cpus-per-run 3 --gpus-per-run 1: no node"):
        cluster.resources_per_run(workers=1, cpus=3)


def test_json_records_are_replaced_whole(tmp_path):
    path = tmp_path / RECORD_FILE
    write_record(tmp_path, {"status": "running"})
    write_record(tmp_path, {"status": "ok", "wall_s": 1.5})
    assert json.loads(path.read_text()) == {"status": "ok", "wall_s": 1.5}
    assert [p.name for p in tmp_path.iterdir()] == [RECORD_FILE]  # no temporary file left behind
