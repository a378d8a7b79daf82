"""Ablation grids: execute the run notebook once per run of a grid file, on Ray; tidy the results.

    glscl ablate ablations/default.yaml [--out runs/grids/default] [--workers N] [--cpus-per-run C]
                 [--gpus-per-run G] [--address HOST:PORT] [--shard i/n] [--rerun-failed] [--overwrite]
                 [--dry-run] [--quick] [--notebook PATH]

The grid file format and its expansion into runs: ``glscl.lab.grids.spec``. Each run is one
papermill execution of the run notebook shipped with the package (what goes in and what comes out:
``glscl.lab.grids.notebook``), as a Ray task (where, with which resources, what a lost worker or
a killed command does: ``glscl.lab.grids.cluster``). The grid folder (layout, each run's one record,
the fingerprints that keep a changed grid from mixing with an old folder, results.csv derived from
the records): ``glscl.lab.grids.folder``.

Resumable: a finished run is skipped; a run killed half-way runs again and resumes from its last
checkpoint; a failed run is skipped until ``--rerun-failed`` (which runs only those). ``--shard i/n``
(0 <= i < n) takes every n-th run of the fixed order, for machines that share the grid folder but
no Ray cluster (a SLURM array: one shard per array task); results.csv is rebuilt from whatever is there.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path

from glscl.config import ConfigError, ConfigTypeError, RunConfig
from glscl.engine.fingerprint import fingerprint_fields, move_aside
from glscl.engine.results_folder import FolderLock
from glscl.lab.grids import cluster, folder
from glscl.lab.grids.folder import collect, read_table, run_paths, run_status
from glscl.lab.grids.notebook import notebook_path, run_config
from glscl.lab.grids.spec import GridSpec, expand, load_grid, parse_shard, shard

__all__ = ["run_grid", "plan", "prepare_inputs", "read_table", "collect", "main", "add_arguments"]


# -- preparing shared inputs once, in the driver ------------------------------------------------

def prepare_inputs(configs: list[RunConfig], prepare_world: bool, quick: bool, progress: bool = True) -> None:
    """Generate the world / tiny CLIP and build every feature cache once, before the runs start."""
    if prepare_world:
        from glscl.engine.embedded import prepare_embedded
        for root, world in sorted({(c.data.root, c.data.world) for c in configs if c.data.dataset == "world"}):
            prepare_embedded(root, quick=quick, progress=progress, world=world)
    from glscl.data.cache import weights_identity
    signatures = {}
    for c in configs:
        # a random backbone (model.pretrained: null) is drawn under each run's own seed inside the run:
        # a cache built here would hold features no run uses
        if c.data.cache_dir and weights_identity(c.model.pretrained, c.data.cache_dir) is not None:
            sig = (c.data.dataset, c.data.root, c.data.video_dir, c.data.val_size, c.data.sample_fps, c.data.cache_dir,
                   c.model.backbone, c.model.pretrained, c.model.compact_vocab, c.model.max_words, c.model.num_frames)
            signatures.setdefault(sig, c)
    if not signatures:
        return
    from glscl.data import load_splits
    from glscl.engine.run import build_caches, load_backbone
    for c in signatures.values():
        splits = load_splits(c.data)
        backbone, _ = load_backbone(c, splits)
        build_caches(c, backbone, splits, progress=progress)


# -- the grid -------------------------------------------------------------------------------------

def plan(spec: GridSpec, out: str | Path, shard_spec: tuple[int, int] = (0, 1), rerun_failed: bool = False):
    """(runs of this shard, the ones to execute now): pending runs, or only the failed ones with rerun_failed."""
    runs = shard(expand(spec), *shard_spec)
    want = "failed" if rerun_failed else "pending"
    return runs, [r for r in runs if run_status(run_paths(out, r.run_id)[0]) == want]


def run_grid(grid: str | Path | GridSpec, out: str | Path | None = None, *, workers: int | None = None,
             cpus_per_run: float | None = None, gpus_per_run: float | None = None, address: str | None = None,
             shard_spec: tuple[int, int] = (0, 1), rerun_failed: bool = False, overwrite: bool = False,
             dry_run: bool = False, quick: bool = False, notebook: str | Path | None = None, figures: bool = True,
             progress: bool = True):
    """Run a grid (see the module docstring) and return its tidy table (a pandas DataFrame).

    ``out`` defaults to runs/grids/<grid file stem> (``-quick`` appended with ``quick``). Every run
    is a Ray task with ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs (defaults: a node's share for
    ``workers`` runs at once, the grid's ``workers`` unless given: ``cluster.resources_per_run``), on
    the cluster at ``address`` or on a local instance started for the grid (this process's Ray
    connection, when it has one, is used as it is). One invocation (per shard) writes into ``out``
    at a time (``glscl.engine.results_folder.FolderLock``); a grid value that does not make a valid
    config because of a typo (a value of the wrong type, or not one of the field's choices) stops the
    grid (``ConfigError``; with ``dry_run`` after the listing) before anything starts, while a value
    out of range is that run's recorded failure.
    Each task executes ``notebook`` (default: the shipped run notebook); relative paths in the
    configs are relative to the current folder. A folder made by a grid with other settings stops
    the grid (``ConfigError``) unless ``overwrite``, which sets the runs that differ aside first.
    """
    spec = grid if isinstance(grid, GridSpec) else load_grid(grid)
    stem = Path(spec.source).stem or "grid"
    out = Path(out or Path("runs") / "grids" / (stem + ("-quick" if quick else ""))).resolve()
    workers = workers or spec.workers
    base = spec.resolved_base()
    stamp = folder.grid_stamp(spec, run_config(base, spec.fixed, quick=quick))  # a base or fixed that does not load stops here
    notebook = Path(notebook) if notebook else notebook_path()
    configs, fields, invalid, typos = {}, {}, {}, {}
    for r in shard(expand(spec), *shard_spec):
        try:
            configs[r.run_id] = run_config(base, r.overrides, name=r.run_id, out_dir=str(out / "runs"), quick=quick)
            fields[r.run_id] = fingerprint_fields(configs[r.run_id])
        except ConfigError as e:  # e.g. out of range: recorded as the run's failure when it executes
            invalid[r.run_id] = str(e)
            fields[r.run_id] = {**stamp["fields"], **r.overrides}
            if isinstance(e, ConfigTypeError):  # a typo or an unread setting: the grid stops before it starts
                typos[r.run_id] = str(e)
    if dry_run:
        return _dry_run(spec, out, shard_spec, rerun_failed, workers, invalid, typos, stamp, fields, overwrite)
    if typos:  # before any lock, world, cache or Ray
        raise ConfigError(_invalid_line(spec, typos))
    i, n = shard_spec  # shards of one grid run at once on machines that share the folder: one lock per shard
    with FolderLock(out, "glscl ablate" + (f" --shard {i}/{n}" if n > 1 else ""), tag=f".shard-{i}-of-{n}" if n > 1 else ""):
        return _run_locked(spec, out, shard_spec, rerun_failed, overwrite, stamp, fields, configs, workers, quick, base,
                           notebook, address, cpus_per_run, gpus_per_run, progress, figures)


def _invalid_line(spec: GridSpec, invalid: dict[str, str]) -> str:
    """One line for the runs whose values are of the wrong type (the first one's reason)."""
    run_id, why = next(iter(invalid.items()))
    more = f" (and {len(invalid) - 1} more runs)" if len(invalid) > 1 else ""
    return f"{spec.source}: run {run_id}: {why}{more}"


def _dry_run(spec, out, shard_spec, rerun_failed, workers, invalid, typos, stamp, fields, overwrite):
    """``--dry-run``: list the runs and what would run; reads only. Values of the wrong type are listed, then refused."""
    replace = folder.check_folder(out, stamp, fields, set(spec.vary), overwrite)
    runs, todo = plan(spec, out, shard_spec, rerun_failed)
    for note in folder.torn_records(out, [r.run_id for r in runs]):
        print(f"glscl ablate: {note}", file=sys.stderr)
    print(f"grid {spec.source}: {len(expand(spec))} runs; shard {shard_spec[0]}/{shard_spec[1]}: {len(runs)}; "
          f"to run now: {len(todo)} (workers={workers}) -> {out}")
    for r in runs:
        state = "replace" if r.run_id in replace else run_status(run_paths(out, r.run_id)[0])
        mark = "run " if r in todo or r.run_id in replace else "skip"
        note = f"  INVALID: {invalid[r.run_id]}" if r.run_id in invalid else ""
        print(f"  {mark} [{state:7}] {r.run_id}{note}")
    if typos:
        raise ConfigError(_invalid_line(spec, typos))
    table = collect(spec, out)
    table.attrs.update(out=str(out), lost=[])
    return table


def _run_locked(spec, out, shard_spec, rerun_failed, overwrite, stamp, fields, configs, workers, quick, base, notebook,
                address, cpus_per_run, gpus_per_run, progress, figures):
    """``run_grid`` with the grid folder locked."""
    replace = folder.check_folder(out, stamp, fields, set(spec.vary), overwrite)
    if replace:  # each run's folder, notebook and log, to one replaced-<time>/
        aside = move_aside(out, out / "replaced-{time}", [p for run_id in replace for p in run_paths(out, run_id)])
        print(f"glscl ablate: {len(replace)} runs made with other settings moved to {aside}", file=sys.stderr)
    runs, todo = plan(spec, out, shard_spec, rerun_failed)
    for note in folder.torn_records(out, [r.run_id for r in runs]):
        print(f"glscl ablate: {note}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    folder.write_grid_files(out, spec, stamp)
    lost = []
    if todo:
        started = cluster.connect(address, None if address else cluster.machine_cpus())
        try:
            cpus, gpus = cluster.resources_per_run(workers, cpus_per_run, gpus_per_run)  # what no node has stops here
            prepare_inputs([configs[r.run_id] for r in todo if r.run_id in configs], spec.prepare_world, quick, progress)
            lost = _execute(spec, out, todo, cpus, gpus, progress, notebook=str(notebook), base=base, quick=quick,
                            cwd=os.getcwd(), fields=fields)
        finally:
            if started:
                cluster.disconnect()
    table = folder.write_table(spec, out)
    if figures and (table["status"] == "ok").any():
        from glscl.lab.grids.figures import figures_for_grid
        try:
            figures_for_grid(table, spec, out / "figures")
        except Exception as e:  # figures are a convenience; the table is the result
            print(f"glscl ablate: figures not drawn ({type(e).__name__}: {e})", file=sys.stderr)
    table.attrs.update(out=str(out), lost=lost)
    return table


def _execute(spec: GridSpec, out: Path, todo: list, cpus: float, gpus: float, progress: bool, *, fields: dict,
             **task) -> list[str]:
    """Run ``todo`` on the connected Ray cluster, rebuilding results.csv as each run ends; returns the lost runs."""
    from glscl.progress import progress_bar

    counts, lost = {"ok": 0, "failed": 0, "lost": 0}, []
    bar = progress_bar(total=len(todo), desc=f"grid {Path(spec.source).stem or 'grid'}", unit="run", enabled=progress)

    def done(run_id: str, status: str, wall: float) -> None:
        counts[status] += 1
        if status == "lost":
            lost.append(run_id)
        bar.update(1)
        bar.set_postfix(**counts, last=f"{wall:.0f}s" if not math.isnan(wall) else "-")
        folder.write_table(spec, out)

    stamps = {r.run_id: {"fields": fields[r.run_id], "fingerprint": folder.fingerprint(fields[r.run_id])} for r in todo}
    try:
        cluster.run_all(todo, cpus, gpus, done, stamps, out=str(out), **task)
    finally:
        bar.close()  # also when interrupted, so that the bar ends before the command's last line
    return lost


def main(args: argparse.Namespace) -> int:
    """``glscl ablate`` (arguments parsed by glscl.cli). Exit status 1 when a run failed or was lost."""
    spec = load_grid(args.grid)
    if args.base:
        spec = dataclasses.replace(spec, base=args.base)
    table = run_grid(spec, args.out, workers=args.workers, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                     address=args.address, shard_spec=parse_shard(args.shard), rerun_failed=args.rerun_failed,
                     overwrite=args.overwrite, dry_run=args.dry_run, quick=args.quick, notebook=args.notebook)
    if args.dry_run:
        return 0
    counts = table["status"].value_counts().to_dict()
    print(f"{len(table)} runs: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
          + f" -> {Path(table.attrs['out']) / 'results.csv'}")
    failed = table[table["status"] == "failed"]
    for _, row in failed.iterrows():
        print(f"  failed {row['run_id']}: {row.get('error', '')}")
    for run_id in table.attrs["lost"]:
        print(f"  lost {run_id}: its worker or node was lost {cluster.RETRIES + 1} times; it runs on the next invocation")
    return 1 if len(failed) or table.attrs["lost"] else 0  # the grid went on; the exit status still says so


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("grid", help="grid file, e.g. ablations/default.yaml")
    p.add_argument("--out", help="grid folder (default runs/grids/<grid name>, with -quick for --quick)")
    p.add_argument("--base", help="run the grid on another base preset or config, e.g. embedded-objects (the objects "
                                  "world); give it its own --out")
    p.add_argument("--workers", type=int, help="runs at once per machine, sharing its CPUs and GPUs "
                                              "(default: the grid file's 'workers')")
    p.add_argument("--cpus-per-run", type=float, help="CPUs Ray gives each run (its kernel's threads; default: the "
                                                      "machine's CPUs // workers)")
    p.add_argument("--gpus-per-run", type=float, help="GPUs Ray gives each run (CUDA_VISIBLE_DEVICES; a fraction shares "
                                                      "a GPU, 0 runs on CPUs; default: the machine's GPUs / workers, at most 1)")
    p.add_argument("--address", help="join the Ray cluster whose head is at HOST:PORT (default: start a local instance "
                                     "with this machine's CPUs and GPUs)")
    p.add_argument("--shard", default="0/1", help="run only shard i of n (every n-th run, 0 <= i < n), e.g. 1/4: "
                                                  "machines without a shared Ray cluster (a SLURM array)")
    p.add_argument("--rerun-failed", action="store_true", help="rerun only the runs that failed")
    p.add_argument("--overwrite", action="store_true", help="the folder was made with other settings: move the runs that "
                                                            "differ to <out>/replaced-<time> and run them again")
    p.add_argument("--dry-run", action="store_true", help="list the runs (and what would run) without running")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: the embedded world's quick (the small world at <root>-quick, prepared here, "
                        "and the short schedule; glscl.engine.embedded)")
    p.add_argument("--notebook", help="a run notebook of your own with the same parameters (default: the shipped one)")
