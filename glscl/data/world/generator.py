"""Drawing a world (``sample_world``), writing it in MSR-VTT's layout (``generate_world``), reading it back."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from glscl.data.adapters.msrvtt import CAPTIONS_FILE, TEST_FILE, TRAIN_FILE, VAL_FILE
from glscl.data.splits import SPLITS
from glscl.data.world.placement import place
from glscl.data.world.render import render_clip
from glscl.data.world.scenes import sample_scenes_clip, sample_scenes_evaluation, training_scene_captions
from glscl.data.world.specs import (
    COLOURS,
    DISK_SPLITS,
    KINDS,
    MOTIONS,
    SHAPES,
    SIZES,
    ClipSpec,
    ObjectSpec,
    World,
    WorldCaption,
    WorldConfig,
    WorldVideo,
    reverse_clip,
    speed_for,
)
from glscl.files import write_text
from glscl.progress import progress_bar

MP4_PARAMS = ("-crf", "4", "-threads", "1", "-movflags", "+faststart")  # near-lossless, one thread per file
WORLD_FORMAT = "glscl-world/2"  # 2: several captions per video, segments, caption frames
WORLD_FILE = "world.json"  # the config and every clip's spec; written last, so its presence means complete
IN_PROGRESS = ".world-in-progress"  # marker present while generate_world writes a world


# ----------------------------------------------------------------------------- sampling


def _sample_clip(rng: np.random.Generator, cfg: WorldConfig, kind: str) -> ClipSpec:
    """A random objects-world clip of this caption kind (appearances of all its objects distinct).

    single / while: one / two objects move for the whole clip. then: one object moves for part of
    the clip and a second, still one appears or disappears at frame ``change``, strictly after the
    motion ends or before it starts (which comes first is drawn), so "A, then B" means B after A.
    """
    n_named = 1 if kind == "single" else 2
    all_looks = cfg.looks
    looks = [all_looks[i] for i in rng.choice(len(all_looks), n_named + cfg.distractors, replace=False)]
    motions = list(MOTIONS)
    change = int(rng.integers(2, cfg.frames - 1)) if kind == "then" else cfg.frames
    motion_first = bool(rng.random() < 0.5)
    objects = []
    for i, (shape, colour, size) in enumerate(looks):
        moving = i == 0 or (i == 1 and kind == "while")
        motion = motions[rng.integers(len(motions))] if moving else None
        visible_from, visible_to, moves_from, moves_to, span = 0, cfg.frames, 0, None, cfg.frames
        if i == 0 and kind == "then":
            moves_from, moves_to = (0, change) if motion_first else (change, None)
            span = change if motion_first else cfg.frames - change
        if i == 1 and kind == "then":
            visible_from, visible_to = (change, cfg.frames) if rng.random() < 0.5 else (0, change)
        speed = speed_for(span, cfg.size) if moving else 0
        objects.append(ObjectSpec(shape, colour, size, motion, 0, 0, speed, visible_from, visible_to, moves_from, moves_to))
    return ClipSpec(kind, place(rng, objects, cfg))


def _vary_one_detail(rng: np.random.Generator, clip: ClipSpec, cfg: WorldConfig) -> ClipSpec | None:
    """The clip with one captioned detail changed (new positions), or None if the change makes two
    objects look alike."""
    options = [(i, attr) for i in range(clip.n_named) for attr in ("shape", "colour", "size", "motion")
               if attr != "motion" or clip.objects[i].motion]
    if clip.kind == "then":
        options.append((1, "event"))
    index, attr = options[rng.integers(len(options))]
    obj = clip.objects[index]
    if attr == "event":
        changed = replace(obj, visible_from=0, visible_to=obj.visible_from) if obj.visible_from > 0 \
            else replace(obj, visible_from=obj.visible_to, visible_to=cfg.frames)
    else:
        values = {"shape": SHAPES[:cfg.shapes], "colour": tuple(COLOURS)[:cfg.colours], "size": SIZES,
                  "motion": tuple(MOTIONS)}[attr]
        others = [v for v in values if v != getattr(obj, attr)]
        changed = replace(obj, **{attr: others[rng.integers(len(others))]})
    objects = list(clip.objects)
    objects[index] = changed
    if len({o.appearance for o in objects}) < len(objects):
        return None
    return ClipSpec(clip.kind, place(rng, objects, cfg))


def _random_kind(rng: np.random.Generator, cfg: WorldConfig) -> str:
    kinds = KINDS if cfg.max_objects == 2 else ("single",)
    return kinds[rng.integers(len(kinds))]


def _sample_evaluation_clips(rng: np.random.Generator, cfg: WorldConfig,
                             n: int) -> list[tuple[ClipSpec, int | None, int | None]]:
    """n clips with distinct captions: (clip, index of its twin, index of the clip it varies).

    About twin_share * n clips form reversed twin pairs ("then" clips when two objects are allowed:
    the order of appearing is the probe), about detail_share * n vary one detail of an earlier clip.
    """
    n_pairs = min(round(cfg.twin_share * n / 2), n // 2)
    n_detail = min(round(cfg.detail_share * n), max(0, n - 2 * n_pairs - 1))
    n_plain = n - 2 * n_pairs - n_detail
    items: list[tuple[ClipSpec, int | None, int | None]] = []
    captions: set[str] = set()
    budget = 1000 + 100 * n
    while len(items) < n:
        budget -= 1
        if budget < 0:
            raise RuntimeError(f"could not draw {n} clips with distinct captions; "
                               "lower n_val/n_test or raise max_objects")
        if len(items) < 2 * n_pairs:
            clip = _sample_clip(rng, cfg, "then" if cfg.max_objects == 2 else "single")
            twin = reverse_clip(clip, cfg.frames)
            if clip.caption in captions or twin.caption in captions or clip.caption == twin.caption:
                continue
            first = len(items)
            items += [(clip, first + 1, None), (twin, first, None)]
            captions |= {clip.caption, twin.caption}
            continue
        if len(items) < 2 * n_pairs + n_plain:
            clip, base = _sample_clip(rng, cfg, _random_kind(rng, cfg)), None
        else:
            base = int(rng.integers(len(items)))
            clip = _vary_one_detail(rng, items[base][0], cfg)
        if clip is not None and clip.caption not in captions:
            items.append((clip, None, base))
            captions.add(clip.caption)
    return items


def _one_caption(clip: ClipSpec, frames: int) -> tuple[WorldCaption, ...]:
    """The objects world's one caption, about the whole clip."""
    return (WorldCaption(clip.caption, clip.kind, (0, frames)),)


def sample_world(cfg: WorldConfig) -> list[WorldVideo]:
    """All videos of the world described by cfg, without writing anything (deterministic in cfg).

    Ids are "video0", "video1", ... : training videos first, then validation, then test; in the
    objects world the order inside each evaluation split is shuffled so twins and variants are not neighbours.
    """
    rng = np.random.default_rng(cfg.seed)
    if cfg.kind == "scenes":
        videos = []
        for i in range(cfg.n_train):
            clip = sample_scenes_clip(rng, cfg)
            videos.append(WorldVideo(f"video{i}", "train", clip, training_scene_captions(rng, clip, cfg.then_share)))
        for split, n in (("val", cfg.n_val), ("test", cfg.n_test)):
            for clip, chosen in sample_scenes_evaluation(rng, cfg, n):
                videos.append(WorldVideo(f"video{len(videos)}", split, clip, chosen))
        return videos
    videos = []
    for i in range(cfg.n_train):
        clip = _sample_clip(rng, cfg, _random_kind(rng, cfg))
        videos.append(WorldVideo(f"video{i}", "train", clip, _one_caption(clip, cfg.frames)))
    for split, n in (("val", cfg.n_val), ("test", cfg.n_test)):
        items = _sample_evaluation_clips(rng, cfg, n)
        order = rng.permutation(n)
        new_position = {int(old): new for new, old in enumerate(order)}
        ids = [f"video{len(videos) + new_position[i]}" for i in range(n)]
        for old in order:
            clip, twin, base = items[old]
            videos.append(WorldVideo(ids[old], split, clip, _one_caption(clip, cfg.frames),
                                     ids[twin] if twin is not None else None,
                                     ids[base] if base is not None else None))
    return videos


# ----------------------------------------------------------------------------- writing


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float) -> None:
    """Writes (T, H, W, 3) uint8 frames (H, W even) as H.264 yuv420p mp4 at fps frames per second, near-lossless
    (crf 4; the 2x2 chroma subsampling of yuv420p leaves under 1/255 mean error, at colour edges).

    Runs imageio-ffmpeg's ffmpeg binary directly with the raw frames on stdin: imageio's writer
    starts ffmpeg through a pre-exec hook, which forces a full fork of the calling process, about
    3x slower per video once torch is loaded.
    """
    height, width = frames.shape[1:3]
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
               "-c:v", "libx264", "-pix_fmt", "yuv420p", *MP4_PARAMS, str(path)]
    done = subprocess.run(command, input=np.ascontiguousarray(frames, np.uint8).tobytes(), capture_output=True)
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise RuntimeError(f"{path}: ffmpeg failed ({reason[0]})")


def _csv_text(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue()


def _stored_config(root: Path) -> dict | None:
    meta = root / WORLD_FILE
    if not meta.exists():
        return None
    stored = json.loads(meta.read_text())
    return stored["config"] if stored.get("format") == WORLD_FORMAT else None


def generate_world(root: str | os.PathLike, cfg: WorldConfig = WorldConfig(), progress: bool = True,
                   workers: int = 2) -> Path:
    """Writes the world described by cfg under root (MSR-VTT layout, see the module docstring).

    Idempotent: returns at once when root/world.json holds the same config. Resumable: each video is
    written as soon as it is drawn (to a temporary name, then renamed), and the in-progress marker
    holds the config, so a rerun after a kill keeps the finished videos of the same config and
    writes the rest. world.json is written last (atomically), so a killed run never leaves one
    claiming a complete world. Refuses (FileExistsError) to write into a non-empty folder that is
    not a world. ``workers`` mp4 files are encoded at once (each by its own ffmpeg process).
    """
    root = Path(root)
    config = asdict(cfg)
    if _stored_config(root) == config:
        return root
    marker = root / IN_PROGRESS
    if root.exists() and any(root.iterdir()) and not ((root / WORLD_FILE).exists() or marker.exists()):
        raise FileExistsError(f"{root} is not empty and holds no generated world; refusing to write into it")
    root.mkdir(parents=True, exist_ok=True)
    resuming = marker.is_file() and _marker_config(marker) == config
    (root / WORLD_FILE).unlink(missing_ok=True)
    if not resuming:
        shutil.rmtree(root / "videos", ignore_errors=True)
        write_text(marker, json.dumps(config))
    (root / "videos").mkdir(exist_ok=True)
    for partial in (root / "videos").glob("*.partial-*.mp4"):  # a write a kill cut short
        partial.unlink()

    videos = sample_world(cfg)
    todo = [v for v in videos if not (root / "videos" / f"{v.video_id}.mp4").is_file()]

    def write(video: WorldVideo) -> None:
        final = root / "videos" / f"{video.video_id}.mp4"
        partial = final.with_name(f"{video.video_id}.partial-{os.getpid()}.mp4")
        write_mp4(partial, render_clip(video.clip, cfg), cfg.fps)
        os.replace(partial, final)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        bar = progress_bar(total=len(videos), initial=len(videos) - len(todo), desc="writing world videos", unit="video",
                           enabled=progress)
        for _ in pool.map(write, todo):
            bar.update()
        bar.close()

    _write_msrvtt_files(root, videos)
    meta = {"format": WORLD_FORMAT, "config": config, "videos": [v.to_json(cfg.frames) for v in videos]}
    meta["twin_pairs"] = [list(pair) for pair in World(root, cfg, tuple(videos)).twin_pairs]
    write_text(root / WORLD_FILE, json.dumps(meta, indent=1))
    marker.unlink()
    return root


def _marker_config(marker: Path) -> dict | None:
    """The config an interrupted generate_world was writing (None if the marker cannot be read)."""
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


def _write_msrvtt_files(root: Path, videos: Sequence[WorldVideo]) -> None:
    """The files the MSR-VTT adapter reads: captions and splits (split names as MSR-VTT's, see ``DISK_SPLITS``).

    Every caption of every video goes to MSRVTT_data.json; the test CSV has one row per test caption."""
    data = {
        "videos": [{"video_id": v.video_id, "split": DISK_SPLITS[v.split], "id": i} for i, v in enumerate(videos)],
        "sentences": [{"video_id": v.video_id, "caption": c.text, "sen_id": i}
                      for i, (v, c) in enumerate((v, c) for v in videos for c in v.captions)],
    }
    write_text(root / CAPTIONS_FILE, json.dumps(data, indent=1))
    ids = {split: [[v.video_id] for v in videos if v.split == split] for split in SPLITS}
    write_text(root / TRAIN_FILE, _csv_text(["video_id"], ids["train"]))
    write_text(root / VAL_FILE, _csv_text(["video_id"], ids["val"]))
    test = [(v, c) for v in videos if v.split == "test" for c in v.captions]
    rows = [[f"ret{i}", v.video_id.replace("video", "msr"), v.video_id, c.text] for i, (v, c) in enumerate(test)]
    header = ["key", "vid_key", "video_id", "sentence"]
    write_text(root / TEST_FILE, _csv_text(header, rows))


# ----------------------------------------------------------------------------- reading


def load_world(root: str | os.PathLike) -> World:
    """Reads root/world.json (written last by generate_world, so its presence means complete)."""
    root = Path(root)
    meta = root / WORLD_FILE
    if not meta.exists():
        raise FileNotFoundError(f"{meta} not found: no complete world here (run generate_world)")
    stored = json.loads(meta.read_text())
    if stored.get("format") != WORLD_FORMAT:
        raise ValueError(f"{meta}: format {stored.get('format')!r}, expected {WORLD_FORMAT!r}")
    try:
        videos = tuple(WorldVideo.from_json(v) for v in stored["videos"])
    except ValueError as err:
        raise ValueError(f"{meta}: {err}") from None
    return World(root, WorldConfig(**stored["config"]), videos)


def frame_caption_samples(world_root: str | os.PathLike,
                          splits: Sequence[str] = ("train",)) -> list[tuple[str, int, str]]:
    """(video id, frame index, caption of that frame) for every frame of the videos of these
    splits (names from ``SPLITS``): image-text pairs for frame-level pre-training (training
    videos only by default)."""
    unknown = [split for split in splits if split not in SPLITS]
    if unknown or isinstance(splits, str):
        wrong = splits if isinstance(splits, str) else unknown[0]
        raise ValueError(f"frame_caption_samples: splits must be a sequence of {', '.join(SPLITS)}; got {wrong!r}")
    world = load_world(world_root)
    return [(v.video_id, t, v.clip.frame_caption(t))
            for v in world.videos if v.split in splits for t in range(world.config.frames)]


