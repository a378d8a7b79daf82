"""Feature cache source index: a cached run whose caches are built never creates the backbone, gives the
same results as the run that built them, and misses when the checkpoint's bytes change."""
import json
import subprocess
import sys

import pytest
import torch
from conftest import tiny_run_config
from safetensors.torch import load_file, save_file

import glscl.engine.run as run_module
from glscl.engine.run import run

SCORES = ("t2v_R@1", "t2v_R@5", "t2v_MnR", "v2t_R@1", "v2t_MnR", "best_val_score", "train_steps")


def _no_backbone(*args, **kwargs):
    raise AssertionError("the backbone was created")


def _outputs(out_dir):
    folder = out_dir / "tiny"
    record = json.loads((folder / "metrics.json").read_text())
    return {k: record[k] for k in SCORES}, torch.load(folder / "test_similarity.pt")


def test_second_run_finds_its_caches_without_the_backbone(tiny_world, tiny_clip, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    run(tiny_run_config(tiny_world, tiny_clip, tmp_path / "a", cache_dir=cache), progress=False)  # builds caches + index
    index = sorted(p.name for p in (cache / "sources").iterdir())
    assert "files.json" in index and not any(n.startswith("rng-") for n in index)
    assert len([n for n in index if n.endswith(".json") and n != "files.json"]) == 3  # train, val, test
    meta = json.loads(next(p for p in cache.iterdir() if p.name.startswith("world-train")).joinpath("meta.json").read_text())
    clip = load_file(str(tiny_clip))
    assert meta["width"] == clip["text_projection"].shape[1]
    assert meta["logit_scale"] == pytest.approx(float(clip["logit_scale"]))

    # today's route on a built cache: the backbone is created (index entries removed)
    for p in (cache / "sources").glob("*.json"):
        if p.name != "files.json":
            p.rename(p.with_suffix(".bak"))
    torch.manual_seed(0)
    run(tiny_run_config(tiny_world, tiny_clip, tmp_path / "b", cache_dir=cache), progress=False)
    # the index route: creating the backbone fails the run
    monkeypatch.setattr(run_module, "create_backbone", _no_backbone)
    monkeypatch.setattr(run_module, "load_backbone", _no_backbone)
    torch.manual_seed(0)
    run(tiny_run_config(tiny_world, tiny_clip, tmp_path / "c", cache_dir=cache), progress=False)
    (mb, sb), (mc, sc) = _outputs(tmp_path / "b"), _outputs(tmp_path / "c")
    assert mb == mc
    assert torch.equal(sb, sc)
    wb = load_file(str(tmp_path / "b" / "tiny" / "checkpoints" / "best" / "model.safetensors"))
    wc = load_file(str(tmp_path / "c" / "tiny" / "checkpoints" / "best" / "model.safetensors"))
    assert wb.keys() == wc.keys() and all(torch.equal(wb[k], wc[k]) for k in wb)


def test_changed_checkpoint_misses_the_index(tiny_world, tiny_clip, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    clip = tmp_path / "clip.safetensors"
    weights = load_file(str(tiny_clip))
    save_file(weights, str(clip))
    run(tiny_run_config(tiny_world, clip, tmp_path / "a", cache_dir=cache), progress=False)
    weights["logit_scale"] = weights["logit_scale"] + 0.5  # other bytes, same file name
    save_file(weights, str(clip))
    created = []
    original = run_module.load_backbone
    monkeypatch.setattr(run_module, "load_backbone", lambda *a, **k: created.append(1) or original(*a, **k))
    run(tiny_run_config(tiny_world, clip, tmp_path / "b", cache_dir=cache), progress=False)
    assert created == [1]
    metas = [json.loads((p / "meta.json").read_text()) for p in cache.iterdir() if p.name.startswith("world-train")]
    assert sorted(m["logit_scale"] for m in metas) == pytest.approx(sorted(
        [float(weights["logit_scale"]) - 0.5, float(weights["logit_scale"])]))


def test_importing_the_run_leaves_open_clip_unimported():
    code = "import sys, glscl.engine.run; assert 'open_clip' not in sys.modules, 'open_clip imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
