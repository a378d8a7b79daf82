"""Training engine: results folder, resume equivalence, non-finite guard, cache behaviour, CLI."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_run_config
from glscl.engine import train as train_module
from glscl.engine.run import run
from glscl.engine.train import NonFiniteLossError, warmup_cosine


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_results_folder_contents(tiny_world, tiny_clip, tmp_path):
    cfg = tiny_run_config(tiny_world, tiny_clip, tmp_path / "runs", cache_dir=tmp_path / "cache")
    record = run(cfg, progress=False)
    d = tmp_path / "runs" / "tiny"
    for name in ("config.yaml", "environment.json", "curve.csv", "metrics.json", "checkpoints/best/model.safetensors",
                 "checkpoints/last/train_state.pt", "checkpoints/best/config.yaml"):
        assert (d / name).is_file(), name
    metrics = pd.read_json(d / "metrics.json", typ="series")
    assert metrics["eval_split"] == "test" and metrics["selected_on"] == "val"
    assert 0 <= metrics["t2v_R@1"] <= 100 and metrics["t2v_MdR"] >= 1
    env = json.loads((d / "environment.json").read_text())
    assert env["checkpoint_selected_on"] == "val" and env["processes"] == 1 and env["global_batch"] == 8
    curve = pd.read_csv(d / "curve.csv")
    assert list(curve["epoch"]) == [1, 2] and "val_t2v_R@1" in curve and "train_loss" in curve
    assert record["train_steps"] == 2 * (32 // 8)


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tiny_world, tiny_clip, tmp_path):
    cache = tmp_path / "cache"
    a = tiny_run_config(tiny_world, tiny_clip, tmp_path / "a", cache_dir=cache, epochs=3)
    run(a, progress=False)
    b = tiny_run_config(tiny_world, tiny_clip, tmp_path / "b", cache_dir=cache, epochs=3)
    run(b, progress=False, stop_after_epoch=1)  # "killed" after one epoch
    partial = _weights(tmp_path / "b" / "tiny" / "checkpoints" / "last")
    run(b, progress=False)  # resumes from checkpoints/last
    wa, wb = _weights(tmp_path / "a" / "tiny" / "checkpoints" / "last"), _weights(tmp_path / "b" / "tiny" / "checkpoints" / "last")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], partial[k]) for k in wa)  # the resumed run did train further
    assert len(pd.read_csv(tmp_path / "b" / "tiny" / "curve.csv")) == 3


def test_end_to_end_resume_with_augmentation_matches(tiny_world, tiny_clip, tmp_path):
    a = tiny_run_config(tiny_world, tiny_clip, tmp_path / "a", epochs=2, batch_size=16)
    run(a, progress=False)
    b = tiny_run_config(tiny_world, tiny_clip, tmp_path / "b", epochs=2, batch_size=16)
    run(b, progress=False, stop_after_epoch=1)
    run(b, progress=False)
    wa, wb = _weights(tmp_path / "a" / "tiny" / "checkpoints" / "last"), _weights(tmp_path / "b" / "tiny" / "checkpoints" / "last")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # end to end: the backbone trained too
    first = load_file(str(tiny_clip))
    assert not torch.equal(wa["backbone.clip.visual.conv1.weight"], first["visual.conv1.weight"])


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_world, tiny_clip, tmp_path, monkeypatch):
    cfg = tiny_run_config(tiny_world, tiny_clip, tmp_path / "runs", cache_dir=tmp_path / "cache", epochs=3)
    real = train_module.glscl_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 6:  # second epoch (4 steps per epoch)
            out["loss"] = out["loss"] * float("nan")
        return out
    monkeypatch.setattr(train_module, "glscl_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="non-finite loss .* at step 5 .*checkpoints/last"):
        run(cfg, progress=False)
    state = torch.load(tmp_path / "runs" / "tiny" / "checkpoints" / "last" / "train_state.pt", weights_only=True)
    assert state["epoch"] == 1 and state["step"] == 4
    weights = _weights(tmp_path / "runs" / "tiny" / "checkpoints" / "last")
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_cache_hit_miss_and_invalidation(tiny_world, tiny_clip, tmp_path):
    from glscl.model.backbone import create_backbone
    from glscl.config import DataConfig
    from glscl.data import load_split
    from glscl.data.cache import build_cache

    split = load_split(DataConfig(dataset="world", root=str(tiny_world)), "test")
    b = create_backbone("glscl-tiny", str(tiny_clip))
    c1 = build_cache(b, split, tmp_path, num_frames=8, num_workers=0, progress=False)
    mtime = (c1.folder / "frames.npy").stat().st_mtime_ns
    c2 = build_cache(b, split, tmp_path, num_frames=8, num_workers=0, progress=False)  # hit: not rewritten
    assert c2.folder == c1.folder and (c2.folder / "frames.npy").stat().st_mtime_ns == mtime
    assert build_cache(b, split, tmp_path, num_frames=4, num_workers=0, progress=False).folder != c1.folder  # sampling
    with torch.no_grad():
        b.clip.visual.conv1.weight.add_(0.01)  # weights changed -> miss
    c3 = build_cache(b, split, tmp_path, num_frames=8, num_workers=0, progress=False)
    assert c3.folder != c1.folder and not np.array_equal(c3.frames, c1.frames)
    # cached features equal a direct encoding of the decoded clip
    from glscl.data.video import ClipTransform, load_clip
    frames, mask = load_clip(split.video_paths[0], 8)
    x = ClipTransform(b.image_size)(frames, mask)
    with torch.no_grad():
        direct = b.encode_frames(x[None])[0]
    assert torch.allclose(torch.from_numpy(np.array(c3.frames[0], dtype=np.float32)), direct, atol=2e-2)


def test_warmup_cosine_schedule_by_hand():
    f = warmup_cosine(100, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)


def test_cli_help_explains_every_option():
    out = subprocess.run([sys.executable, "-m", "glscl.cli", "train", "--help"], capture_output=True, text=True, check=True).stdout
    from glscl.config import describe
    for name, _, help_ in describe():
        assert name in out and help_.split()[0] in out
    top = subprocess.run([sys.executable, "-m", "glscl.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("world", "pretrain", "cache", "train", "eval", "bench", "demo"):
        assert cmd in top


def test_cli_config_error_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "glscl.cli", "train", "model.num_querys=4"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown config key 'model.num_querys'" in r.stderr


def test_demo_quick_prints_the_table(tmp_path):
    r = subprocess.run([sys.executable, "-m", "glscl.cli", "demo", "--quick", "--no-progress", "--root", str(tmp_path / "w"),
                        "--out", str(tmp_path / "runs")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    for label in ("GLSCL", "global only", "mean pooling", "t2v R@1", "twin acc"):
        assert label in r.stdout
    results = json.loads((tmp_path / "runs" / "results.json").read_text())
    assert [x["interaction"] for x in results] == ["both", "global", "mean"]


def test_corrupt_video_stops_with_one_line_error_or_is_skipped_and_counted(tiny_world, tiny_clip, tmp_path):
    import shutil

    world = tmp_path / "world"
    shutil.copytree(tiny_world, world)
    from glscl.data.world import load_world
    victim = next(v for v in load_world(world).videos if v.split == "train")
    path = world / "videos" / f"{victim.video_id}.mp4"
    path.write_bytes(path.read_bytes()[:300])  # truncated mp4
    cfg_path = tmp_path / "run.yaml"
    from glscl.config import save_config
    cfg = tiny_run_config(world, tiny_clip, tmp_path / "runs", cache_dir=tmp_path / "cache", epochs=1)
    save_config(cfg, cfg_path)
    r = subprocess.run([sys.executable, "-m", "glscl.cli", "train", "--config", str(cfg_path)], capture_output=True, text=True)
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("glscl train: error:") and victim.video_id in err
    r = subprocess.run([sys.executable, "-m", "glscl.cli", "train", "--config", str(cfg_path), "data.skip_bad=true"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    skipped = json.loads((tmp_path / "runs" / "tiny" / "skipped.json").read_text())
    assert len(skipped) == 1 and victim.video_id in skipped[0]["row"]
    assert json.loads((tmp_path / "runs" / "tiny" / "metrics.json").read_text())["skipped_items"] == 1
