"""Rehearsal at MSR-VTT's scale on this machine: data check, feature cache and one epoch from the cache.

    nice -n 10 python benchmarks/rehearsal_msrvtt.py               # 10,000 videos (9k / 1k-A), 20 captions each
    nice -n 10 python benchmarks/rehearsal_msrvtt.py --videos 2000  # a smaller rehearsal, same shape

1. The world generator writes ``--videos`` clips (12 s at 1 fps, 64 px) under ``<root>/world``.
2. Around them this script writes an MSR-VTT-shaped dataset in ``<root>/msrvtt``: ``MSRVTT_data.json``
   (every video listed, 20 captions each: the world's caption and 19 rewordings of it),
   ``MSRVTT_train.9k.csv`` (90 % of the videos), ``MSRVTT_JSFUSION_test.csv`` (the other 10 %, one caption
   each, as 1k-A) and ``videos/`` (a link to the world's videos).
3. It runs, each as its own ``glscl`` process: ``glscl data check``, ``glscl cache`` and ``glscl train`` for
   one epoch from the cache, with the msrvtt preset on the package's tiny backbone (``glscl-tiny``, random
   weights saved to a file so both see the same ones: this measures the pipeline, not retrieval quality).
   The data check runs twice: the second finds every probe in its probe cache. ``--max-steps N`` stops
   the epoch after N steps and extrapolates its time (``epoch_extrapolated``: the mean seconds per step,
   which the first steps' cold reads of the memory-mapped cache inflate, so an overestimate).

It writes ``benchmarks/results/rehearsal_msrvtt.json``: per step the command, wall time and the peak
resident memory of the ``glscl`` process (its DataLoader workers not included), the disk taken by videos,
annotations and the cache, and the machine. ``--root`` is removed first, so every figure is from scratch.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from glscl.engine.record import read_record  # noqa: E402
from glscl.files import write_text  # noqa: E402

CAPTIONS_PER_VIDEO = 20
# 19 rewordings of a world caption, so every video has 20 distinct captions as in MSR-VTT
REWORDINGS = ("a clip where {}", "in this video {}", "we see that {}", "here {}", "the camera shows that {}",
              "on a black background {}", "a short video: {}", "footage in which {}", "{} in a short clip",
              "{} on screen", "{} in this footage", "watch as {}", "it shows how {}", "look: {}", "{} as we watch",
              "an animation where {}", "somebody filmed how {}", "a scene in which {}, seen from above and shown for "
              "a few seconds on a plain black background with nothing else moving around it at all", "{} here")


def write_msrvtt_layout(world: Path, folder: Path) -> dict:
    """MSR-VTT's annotation files around the world's videos (see the module docstring); returns the counts."""
    from glscl.data.world import load_world

    videos = sorted(load_world(world).videos, key=lambda v: int(v.video_id.removeprefix("video")))
    folder.mkdir(parents=True, exist_ok=True)
    n_test = len(videos) // 10
    train, test = videos[:-n_test], videos[-n_test:]
    sentences = [{"video_id": v.video_id, "caption": text, "sen_id": 0}
                 for v in videos for text in (v.caption, *(r.format(v.caption) for r in REWORDINGS))]
    for i, s in enumerate(sentences):
        s["sen_id"] = i
    data = {"videos": [{"video_id": v.video_id, "id": i} for i, v in enumerate(videos)], "sentences": sentences}
    (folder / "MSRVTT_data.json").write_text(json.dumps(data))
    with open(folder / "MSRVTT_train.9k.csv", "w", newline="") as f:
        csv.writer(f).writerows([["video_id"], *([v.video_id] for v in train)])
    with open(folder / "MSRVTT_JSFUSION_test.csv", "w", newline="") as f:
        csv.writer(f).writerows([["key", "vid_key", "video_id", "sentence"],
                                 *([f"ret{i}", f"msr{i}", v.video_id, v.caption] for i, v in enumerate(test))])
    link = folder / "videos"
    if not link.exists():
        link.symlink_to((world / "videos").resolve())
    return {"videos": len(videos), "train_videos": len(train), "test_videos": len(test), "captions": len(sentences)}


def timed(name: str, argv: list[str], log: Path) -> dict:
    """Run one ``glscl`` command as a child process: wall seconds, exit status and the child's peak RSS."""
    cmd = [sys.executable, "-m", "glscl.cli", *argv]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    print(f"[{name}] glscl {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    print(f"[{name}] exit {code}, {seconds:.0f} s, peak RSS {usage.ru_maxrss / 2**20:.2f} GiB; log {log}", flush=True)
    return {"command": "glscl " + " ".join(argv), "exit": code, "wall_s": round(seconds, 1),
            "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3)}


def disk(path: Path) -> int:
    """Bytes of the files under ``path`` (links not followed)."""
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) if path.exists() else 0


def _extrapolate(record: dict, counts: dict, max_steps: int) -> dict | None:
    """A whole epoch's training time from the steps run: seconds per step x steps per epoch (batch 128)."""
    if not record.get("train_steps") or not max_steps:
        return None
    per_step = record["train_s"] / record["train_steps"]
    steps = (counts["train_videos"] - 100) * CAPTIONS_PER_VIDEO // 128  # data.val_size = 100 videos carved for validation
    return {"s_per_step": round(per_step, 2), "steps_per_epoch": steps, "epoch_s": round(per_step * steps),
            "measured_steps": record["train_steps"]}


def _config(root: Path) -> list[str]:
    """The ``glscl`` config arguments of every step: the msrvtt preset on the tiny backbone, from the cache."""
    return ["--config", "msrvtt", f"data.root={root / 'msrvtt'}", f"data.cache_dir={root / 'cache'}",
            "model.backbone=glscl-tiny", f"model.pretrained={root / 'clip-tiny-random.safetensors'}",
            "model.freeze_backbone=true", f"out_dir={root / 'runs'}", "name=rehearsal", "data.num_workers=1"]


def _train(root: Path, max_steps: int) -> dict:
    """The training step: one epoch from the cache (cut at ``max_steps`` when > 0)."""
    steps = ["train.epochs=1", *([f"train.max_steps={max_steps}"] if max_steps else []), "--no-resume"]
    return timed("train", ["train", *_config(root), *steps], root / "logs" / "train.log")


def _train_figures(root: Path, counts: dict, max_steps: int) -> dict:
    record = read_record(root / "runs" / "rehearsal")  # the run's one record ({} when there is none)
    return {"train": {k: record.get(k) for k in ("train_steps", "cache_s", "train_s", "eval_s")},
            "epoch_extrapolated": _extrapolate(record, counts, max_steps)}


def train_only(args) -> dict:
    """Rerun the training step on what an earlier full rehearsal left under ``--root``; update ``--out``."""
    root, out = Path(args.root).resolve(), Path(args.out)
    result = json.loads(out.read_text())
    shutil.rmtree(root / "runs", ignore_errors=True)
    result["steps"]["train_one_epoch"] = _train(root, args.max_steps)
    result.update(_train_figures(root, result["scale"], args.max_steps))
    result["train_command"] = ("nice -n 10 python benchmarks/rehearsal_msrvtt.py --train-only"
                               + (f" --max-steps {args.max_steps}" if args.max_steps else ""))
    result["machine"]["load_average_after_train"] = os.getloadavg()
    write_text(out, json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10_000, help="videos in all (90 %% train, 10 %% test)")
    parser.add_argument("--root", default="runs/rehearsal-msrvtt", help="working folder (world, dataset, cache, runs)")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="stop the epoch after this many steps and extrapolate its time from them (0: the whole epoch)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "rehearsal_msrvtt.json"))
    parser.add_argument("--train-only", action="store_true",
                        help="rerun only the training step on the world and cache already under --root; updates its entries in --out")
    args = parser.parse_args(argv)
    if args.train_only:
        return train_only(args)
    import torch

    from glscl.data.world import WorldConfig, generate_world
    from glscl.model.backbone import create_backbone, save_backbone

    root = Path(args.root).resolve()
    shutil.rmtree(root, ignore_errors=True)  # every figure from scratch
    n_test = args.videos // 10
    world_cfg = WorldConfig(n_train=args.videos - n_test, n_val=0, n_test=n_test, frames=12, size=64)
    start = time.perf_counter()
    generate_world(root / "world", world_cfg, progress=True)
    world_s = time.perf_counter() - start
    counts = write_msrvtt_layout(root / "world", root / "msrvtt")
    torch.manual_seed(0)  # random weights, saved once: the cache and the training run must see the same ones
    weights = root / "clip-tiny-random.safetensors"
    save_backbone(create_backbone("glscl-tiny", None), weights)
    config = _config(root)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    check = ["data", "check", *config, "--workers", "2", "--out", str(root / "check")]
    steps = {"data_check": timed("data check", check, logs / "data_check.log"),
             "data_check_again": timed("data check, probe cache kept", check, logs / "data_check_again.log"),
             "cache": timed("cache", ["cache", *config], logs / "cache.log"),
             "train_one_epoch": _train(root, args.max_steps)}
    result = {
        "command": "nice -n 10 python benchmarks/rehearsal_msrvtt.py" + (f" --videos {args.videos}" if args.videos != 10_000 else ""),
        "scale": {**counts, "captions_per_video": CAPTIONS_PER_VIDEO, "world": {"frames": 12, "size": 64, "fps": 1}},
        "world_generation_s": round(world_s, 1),
        "steps": steps,
        **_train_figures(root, counts, args.max_steps),
        "disk_bytes": {"videos": disk(root / "world" / "videos"), "annotations": disk(root / "msrvtt"),
                       "feature_cache": disk(root / "cache"), "probe_cache_and_report": disk(root / "check")},
        "data_check_report": json.loads((root / "check" / "report.json").read_text()).get("splits")
        if (root / "check" / "report.json").is_file() else None,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average_at_end": os.getloadavg(),
                    "note": "2 cores shared with other work; run under nice -n 10"},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
