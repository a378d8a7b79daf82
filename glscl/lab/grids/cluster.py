"""Grid runs on Ray: one task per run, each a papermill execution of the run notebook.

Where: by default a local Ray instance sized to this machine (all its CPUs and GPUs), which goes
down with the command; with ``address``, an existing cluster (``ray start --head`` on one node,
``ray start --address=<head>:<port>`` on the others; the grid folder and the working folder on
storage every node sees at the same path, glscl installed in the same environment everywhere).
As Ray asks of a driver that names its cluster, joining one with token authentication (Ray's
default) needs ``RAY_AUTH_MODE=token`` and the cluster's token (``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN``).

Resources: each run asks Ray for CPUs and GPUs (``resources_per_run``: by default ``workers`` runs
at once per node, sharing its CPUs and, where it has them, its GPUs) and starts where they are
free. Ray sets CUDA_VISIBLE_DEVICES to the GPUs it gave the task (a run given none sees none), and
the run's kernel gets as many threads as it got CPUs (OMP_NUM_THREADS, MKL_NUM_THREADS and
GLSCL_THREADS, which the run notebook passes to ``torch.set_num_threads``).

Failures: an error inside the notebook is the run's result (status failed, the grid goes on;
``--rerun-failed`` runs it again). A kernel that died (killed from outside, e.g. by the OOM killer)
is started again once (``KERNEL_RETRIES``), the run resuming from its last checkpoint; dead a
second time, the run is recorded as failed. A lost worker or node is not: Ray starts the task again, up to
``RETRIES`` times, and the run resumes from its last checkpoint (the kernel of the lost attempt
exits within a second, when its parent is gone). A run still lost after that, or in flight when
the command itself is killed (a local instance goes down with its driver, a cluster ends a dead
driver's tasks), stays pending and runs on the next invocation.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import platform
import re
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from glscl.config import ConfigError
from glscl.engine.fingerprint import differences
from glscl.engine.record import LEGACY_FILES, read_record, record_problem, update_record, write_record
from glscl.lab.grids.folder import run_paths
from glscl.lab.grids.notebook import NOTEBOOK_NEEDS
from glscl.lab.grids.spec import RunSpec

RETRIES = 2  # times Ray starts a run again after its worker or node was lost
KERNEL_RETRIES = 1  # times a run's notebook is started again after its kernel died (e.g. killed for memory)


def machine_cpus() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address``, or start a local instance with ``num_cpus`` CPUs (default: the
    machine's) and its GPUs. Returns False when this process was already connected (then nothing is
    started and ``disconnect`` is not needed)."""
    import ray
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = dict(log_to_driver=False, logging_level=logging.WARNING)
    # ray.init makes SIGTERM exit the driver at once; glscl's own handler (one line, Ray shut down) is put back
    on_sigterm = signal.getsignal(signal.SIGTERM)
    if not address:  # a private instance on this machine: Ray's token-authentication warning does not apply
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    if address:
        check_address(address)
        try:
            ray.init(address=address, **quiet)
        except ConnectionError as e:
            raise ConfigError(f"--address {address}: Ray did not let this process join ({e}); a cluster with token "
                              "authentication (Ray's default) needs RAY_AUTH_MODE=token and its token in "
                              "~/.ray/auth_token or RAY_AUTH_TOKEN") from None
    else:
        # Ray runs its workers at niceness 15 by default: the grid would then yield the CPUs to anything
        # else running here, and its timings would measure the other jobs. A local grid is the machine's main job.
        ray.init(address="local", num_cpus=num_cpus or machine_cpus(), include_dashboard=False,
                 _system_config={"worker_niceness": 0}, **quiet)
    if threading.current_thread() is threading.main_thread() and on_sigterm is not None:
        signal.signal(signal.SIGTERM, on_sigterm)
    return True


def check_address(address: str) -> None:
    """Stop with one line when nothing listens at ``address`` (HOST:PORT), instead of Ray's long retries."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=10).close()
    except (OSError, ValueError):
        raise ConfigError(f"--address {address}: no Ray head answers there (start one with ray start --head "
                          "--port=<port>)") from None


def disconnect() -> None:
    """Leave the cluster (a local instance stops)."""
    import ray
    ray.shutdown()


def node_resources() -> list[dict]:
    """The resources (CPU, GPU, memory, ...) of every live node."""
    import ray
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def resources_per_run(workers: int, cpus: float | None = None, gpus: float | None = None) -> tuple[float, float]:
    """(CPUs, GPUs) each run asks for: ``workers`` runs at once per node, sharing it. Default CPUs: the
    smallest node's // ``workers``; default GPUs: none on a cluster without GPUs, else the smallest GPU
    node's / ``workers``, at most 1 (a fraction: runs share a GPU). Stops with one line when no node has that much."""
    nodes = node_resources()
    workers = max(1, workers)
    if cpus is None:
        cpus = max(1, int(min(n.get("CPU", 1) for n in nodes)) // workers)
    if gpus is None:
        with_gpus = [n["GPU"] for n in nodes if n.get("GPU", 0) > 0]
        gpus = min(1.0, min(with_gpus) / workers) if with_gpus else 0.0
    if cpus <= 0 or gpus < 0:
        raise ConfigError(f"--cpus-per-run {cpus:g} --gpus-per-run {gpus:g}: need cpus > 0 and gpus >= 0")
    if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        have = ", ".join(f"{n.get('CPU', 0):g} CPUs/{n.get('GPU', 0):g} GPUs" for n in nodes)
        raise ConfigError(f"--cpus-per-run {cpus:g} --gpus-per-run {gpus:g}: no node of the Ray cluster has that much ({have})")
    return cpus, gpus


def run_all(runs: list[RunSpec], cpus: float, gpus: float, on_done: Callable[[str, str, float], None],
            per_run: dict[str, dict], **kwargs) -> None:
    """Submit one Ray task per run, ``execute_run(run, **kwargs, **per_run[run_id])``, in order, and call
    ``on_done(run_id, status, wall_s)`` as each ends; status 'lost' when Ray gave up on it (its worker
    or node lost ``RETRIES + 1`` times)."""
    import ray
    task = ray.remote(execute_run).options(num_cpus=cpus, num_gpus=gpus, max_retries=RETRIES, retry_exceptions=False)
    refs = {task.remote(r, **kwargs, **per_run[r.run_id]): r for r in runs}
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            try:
                on_done(*ray.get(ref))
            except ray.exceptions.RayError as e:
                lines = [line for line in str(e).splitlines() if line.strip()]
                print(f"glscl ablate: {refs[ref].run_id} lost ({lines[-1] if lines else type(e).__name__}); "
                      "it stays pending", file=sys.stderr)
                on_done(refs[ref].run_id, "lost", float("nan"))


# -- one run, inside a Ray task -------------------------------------------------------------------

def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def _take_resources() -> tuple[float, int, str]:
    """(CPUs Ray gave this task, threads, CUDA_VISIBLE_DEVICES); sets the variables the kernel inherits:
    the threads, and no GPU at all when Ray gave none (Ray leaves CUDA_VISIBLE_DEVICES alone then)."""
    import ray
    assigned = ray.get_runtime_context().get_assigned_resources()
    cpus = assigned.get("CPU", 1.0)
    threads = max(1, int(cpus))
    if not assigned.get("GPU"):
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    for var in ("GLSCL_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return cpus, threads, os.environ.get("CUDA_VISIBLE_DEVICES", "")


@contextlib.contextmanager
def _stderr_to(path: Path):
    """Point file descriptor 2 at ``path`` (the kernel started meanwhile inherits it), then back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = os.dup(2)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def execute_run(run: RunSpec, out: str, notebook: str, base: str, quick: bool, cwd: str, fields: dict,
                fingerprint: str) -> tuple[str, str, float]:
    """Execute the run notebook for ``run`` with papermill, keeping the attempt in the run's record
    (``glscl.engine.record``; what it holds: ``glscl.lab.grids.folder``): written afresh when the
    attempt starts (status running), completed when it ends (wall_s, finished; status failed with
    error and traceback_tail). Returns (run_id, 'ok' or 'failed', wall seconds)."""
    import papermill as pm
    from nbclient.exceptions import DeadKernelError
    run_dir, nb_out, log = run_paths(out, run.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    nb_out.parent.mkdir(parents=True, exist_ok=True)
    previous = read_record(run_dir)  # an earlier attempt (of the earlier layout too)
    same = isinstance(previous.get("fields"), dict) and not differences(previous["fields"], fields)
    attempt = previous.get("attempt", 0) + 1 if same else 1
    for name in LEGACY_FILES:  # the earlier layout's files of this run: its record below replaces them
        (run_dir / name).unlink(missing_ok=True)
    cpus, threads, gpus = _take_resources()
    info = {"run_id": run.run_id, "status": "running", "attempt": attempt, "fingerprint": fingerprint, "host": platform.node(),
            "pid": os.getpid(), "cpus": cpus, "threads": threads, "gpus": gpus, "started": _now(), "notebook": str(nb_out),
            "overrides": run.overrides, "fields": fields}
    write_record(run_dir, info)  # replaces an earlier attempt's record: ok needs this attempt's
    t0 = time.perf_counter()
    params = dict(name=run.run_id, out_dir=str(Path(out) / "runs"), base=base, overrides=run.overrides, quick=quick,
                  prepare_world=False, progress=False)
    outcome: dict = {"status": "ok"}
    try:
        for kernel_try in range(KERNEL_RETRIES + 1):
            try:
                with _stderr_to(log):
                    # "immediate": the record is written before the last cell ends, and a graceful kernel
                    # shutdown costs about 1.5 s per run (bench_grid.py)
                    pm.execute_notebook(notebook, str(nb_out), parameters=params, kernel_name="python3", progress_bar=False,
                                        cwd=cwd, log_output=False, shutdown_kernel="immediate")
                break
            except DeadKernelError:  # killed from outside (e.g. the OOM killer): once more, resuming from its checkpoint
                if kernel_try == KERNEL_RETRIES:
                    raise
                with open(log, "a") as f:
                    f.write("glscl ablate: the kernel died (killed from outside, e.g. out of memory); starting it again\n")
        problem = record_problem(run_dir, NOTEBOOK_NEEDS)
        if problem:
            outcome = {"status": "failed", "error": f"the notebook ended without a complete record ({problem})", "traceback_tail": ""}
    except DeadKernelError as e:
        outcome = {"status": "failed", "error": f"the kernel died {KERNEL_RETRIES + 1} times (killed from outside, e.g. out "
                   f"of memory: see dmesg): {_strip_ansi(str(e)).strip().splitlines()[0] if str(e).strip() else 'DeadKernelError'}",
                   "traceback_tail": ""}
    except Exception as e:  # a failed run is recorded and the grid goes on
        if hasattr(e, "ename"):  # papermill's PapermillExecutionError: the error inside the notebook
            error, tb = f"{e.ename}: {_strip_ansi(str(e.evalue))}", _strip_ansi("\n".join(e.traceback))
        else:
            error, tb = f"{type(e).__name__}: {e}", traceback.format_exc()
        outcome = {"status": "failed", "error": (error.strip().splitlines() or [error])[0],
                   "traceback_tail": "\n".join(tb.strip().splitlines()[-25:])}
    wall = time.perf_counter() - t0
    # the attempt's keys again: a kernel started anew after run() finished (a kernel retry) leaves run()'s record alone
    update_record(run_dir, **{**info, **outcome}, wall_s=wall, finished=_now())
    return run.run_id, outcome["status"], wall
