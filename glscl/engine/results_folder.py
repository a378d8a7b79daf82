"""The results folder of a run, ``<out_dir>/<name>``, and the config that produced it.

The folder holds config.yaml, fingerprint.json, environment.json, curve.csv, checkpoints/{last,best},
test_similarity.pt and, written last, metrics.json: the run's one record (``glscl.engine.record``)
(and skipped.json when bad items were skipped).

Fingerprint (``glscl.engine.fingerprint``): sha256 of the config fields that change results, as
sorted JSON; ``fingerprint.json`` stores it with the fields.

A rerun under an existing name continues the folder (resumes from ``checkpoints/last``) only when
its fields agree. Otherwise it stops before reading data or writing anything, with one line
naming the fields that differ (old -> new): choose another ``name=``, or ask for ``overwrite``
(``glscl train --overwrite``, ``run(cfg, overwrite=True)``), which first renames the old folder to
``<name>.old-<YYYYmmdd-HHMMSS>`` (``glscl.engine.fingerprint.move_aside``): nothing is deleted.
Starting over under the same config (``resume=False``, ``glscl train --no-resume``) renames the old
folder the same way.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glscl.config import ConfigError, RunConfig, load_config, save_config
from glscl.engine import distributed as dist
from glscl.engine.fingerprint import NOT_FINGERPRINTED, describe_differences, differences, fingerprint, fingerprint_fields, move_aside
from glscl.engine.record import record_problem
from glscl.files import atomic_write, write_json

FINGERPRINT_FILE = "fingerprint.json"
RESULT_FILES = ("checkpoints", "curve.csv", "test_similarity.pt")


class RunFolderError(ConfigError):
    """The results folder holds a run of another config (the message names the differing fields)."""


def run_folder(cfg: RunConfig) -> Path:
    return Path(cfg.out_dir) / cfg.name


def holds_results(folder: Path) -> bool:
    """Whether ``folder`` holds anything a run computed (checkpoints, curve, test similarity, a complete
    record; a record a grid wrote when an attempt started, or of a failed attempt, is no result)."""
    return any((folder / name).exists() for name in RESULT_FILES) or record_problem(folder) is None


def _stored_fields(folder: Path) -> dict[str, Any] | None:
    """The fingerprinted fields of the config that produced ``folder`` (None when no readable record)."""
    path = folder / FINGERPRINT_FILE
    try:
        return json.loads(path.read_text())["fields"]
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError):
        print(f"note: {path}: unreadable or incomplete; comparing with the saved config.yaml instead", file=sys.stderr)
    for path in (folder / "checkpoints" / "last" / "config.yaml", folder / "checkpoints" / "best" / "config.yaml",
                 folder / "config.yaml"):
        if path.is_file():
            try:
                return fingerprint_fields(load_config(path))
            except ConfigError:
                return None
    return None


def check_run_folder(cfg: RunConfig, *, overwrite: bool = False) -> Path:
    """The results folder of ``cfg``; raises ``RunFolderError`` if it holds results of another config
    (unless ``overwrite``). Reads only."""
    folder = run_folder(cfg)
    if overwrite or not holds_results(folder):
        return folder
    hint = (f"choose another name (name=...) or overwrite (glscl train --overwrite; run(cfg, overwrite=True)) "
            f"to move it to {folder}.old-<time>")
    stored = _stored_fields(folder)
    if stored is None:
        raise RunFolderError(f"name = {cfg.name!r}: {folder} holds results but no readable record of the config that produced them; {hint}")
    diff = differences(stored, fingerprint_fields(cfg))
    if diff:
        raise RunFolderError(f"name = {cfg.name!r}: {folder} holds a run of another config ({describe_differences(diff)}); {hint}")
    return folder


def start_fresh(cfg: RunConfig, *, resume: bool, overwrite: bool) -> None:
    """Before training: with ``overwrite``, or when not resuming a folder that holds results, move it aside."""
    folder = run_folder(cfg)
    if dist.is_main() and (overwrite or not resume) and holds_results(folder):
        print(f"moved the previous results of {folder} to {move_aside(folder, f'{folder}.old-{{time}}')}")
    dist.barrier()


def environment(cfg: RunConfig, device: torch.device) -> dict:
    from importlib.metadata import version  # open_clip's version without importing it (seconds per run)
    return {"python": platform.python_version(), "torch": torch.__version__, "open_clip": version("open_clip_torch"),
            "numpy": np.__version__, "platform": platform.platform(), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "processes": dist.world_size(), "global_batch": cfg.train.batch_size, "seed": cfg.train.seed,
            "frames": cfg.model.num_frames, "checkpoint_selected_on": "val", "threads": torch.get_num_threads()}


def write_run_files(cfg: RunConfig, device: torch.device) -> Path:
    """Create the results folder and write config.yaml, fingerprint.json and environment.json (rank 0)."""
    folder = run_folder(cfg)
    if dist.is_main():
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "config.yaml", lambda tmp: save_config(cfg, tmp))
        fields = fingerprint_fields(cfg)
        write_json(folder / FINGERPRINT_FILE, {"fingerprint": fingerprint(fields), "not_fingerprinted": list(NOT_FINGERPRINTED),
                                               "fields": fields})
        write_json(folder / "environment.json", environment(cfg, device))
    dist.barrier()
    return folder


# -- one writer per folder --------------------------------------------------------------------------

LOCK_SUFFIX = ".lock"
HEARTBEAT_S = 30.0  # how often a holder touches its lock file
STALE_AFTER_S = 300.0  # a lock of another host untouched this long is taken for left by a dead process


class FolderInUseError(ConfigError):
    """Another process writes into the folder (the message names it and the holder)."""


def lock_path(folder: str | Path, tag: str = "") -> Path:
    """The lock file of ``folder``: ``<folder><tag>.lock`` beside it (so moving the folder aside keeps no lock)."""
    folder = Path(folder)
    return folder.with_name(folder.name + tag + LOCK_SUFFIX)


def _read_lock(path: Path) -> dict | None:
    """The holder recorded in a lock file (None when it is gone); {} when it cannot be read."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _stale(path: Path, holder: dict) -> str | None:
    """Why the lock at ``path`` is left by a process that is gone (None while its holder may be alive).
    Same host: the holder's PID no longer runs. Another host: the file was not touched for STALE_AFTER_S."""
    if holder.get("host") == platform.node() and isinstance(holder.get("pid"), int):
        return None if _pid_alive(holder["pid"]) else "that process no longer runs"
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return "it is gone"
    return f"not renewed for {age:.0f} s" if age > STALE_AFTER_S else None


def _describe(holder: dict) -> str:
    if not holder:
        return "another process (its lock file is unreadable)"
    return f"PID {holder.get('pid')} on {holder.get('host')} (started {holder.get('started')}, {holder.get('command')})"


class FolderLock:
    """One writer per folder: ``with FolderLock(folder, "glscl train"): ...``.

    ``tag`` names one of several locks on a folder (a grid's shards: ``.shard-1-of-4``).

    Taking the lock creates ``<folder><tag>.lock`` in one step that fails if the file exists (a complete
    file written beside it, then ``os.link``ed to the lock's name) recording PID, host, start time and
    command. While held, a thread touches the file every HEARTBEAT_S seconds. A second process finds
    the file and stops with ``FolderInUseError`` naming the folder and the holder, unless the lock is
    stale (``_stale``): then it is taken over with a note. Released (the file removed) on exit, on an
    error and on an interruption; a SIGKILL leaves it behind, stale.
    """

    def __init__(self, folder: str | Path, command: str, tag: str = ""):
        self.folder, self.path, self.command = Path(folder), lock_path(folder, tag), command
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.record = {"pid": os.getpid(), "host": platform.node(),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command}

    def acquire(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.record))
        try:
            for _ in range(20):
                try:
                    os.link(tmp, self.path)  # atomic, and fails when the lock exists (on NFS too)
                    break
                except FileExistsError:
                    holder = _read_lock(self.path)
                    if holder is None:
                        continue  # released meanwhile: try again
                    if holder == {} and time.time() - self._mtime() < 2:
                        time.sleep(0.1)  # a lock written by another tool that is still being filled
                        continue
                    why = _stale(self.path, holder)
                    if why is None:
                        raise FolderInUseError(f"{self.folder} is in use by {_describe(holder)}; wait for it to end or "
                                               f"stop it (its lock: {self.path})") from None
                    self._take_over(holder, why)
            else:
                raise FolderInUseError(f"{self.folder}: could not take its lock {self.path} (it keeps changing hands)")
        finally:
            tmp.unlink(missing_ok=True)
        self._thread = threading.Thread(target=self._heartbeat, daemon=True)
        self._thread.start()
        return self

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def _take_over(self, holder: dict, why: str) -> None:
        """Remove a stale lock; only one of several processes doing this at once succeeds (a rename)."""
        aside = self.path.with_name(f".{self.path.name}.stale.{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return  # another process took it first
        if _read_lock(aside) != holder:  # not the one judged stale: put it back unless a new one exists
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
            aside.unlink(missing_ok=True)
            return
        aside.unlink(missing_ok=True)
        print(f"note: {self.folder}: took over the lock left by {_describe(holder)}: {why}", file=sys.stderr)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        self._stop.set()
        if _read_lock(self.path) == self.record:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
