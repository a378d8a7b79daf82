"""The tutorials: committed without outputs, and each runs top to bottom with papermill at quick settings.

Every notebook gets the session's tiny world and tiny CLIP (conftest) and writes only under a
temporary folder. The executed copies are checked for figures and for the facts they print.
"""
import base64
from pathlib import Path

import pytest

pm = pytest.importorskip("papermill")
nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TUTORIALS = ("01_world_and_sampling", "02_model_step_by_step", "03_losses", "04_train_and_evaluate", "05_efficiency")
KERNELSPEC = {"name": "python3", "language": "python", "display_name": "Python 3"}

# figures each tutorial must draw at quick settings, and text its outputs must contain
MIN_FIGURES = {"01_world_and_sampling": 7, "02_model_step_by_step": 6, "03_losses": 3, "04_train_and_evaluate": 4,
               "05_efficiency": 3}
MUST_PRINT = {
    "01_world_and_sampling": ["twin = the clip played backwards: True", "padded frames are exactly zero: True"],
    "02_model_step_by_step": ["S == S_g + lambda S_l: True", "c^v (6, 8, 64)"],
    "03_losses": ["16 pairs"],
    "04_train_and_evaluate": ["S matches test_similarity.pt: True", "rank of the caption's own video"],
    "05_efficiency": ["source: the quick bench just run"],
}


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
    assert "quick = False" in params[0].source and 'root = "data/world"' in params[0].source
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "import" in code and "from glscl" in code
    assert "class " not in code, "tutorials import the method from the package; they do not define it"


def _parameters(name, world, clip, tmp):
    common = {"quick": True, "root": str(world)}
    return {
        "01_world_and_sampling": common,
        "02_model_step_by_step": {**common, "clip": str(clip), "run_dir": str(tmp / "no-run")},
        "03_losses": {**common, "clip": str(clip)},
        "04_train_and_evaluate": {**common, "clip": str(clip), "out": str(tmp / "runs"), "cache": str(tmp / "cache")},
        "05_efficiency": {**common, "bench_json": str(tmp / "missing" / "bench.json"), "out": str(tmp / "bench")},
    }[name]


def _outputs(nb):
    texts, figures = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                texts.append(out["text"])
            data = out.get("data", {})
            if "image/png" in data:
                assert len(base64.b64decode(data["image/png"])) > 1000
                figures += 1
            if "text/plain" in data:
                texts.append(data["text/plain"])
    return "\n".join(texts), figures


@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorial_runs_at_quick_settings(name, tiny_world, tiny_clip, tmp_path):
    out = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), parameters=_parameters(name, tiny_world, tiny_clip, tmp_path),
                        kernel_name="python3", cwd=str(NOTEBOOKS), progress_bar=False, log_output=False,
                        execution_timeout=240)
    text, figures = _outputs(nbformat.read(out, as_version=4))
    assert figures >= MIN_FIGURES[name], f"{name}: {figures} figures"
    for fact in MUST_PRINT[name]:
        assert fact in text, f"{name}: {fact!r} not in the outputs"
    assert "Traceback" not in text
    if name == "04_train_and_evaluate":
        assert (tmp_path / "runs" / "glscl" / "metrics.json").is_file()
    if name == "05_efficiency":
        assert (tmp_path / "bench" / "bench.json").is_file()
