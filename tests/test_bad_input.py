"""Bad input through the command line: a catalogue of what users get wrong.

Every case calls ``glscl.cli.main`` in-process and checks three things: the exit status; that
stderr ends with ONE line that names the setting or the file (and holds no traceback); and that
nothing already computed was lost: the results folder of a finished run (trained once per
session, name ``done``) is byte-identical afterwards, and the folder the bad run was meant for
holds no results. Almost every case fails before training starts, so the file runs in seconds.
"""
from __future__ import annotations

import csv
import errno
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import tiny_run_config

from glscl.cli import main
from glscl.config import build_config, save_config
from glscl.engine.results_folder import holds_results
from glscl.engine.run import run

try:  # pytest's default import mode puts tests/ itself on sys.path
    import fixtures_datasets as fx
except ImportError:
    from tests import fixtures_datasets as fx


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def lab(tiny_world, tiny_clip, tmp_path_factory):
    """A finished run ``done`` (one epoch from the feature cache, whose caches every case reuses) and its config file."""
    base = tmp_path_factory.mktemp("bad-input")
    cfg = build_config(tiny_run_config(tiny_world, tiny_clip, base / "runs", cache_dir=base / "cache", epochs=1), {"name": "done"})
    save_config(cfg, base / "run.yaml")
    run(cfg, progress=False)
    done = base / "runs" / "done"
    return SimpleNamespace(base=base, world=tiny_world, clip=tiny_clip, cfg=cfg, config=base / "run.yaml",
                           runs=base / "runs", done=done, snapshot=_snapshot(done))


def _train(lab, *overrides: str, name: str = "done") -> list[str]:
    return ["train", "--config", str(lab.config), f"name={name}", *overrides]


def _fails(capsys, lab, argv: list[str], words, *, fresh: str | None = None, status: int = 2) -> str:
    """Run the CLI; check the status, the one error line and its words, and that nothing was lost."""
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == status, err[-2000:]
    assert "Traceback" not in err and lines, err[-2000:]
    line = lines[-1]
    assert [x for x in lines if ": error: " in x] == [line], err[-2000:]
    assert line.startswith(f"glscl {argv[0]}: error: "), line
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    assert _snapshot(lab.done) == lab.snapshot, "the finished run's folder changed"
    if fresh is not None:
        assert not holds_results(lab.runs / fresh), f"{fresh} holds results"
    return line


# ----------------------------------------------------------------------------- config values (aimed at the finished run)

CONFIG_VALUES = [
    ("nan-global-tau", ["model.global_tau=.nan"], ["model.global_tau = nan", "not a finite number"]),
    ("nan-lr", ["train.lr=.nan"], ["train.lr = nan", "not a finite number"]),
    ("nan-dropout", ["model.dropout=.nan"], ["model.dropout = nan", "not a finite number"]),
    ("inf-lr", ["train.lr=.inf"], ["train.lr = inf", "not a finite number"]),
    ("minus-inf-weight", ["loss.icl_weight=-.inf"], ["loss.icl_weight = -inf", "not a finite number"]),
    ("nan-beta", ["train.betas=[0.9, .nan]"], ["train.betas", "not a finite number"]),
    ("nan-optional-float", ["pem.temperature=.nan"], ["pem.temperature = nan", "not a finite number"]),
    ("nan-sample-fps", ["data.sample_fps=.nan"], ["data.sample_fps = nan", "not a finite number"]),
    ("beta-out-of-range", ["train.betas=[1.5, 0.9]"], ["train.betas", "[0, 1)"]),
    ("out-of-range", ["model.num_queries=0"], ["model.num_queries = 0", ">= 1"]),
    ("dropout-above-one", ["model.dropout=1.5"], ["model.dropout = 1.5", "<= 1"]),
    ("wrong-type-int", ["model.num_queries=four"], ["model.num_queries = 'four'", "expected int"]),
    ("wrong-type-bool", ["data.augment=maybe"], ["data.augment = 'maybe'", "expected bool"]),
    ("section-given-a-value", ["model=3"], ["'model' is a config section", "model.<field>=value"]),
    ("not-a-choice", ["model.interaction=everything"], ["model.interaction = 'everything'", "global"]),
    ("unknown-dataset", ["data.dataset=youtube"], ["data.dataset = 'youtube'", "msrvtt"]),
    ("unknown-key", ["model.num_querys=4"], ["unknown config key 'model.num_querys'"]),
    ("unknown-top-level-key", ["lr=3"], ["unknown config key 'lr'"]),
    ("unknown-section", ["optim.lr=3"], ["unknown config key 'optim.lr'"]),
    ("override-without-equals", ["model.num_queries"], ["override 'model.num_queries'", "section.key=value"]),
    ("override-bad-yaml", ["train.betas=[0.9"], ["override train.betas", "not a valid YAML value"]),
    ("val-size-zero", ["data.val_size=0"], ["data.val_size = 0", ">= 1"]),
    ("batch-size-one", ["train.batch_size=1"], ["train.batch_size = 1", ">= 2"]),
    ("device-typo", ["device=gpu"], ["device = 'gpu'", "cuda"]),
    ("video-ext-without-dot", ["data.video_ext=mp4"], ["data.video_ext = 'mp4'", "'.mp4'"]),
    ("pem-crop-areas", ["pem.crop_min_area=0.5", "pem.crop_max_area=0.4"], ["pem.crop_min_area", "pem.crop_max_area"]),
    ("cache-without-frozen-backbone", ["model.freeze_backbone=false"], ["data.cache_dir", "model.freeze_backbone=true"]),
    ("changed-config-same-name", ["model.num_queries=2"], ["name = 'done'", "model.num_queries: 4 -> 2", "--overwrite", "name="]),
]


@pytest.mark.parametrize("overrides, words", [c[1:] for c in CONFIG_VALUES], ids=[c[0] for c in CONFIG_VALUES])
def test_bad_config_value(lab, capsys, overrides, words):
    _fails(capsys, lab, _train(lab, *overrides), words)


def test_cuda_without_cuda_names_device(lab, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _fails(capsys, lab, _train(lab, "device=cuda"), ["device = 'cuda'", "CUDA is not available"])


def test_rerun_on_another_dataset_under_the_same_name_is_refused(lab, capsys, tmp_path):
    """The user trial: train MSR-VTT, then MSVD under the same name; it must not report the old weights."""
    msvd = fx.write_msvd(tmp_path)
    line = _fails(capsys, lab, _train(lab, "data.dataset=msvd", f"data.root={msvd}"), ["name = 'done'", "--overwrite"])
    assert "data.dataset: 'world' -> 'msvd'" in line and f"-> '{msvd}'" in line


# ----------------------------------------------------------------------------- config files

CONFIG_FILES = [
    ("missing-file", None, ["missing.yaml", "does not exist"]),
    ("invalid-yaml", "model:\n  num_queries: [4\n", ["bad.yaml", "not valid YAML at line", "column"]),
    ("top-level-list", "- model\n- loss\n", ["bad.yaml", "expected a mapping"]),
    ("unknown-key-in-file", "model:\n  num_querys: 4\n", ["bad.yaml", "unknown config key 'model.num_querys'"]),
    ("bad-value-in-file", "train:\n  lr: .nan\n", ["bad.yaml", "train.lr = nan", "not a finite number"]),
    ("base-loop", "base: bad.yaml\n", ["bad.yaml", "loops back"]),
]


@pytest.mark.parametrize("text, words", [c[1:] for c in CONFIG_FILES], ids=[c[0] for c in CONFIG_FILES])
def test_bad_config_file(lab, capsys, tmp_path, text, words):
    path = tmp_path / ("missing.yaml" if text is None else "bad.yaml")
    if text is not None:
        path.write_text(text)
    _fails(capsys, lab, ["train", "--config", str(path), "name=done"], words)


# ----------------------------------------------------------------------------- settings found wrong at run time


def test_batch_larger_than_the_training_split(lab, capsys):
    _fails(capsys, lab, _train(lab, "train.batch_size=100000", name="big-batch"),
           ["train.batch_size = 100000", "exceeds the", "captions of the training split", "MSRVTT_train.9k.csv"], fresh="big-batch")


@pytest.mark.parametrize("pretrained, words", [
    ("nosuchtag", ["model.pretrained = 'nosuchtag'", "open_clip tag of 'glscl-tiny'"]),
    ("/nowhere/clip.safetensors", ["model.pretrained = '/nowhere/clip.safetensors'", "does not exist"]),
], ids=["unknown-tag", "missing-file"])
def test_unknown_weights(lab, capsys, pretrained, words):
    _fails(capsys, lab, _train(lab, f"model.pretrained={pretrained}", name="weights"), words, fresh="weights")


def test_pretrained_tag_offline_and_not_cached(lab, capsys):
    import open_clip
    from huggingface_hub import try_to_load_from_cache
    repo, _, filename = open_clip.get_pretrained_cfg("ViT-B-32", "openai")["hf_hub"].rstrip("/").rpartition("/")
    names = (filename, "open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    if any(isinstance(try_to_load_from_cache(repo, f), str) for f in names):
        pytest.skip("the openai ViT-B-32 weights are in this machine's cache")
    _fails(capsys, lab, _train(lab, "model.backbone=ViT-B-32", "model.pretrained=openai", "model.compact_vocab=false", name="offline"),
           ["model.pretrained = 'openai'", "not in the local cache", "offline mode is on", "local file"], fresh="offline")


@pytest.mark.parametrize("kind", ["plain-pickle", "torch-save"])
def test_pickled_weights_are_refused_and_never_run(lab, capsys, tmp_path, kind):
    marker, weights = tmp_path / "pwned", tmp_path / "clip.pt"
    if kind == "plain-pickle":
        weights.write_bytes(fx.hostile_pickle(marker))
    else:
        torch.save({"state_dict": fx.Hostile(marker)}, weights)
    _fails(capsys, lab, _train(lab, f"model.pretrained={weights}", name="pickled"),
           [f"model.pretrained = '{weights}' is a pickle; glscl loads only safetensors/weights-only files"], fresh="pickled")
    assert not marker.exists()


@pytest.mark.parametrize("overrides, words", [
    (["model.pretrained={empty}"], ["model.pretrained = '{empty}'", "cannot be loaded as weights of glscl-tiny"]),
    (["model.backbone=glscl-small"], ["model.pretrained = '{clip}'", "cannot be loaded as weights of glscl-small"]),
    (["model.backbone=ViT-Q-99"], ["model.backbone = 'ViT-Q-99'", "not an open_clip model"]),
    (["model.max_words=64"], ["model.max_words = 64", "context length 32"]),
], ids=["zero-byte-weights", "weights-of-another-backbone", "unknown-backbone", "text-too-long-for-backbone"])
def test_backbone_settings(lab, capsys, tmp_path, overrides, words):
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    fill = {"empty": empty, "clip": lab.clip}
    _fails(capsys, lab, _train(lab, *(o.format(**fill) for o in overrides), name="backbone"),
           [w.format(**fill) for w in words], fresh="backbone")


# ----------------------------------------------------------------------------- dataset files


def _replace(file: str, old: bytes, new: bytes):
    return lambda root: fx.replace_bytes(root / file, old, new)


def _write(file: str, data: bytes):
    return lambda root: (root / file).write_bytes(data)


DATASET_FILES = [
    ("json-syntax", "msrvtt", _replace("MSRVTT_data.json", b'"info"', b"info"), ["MSRVTT_data.json", "line 1, column 2", "json"]),
    ("json-zero-bytes", "msrvtt", _write("MSRVTT_data.json", b""), ["MSRVTT_data.json", "line 1, column 1", "json"]),
    ("missing-annotation-file", "msrvtt", lambda root: (root / "MSRVTT_data.json").unlink(),
     ["MSRVTT_data.json: missing annotation file"]),
    ("empty-caption", "msrvtt", _replace("MSRVTT_data.json", b'"a dog runs in a park"', b'"  "'),
     ["MSRVTT_data.json", "sentences[1]", "empty caption"]),
    ("non-utf8-caption", "msrvtt", _replace("MSRVTT_data.json", b"two kids", b"two \xff\xfekids"),
     ["MSRVTT_data.json", "sentences[7]", "not valid UTF-8"]),
    ("missing-key", "msrvtt", _replace("MSRVTT_data.json", b'"caption": "a car drives', b'"text": "a car drives'),
     ["MSRVTT_data.json", "sentences[6]", "caption: missing key"]),
    ("missing-column", "msrvtt", _replace("MSRVTT_train.9k.csv", b"video_id\n", b"vid\n"),
     ["MSRVTT_train.9k.csv", "missing column 'video_id'"]),
    ("csv-zero-bytes", "msrvtt", _write("MSRVTT_JSFUSION_test.csv", b""), ["MSRVTT_JSFUSION_test.csv", "missing column"]),
    ("unknown-video-id", "msrvtt", _replace("MSRVTT_train.9k.csv", b"video3", b"video99"),
     ["MSRVTT_train.9k.csv", "unknown video 'video99'"]),
    ("train-test-overlap", "msrvtt-val", _replace("MSRVTT_train.9k.csv", b"video5\n", b"video5\nvideo6\nvideo7\n"),
     ["train and test splits share 2 video(s) ('video6', 'video7')", "MSRVTT_train.9k.csv", "MSRVTT_JSFUSION_test.csv"]),
    ("val-too-small-to-carve", "msrvtt", _write("MSRVTT_train.9k.csv", b"video_id\nvideo0\n"),
     ["data.val_size", "MSRVTT_train.9k.csv", "1 training video"]),
    ("hostile-pickle", "msvd", None, ["raw-captions.pkl", "refused opcode"]),
    ("pickle-not-a-dict", "msvd", lambda root: fx.write_msvd_pickle(root, [["a", "b"]]), ["raw-captions.pkl", "expected dict"]),
    ("non-utf8-video-id", "msvd", _replace("test_list.txt", b"-AwoiGR6c8M_10_14", b"-AwoiGR6c8M_10_14\xff"),
     ["test_list.txt", "line 1", "not valid UTF-8"]),
    ("train-val-overlap", "msvd", _replace("val_list.txt", b"-8y1Q0rA3n8_108_115\n", b"-8y1Q0rA3n8_108_115\n-4wsuPCjDBc_5_15\n"),
     ["train and val splits share 1 video(s) ('-4wsuPCjDBc_5_15')", "train_list.txt", "val_list.txt"]),
    ("val-test-overlap", "msvd", _replace("val_list.txt", b"-8y1Q0rA3n8_108_115\n", b"-8y1Q0rA3n8_108_115\n-AwoiGR6c8M_10_14\n"),
     ["val and test splits share 1 video(s)", "val_list.txt", "test_list.txt"]),
    ("lsmdc-columns", "lsmdc", _replace("LSMDC16_annos_val.csv", b"\t00.02.00.000\t00.02.03.000\t", b"\t"),
     ["LSMDC16_annos_val.csv", "line 1", "6 tab-separated columns"]),
    ("didemo-missing-key", "didemo", _replace("train_data.json", b'"description": "the dog', b'"descr": "the dog'),
     ["train_data.json", "entry 1", "description: missing key"]),
    ("activitynet-sentences-not-a-list", "activitynet",
     _replace("val_1.json", b'"sentences": ["A man climbs a rock wall."]', b'"sentences": "A man climbs a rock wall."'),
     ["val_1.json", "v_bXdq2zI1Ms0", "expected a non-empty list"]),
]


@pytest.mark.parametrize("dataset, break_it, words", [c[1:] for c in DATASET_FILES], ids=[c[0] for c in DATASET_FILES])
def test_bad_dataset_file(lab, capsys, tmp_path, dataset, break_it, words):
    name = dataset.removesuffix("-val")
    root = fx.write_msrvtt(tmp_path, with_val=True) if dataset == "msrvtt-val" else fx.WRITERS[name](tmp_path)
    marker = tmp_path / "pwned"
    if break_it is None:  # the hostile pickle
        fx.write_msvd_pickle(root, {"-4wsuPCjDBc_5_15": [["a", "man"]], "x": fx.Hostile(marker)})
    else:
        break_it(root)
    _fails(capsys, lab, _train(lab, f"data.dataset={name}", f"data.root={root}", name=f"data-{name}"), words, fresh=f"data-{name}")
    assert not marker.exists()


def test_val_size_adapts_to_a_small_training_list(tmp_path, capsys):
    """MSR-VTT with 6 training videos and the default data.val_size = 100: 1 carved (10 %, at least 1), a note says so."""
    from glscl.config import DataConfig
    from glscl.data import load_splits

    root = fx.write_msrvtt(tmp_path)
    splits = load_splits(DataConfig(dataset="msrvtt", root=str(root)))
    out = capsys.readouterr().out
    assert splits["val"].num_videos == 1 and splits["train"].num_videos == 5
    assert out.count("note: data.val_size = 100") == 1 and "carving 1 for validation" in out and "MSRVTT_train.9k.csv" in out


# ----------------------------------------------------------------------------- videos


def _ids(world: Path, file: str) -> list[str]:
    with open(world / file, newline="") as f:
        return [row["video_id"] for row in csv.DictReader(f)]


def _videos_with_one_broken(world: Path, folder: Path, victim: str, how: str) -> Path:
    """A video folder of links to the world's videos, with ``victim`` broken ``how``."""
    folder.mkdir()
    for video in (world / "videos").glob("*.mp4"):
        (folder / video.name).symlink_to(video)
    path = folder / f"{victim}.mp4"
    path.unlink()
    shutil.copy(world / "videos" / f"{victim}.mp4", path)
    return fx.break_video(path, how)


@pytest.mark.parametrize("split_file, how, reason", [
    ("MSRVTT_val.csv", "garbage", "cannot be opened as a video"),
    ("MSRVTT_JSFUSION_test.csv", "truncated", "cannot be opened as a video"),
    ("MSRVTT_val.csv", "empty", "cannot be opened as a video"),
    ("MSRVTT_val.csv", "missing", "no such file"),
], ids=["corrupt-val", "truncated-test", "zero-byte-val", "missing-val"])
def test_bad_evaluation_video_stops_before_training(lab, capsys, tmp_path, split_file, how, reason):
    """End to end, the validation and test videos are probed before the first epoch, so none is thrown away."""
    victim = _ids(lab.world, split_file)[1]
    path = _videos_with_one_broken(lab.world, tmp_path / "videos", victim, how)
    _fails(capsys, lab, _train(lab, "data.cache_dir=null", f"data.video_dir={path.parent}", name="e2e"),
           [str(path), reason, "data.skip_bad"], fresh="e2e")


def test_corrupt_training_video_stops_while_caching(lab, capsys, tmp_path):
    victim = _ids(lab.world, "MSRVTT_train.9k.csv")[0]
    path = _videos_with_one_broken(lab.world, tmp_path / "videos", victim, "truncated")
    _fails(capsys, lab, _train(lab, f"data.cache_dir={tmp_path / 'cache'}", f"data.video_dir={path.parent}", name="cache"),
           [str(path), "cannot be opened as a video"], fresh="cache")


# ----------------------------------------------------------------------------- results folders and checkpoints


def _copy_of_done(lab, tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy of the finished run in another out_dir (not fingerprinted), and the overrides that aim at it."""
    shutil.copytree(lab.done, tmp_path / "runs" / "done")
    return tmp_path / "runs" / "done", [f"out_dir={tmp_path / 'runs'}"]


def _hostile_train_state(folder: Path, marker: Path) -> None:
    state = {"optimizer": fx.Hostile(marker), "scheduler": {}, "step": 4, "epoch": 1}
    torch.save(state, folder / "checkpoints" / "last" / "train_state.pt")


RUN_FOLDERS = [
    ("hostile-train-state", _hostile_train_state, ["train_state.pt is a pickle; glscl loads only safetensors/weights-only files"]),
    ("truncated-train-state", lambda d, m: fx.break_video(d / "checkpoints" / "last" / "train_state.pt", "truncated"),
     ["checkpoints/last/train_state.pt", "cannot be read"]),
    ("corrupt-weights", lambda d, m: (d / "checkpoints" / "last" / "model.safetensors").write_bytes(b"\x00" * 64),
     ["checkpoints/last/model.safetensors", "cannot be read as safetensors"]),
    ("no-record-of-the-config", lambda d, m: [p.unlink() for p in d.rglob("*") if p.name in ("config.yaml", "fingerprint.json")],
     ["name = 'done'", "no readable record of the config"]),
]


@pytest.mark.parametrize("break_it, words", [c[1:] for c in RUN_FOLDERS], ids=[c[0] for c in RUN_FOLDERS])
def test_broken_results_folder_is_refused_untouched(lab, capsys, tmp_path, break_it, words):
    folder, aim = _copy_of_done(lab, tmp_path)
    marker = tmp_path / "pwned"
    break_it(folder, marker)
    before = _snapshot(folder)
    _fails(capsys, lab, _train(lab, *aim), words)
    assert _snapshot(folder) == before and not marker.exists()


def test_overwrite_moves_the_old_folder_aside_byte_for_byte(lab, capsys, tmp_path):
    folder, aim = _copy_of_done(lab, tmp_path)
    before = _snapshot(folder)
    assert main(_train(lab, *aim, "model.num_queries=2", "--overwrite")) == 0
    moved = [p for p in folder.parent.iterdir() if p.name.startswith("done.old-")]
    assert len(moved) == 1 and _snapshot(moved[0]) == before
    assert f"moved the previous results of {folder} to {moved[0]}" in capsys.readouterr().out
    assert json.loads((folder / "fingerprint.json").read_text())["fields"]["model.num_queries"] == 2
    assert json.loads((folder / "metrics.json").read_text())["num_queries"] == 2


def test_non_finite_loss_before_any_checkpoint_says_so(lab, capsys, monkeypatch):
    from glscl import losses

    real = losses.glscl_loss

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        out["loss"] = out["loss"] * float("nan")
        return out
    monkeypatch.setattr(losses, "glscl_loss", poisoned)
    line = _fails(capsys, lab, _train(lab, name="nan-loss"), ["non-finite loss (nan) at step 0", "no checkpoint was saved yet"])
    assert "last good checkpoint" not in line and not (lab.runs / "nan-loss" / "checkpoints").exists()


# ----------------------------------------------------------------------------- other commands, and the traceback on request


@pytest.mark.parametrize("argv, words", [
    (["world", "--root", "{tmp}/w", "n_train=abc"], ["n_train", "'abc'"]),
    (["world", "--root", "{tmp}/w", "colour=3"], ["unknown setting 'colour'"]),
    (["world", "--root", "{tmp}/w", "size=50"], ["size", "multiple of 16"]),
    (["cache", "data.cache_dir=null"], ["data.cache_dir is not set"]),
], ids=["world-not-a-number", "world-unknown-setting", "world-out-of-range", "cache-without-folder"])
def test_other_commands(lab, capsys, tmp_path, argv, words):
    argv = [a.format(tmp=tmp_path) for a in argv]
    if argv[0] == "cache":
        argv = ["cache", "--config", str(lab.config), *argv[1:]]
    _fails(capsys, lab, argv, words)
    assert not (tmp_path / "w").exists()


def test_debug_flag_and_variable_show_the_traceback(lab, monkeypatch):
    from glscl.config import ConfigError

    with pytest.raises(ConfigError, match="train.lr = nan"):
        main(["--debug", *_train(lab, "train.lr=.nan")])
    monkeypatch.setenv("GLSCL_DEBUG", "1")
    with pytest.raises(ConfigError, match="train.lr = nan"):
        main(_train(lab, "train.lr=.nan"))


# ----------------------------------------------------------------------------- one writer per folder (real processes)

REPO = Path(__file__).resolve().parents[1]


def _ctrl_c_reaches_it() -> None:
    """In the child: SIGINT back to its default, so Python turns it into Ctrl-C even when the tests
    were started in the background of a shell (which makes children ignore SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(*argv: str, **kw) -> subprocess.Popen:
    """``glscl`` in a process of its own (this checkout first on the path)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "glscl.cli", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_reaches_it, **kw)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.1)


def _leftovers(folder: Path) -> list[str]:
    """Temporary or lock files left in (or beside) ``folder``."""
    return [p.name for p in folder.parent.rglob("*") if p.name.endswith((".tmp", ".lock")) or ".partial" in p.name]


def _last_line(err: str) -> str:
    return [line for line in err.splitlines() if line.strip()][-1]


def test_two_trainings_on_one_folder_the_second_stops_then_ctrl_c_ends_in_one_line(lab, tmp_path):
    """Two ``glscl train`` processes on one results folder: the second stops at once, naming the
    holder; Ctrl-C of the first ends in one line (130), leaving no temporary file and no lock."""
    out = tmp_path / "runs"
    argv = ["train", "--config", str(lab.config), "name=busy", f"out_dir={out}", "train.epochs=100000"]  # runs until stopped
    first = _cli(*argv)
    try:
        _wait_for(out / "busy" / "checkpoints" / "last" / "train_state.pt", first)
        second = _cli(*argv)
        _, err = second.communicate(timeout=120)
        line = _last_line(err)
        assert second.returncode == 2 and "Traceback" not in err, err[-2000:]
        assert line.startswith("glscl train: error: ") and f"{out / 'busy'} is in use by PID {first.pid} on " in line
        assert "started " in line and str(out / "busy.lock") in line
        assert first.poll() is None  # the holder goes on
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 130, err[-2000:]
    assert "Traceback" not in err and _last_line(err) == "glscl train: interrupted; rerun the same command to resume"
    assert _leftovers(out / "busy") == []
    from glscl.engine.checkpoint import load_train_state
    assert load_train_state(out / "busy" / "checkpoints" / "last")["epoch"] >= 1  # what was finished is kept, readable


def test_second_ablate_on_a_grid_folder_in_use_stops_before_ray(lab, capsys, tmp_path, monkeypatch):
    """A grid folder locked by another process (a real one, holding the lock ablate takes): ablate stops at once."""
    from glscl.lab.grids import cluster
    grid = _grid(lab, tmp_path)
    out = tmp_path / "grid"
    code = ("import sys, time; from glscl.engine.results_folder import FolderLock\n"
            f"with FolderLock({str(out)!r}, 'glscl ablate'):\n    print('held', flush=True); time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(cluster, "connect", lambda *a, **k: pytest.fail("Ray started"))
        line = _fails(capsys, lab, ["ablate", str(grid), "--out", str(out)], [f"{out} is in use by PID {holder.pid} on "])
        assert "glscl ablate" in line and not out.exists()
    finally:
        holder.kill()
        holder.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_lock_of_a_killed_process_is_taken_over_with_a_note(lab, capsys, tmp_path):
    folder, aim = _copy_of_done(lab, tmp_path)
    lock = folder.with_name("done.lock")
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": platform.node(), "started": "earlier", "command": "glscl train"}))
    assert main(_train(lab, *aim)) == 0
    err = capsys.readouterr().err
    assert f"note: {folder}: took over the lock left by PID" in err and "that process no longer runs" in err
    assert not lock.exists()


def test_a_lock_of_another_host_is_stale_only_when_not_renewed(tmp_path, capsys):
    from glscl.engine import results_folder as rf
    folder = tmp_path / "shared"
    lock = rf.lock_path(folder)
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "now", "command": "glscl ablate"}))
    with pytest.raises(rf.FolderInUseError, match=f"{folder} is in use by PID 1 on elsewhere"):
        rf.FolderLock(folder, "test").acquire()
    old = time.time() - rf.STALE_AFTER_S - 5
    os.utime(lock, (old, old))
    with rf.FolderLock(folder, "test"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "not renewed for" in capsys.readouterr().err and not lock.exists()


# ----------------------------------------------------------------------------- records are read, not just found


def _grid(lab, tmp_path: Path, values="[2, 4]") -> Path:
    path = tmp_path / "g.yaml"
    path.write_text(f"description: test\nbase: {lab.config}\nprepare_world: false\nvary:\n  model.num_queries: {values}\n"
                    "seeds: [0]\nworkers: 1\n")
    return path


@pytest.mark.parametrize("text", ['{"t2v_R@1": ', "", '{"name": "x"}', "[1, 2]"], ids=["torn", "empty", "no-metrics", "not-an-object"])
def test_a_torn_record_makes_the_run_pending_with_a_note(lab, capsys, tmp_path, text):
    from glscl.engine.fingerprint import fingerprint_fields
    from glscl.engine.record import RECORD_FILE, write_record
    from glscl.lab.grids import folder, runner
    grid = _grid(lab, tmp_path)
    out = tmp_path / "grid"
    spec = runner.load_grid(grid)
    for r in runner.expand(spec):  # both runs finished, by their records; one record is then broken
        d = folder.run_paths(out, r.run_id)[0]
        d.mkdir(parents=True)
        fields = fingerprint_fields(runner.run_config(spec.resolved_base(), r.overrides, name=r.run_id, out_dir=str(out / "runs")))
        write_record(d, {"status": "ok", "t2v_R@1": 10.0, "run_s": 1.0, "wall_s": 2.0, "fields": fields,
                         "fingerprint": folder.fingerprint(fields)})
    broken = folder.run_paths(out, "num_queries=2,seed=0")[0] / RECORD_FILE
    broken.write_text(text)
    table = runner.collect(spec, out)
    assert table.set_index("run_id")["status"].to_dict() == {"num_queries=2,seed=0": "pending", "num_queries=4,seed=0": "ok"}
    assert [r.run_id for r in runner.plan(spec, out)[1]] == ["num_queries=2,seed=0"]
    assert main(["ablate", str(grid), "--out", str(out), "--dry-run"]) == 0
    captured = capsys.readouterr()
    notes = [x for x in captured.err.splitlines() if "note:" in x]
    assert len(notes) == 1 and str(broken) in notes[0] and "pending" in notes[0]
    assert "run  [pending] num_queries=2,seed=0" in captured.out


def test_a_torn_results_table_is_named(lab, tmp_path):
    from glscl.config import ConfigError
    from glscl.lab.grids import folder
    grid = tmp_path / "grid"
    grid.mkdir()
    shutil.copy(_grid(lab, tmp_path), grid / folder.GRID_FILE)
    (grid / "results.csv").write_text("")
    with pytest.raises(ConfigError, match=f"{grid / 'results.csv'}: not a readable table"):
        folder.read_table(grid)
    (grid / "results.csv").write_text("run_id,sta")
    with pytest.raises(ConfigError, match="incomplete"):
        folder.read_table(grid)


def test_a_torn_fingerprint_is_noted_and_the_saved_config_compared(lab, capsys, tmp_path):
    folder, aim = _copy_of_done(lab, tmp_path)
    (folder / "fingerprint.json").write_text('{"fields": {"model.num')
    line = _fails(capsys, lab, _train(lab, *aim, "model.num_queries=2"), ["model.num_queries: 4 -> 2"])
    assert "fingerprint.json" not in line
    main(_train(lab, *aim, "model.num_queries=2"))
    assert f"note: {folder / 'fingerprint.json'}: unreadable or incomplete" in capsys.readouterr().err


# ----------------------------------------------------------------------------- interruptions (the signal sent to this process)


def _interrupt(sig):
    def handler(*args, **kwargs):
        signal.raise_signal(sig)
    return handler


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["sigint", "sigterm"])
@pytest.mark.parametrize("command", ["train", "cache", "eval", "world", "pretrain", "demo", "ablate"])
def test_every_interruption_ends_in_one_line(lab, capsys, tmp_path, monkeypatch, command, sig, status):
    from glscl.engine import demo, evaluate, pretrain, run, train
    from glscl.lab.grids import cluster
    stop = _interrupt(sig)
    out = tmp_path / "runs"
    argv = {"train": _train(lab, f"out_dir={out}", name="stopped"), "cache": ["cache", "--config", str(lab.config)],
            "eval": ["eval", str(lab.done)], "world": ["world", "--root", str(tmp_path / "w")],
            "pretrain": ["pretrain", "--root", str(lab.world)], "demo": ["demo", "--out", str(out), "--no-progress"],
            "ablate": ["ablate", str(_grid(lab, tmp_path)), "--out", str(out)]}[command]
    disconnected = []
    if command == "train":
        monkeypatch.setattr(train.Trainer, "fit", stop)
    elif command == "cache":
        monkeypatch.setattr(run, "build_caches", stop)
    elif command == "eval":
        monkeypatch.setattr(evaluate, "metric_rows", stop)
    elif command == "world":
        import glscl.data.world as world
        monkeypatch.setattr(world, "generate_world", stop)
    elif command == "pretrain":
        monkeypatch.setattr(pretrain, "pretrain_clip", stop)
    elif command == "demo":
        monkeypatch.setattr(demo, "prepare_embedded", stop)
    else:  # the grid's Ray instance is replaced by a stand-in that records its shutdown
        monkeypatch.setattr(cluster, "connect", lambda *a, **k: True)
        monkeypatch.setattr(cluster, "disconnect", lambda: disconnected.append(True))
        monkeypatch.setattr(cluster, "resources_per_run", lambda *a: (1.0, 0.0))
        monkeypatch.setattr(cluster, "run_all", stop)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C is Ctrl-C, however pytest was started
    try:
        assert main(argv) == status
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert "Traceback" not in err and _last_line(err).startswith(f"glscl {command}: interrupted")
    if command not in ("eval", "pretrain"):
        assert _last_line(err) == f"glscl {command}: interrupted; rerun the same command to resume"
    assert _leftovers(out / "x") == [] if out.exists() else True
    assert disconnected == ([True] if command == "ablate" else [])
    assert _snapshot(lab.done) == lab.snapshot


# ----------------------------------------------------------------------------- OS errors name the file


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left on the device"), (errno.EROFS, "read-only file system"),
                                         (errno.EACCES, "permission denied")], ids=["full-disk", "read-only", "permission"])
def test_a_failed_write_names_the_file(lab, capsys, tmp_path, monkeypatch, code, words):
    from glscl.engine import results_folder

    def refuse(cfg, path):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(results_folder, "save_config", refuse)
    out = tmp_path / "runs"
    _fails(capsys, lab, _train(lab, f"out_dir={out}", name="nowhere"), [f"{out / 'nowhere' / 'config.yaml'}: {words}"])
    assert _leftovers(out / "nowhere") == []


def test_a_full_disk_during_a_checkpoint_save_names_the_file(lab, capsys, tmp_path, monkeypatch):
    from safetensors import SafetensorError

    from glscl.engine import checkpoint

    def full(model, path):
        Path(path).write_bytes(b"\0" * 10)  # a part was written
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')
    monkeypatch.setattr(checkpoint, "save_model", full)
    out = tmp_path / "runs"
    _fails(capsys, lab, _train(lab, f"out_dir={out}", name="full"),
           [f"{out / 'full' / 'checkpoints' / 'last' / 'model.safetensors'}: no space left on the device"])
    assert _leftovers(out / "full") == [] and not (out / "full" / "checkpoints" / "last" / "model.safetensors").exists()


# ----------------------------------------------------------------------------- resource guards


@pytest.mark.parametrize("override, words", [
    ("model.num_queries=100000", ["model.num_queries=100000", "of memory", "lower model.num_queries"]),
    ("model.num_frames=100000", ["model.num_frames=100000", "of memory", "lower model.num_frames"]),
], ids=["queries", "frames"])
def test_a_config_too_big_for_this_machine_is_refused_before_allocating(lab, capsys, override, words):
    _fails(capsys, lab, _train(lab, override, name="huge"), words, fresh="huge")


def test_an_absurd_world_is_refused_before_anything_is_written(lab, capsys, tmp_path):
    t0 = time.time()
    _fails(capsys, lab, ["world", "--root", str(tmp_path / "w"), f"n_train={10 ** 12}"], ["n_train=1000000000000", "on disk"])
    assert time.time() - t0 < 10 and not (tmp_path / "w").exists()


# ----------------------------------------------------------------------------- smaller faults


def test_a_grid_value_of_the_wrong_type_stops_the_grid_before_ray(lab, capsys, tmp_path, monkeypatch):
    from glscl.lab.grids import cluster
    monkeypatch.setattr(cluster, "connect", lambda *a, **k: pytest.fail("Ray started"))
    grid = _grid(lab, tmp_path, values="[1, two]")
    for extra in (["--dry-run"], []):
        _fails(capsys, lab, ["ablate", str(grid), "--out", str(tmp_path / "grid"), *extra],
               [str(grid), "num_queries=two,seed=0", "model.num_queries = 'two'", "expected int"])
    assert not (tmp_path / "grid").exists()


def test_an_override_is_blamed_on_key_value_not_on_the_config_file(lab, capsys):
    line = _fails(capsys, lab, _train(lab, "train.epochs=0"), ["train.epochs=0: train.epochs = 0 is out of range"])
    assert str(lab.config) not in line


def _similarity(kind: str, path: Path, marker: Path) -> None:
    good = torch.load(path, weights_only=True)
    if kind == "corrupt":
        path.write_bytes(b"\x00garbage" * 20)
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "wrong-shape":
        torch.save(good[:, :3].clone(), path)
    else:
        torch.save({"sim": fx.Hostile(marker)}, path)


@pytest.mark.parametrize("kind, words", [
    ("corrupt", ["test_similarity.pt: cannot be read"]), ("truncated", ["test_similarity.pt: cannot be read"]),
    ("wrong-shape", ["test_similarity.pt: not this run's test similarity", "got shape"]),
    ("pickled", ["test_similarity.pt is a pickle", "refused unread"]),
])
def test_eval_of_a_broken_similarity_file_is_one_line(lab, capsys, tmp_path, kind, words):
    folder, _ = _copy_of_done(lab, tmp_path)
    marker = tmp_path / "pwned"
    _similarity(kind, folder / "test_similarity.pt", marker)
    _fails(capsys, lab, ["eval", str(folder)], words)
    assert not marker.exists()


def test_eval_errors_name_the_missing_folder_or_file(lab, capsys, tmp_path):
    _fails(capsys, lab, ["eval", str(tmp_path / "nowhere")], [f"{tmp_path / 'nowhere'}: no such results folder"])
    folder, _ = _copy_of_done(lab, tmp_path)
    (folder / "test_similarity.pt").unlink()
    _fails(capsys, lab, ["eval", str(folder)], [f"{folder / 'test_similarity.pt'}: missing", "not finished"])


def test_the_grid_driver_builds_no_cache_with_a_random_backbone(lab, monkeypatch):
    from glscl.engine import run as run_module
    from glscl.lab.grids import runner
    built = []
    monkeypatch.setattr(run_module, "build_caches", lambda cfg, *a, **k: built.append(cfg.model.pretrained))
    random_cfg = build_config(lab.cfg, {"model.pretrained": None})
    runner.prepare_inputs([random_cfg], prepare_world=False, quick=False, progress=False)
    assert built == []
    runner.prepare_inputs([lab.cfg], prepare_world=False, quick=False, progress=False)
    assert built == [lab.cfg.model.pretrained]


def test_ray_token_warning_is_hidden_for_a_local_instance(monkeypatch, capsys):
    pytest.importorskip("ray")
    import ray
    from ray._private.authentication import authentication_token_setup as auth

    from glscl.lab.grids import cluster
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **k: auth._warn_token_auth_enabled())
    logger = logging.getLogger(auth.__name__)
    monkeypatch.setattr(logger, "level", logger.level)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        cluster.connect(None, num_cpus=1)
    finally:
        logger.removeHandler(handler)
    assert records == []


@pytest.mark.parametrize("deaths, status", [(1, "ok"), (2, "failed")], ids=["retried", "dead-twice"])
def test_a_dead_kernel_is_retried_once_then_recorded_as_failed(tmp_path, monkeypatch, deaths, status):
    import papermill
    from nbclient.exceptions import DeadKernelError

    from glscl.engine.record import read_record, update_record
    from glscl.lab.grids import cluster
    from glscl.lab.grids.spec import RunSpec
    calls = []

    def execute(notebook, out_nb, parameters, **kw):
        calls.append(out_nb)
        if len(calls) <= deaths:
            raise DeadKernelError("Kernel died")
        update_record(Path(parameters["out_dir"]) / parameters["name"], status="ok", **{"t2v_R@1": 1.0}, run_s=0.1)
    monkeypatch.setattr(papermill, "execute_notebook", execute)
    monkeypatch.setattr(cluster, "_take_resources", lambda: (1.0, 1, ""))
    run = RunSpec(run_id="r", values={}, overrides={}, seed=0)
    assert cluster.execute_run(run, str(tmp_path), "nb.ipynb", "embedded", False, str(tmp_path), {}, "f")[1] == status
    info = read_record(tmp_path / "runs" / "r")
    assert len(calls) == 2 and info["status"] == status and info["attempt"] == 1 and info["wall_s"] > 0
    if status == "failed":
        assert "the kernel died 2 times" in info["error"]
    assert "the kernel died" in (tmp_path / "logs" / "r.log").read_text()
