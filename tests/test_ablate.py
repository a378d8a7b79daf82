"""Ablation grids: expansion, the run notebook under papermill, kill and resume, failures, shards, figures, report."""
import functools
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
from glscl.lab.grids import runner as ablate, figures as plots
from glscl.config import ConfigError, describe

REPO = Path(__file__).resolve().parents[1]


def _fixed(cfg) -> dict:
    """Every field of ``cfg`` as dotted keys (what a grid file's ``fixed:`` holds), seed and paths of results left out."""
    out = {}
    for key, _, _ in describe():
        if key in ("name", "out_dir", "train.seed"):
            continue
        value = functools.reduce(getattr, key.split("."), cfg)
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def _write_grid(path: Path, fixed: dict, **spec) -> Path:
    path.write_text(yaml.safe_dump({"description": "test grid", "prepare_world": False, "fixed": fixed, **spec}, sort_keys=False))
    return path


# -- grid files and expansion (no runs) ------------------------------------------------------------

def test_default_grid_expands_without_duplicates():
    spec = ablate.load_grid(REPO / "ablations" / "default.yaml")
    runs = ablate.expand(spec)
    ids = [r.run_id for r in runs]
    assert len(ids) == len(set(ids)) == (1 + 4 + 4) * 2  # global ignores K: one run per seed, not four
    assert "interaction=both,num_queries=4,seed=0" in ids and "interaction=global,seed=1" in ids
    assert ids == [r.run_id for r in ablate.expand(ablate.load_grid(REPO / "ablations" / "default.yaml"))]  # stable
    assert [r.seed for r in runs[:9]] == [0] * 9  # seed-major order


@pytest.mark.parametrize("grid", ["default.yaml", "queries.yaml", "losses.yaml", "interaction.yaml", "sharing.yaml", "variant.yaml"])
def test_every_grid_file_builds_valid_configs(grid):
    spec = ablate.load_grid(REPO / "ablations" / grid)
    runs = ablate.expand(spec)
    assert runs and spec.description
    for r in runs:
        cfg = ablate.build_config(r.overrides, spec.base, name=r.run_id, out_dir="runs/x")
        assert cfg.train.seed == r.seed


def test_exclude_irrelevant_and_errors(tmp_path):
    grid = _write_grid(tmp_path / "g.yaml", {"train.epochs": 1},
                       vary={"model.interaction": ["global", "local", "both"], "model.num_queries": [1, 4]},
                       irrelevant=[{"when": {"model.interaction": "global"}, "keys": ["model.num_queries"]}],
                       exclude=[{"model.interaction": "local", "model.num_queries": 1}], seeds=[0])
    ids = [r.run_id for r in ablate.expand(ablate.load_grid(grid))]
    assert ids == ["interaction=global,seed=0", "interaction=local,num_queries=4,seed=0",
                   "interaction=both,num_queries=1,seed=0", "interaction=both,num_queries=4,seed=0"]
    bad = _write_grid(tmp_path / "bad.yaml", {"model.num_querys": 1})
    with pytest.raises(ConfigError, match="model.num_querys"):
        ablate.load_grid(bad)


def test_shards_partition_the_grid():
    runs = ablate.expand(ablate.load_grid(REPO / "ablations" / "default.yaml"))
    for n in range(1, 6):
        parts = [ablate.shard(runs, i, n) for i in range(n)]
        ids = [r.run_id for p in parts for r in p]
        assert sorted(ids) == sorted(r.run_id for r in runs) and len(ids) == len(set(ids))
    assert ablate.parse_shard("1/4") == (1, 4)
    with pytest.raises(ConfigError):
        ablate.parse_shard("4/4")


def test_quick_moves_world_paths_aside():
    cfg = ablate.build_config({}, quick=True)
    assert cfg.data.root == "data/world-quick" and cfg.data.cache_dir == "data/world-quick/cache"
    assert cfg.model.pretrained == "data/world-quick/clip-tiny-pretrained.safetensors" and cfg.train.epochs == 1


def test_committed_notebooks_have_no_outputs_and_a_kernelspec():
    for name in ("run.ipynb", "report.ipynb"):
        nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
        assert nb.metadata.kernelspec == {"name": "python3", "language": "python", "display_name": "Python 3"}
        assert nb.metadata.language_info.name == "python"
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code)
        assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1


# -- a real grid: killed, rerun, sharded, with a failing point -------------------------------------

def _metrics_files(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/metrics.json")}


@pytest.fixture(scope="module")
def grid(tmp_path_factory, tiny_world, tiny_clip):
    """A 6-run grid (2 of them invalid) run as two shards, the first killed mid-way and rerun."""
    tmp = tmp_path_factory.mktemp("grid")
    fixed = _fixed(tiny_run_config(tiny_world, tiny_clip, tmp / "unused", cache_dir=tmp / "cache", epochs=1))
    path = _write_grid(tmp / "tiny.yaml", fixed,
                       vary={"model.interaction": ["global", "both"], "model.num_queries": [2, 0]},  # K=0 is invalid
                       irrelevant=[{"when": {"model.interaction": "global"}, "keys": ["model.num_queries"]}],
                       seeds=[0, 1], workers=2)
    out = tmp / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "glscl.cli", "ablate", str(path), "--out", str(out), "--shard", "0/2",
                             "--workers", "1"], cwd=tmp, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while not _metrics_files(out) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and its worker; the orphaned kernel exits within a second
    except ProcessLookupError:  # it had already finished
        pass
    proc.wait()
    time.sleep(3)
    before = _metrics_files(out)
    assert before, proc.stderr.read().decode()[-2000:]
    table_after_kill = pd.read_csv(out / "results.csv") if (out / "results.csv").exists() else None
    spec = ablate.load_grid(path)
    shard0 = ablate.run_grid(spec, out, shard_spec=(0, 2), progress=False)
    shard1 = ablate.run_grid(spec, out, shard_spec=(1, 2), progress=False)
    finished = _metrics_files(out)
    failed_before = {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/FAILED.json")}
    rerun = ablate.run_grid(spec, out, rerun_failed=True, progress=False)
    return dict(spec=spec, path=path, out=out, before=before, table_after_kill=table_after_kill,
                shard0=shard0, shard1=shard1, finished=finished, failed_before=failed_before, rerun=rerun)


def test_killed_grid_rerun_has_every_row_once_and_keeps_finished_runs(grid):
    out, table = grid["out"], grid["shard1"]
    ids = [r.run_id for r in ablate.expand(grid["spec"])]
    assert sorted(table["run_id"]) == sorted(ids) and table["run_id"].is_unique
    assert grid["rerun"].equals(ablate.collect(grid["spec"], out))  # the table is a function of the run folders
    on_disk = pd.read_csv(out / "results.csv")
    assert list(on_disk["run_id"]) == list(table["run_id"])
    after = _metrics_files(out)
    for run_id, mtime in grid["before"].items():  # finished before the kill: not redone
        assert after[run_id] == mtime
    assert grid["table_after_kill"] is None or grid["table_after_kill"]["run_id"].is_unique
    ok = table[table["status"] == "ok"]
    assert sorted(ok["run_id"]) == sorted(i for i in ids if "num_queries=0" not in i)
    assert ok["t2v_R@1"].between(0, 100).all() and (ok["overhead_s"].dropna() > 0).all()
    assert {"interaction", "num_queries", "seed", "train_s", "eval_s", "run_s", "wall_s"} <= set(table.columns)
    assert table.loc[table["interaction"] == "global", "num_queries"].isna().all()


def test_run_notebook_executed_top_to_bottom_and_kept(grid):
    out = grid["out"]
    run_id = "interaction=both,num_queries=2,seed=0"
    nb = nbformat.read(out / "notebooks" / f"{run_id}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in code)
    d = out / "runs" / run_id
    for name in ("metrics.json", "curve.csv", "config.yaml", "timing.json", "ablate.json"):
        assert (d / name).is_file(), name
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    assert cfg["model"]["num_queries"] == 2 and cfg["train"]["seed"] == 0 and cfg["name"] == run_id


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
    assert ablate.plan(grid["spec"], out)[1] == []
    assert sorted(r.run_id for r in ablate.plan(grid["spec"], out, rerun_failed=True)[1]) == sorted(failed["run_id"])
    failed_after = {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/FAILED.json")}
    assert failed_after.keys() == grid["failed_before"].keys()
    assert all(failed_after[k] != grid["failed_before"][k] for k in failed_after)
    assert _metrics_files(out) == grid["finished"]
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
    path = _write_grid(tmp_path / "s.yaml", {}, vary=spec_vary, seeds=[0, 1, 2],
                       irrelevant=[{"when": {"model.interaction": "global"}, "keys": ["model.num_queries"]}]
                       if "model.num_queries" in spec_vary and "model.interaction" in spec_vary else [])
    spec = ablate.load_grid(path)
    rows = []
    for r in ablate.expand(spec):
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
    }
    for name, (vary, fn) in cases.items():
        spec, table = _synthetic(vary, tmp_path / name, fn)
        paths = plots.figures_for_grid(table, spec, tmp_path / name / "figures")
        names = [name] + (["bars_interaction_best_num_queries"] if name.startswith("num_queries") else [])
        assert sorted(p.name for p in paths) == sorted(f"{n}.{ext}" for n in names for ext in ("png", "pdf", "svg")), paths
        assert all(p.stat().st_size > 1000 for p in paths)
        assert plots.findings(table, spec).startswith("Metric:")
        assert len(plots.summary_table(table, spec)) == len(table) // 3


def test_t_interval_by_hand():
    mean, hw, n = plots.mean_ci([1.0, 3.0])
    assert (mean, n) == (2.0, 2) and hw == pytest.approx(12.706)  # t(0.975, 1) * sd / sqrt(2), sd = sqrt(2)
    assert plots.mean_ci([5.0])[1] != plots.mean_ci([5.0])[1]  # NaN: no interval from one seed
    assert plots.t_quantile(1000) == pytest.approx(1.962, abs=1e-3)
