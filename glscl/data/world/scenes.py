"""Sampling the scenes world: clips of scene-cut segments, and captions that describe part of a clip."""
from __future__ import annotations

import numpy as np

from glscl.data.world.placement import place
from glscl.data.world.specs import MOTIONS, ClipSpec, ObjectSpec, WorldCaption, WorldConfig, speed_for


def _segment_bounds(rng: np.random.Generator, frames: int, n: int, shortest: int) -> tuple[tuple[int, int], ...]:
    """n consecutive spans [start, end) covering [0, frames), each at least ``shortest`` frames; every
    such division equally likely (stars and bars over the frames left after the minimum lengths)."""
    extra = frames - n * shortest
    bars = np.sort(rng.choice(extra + n - 1, n - 1, replace=False)) if n > 1 else np.array([], np.int64)
    lengths = np.diff(np.concatenate([[-1], bars, [extra + n - 1]])) - 1 + shortest
    ends = np.cumsum(lengths)
    return tuple((int(e - length), int(e)) for e, length in zip(ends, lengths, strict=True))


def sample_scenes_clip(rng: np.random.Generator, cfg: WorldConfig) -> ClipSpec:
    """A scenes-world clip: ``min_segments``-``max_segments`` scene-cut segments, each with 1 or 2
    (p = 1/2, when max_objects = 2) moving objects of its own, no appearance repeated in the clip.
    Each object is visible and moves for its whole segment, travelling TRAVEL_SHARE of the frame."""
    n = int(rng.integers(cfg.min_segments, cfg.max_segments + 1))
    counts = [1 + int(cfg.max_objects == 2 and rng.random() < 0.5) for _ in range(n)]
    all_looks = cfg.looks
    looks = iter([all_looks[i] for i in rng.choice(len(all_looks), sum(counts), replace=False)])
    motions = list(MOTIONS)
    segments = _segment_bounds(rng, cfg.frames, n, cfg.min_segment_frames)
    objects: list[ObjectSpec] = []
    for (start, end), count in zip(segments, counts, strict=True):
        speed = speed_for(end - start, cfg.size)
        members = [ObjectSpec(*next(looks), motions[rng.integers(len(motions))], 0, 0, speed, start, end, start, end)
                   for _ in range(count)]
        objects += place(rng, members, cfg)
    return ClipSpec("scenes", tuple(objects), segments)


def scene_captions(clip: ClipSpec) -> tuple[list[WorldCaption], list[WorldCaption]]:
    """(one caption per segment, one "then" caption per pair of consecutive segments) of a scenes clip."""
    segment = [WorldCaption(*clip.segment_caption(i), clip.segments[i]) for i in range(len(clip.segments))]
    then = [WorldCaption(clip.then_caption(i), "then", (clip.segments[i][0], clip.segments[i + 1][1]))
            for i in range(len(clip.segments) - 1)]
    return segment, then


def training_scene_captions(rng: np.random.Generator, clip: ClipSpec, then_share: float) -> tuple[WorldCaption, ...]:
    """Every segment caption, and each pair's "then" caption with probability then_share."""
    segment, then = scene_captions(clip)
    return tuple(segment + [c for c in then if rng.random() < then_share])


def _evaluation_scene_captions(rng: np.random.Generator, clip: ClipSpec, cfg: WorldConfig) -> tuple[WorldCaption, ...]:
    """eval_captions distinct captions, each a "then" caption with probability then_share (else a segment's)."""
    segment, then = scene_captions(clip)
    chosen: list[WorldCaption] = []
    while len(chosen) < cfg.eval_captions:
        pool = then if then and rng.random() < cfg.then_share else segment
        caption = pool[rng.integers(len(pool))]
        if caption not in chosen:
            chosen.append(caption)
    return tuple(chosen)


def _described_segments(clip: ClipSpec, caption: WorldCaption) -> set[str]:
    """The segment captions of the segments a caption describes."""
    return {clip.segment_caption(i)[0] for i, (a, b) in enumerate(clip.segments)
            if caption.frames[0] <= a and b <= caption.frames[1]}


def sample_scenes_evaluation(rng: np.random.Generator, cfg: WorldConfig, n: int) -> list[tuple[ClipSpec, tuple]]:
    """n scenes clips whose captions are each true of their own clip alone, within the split.

    A clip is kept when its captions are new to the split, no segment they describe shows up in
    another clip of the split (same objects doing the same things), and none of its segments is
    one that an earlier caption describes. (A one-object caption can still be partly true of a
    two-object segment elsewhere: "a red circle moves up" of "a red circle moves up while ...".)
    """
    items: list[tuple[ClipSpec, tuple]] = []
    captions: set[str] = set()
    present: set[str] = set()   # every segment caption of the split
    claimed: set[str] = set()   # the segment captions that some caption describes
    budget = 1000 + 100 * n
    while len(items) < n:
        budget -= 1
        if budget < 0:
            raise RuntimeError(f"could not draw {n} scenes clips whose captions name one clip each; lower n_val/n_test")
        clip = sample_scenes_clip(rng, cfg)
        chosen = _evaluation_scene_captions(rng, clip, cfg)
        described = set().union(*(_described_segments(clip, c) for c in chosen))
        segments = {clip.segment_caption(i)[0] for i in range(len(clip.segments))}
        if any(c.text in captions for c in chosen) or described & present or segments & claimed:
            continue
        items.append((clip, chosen))
        captions |= {c.text for c in chosen}
        present |= segments
        claimed |= described
    return items
