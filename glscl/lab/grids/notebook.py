"""The run notebook (``glscl/lab/run.ipynb``, shipped with the package) and what passes between it and the grid runner.

In: the notebook's parameters (papermill injects them)

    name           results folder name: <out_dir>/<name> (a grid's run id)
    out_dir        where results folders are written
    base           a preset ('embedded') or a config YAML: ``glscl.config.build_config``'s base
    overrides      dotted config keys -> values, e.g. {"model.num_queries": 4, "train.seed": 1}
    quick          smoke test: the embedded world's quick (``glscl.engine.embedded.quick_config``)
    prepare_world  generate the world and pre-train the tiny CLIP first (reused when present)
    progress       progress bars

Out: the run's one record, ``<out_dir>/<name>/metrics.json`` (``glscl.engine.record``): what
``glscl.engine.run.run`` writes as its last step, to which ``run_and_record`` adds, through the same
writer,

    prepare_s      seconds spent preparing the world and the tiny CLIP (0 when not asked for)
    run_s          seconds inside ``run()`` (data, cache, training, evaluation)

The notebook has finished a run when that record is complete and holds both (in a grid, the run is
ok once the grid has added the attempt's wall time to it: ``glscl.lab.grids.folder``). Besides it,
the results folder holds what ``run()`` writes (config.yaml, curve.csv, checkpoints/, ...).
"""
from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from glscl.config import RunConfig, build_config
from glscl.engine.fingerprint import flat
from glscl.engine.record import update_record

__all__ = ["notebook_path", "flat", "run_config", "run_and_record", "NOTEBOOK_NEEDS"]

NOTEBOOK_NEEDS = ("t2v_R@1", "run_s")  # numbers the record of a run the notebook finished holds


def notebook_path() -> Path:
    """The run notebook shipped in the installed package (package data of ``glscl.lab``)."""
    path = Path(str(resources.files("glscl.lab") / "run.ipynb"))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the run notebook is missing from the glscl package (package data glscl/lab/run.ipynb)")
    return path


def run_config(base: str | None, overrides: dict | None = None, *, name: str | None = None, out_dir: str | None = None,
               quick: bool = False) -> RunConfig:
    """One run's config: ``build_config(base, overrides + name + out_dir)``, made quick (``quick_config``) with ``quick``."""
    from glscl.engine.embedded import quick_config

    extra = {k: v for k, v in (("name", name), ("out_dir", out_dir)) if v is not None}
    cfg = build_config(base, {**(overrides or {}), **extra})
    return quick_config(cfg) if quick else cfg


def run_and_record(cfg: RunConfig, *, prepare_world: bool = True, quick: bool = False, progress: bool = True) -> dict:
    """Prepare the world (optional), ``run(cfg)``, and add prepare_s and run_s to its record
    (``<out_dir>/<name>/metrics.json``); returns ``run``'s record with them."""
    from glscl.engine.embedded import prepare_embedded
    from glscl.engine.run import run

    t0 = time.perf_counter()
    if prepare_world and cfg.data.dataset == "world":
        prepare_embedded(cfg.data.root, quick=quick, progress=progress, world=cfg.data.world)
    t1 = time.perf_counter()
    record = run(cfg, progress=progress)
    times = {"prepare_s": t1 - t0, "run_s": time.perf_counter() - t1}
    update_record(Path(cfg.out_dir) / cfg.name, **times)
    return {**record, **times}
