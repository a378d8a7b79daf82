"""The results folder of a run, ``<out_dir>/<name>``, and the config that produced it.

The folder holds config.yaml, fingerprint.json, environment.json, curve.csv, metrics.json,
test_similarity.pt, checkpoints/{last,best} (and skipped.json when bad items were skipped).

Fingerprint: sha256 of the config fields that change results, as sorted JSON (``fingerprint.json``
stores it with the fields). Left out (``NOT_FINGERPRINTED``): ``name`` and ``out_dir`` (where the
folder is, not what it holds), ``device`` (the same run on another device) and
``data.num_workers`` (how many processes decode) and the ``reference`` section (the paper's numbers,
shown beside the run's). Of ``data.cache_dir`` only whether it is set
counts (cache or end to end): the cache's own folder name already hashes the features. Every other
field counts, paths as written. A field added to the config after a folder was written counts as
unchanged when the new value is its default.

A rerun under an existing name continues the folder (resumes from ``checkpoints/last``) only when
the fingerprints agree. Otherwise it stops before reading data or writing anything, with one line
naming the fields that differ (old -> new): choose another ``name=``, or ask for ``overwrite``
(``glscl train --overwrite``, ``run(cfg, overwrite=True)``), which first renames the old folder to
``<name>.old-<YYYYmmdd-HHMMSS>``: nothing is deleted. Starting over under the same config
(``resume=False``, ``glscl train --no-resume``) renames the old folder the same way.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glscl.config import ConfigError, RunConfig, load_config, save_config
from glscl.engine import distributed as dist

NOT_FINGERPRINTED = ("name", "out_dir", "device", "data.num_workers", "reference.source", "reference.t2v", "reference.v2t")
FINGERPRINT_FILE = "fingerprint.json"
RESULT_FILES = ("checkpoints", "metrics.json", "curve.csv", "test_similarity.pt")


class RunFolderError(ConfigError):
    """The results folder holds a run of another config (the message names the differing fields)."""


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def fingerprint_fields(cfg: RunConfig) -> dict[str, Any]:
    """The dotted config fields that change results (see the module docstring)."""
    fields = {k: v for k, v in _flatten(cfg.to_dict()).items() if k not in NOT_FINGERPRINTED}
    fields["data.cache_dir"] = fields["data.cache_dir"] is not None
    return fields


def fingerprint(cfg: RunConfig) -> str:
    """sha256 (hex) of ``fingerprint_fields(cfg)`` as sorted JSON."""
    return hashlib.sha256(json.dumps(fingerprint_fields(cfg), sort_keys=True).encode()).hexdigest()


def run_folder(cfg: RunConfig) -> Path:
    return Path(cfg.out_dir) / cfg.name


def holds_results(folder: Path) -> bool:
    """Whether ``folder`` holds anything a run computed (checkpoints, curve, metrics)."""
    return any((folder / name).exists() for name in RESULT_FILES)


def _stored_fields(folder: Path) -> dict[str, Any] | None:
    """The fingerprinted fields of the config that produced ``folder`` (None when no readable record)."""
    try:
        return json.loads((folder / FINGERPRINT_FILE).read_text())["fields"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for path in (folder / "checkpoints" / "last" / "config.yaml", folder / "checkpoints" / "best" / "config.yaml",
                 folder / "config.yaml"):
        if path.is_file():
            try:
                return fingerprint_fields(load_config(path))
            except ConfigError:
                return None
    return None


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, old, new) for every fingerprinted field that differs. A field unknown to ``old`` (added
    to the config later) differs only when ``new`` is not its default."""
    defaults = fingerprint_fields(RunConfig())
    out = []
    for key, value in new.items():
        if key not in old:
            if value != defaults.get(key):
                out.append((key, _ABSENT, value))
        elif old[key] != value:
            out.append((key, old[key], value))
    return out


_ABSENT = object()


def _show(key: str, value: Any) -> str:
    if value is _ABSENT:
        return "(not recorded)"
    if key == "data.cache_dir":
        return "set" if value else "None"
    return repr(value)


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
        shown = ", ".join(f"{k}: {_show(k, a)} -> {_show(k, b)}" for k, a, b in diff[:6])
        more = f" and {len(diff) - 6} more" if len(diff) > 6 else ""
        raise RunFolderError(f"name = {cfg.name!r}: {folder} holds a run of another config ({shown}{more}); {hint}")
    return folder


def move_aside(folder: Path) -> Path | None:
    """Rename ``folder`` to ``<name>.old-<YYYYmmdd-HHMMSS>`` (a free name); None if it does not exist."""
    if not folder.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = folder.with_name(f"{folder.name}.old-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}.old-{stamp}-{n}")
    os.replace(folder, target)
    print(f"moved the previous results of {folder} to {target}")
    return target


def start_fresh(cfg: RunConfig, *, resume: bool, overwrite: bool) -> None:
    """Before training: with ``overwrite``, or when not resuming a folder that holds results, move it aside."""
    folder = run_folder(cfg)
    if dist.is_main() and (overwrite or not resume) and holds_results(folder):
        move_aside(folder)
    dist.barrier()


def environment(cfg: RunConfig, device: torch.device) -> dict:
    import open_clip
    return {"python": platform.python_version(), "torch": torch.__version__, "open_clip": open_clip.__version__,
            "numpy": np.__version__, "platform": platform.platform(), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "processes": dist.world_size(), "global_batch": cfg.train.batch_size, "seed": cfg.train.seed,
            "frames": cfg.model.num_frames, "checkpoint_selected_on": "val", "threads": torch.get_num_threads()}


def write_run_files(cfg: RunConfig, device: torch.device) -> Path:
    """Create the results folder and write config.yaml, fingerprint.json and environment.json (rank 0)."""
    folder = run_folder(cfg)
    if dist.is_main():
        folder.mkdir(parents=True, exist_ok=True)
        save_config(cfg, folder / "config.yaml")
        record = {"fingerprint": fingerprint(cfg), "not_fingerprinted": list(NOT_FINGERPRINTED), "fields": fingerprint_fields(cfg)}
        (folder / FINGERPRINT_FILE).write_text(json.dumps(record, indent=2))
        (folder / "environment.json").write_text(json.dumps(environment(cfg, device), indent=2))
    dist.barrier()
    return folder
