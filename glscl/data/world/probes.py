"""The twin probe: does a model tell a clip from its time-reversed twin?"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from glscl.data.world.specs import World


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
