"""The run notebook (``glscl/lab/run.ipynb``, shipped with the package) and what passes between it and the grid runner.

In: the notebook's parameters (papermill injects them)

    name           results folder name: <out_dir>/<name> (a grid's run id)
    out_dir        where results folders are written
    base           a preset ('embedded') or a config YAML: ``glscl.config.build_config``'s base
    overrides      dotted config keys -> values, e.g. {"model.num_queries": 4, "train.seed": 1}
    quick          smoke test: the embedded world's quick (``glscl.engine.embedded.quick_config``)
    prepare_world  generate the world and pre-train the tiny CLIP first (reused when present)
    progress       progress bars

Out: ``<out_dir>/<name>/record.json`` (``RECORD_FILE``), written atomically as the run's last step by
``run_and_record``: the metrics record of ``glscl.engine.run.run`` (what metrics.json holds) plus

    prepare_s      seconds spent preparing the world and the tiny CLIP (0 when not asked for)
    run_s          seconds inside ``run()`` (data, cache, training, evaluation)

The notebook has finished a run when its record.json parses and holds the metrics (``record_problem``) (in a grid, the run is ok once the
grid's ablate.json, written after it, says so: ``glscl.lab.grids.folder``). Besides it, the results
folder holds what ``run()`` writes (config.yaml, metrics.json, curve.csv, checkpoints/, ...).
"""
from __future__ import annotations

import functools
import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

from glscl.config import RunConfig, build_config, describe
from glscl.files import write_json

RECORD_FILE = "record.json"
RECORD_METRICS = ("t2v_R@1", "run_s")  # numbers every finished run's record holds


def notebook_path() -> Path:
    """The run notebook shipped in the installed package (package data of ``glscl.lab``)."""
    path = Path(str(resources.files("glscl.lab") / "run.ipynb"))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the run notebook is missing from the glscl package (package data glscl/lab/run.ipynb)")
    return path


def flat(cfg: RunConfig) -> dict[str, Any]:
    """Every field of ``cfg`` by its dotted name ('model.num_queries' -> cfg.model.num_queries)."""
    return {k: functools.reduce(getattr, k.split("."), cfg) for k, _, _ in describe()}


def run_config(base: str | None, overrides: dict | None = None, *, name: str | None = None, out_dir: str | None = None,
               quick: bool = False) -> RunConfig:
    """One run's config: ``build_config(base, overrides + name + out_dir)``, made quick (``quick_config``) with ``quick``."""
    from glscl.engine.embedded import quick_config

    extra = {k: v for k, v in (("name", name), ("out_dir", out_dir)) if v is not None}
    cfg = build_config(base, {**(overrides or {}), **extra})
    return quick_config(cfg) if quick else cfg


def run_and_record(cfg: RunConfig, *, prepare_world: bool = True, quick: bool = False, progress: bool = True) -> dict:
    """Prepare the world (optional), ``run(cfg)``, and write ``<out_dir>/<name>/record.json``; returns the record."""
    from glscl.engine.embedded import prepare_embedded
    from glscl.engine.run import run

    t0 = time.perf_counter()
    if prepare_world and cfg.data.dataset == "world":
        prepare_embedded(cfg.data.root, quick=quick, progress=progress, world=cfg.data.world)
    t1 = time.perf_counter()
    record = run(cfg, progress=progress)
    record = {**record, "prepare_s": t1 - t0, "run_s": time.perf_counter() - t1}
    write_json(Path(cfg.out_dir) / cfg.name / RECORD_FILE, record)
    return record


def record_problem(run_dir: str | Path) -> str | None:
    """Why a run's record.json does not show a finished run (missing, torn, not an object, metrics
    missing or not numbers), naming the file; None when it does."""
    path = Path(run_dir) / RECORD_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return f"{path}: missing"
    except (OSError, ValueError) as e:
        return f"{path}: torn or unreadable ({str(e).splitlines()[0][:80]})"
    if not isinstance(record, dict):
        return f"{path}: not a JSON object"
    missing = [k for k in RECORD_METRICS if not isinstance(record.get(k), (int, float)) or isinstance(record.get(k), bool)]
    return f"{path}: incomplete (no {', '.join(missing)})" if missing else None


def read_record(run_dir: str | Path) -> dict:
    """A run's record.json ({} when absent, unreadable or incomplete: ``record_problem``)."""
    if record_problem(run_dir):
        return {}
    return json.loads((Path(run_dir) / RECORD_FILE).read_text())
