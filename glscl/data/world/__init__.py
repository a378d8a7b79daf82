"""The embedded procedural video world: short real mp4 clips of moving shapes, with captions.

Every clip shows shapes {circle, square, triangle} x colours {red, green, blue, yellow} x sizes
{small, large} on a black background. Caption kinds:

- ``single``: one object moves: "a small red circle moves left";
- ``while``: two objects move at the same time: "a large blue square moves up while a small red
  circle moves left" (the two parts in sorted order, so one scene has one caption);
- ``then``: one object moves and a second, still one appears or disappears part-way:
  "a small red circle moves up, then a large blue square appears".

Distractors are extra still objects that no caption names, so every moving object is named.

Evaluation splits (validation and test) hold two kinds of probe:

- time-reversed twins: a clip and its twin show the same frames in opposite order; their captions
  differ ("appears" <-> "disappears", every motion reversed). An order-blind model cannot tell them
  apart, so its twin accuracy (see ``twin_accuracy``) is 50 %;
- one-detail variants (hard negatives): a caption equal to another clip's caption but for one
  word (shape, colour, size, direction, or appears/disappears).

Captions of one evaluation split are unique: a draw whose caption is already in the split is drawn
again, so each test caption names exactly one video of its split. (A "single" caption can still
be partly true of a richer clip: "a red circle moves up" of "a red circle moves up, then ...".)
Training captions may repeat, as in real datasets.

The world is written in MSR-VTT's native layout, so the MSR-VTT adapter reads it unchanged:
``MSRVTT_data.json``, ``MSRVTT_train.9k.csv``, ``MSRVTT_val.csv``, ``MSRVTT_JSFUSION_test.csv``,
``videos/{video_id}.mp4``, plus ``world.json``: the config, every clip's objects, kind, twin and
per-frame captions (what one frame shows, for frame-level "CLIP pre-training").
Frame t of a clip is second t of its video (``fps`` = 1 by default), so sampling at 1 fps sees
every frame.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from tqdm.auto import tqdm

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}
SIZES = ("small", "large")
MOTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # (column, row) step
REVERSED_MOTION = {"left": "right", "right": "left", "up": "down", "down": "up"}
KINDS = ("single", "while", "then")
SPLITS = ("train", "validate", "test")  # MSR-VTT's split names

RADIUS_SHARE = {"small": 0.09, "large": 0.17}  # object radius / frame size
TRAVEL_SHARE = 0.4  # how far a moving object travels over a clip, as a share of the frame size
MP4_PARAMS = ("-crf", "4", "-threads", "1", "-movflags", "+faststart")  # near-lossless, one thread per file
WORLD_FORMAT = "glscl-world/1"
IN_PROGRESS = ".world-in-progress"  # marker present while generate_world writes a world
NUM_SINGLE_CAPTIONS = len(SHAPES) * len(COLOURS) * len(SIZES) * len(MOTIONS)


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a world; the same config always gives the same files.

    n_train, n_val, n_test: videos per split. frames: frames per clip (one per second at fps=1).
    size: frame side in pixels (a multiple of 16, so the mp4 encoder never resizes).
    max_objects: named objects per clip, 1 or 2 (1 allows only "single" captions).
    distractors: unnamed still objects per clip (0-2). detail_share: share of each evaluation split
    that are one-detail variants of another clip of the split. twin_share: share of each
    evaluation split that belongs to a time-reversed twin pair. seed: the random seed.
    """

    n_train: int = 600
    n_val: int = 100
    n_test: int = 200
    frames: int = 8
    size: int = 64
    fps: float = 1
    max_objects: int = 2
    distractors: int = 0
    detail_share: float = 0.3
    twin_share: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            wanted = (int, float) if f.type == "float" else (int,)
            if isinstance(value, bool) or not isinstance(value, wanted):
                raise ValueError(f"WorldConfig.{f.name} must be of type {f.type}, got {value!r}")
        _require(self.n_train >= 1, "n_train", "must be >= 1")
        _require(self.n_val >= 0, "n_val", "must be >= 0")
        _require(self.n_test >= 1, "n_test", "must be >= 1")
        _require(self.frames >= 2, "frames", "must be >= 2 (motion needs two frames)")
        _require(self.size >= 32 and self.size % 16 == 0, "size", "must be a multiple of 16 and >= 32")
        _require(self.fps > 0, "fps", "must be > 0")
        _require(self.max_objects in (1, 2), "max_objects", "must be 1 or 2 (captions name at most two objects)")
        _require(0 <= self.distractors <= 2, "distractors", "must be in [0, 2] (more rarely fit without overlaps)")
        _require(0.0 <= self.detail_share <= 1.0, "detail_share", "must be in [0, 1]")
        _require(0.0 <= self.twin_share <= 1.0, "twin_share", "must be in [0, 1]")
        _require(self.detail_share + self.twin_share <= 1.0, "detail_share", "plus twin_share must be <= 1")
        _require(self.seed >= 0, "seed", "must be >= 0")
        room = self.size - 3 - 2 * object_radius("large", self.size)
        _require(self.speed * (self.frames - 1) <= room, "frames",
                 f"too many for size={self.size}: a large object moving {self.speed} px/frame leaves the frame")
        if self.max_objects == 1:
            for name in ("n_val", "n_test"):
                _require(getattr(self, name) <= NUM_SINGLE_CAPTIONS, name,
                         f"must be <= {NUM_SINGLE_CAPTIONS} with max_objects=1 (distinct single-object captions)")

    @property
    def speed(self) -> int:
        """Pixels per frame of a moving object: round(TRAVEL_SHARE * size / (frames - 1)), at least 1."""
        return max(1, round(TRAVEL_SHARE * self.size / (self.frames - 1)))


def _require(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ValueError(f"WorldConfig.{name} {message}")


def object_radius(size_name: str, frame_size: int) -> int:
    """Radius in pixels of the circle every shape of this size fits in."""
    return max(2, round(RADIUS_SHARE[size_name] * frame_size))


@dataclass(frozen=True)
class ObjectSpec:
    """One shape. Its centre at frame t is (x, y) + speed * t * step(motion) in pixels (y grows
    downwards; motion None: it stands still); it is drawn in frames visible_from <= t < visible_to."""

    shape: str
    colour: str
    size: str
    motion: str | None
    x: int
    y: int
    speed: int
    visible_from: int
    visible_to: int

    @property
    def noun(self) -> str:
        return f"a {self.size} {self.colour} {self.shape}"

    @property
    def appearance(self) -> tuple[str, str, str]:
        return (self.shape, self.colour, self.size)

    def centre(self, t: int) -> tuple[int, int]:
        dx, dy = MOTIONS[self.motion] if self.motion else (0, 0)
        return self.x + dx * self.speed * t, self.y + dy * self.speed * t


@dataclass(frozen=True)
class ClipSpec:
    """What one clip shows: its caption kind and its objects, named objects first, then distractors."""

    kind: str
    objects: tuple[ObjectSpec, ...]

    @property
    def n_named(self) -> int:
        return 1 if self.kind == "single" else 2

    @property
    def caption(self) -> str:
        first = self.objects[0]
        if self.kind == "single":
            return f"{first.noun} moves {first.motion}"
        second = self.objects[1]
        if self.kind == "while":
            return " while ".join(sorted(f"{o.noun} moves {o.motion}" for o in (first, second)))
        event = "appears" if second.visible_from > 0 else "disappears"
        return f"{first.noun} moves {first.motion}, then {second.noun} {event}"

    def frame_caption(self, t: int) -> str:
        """What frame t shows, e.g. "a small red circle and a large blue square"."""
        nouns = [o.noun for o in self.objects if o.visible_from <= t < o.visible_to]
        return nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " and " + nouns[-1]


@dataclass(frozen=True)
class WorldVideo:
    """One video of the world: its id, split, clip, and the ids of its twin and of the clip its
    caption is a one-detail variant of (None where there is none)."""

    video_id: str
    split: str
    clip: ClipSpec
    twin_of: str | None = None
    detail_of: str | None = None

    @property
    def caption(self) -> str:
        return self.clip.caption

    def to_json(self, frames: int) -> dict:
        return {
            "video_id": self.video_id,
            "split": self.split,
            "kind": self.clip.kind,
            "caption": self.caption,
            "n_named": self.clip.n_named,
            "objects": [asdict(o) for o in self.clip.objects],
            "twin_of": self.twin_of,
            "detail_of": self.detail_of,
            "frame_captions": [self.clip.frame_caption(t) for t in range(frames)],
        }

    @staticmethod
    def from_json(entry: Mapping) -> WorldVideo:
        clip = ClipSpec(entry["kind"], tuple(ObjectSpec(**o) for o in entry["objects"]))
        return WorldVideo(entry["video_id"], entry["split"], clip, entry["twin_of"], entry["detail_of"])


@dataclass(frozen=True)
class World:
    """A generated world as read back from ``world.json``."""

    root: Path
    config: WorldConfig
    videos: tuple[WorldVideo, ...]

    @property
    def twin_pairs(self) -> tuple[tuple[str, str], ...]:
        """(video id, twin id) pairs, each pair once."""
        return tuple((v.video_id, v.twin_of) for v in self.videos if v.twin_of and v.video_id < v.twin_of)

    def video_path(self, video_id: str) -> Path:
        return self.root / "videos" / f"{video_id}.mp4"


# ----------------------------------------------------------------------------- rendering


@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:size, 0:size]
    return cols.astype(np.float32), rows.astype(np.float32)


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: int) -> np.ndarray:
    """Pixels (offsets dx, dy from the centre) inside a shape that fits the circle of this radius.

    circle: dx^2 + dy^2 <= r^2; square: max(|dx|, |dy|) <= 0.85 r; triangle: the upright
    equilateral triangle inscribed in the circle (centroid at the centre): dy <= r/2 and
    dy >= sqrt(3) |dx| - r.
    """
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.85 * radius
    return (dy <= radius / 2) & (dy >= math.sqrt(3) * np.abs(dx) - radius)


def render_clip(clip: ClipSpec, cfg: WorldConfig) -> np.ndarray:
    """The clip's frames, (frames, size, size, 3) uint8; objects drawn in order, later ones on top."""
    video = np.zeros((cfg.frames, cfg.size, cfg.size, 3), np.uint8)
    cols, rows = _pixel_grid(cfg.size)
    for obj in clip.objects:
        radius = object_radius(obj.size, cfg.size)
        for t in range(obj.visible_from, obj.visible_to):
            cx, cy = obj.centre(t)
            video[t][_shape_mask(obj.shape, cols - cx, rows - cy, radius)] = COLOURS[obj.colour]
    return video


def reverse_clip(clip: ClipSpec, frames: int) -> ClipSpec:
    """The clip played backwards: frame t shows the original's frame (frames - 1 - t).

    A moving object starts where it ended and moves the opposite way; an interval of visibility
    [a, b) becomes [frames - b, frames - a), so "appears" becomes "disappears".
    """
    reversed_objects = []
    for obj in clip.objects:
        x, y = obj.centre(frames - 1)
        motion = REVERSED_MOTION[obj.motion] if obj.motion else None
        reversed_objects.append(replace(obj, motion=motion, x=x, y=y,
                                        visible_from=frames - obj.visible_to, visible_to=frames - obj.visible_from))
    return ClipSpec(clip.kind, tuple(reversed_objects))


# ----------------------------------------------------------------------------- sampling


def _place(rng: np.random.Generator, objects: Sequence[ObjectSpec], cfg: WorldConfig,
           rounds: int = 20, tries: int = 20) -> tuple[ObjectSpec, ...]:
    """Draws start positions keeping every object inside the frame for the whole clip.

    Objects are placed one after the other, each redrawn up to ``tries`` times until it stays more
    than the two radii + 2 px away from every object placed before it whenever both are visible;
    a round where some object finds no such place starts over, up to ``rounds`` times (after that
    the last round is kept: later objects are drawn on top).
    """
    for _ in range(rounds):
        placed: list[ObjectSpec] = []
        all_clear = True
        for obj in objects:
            for _ in range(tries):
                candidate = _random_position(rng, obj, cfg)
                clear = not any(objects_overlap(candidate, other, cfg.size) for other in placed)
                if clear:
                    break
            placed.append(candidate)
            all_clear = all_clear and clear
        if all_clear:
            break
    return tuple(placed)


def _random_position(rng: np.random.Generator, obj: ObjectSpec, cfg: WorldConfig) -> ObjectSpec:
    """obj with a start position drawn so that it stays inside the frame in every frame."""
    radius = object_radius(obj.size, cfg.size)
    low, high = radius + 1, cfg.size - 2 - radius
    travel = obj.speed * (cfg.frames - 1)
    dx, dy = MOTIONS[obj.motion] if obj.motion else (0, 0)
    x = int(rng.integers(low + travel * (dx < 0), high - travel * (dx > 0) + 1))
    y = int(rng.integers(low + travel * (dy < 0), high - travel * (dy > 0) + 1))
    return replace(obj, x=x, y=y)


def objects_overlap(a: ObjectSpec, b: ObjectSpec, frame_size: int) -> bool:
    """Whether the two come within their radii + 2 px of each other in a frame showing both."""
    gap = object_radius(a.size, frame_size) + object_radius(b.size, frame_size) + 2
    for t in range(max(a.visible_from, b.visible_from), min(a.visible_to, b.visible_to)):
        (ax, ay), (bx, by) = a.centre(t), b.centre(t)
        if (ax - bx) ** 2 + (ay - by) ** 2 < gap * gap:
            return True
    return False


def _sample_clip(rng: np.random.Generator, cfg: WorldConfig, kind: str) -> ClipSpec:
    """A random clip of this caption kind (appearances of all its objects distinct)."""
    n_named = 1 if kind == "single" else 2
    all_looks = [(s, c, z) for s in SHAPES for c in COLOURS for z in SIZES]
    looks = [all_looks[i] for i in rng.choice(len(all_looks), n_named + cfg.distractors, replace=False)]
    motions = list(MOTIONS)
    objects = []
    for i, (shape, colour, size) in enumerate(looks):
        moving = i == 0 or (i == 1 and kind == "while")
        motion = motions[rng.integers(len(motions))] if moving else None
        visible_from, visible_to = 0, cfg.frames
        if i == 1 and kind == "then":
            change = int(rng.integers(1, cfg.frames))
            visible_from, visible_to = (change, cfg.frames) if rng.random() < 0.5 else (0, change)
        speed = cfg.speed if moving else 0
        objects.append(ObjectSpec(shape, colour, size, motion, 0, 0, speed, visible_from, visible_to))
    return ClipSpec(kind, _place(rng, objects, cfg))


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
        values = {"shape": SHAPES, "colour": tuple(COLOURS), "size": SIZES, "motion": tuple(MOTIONS)}[attr]
        others = [v for v in values if v != getattr(obj, attr)]
        changed = replace(obj, **{attr: others[rng.integers(len(others))]})
    objects = list(clip.objects)
    objects[index] = changed
    if len({o.appearance for o in objects}) < len(objects):
        return None
    return ClipSpec(clip.kind, _place(rng, objects, cfg))


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


def sample_world(cfg: WorldConfig) -> list[WorldVideo]:
    """All videos of the world described by cfg, without writing anything (deterministic in cfg).

    Ids are "video0", "video1", ... : training videos first, then validation, then test; the
    order inside each evaluation split is shuffled so twins and variants are not neighbours.
    """
    rng = np.random.default_rng(cfg.seed)
    videos = [WorldVideo(f"video{i}", "train", _sample_clip(rng, cfg, _random_kind(rng, cfg)))
              for i in range(cfg.n_train)]
    for split, n in (("validate", cfg.n_val), ("test", cfg.n_test)):
        items = _sample_evaluation_clips(rng, cfg, n)
        order = rng.permutation(n)
        new_position = {int(old): new for new, old in enumerate(order)}
        ids = [f"video{len(videos) + new_position[i]}" for i in range(n)]
        for old in order:
            clip, twin, base = items[old]
            videos.append(WorldVideo(ids[old], split, clip,
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


def _write_text_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def _csv_text(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue()


def _stored_config(root: Path) -> dict | None:
    meta = root / "world.json"
    if not meta.exists():
        return None
    stored = json.loads(meta.read_text())
    return stored["config"] if stored.get("format") == WORLD_FORMAT else None


def generate_world(root: str | os.PathLike, cfg: WorldConfig = WorldConfig(), progress: bool = True,
                   workers: int = 2) -> Path:
    """Writes the world described by cfg under root (MSR-VTT layout, see the module docstring).

    Idempotent: returns at once when root/world.json holds the same config. world.json is written
    last (atomically), so a killed run never leaves one claiming a complete world; a rerun redoes
    the work. Refuses (FileExistsError) to write into a non-empty folder that is not a world.
    ``workers`` mp4 files are encoded at once (each by its own ffmpeg process).
    """
    root = Path(root)
    if _stored_config(root) == asdict(cfg):
        return root
    marker = root / IN_PROGRESS
    if root.exists() and any(root.iterdir()) and not ((root / "world.json").exists() or marker.exists()):
        raise FileExistsError(f"{root} is not empty and holds no generated world; refusing to write into it")
    root.mkdir(parents=True, exist_ok=True)
    marker.touch()
    (root / "world.json").unlink(missing_ok=True)
    shutil.rmtree(root / "videos", ignore_errors=True)
    (root / "videos").mkdir()

    videos = sample_world(cfg)

    def write(video: WorldVideo) -> None:
        write_mp4(root / "videos" / f"{video.video_id}.mp4", render_clip(video.clip, cfg), cfg.fps)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in tqdm(pool.map(write, videos), total=len(videos), desc="writing world videos", disable=not progress):
            pass

    _write_msrvtt_files(root, videos)
    meta = {"format": WORLD_FORMAT, "config": asdict(cfg), "videos": [v.to_json(cfg.frames) for v in videos]}
    meta["twin_pairs"] = [list(pair) for pair in World(root, cfg, tuple(videos)).twin_pairs]
    _write_text_atomically(root / "world.json", json.dumps(meta, indent=1))
    marker.unlink()
    return root


def _write_msrvtt_files(root: Path, videos: Sequence[WorldVideo]) -> None:
    data = {
        "videos": [{"video_id": v.video_id, "split": v.split, "id": i} for i, v in enumerate(videos)],
        "sentences": [{"video_id": v.video_id, "caption": v.caption, "sen_id": i} for i, v in enumerate(videos)],
    }
    _write_text_atomically(root / "MSRVTT_data.json", json.dumps(data, indent=1))
    ids = {split: [[v.video_id] for v in videos if v.split == split] for split in SPLITS}
    _write_text_atomically(root / "MSRVTT_train.9k.csv", _csv_text(["video_id"], ids["train"]))
    _write_text_atomically(root / "MSRVTT_val.csv", _csv_text(["video_id"], ids["validate"]))
    test = [v for v in videos if v.split == "test"]
    rows = [[f"ret{i}", v.video_id.replace("video", "msr"), v.video_id, v.caption] for i, v in enumerate(test)]
    header = ["key", "vid_key", "video_id", "sentence"]
    _write_text_atomically(root / "MSRVTT_JSFUSION_test.csv", _csv_text(header, rows))


# ----------------------------------------------------------------------------- reading


def load_world(root: str | os.PathLike) -> World:
    """Reads root/world.json (written last by generate_world, so its presence means complete)."""
    root = Path(root)
    meta = root / "world.json"
    if not meta.exists():
        raise FileNotFoundError(f"{meta} not found: no complete world here (run generate_world)")
    stored = json.loads(meta.read_text())
    if stored.get("format") != WORLD_FORMAT:
        raise ValueError(f"{meta}: format {stored.get('format')!r}, expected {WORLD_FORMAT!r}")
    videos = tuple(WorldVideo.from_json(v) for v in stored["videos"])
    return World(root, WorldConfig(**stored["config"]), videos)


def frame_caption_samples(world_root: str | os.PathLike,
                          splits: Sequence[str] = ("train",)) -> list[tuple[str, int, str]]:
    """(video id, frame index, caption of that frame) for every frame of the videos of these
    splits: image-text pairs for frame-level pre-training (training videos only by default)."""
    world = load_world(world_root)
    return [(v.video_id, t, v.clip.frame_caption(t))
            for v in world.videos if v.split in splits for t in range(world.config.frames)]


# ----------------------------------------------------------------------------- the twin probe


def twin_indices(world: World, video_ids: Sequence[str]) -> dict[int, int]:
    """{index of a video in video_ids: index of its twin}, for pairs with both videos listed."""
    position = {video_id: i for i, video_id in enumerate(video_ids)}
    return {position[v.video_id]: position[v.twin_of] for v in world.videos
            if v.twin_of and v.video_id in position and v.twin_of in position}


def twin_accuracy(sim: np.ndarray, caption_video: Sequence[int], twin_of: Mapping[int, int]) -> float:
    """Share of captions with a twinned video whose own video scores above the twin.

    sim: (captions, videos) similarities (numpy array or CPU tensor); caption_video[i]: the video
    of caption i; twin_of: video index -> twin's video index. Caption i with video v and twin w
    counts 1 if sim[i, v] > sim[i, w], 1/2 on a tie, 0 otherwise. 0.5 is chance; an order-blind
    model scores exactly 0.5. NaN when no caption has a twin.
    """
    sim = np.asarray(sim)
    scores = []
    for i, v in enumerate(caption_video):
        if v in twin_of:
            own, twin = sim[i, v], sim[i, twin_of[v]]
            scores.append(1.0 if own > twin else 0.5 if own == twin else 0.0)
    return float(np.mean(scores)) if scores else float("nan")
