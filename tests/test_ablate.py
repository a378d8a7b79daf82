"""Ablation grids: grid files and their expansion (and the mistakes refused), the shipped run notebook
under papermill on a local Ray instance, failures, shards, fingerprints of a grid folder, figures,
report. Killed drivers and workers, and joining a cluster: tests/test_ray.py."""
import hashlib
import json
import os
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from conftest import tiny_run_config

from glscl.cli import main as cli_main
from glscl.config import ConfigError, build_config, load_config, save_config
from glscl.engine.record import RECORD_FILE, read_record, write_record
from glscl.lab.grids import cluster, figures, folder, notebook, runner, stats, summaries
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
    # mean pooling ignores interaction and K, global ignores K: one run per seed each, then 4 K x local/both
    assert len(ids) == len(set(ids)) == (1 + 1 + 4 + 4) * 5
    assert "head=glscl,interaction=both,num_queries=4,seed=0" in ids and "head=glscl,interaction=global,seed=4" in ids
    assert "head=mean_pooling,seed=2" in ids
    assert ids == [r.run_id for r in grids.expand(grids.load_grid(REPO / "ablations" / "default.yaml"))]  # stable
    assert [r.seed for r in runs[:10]] == [0] * 10 and runs[10].seed == 1  # seed-major order
    assert runs[0].overrides == {"model.head": "mean_pooling", "train.seed": 0}


@pytest.mark.parametrize("path", GRID_FILES, ids=[p.name for p in GRID_FILES])
def test_every_shipped_grid_file_is_a_short_base_plus_changes_and_builds_valid_configs(path):
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) <= 17, f"{path.name}: {len(lines)} lines besides comments"
    assert yaml.safe_load(path.read_text())["base"] == "embedded"
    spec = grids.load_grid(path)
    runs = grids.expand(spec)
    assert runs and spec.description and len({r.run_id for r in runs}) == len(runs)
    assert len(spec.seeds) >= 5, f"{path.name}: {spec.seeds}"
    assert stats.reference_config(spec), f"{path.name}: reports need a reference configuration"
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


@pytest.mark.parametrize("changes, message", [
    (dict(seeds=[0, 1, 0]), r"seeds \[0, 1, 0\]: 0 repeated"),
    (dict(irrelevant=[{"when": {"model.interaction": "globl"}, "keys": ["model.num_queries"]}]),
     r"irrelevant: when model.interaction = 'globl' matches no grid point \(model.interaction varies over \['global', 'both'\]\)"),
    (dict(irrelevant=[{"when": {"model.interaction": ["global", "lokal"]}, "keys": ["model.num_queries"]}]),
     r"irrelevant: when model.interaction = 'lokal' matches no grid point"),
    (dict(exclude=[{"model.interaction": "both", "model.num_queries": 3}]),
     r"exclude: model.num_queries = 3 matches no grid point \(model.num_queries varies over \[1, 4\]\)"),
    (dict(exclude=[{"model.shared_queries": True}]), r"exclude: 'model.shared_queries' is not a varying key"),
    (dict(irrelevant=[{"when": "model.interaction=global", "keys": ["model.num_queries"]}]), r"exactly 'when' \(key: value\)"),
])
def test_grid_mistakes_stop_with_one_line_naming_them(tmp_path, changes, message):
    good = dict(vary={"model.interaction": ["global", "both"], "model.num_queries": [1, 4]}, seeds=[0, 1])
    grids.load_grid(_write_grid(tmp_path / "good.yaml", **good))
    with pytest.raises(ConfigError, match=message) as e:
        grids.load_grid(_write_grid(tmp_path / "bad.yaml", **{**good, **changes}))
    assert str(e.value).startswith(str(tmp_path / "bad.yaml")) and "\n" not in str(e.value)


def test_a_grid_that_varies_a_weight_its_loss_variant_ignores_stops_before_it_starts(tmp_path):
    out = tmp_path / "out"
    bad = _write_grid(tmp_path / "bad.yaml", base="released", vary={"loss.idl_weight": [0.0, 1.0]}, seeds=[0])
    with pytest.raises(ConfigError, match=r"loss.idl_weight is not read under loss.variant=released") as e:
        runner.run_grid(bad, out, progress=False)
    assert str(e.value).startswith(f"{bad}: run ") and "\n" not in str(e.value)
    assert not out.exists()  # nothing written, no world prepared
    converse = _write_grid(tmp_path / "converse.yaml", vary={"loss.released_beta": [0.005, 0.02]}, seeds=[0])
    with pytest.raises(ConfigError, match=r"loss.released_beta is not read under loss.variant=paper"):
        runner.run_grid(converse, out, progress=False)


def test_values_match_as_grid_values():
    assert grids.matches({"k": 1.0}, {"k": 1}) and not grids.matches({"k": True}, {"k": 1})
    assert grids.matches({"k": "a"}, {"k": ["b", "a"]}) and not grids.matches({}, {"k": 1})


def test_base_is_a_preset_or_a_yaml_file_next_to_the_grid(tmp_path):
    save_config(build_config("embedded", {"model.num_queries": 3, "train.epochs": 7}), tmp_path / "mine.yaml")
    grid = _write_grid(tmp_path / "g.yaml", base="mine.yaml", vary={"loss.icl_weight": [0.0, 0.5]})
    spec = grids.load_grid(grid)
    assert spec.resolved_base() == str(tmp_path / "mine.yaml")
    cfgs = [notebook.run_config(spec.resolved_base(), r.overrides) for r in grids.expand(spec)]
    assert [(c.model.num_queries, c.train.epochs, c.loss.icl_weight) for c in cfgs] == [(3, 7, 0.0), (3, 7, 0.5)]
    assert grids.load_grid(_write_grid(tmp_path / "p.yaml", base="embedded-short")).resolved_base() == "embedded-short"


def test_shards_partition_the_grid():
    runs = grids.expand(grids.load_grid(REPO / "ablations" / "default.yaml"))
    for n in range(1, 6):
        parts = [grids.shard(runs, i, n) for i in range(n)]
        ids = [r.run_id for p in parts for r in p]
        assert sorted(ids) == sorted(r.run_id for r in runs) and len(ids) == len(set(ids))
    assert grids.parse_shard("1/4") == (1, 4)
    with pytest.raises(ConfigError):
        grids.parse_shard("4/4")


def test_quick_takes_the_short_presets_schedule_and_moves_world_paths_aside():
    from glscl.engine.embedded import quick_overrides

    short = load_config("embedded-short")
    cfg = notebook.run_config("embedded", {"train.epochs": 6, "model.num_queries": 2}, quick=True)
    assert cfg.data.root == "data/world-quick" and cfg.data.cache_dir == "data/world-quick/cache"
    assert cfg.model.pretrained == "data/world-quick/clip-tiny-pretrained.safetensors"
    # the grid's own schedule gives way to the short preset's; everything else stays
    assert (cfg.train.epochs, cfg.train.eval_every) == (short.train.epochs, short.train.eval_every) == (2, 1)
    assert cfg.model.num_queries == 2
    assert quick_overrides(build_config("embedded")) == {
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


# -- a real grid on a local Ray instance: sharded, with a failing point, rerun -------------------------

def _state_files(out: Path, status: str) -> dict[str, int]:
    """Run id -> mtime of the run's record, for the runs whose record says ``status``."""
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob(f"*/{RECORD_FILE}")
            if read_record(p.parent).get("status") == status}


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance (2 CPUs) for the module, started the way glscl ablate starts one."""
    pytest.importorskip("ray")
    started = cluster.connect(None, num_cpus=2)
    yield
    if started:
        cluster.disconnect()


@pytest.mark.slow
def test_local_ray_workers_run_at_the_drivers_niceness(ray_local):
    import ray

    @ray.remote(num_cpus=1)
    def niceness():
        return os.nice(0)

    assert ray.get(niceness.remote()) == os.nice(0)  # Ray's default would be 15 above it


@pytest.fixture(scope="module")
def grid(tmp_path_factory, tiny_world, tiny_clip, ray_local):
    """A 6-run grid (2 of them invalid) on a base config file, run as two shards, then --rerun-failed."""
    tmp = tmp_path_factory.mktemp("grid")
    save_config(tiny_run_config(tiny_world, tiny_clip, tmp / "unused", cache_dir=tmp / "cache", epochs=1), tmp / "tiny-base.yaml")
    path = _write_grid(tmp / "tiny.yaml", base="tiny-base.yaml",
                       vary={"model.interaction": ["global", "both"], "model.num_queries": [2, 0]},  # K=0 is invalid
                       irrelevant=[{"when": {"model.interaction": "global"}, "keys": ["model.num_queries"]}],
                       seeds=[0, 1], workers=2)
    out = tmp / "out"
    spec = grids.load_grid(path)
    shard0 = runner.run_grid(spec, out, shard_spec=(0, 2), progress=False)
    after_shard0 = _state_files(out, "ok")
    shard1 = runner.run_grid(spec, out, shard_spec=(1, 2), progress=False)
    finished = _state_files(out, "ok")
    failed_before = _state_files(out, "failed")
    rerun = runner.run_grid(spec, out, rerun_failed=True, progress=False)
    return dict(spec=spec, path=path, out=out, tmp=tmp, world=tiny_world, shard0=shard0, after_shard0=after_shard0,
                shard1=shard1, finished=finished, failed_before=failed_before, rerun=rerun)


@pytest.mark.slow
def test_sharded_grid_has_every_row_once_and_keeps_finished_runs(grid):
    out, table = grid["out"], grid["shard1"]
    ids = [r.run_id for r in grids.expand(grid["spec"])]
    assert sorted(table["run_id"]) == sorted(ids) and table["run_id"].is_unique
    assert grid["rerun"].equals(runner.collect(grid["spec"], out))  # the table is a function of the run folders
    assert pd.read_csv(out / "results.csv")["run_id"].tolist() == table["run_id"].tolist()
    assert (grid["shard0"]["status"] != "failed").sum() >= 1  # shard 0 leaves shard 1's runs pending
    for run_id, mtime in grid["after_shard0"].items():  # shard 1 did not touch shard 0's runs
        assert grid["finished"][run_id] == mtime
    ok = table[table["status"] == "ok"]
    assert sorted(ok["run_id"]) == sorted(i for i in ids if "num_queries=0" not in i)
    assert ok["t2v_R@1"].between(0, 100).all() and (ok["overhead_s"] > 0).all()
    assert {"interaction", "num_queries", "seed", "train_s", "eval_s", "prepare_s", "run_s", "wall_s", "attempt"} <= set(table.columns)
    assert table.loc[table["interaction"] == "global", "num_queries"].isna().all()
    assert ok["prepare_s"].max() < 1  # prepare_world=false: the driver prepared the inputs
    assert (ok["run_s"] >= ok["cache_s"] + ok["train_s"] + ok["eval_s"]).all()
    assert ok["wall_s"].notna().all() and (ok["overhead_s"] == ok["wall_s"] - ok["run_s"]).all()
    for _, row in pd.read_csv(out / "results.csv").iterrows():  # results.csv is derived from the runs' records
        record = read_record(out / "runs" / row["run_id"])
        assert row["status"] == record["status"] and row["attempt"] == record["attempt"]
        keys = ("t2v_R@1", "v2t_R@5", "best_val_score", "train_s", "run_s", "wall_s") if row["status"] == "ok" else ("error", "wall_s")
        assert all(row[k] == pytest.approx(record[k], rel=1e-12) if isinstance(record[k], float) else row[k] == record[k]
                   for k in keys), row["run_id"]


@pytest.mark.slow
def test_run_notebook_executed_top_to_bottom_and_kept(grid):
    out = grid["out"]
    run_id = "interaction=both,num_queries=2,seed=0"
    nb = nbformat.read(out / "notebooks" / f"{run_id}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in code)
    d = out / "runs" / run_id
    for name in (RECORD_FILE, "curve.csv", "config.yaml"):
        assert (d / name).is_file(), name
    # one record: no other file of the run holds its metrics or its state
    assert sorted(p.name for p in d.glob("*.json")) == ["environment.json", "fingerprint.json", RECORD_FILE]
    assert (out / "logs" / f"{run_id}.log").is_file()
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    assert cfg["model"]["num_queries"] == 2 and cfg["train"]["seed"] == 0 and cfg["name"] == run_id
    assert cfg["train"]["batch_size"] == 8 and cfg["data"]["root"] == str(grid["world"])  # from the base file
    info = json.loads((d / RECORD_FILE).read_text())
    assert info["run_s"] > 0 and info["prepare_s"] >= 0 and info["run_s"] >= info["train_s"] > 0
    assert info["status"] == "ok" and info["wall_s"] > info["run_s"] and (info["cpus"], info["threads"]) == (1.0, 1)
    assert info["name"] == run_id and info["num_queries"] == 2 and info["attempt"] == 1
    stamp = folder.read_json(out / folder.GRID_STAMP)
    assert stamp["fields"]["train.epochs"] == 1 and (out / folder.GRID_FILE).read_text() == grid["path"].read_text()
    assert stamp["grid_sha256"] == hashlib.sha256(grid["path"].read_bytes()).hexdigest()
    assert info["fingerprint"] == folder.fingerprint(info["fields"]) and info["fields"]["model.num_queries"] == 2


@pytest.mark.slow
def test_failing_point_is_recorded_and_the_others_finish(grid):
    out, table = grid["out"], grid["shard1"]
    failed = table[table["status"] == "failed"]
    assert sorted(failed["run_id"]) == ["interaction=both,num_queries=0,seed=0", "interaction=both,num_queries=0,seed=1"]
    assert failed["error"].str.contains("model.num_queries = 0 is out of range").all()
    info = read_record(out / "runs" / failed["run_id"].iloc[0])
    assert info["status"] == "failed" and "ConfigError" in info["error"] and "num_queries" in info["traceback_tail"]
    assert info["finished"] and info["wall_s"] > 0
    assert (out / "notebooks" / f"{failed['run_id'].iloc[0]}.ipynb").is_file()
    # failed runs are skipped by a plain rerun; --rerun-failed reruns them (they fail again) and nothing else
    assert runner.plan(grid["spec"], out)[1] == []
    assert sorted(r.run_id for r in runner.plan(grid["spec"], out, rerun_failed=True)[1]) == sorted(failed["run_id"])
    failed_after = _state_files(out, "failed")
    assert failed_after.keys() == grid["failed_before"].keys()
    assert all(failed_after[k] != grid["failed_before"][k] for k in failed_after)
    assert all(read_record(out / "runs" / k)["attempt"] == 2 for k in failed_after)
    assert _state_files(out, "ok") == grid["finished"]
    assert grid["rerun"]["status"].tolist() == table["status"].tolist()


@pytest.mark.slow
def test_changed_grid_into_the_same_folder_stops_with_one_line(grid, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(grid["out"], out)
    data = yaml.safe_load(grid["path"].read_text())
    changed = _write_grid(grid["tmp"] / "changed.yaml", **{**data, "fixed": {"train.epochs": 2}})
    assert cli_main(["ablate", str(changed), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("glscl ablate: error: ")
    assert f"{out} was run with another base or fixed settings (train.epochs: 1 -> 2)" in err
    assert "(6 runs differ)" in err and "new --out" in err and "--overwrite" in err
    assert (out / folder.GRID_FILE).read_text() == grid["path"].read_text()  # nothing written
    # the base file changed under the grid: named the same way
    base = yaml.safe_load((grid["tmp"] / "tiny-base.yaml").read_text())
    base["train"]["lr"] = 0.5
    (grid["tmp"] / "other-base.yaml").write_text(yaml.safe_dump(base))
    other = _write_grid(grid["tmp"] / "other.yaml", **{**data, "base": "other-base.yaml"})
    with pytest.raises(ConfigError, match=r"another base or fixed settings \(train.lr: 0.001 -> 0.5\)"):
        runner.run_grid(other, out, progress=False)
    # the same grid (new seeds, another description) runs into it: nothing differs
    more = _write_grid(grid["tmp"] / "more.yaml", **{**data, "description": "more seeds", "seeds": [0, 1, 2]})
    table = runner.run_grid(more, out, dry_run=True)
    assert (table["status"] == "pending").sum() == 3 and (table["status"] == "ok").sum() == 4
    # --dry-run --overwrite lists the runs that would be replaced, and moves nothing
    runner.run_grid(changed, out, dry_run=True, overwrite=True)
    listed = capsys.readouterr().out
    assert listed.count("[replace]") == 6 and not list(out.glob("replaced-*"))


@pytest.mark.slow
def test_a_run_killed_after_its_record_is_pending_never_ok_without_a_wall_time(grid, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(grid["out"], out)
    run_id = "interaction=both,num_queries=2,seed=1"
    info = read_record(out / "runs" / run_id)
    write_record(out / "runs" / run_id,  # as the notebook left it: run() and the notebook done, the attempt not ended
                 {k: v for k, v in info.items() if k not in ("wall_s", "finished")})
    assert read_record(out / "runs" / run_id)["status"] == "ok"
    table = runner.collect(grid["spec"], out)
    row = table.set_index("run_id").loc[run_id]
    assert row["status"] == "pending" and pd.isna(row["wall_s"]) and pd.isna(row["t2v_R@1"])
    assert [r.run_id for r in runner.plan(grid["spec"], out)[1]] == [run_id]
    assert table.loc[table["status"] == "ok", "wall_s"].notna().all()


@pytest.mark.slow
def test_grid_figures_written(grid):
    figs = grid["out"] / "figures"
    for ext in ("png", "pdf", "svg"):
        assert list(figs.glob(f"bars_interaction.{ext}")), ext


@pytest.mark.slow
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
        assert summaries.findings(table, spec).startswith("Metric:")
        assert len(summaries.summary_table(table, spec)) == len(table) // 3


def test_t_interval_by_hand():
    mean, hw, n = stats.mean_ci([1.0, 3.0])
    assert (mean, n) == (2.0, 2) and hw == pytest.approx(12.706)  # t(0.975, 1) * sd / sqrt(2), sd = sqrt(2)
    assert stats.mean_ci([5.0])[1] != stats.mean_ci([5.0])[1]  # NaN: no interval from one seed
    assert stats.t_quantile(1000) == pytest.approx(1.962, abs=1e-3)
