"""The benchmark presets and ``glscl data check`` on the five benchmarks' fixtures, clean and with planted faults.

The fixtures' placeholder videos are replaced by one real 12 s mp4; expected counts come from the
fixture constants (tests/fixtures_datasets.py).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from glscl.cli import main as glscl
from glscl.config import build_config
from glscl.data import annotated_split
from glscl.data.check import check_dataset
from glscl.data.world import write_mp4

try:  # pytest's default import mode puts tests/ itself on sys.path
    import fixtures_datasets as fx
except ImportError:
    from tests import fixtures_datasets as fx

BENCHMARKS = ("msrvtt", "msvd", "didemo", "lsmdc", "activitynet")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A real 12-second video at 1 fps."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    frames = np.repeat(np.linspace(0, 240, 12, dtype=np.uint8)[:, None, None, None], 32, axis=1)
    write_mp4(path, np.ascontiguousarray(np.broadcast_to(frames, (12, 32, 32, 3))), 1)
    return path


def _dataset(tmp_path: Path, name: str, clip: Path):
    """The fixture of ``name`` with every placeholder video replaced by ``clip``, and its preset's config."""
    root = fx.WRITERS[name](tmp_path)
    for video in (root / "videos").rglob("*"):
        if video.is_file():
            shutil.copy(clip, video)
    return root, build_config(name, {"data.root": str(root), "out_dir": str(tmp_path / "runs")})


def _check(cfg, tmp_path: Path):
    return check_dataset(cfg, workers=2, probe_cache=tmp_path / "probes.jsonl", progress=False)


# -- presets ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_preset_loads_and_composes_with_the_released_recipe(name):
    cfg = build_config(name)
    assert (cfg.data.dataset, cfg.model.backbone, cfg.model.pretrained) == (name, "ViT-B-32", "openai")
    assert cfg.reference.source and cfg.reference.rows()["t2v_R@1"] is not None
    released = build_config([name, "released"])
    embedded_released = build_config("released")
    # the benchmark's settings stay (its tau too), the recipe's choices come on top; nothing of the embedded default leaks in
    assert (released.data, released.reference) == (cfg.data, cfg.reference)
    assert released.train == dataclasses.replace(cfg.train, logit_scale_group="backbone")
    assert (released.model.global_tau, released.model.global_normalize) == (cfg.model.global_tau, False)
    assert (released.model.decoder_norm, released.model.temporal_init, released.loss.variant) == ("post", "clip", "released")
    assert released.model.backbone != embedded_released.model.backbone
    assert released.loss.released_beta == cfg.loss.released_beta


def test_a_base_list_and_a_layered_file_compose_like_repeated_configs(tmp_path):
    listed = tmp_path / "listed.yaml"
    listed.write_text("base: [didemo, released]\ntrain:\n  epochs: 2\n")
    assert build_config(listed) == build_config(["didemo", "released"], {"train.epochs": 2})
    mine = tmp_path / "mine.yaml"  # a file over the released recipe, layered over MSVD: MSVD takes embedded's place
    mine.write_text("base: released\nmodel:\n  num_queries: 4\n")
    cfg = build_config(["msvd", mine])
    assert (cfg.data.dataset, cfg.model.backbone, cfg.model.num_queries, cfg.loss.variant) == ("msvd", "ViT-B-32", 4, "released")
    assert build_config(mine).model.backbone == "glscl-tiny"  # alone, it starts from the embedded default


def test_presets_carry_the_released_scripts_per_benchmark_values():
    got = {n: build_config(n) for n in BENCHMARKS}
    assert {n: (c.model.num_frames, c.model.max_words, c.train.batch_size, c.train.epochs) for n, c in got.items()} == {
        "msrvtt": (12, 32, 128, 5), "msvd": (12, 32, 128, 5), "didemo": (64, 64, 32, 5), "lsmdc": (12, 32, 128, 5),
        "activitynet": (64, 64, 64, 10)}
    assert got["activitynet"].model.num_queries == 12 and got["lsmdc"].model.global_tau == 5.0
    assert {n: (c.loss.released_idl_weight, c.loss.released_beta) for n, c in got.items()} == {
        "msrvtt": (1e-4, 0.02), "msvd": (1e-4, 0.005), "didemo": (1e-4, 0.005), "lsmdc": (0.01, 0.005),
        "activitynet": (1e-4, 0.005)}


def test_reference_numbers_are_checked_and_kept_out_of_the_fingerprint():
    from glscl.config import ConfigError
    from glscl.engine.fingerprint import fingerprint

    with pytest.raises(ConfigError, match=r"^reference.t2v R@1 = 148.1 is out of range"):  # an override: no file to blame
        build_config("msrvtt", {"reference.t2v": [148.1, None, None, None, None]})
    with pytest.raises(ConfigError, match=r"^reference.source is not set"):
        build_config(None, {"reference.t2v": [40.0, None, None, None, None]})
    assert fingerprint(build_config("msrvtt")) == fingerprint(build_config("msrvtt", {"reference.source": None,
                                                                                       "reference.t2v": [None] * 5,
                                                                                       "reference.v2t": [None] * 5}))


# -- data check on clean fixtures --------------------------------------------------------------------------

@pytest.mark.parametrize("name", BENCHMARKS)
def test_clean_fixture_passes(tmp_path, clip, name):
    root, cfg = _dataset(tmp_path, name, clip)
    report = _check(cfg, tmp_path)
    assert report.errors == [], [p.line() for p in report.errors]
    for split in ("train", "val", "test"):
        loaded = annotated_split(cfg.data, split, announce=False)
        assert (report.splits[split].videos, report.splits[split].captions) == (loaded.num_videos, loaded.num_captions)
    # every published split is far larger than a fixture: one warning per compared split, naming the benchmark
    assert any("published split" in p.problem for p in report.warnings)
    short = [p for p in report.warnings if "too short" in p.problem]
    assert bool(short) == (cfg.model.num_frames > 12)  # the 12 s clip gives 12 frames at 1 fps


def test_msrvtt_fixture_counts_and_cut_captions(tmp_path, clip):
    root, cfg = _dataset(tmp_path, "msrvtt", clip)
    report = _check(build_config(cfg, {"model.max_words": 8}), tmp_path)
    test = report.splits["test"]
    assert (test.videos, test.captions, test.captions_per_video) == (2, 2, (1, 1.0, 1))
    assert test.cut_captions == 1  # "a cat sleeps on a sofa, then wakes up": 10 BPE tokens + start and end > 8
    train_val = [report.splits[s] for s in ("train", "val")]
    assert sum(s.captions for s in train_val) == 11 and max(s.captions_per_video[2] for s in train_val) == 3


# -- planted faults --------------------------------------------------------------------------------------

def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


LSMDC_TRAIN_ROW = "\t".join(["0001_American_Beauty_00.00.51.926-00.00.54.129"] + ["0"] * 4 + ["SOMEONE walks down the street."])

# dataset -> (change planting a caption for an unknown video, the name it must report)
UNKNOWN = {
    "msrvtt": (lambda r: _edit_json(r / "MSRVTT_data.json", lambda d: d["sentences"].append(
        {"video_id": "video99", "caption": "a ghost", "sen_id": 99})), "video99"),
    "msvd": (lambda r: _append(r / "test_list.txt", "ghost_clip_1_2\n"), "ghost_clip_1_2"),
    "didemo": (lambda r: _edit_json(r / "test_data.json", lambda d: d.append(
        {"annotation_id": 9, "description": "a ghost", "video": "ghost.mp4", "times": [[0, 0]], "num_segments": 6})), "ghost.mp4"),
    "lsmdc": (lambda r: _append(r / "LSMDC16_challenge_1000_publictect.csv",
                                "\t".join(["9999_GHOST_00.00.01.000-00.00.02.000"] + ["0"] * 4 + ["A ghost."]) + "\n"), "9999_GHOST"),
    "activitynet": (lambda r: _edit_json(r / "val_1.json", lambda d: d.update(
        {"v_ghost": {"duration": 5.0, "timestamps": [[0, 5]], "sentences": ["A ghost."]}})), "v_ghost"),
}
# dataset -> (change putting a training video into the test split, the shared id)
OVERLAP = {
    "msrvtt": (lambda r: _append(r / "MSRVTT_JSFUSION_test.csv", "2,ret2,msr3,video3,a car drives\n"), "video3"),
    "msvd": (lambda r: _append(r / "test_list.txt", "-7KMZQEsJW4_205_208\n"), "-7KMZQEsJW4_205_208"),
    "didemo": (lambda r: _edit_json(r / "test_data.json", lambda d: d.append(
        {"annotation_id": 9, "description": "the dog again", "video": fx.DIDEMO_DOG, "times": [[0, 0]], "num_segments": 6})),
        fx.DIDEMO_DOG),
    "lsmdc": (lambda r: _append(r / "LSMDC16_challenge_1000_publictect.csv", LSMDC_TRAIN_ROW + "\n"),
              "0001_American_Beauty_00.00.51.926-00.00.54.129"),
    "activitynet": (lambda r: _edit_json(r / "val_1.json", lambda d: d.update(
        {"v_nwznKOuZM7w": {"duration": 5.0, "timestamps": [[0, 5]], "sentences": ["Two people play tennis."]}})), "v_nwznKOuZM7w"),
}


def _plant(fault: str, name: str, root: Path, cfg) -> str:
    """Plant one fault; returns what the report must name."""
    if fault in ("missing", "zero-byte"):
        split = "test" if fault == "missing" else "train"
        video = annotated_split(cfg.data, split, announce=False).video_paths[0]
        video.unlink() if fault == "missing" else video.write_bytes(b"")
        return str(video.with_suffix(""))  # a missing MSVD video is reported as .avi, the first native extension
    change, named = (UNKNOWN if fault == "unknown-id" else OVERLAP)[name]
    change(root)
    return named


@pytest.mark.parametrize("fault", ["missing", "zero-byte", "unknown-id", "overlap"])
@pytest.mark.parametrize("name", BENCHMARKS)
def test_planted_fault_fails_in_one_line_naming_it(tmp_path, clip, capsys, name, fault):
    root, cfg = _dataset(tmp_path, name, clip)
    named = _plant(fault, name, root, cfg)
    report = _check(cfg, tmp_path)
    assert len(report.errors) == 1, [p.line() for p in report.errors]
    line = report.errors[0].line()
    assert named in line and "\n" not in line
    expected = {"missing": "no such file", "zero-byte": "empty file (0 bytes)", "overlap": "share"}.get(fault)
    assert expected is None or expected in line
    # the command: exit 2, the error on the summary screen, every problem in report.json
    out = tmp_path / "check"
    status = glscl(["data", "check", "--config", name, f"data.root={root}", "--out", str(out)])
    assert status == 2
    assert line in capsys.readouterr().out
    written = json.loads((out / "report.json").read_text())
    assert not written["ok"] and [e["file"] for e in written["errors"]] == [report.errors[0].file]


def test_probe_cache_resumes_and_notices_a_changed_file(tmp_path, clip, monkeypatch):
    from glscl.data import check

    root, cfg = _dataset(tmp_path, "msvd", clip)
    first = _check(cfg, tmp_path)
    probed = []
    monkeypatch.setattr(check, "_probe", lambda path: probed.append(path) or (12, 1.0))
    assert _check(cfg, tmp_path).splits == first.splits and probed == []  # every result came from the cache
    video = annotated_split(cfg.data, "val", announce=False).video_paths[0]
    video.write_bytes(b"not a video any more")
    _check(cfg, tmp_path)
    assert probed == [video]


def test_estimates_use_gpu_check_figures(tmp_path, clip):
    root, cfg = _dataset(tmp_path, "msvd", clip)
    figures = tmp_path / "gpu.json"
    figures.write_text(json.dumps({"sizes": {"batch": 128, "frames": 12}, "rows": [
        {"name": "train step, fp32", "value": 80.0, "unit": "s/step"},
        {"name": "train step, bf16 autocast", "value": 64.0, "unit": "s/step"},
        {"name": "cache build, fp32", "value": 12.0, "unit": "frames/s"},
        {"name": "decode, 4 workers", "value": 2.5, "unit": "clips/s"}]}))
    report = check_dataset(build_config(cfg, {"train.batch_size": 2}), probe_cache=tmp_path / "p.jsonl", progress=False,
                           gpu_figures=figures)
    text = "\n".join(report.estimates)
    # 5 training captions of MSVD's fixture at B=2: 3 steps x 64 s (the faster row) x (2 x 12) / (128 x 12) = 3 s;
    # decoding 5 clips at 2.5 clips/s = 2 s; caching 2 training videos x 12 frames at 12 frames/s = 2 s
    assert "about 3 s of training steps (3 steps of B=2, T=12); decoding 2 s" in text
    assert "about 2 s of encoding" in text
    assert "feature cache: " in text


def test_gpu_check_json_feeds_the_estimate(tmp_path, clip, monkeypatch):
    """What benchmarks/gpu_check.py --json writes (here its CPU smoke run) is what --gpu-figures reads."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("gpu_check", Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)
    spec.loader.exec_module(gpu_check)
    figures = tmp_path / "figures.json"
    gpu_check.main(["--smoke", "--json", str(figures)])
    root, cfg = _dataset(tmp_path, "msvd", clip)
    report = check_dataset(build_config(cfg, {"train.batch_size": 2}), probe_cache=tmp_path / "p.jsonl", progress=False,
                           gpu_figures=figures)
    assert any(line.startswith("end to end, one epoch: about") and "CPU smoke run" in line for line in report.estimates)


def test_cache_size_estimate_is_what_the_cache_holds(tmp_path, clip):
    from glscl.data import load_splits
    from glscl.data.check import cache_bytes
    from glscl.engine.run import build_caches, load_backbone

    root, cfg = _dataset(tmp_path, "msrvtt", clip)
    cfg = build_config(cfg, {"model.backbone": "glscl-tiny", "model.pretrained": None, "model.num_frames": 4,
                             "data.cache_dir": str(tmp_path / "cache"), "data.num_workers": 0, "data.val_size": 2})
    splits = load_splits(cfg.data)
    backbone, _ = load_backbone(cfg, splits)
    caches = build_caches(cfg, backbone, splits, progress=False)
    arrays = sum(np.load(f, mmap_mode="r").nbytes for c in caches.values() for f in c.folder.glob("*.npy"))
    assert cache_bytes(cfg, splits) == arrays
