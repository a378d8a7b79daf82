"""A grid folder on disk: the state of each run, the fingerprints that tie the folder to its grid, the tidy table.

Layout::

    grid.yaml                  the grid file as last run
    grid.json                  the grid's fingerprint: sha256 of grid.yaml, and the config every run starts
                               from (base + fixed, + quick) as the results-changing fields
                               (``glscl.engine.fingerprint``)
    runs/<run_id>/             the run's results folder (metrics.json, curve.csv, config.yaml, checkpoints/, ...)
    notebooks/<run_id>.ipynb   the executed run notebook, kept for every run (failed ones too)
    logs/<run_id>.log          what the run's kernel printed to stderr
    results.csv                the tidy table: one row per run, rebuilt from the runs' records every time
    figures/                   PNG, PDF and SVG figures (glscl.lab.grids.figures)
    replaced-<time>/           runs set aside by --overwrite (nothing is deleted)

Each run has one record, ``runs/<run_id>/metrics.json`` (``glscl.engine.record``), the truth for both
its results and its state in the grid. The grid writes it when an attempt starts (status running,
attempt: the times the run was started in this folder, the fingerprint and fields of its config,
host, pid (the Ray worker), cpus, threads, gpus, started, notebook), ``run()`` writes its metrics
and timings into it as its last step, the notebook adds prepare_s and run_s, and the grid adds
wall_s and finished when the attempt ends; a failed run's record says status failed, with error
(one line) and traceback_tail. Every write is atomic. A run is ok exactly when its record says ok
and holds t2v_R@1, run_s and wall_s (``GRID_NEEDS``): a run killed at any point, or whose record is
torn or incomplete, is pending (and runs again, with a one-line note naming the file), never ok
with missing metrics or wall time. results.csv is derived: rebuilt from the records.

Earlier grid folders kept the grid's state in ``runs/<run_id>/ablate.json`` beside record.json; such
runs are read from those files (``glscl.engine.record.read_record``), so a rerun skips the finished ones.

Fingerprints: a rerun into an existing folder first compares the stored fields with the grid's
(the base + fixed config; keys the grid varies are left out) and with every started run's. Any
difference stops the grid with one line naming the fields (old -> new): run into a new --out, or
add --overwrite, which moves the runs that differ to ``replaced-<time>/`` and runs them again.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from glscl.config import ConfigError, RunConfig
from glscl.engine.fingerprint import describe_differences, differences, fingerprint, fingerprint_fields
from glscl.engine.record import read_record, record_problem
from glscl.engine.results_folder import FINGERPRINT_FILE
from glscl.files import atomic_write, write_json, write_text
from glscl.lab.grids.notebook import NOTEBOOK_NEEDS
from glscl.lab.grids.spec import GridSpec, expand, load_grid

GRID_FILE, GRID_STAMP = "grid.yaml", "grid.json"
GRID_NEEDS = (*NOTEBOOK_NEEDS, "wall_s")  # numbers the record of a run a grid finished holds
ATTEMPT_KEYS = ("run_id", "status", "attempt", "fingerprint", "fields", "host", "pid", "cpus", "threads", "gpus",
                "started", "notebook", "overrides", "wall_s", "finished", "error", "traceback_tail")
"""What the grid writes into a run's record about the attempt (``glscl.lab.grids.cluster``); the rest is the run's."""
_RECORD_SKIP = {"name"}  # record keys that repeat what the table already says
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
    """'ok' (the run's record says ok and holds ``GRID_NEEDS``), 'failed', or 'pending' (not run, running,
    stopped, or a record that is torn or incomplete: ``glscl.engine.record.record_problem``)."""
    if record_problem(run_dir, GRID_NEEDS) is None:
        return "ok"
    return "failed" if read_record(run_dir).get("status") == "failed" else "pending"


def torn_records(out: str | Path, run_ids) -> list[str]:
    """One note per run whose record exists but is torn, unreadable or says ok while incomplete (it runs again)."""
    notes = []
    for run_id in run_ids:
        run_dir = run_paths(out, run_id)[0]
        problem = record_problem(run_dir, GRID_NEEDS)
        if problem and not problem.endswith(": missing") and read_record(run_dir).get("status") not in ("running", "failed"):
            notes.append(f"note: {problem}; the run is pending and runs again")
    return notes


# -- fingerprints -----------------------------------------------------------------------------------

def grid_stamp(spec: GridSpec, base_cfg: RunConfig) -> dict:
    """What grid.json holds: the grid file's sha256 and the fields of the config every run starts from."""
    text = Path(spec.source).read_bytes() if spec.source and Path(spec.source).is_file() else b""
    fields = {k: v for k, v in fingerprint_fields(base_cfg).items() if k != "train.seed"}
    return {"grid_sha256": hashlib.sha256(text).hexdigest(), "fingerprint": fingerprint(fields), "fields": fields}


def differing_runs(out: str | Path, stamp: dict, run_fields: dict[str, dict], vary: set[str]) -> tuple[list[str], str]:
    """(ids of the started runs whose config differs from ``run_fields``, a one-line account of the
    first difference, grid-level first); ``([], '')`` when the folder agrees with the grid."""
    out = Path(out)
    notes, ids = [], []
    stored = read_json(out / GRID_STAMP)
    if stored.get("fields") is not None:
        diff = differences(stored["fields"], stamp["fields"], skip=vary)
        if diff:
            notes.append(f"{out} was run with another base or fixed settings ({describe_differences(diff, _SHOWN)})")
    for run_id, fields in run_fields.items():
        run_dir = run_paths(out, run_id)[0]
        stored = read_record(run_dir).get("fields")
        if not isinstance(stored, dict):  # a record without them (torn): the fields run() stored
            stored = read_json(run_dir / FINGERPRINT_FILE).get("fields")
        if not isinstance(stored, dict):
            continue  # nothing ran here that says which config: never started, or a record torn before run() began
        diff = differences(stored, fields)
        if diff:
            ids.append(run_id)
            if len(notes) < 1:
                notes.append(f"{out}/runs/{run_id} was run with another config ({describe_differences(diff, _SHOWN)})")
    if not notes:
        return [], ""
    more = f" ({len(ids)} runs differ)" if len(ids) > 1 else ""
    return ids, notes[0] + more


def check_folder(out: str | Path, stamp: dict, run_fields: dict[str, dict], vary: set[str], overwrite: bool) -> list[str]:
    """The runs to set aside before running (``differing_runs``); raises ``ConfigError`` when the folder
    disagrees with the grid and ``overwrite`` is not set."""
    ids, note = differing_runs(out, stamp, run_fields, vary)
    if note and not overwrite:
        raise ConfigError(f"{note}; run into a new --out, or add --overwrite to move the runs that differ to "
                          f"{Path(out) / 'replaced-<time>'} and run them again")
    return ids


def write_grid_files(out: str | Path, spec: GridSpec, stamp: dict) -> None:
    """grid.yaml (the grid file as run) and grid.json (its fingerprint), both atomically."""
    out = Path(out)
    if spec.source and Path(spec.source).is_file():
        write_text(out / GRID_FILE, Path(spec.source).read_text())
    write_json(out / GRID_STAMP, stamp)


# -- the tidy table ---------------------------------------------------------------------------------

def collect(spec: GridSpec, out: str | Path):
    """The tidy table of a grid folder: one row per run of the grid, rebuilt from ``<out>/runs``.

    Columns: run_id, status, the varying keys (empty where a key was irrelevant), seed, every
    field the run wrote into its record (metrics; cache_s/train_s/eval_s from run(); prepare_s;
    run_s = time inside run()), wall_s = the notebook's wall time, overhead_s = wall_s - run_s,
    attempt, host, error (failed runs). The grid's other keys of the record (``ATTEMPT_KEYS``) stay out.
    """
    import pandas as pd
    cols = spec.columns
    rows = []
    for r in expand(spec):
        d = run_paths(out, r.run_id)[0]
        row: dict[str, Any] = {"run_id": r.run_id, "status": run_status(d)}
        row.update({cols[k]: r.values.get(k, math.nan) for k in spec.vary})
        row["seed"] = r.seed
        info = read_record(d)
        if row["status"] == "ok":
            for k, v in info.items():
                if k not in _RECORD_SKIP and k not in ATTEMPT_KEYS and k not in row:
                    row[k] = v
            row.update(wall_s=info["wall_s"], overhead_s=info["wall_s"] - row.get("run_s", math.nan))
        elif row["status"] == "failed":
            row.update(wall_s=info.get("wall_s", math.nan), error=info.get("error", ""))
        if "attempt" in info:
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
    """Rebuild ``<out>/results.csv`` from the runs' records (atomically) and return the table."""
    table = collect(spec, out)
    atomic_write(Path(out) / "results.csv", lambda tmp: table.to_csv(tmp, index=False))
    return table
