"""What the world knows about a split's sampled frames: which frames each caption describes, and
which segment each frame belongs to. The mechanism metrics (``glscl.engine.mechanism``) compare
the global weights and the queries' attention with it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glscl.data.splits import RetrievalSplit
from glscl.data.video import sample_frame_indices
from glscl.data.world.specs import World


@dataclass(frozen=True)
class FrameAnnotation:
    """For one split at T sampled frames (padded positions False / -1).

    caption_frames: (N captions x T) bool, True where the sampled frame lies in the caption's frames.
    caption_kind: the kind of each caption (single, while, then).
    segment: (M videos x T) int, the segment of each sampled frame (-1: padding).
    """

    caption_frames: np.ndarray
    caption_kind: tuple[str, ...]
    segment: np.ndarray


def frame_annotation(world: World, split: RetrievalSplit, num_frames: int, sample_fps: float = 1.0) -> FrameAnnotation:
    """The annotation of ``split`` (a split of ``world``, read by the MSR-VTT adapter) sampled as the
    data pipeline samples it: ``num_frames`` frames at ``sample_fps`` (``sample_frame_indices``)."""
    cfg = world.config
    index, valid = sample_frame_indices(cfg.frames, cfg.fps, num_frames, sample_fps)
    seconds = np.full(num_frames, -1)
    seconds[:valid] = index  # world frame shown at each sampled position
    by_id = {v.video_id: v for v in world.videos}
    segment = np.full((split.num_videos, num_frames), -1)
    for m, video_id in enumerate(split.video_ids):
        spans = by_id[video_id].clip.segments or ((0, cfg.frames),)
        for s, (a, b) in enumerate(spans):
            segment[m, (seconds >= a) & (seconds < b)] = s
    caption_frames = np.zeros((split.num_captions, num_frames), bool)
    kinds = []
    for i, (text, m) in enumerate(zip(split.captions, split.caption_video, strict=True)):
        video = by_id[split.video_ids[m]]
        match = [c for c in video.captions if c.text == text]
        if not match:
            raise ValueError(f"{world.root}/world.json: video {video.video_id} has no caption {text!r}")
        a, b = match[0].frames
        caption_frames[i] = (seconds >= a) & (seconds < b)
        kinds.append(match[0].kind)
    return FrameAnnotation(caption_frames, tuple(kinds), segment)
