"""What ties a folder to the config that made it: one module for the results folder of a run
(``glscl.engine.results_folder``: fingerprint.json) and for a grid folder (``glscl.lab.grids.folder``:
grid.json and each run's record).

* ``flat(cfg)``: every config field by its dotted name ('model.num_queries'), as JSON stores it;
* ``fingerprint_fields(cfg)``: the fields that change results. Left out (``NOT_FINGERPRINTED``):
  ``name`` and ``out_dir`` (where the folder is, not what it holds), ``device`` (the same run on
  another device), ``data.num_workers`` (how many processes decode) and the ``reference`` section
  (the paper's numbers, shown beside the run's). Of ``data.cache_dir`` only whether it is set counts
  (cache or end to end): the cache's own folder name already hashes the features. Every other
  field counts, paths as written;
* ``fingerprint(fields)``: sha256 (hex) of the fields (or a config's) as sorted JSON;
* ``differences(old, new)``: (field, old, new) for each field that differs; a field added to the
  config after ``old`` was stored counts as unchanged when the new value is its default;
  ``describe_differences`` writes them as one line ('train.epochs: 1 -> 2, ...');
* ``move_aside(folder, target)``: a folder of another config (or some of its paths) renamed to a
  stamped free name; nothing is deleted.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from glscl.config import RunConfig

NOT_FINGERPRINTED = ("name", "out_dir", "device", "data.num_workers", "reference.source", "reference.t2v", "reference.v2t")


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict of dotted keys: {'model': {'num_queries': 4}} -> {'model.num_queries': 4}."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def flat(cfg: RunConfig) -> dict[str, Any]:
    """Every field of ``cfg`` by its dotted name ('model.num_queries' -> cfg.model.num_queries), as JSON
    stores it (tuples as lists)."""
    return json.loads(json.dumps(flatten(cfg.to_dict()), default=str))


def fingerprint_fields(cfg: RunConfig) -> dict[str, Any]:
    """The dotted config fields that change results (see the module docstring)."""
    fields = {k: v for k, v in flat(cfg).items() if k not in NOT_FINGERPRINTED}
    fields["data.cache_dir"] = fields["data.cache_dir"] is not None
    return fields


def fingerprint(fields: dict[str, Any] | RunConfig) -> str:
    """sha256 (hex) of ``fields`` as sorted JSON (of a config: of its ``fingerprint_fields``)."""
    if isinstance(fields, RunConfig):
        fields = fingerprint_fields(fields)
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


class _Absent:
    def __repr__(self) -> str:
        return "(not recorded)"


ABSENT = _Absent()  # the old value of a field that ``old`` does not hold


def differences(old: dict[str, Any], new: dict[str, Any], skip: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
    """(field, old, new) for every field of ``new`` (but ``skip``) that differs from ``old``. A field unknown
    to ``old`` (added to the config later) differs only when ``new`` is not its default (then old is ``ABSENT``)."""
    defaults = fingerprint_fields(RunConfig())
    skip = set(skip)
    out = []
    for key, value in new.items():
        if key in skip:
            continue
        if key not in old:
            if value != defaults.get(key):
                out.append((key, ABSENT, value))
        elif old[key] != value:
            out.append((key, old[key], value))
    return out


def _show(key: str, value: Any) -> str:
    if key == "data.cache_dir" and isinstance(value, bool):
        return "set" if value else "None"
    return repr(value)


def describe_differences(diff: list[tuple[str, Any, Any]], shown: int = 6) -> str:
    """``differences`` as one line: 'field: old -> new, ...' (the first ``shown``, then 'and N more')."""
    text = ", ".join(f"{k}: {_show(k, a)} -> {_show(k, b)}" for k, a, b in diff[:shown])
    return text + (f" and {len(diff) - shown} more" if len(diff) > shown else "")


def move_aside(folder: str | Path, target: str | Path, parts: Iterable[Path] | None = None) -> Path | None:
    """Move ``folder`` aside to ``target`` with ``{time}`` filled in (YYYYmmdd-HHMMSS; ``-2``, ``-3``, ...
    appended while that name is taken). With ``parts`` (paths inside ``folder``), only those move, each
    to the same place under the target. Nothing is deleted. Returns the target, or None when there was
    nothing to move.

    A results folder: ``move_aside(d, f"{d}.old-{{time}}")``; runs of a grid folder:
    ``move_aside(out, out / "replaced-{time}", their paths)``."""
    folder = Path(folder)
    base = Path(str(target).replace("{time}", time.strftime("%Y%m%d-%H%M%S")))
    dest, n = base, 1
    while dest.exists():
        n += 1
        dest = base.with_name(f"{base.name}-{n}")
    if parts is None:
        if not folder.exists():
            return None
        os.replace(folder, dest)
        return dest
    moved = False
    for path in parts:
        if Path(path).exists():
            to = dest / Path(path).relative_to(folder)
            to.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, to)
            moved = True
    return dest if moved else None
