"""Training engine: results folder, resume equivalence, non-finite guard, cache behaviour, the split
encoder, loading a run, CLI."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_run_config
from safetensors.torch import load_file

from glscl import losses as losses_module
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
    # one record of the run: metrics.json, written last, holds what run() returned; no other file holds metrics
    assert sorted(p.name for p in d.glob("*.json")) == ["environment.json", "fingerprint.json", "metrics.json"]
    assert json.loads((d / "metrics.json").read_text()) == json.loads(json.dumps(record)) and record["status"] == "ok"
    assert (d / "metrics.json").stat().st_mtime_ns >= max(p.stat().st_mtime_ns for p in d.rglob("*") if p.is_file())
    metrics = pd.read_json(d / "metrics.json", typ="series")
    assert metrics["eval_split"] == "test" and metrics["selected_on"] == "val"
    assert 0 <= metrics["t2v_R@1"] <= 100 and metrics["t2v_MdR"] >= 1
    env = json.loads((d / "environment.json").read_text())
    assert env["checkpoint_selected_on"] == "val" and env["processes"] == 1 and env["global_batch"] == 8
    curve = pd.read_csv(d / "curve.csv")
    assert list(curve["epoch"]) == [1, 2] and "val_t2v_R@1" in curve and "train_loss" in curve
    assert record["train_steps"] == 2 * (32 // 8)


def test_same_seed_and_threads_give_bit_identical_results(tiny_world, tiny_clip, tmp_path):
    """Two runs of one config, each building its own feature cache, at this process's thread count:
    every weight and every metric equal bit for bit (timings aside). Other thread counts change the
    order of float sums, so they agree only within seed noise (benchmarks/bench_threads.py)."""
    records = []
    for name in ("a", "b"):
        cfg = tiny_run_config(tiny_world, tiny_clip, tmp_path / name, cache_dir=tmp_path / f"cache-{name}")
        records.append({k: v for k, v in run(cfg, progress=False).items() if not k.endswith("_s")})
    assert records[0] == records[1] and records[0]["t2v_R@1"] >= 0
    wa, wb = (_weights(tmp_path / n / "tiny" / "checkpoints" / "best") for n in ("a", "b"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # another seed: other weights (the comparison above can fail)
    run(tiny_run_config(tiny_world, tiny_clip, tmp_path / "c", cache_dir=tmp_path / "cache-a", seed=2), progress=False)
    wc = _weights(tmp_path / "c" / "tiny" / "checkpoints" / "best")
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


@pytest.mark.slow
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


@pytest.mark.slow
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
    real = losses_module.glscl_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 6:  # second epoch (4 steps per epoch)
            out["loss"] = out["loss"] * float("nan")
        return out
    monkeypatch.setattr(losses_module, "glscl_loss", poisoned)  # what create_loss's GLSCL loss calls
    with pytest.raises(NonFiniteLossError, match="non-finite loss .* at step 5 .*checkpoints/last"):
        run(cfg, progress=False)
    state = torch.load(tmp_path / "runs" / "tiny" / "checkpoints" / "last" / "train_state.pt", weights_only=True)
    assert state["epoch"] == 1 and state["step"] == 4
    weights = _weights(tmp_path / "runs" / "tiny" / "checkpoints" / "last")
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_cache_hit_miss_and_invalidation(tiny_world, tiny_clip, tmp_path):
    import dataclasses

    from safetensors.torch import load_file, save_file

    from glscl.config import DataConfig, ModelConfig
    from glscl.data import load_split
    from glscl.data.cache import build_cache, cache_key, weights_identity
    from glscl.model.backbone import create_backbone

    split = load_split(DataConfig(dataset="world", root=str(tiny_world)), "test")
    model = ModelConfig(backbone="glscl-tiny", num_frames=8, compact_vocab=False)

    def key(m, clip):
        return cache_key(m, 1.0, split, weights_identity(str(clip), tmp_path), "")

    b = create_backbone("glscl-tiny", str(tiny_clip))
    c1 = build_cache(b, split, tmp_path, key(model, tiny_clip), num_frames=8, num_workers=0, progress=False)
    assert c1.folder.name == f"world-test-{key(model, tiny_clip)}"
    mtime = (c1.folder / "frames.npy").stat().st_mtime_ns
    c2 = build_cache(b, split, tmp_path, key(model, tiny_clip), num_frames=8, num_workers=0, progress=False)  # hit
    assert c2.folder == c1.folder and (c2.folder / "frames.npy").stat().st_mtime_ns == mtime  # not rewritten
    four = dataclasses.replace(model, num_frames=4)
    assert build_cache(b, split, tmp_path, key(four, tiny_clip), num_frames=4, num_workers=0,
                       progress=False).folder != c1.folder  # sampling
    weights = load_file(str(tiny_clip))
    weights["visual.conv1.weight"] = weights["visual.conv1.weight"] + 0.01
    changed = tmp_path / "changed.safetensors"
    save_file(weights, str(changed))  # weights changed -> miss
    b = create_backbone("glscl-tiny", str(changed))
    c3 = build_cache(b, split, tmp_path, key(model, changed), num_frames=8, num_workers=0, progress=False)
    assert c3.folder != c1.folder and not np.array_equal(c3.frames, c1.frames)
    # cached features equal a direct encoding of the decoded clip
    from glscl.data.video import ClipTransform, load_clip
    frames, mask = load_clip(split.video_paths[0], 8)
    x = ClipTransform.for_backbone(b)(frames, mask)
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


@pytest.mark.slow
def test_demo_quick_prints_the_table(tmp_path):
    r = subprocess.run([sys.executable, "-m", "glscl.cli", "demo", "--quick", "--no-progress", "--root", str(tmp_path / "w"),
                        "--out", str(tmp_path / "runs")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    for label in ("scenes world", "GLSCL", "global only", "mean pooling", "t2v R@1", "R@1 while",
                  "global weight on captioned frames", "segments the queries cover"):
        assert label in r.stdout
    results = json.loads((tmp_path / "runs" / "results.json").read_text())
    assert [x["label"] for x in results] == ["GLSCL", "global only", "mean pooling"]
    assert [(x["head"], x["interaction"]) for x in results] == [("glscl", "both"), ("glscl", "global"), ("mean_pooling", "both")]
    assert [x["name"] for x in results] == ["glscl", "global", "mean"]


@pytest.mark.slow
def test_demo_on_the_objects_world_prints_twin_accuracy(tmp_path):
    r = subprocess.run([sys.executable, "-m", "glscl.cli", "demo", "--world", "objects", "--quick", "--no-progress",
                        "--root", str(tmp_path / "w"), "--out", str(tmp_path / "runs")], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "objects world" in r.stdout and "twin acc" in r.stdout and "segments the queries cover" not in r.stdout
    assert json.loads((tmp_path / "w" / "world.json").read_text())["config"]["kind"] == "objects"


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


# -- the split encoder -------------------------------------------------------------------------------

def _small_model_cfg(head):
    from glscl.config import ModelConfig
    return ModelConfig(head=head, num_frames=6, temporal_layers=1, temporal_heads=2, num_queries=3, decoder_layers=1,
                       decoder_heads=2, vtc_dim=4, dropout=0.1)


@pytest.mark.parametrize("head_name", ["glscl", "mean_pooling", "vtc"])
def test_split_encoder_gives_the_similarity_of_the_heads_forward(head_name):
    """Blocks of texts and videos, each encoded once, scored block by block: S of one forward pass on the whole batch."""
    from types import SimpleNamespace

    from glscl.engine.evaluate import evaluate_cached
    from glscl.model.factory import create_head

    torch.manual_seed(0)
    n, m, t, length, d = 7, 5, 6, 5, 8
    sentence, tokens = torch.randn(n, d), torch.randn(n, length, d)
    token_mask = torch.arange(length)[None] < torch.randint(2, length + 1, (n, 1))
    frame_mask = torch.arange(t)[None] < torch.randint(1, t + 1, (m, 1))
    frames = torch.randn(m, t, d) * frame_mask[..., None]
    head = create_head(_small_model_cfg(head_name), d).train()   # the encoder must switch dropout off itself
    cache = SimpleNamespace(sentence=sentence.numpy(), tokens=tokens.half().numpy(), token_mask=token_mask.numpy(),
                            frames=frames.half().numpy(), frame_mask=frame_mask.numpy(),
                            caption_video=np.arange(n) % m)
    sim, metrics = evaluate_cached(head, cache, batch_size=2)
    assert not head.training
    with torch.no_grad():
        expected, _, _ = head(sentence, tokens.half().float(), token_mask, frames.half().float(), frame_mask)
    assert sim.shape == (n, m) and torch.allclose(sim, expected, atol=1e-5)
    assert metrics["t2v_R@1"] == pytest.approx(100 * np.mean([(expected[i] > expected[i, i % m]).sum().item() == 0
                                                               for i in range(n)]))


def test_end_to_end_split_encoder_matches_the_models_forward(tiny_world, tiny_clip):
    """evaluate_decoded (texts tokenized once, videos decoded and encoded in blocks) = Retriever.forward on the split."""
    from glscl.config import DataConfig, build_config
    from glscl.data import load_split
    from glscl.data.dataset import ClipDataset
    from glscl.data.video import ClipTransform
    from glscl.engine.evaluate import evaluate_decoded
    from glscl.engine.pretrain import world_vocab
    from glscl.model.factory import create_model

    split = load_split(DataConfig(dataset="world", root=str(tiny_world)), "test")
    cfg = build_config("embedded", {"model.pretrained": str(tiny_clip), "model.num_queries": 4})
    torch.manual_seed(0)
    model = create_model(cfg.model, vocab=world_vocab(tiny_world, cfg.model.max_words))
    sim, _ = evaluate_decoded(model, split, cfg.model.num_frames, batch_size=3)
    ds = ClipDataset(split, cfg.model.num_frames, ClipTransform.for_backbone(model.backbone))
    items = [ds[i] for i in range(len(ds))]
    with torch.no_grad():
        expected, _, _ = model(model.backbone.tokenizer(list(split.captions)), torch.stack([x["pixels"] for x in items]),
                               torch.stack([x["frame_mask"] for x in items]))
    assert sim.shape == (split.num_captions, split.num_videos) and torch.allclose(sim, expected, atol=1e-5)


# -- loading a run -----------------------------------------------------------------------------------

def test_load_run_of_a_glscl_run_from_another_folder(tiny_world, tiny_clip, tmp_path, monkeypatch):
    """A run started with relative paths loads from anywhere: its head, backbone and S on test are the run's."""
    from glscl.engine.evaluate import evaluate_cached
    from glscl.engine.loading import load_run
    from glscl.model.glscl import GLSCL

    (tmp_path / "world").symlink_to(tiny_world)
    monkeypatch.chdir(tmp_path)
    cfg = tiny_run_config("world", tiny_clip, "runs", cache_dir="cache", epochs=1)
    run(cfg, progress=False)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    loaded = load_run(tmp_path / "runs" / "tiny")
    assert isinstance(loaded.head, GLSCL) and loaded.cached and not loaded.head.training
    assert loaded.config.data.root == str(tmp_path / "world") and loaded.config.data.cache_dir == str(tmp_path / "cache")
    assert loaded.config.out_dir == "runs" and loaded.vocab is not None and loaded.backbone.tokenizer.vocab == loaded.vocab
    saved = load_file(str(tmp_path / "runs" / "tiny" / "checkpoints" / "best" / "model.safetensors"))
    state = loaded.head.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    from glscl.data import load_split
    from glscl.engine.run import build_caches
    test = build_caches(loaded.config, loaded.backbone, {"test": load_split(loaded.config.data, "test")}, progress=False)["test"]
    sim, _ = evaluate_cached(loaded.head, test)
    assert torch.allclose(sim, torch.load(tmp_path / "runs" / "tiny" / "test_similarity.pt", weights_only=True), atol=1e-6)


def test_load_run_of_a_vtc_run(tiny_world, tiny_clip, tmp_path):
    from glscl.config import build_config
    from glscl.engine.evaluate import evaluate_cached
    from glscl.engine.loading import load_run
    from glscl.model.vtc import VTCHead

    cfg = build_config(tiny_run_config(tiny_world, tiny_clip, tmp_path / "runs", cache_dir=tmp_path / "cache", epochs=1),
                       {"model.head": "vtc", "model.vtc_dim": 16})
    run(cfg, progress=False)
    loaded = load_run(tmp_path / "runs" / "tiny")
    assert isinstance(loaded.head, VTCHead) and loaded.config == cfg and loaded.head.text_proj.out_features == 16
    saved = load_file(str(tmp_path / "runs" / "tiny" / "checkpoints" / "best" / "model.safetensors"))
    assert torch.equal(loaded.head.temperature.detach(), saved["temperature"])
    from glscl.data.cache import FeatureCache
    folder = next(p.parent for p in (tmp_path / "cache").glob("world-test-*/meta.json"))
    sim, _ = evaluate_cached(loaded.head, FeatureCache.open(folder))
    assert torch.allclose(sim, torch.load(tmp_path / "runs" / "tiny" / "test_similarity.pt", weights_only=True), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        load_run(tmp_path / "runs" / "missing")


# -- the results folder: which config made it, reruns, overwrite ---------------------------------------

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One feature cache for the tests below (its folders are keyed by content, so sharing is safe)."""
    return tmp_path_factory.mktemp("shared-cache")


def test_fingerprint_ignores_only_the_fields_that_do_not_change_results(tiny_world, tiny_clip, tmp_path):
    from glscl.config import build_config
    from glscl.engine.fingerprint import NOT_FINGERPRINTED, fingerprint, fingerprint_fields

    cfg = tiny_run_config(tiny_world, tiny_clip, tmp_path / "runs", cache_dir=tmp_path / "cache")
    assert set(NOT_FINGERPRINTED) == {"name", "out_dir", "device", "data.num_workers",
                                      "reference.source", "reference.t2v", "reference.v2t"}
    same = build_config(cfg, {"name": "other", "out_dir": "elsewhere", "device": "auto", "data.num_workers": 7,
                              "data.cache_dir": str(tmp_path / "another-cache"), "reference.source": "a paper",
                              "reference.t2v": [40.0, None, None, None, None]})
    assert fingerprint(same) == fingerprint(cfg)
    for key, value in {"model.num_queries": 2, "train.lr": 0.5, "data.root": "x", "data.cache_dir": None,
                       "loss.variant": "released", "train.eval_every": 2, "data.video_ext": ".avi"}.items():
        assert fingerprint(build_config(cfg, {key: value})) != fingerprint(cfg), key
    fields = fingerprint_fields(cfg)
    assert fields["data.cache_dir"] is True and "name" not in fields and fields["model.num_queries"] == 4
    # every config field is fingerprinted except the four left out
    from glscl.config import describe
    assert set(fields) == {name for name, _, _ in describe()} - set(NOT_FINGERPRINTED)


def test_rerun_resumes_only_the_same_config(tiny_world, tiny_clip, tmp_path, cache):
    from glscl.config import build_config
    from glscl.engine.results_folder import RunFolderError

    cfg = tiny_run_config(tiny_world, tiny_clip, tmp_path / "runs", cache_dir=cache, epochs=1)
    d = tmp_path / "runs" / "tiny"
    first = run(cfg, progress=False)
    stored = json.loads((d / "fingerprint.json").read_text())
    from glscl.engine.fingerprint import fingerprint
    assert stored["fingerprint"] == fingerprint(cfg) and stored["fields"]["train.epochs"] == 1
    files = {p: p.read_bytes() for p in (d / "checkpoints").rglob("*") if p.is_file()}
    # the same config again: nothing retrained, the training time of the first run kept
    again = run(build_config(cfg, {"device": "auto", "data.num_workers": 1}), progress=False)
    assert again["train_s"] == first["train_s"] and again["t2v_R@1"] == first["t2v_R@1"]
    assert all(p.read_bytes() == b for p, b in files.items())
    # another config: refused before anything is written, naming old -> new
    with pytest.raises(RunFolderError) as e:
        run(build_config(cfg, {"train.lr": 0.5, "loss.icl_weight": 0.3}), progress=False)
    assert str(e.value).count("\n") == 0
    assert "loss.icl_weight: 0.1 -> 0.3" in str(e.value) and "train.lr: 0.001 -> 0.5" in str(e.value)
    assert all(p.read_bytes() == b for p, b in files.items())
    # a folder written before fingerprints existed: the config of its checkpoints decides
    (d / "fingerprint.json").unlink()
    (d / "config.yaml").write_text((d / "config.yaml").read_text().replace("lr: 0.001", "lr: 0.5"))
    with pytest.raises(RunFolderError, match=r"train\.lr: 0\.001 -> 0\.5"):
        run(build_config(cfg, {"train.lr": 0.5}), progress=False)
    # overwrite: the old folder is renamed, byte for byte, and the new config trains
    new = run(build_config(cfg, {"train.lr": 0.5}), progress=False, overwrite=True)
    old = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("tiny.old-")]
    assert len(old) == 1 and all((old[0] / p.relative_to(d)).read_bytes() == b for p, b in files.items())
    assert new["train_steps"] == 32 // 8 and json.loads((d / "fingerprint.json").read_text())["fields"]["train.lr"] == 0.5


def test_a_field_added_later_at_its_default_counts_as_unchanged(tiny_world, tiny_clip, tmp_path, cache):
    from glscl.config import build_config
    from glscl.engine.results_folder import RunFolderError

    cfg = tiny_run_config(tiny_world, tiny_clip, tmp_path / "runs", cache_dir=cache, epochs=1)
    run(cfg, progress=False)
    path = tmp_path / "runs" / "tiny" / "fingerprint.json"
    record = json.loads(path.read_text())
    del record["fields"]["data.video_ext"]  # as if written before data.video_ext existed
    path.write_text(json.dumps(record))
    with pytest.raises(RunFolderError, match=r"data\.video_ext: \(not recorded\) -> '\.avi'"):
        run(build_config(cfg, {"data.video_ext": ".avi"}), progress=False)
    run(cfg, progress=False)  # at its default: the same run, resumed (and the record completed)
    assert json.loads(path.read_text())["fields"]["data.video_ext"] is None


def test_no_resume_starts_over_and_keeps_the_old_folder(tiny_world, tiny_clip, tmp_path, cache):
    cfg = tiny_run_config(tiny_world, tiny_clip, tmp_path / "runs", cache_dir=cache, epochs=1)
    run(cfg, progress=False)
    metrics = (tmp_path / "runs" / "tiny" / "metrics.json").read_bytes()
    run(cfg, progress=False, resume=False)
    old = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("tiny.old-")]
    assert len(old) == 1 and (old[0] / "metrics.json").read_bytes() == metrics


def test_failed_validation_loses_no_finished_epoch(tiny_world, tiny_clip, tmp_path, monkeypatch, cache):
    """Validation fails after epoch 2: checkpoints/last holds epoch 2; the rerun validates it first and
    ends exactly where an uninterrupted run ends."""
    import glscl.engine.run as run_module
    from glscl.data.video import VideoError

    a = tiny_run_config(tiny_world, tiny_clip, tmp_path / "a", cache_dir=cache, epochs=3)
    ra = run(a, progress=False)
    b = tiny_run_config(tiny_world, tiny_clip, tmp_path / "b", cache_dir=cache, epochs=3)
    real, calls = run_module.evaluate_cached, {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise VideoError("val.mp4: cannot be opened as a video")
        return real(*args, **kwargs)
    monkeypatch.setattr(run_module, "evaluate_cached", flaky)
    with pytest.raises(VideoError):
        run(b, progress=False)
    state = torch.load(tmp_path / "b" / "tiny" / "checkpoints" / "last" / "train_state.pt", weights_only=True)
    assert state["epoch"] == 2 and state["pending_validation"] and len(json.loads(state["curve"])) == 2
    monkeypatch.setattr(run_module, "evaluate_cached", real)
    rb = run(b, progress=False)
    for which in ("last", "best"):
        wa, wb = _weights(tmp_path / "a" / "tiny" / "checkpoints" / which), _weights(tmp_path / "b" / "tiny" / "checkpoints" / which)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), which
    assert rb["best_val_score"] == ra["best_val_score"] and rb["t2v_R@1"] == ra["t2v_R@1"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "tiny" / "curve.csv").drop(columns=["clips_per_s", "data_wait_share"]),
                                  pd.read_csv(tmp_path / "b" / "tiny" / "curve.csv").drop(columns=["clips_per_s", "data_wait_share"]))
