"""Ablation grids: expand a grid file into runs, execute the run notebook once per run, tidy the results.

    glscl ablate ablations/default.yaml [--out runs/grids/default] [--workers N] [--shard i/n]
                 [--rerun-failed] [--dry-run] [--quick]

A grid file (YAML) names dotted config keys (the ones ``glscl train`` takes as ``key=value``)::

    description: what the grid asks
    base: null                 # optional RunConfig YAML; default: the embedded default (demo_config)
    prepare_world: true        # data.dataset=world: generate the world and pre-train the tiny CLIP first
    fixed:                     # settings shared by every run
      train.epochs: 10
    vary:                      # key -> list of values; the grid is their product
      model.interaction: [global, local, both]
      model.num_queries: [1, 4, 8, 16]
    irrelevant:                # keys that do not matter for some points: dropped there,
      - when: {model.interaction: global}            # so those points collapse into one run
        keys: [model.num_queries]                    # (the key keeps its fixed/base value)
    exclude:                   # points to leave out: every key of an entry must match
      - {model.interaction: local, model.num_queries: 1}
    seeds: [0, 1]              # train.seed of each run
    workers: 2                 # parallel runs (the CLI's --workers wins)
    metrics: [t2v_R@1, v2t_R@1, twin_accuracy]       # optional; the first is the headline metric

``when`` values may be a list (any of them matches). Each run gets a stable id built from the
varying values it keeps and its seed, e.g. ``interaction=both,num_queries=4,seed=0`` (the last part
of a dotted key, or the whole key where two would clash). Runs are ordered seed-major (every
configuration of seed 0 first), so a grid stopped early already covers whole seeds.

Layout of a grid folder::

    grid.yaml                      the grid file as run
    runs/<run_id>/                 run()'s results folder (metrics.json, curve.csv, ...), plus
                                   timing.json (time inside run()), ablate.json (wall time),
                                   FAILED.json (error, traceback tail, time) when it failed
    notebooks/<run_id>.ipynb       the executed run notebook, kept for every run (failed ones too)
    logs/worker-<pid>.log          what the worker processes and their kernels printed to stderr
    results.csv                    the tidy table: one row per run, rebuilt from runs/ every time
    figures/                       PNG, PDF and SVG figures (glscl.lab.grids.figures)

Resumable: a run whose metrics.json exists is skipped; a run killed half-way resumes from its last
checkpoint; a failed run is skipped until ``--rerun-failed`` (which runs only those). ``--shard i/n``
(0 <= i < n) takes every n-th run of the fixed order, so machines can split a grid and copy their
``runs/`` folders together; results.csv is rebuilt from whatever is there.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import math
import os
import platform
import re
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from glscl.config import ConfigError, RunConfig, apply_overrides, describe, load_config

NOTEBOOK = Path(__file__).resolve().parents[1] / "run.ipynb"
GRID_KEYS = {"description", "base", "prepare_world", "fixed", "vary", "irrelevant", "exclude", "seeds", "workers", "metrics"}
DEFAULT_METRICS = ("t2v_R@1", "v2t_R@1", "twin_accuracy")
WORLD_PATH_KEYS = ("data.root", "data.video_dir", "data.cache_dir", "model.pretrained")
# metrics.json keys that repeat what the table already says
_RECORD_SKIP = {"name"}


# -- the grid file ---------------------------------------------------------------------------------

@dataclass
class GridSpec:
    """A parsed grid file (see the module docstring for the format)."""

    description: str = ""
    base: str | None = None
    prepare_world: bool = True
    fixed: dict[str, Any] = field(default_factory=dict)
    vary: dict[str, list] = field(default_factory=dict)
    irrelevant: list[dict] = field(default_factory=list)
    exclude: list[dict] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    workers: int = 1
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    source: str = ""

    @property
    def columns(self) -> dict[str, str]:
        """Varying dotted key -> its column name (the last part, or the whole key where two would clash)."""
        last = [k.split(".")[-1] for k in self.vary]
        return {k: (s if last.count(s) == 1 else k) for k, s in zip(self.vary, last)}


@dataclass(frozen=True)
class RunSpec:
    """One run of a grid: its id, the varying values it keeps, its seed and all its overrides."""

    run_id: str
    values: dict
    seed: int
    overrides: dict


def _config_keys() -> set[str]:
    return {name for name, _, _ in describe()}


def load_grid(path: str | Path) -> GridSpec:
    """Read and check a grid file; unknown grid or config keys stop with one line naming them."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a grid file is a mapping (fixed, vary, seeds, ...)")
    unknown = set(data) - GRID_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown grid key(s) {sorted(unknown)}; known: {sorted(GRID_KEYS)}")
    spec = GridSpec(**{k: v for k, v in data.items() if v is not None}, source=str(path))
    spec.fixed, spec.vary = dict(spec.fixed), dict(spec.vary)
    known = _config_keys()
    where = f"{path}:"
    for section in ("fixed", "vary"):
        for key in getattr(spec, section):
            if key not in known:
                raise ConfigError(f"{where} {section}: unknown config key '{key}'")
    for key, values in spec.vary.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where} vary: '{key}' needs a non-empty list of values")
    if "train.seed" in spec.vary or "train.seed" in spec.fixed:
        raise ConfigError(f"{where} set seeds with 'seeds:', not train.seed")
    for rule in spec.irrelevant:
        if not isinstance(rule, dict) or set(rule) != {"when", "keys"}:
            raise ConfigError(f"{where} each 'irrelevant' entry has exactly 'when' (key: value) and 'keys' (list)")
        for key in list(rule["when"]) + list(rule["keys"]):
            if key not in spec.vary:
                raise ConfigError(f"{where} irrelevant: '{key}' is not a varying key")
    for entry in spec.exclude:
        for key in entry:
            if key not in spec.vary:
                raise ConfigError(f"{where} exclude: '{key}' is not a varying key")
    if not spec.seeds or not all(isinstance(s, int) for s in spec.seeds):
        raise ConfigError(f"{where} seeds must be a non-empty list of integers")
    if not isinstance(spec.workers, int) or spec.workers < 1:
        raise ConfigError(f"{where} workers must be an integer >= 1")
    return spec


def _matches(values: dict, condition: dict) -> bool:
    """True when every key of ``condition`` has that value (or one of a list of values) in ``values``."""
    for key, want in condition.items():
        if key not in values:
            return False
        options = want if isinstance(want, list) else [want]
        if values[key] not in options:
            return False
    return True


def format_value(value: Any) -> str:
    """A value as it appears in a run id (YAML spelling; path separators and spaces replaced)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, float):
        text = format(value, "g")
    else:
        text = str(value)
    return re.sub(r"[\s/\\:]+", "_", text)


def expand(spec: GridSpec) -> list[RunSpec]:
    """All runs of the grid in a fixed order (seed-major), exclusions and irrelevant keys applied."""
    cols = spec.columns
    points, seen = [], set()
    for combo in itertools.product(*spec.vary.values()):
        values = dict(zip(spec.vary, combo))
        if any(_matches(values, e) for e in spec.exclude):
            continue
        for rule in spec.irrelevant:
            if _matches(values, rule["when"]):
                values = {k: v for k, v in values.items() if k not in rule["keys"]}
        key = tuple(values.items())
        if key not in seen:
            seen.add(key)
            points.append(values)
    runs = []
    for seed in spec.seeds:
        for values in points:
            run_id = ",".join([f"{cols[k]}={format_value(v)}" for k, v in values.items()] + [f"seed={seed}"])
            runs.append(RunSpec(run_id, values, seed, {**spec.fixed, **values, "train.seed": seed}))
    return runs


def shard(runs: list, i: int, n: int) -> list:
    """Every n-th run starting at i (0 <= i < n): the shards of a grid partition it."""
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"shard {i}/{n}: need 0 <= i < n")
    return runs[i::n]


def parse_shard(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise ConfigError(f"--shard {text!r}: expected i/n, e.g. 0/4")
    i, n = int(m.group(1)), int(m.group(2))
    shard([], i, n)
    return i, n


# -- one run's config ----------------------------------------------------------------------------

def build_config(overrides: dict | None = None, config_path: str | None = None, *, name: str | None = None,
                 out_dir: str | None = None, quick: bool = False) -> RunConfig:
    """The config of one run: a base (``config_path`` or the embedded default) plus dotted overrides.

    ``quick``: one epoch, and world paths (data.root and the paths under it) moved to ``<root>-quick``,
    where ``prepare_embedded(quick=True)`` puts its small world, so a quick run never replaces the
    full world.
    """
    if config_path:
        base = load_config(config_path)
    else:
        from glscl.engine.demo import demo_config
        base = demo_config("data/world", "data/world/clip-tiny-pretrained.safetensors", "runs", "data/world/cache", quick)
    extra = {k: v for k, v in (("name", name), ("out_dir", out_dir)) if v is not None}
    cfg = apply_overrides(base, {**(overrides or {}), **extra})
    if quick:
        changes: dict[str, Any] = {"train.epochs": 1, "train.eval_every": 1}
        if cfg.data.dataset == "world":
            root = cfg.data.root.rstrip("/")
            for key in WORLD_PATH_KEYS:
                section, attr = key.split(".")
                value = getattr(getattr(cfg, section), attr)
                if isinstance(value, str) and (value == root or value.startswith(root + "/")):
                    changes[key] = root + "-quick" + value[len(root):]
        cfg = apply_overrides(cfg, changes)
    return cfg


# -- status and the tidy table ------------------------------------------------------------------

def run_status(run_dir: Path) -> str:
    """'ok' (metrics.json written), 'failed' (FAILED.json) or 'pending' (not run, or stopped half-way)."""
    if (run_dir / "metrics.json").is_file():
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
    metric of metrics.json, times (cache_s/train_s/eval_s from run(), run_s = time inside run(),
    wall_s = the notebook's wall time, overhead_s = wall_s - run_s), error (failed runs).
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
            for k, v in _read_json(d / "metrics.json").items():
                if k not in _RECORD_SKIP and k not in row:
                    row[k] = v
            run_s = _read_json(d / "timing.json").get("run_s", math.nan)
            wall_s = _read_json(d / "ablate.json").get("wall_s", math.nan)
            row.update(run_s=run_s, wall_s=wall_s, overhead_s=wall_s - run_s)
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


def execute_run(run: RunSpec, out: str, notebook: str, base: str | None, quick: bool, cwd: str,
                threads: int = 1) -> tuple[str, str, float]:
    """Execute the run notebook for ``run`` with papermill; record success or failure. Returns (id, status, wall_s)."""
    import papermill as pm
    out_p = Path(out)
    run_dir, nb_out = out_p / "runs" / run.run_id, out_p / "notebooks" / f"{run.run_id}.ipynb"
    run_dir.mkdir(parents=True, exist_ok=True)
    nb_out.parent.mkdir(parents=True, exist_ok=True)
    (run_dir / "FAILED.json").unlink(missing_ok=True)
    started, t0 = _now(), time.perf_counter()
    params = dict(name=run.run_id, out_dir=str(out_p / "runs"), config_path=base, overrides=run.overrides,
                  prepare_world=False, quick=quick, progress=False)
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
             quick: bool = False, notebook: str | Path = NOTEBOOK, figures: bool = True, progress: bool = True):
    """Run a grid (see the module docstring) and return its tidy table (a pandas DataFrame).

    ``out`` defaults to runs/grids/<grid file stem> (``-quick`` appended with ``quick``). Runs are
    executed ``workers`` at a time, each a papermill execution of ``notebook`` in its own kernel
    with ``cores // workers`` threads; relative paths in the grid are relative to the current folder.
    """
    spec = grid if isinstance(grid, GridSpec) else load_grid(grid)
    stem = Path(spec.source).stem or "grid"
    out = Path(out or Path("runs") / "grids" / (stem + ("-quick" if quick else ""))).resolve()
    workers = workers or spec.workers
    base = str(Path(spec.base).resolve()) if spec.base else None
    runs, todo = plan(spec, out, shard_spec, rerun_failed)
    configs, invalid = {}, {}
    for r in todo:
        try:
            configs[r.run_id] = build_config(r.overrides, base, name=r.run_id, out_dir=str(out / "runs"), quick=quick)
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
    p.add_argument("--quick", action="store_true", help="smoke test: the small world (<root>-quick) and one epoch per run")
