"""The one structure every dataset adapter returns: a split of videos and captions.

A split lists videos and captions separately; ``caption_video[i]`` is the index (into
``video_ids``) of the video that caption ``i`` describes. Training iterates over captions
(one sample per caption); evaluation encodes each video once and each caption once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "val", "test")  # the split names every loader takes and every result carries


@dataclass(frozen=True)
class RetrievalSplit:
    """Videos and captions of one split of one dataset.

    dataset: name of the dataset ("msrvtt", "msvd", "didemo", "lsmdc", "activitynet", "world").
    name: one of ``SPLITS`` ("train", "val", "test"). Every result names the split it was computed on.
    video_ids: one id per video, unique.
    video_paths: one file per video, same order as ``video_ids``.
    captions: caption texts (a paragraph for paragraph-to-video datasets).
    caption_video: for each caption, the index of its video in ``video_ids``.
    skipped: (file, row, reason) of items dropped because the user asked to skip bad input.
    source: the annotation file(s) that list the split's videos (named in error messages).
    """

    dataset: str
    name: str
    video_ids: tuple[str, ...]
    video_paths: tuple[Path, ...]
    captions: tuple[str, ...]
    caption_video: tuple[int, ...]
    skipped: tuple[tuple[str, str, str], ...] = field(default=())
    source: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.video_ids) != len(self.video_paths):
            raise ValueError(f"{self.dataset}/{self.name}: {len(self.video_ids)} video ids but {len(self.video_paths)} paths")
        if len(self.captions) != len(self.caption_video):
            raise ValueError(f"{self.dataset}/{self.name}: {len(self.captions)} captions but "
                             f"{len(self.caption_video)} caption_video entries")
        if len(set(self.video_ids)) != len(self.video_ids):
            raise ValueError(f"{self.dataset}/{self.name}: duplicate video ids")
        n = len(self.video_ids)
        bad = [v for v in self.caption_video if not 0 <= v < n]
        if bad:
            raise ValueError(f"{self.dataset}/{self.name}: caption_video index {bad[0]} out of range [0, {n})")

    @property
    def num_videos(self) -> int:
        return len(self.video_ids)

    @property
    def num_captions(self) -> int:
        return len(self.captions)

    def summary(self) -> str:
        s = f"{self.dataset}/{self.name}: {self.num_videos} videos, {self.num_captions} captions"
        if self.skipped:
            s += f", {len(self.skipped)} skipped"
        return s
