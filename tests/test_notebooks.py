"""The tutorials: committed without outputs, and each runs top to bottom with papermill at quick settings.

Every notebook gets the session's tiny world and tiny CLIP (conftest) and writes only under a
temporary folder. A tutorial checks its own story as it runs (``glscl.lab.ui.tutorial.claim`` raises
when a sentence stops being true, which fails the execution); the executed copies are checked here for
figures, for the facts they print, for a clean stderr and for the static copies of their widgets.
The report notebook runs on a synthetic grid folder.
"""
import base64
from pathlib import Path

import pytest

pm = pytest.importorskip("papermill")
nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TUTORIALS = ("01_world_and_sampling", "02_model_step_by_step", "03_losses", "04_train_and_evaluate", "05_efficiency",
             "06_why_local_queries")
SCENES = {"06_why_local_queries"}  # tutorials on the scenes world (the others use the objects world)
KERNELSPEC = {"name": "python3", "language": "python", "display_name": "Python 3"}

# figures each tutorial must draw at quick settings, text its outputs must contain, widgets it shows
MIN_FIGURES = {"01_world_and_sampling": 7, "02_model_step_by_step": 6, "03_losses": 4, "04_train_and_evaluate": 4,
               "05_efficiency": 3, "06_why_local_queries": 4}
MUST_PRINT = {
    "01_world_and_sampling": ["twin = the clip played backwards: True", "padded frames are exactly zero: True",
                              "the order-blind model ties on every one", "**Answer: 2**"],
    "02_model_step_by_step": ["S == S_g + lambda S_l: True", "c^v (6, 8, 64)", "The GLSCL head trained now into",
                              "frame order reaches the features", "**Answer: ", "the global interaction alone is blind to order"],
    "03_losses": ["16 pairs", "IDL makes the trained queries more distinct", "nearly collapsed queries",
                  "**Answer: 4**", "written by `make findings`"],
    "04_train_and_evaluate": ["S matches test_similarity.pt: True", "rank of the caption's own video",
                              "of the 3 splits reused", "Query diversity on the test split",
                              "the evaluated checkpoint is the validation curve's best epoch", "Separately trained heads",
                              "the findings page (docs/findings.md) quotes the same paired differences", "**Answer: 'same'**"],
    "05_efficiency": ["counts at the paper's shapes", "No measured record", "not reproduced by counting",
                      "**Answer: 'less than half'**"],
    "06_why_local_queries": ["trained now into", "the caption describes part of the video", "**Answer: ",
                             "IDL keeps the query outputs apart", "the two interactions split the work"],
}
WIDGETS = {"02_model_step_by_step": 1, "04_train_and_evaluate": 2}
CHECKED = "&#10004;"   # how a checked claim is shown


def _read(name):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorial_is_committed_clean(name):
    nb = _read(name)
    assert dict(nb.metadata.kernelspec) == KERNELSPEC
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 6, "a tutorial tells its story in markdown"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "commit notebooks without outputs"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    root = "data/world" if name in SCENES else "data/world-objects"
    assert "quick = False" in params[0].source and f'root = "{root}"' in params[0].source
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "import" in code and "from glscl" in code
    assert "class " not in code, "tutorials import the method from the package; they do not define it"
    assert "claim(" in code, "a tutorial checks the sentences of its story"


def test_each_tutorial_here_has_an_exercise_the_notebook_answers():
    for name in ("03_losses", "04_train_and_evaluate", "05_efficiency"):
        nb = _read(name)
        params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assert "prediction = None" in params.source, name
        assert "tutorial.exercise(prediction, answer," in "\n".join(c.source for c in nb.cells if c.cell_type == "code"), name


def test_efficiency_counts_in_flops_and_states_the_convention_once():
    """One unit: FLOPs (2 per multiply-add). Multiply-adds are named only where the convention is stated."""
    cells = _read("05_efficiency").cells
    mentions = [i for i, c in enumerate(cells) if "multiply-add" in c.source]
    assert mentions == [0], mentions
    assert "1 multiply-add as 2 FLOPs" in cells[0].source
    text = "\n".join(c.source for c in cells)
    assert "GMAC" not in text.replace("PAPER_GMACS", "") and "GFLOP " not in text and "GFLOP\"" not in text


def test_readme_collapse_numbers_are_the_losses_grid_s():
    """The README's 'video-query cosine A vs B' (IDL 1.0 vs 0, ICL 0.1) is what docs/findings/losses/results.csv
    gives, the file `make findings` writes and notebook 03 quotes."""
    import re

    import pandas as pd

    root = NOTEBOOKS.parent
    readme = (root / "README.md").read_text()
    quoted = re.search(r"video-query cosine (\d\.\d\d) vs (\d\.\d\d)", readme)
    assert quoted, "the README quotes the collapse numbers"
    table = pd.read_csv(root / "docs" / "findings" / "losses" / "results.csv")
    runs = table[(table["status"] == "ok") & (table["icl_weight"] == 0.1)]
    means = [runs[runs["idl_weight"] == w]["video_query_cos"].mean() for w in (1.0, 0.0)]
    assert [float(x) for x in quoted.groups()] == [round(m, 2) for m in means]
    code = "\n".join(c.source for c in _read("03_losses").cells if c.cell_type == "code")
    assert '"losses"' in code and "video_query_cos" in code


def test_world_and_clip_setup_and_optimisation_come_from_the_package():
    code = {name: "\n".join(c.source for c in _read(name).cells if c.cell_type == "code") for name in TUTORIALS}
    for name in ("02_model_step_by_step", "03_losses", "04_train_and_evaluate"):
        assert "tutorial.setup(" in code[name] and "pretrain_clip" not in code[name] and "create_backbone" not in code[name]
    assert "fit_queries(" in code["03_losses"] and ".backward()" not in code["03_losses"]


def _parameters(name, world, clip, tmp, cache):
    common = {"quick": True, "root": str(world)}
    return {
        "01_world_and_sampling": common,
        "02_model_step_by_step": {**common, "clip": str(clip), "run_dir": str(tmp / "no-run")},
        "03_losses": {**common, "clip": str(clip), "out": str(tmp / "runs"), "cache": str(cache)},
        "04_train_and_evaluate": {**common, "clip": str(clip), "out": str(tmp / "runs"), "cache": str(cache)},
        "05_efficiency": {**common, "bench_json": str(tmp / "missing" / "bench.json")},
        # its own small scenes world, made by the notebook (tutorial.setup) in the test's folder
        "06_why_local_queries": {"quick": True, "root": str(tmp / "world-scenes"), "out": str(tmp / "runs")},
    }[name]


def _outputs(nb):
    """(all text shown: streams, markdown, html and plain text; number of PNG figures; stderr text)."""
    texts, figures, stderr = [], 0, []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                texts.append(out["text"])
                if out.get("name") == "stderr":
                    stderr.append(out["text"])
            data = out.get("data", {})
            if "image/png" in data:
                assert len(base64.b64decode(data["image/png"])) > 1000
                figures += 1
            texts += [data[k] for k in ("text/plain", "text/markdown", "text/html") if k in data]
    return "\n".join(texts), figures, "".join(stderr)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One feature cache for the tutorials that train (03 builds it, 04 reuses it)."""
    return tmp_path_factory.mktemp("tutorial-cache")


@pytest.fixture(scope="module")
def executed(tiny_world, tiny_clip, tmp_path_factory, shared_cache):
    """name -> the executed notebook (run once per module, at quick settings)."""
    done = {}

    def execute(name):
        if name not in done:
            tmp = tmp_path_factory.mktemp(name)
            out = tmp / f"{name}.ipynb"
            pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out),
                                parameters=_parameters(name, tiny_world, tiny_clip, tmp, shared_cache),
                                kernel_name="python3", cwd=str(NOTEBOOKS), progress_bar=False, log_output=False,
                                execution_timeout=240)
            done[name] = (nbformat.read(out, as_version=4), tmp)
        return done[name]
    return execute


@pytest.mark.slow
@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorial_runs_at_quick_settings(name, executed):
    nb, tmp = executed(name)
    text, figures, stderr = _outputs(nb)
    assert figures >= MIN_FIGURES[name], f"{name}: {figures} figures"
    for fact in MUST_PRINT[name]:
        assert fact in text, f"{name}: {fact!r} not in the outputs"
    assert CHECKED in text, f"{name}: no checked claim was shown"
    assert "Traceback" not in text
    assert text.count('class="glscl-static"') >= WIDGETS.get(name, 0), f"{name}: a widget without its static copy"
    if name == "04_train_and_evaluate":
        assert (tmp / "runs" / "glscl" / "metrics.json").is_file()


@pytest.mark.slow
def test_training_notebook_writes_no_traceback_to_stderr(executed):
    """04 trains with DataLoader worker processes; its export must not carry their tracebacks."""
    nb, _ = executed("04_train_and_evaluate")
    _, _, stderr = _outputs(nb)
    assert "Traceback" not in stderr and "can only test a child process" not in stderr, stderr[:2000]


def test_split_encoder_starts_one_set_of_workers(tiny_world, tiny_clip, monkeypatch):
    """The root cause of those tracebacks: a progress bar given the DataLoader itself (tqdm.auto's
    asyncio base calls iter() on it) started a second, unused set of workers, left for the garbage
    collector, which in Jupyter may run inside the forked workers of the next loader."""
    from torch.utils.data import dataloader

    from glscl.config import build_config
    from glscl.data import load_split
    from glscl.data.features import backbone_videos
    from glscl.engine.run import load_backbone

    started = []
    init = dataloader._MultiProcessingDataLoaderIter.__init__
    monkeypatch.setattr(dataloader._MultiProcessingDataLoaderIter, "__init__",
                        lambda self, loader: (started.append(self), init(self, loader))[1])
    cfg = build_config("embedded-short", {"data.root": str(tiny_world), "model.pretrained": str(tiny_clip)})
    split = load_split(cfg.data, "test")
    backbone, _ = load_backbone(cfg, {})
    for progress in (None, "a bar"):
        started.clear()
        blocks = list(backbone_videos(backbone, split, cfg.model.num_frames, batch_size=4, num_workers=2, progress=progress))
        assert sum(len(f) for f, _ in blocks) == split.num_videos
        assert len(started) == 1, f"{len(started)} worker sets started for one pass (progress={progress!r})"
        assert started[0]._shutdown, "the pass ends with its workers shut down"


@pytest.mark.slow
def test_a_planted_contradiction_stops_a_tutorial(tmp_path):
    """05 with one checked sentence made false (GLSCL's per-pair cost said to be 2Td + 2T² + 4Kd): the run
    stops at that sentence, so a tutorial whose text drifts from what it computes fails its test."""
    nb = _read("05_efficiency")
    cell = next(c for c in nb.cells if "2 * T * d + 2 * T * T + 2 * K * d" in c.source)
    cell.source = cell.source.replace("2 * K * d", "4 * K * d").replace("2Kd", "4Kd")
    planted = tmp_path / "planted.ipynb"
    nbformat.write(nb, planted)
    with pytest.raises(pm.PapermillExecutionError, match=r"no longer holds: per pair, GLSCL costs 2Td \+ 2T² \+ 4Kd"):
        pm.execute_notebook(str(planted), str(tmp_path / "out.ipynb"), parameters={"quick": True},
                            kernel_name="python3", cwd=str(NOTEBOOKS), progress_bar=False, log_output=False,
                            execution_timeout=240)


@pytest.mark.slow
def test_a_planted_findings_table_stops_the_training_tutorial(tiny_world, tiny_clip, tmp_path, shared_cache):
    """04 quotes the separately trained heads from the findings data and checks that the page says the same:
    a results table changed after the page was rendered (local only made 3 points better) stops the run."""
    import shutil

    import pandas as pd

    planted = tmp_path / "default-objects"
    shutil.copytree(NOTEBOOKS.parent / "docs" / "findings" / "default-objects", planted)
    table = pd.read_csv(planted / "results.csv")
    local = table["interaction"] == "local"
    table.loc[local, "t2v_R@1"] = table.loc[local, "t2v_R@1"] + 3.0
    table.to_csv(planted / "results.csv", index=False)
    parameters = {**_parameters("04_train_and_evaluate", tiny_world, tiny_clip, tmp_path, shared_cache), "findings": str(planted)}
    with pytest.raises(pm.PapermillExecutionError, match="no longer holds: the findings page"):
        pm.execute_notebook(str(NOTEBOOKS / "04_train_and_evaluate.ipynb"), str(tmp_path / "out.ipynb"), parameters=parameters,
                            kernel_name="python3", cwd=str(NOTEBOOKS), progress_bar=False, log_output=False,
                            execution_timeout=240)


# -- the report notebook -------------------------------------------------------------------------------

def _synthetic_grid(folder: Path, ks=(4, 8)):
    """A grid folder (grid.yaml + results.csv) of interaction x K with global-only runs, K not applying to them."""
    import pandas as pd
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "grid.yaml").write_text(yaml.safe_dump({
        "description": "synthetic", "base": "embedded", "seeds": [0, 1],
        "vary": {"model.interaction": ["global", "local", "both"], "model.num_queries": list(ks)},
        "irrelevant": [{"when": {"model.interaction": "global"}, "keys": ["model.num_queries"]}],
        "reference": {"model.interaction": "global"}}))
    rows = []
    for seed in (0, 1):
        rows.append({"run_id": f"interaction=global,seed={seed}", "status": "ok", "interaction": "global", "num_queries": None,
                     "seed": seed, "t2v_R@1": 20.0 + seed, "v2t_R@1": 19.0, "twin_accuracy": 60.0, "best_val_score": 100.0})
        for mode in ("local", "both"):
            for k in ks:
                rows.append({"run_id": f"interaction={mode},num_queries={k},seed={seed}", "status": "ok", "interaction": mode,
                             "num_queries": k, "seed": seed, "t2v_R@1": 25.0 + k / 4 + seed, "v2t_R@1": 24.0,
                             "twin_accuracy": 55.0, "best_val_score": 110.0 + k})
    for row in rows:
        row.update({"t2v_R@1_lo": row["t2v_R@1"] - 3.0, "t2v_R@1_hi": row["t2v_R@1"] + 3.0})
    pd.DataFrame(rows).to_csv(folder / "results.csv", index=False)


def test_report_bars_keep_the_runs_a_key_does_not_apply_to(tmp_path, monkeypatch):
    """Two values of K: one bar per configuration, the global-only one included, and no '<NA>' anywhere."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.text import Text

    from glscl.lab.grids import figures
    from glscl.lab.grids.runner import read_table

    _synthetic_grid(tmp_path / "grid")
    table, spec = read_table(tmp_path / "grid")
    drawn = []
    monkeypatch.setattr(figures, "save", lambda fig, out, name: drawn.append((name, fig)) or [])
    figures.figures_for_grid(table, spec, tmp_path / "figures")
    assert drawn
    configs = 1 + 2 * 2                                   # global-only, then {local, both} x {4, 8}
    for name, fig in drawn:
        texts = [t.get_text() for t in fig.findobj(Text)]
        assert not any("<NA>" in t or t == "nan" for t in texts), (name, texts)
        for ax in fig.axes:
            bars = [p for c in ax.containers for p in getattr(c, "patches", [])]
            if bars:
                assert len(bars) == configs, (name, len(bars))
    # a key missing for some runs is its own level when it is the grouping key too
    fig = figures.bar_plot(table, "interaction", "num_queries")
    legend = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert "—" in legend and "<NA>" not in legend
    assert sum(len(c.patches) for c in fig.axes[0].containers if hasattr(c, "patches")) == configs


@pytest.mark.slow
def test_report_notebook_runs_on_a_grid_folder(tmp_path):
    _synthetic_grid(tmp_path / "grid")
    out = tmp_path / "report.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / "report.ipynb"), str(out), parameters={"grid_dir": str(tmp_path / "grid")},
                        kernel_name="python3", cwd=str(NOTEBOOKS), progress_bar=False, log_output=False, execution_timeout=120)
    text, figures, _ = _outputs(nbformat.read(out, as_version=4))
    assert figures >= 1 and "<NA>" not in text and "Highest test mean" in text
    assert "median half-width of 3.0 points" in text
    assert "Resolution (t2v_R@1, paired by seed with the reference)" in text
    # t2v R@1 = 25 + K / 4 + seed for both modes: K = 8 beats K = 4 by exactly 1 point in each seed
    assert "K=8 minus K=4, paired by seed: 1.0 ± 0.0 points (n=2; the interval excludes 0)" in text
    assert list((tmp_path / "grid" / "figures").glob("*.png"))
