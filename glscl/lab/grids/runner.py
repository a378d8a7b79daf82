"""Ablation grids: execute the run notebook once per run of a grid file, in parallel; tidy the results.

    glscl ablate ablations/default.yaml [--out runs/grids/default] [--workers N] [--shard i/n]
                 [--rerun-failed] [--dry-run] [--quick]

The grid file format and its expansion into runs: ``glscl.lab.grids.spec``. Each run is one
papermill execution of the run notebook shipped with the package; what goes in (parameters) and
what comes out (``record.json``): ``glscl.lab.grids.notebook``.

Layout of a grid folder::

    grid.yaml                      the grid file as run
    runs/<run_id>/                 the run's results folder (record.json, metrics.json, curve.csv, config.yaml, ...),
                                   plus ablate.json (wall time of the notebook, host, threads) and
                                   FAILED.json (error, traceback tail, time) when it failed
    notebooks/<run_id>.ipynb       the executed run notebook, kept for every run (failed ones too)
    logs/worker-<pid>.log          what the worker processes and their kernels printed to stderr
    results.csv                    the tidy table: one row per run, rebuilt from runs/ every time
    figures/                       PNG, PDF and SVG figures (glscl.lab.grids.figures)

Resumable: a run whose record.json exists is skipped; a run killed half-way resumes from its last
checkpoint; a failed run is skipped until ``--rerun-failed`` (which runs only those). ``--shard i/n``
(0 <= i < n) takes every n-th run of the fixed order, so machines can split a grid and copy their
``runs/`` folders together; results.csv is rebuilt from whatever is there.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import re
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from glscl.config import ConfigError, RunConfig, build_config
from glscl.lab.grids.notebook import RECORD_FILE, notebook_path, read_record, run_config
from glscl.lab.grids.spec import GridSpec, RunSpec, expand, load_grid, parse_shard, shard

# record.json keys that repeat what the table already says
_RECORD_SKIP = {"name"}


# -- status and the tidy table ------------------------------------------------------------------

def run_status(run_dir: Path) -> str:
    """'ok' (record.json written), 'failed' (FAILED.json) or 'pending' (not run, or stopped half-way)."""
    if (run_dir / RECORD_FILE).is_file():
        return "ok"
    if (run_dir / "FAILED.json").is_file():
        return "failed"
    return "pending"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def collect(spec: GridSpec, out: str | Path):
    """The tidy table of a grid folder: one row per run of the grid, rebuilt from ``<out>/runs``.

    Columns: run_id, status, the varying keys (empty where a key was irrelevant), seed, every
    field of record.json (metrics; cache_s/train_s/eval_s from run(); prepare_s; run_s = time
    inside run()), wall_s = the notebook's wall time, overhead_s = wall_s - run_s, error (failed runs).
    """
    import pandas as pd
    out = Path(out)
    cols = spec.columns
    rows = []
    for r in expand(spec):
        d = out / "runs" / r.run_id
        row: dict[str, Any] = {"run_id": r.run_id, "status": run_status(d)}
        row.update({cols[k]: r.values.get(k, math.nan) for k in spec.vary})
        row["seed"] = r.seed
        if row["status"] == "ok":
            for k, v in read_record(d).items():
                if k not in _RECORD_SKIP and k not in row:
                    row[k] = v
            wall_s = _read_json(d / "ablate.json").get("wall_s", math.nan)
            row.update(wall_s=wall_s, overhead_s=wall_s - row.get("run_s", math.nan))
        elif row["status"] == "failed":
            failed = _read_json(d / "FAILED.json")
            row.update(wall_s=failed.get("wall_s", math.nan), error=failed.get("error", ""))
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
    spec = load_grid(grid_dir / "grid.yaml")
    return _int_columns(pd.read_csv(grid_dir / "results.csv"), spec), spec


def write_table(spec: GridSpec, out: str | Path):
    """Rebuild ``<out>/results.csv`` from the run folders (atomically) and return the table."""
    table = collect(spec, out)
    path = Path(out) / "results.csv"
    tmp = path.with_name(path.name + ".tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return table


# -- preparing shared inputs once, in the parent ------------------------------------------------

def prepare_inputs(configs: list[RunConfig], prepare_world: bool, quick: bool, progress: bool = True) -> None:
    """Generate the world / tiny CLIP and build every feature cache once, before workers start."""
    if prepare_world:
        from glscl.engine.demo import prepare_embedded
        for root in sorted({c.data.root for c in configs if c.data.dataset == "world"}):
            prepare_embedded(root, quick=quick, progress=progress)
    signatures = {}
    for c in configs:
        if c.data.cache_dir:
            sig = (c.data.dataset, c.data.root, c.data.video_dir, c.data.val_size, c.data.sample_fps, c.data.cache_dir,
                   c.model.backbone, c.model.pretrained, c.model.compact_vocab, c.model.max_words, c.model.num_frames)
            signatures.setdefault(sig, c)
    if not signatures:
        return
    from glscl.data import load_split
    from glscl.engine.run import SPLITS, build_caches, load_backbone
    for c in signatures.values():
        splits = {s: load_split(c.data, s) for s in SPLITS}
        backbone, _ = load_backbone(c, splits)
        build_caches(c, backbone, splits, progress=progress)


# -- executing one run (in a worker process) ----------------------------------------------------

def _init_worker(threads: int, log_dir: str | None = None) -> None:
    """Environment every run notebook's kernel inherits: offline hub, a fair share of the CPU threads.

    With ``log_dir``, the worker's stderr (and so its kernels' log lines) goes to
    ``<log_dir>/worker-<pid>.log`` instead of cluttering the progress bar.
    """
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(Path(log_dir) / f"worker-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    for var in ("GLSCL_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def execute_run(run: RunSpec, out: str, notebook: str, base: str, quick: bool, cwd: str,
                threads: int = 1) -> tuple[str, str, float]:
    """Execute the run notebook for ``run`` with papermill; record success or failure. Returns (id, status, wall_s)."""
    import papermill as pm
    out_p = Path(out)
    run_dir, nb_out = out_p / "runs" / run.run_id, out_p / "notebooks" / f"{run.run_id}.ipynb"
    run_dir.mkdir(parents=True, exist_ok=True)
    nb_out.parent.mkdir(parents=True, exist_ok=True)
    (run_dir / "FAILED.json").unlink(missing_ok=True)
    started, t0 = _now(), time.perf_counter()
    params = dict(name=run.run_id, out_dir=str(out_p / "runs"), base=base, overrides=run.overrides, quick=quick,
                  prepare_world=False, progress=False)
    try:
        pm.execute_notebook(notebook, str(nb_out), parameters=params, kernel_name="python3", progress_bar=False,
                            cwd=cwd, log_output=False)
        status = "ok"
    except BaseException as e:  # a failed run is recorded and the grid goes on
        if isinstance(e, KeyboardInterrupt):
            raise
        wall = time.perf_counter() - t0
        if hasattr(e, "ename"):  # papermill's PapermillExecutionError: the error inside the notebook
            error = f"{e.ename}: {_strip_ansi(str(e.evalue))}"
            tb = _strip_ansi("\n".join(e.traceback))
        else:
            error = f"{type(e).__name__}: {e}"
            tb = traceback.format_exc()
        record = {"run_id": run.run_id, "status": "failed", "error": error.strip().splitlines()[0] if error.strip() else error,
                  "traceback_tail": "\n".join(tb.strip().splitlines()[-25:]), "started": started, "failed_at": _now(),
                  "wall_s": wall, "notebook": str(nb_out), "overrides": run.overrides}
        (run_dir / "FAILED.json").write_text(json.dumps(record, indent=2, default=str))
        status = "failed"
    wall = time.perf_counter() - t0
    (run_dir / "ablate.json").write_text(json.dumps(
        {"run_id": run.run_id, "status": status, "wall_s": wall, "started": started, "finished": _now(),
         "threads": threads, "host": platform.node(), "notebook": str(nb_out), "overrides": run.overrides},
        indent=2, default=str))
    return run.run_id, status, wall


# -- the grid -------------------------------------------------------------------------------------

def plan(spec: GridSpec, out: str | Path, shard_spec: tuple[int, int] = (0, 1), rerun_failed: bool = False):
    """(runs of this shard, the ones to execute now): pending runs, or only the failed ones with rerun_failed."""
    runs = shard(expand(spec), *shard_spec)
    want = "failed" if rerun_failed else "pending"
    return runs, [r for r in runs if run_status(Path(out) / "runs" / r.run_id) == want]


def run_grid(grid: str | Path | GridSpec, out: str | Path | None = None, *, workers: int | None = None,
             shard_spec: tuple[int, int] = (0, 1), rerun_failed: bool = False, dry_run: bool = False,
             quick: bool = False, notebook: str | Path | None = None, figures: bool = True, progress: bool = True):
    """Run a grid (see the module docstring) and return its tidy table (a pandas DataFrame).

    ``out`` defaults to runs/grids/<grid file stem> (``-quick`` appended with ``quick``). Runs are
    executed ``workers`` at a time, each a papermill execution of ``notebook`` (default: the shipped
    run notebook) in its own kernel with ``cores // workers`` threads; relative paths in the configs
    are relative to the current folder.
    """
    spec = grid if isinstance(grid, GridSpec) else load_grid(grid)
    stem = Path(spec.source).stem or "grid"
    out = Path(out or Path("runs") / "grids" / (stem + ("-quick" if quick else ""))).resolve()
    workers = workers or spec.workers
    base = spec.resolved_base()
    build_config(base)  # a base that does not load stops the grid here, not in every run
    notebook = Path(notebook) if notebook else notebook_path()
    runs, todo = plan(spec, out, shard_spec, rerun_failed)
    configs, invalid = {}, {}
    for r in todo:
        try:
            configs[r.run_id] = run_config(base, r.overrides, name=r.run_id, out_dir=str(out / "runs"), quick=quick)
        except ConfigError as e:  # recorded as a failure when the run executes
            invalid[r.run_id] = str(e)
    if dry_run:
        print(f"grid {spec.source}: {len(expand(spec))} runs; shard {shard_spec[0]}/{shard_spec[1]}: {len(runs)}; "
              f"to run now: {len(todo)} (workers={workers}) -> {out}")
        for r in runs:
            state = run_status(out / "runs" / r.run_id)
            mark = "run " if r in todo else "skip"
            note = f"  INVALID: {invalid[r.run_id]}" if r.run_id in invalid else ""
            print(f"  {mark} [{state:7}] {r.run_id}{note}")
        table = collect(spec, out)
        table.attrs["out"] = str(out)
        return table
    out.mkdir(parents=True, exist_ok=True)
    if spec.source and Path(spec.source).is_file():
        (out / "grid.yaml").write_text(Path(spec.source).read_text())
    if todo:
        prepare_inputs(list(configs.values()), spec.prepare_world, quick, progress)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // workers)
    if todo:
        import multiprocessing as mp

        from tqdm.auto import tqdm
        counts = {"ok": 0, "failed": 0}
        bar = tqdm(total=len(todo), desc=f"grid {stem}", unit="run", disable=not progress)
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads, str(out / "logs"))) as pool:
            futures = [pool.submit(execute_run, r, str(out), str(notebook), base, quick, os.getcwd(), threads) for r in todo]
            for fut in as_completed(futures):
                run_id, status, wall = fut.result()
                counts[status] += 1
                bar.update(1)
                bar.set_postfix(ok=counts["ok"], failed=counts["failed"], last=f"{wall:.0f}s")
                write_table(spec, out)
        bar.close()
    table = write_table(spec, out)
    if figures and (table["status"] == "ok").any():
        from glscl.lab.grids.figures import figures_for_grid
        try:
            figures_for_grid(table, spec, out / "figures")
        except Exception as e:  # figures are a convenience; the table is the result
            print(f"glscl ablate: figures not drawn ({type(e).__name__}: {e})", file=sys.stderr)
    table.attrs["out"] = str(out)
    return table


def main(args: argparse.Namespace) -> int:
    """``glscl ablate`` (arguments parsed by glscl.cli)."""
    spec = load_grid(args.grid)
    table = run_grid(spec, args.out, workers=args.workers, shard_spec=parse_shard(args.shard), rerun_failed=args.rerun_failed,
                     dry_run=args.dry_run, quick=args.quick)
    if not args.dry_run:
        counts = table["status"].value_counts().to_dict()
        print(f"{len(table)} runs: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
              + f" -> {Path(table.attrs['out']) / 'results.csv'}")
        failed = table[table["status"] == "failed"]
        for _, row in failed.iterrows():
            print(f"  failed {row['run_id']}: {row.get('error', '')}")
        return 1 if len(failed) else 0  # the grid went on; the exit status still says something failed
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("grid", help="grid file, e.g. ablations/default.yaml")
    p.add_argument("--out", help="grid folder (default runs/grids/<grid name>, with -quick for --quick)")
    p.add_argument("--workers", type=int, help="parallel runs (default: the grid file's 'workers')")
    p.add_argument("--shard", default="0/1", help="run only shard i of n (every n-th run, 0 <= i < n), e.g. 1/4")
    p.add_argument("--rerun-failed", action="store_true", help="rerun only the runs that failed")
    p.add_argument("--dry-run", action="store_true", help="list the runs (and what would run) without running")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: preset embedded-quick's short schedule, the world at <root>-quick (prepared here)")
