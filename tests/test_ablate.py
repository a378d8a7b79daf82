"""Ablation grids: grid files and their expansion, the shipped run notebook under papermill, kill and resume,
failures, shards, figures, report."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from conftest import tiny_run_config

from glscl.config import ConfigError, build_config, load_config, save_config
from glscl.lab.grids import figures, notebook, runner
from glscl.lab.grids import spec as grids

REPO = Path(__file__).resolve().parents[1]
GRID_FILES = sorted((REPO / "ablations").glob("*.yaml"))


def _write_grid(path: Path, **spec) -> Path:
    path.write_text(yaml.safe_dump({"description": "test grid", "base": "embedded", "prepare_world": False, **spec},
                                   sort_keys=False))
    return path


# -- grid files and expansion (no runs) ------------------------------------------------------------

def test_default_grid_expands_without_duplicates():
    spec = grids.load_grid(REPO / "ablations" / "default.yaml")
    runs = grids.expand(spec)
    ids = [r.run_id for r in runs]
    assert len(ids) == len(set(ids)) == (1 + 4 + 4) * 2  # global ignores K: one run per seed, not four
    assert "interaction=both,num_queries=4,seed=0" in ids and "interaction=global,seed=1" in ids
    assert ids == [r.run_id for r in grids.expand(grids.load_grid(REPO / "ablations" / "default.yaml"))]  # stable
    assert [r.seed for r in runs[:9]] == [0] * 9  # seed-major order
    assert runs[0].overrides == {"model.interaction": "global", "train.seed": 0}


@pytest.mark.parametrize("path", GRID_FILES, ids=[p.name for p in GRID_FILES])
def test_every_shipped_grid_file_is_a_short_base_plus_changes_and_builds_valid_configs(path):
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) <= 15, f"{path.name}: {len(lines)} lines besides comments"
    assert yaml.safe_load(path.read_text())["base"] == "embedded"
    spec = grids.load_grid(path)
    runs = grids.expand(spec)
    assert runs and spec.description and len({r.run_id for r in runs}) == len(runs)
    embedded = notebook.flat(build_config("embedded"))
    for r in runs:
        cfg = notebook.run_config(spec.resolved_base(), r.overrides, name=r.run_id, out_dir="runs/x")
        values = notebook.flat(cfg)
        assert cfg.train.seed == r.seed and cfg.name == r.run_id and cfg.out_dir == "runs/x"
        # every field is the embedded preset's unless the grid sets it
        assert {k for k in values if values[k] != embedded[k]} <= set(r.overrides) | {"name", "out_dir"}
        assert all(values[k] == v for k, v in r.overrides.items())


def test_exclude_irrelevant_and_errors(tmp_path):
    grid = _write_grid(tmp_path / "g.yaml", fixed={"train.epochs": 1},
                       vary={"model.interaction": ["global", "local", "both"], "model.num_queries": [1, 4]},
                       irrelevant=[{"when": {"model.interaction": "global"}, "keys": ["model.num_queries"]}],
                       exclude=[{"model.interaction": "local", "model.num_queries": 1}], seeds=[0])
    ids = [r.run_id for r in grids.expand(grids.load_grid(grid))]
    assert ids == ["interaction=global,seed=0", "interaction=local,num_queries=4,seed=0",
                   "interaction=both,num_queries=1,seed=0", "interaction=both,num_queries=4,seed=0"]
    bad = _write_grid(tmp_path / "bad.yaml", fixed={"model.num_querys": 1})
    with pytest.raises(ConfigError, match="model.num_querys"):
        grids.load_grid(bad)
    no_base = tmp_path / "no_base.yaml"
    no_base.write_text(yaml.safe_dump({"vary": {"model.num_queries": [1, 2]}}))
    with pytest.raises(ConfigError, match="'base' is required"):
        grids.load_grid(no_base)


def test_base_is_a_preset_or_a_yaml_file_next_to_the_grid(tmp_path):
    save_config(build_config("embedded", {"model.num_queries": 3, "train.epochs": 7}), tmp_path / "mine.yaml")
    grid = _write_grid(tmp_path / "g.yaml", base="mine.yaml", vary={"loss.icl_weight": [0.0, 0.5]})
    spec = grids.load_grid(grid)
    assert spec.resolved_base() == str(tmp_path / "mine.yaml")
    cfgs = [notebook.run_config(spec.resolved_base(), r.overrides) for r in grids.expand(spec)]
    assert [(c.model.num_queries, c.train.epochs, c.loss.icl_weight) for c in cfgs] == [(3, 7, 0.0), (3, 7, 0.5)]
    assert grids.load_grid(_write_grid(tmp_path / "p.yaml", base="embedded-quick")).resolved_base() == "embedded-quick"


def test_shards_partition_the_grid():
    runs = grids.expand(grids.load_grid(REPO / "ablations" / "default.yaml"))
    for n in range(1, 6):
        parts = [grids.shard(runs, i, n) for i in range(n)]
        ids = [r.run_id for p in parts for r in p]
        assert sorted(ids) == sorted(r.run_id for r in runs) and len(ids) == len(set(ids))
    assert grids.parse_shard("1/4") == (1, 4)
    with pytest.raises(ConfigError):
        grids.parse_shard("4/4")


def test_quick_takes_the_quick_presets_schedule_and_moves_world_paths_aside():
    quick = load_config("embedded-quick")
    cfg = notebook.run_config("embedded", {"train.epochs": 6, "model.num_queries": 2}, quick=True)
    assert cfg.data.root == "data/world-quick" and cfg.data.cache_dir == "data/world-quick/cache"
    assert cfg.model.pretrained == "data/world-quick/clip-tiny-pretrained.safetensors"
    # the grid's own schedule gives way to the quick preset's; everything else stays
    assert (cfg.train.epochs, cfg.train.eval_every) == (quick.train.epochs, quick.train.eval_every) == (2, 1)
    assert cfg.model.num_queries == 2
    assert notebook.quick_overrides(build_config("embedded")) == {
        "train.epochs": 2, "train.eval_every": 1, "data.root": "data/world-quick", "data.cache_dir": "data/world-quick/cache",
        "model.pretrained": "data/world-quick/clip-tiny-pretrained.safetensors"}


def test_run_notebook_ships_as_package_data_and_talks_only_to_the_notebook_module():
    path = notebook.notebook_path()
    assert path == REPO / "glscl" / "lab" / "run.ipynb" and path.is_file()
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "glscl.lab.grids.runner" not in code and "timing.json" not in code
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    names = {line.split(":")[0] for line in params.source.splitlines() if ":" in line and not line.startswith("#")}
    assert names == {"name", "out_dir", "base", "overrides", "quick", "prepare_world", "progress"}
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "lab/*.ipynb" in pyproject["tool"]["setuptools"]["package-data"]["glscl"]  # installed with the package


def test_committed_notebooks_have_no_outputs_and_a_kernelspec():
    for path in (notebook.notebook_path(), REPO / "notebooks" / "report.ipynb"):
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata.kernelspec == {"name": "python3", "language": "python", "display_name": "Python 3"}
        assert nb.metadata.language_info.name == "python"
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code)
        assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1


# -- a real grid: killed, rerun, sharded, with a failing point -------------------------------------

def _record_files(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob(f"*/{notebook.RECORD_FILE}")}


@pytest.fixture(scope="module")
def grid(tmp_path_factory, tiny_world, tiny_clip):
    """A 6-run grid (2 of them invalid) on a base config file, run as two shards, the first killed mid-way and rerun."""
    tmp = tmp_path_factory.mktemp("grid")
    save_config(tiny_run_config(tiny_world, tiny_clip, tmp / "unused", cache_dir=tmp / "cache", epochs=1), tmp / "tiny-base.yaml")
    path = _write_grid(tmp / "tiny.yaml", base="tiny-base.yaml",
                       vary={"model.interaction": ["global", "both"], "model.num_queries": [2, 0]},  # K=0 is invalid
                       irrelevant=[{"when": {"model.interaction": "global"}, "keys": ["model.num_queries"]}],
                       seeds=[0, 1], workers=2)
    out = tmp / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "glscl.cli", "ablate", str(path), "--out", str(out), "--shard", "0/2",
                             "--workers", "1"], cwd=tmp, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while not _record_files(out) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and its worker; the orphaned kernel exits within a second
    except ProcessLookupError:  # it had already finished
        pass
    proc.wait()
    time.sleep(3)
    before = _record_files(out)
    assert before, proc.stderr.read().decode()[-2000:]
    table_after_kill = pd.read_csv(out / "results.csv") if (out / "results.csv").exists() else None
    spec = grids.load_grid(path)
    shard0 = runner.run_grid(spec, out, shard_spec=(0, 2), progress=False)
    shard1 = runner.run_grid(spec, out, shard_spec=(1, 2), progress=False)
    finished = _record_files(out)
    failed_before = {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/FAILED.json")}
    rerun = runner.run_grid(spec, out, rerun_failed=True, progress=False)
    return dict(spec=spec, path=path, out=out, world=tiny_world, before=before, table_after_kill=table_after_kill,
                shard0=shard0, shard1=shard1, finished=finished, failed_before=failed_before, rerun=rerun)


def test_killed_grid_rerun_has_every_row_once_and_keeps_finished_runs(grid):
    out, table = grid["out"], grid["shard1"]
    ids = [r.run_id for r in grids.expand(grid["spec"])]
    assert sorted(table["run_id"]) == sorted(ids) and table["run_id"].is_unique
    assert grid["rerun"].equals(runner.collect(grid["spec"], out))  # the table is a function of the run folders
    on_disk = pd.read_csv(out / "results.csv")
    assert list(on_disk["run_id"]) == list(table["run_id"])
    after = _record_files(out)
    for run_id, mtime in grid["before"].items():  # finished before the kill: not redone
        assert after[run_id] == mtime
    assert grid["table_after_kill"] is None or grid["table_after_kill"]["run_id"].is_unique
    ok = table[table["status"] == "ok"]
    assert sorted(ok["run_id"]) == sorted(i for i in ids if "num_queries=0" not in i)
    assert ok["t2v_R@1"].between(0, 100).all() and (ok["overhead_s"].dropna() > 0).all()
    assert {"interaction", "num_queries", "seed", "train_s", "eval_s", "prepare_s", "run_s", "wall_s"} <= set(table.columns)
    assert table.loc[table["interaction"] == "global", "num_queries"].isna().all()
    assert ok["prepare_s"].max() < 1  # prepare_world=false: the parent prepared the inputs
    assert (ok["run_s"] >= ok["cache_s"] + ok["train_s"] + ok["eval_s"]).all()
    timed = ok.dropna(subset=["wall_s"])  # the run finished before the kill has no wall time
    assert len(timed) >= len(ok) - 1 and (timed["overhead_s"] == timed["wall_s"] - timed["run_s"]).all()


def test_run_notebook_executed_top_to_bottom_and_kept(grid):
    out = grid["out"]
    run_id = "interaction=both,num_queries=2,seed=0"
    nb = nbformat.read(out / "notebooks" / f"{run_id}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in code)
    d = out / "runs" / run_id
    for name in (notebook.RECORD_FILE, "metrics.json", "curve.csv", "config.yaml", "ablate.json"):
        assert (d / name).is_file(), name
    assert not (d / "timing.json").exists()
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    assert cfg["model"]["num_queries"] == 2 and cfg["train"]["seed"] == 0 and cfg["name"] == run_id
    assert cfg["train"]["batch_size"] == 8 and cfg["data"]["root"] == str(grid["world"])  # from the base file
    record, metrics = notebook.read_record(d), json.loads((d / "metrics.json").read_text())
    assert {k: record[k] for k in metrics} == metrics and record["run_s"] > 0 and record["prepare_s"] >= 0


def test_failing_point_is_recorded_and_the_others_finish(grid):
    out, table = grid["out"], grid["shard1"]
    failed = table[table["status"] == "failed"]
    assert sorted(failed["run_id"]) == ["interaction=both,num_queries=0,seed=0", "interaction=both,num_queries=0,seed=1"]
    assert failed["error"].str.contains("model.num_queries = 0 is out of range").all()
    record = json.loads((out / "runs" / failed["run_id"].iloc[0] / "FAILED.json").read_text())
    assert "ConfigError" in record["error"] and "num_queries" in record["traceback_tail"]
    assert record["failed_at"] and record["wall_s"] > 0
    assert (out / "notebooks" / f"{failed['run_id'].iloc[0]}.ipynb").is_file()
    # failed runs are skipped by a plain rerun; --rerun-failed reruns them (they fail again) and nothing else
    assert runner.plan(grid["spec"], out)[1] == []
    assert sorted(r.run_id for r in runner.plan(grid["spec"], out, rerun_failed=True)[1]) == sorted(failed["run_id"])
    failed_after = {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/FAILED.json")}
    assert failed_after.keys() == grid["failed_before"].keys()
    assert all(failed_after[k] != grid["failed_before"][k] for k in failed_after)
    assert _record_files(out) == grid["finished"]
    assert grid["rerun"]["status"].tolist() == table["status"].tolist()


def test_grid_figures_written(grid):
    figs = grid["out"] / "figures"
    for ext in ("png", "pdf", "svg"):
        assert list(figs.glob(f"bars_interaction.{ext}")), ext


def test_report_notebook_executes(grid, tmp_path):
    import papermill as pm
    from nbconvert import HTMLExporter
    out_nb = tmp_path / "report.ipynb"
    pm.execute_notebook(str(REPO / "notebooks" / "report.ipynb"), str(out_nb), parameters={"grid_dir": str(grid["out"])},
                        kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    nb = nbformat.read(out_nb, as_version=4)
    text = json.dumps(nb.dict())
    assert "image/png" in text and "Highest test mean" in text
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert "Ablation report" in html


# -- figures and statistics from a synthetic table (no runs) -----------------------------------------

def _synthetic(spec_vary: dict, tmp_path: Path, metric_fn) -> tuple:
    tmp_path.mkdir(parents=True, exist_ok=True)
    irrelevant = []
    if "model.num_queries" in spec_vary and "model.interaction" in spec_vary:
        irrelevant = [{"when": {"model.interaction": "global"}, "keys": ["model.num_queries"]}]
    if "model.head" in spec_vary:
        irrelevant = [{"when": {"model.head": "mean_pooling"}, "keys": ["model.interaction"]}]
    path = _write_grid(tmp_path / "s.yaml", vary=spec_vary, seeds=[0, 1, 2], irrelevant=irrelevant)
    spec = grids.load_grid(path)
    rows = []
    for r in grids.expand(spec):
        values = {spec.columns[k]: v for k, v in r.values.items()}
        rows.append({"run_id": r.run_id, "status": "ok", **values, "seed": r.seed,
                     "t2v_R@1": metric_fn(values, r.seed), "v2t_R@1": metric_fn(values, r.seed) - 1,
                     "twin_accuracy": 50.0 + r.seed, "best_val_score": 3 * metric_fn(values, r.seed)})
    return spec, pd.DataFrame(rows)


def test_figures_for_each_kind_of_grid(tmp_path):
    cases = {
        "num_queries_by_interaction": ({"model.interaction": ["global", "both"], "model.num_queries": [1, 4, 16]},
                                       lambda v, s: 20 + (v.get("num_queries") or 0) + s),
        "heatmap_icl_weight_x_idl_weight": ({"loss.icl_weight": [0.0, 0.1, 1.0], "loss.idl_weight": [0.0, 0.1, 1.0]},
                                            lambda v, s: 30 + 10 * v["icl_weight"] - v["idl_weight"] + s),
        "bars_shared_queries_by_shared_decoder": ({"model.shared_queries": [True, False], "model.shared_decoder": [True, False]},
                                                  lambda v, s: 30 + v["shared_queries"] + s),
        # interaction does not apply to mean pooling: one bar per configuration
        "bars_head_interaction": ({"model.head": ["mean_pooling", "glscl"], "model.interaction": ["global", "local", "both"]},
                                  lambda v, s: 20 + len(v.get("interaction", "")) + s),
    }
    for name, (vary, fn) in cases.items():
        spec, table = _synthetic(vary, tmp_path / name, fn)
        paths = figures.figures_for_grid(table, spec, tmp_path / name / "figures")
        names = [name] + (["bars_interaction_best_num_queries"] if name.startswith("num_queries") else [])
        assert sorted(p.name for p in paths) == sorted(f"{n}.{ext}" for n in names for ext in ("png", "pdf", "svg")), paths
        assert all(p.stat().st_size > 1000 for p in paths)
        assert figures.findings(table, spec).startswith("Metric:")
        assert len(figures.summary_table(table, spec)) == len(table) // 3


def test_t_interval_by_hand():
    mean, hw, n = figures.mean_ci([1.0, 3.0])
    assert (mean, n) == (2.0, 2) and hw == pytest.approx(12.706)  # t(0.975, 1) * sd / sqrt(2), sd = sqrt(2)
    assert figures.mean_ci([5.0])[1] != figures.mean_ci([5.0])[1]  # NaN: no interval from one seed
    assert figures.t_quantile(1000) == pytest.approx(1.962, abs=1e-3)
