"""The one record of a run: ``<out_dir>/<name>/metrics.json`` (``RECORD_FILE``), the truth about the run.

One flat JSON object that pandas reads, written atomically (``glscl.files.write_json``) and only
through this module:

* ``glscl.engine.run.run`` writes it as the run's last step: ``status`` "ok", the metrics on test,
  the twin accuracy and mechanism metrics on the embedded world, ``train_steps``, ``epochs``,
  ``best_val_score``, the timings ``cache_s``, ``train_s``, ``eval_s``, the seed and the head's
  settings (and, when the config carries the paper's numbers, one nested ``reference`` entry);
* the run notebook adds ``prepare_s`` and ``run_s`` (``glscl.lab.grids.notebook.run_and_record``);
* a grid (``glscl.lab.grids.cluster``) writes it when an attempt starts (``status`` "running",
  ``attempt``, the config's ``fields`` and ``fingerprint``, host, pid, resources), ``run`` keeps
  those keys, and the grid adds ``wall_s`` and ``finished`` when the attempt ends, or ``status``
  "failed" with ``error`` (one line) and ``traceback_tail``.

A record is complete (``record_problem`` returns None) when it parses, its status is "ok" and it
holds the numbers asked for; a torn, unreadable or incomplete record is never taken for a finished run.

Earlier grid folders kept a run in three files: metrics.json (what ``run`` wrote), record.json (the
same plus prepare_s and run_s) and ablate.json (the grid's status, attempt, fields, wall_s, error).
``read_record`` reads such a run as one record (``LEGACY_FILES``), so a rerun of the grid skips the
runs they show finished; the grid removes them when it runs that run again.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from glscl.files import write_json

RECORD_FILE = "metrics.json"
LEGACY_NOTEBOOK_FILE, LEGACY_GRID_FILE = "record.json", "ablate.json"
LEGACY_FILES = (LEGACY_NOTEBOOK_FILE, LEGACY_GRID_FILE)


def _read(path: Path) -> tuple[dict, str | None]:
    """(the JSON object in ``path``, None) or ({}, why not: missing, torn, not an object)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, f"{path}: missing"
    except (OSError, ValueError) as e:
        return {}, f"{path}: torn or unreadable ({(str(e).splitlines() or [type(e).__name__])[0][:80]})"
    return (data, None) if isinstance(data, dict) else ({}, f"{path}: not a JSON object")


def is_legacy(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is a grid run of the earlier layout (its status in ablate.json; ``read_record``)."""
    run_dir = Path(run_dir)
    return (run_dir / LEGACY_GRID_FILE).is_file() and "status" not in _read(run_dir / RECORD_FILE)[0]


def _load(run_dir: Path) -> tuple[dict, str | None, Path]:
    """(record, why it cannot be read or None, the file that holds the results)."""
    if is_legacy(run_dir):
        record, problem = _read(run_dir / LEGACY_NOTEBOOK_FILE)
        info, _ = _read(run_dir / LEGACY_GRID_FILE)
        return {**record, **info}, problem, run_dir / LEGACY_NOTEBOOK_FILE
    record, problem = _read(run_dir / RECORD_FILE)
    return record, problem, run_dir / RECORD_FILE


def read_record(run_dir: str | Path) -> dict:
    """The run's record ({} when absent or unreadable); a run of the earlier grid layout read from its
    record.json and ablate.json. A record without a status (written by an earlier ``run``) is "ok"."""
    record, _, _ = _load(Path(run_dir))
    return {**record, "status": record.get("status", "ok")} if record else {}


def record_problem(run_dir: str | Path, need: tuple[str, ...] = ("t2v_R@1",)) -> str | None:
    """Why the run's record does not show a finished run (missing, torn, not an object, its status not
    "ok", or one of ``need`` missing or not a number), naming the file; None when it does."""
    record, problem, path = _load(Path(run_dir))
    if problem:
        return problem
    status = record.get("status", "ok")
    if status != "ok":
        return f"{path}: status {status}"
    missing = [k for k in need if not isinstance(record.get(k), (int, float)) or isinstance(record.get(k), bool)]
    return f"{path}: incomplete (no {', '.join(missing)})" if missing else None


def write_record(run_dir: str | Path, record: dict[str, Any]) -> None:
    """Write the run's record (atomically), replacing any other."""
    write_json(Path(run_dir) / RECORD_FILE, record)


def finish_record(run_dir: str | Path, record: dict[str, Any]) -> dict:
    """``run``'s record, written over what is there; what an attempt recorded when it started (a record
    whose status is "running") is kept beneath it. Returns what was written."""
    current, _ = _read(Path(run_dir) / RECORD_FILE)
    merged = {**(current if current.get("status") == "running" else {}), **record}
    write_record(run_dir, merged)
    return merged


def update_record(run_dir: str | Path, **fields: Any) -> dict:
    """Add ``fields`` to the run's record (read, merged, written atomically); returns the record."""
    current, _ = _read(Path(run_dir) / RECORD_FILE)
    merged = {**current, **fields}
    write_record(run_dir, merged)
    return merged
