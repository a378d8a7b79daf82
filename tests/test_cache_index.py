"""Feature cache keys: a cached run whose caches are built never creates the backbone, gives the same results as
the run that built them, finds caches an earlier version built, and misses when the checkpoint's bytes change."""
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
    run(tiny_run_config(tiny_world, tiny_clip, tmp_path / "a", cache_dir=cache), progress=False)  # builds the caches
    folders = sorted(p.name for p in cache.iterdir() if p.name != "sources")
    assert [f.rsplit("-", 1)[0] for f in folders] == ["world-test", "world-train", "world-val"]
    assert sorted(p.name for p in (cache / "sources").iterdir()) == ["files.json"]  # the digest memo, no index
    meta = json.loads(next(p for p in cache.iterdir() if p.name.startswith("world-train")).joinpath("meta.json").read_text())
    clip = load_file(str(tiny_clip))
    assert meta["width"] == clip["text_projection"].shape[1]
    assert meta["logit_scale"] == pytest.approx(float(clip["logit_scale"]))

    # the route that creates the backbone on built caches (as a run that must build one of them does)
    monkeypatch.setattr(run_module, "find_caches", lambda cfg, splits: None)
    torch.manual_seed(0)
    run(tiny_run_config(tiny_world, tiny_clip, tmp_path / "b", cache_dir=cache), progress=False)
    monkeypatch.undo()
    assert sorted(p.name for p in cache.iterdir() if p.name != "sources") == folders  # found, not rebuilt
    # the route that finds them: creating the backbone fails the run
    monkeypatch.setattr(run_module, "create_backbone", _no_backbone)
    monkeypatch.setattr(run_module, "load_backbone", _no_backbone)
    torch.manual_seed(1)  # whatever ran before: the run draws from its own seed
    run(tiny_run_config(tiny_world, tiny_clip, tmp_path / "c", cache_dir=cache), progress=False)
    (mb, sb), (mc, sc) = _outputs(tmp_path / "b"), _outputs(tmp_path / "c")
    assert mb == mc
    assert torch.equal(sb, sc)
    wb = load_file(str(tmp_path / "b" / "tiny" / "checkpoints" / "best" / "model.safetensors"))
    wc = load_file(str(tmp_path / "c" / "tiny" / "checkpoints" / "best" / "model.safetensors"))
    assert wb.keys() == wc.keys() and all(torch.equal(wb[k], wc[k]) for k in wb)


def test_caches_of_an_earlier_version_are_found_through_its_index(tiny_world, tiny_clip, tmp_path, monkeypatch):
    """Earlier versions named a folder by another hash and wrote sources/<key>.json -> folder: still a hit."""
    cache = tmp_path / "cache"
    run(tiny_run_config(tiny_world, tiny_clip, tmp_path / "a", cache_dir=cache), progress=False)
    for folder in [p for p in cache.iterdir() if p.name != "sources"]:
        prefix, key = folder.name.rsplit("-", 1)
        old = folder.rename(cache / f"{prefix}-{'0' * 20}")
        (cache / "sources" / f"{key}.json").write_text(json.dumps({"folder": old.name}))
    monkeypatch.setattr(run_module, "load_backbone", _no_backbone)
    run(tiny_run_config(tiny_world, tiny_clip, tmp_path / "b", cache_dir=cache), progress=False)
    (ma, sa), (mb, sb) = _outputs(tmp_path / "a"), _outputs(tmp_path / "b")
    assert ma == mb and torch.equal(sa, sb)
    assert all(p.name.endswith("0" * 20) for p in cache.iterdir() if p.name != "sources")  # nothing rebuilt


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
