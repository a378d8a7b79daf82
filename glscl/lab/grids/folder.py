"""A grid folder on disk: the state of each run, the fingerprints that tie the folder to its grid, the tidy table.

Layout::

    grid.yaml                  the grid file as last run
    grid.json                  the grid's fingerprint: sha256 of grid.yaml, and the config every run starts
                               from (base + fixed, + quick) as the results-changing fields that
                               glscl.engine.results_folder fingerprints
    runs/<run_id>/             the run's results folder (record.json, metrics.json, curve.csv, config.yaml, ...)
                               and ablate.json, the grid's record of the run (below)
    notebooks/<run_id>.ipynb   the executed run notebook, kept for every run (failed ones too)
    logs/<run_id>.log          what the run's kernel printed to stderr
    results.csv                the tidy table: one row per run, rebuilt from runs/ every time
    figures/                   PNG, PDF and SVG figures (glscl.lab.grids.figures)
    replaced-<time>/           runs set aside by --overwrite (nothing is deleted)

ablate.json is written atomically (``glscl.engine.checkpoint.atomic_write``: a temporary file
unique to the process, renamed over it) when a run starts and again when it ends: status
(running, ok, failed), attempt (the times the run was started in this folder), the fingerprint
and fields of its config, host, pid (the Ray worker), cpus, threads, gpus, started, notebook; at
the end wall_s and finished, and for a failed run error and traceback_tail. A run is ok exactly
when ablate.json says ok, which is written after the notebook's record.json, and that record
parses and holds the run's metrics: a run killed at any point, or whose record is torn or
incomplete, is pending (and runs again, with a one-line note naming the file), never ok with
missing metrics or wall time.

Fingerprints: a rerun into an existing folder first compares the stored fields with the grid's
(the base + fixed config; keys the grid varies are left out) and with every started run's. Any
difference stops the grid with one line naming the fields (old -> new): run into a new --out, or
add --overwrite, which moves the runs that differ to ``replaced-<time>/`` and runs them again.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from glscl.config import ConfigError, RunConfig
from glscl.files import atomic_write, write_json
from glscl.lab.grids.notebook import read_record, record_problem
from glscl.lab.grids.spec import GridSpec, expand, load_grid

GRID_FILE, GRID_STAMP, RUN_FILE = "grid.yaml", "grid.json", "ablate.json"
_RECORD_SKIP = {"name"}  # record.json keys that repeat what the table already says
_SHOWN = 4  # differing fields named in an error line


# -- files ----------------------------------------------------------------------------------------

def read_json(path: Path) -> dict:
    """The JSON object in ``path`` ({} when absent or unreadable)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_paths(out: str | Path, run_id: str) -> tuple[Path, Path, Path]:
    """(results folder, executed notebook, kernel log) of a run."""
    out = Path(out)
    return out / "runs" / run_id, out / "notebooks" / f"{run_id}.ipynb", out / "logs" / f"{run_id}.log"


def run_status(run_dir: Path) -> str:
    """'ok' (ablate.json says ok and record.json holds the run's metrics), 'failed', or 'pending' (not
    run, running, stopped, or a record that is torn or incomplete: ``record_problem``)."""
    status = read_json(Path(run_dir) / RUN_FILE).get("status")
    if status == "ok" and record_problem(run_dir) is None:
        return "ok"
    return "failed" if status == "failed" else "pending"


def torn_records(out: str | Path, run_ids) -> list[str]:
    """One note per run that ablate.json calls ok but whose record.json is torn or incomplete (it runs again)."""
    notes = []
    for run_id in run_ids:
        run_dir = run_paths(out, run_id)[0]
        if read_json(run_dir / RUN_FILE).get("status") == "ok":
            problem = record_problem(run_dir)
            if problem:
                notes.append(f"note: {problem}; the run is pending and runs again")
    return notes


# -- fingerprints -----------------------------------------------------------------------------------

def config_fields(cfg: RunConfig) -> dict[str, Any]:
    """The results-changing fields of a config (``glscl.engine.results_folder.fingerprint_fields``), as JSON stores them."""
    from glscl.engine.results_folder import fingerprint_fields
    return json.loads(json.dumps(fingerprint_fields(cfg), default=str))


def fingerprint(fields: dict[str, Any]) -> str:
    """sha256 (hex) of ``fields`` as sorted JSON."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def grid_stamp(spec: GridSpec, base_cfg: RunConfig) -> dict:
    """What grid.json holds: the grid file's sha256 and the fields of the config every run starts from."""
    text = Path(spec.source).read_bytes() if spec.source and Path(spec.source).is_file() else b""
    fields = {k: v for k, v in config_fields(base_cfg).items() if k != "train.seed"}
    return {"grid_sha256": hashlib.sha256(text).hexdigest(), "fingerprint": fingerprint(fields), "fields": fields}


def _differences(old: dict, new: dict, skip: set | frozenset = frozenset()) -> list[str]:
    keys = [k for k in dict.fromkeys([*new, *old]) if k not in skip and old.get(k, "(absent)") != new.get(k, "(absent)")]
    return [f"{k}: {old.get(k, '(absent)')!r} -> {new.get(k, '(absent)')!r}" for k in keys]


def differing_runs(out: str | Path, stamp: dict, run_fields: dict[str, dict], vary: set[str]) -> tuple[list[str], str]:
    """(ids of the started runs whose config differs from ``run_fields``, a one-line account of the
    first difference, grid-level first); ``([], '')`` when the folder agrees with the grid."""
    out = Path(out)
    notes, ids = [], []
    stored = read_json(out / GRID_STAMP)
    if stored.get("fields") is not None:
        diff = _differences(stored["fields"], stamp["fields"], skip=vary)
        if diff:
            notes.append(f"{out} was run with another base or fixed settings ({_shorten(diff)})")
    for run_id, fields in run_fields.items():
        record = read_json(run_paths(out, run_id)[0] / RUN_FILE)
        if not record:
            continue  # never started here
        if record.get("fingerprint") != fingerprint(fields):
            ids.append(run_id)
            if len(notes) < 1:
                diff = _differences(record.get("fields") or {}, fields) if "fields" in record else ["no fingerprint stored"]
                notes.append(f"{out}/runs/{run_id} was run with another config ({_shorten(diff)})")
    if not notes:
        return [], ""
    more = f" ({len(ids)} runs differ)" if len(ids) > 1 else ""
    return ids, notes[0] + more


def _shorten(diff: list[str]) -> str:
    return ", ".join(diff[:_SHOWN]) + (f" and {len(diff) - _SHOWN} more" if len(diff) > _SHOWN else "")


def check_folder(out: str | Path, stamp: dict, run_fields: dict[str, dict], vary: set[str], overwrite: bool) -> list[str]:
    """The runs to set aside before running (``differing_runs``); raises ``ConfigError`` when the folder
    disagrees with the grid and ``overwrite`` is not set."""
    ids, note = differing_runs(out, stamp, run_fields, vary)
    if note and not overwrite:
        raise ConfigError(f"{note}; run into a new --out, or add --overwrite to move the runs that differ to "
                          f"{Path(out) / 'replaced-<time>'} and run them again")
    return ids


def set_aside(out: str | Path, run_ids: list[str]) -> Path | None:
    """Move the runs' folders, notebooks and logs to ``<out>/replaced-<YYYYmmdd-HHMMSS>/`` (nothing is deleted)."""
    if not run_ids:
        return None
    out = Path(out)
    target = out / time.strftime("replaced-%Y%m%d-%H%M%S")
    n = 1
    while target.exists():
        n += 1
        target = out / time.strftime(f"replaced-%Y%m%d-%H%M%S-{n}")
    for run_id in run_ids:
        for path in run_paths(out, run_id):
            if path.exists():
                dest = target / path.relative_to(out)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(path), dest)
    return target


def write_grid_files(out: str | Path, spec: GridSpec, stamp: dict) -> None:
    """grid.yaml (the grid file as run) and grid.json (its fingerprint), both atomically."""
    out = Path(out)
    if spec.source and Path(spec.source).is_file():
        text = Path(spec.source).read_text()
        atomic_write(out / GRID_FILE, lambda tmp: tmp.write_text(text))
    write_json(out / GRID_STAMP, stamp)


# -- the tidy table ---------------------------------------------------------------------------------

def collect(spec: GridSpec, out: str | Path):
    """The tidy table of a grid folder: one row per run of the grid, rebuilt from ``<out>/runs``.

    Columns: run_id, status, the varying keys (empty where a key was irrelevant), seed, every
    field of record.json (metrics; cache_s/train_s/eval_s from run(); prepare_s; run_s = time
    inside run()), wall_s = the notebook's wall time, overhead_s = wall_s - run_s, attempt, host,
    error (failed runs).
    """
    import pandas as pd
    cols = spec.columns
    rows = []
    for r in expand(spec):
        d = run_paths(out, r.run_id)[0]
        row: dict[str, Any] = {"run_id": r.run_id, "status": run_status(d)}
        row.update({cols[k]: r.values.get(k, math.nan) for k in spec.vary})
        row["seed"] = r.seed
        info = read_json(d / RUN_FILE)
        if row["status"] == "ok":
            for k, v in read_record(d).items():
                if k not in _RECORD_SKIP and k not in row:
                    row[k] = v
            row.update(wall_s=info["wall_s"], overhead_s=info["wall_s"] - row.get("run_s", math.nan))
        elif row["status"] == "failed":
            row.update(wall_s=info.get("wall_s", math.nan), error=info.get("error", ""))
        if info:
            row.update(attempt=info.get("attempt"), host=info.get("host"))
        rows.append(row)
    return _int_columns(pd.DataFrame(rows), spec)


def _int_columns(table, spec: GridSpec):
    """Integer keys stay integers where some rows are empty (e.g. K of the global-only runs)."""
    for key, col in spec.columns.items():
        values = [v for v in spec.vary[key] if v is not None]
        if col in table and values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            table[col] = table[col].astype("Int64")
    return table


def read_table(grid_dir: str | Path):
    """(results.csv, grid spec) of a grid folder, integer keys restored."""
    import pandas as pd
    grid_dir = Path(grid_dir)
    spec = load_grid(grid_dir / GRID_FILE)
    path = grid_dir / "results.csv"
    try:
        table = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as e:  # an empty or torn file
        raise ConfigError(f"{path}: not a readable table ({_first_line(e)}); rebuild it with glscl ablate "
                          f"{grid_dir / GRID_FILE} --out {grid_dir}") from None
    if not {"run_id", "status"} <= set(table.columns):
        raise ConfigError(f"{path}: incomplete (no run_id or status column); rebuild it with glscl ablate "
                          f"{grid_dir / GRID_FILE} --out {grid_dir}")
    return _int_columns(table, spec), spec


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def write_table(spec: GridSpec, out: str | Path):
    """Rebuild ``<out>/results.csv`` from the run folders (atomically) and return the table."""
    table = collect(spec, out)
    atomic_write(Path(out) / "results.csv", lambda tmp: table.to_csv(tmp, index=False))
    return table
