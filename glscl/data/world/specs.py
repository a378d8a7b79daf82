"""What a world is made of: its vocabulary, its config, and the specs of objects, clips and videos."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from glscl.data.splits import SPLITS

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}
SIZES = ("small", "large")
MOTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # (column, row) step
REVERSED_MOTION = {"left": "right", "right": "left", "up": "down", "down": "up"}
KINDS = ("single", "while", "then")
# The split names MSR-VTT writes (MSRVTT_data.json; world.json keeps them too): "val" is "validate" on disk.
DISK_SPLITS = dict(zip(SPLITS, ("train", "validate", "test"), strict=True))

RADIUS_SHARE = {"small": 0.09, "large": 0.17}  # object radius / frame size
TRAVEL_SHARE = 0.4  # how far a moving object travels over a clip, as a share of the frame size
NUM_SINGLE_CAPTIONS = len(SHAPES) * len(COLOURS) * len(SIZES) * len(MOTIONS)


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a world; the same config always gives the same files.

    n_train, n_val, n_test: videos per split (one caption per evaluation video: the default test split
    has 1,000 captions, the size of MSR-VTT's 1k-A test, so that R@1 has a standard error near 1.5 points).
    frames: frames per clip (one per second at fps=1).
    size: frame side in pixels (a multiple of 16, so the mp4 encoder never resizes).
    max_objects: named objects per clip, 1 or 2 (1 allows only "single" captions).
    distractors: unnamed still objects per clip (0-2); a difficulty knob for the frame encoder: picking
    the named objects out of a cluttered frame happens in the backbone, before any head (with the
    embedded 64-wide CLIP every head, mean pooling included, fell from ~39 to 3-9 R@1 on 200 test
    captions with 1 or 2 distractors, 5 seeds). detail_share: share of each evaluation split
    that are one-detail variants of another clip of the split. twin_share: share of each
    evaluation split that belongs to a time-reversed twin pair. seed: the random seed.
    """

    n_train: int = 600
    n_val: int = 300
    n_test: int = 1000
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
    """One video of the world: its id, split (one of ``SPLITS``: "train", "val", "test"), clip, and
    the ids of its twin and of the clip its caption is a one-detail variant of (None where there is none)."""

    video_id: str
    split: str
    clip: ClipSpec
    twin_of: str | None = None
    detail_of: str | None = None

    @property
    def caption(self) -> str:
        return self.clip.caption

    def to_json(self, frames: int) -> dict:
        """The video's entry in world.json (its split under its MSR-VTT name, see ``DISK_SPLITS``)."""
        return {
            "video_id": self.video_id,
            "split": DISK_SPLITS[self.split],
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
        """The video of a world.json entry (written by ``to_json``)."""
        split = {disk: name for name, disk in DISK_SPLITS.items()}.get(entry["split"])
        if split is None:
            raise ValueError(f"world.json: video {entry['video_id']}: split {entry['split']!r}, "
                             f"expected one of {', '.join(DISK_SPLITS.values())}")
        clip = ClipSpec(entry["kind"], tuple(ObjectSpec(**o) for o in entry["objects"]))
        return WorldVideo(entry["video_id"], split, clip, entry["twin_of"], entry["detail_of"])


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
