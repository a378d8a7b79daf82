"""What a world is made of: its vocabulary, its config, and the specs of objects, clips and videos."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from glscl.data.splits import SPLITS

SHAPES = ("circle", "square", "triangle", "diamond", "cross")  # a world uses the first WorldConfig.shapes
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40),
           "purple": (150, 60, 200), "orange": (240, 140, 30), "cyan": (40, 200, 210), "white": (235, 235, 235)}
# a world uses the first WorldConfig.colours
SIZES = ("small", "large")
MOTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # (column, row) step
REVERSED_MOTION = {"left": "right", "right": "left", "up": "down", "down": "up"}
KINDS = ("single", "while", "then")  # caption kinds, in both worlds
WORLD_KINDS = ("objects", "scenes")
# The split names MSR-VTT writes (MSRVTT_data.json; world.json keeps them too): "val" is "validate" on disk.
DISK_SPLITS = dict(zip(SPLITS, ("train", "validate", "test"), strict=True))

RADIUS_SHARE = {"small": 0.09, "large": 0.17}  # object radius / frame size
TRAVEL_SHARE = 0.4  # how far a moving object travels over a clip, as a share of the frame size


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a world; the same config always gives the same files.

    kind: ``objects``, one scene per clip, every caption about the whole clip (the order and twin
    probes), or ``scenes``, clips of several scene-cut segments whose captions each describe part of
    the clip (where the global weights and the K queries have work to do). ``world_config(kind)``
    gives each kind's shipped settings.
    n_train, n_val, n_test: videos per split.
    frames: frames per clip (one per second at fps=1).
    size: frame side in pixels (a multiple of 16, so the mp4 encoder never resizes).
    shapes, colours: how many of ``SHAPES`` and ``COLOURS`` the world draws from (the first ones): with
    ``SIZES`` they make the appearances an object can have.
    max_objects: named objects per clip (objects) or per segment (scenes), 1 or 2.
    distractors (objects only): unnamed still objects per clip (0-2); a difficulty knob for the frame
    encoder: picking the named objects out of a cluttered frame happens in the backbone, before any
    head (with the embedded 64-wide CLIP every head, mean pooling included, fell from ~39 to 3-9 R@1
    on 200 test captions with 1 or 2 distractors, 5 seeds).
    detail_share, twin_share (objects only): share of each evaluation split that are one-detail
    variants of another clip of the split / that belongs to a time-reversed twin pair.
    min_segments, max_segments, min_segment_frames (scenes only): segments per clip (uniform in
    [min, max]) and the fewest frames a segment has.
    then_share (scenes only): how often a caption tells two consecutive segments in order ("A, then
    B"): each pair of a training clip gets one with this probability, and an evaluation clip's
    caption is one with this probability.
    eval_captions (scenes only): captions per evaluation video (1: the 1k-A protocol; more: MSR-VTT's
    multi-caption protocol).
    seed: the random seed.
    """

    kind: str = "objects"
    n_train: int = 600
    n_val: int = 300
    n_test: int = 1000
    frames: int = 8
    size: int = 64
    fps: float = 1
    shapes: int = 3
    colours: int = 4
    max_objects: int = 2
    distractors: int = 0
    detail_share: float = 0.3
    twin_share: float = 0.25
    min_segments: int = 2
    max_segments: int = 4
    min_segment_frames: int = 3
    then_share: float = 0.25
    eval_captions: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            wanted = {"float": (int, float), "int": (int,), "str": (str,)}[f.type]
            if isinstance(value, bool) or not isinstance(value, wanted):
                raise ValueError(f"WorldConfig.{f.name} must be of type {f.type}, got {value!r}")
        _require(self.kind in WORLD_KINDS, "kind", f"must be one of {', '.join(WORLD_KINDS)}")
        _require(self.n_train >= 1, "n_train", "must be >= 1")
        _require(self.n_val >= 0, "n_val", "must be >= 0")
        _require(self.n_test >= 1, "n_test", "must be >= 1")
        _require(self.frames >= 2, "frames", "must be >= 2 (motion needs two frames)")
        _require(self.size >= 32 and self.size % 16 == 0, "size", "must be a multiple of 16 and >= 32")
        _require(self.fps > 0, "fps", "must be > 0")
        _require(1 <= self.shapes <= len(SHAPES), "shapes", f"must be in [1, {len(SHAPES)}]")
        _require(1 <= self.colours <= len(COLOURS), "colours", f"must be in [1, {len(COLOURS)}]")
        _require(self.max_objects in (1, 2), "max_objects", "must be 1 or 2 (captions name at most two objects)")
        _require(0 <= self.distractors <= 2, "distractors", "must be in [0, 2] (more rarely fit without overlaps)")
        _require(0.0 <= self.detail_share <= 1.0, "detail_share", "must be in [0, 1]")
        _require(0.0 <= self.twin_share <= 1.0, "twin_share", "must be in [0, 1]")
        _require(self.detail_share + self.twin_share <= 1.0, "detail_share", "plus twin_share must be <= 1")
        _require(self.min_segments >= 1, "min_segments", "must be >= 1")
        _require(self.max_segments >= self.min_segments, "max_segments", "must be >= min_segments")
        _require(self.min_segment_frames >= 2, "min_segment_frames", "must be >= 2 (motion needs two frames)")
        _require(0.0 <= self.then_share <= 1.0, "then_share", "must be in [0, 1]")
        _require(self.eval_captions >= 1, "eval_captions", "must be >= 1")
        _require(self.seed >= 0, "seed", "must be >= 0")
        if self.kind == "scenes":
            for name in ("distractors", "detail_share", "twin_share"):
                _require(getattr(self, name) == 0, name, "must be 0 with kind=scenes (an objects-world setting)")
            _require(self.max_segments * self.min_segment_frames <= self.frames, "frames",
                     f"must be >= max_segments * min_segment_frames = {self.max_segments * self.min_segment_frames}")
            _require(self.eval_captions <= self.max_segments, "eval_captions",
                     "must be <= max_segments (one caption per segment at most)")
            return
        for name in ("min_segments", "max_segments", "min_segment_frames", "then_share", "eval_captions"):
            default = WorldConfig.__dataclass_fields__[name].default
            _require(getattr(self, name) == default, name, f"is a scenes-world setting (leave it at {default} "
                     "with kind=objects)")
        room = self.size - 3 - 2 * object_radius("large", self.size)
        _require(self.speed * (self.frames - 1) <= room, "frames",
                 f"too many for size={self.size}: a large object moving {self.speed} px/frame leaves the frame")
        _require(self.max_objects == 1 or self.frames >= 4, "frames", "must be >= 4 for 'then' clips (max_objects=2)")
        if self.max_objects == 1:
            for name in ("n_val", "n_test"):
                _require(getattr(self, name) <= self.num_single_captions, name,
                         f"must be <= {self.num_single_captions} with max_objects=1 (distinct single-object captions)")

    @property
    def looks(self) -> list[tuple[str, str, str]]:
        """Every appearance (shape, colour, size) an object of this world can have."""
        return [(s, c, z) for s in SHAPES[:self.shapes] for c in list(COLOURS)[:self.colours] for z in SIZES]

    @property
    def num_single_captions(self) -> int:
        return len(self.looks) * len(MOTIONS)

    @property
    def speed(self) -> int:
        """Pixels per frame of an object moving for the whole clip (``speed_for(frames)``)."""
        return speed_for(self.frames, self.size)


def speed_for(span: int, size: int) -> int:
    """Pixels per frame of an object that moves for ``span`` frames: it travels TRAVEL_SHARE of the
    frame, round(TRAVEL_SHARE * size / (span - 1)), at least 1."""
    return max(1, round(TRAVEL_SHARE * size / max(1, span - 1)))


SCENES = dict(kind="scenes", frames=12, shapes=5, colours=8, distractors=0, detail_share=0.0, twin_share=0.0)
"""The scenes world's settings that differ from the objects world's (``world_config``)."""


def world_config(kind: str = "scenes", **settings) -> WorldConfig:
    """The shipped world of this kind (``objects`` or ``scenes``) with ``settings`` (WorldConfig fields) on top
    (the embedded world's quick size: ``glscl.engine.embedded.world_settings``)."""
    if kind not in WORLD_KINDS:
        raise ValueError(f"WorldConfig.kind must be one of {', '.join(WORLD_KINDS)}, got {kind!r}")
    return WorldConfig(**{**(SCENES if kind == "scenes" else {}), **settings})


def _require(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ValueError(f"WorldConfig.{name} {message}")


def object_radius(size_name: str, frame_size: int) -> int:
    """Radius in pixels of the circle every shape of this size fits in."""
    return max(2, round(RADIUS_SHARE[size_name] * frame_size))


@dataclass(frozen=True)
class ObjectSpec:
    """One shape, drawn in frames visible_from <= t < visible_to.

    A moving object moves ``speed`` px per frame from frame moves_from to frame moves_to - 1 (None:
    the clip's last frame) and stands still before and after: its centre at frame t is
    (x, y) + speed * (clamp(t, moves_from, moves_to - 1) - moves_from) * step(motion), in pixels
    (y grows downwards). (x, y) is where it starts; motion None: it never moves.
    """

    shape: str
    colour: str
    size: str
    motion: str | None
    x: int
    y: int
    speed: int
    visible_from: int
    visible_to: int
    moves_from: int = 0
    moves_to: int | None = None

    @property
    def noun(self) -> str:
        return f"a {self.size} {self.colour} {self.shape}"

    @property
    def appearance(self) -> tuple[str, str, str]:
        return (self.shape, self.colour, self.size)

    @property
    def action(self) -> str:
        """"a small red circle moves left" (moving objects)."""
        return f"{self.noun} moves {self.motion}"

    def steps(self, t: int) -> int:
        """How many steps of ``speed`` px it has taken by frame t."""
        if not self.motion:
            return 0
        last = t if self.moves_to is None else min(t, self.moves_to - 1)
        return max(0, last - self.moves_from)

    def centre(self, t: int) -> tuple[int, int]:
        dx, dy = MOTIONS[self.motion] if self.motion else (0, 0)
        n = self.speed * self.steps(t)
        return self.x + dx * n, self.y + dy * n


@dataclass(frozen=True)
class ClipSpec:
    """What one clip shows.

    objects world: ``kind`` is the caption kind (single, while, then) and ``objects`` holds the named
    objects first, then distractors; the clip has one caption (``caption``).
    scenes world: ``kind`` is "scenes", ``segments`` the frame spans [start, end) of the scene-cut
    segments in order, and every object lives in one segment (visible and moving over all of it);
    each segment and each pair of consecutive segments can be captioned (``segment_caption``,
    ``then_caption``).
    """

    kind: str
    objects: tuple[ObjectSpec, ...]
    segments: tuple[tuple[int, int], ...] = ()

    @property
    def n_named(self) -> int:
        return len(self.objects) if self.segments else 1 if self.kind == "single" else 2

    @property
    def caption(self) -> str:
        """The objects world's caption. "then" means after: the clause that happens first comes first."""
        first = self.objects[0]
        if self.kind == "single":
            return first.action
        second = self.objects[1]
        if self.kind == "while":
            return " while ".join(sorted(o.action for o in (first, second)))
        appears = second.visible_from > 0
        event_at = second.visible_from if appears else second.visible_to
        event = f"{second.noun} {'appears' if appears else 'disappears'}"
        return f"{first.action}, then {event}" if first.moves_to is not None and first.moves_to <= event_at \
            else f"{event}, then {first.action}"

    def segment_objects(self, i: int) -> tuple[ObjectSpec, ...]:
        start, _ = self.segments[i]
        return tuple(o for o in self.objects if o.visible_from == start)

    def segment_caption(self, i: int) -> tuple[str, str]:
        """(text, kind) of segment i: "A moves up" (single) or "A moves up while B moves left" (while)."""
        objects = self.segment_objects(i)
        return " while ".join(sorted(o.action for o in objects)), "single" if len(objects) == 1 else "while"

    def then_caption(self, i: int) -> str:
        """Segments i and i + 1 in order: "<segment i>, then <segment i + 1>"."""
        return f"{self.segment_caption(i)[0]}, then {self.segment_caption(i + 1)[0]}"

    def frame_caption(self, t: int) -> str:
        """What frame t shows, e.g. "a small red circle and a large blue square" ("nothing" when empty)."""
        nouns = [o.noun for o in self.objects if o.visible_from <= t < o.visible_to]
        if not nouns:
            return "nothing"
        return nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " and " + nouns[-1]


@dataclass(frozen=True)
class WorldCaption:
    """One caption of a world video: its text, kind (single, while, then) and the frames it describes, [start, end)."""

    text: str
    kind: str
    frames: tuple[int, int]


@dataclass(frozen=True)
class WorldVideo:
    """One video of the world: its id, split (one of ``SPLITS``: "train", "val", "test"), clip, captions,
    and the ids of its twin and of the clip its caption is a one-detail variant of (None where there is none)."""

    video_id: str
    split: str
    clip: ClipSpec
    captions: tuple[WorldCaption, ...]
    twin_of: str | None = None
    detail_of: str | None = None

    @property
    def caption(self) -> str:
        """The first caption's text (the only one in the objects world)."""
        return self.captions[0].text

    def to_json(self, frames: int) -> dict:
        """The video's entry in world.json (its split under its MSR-VTT name, see ``DISK_SPLITS``)."""
        return {
            "video_id": self.video_id,
            "split": DISK_SPLITS[self.split],
            "kind": self.clip.kind,
            "caption": self.caption,
            "captions": [{"text": c.text, "kind": c.kind, "caption_frames": list(c.frames)} for c in self.captions],
            "segments": [list(s) for s in self.clip.segments] or [[0, frames]],
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
        segments = tuple(tuple(s) for s in entry["segments"]) if entry["kind"] == "scenes" else ()
        clip = ClipSpec(entry["kind"], tuple(ObjectSpec(**o) for o in entry["objects"]), segments)
        captions = tuple(WorldCaption(c["text"], c["kind"], tuple(c["caption_frames"])) for c in entry["captions"])
        return WorldVideo(entry["video_id"], split, clip, captions, entry["twin_of"], entry["detail_of"])


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

    A moving object starts where it stopped and moves the opposite way; every interval [a, b) of
    frames (visibility, motion, segments) becomes [frames - b, frames - a), so "appears" becomes
    "disappears" and what came first comes last.
    """
    flip = lambda a, b: (frames - b, frames - a)  # noqa: E731
    reversed_objects = []
    for obj in clip.objects:
        moves_to = frames if obj.moves_to is None else obj.moves_to
        x, y = obj.centre(moves_to - 1)
        motion = REVERSED_MOTION[obj.motion] if obj.motion else None
        visible_from, visible_to = flip(obj.visible_from, obj.visible_to)
        moves_from, new_moves_to = flip(obj.moves_from, moves_to)
        reversed_objects.append(replace(obj, motion=motion, x=x, y=y, visible_from=visible_from,
                                        visible_to=visible_to, moves_from=moves_from,
                                        moves_to=None if new_moves_to == frames else new_moves_to))
    segments = tuple(flip(a, b) for a, b in reversed(clip.segments))
    return ClipSpec(clip.kind, tuple(reversed_objects), segments)
