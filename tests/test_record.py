"""One record per run (glscl.engine.record), one fingerprint module (glscl.engine.fingerprint), one atomic
writer (glscl.files): the grid folder's table derived from the records, the earlier three-file layout
still read, a torn record never taken for a finished run. No training here: records are planted."""
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from glscl.config import build_config
from glscl.engine import fingerprint as fp
from glscl.engine import record as rec
from glscl.engine import results_folder
from glscl.lab.grids import cluster, folder, runner

REPO = Path(__file__).resolve().parents[1]


def _spec(tmp_path: Path):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"description": "test", "base": "embedded", "prepare_world": False,
                                    "vary": {"model.num_queries": [2, 4, 8]}, "seeds": [0]}, sort_keys=False))
    return runner.load_grid(path)


def _fields(spec, run, out):
    return fp.fingerprint_fields(runner.run_config(spec.resolved_base(), run.overrides, name=run.run_id, out_dir=str(out / "runs")))


def _engine_record(k: int, r1: float) -> dict:
    """What run() writes (a few of its keys, in its order)."""
    return {"status": "ok", "name": f"num_queries={k},seed=0", "dataset": "world", "t2v_R@1": r1, "v2t_R@1": r1 - 1,
            "train_steps": 4, "cache_s": 0.5, "train_s": 2.0, "eval_s": 0.25, "seed": 0, "num_queries": k}


# -- the record ------------------------------------------------------------------------------------

def test_record_problem_names_the_file_and_the_reason(tmp_path):
    path = tmp_path / rec.RECORD_FILE
    assert rec.record_problem(tmp_path) == f"{path}: missing" and rec.read_record(tmp_path) == {}
    path.write_text('{"t2v_R@1": ')
    assert rec.record_problem(tmp_path).startswith(f"{path}: torn or unreadable") and rec.read_record(tmp_path) == {}
    rec.write_record(tmp_path, {"status": "running", "attempt": 1})
    assert rec.record_problem(tmp_path) == f"{path}: status running"
    rec.write_record(tmp_path, {"status": "ok", "t2v_R@1": True})
    assert rec.record_problem(tmp_path) == f"{path}: incomplete (no t2v_R@1)"
    rec.write_record(tmp_path, {"t2v_R@1": 3.0})  # written by an earlier run(): no status, finished
    assert rec.record_problem(tmp_path) is None and rec.read_record(tmp_path)["status"] == "ok"
    assert rec.record_problem(tmp_path, ("t2v_R@1", "run_s")) == f"{path}: incomplete (no run_s)"


def test_run_keeps_what_an_attempt_recorded_when_it_started_and_nothing_of_a_finished_one(tmp_path):
    rec.write_record(tmp_path, {"status": "running", "attempt": 2, "host": "h"})
    assert rec.finish_record(tmp_path, {"status": "ok", "t2v_R@1": 5.0}) == {"status": "ok", "attempt": 2, "host": "h",
                                                                            "t2v_R@1": 5.0}
    rec.update_record(tmp_path, run_s=1.5)
    assert json.loads((tmp_path / rec.RECORD_FILE).read_text()) == {"status": "ok", "attempt": 2, "host": "h",
                                                                    "t2v_R@1": 5.0, "run_s": 1.5}
    # a finished record is replaced whole: no key of the earlier run survives
    assert rec.finish_record(tmp_path, {"status": "ok", "t2v_R@1": 6.0}) == {"status": "ok", "t2v_R@1": 6.0}
    assert [p.name for p in tmp_path.iterdir()] == [rec.RECORD_FILE]  # no temporary file left


# -- results.csv is derived from the records --------------------------------------------------------

def test_results_csv_rebuilt_from_the_records_equals_the_rows(tmp_path):
    spec = _spec(tmp_path)
    out = tmp_path / "grid"
    runs = runner.expand(spec)
    expected = []
    for run, r1 in zip(runs[:2], (12.5, 25.0)):  # two finished runs
        d = folder.run_paths(out, run.run_id)[0]
        d.mkdir(parents=True)
        k = run.values["model.num_queries"]
        start = {"run_id": run.run_id, "status": "running", "attempt": 1, "fingerprint": "x", "fields": _fields(spec, run, out),
                 "host": "node-1", "pid": 7, "cpus": 1.0, "threads": 1, "gpus": "", "started": "t", "notebook": "nb",
                 "overrides": run.overrides}
        rec.write_record(d, start)  # the grid, when the attempt starts
        rec.finish_record(d, _engine_record(k, r1))  # run()
        rec.update_record(d, prepare_s=0.0, run_s=3.0)  # the notebook
        rec.update_record(d, status="ok", wall_s=4.5, finished="t2")  # the grid, when it ends
        expected.append({"run_id": run.run_id, "status": "ok", "num_queries": k, "seed": 0, "dataset": "world",
                         "t2v_R@1": r1, "v2t_R@1": r1 - 1, "train_steps": 4, "cache_s": 0.5, "train_s": 2.0, "eval_s": 0.25,
                         "prepare_s": 0.0, "run_s": 3.0, "wall_s": 4.5, "overhead_s": 1.5, "attempt": 1, "host": "node-1"})
    d = folder.run_paths(out, runs[2].run_id)[0]  # a failed one
    d.mkdir(parents=True)
    rec.write_record(d, {"run_id": runs[2].run_id, "status": "failed", "attempt": 2, "host": "node-2", "wall_s": 1.0,
                         "error": "ConfigError: bad", "traceback_tail": "..."})
    expected.append({"run_id": runs[2].run_id, "status": "failed", "num_queries": 8, "seed": 0, "wall_s": 1.0,
                     "error": "ConfigError: bad", "attempt": 2, "host": "node-2"})
    table = folder.write_table(spec, out)
    want = pd.DataFrame(expected)
    assert list(table.columns) == list(want.columns)  # no key of the grid's own (fields, pid, notebook, ...) in the table
    written = pd.read_csv(out / "results.csv")
    for got in (table, written):
        for i, row in want.iterrows():
            for col, value in row.items():
                cell = got.iloc[i][col]
                assert (pd.isna(cell) and (value is None or (isinstance(value, float) and math.isnan(value)))) or cell == value, (i, col)


# -- one fingerprint module, one way to move a folder aside -------------------------------------------

def test_one_fingerprint_module_serves_both_folders():
    assert results_folder.fingerprint_fields is fp.fingerprint_fields and folder.fingerprint is fp.fingerprint
    assert results_folder.move_aside is fp.move_aside and runner.move_aside is fp.move_aside
    assert not hasattr(folder, "set_aside") and not hasattr(results_folder, "_flatten")
    cfg = build_config("embedded")
    assert fp.fingerprint(cfg) == fp.fingerprint(json.loads(json.dumps(fp.fingerprint_fields(cfg))))
    diff = fp.differences({"a": 1, "train.lr": 0.1}, {"a": 2, "train.lr": 0.1, "b": 3}, skip={"b"})
    assert diff == [("a", 1, 2)] and fp.describe_differences(diff) == "a: 1 -> 2"
    # a field the stored fields lack counts only when it is not at its default
    assert fp.differences({}, {"data.video_ext": None}) == []
    assert fp.describe_differences(fp.differences({}, {"data.video_ext": ".avi"})) == "data.video_ext: (not recorded) -> '.avi'"


def test_a_fingerprint_mismatch_moves_the_folder_aside_in_both_callers(tmp_path, monkeypatch):
    # the results folder of a run: refused, then with overwrite renamed to <name>.old-<time>
    cfg = build_config("embedded", {"name": "r", "out_dir": str(tmp_path / "runs")})
    d = tmp_path / "runs" / "r"
    (d / "checkpoints").mkdir(parents=True)
    other = {**fp.fingerprint_fields(cfg), "model.num_queries": 99}
    (d / results_folder.FINGERPRINT_FILE).write_text(json.dumps({"fields": other}))
    with pytest.raises(results_folder.RunFolderError, match=rf"model\.num_queries: 99 -> {cfg.model.num_queries}"):
        results_folder.check_run_folder(cfg)
    results_folder.start_fresh(cfg, resume=True, overwrite=True)
    [aside] = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("r.old-")]
    assert re.fullmatch(r"r\.old-\d{8}-\d{6}", aside.name) and (aside / "checkpoints").is_dir() and not d.exists()

    # a grid folder: the run that differs (its folder, notebook and log) goes to replaced-<time>/, the others stay
    spec = _spec(tmp_path)
    out = tmp_path / "grid"
    runs = runner.expand(spec)
    for run in runs:
        d, nb, log = folder.run_paths(out, run.run_id)
        d.mkdir(parents=True)
        fields = _fields(spec, run, out)
        if run is runs[0]:
            fields = {**fields, "train.lr": 0.5}
        rec.write_record(d, {**_engine_record(run.values["model.num_queries"], 10.0), "run_s": 1.0, "wall_s": 2.0,
                             "attempt": 1, "fields": fields, "fingerprint": fp.fingerprint(fields)})
        for path in (nb, log):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(run.run_id)
    stamp = folder.grid_stamp(spec, runner.run_config(spec.resolved_base(), spec.fixed))
    with pytest.raises(runner.ConfigError, match=r"runs/num_queries=2,seed=0 was run with another config \(train\.lr: 0\.5 -> [0-9.e-]+\)"):
        folder.check_folder(out, stamp, {r.run_id: _fields(spec, r, out) for r in runs}, set(spec.vary), overwrite=False)
    executed = []  # no Ray here: what would run is only noted
    monkeypatch.setattr(cluster, "connect", lambda *a, **k: False)
    monkeypatch.setattr(cluster, "resources_per_run", lambda *a, **k: (1.0, 0.0))
    monkeypatch.setattr(runner, "prepare_inputs", lambda *a, **k: None)
    monkeypatch.setattr(runner, "_execute", lambda spec, out, todo, *a, **k: executed.extend(r.run_id for r in todo) or [])
    runner.run_grid(spec, out, overwrite=True, progress=False, figures=False)
    [replaced] = list(out.glob("replaced-*"))
    moved = runs[0].run_id
    assert (replaced / "runs" / moved / rec.RECORD_FILE).is_file() and (replaced / "notebooks" / f"{moved}.ipynb").is_file()
    assert (replaced / "logs" / f"{moved}.log").is_file() and not folder.run_paths(out, moved)[0].exists()
    assert executed == [moved] and all(folder.run_paths(out, r.run_id)[0].is_dir() for r in runs[1:])


# -- a torn record, and the earlier layout ---------------------------------------------------------------

def _plant_legacy(spec, out: Path) -> dict[str, dict]:
    """Runs as an earlier grid left them: metrics.json (run()), record.json (+ prepare_s, run_s), ablate.json (the
    grid's state). The first finished, the second failed, the third was killed while running."""
    runs = runner.expand(spec)
    states = {}
    for run, status in zip(runs, ("ok", "failed", "running")):
        d = folder.run_paths(out, run.run_id)[0]
        d.mkdir(parents=True)
        fields = _fields(spec, run, out)
        info = {"run_id": run.run_id, "status": status, "attempt": 1, "fingerprint": fp.fingerprint(fields), "host": "old",
                "fields": fields}
        if status != "running":
            info["wall_s"] = 9.0
        if status == "failed":
            info.update(error="RuntimeError: boom", traceback_tail="...")
        if status == "ok":
            metrics = {k: v for k, v in _engine_record(run.values["model.num_queries"], 30.0).items() if k != "status"}
            (d / "metrics.json").write_text(json.dumps(metrics))
            (d / "record.json").write_text(json.dumps({**metrics, "prepare_s": 0.0, "run_s": 4.0}))
        (d / "ablate.json").write_text(json.dumps(info))
        states[run.run_id] = info
    return states


def test_an_earlier_grid_folder_is_read_from_its_three_files_and_its_finished_runs_skipped(tmp_path, capsys):
    spec = _spec(tmp_path)
    out = tmp_path / "grid"
    ids = [r.run_id for r in runner.expand(spec)]
    _plant_legacy(spec, out)
    table = runner.collect(spec, out).set_index("run_id")
    assert table["status"].to_dict() == dict(zip(ids, ("ok", "failed", "pending")))
    ok = table.loc[ids[0]]
    assert (ok["t2v_R@1"], ok["run_s"], ok["wall_s"], ok["overhead_s"], ok["attempt"], ok["host"]) == (30.0, 4.0, 9.0, 5.0, 1, "old")
    assert table.loc[ids[1], "error"] == "RuntimeError: boom"
    assert [r.run_id for r in runner.plan(spec, out)[1]] == [ids[2]]  # only the killed run runs again
    assert [r.run_id for r in runner.plan(spec, out, rerun_failed=True)[1]] == [ids[1]]
    stamp = folder.grid_stamp(spec, runner.run_config(spec.resolved_base(), spec.fixed))
    assert folder.check_folder(out, stamp, {r.run_id: _fields(spec, r, out) for r in runner.expand(spec)}, set(spec.vary),
                               overwrite=False) == []  # its fingerprints are read too
    runner.run_grid(spec, out, dry_run=True)
    listed = capsys.readouterr()
    assert "note:" not in listed.err and f"run  [pending] {ids[2]}" in listed.out and f"skip [ok     ] {ids[0]}" in listed.out


def test_a_rerun_of_an_earlier_layout_run_writes_one_record_and_counts_its_attempts(tmp_path, monkeypatch):
    import papermill
    spec = _spec(tmp_path)
    out = tmp_path / "grid"
    runs = runner.expand(spec)
    _plant_legacy(spec, out)
    failed = runs[1]
    d = folder.run_paths(out, failed.run_id)[0]

    def execute(notebook, out_nb, parameters, **kw):  # what the run notebook leaves: run()'s record, then its times
        run_dir = Path(parameters["out_dir"]) / parameters["name"]
        assert not (run_dir / "ablate.json").exists() and not (run_dir / "record.json").exists()
        rec.finish_record(run_dir, _engine_record(4, 40.0))
        rec.update_record(run_dir, prepare_s=0.0, run_s=2.0)
    monkeypatch.setattr(papermill, "execute_notebook", execute)
    monkeypatch.setattr(cluster, "_take_resources", lambda: (1.0, 1, ""))
    fields = _fields(spec, failed, out)
    assert cluster.execute_run(failed, str(out), "nb.ipynb", "embedded", False, str(tmp_path), fields, fp.fingerprint(fields))[1] == "ok"
    assert sorted(p.name for p in d.iterdir()) == [rec.RECORD_FILE]  # one record; the earlier files are gone
    record = rec.read_record(d)
    assert record["attempt"] == 2 and record["status"] == "ok" and record["t2v_R@1"] == 40.0 and record["wall_s"] > 0
    assert folder.run_status(d) == "ok" and "error" not in record


@pytest.mark.parametrize("layout", ["record", "earlier"])
@pytest.mark.parametrize("text", ['{"t2v_R@1": ', "", "[1, 2]"], ids=["torn", "empty", "not-an-object"])
def test_a_torn_record_makes_a_finished_run_pending_again(tmp_path, capsys, layout, text):
    spec = _spec(tmp_path)
    out = tmp_path / "grid"
    run = runner.expand(spec)[0]
    d = folder.run_paths(out, run.run_id)[0]
    if layout == "earlier":
        _plant_legacy(spec, out)
        broken = d / "record.json"
    else:
        d.mkdir(parents=True)
        rec.write_record(d, {**_engine_record(2, 10.0), "run_s": 1.0, "wall_s": 2.0, "attempt": 1, "fields": _fields(spec, run, out)})
        broken = d / rec.RECORD_FILE
    assert folder.run_status(d) == "ok"
    broken.write_text(text)
    assert folder.run_status(d) == "pending" and run in runner.plan(spec, out)[1]
    [note] = folder.torn_records(out, [run.run_id])
    assert str(broken) in note and note.endswith("the run is pending and runs again")


def test_every_atomic_json_write_goes_through_glscl_files():
    """No other module renames a temporary file over a JSON, CSV or text file (folders and videos aside)."""
    allowed = {"glscl/files.py", "glscl/data/cache.py", "glscl/data/world/generator.py", "glscl/engine/fingerprint.py",
               "glscl/engine/results_folder.py"}  # the one writer; a cache folder; mp4 files; moving aside; the lock
    found = {str(p.relative_to(REPO)) for p in [*(REPO / "glscl").rglob("*.py"), *(REPO / "benchmarks").glob("*.py")]
             if "os.replace(" in p.read_text()}
    assert found <= allowed, found - allowed
    assert "def atomic_write" not in (REPO / "glscl" / "engine" / "checkpoint.py").read_text()


def test_a_kernel_started_again_after_run_finished_keeps_the_attempt_in_the_record(tmp_path, monkeypatch):
    import papermill
    from nbclient.exceptions import DeadKernelError
    spec = _spec(tmp_path)
    out = tmp_path / "grid"
    run = runner.expand(spec)[0]
    calls = []

    def execute(notebook, out_nb, parameters, **kw):
        run_dir = Path(parameters["out_dir"]) / parameters["name"]
        calls.append(1)
        rec.finish_record(run_dir, _engine_record(2, 20.0))  # run() done (the second time over a finished record)
        if len(calls) == 1:
            raise DeadKernelError("Kernel died")  # before the notebook added its times
        rec.update_record(run_dir, prepare_s=0.0, run_s=2.0)
    monkeypatch.setattr(papermill, "execute_notebook", execute)
    monkeypatch.setattr(cluster, "_take_resources", lambda: (1.0, 1, ""))
    fields = _fields(spec, run, out)
    assert cluster.execute_run(run, str(out), "nb.ipynb", "embedded", False, str(tmp_path), fields, fp.fingerprint(fields))[1] == "ok"
    record = rec.read_record(folder.run_paths(out, run.run_id)[0])
    assert len(calls) == 2 and record["status"] == "ok" and record["attempt"] == 1 and record["fields"] == fields
    assert record["run_s"] == 2.0 and record["wall_s"] > 0 and folder.run_status(folder.run_paths(out, run.run_id)[0]) == "ok"
