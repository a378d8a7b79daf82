"""PyTorch datasets over a ``RetrievalSplit``: decoded clips, caption/clip pairs, and cached features.

* ``ClipDataset``: one item per video (pixels + frame mask), for encoding a gallery or a cache.
* ``PairDataset``: one item per caption, with its video decoded (end-to-end training).
* ``CachedPairDataset``: one item per caption, from a ``FeatureCache`` (head-only training).

Every training item carries ``video`` (the video's index) and ``caption`` (an id shared by
identical captions), from which in-batch false negatives are masked.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch.utils.data import Dataset

from glscl.data.splits import RetrievalSplit
from glscl.data.video import ClipTransform, load_clip


def caption_ids(captions) -> np.ndarray:
    """An integer per caption, equal for identical caption texts."""
    index: dict[str, int] = {}
    return np.array([index.setdefault(c, len(index)) for c in captions], dtype=np.int64)


def same_pair_mask(video: torch.Tensor, caption: torch.Tensor) -> torch.Tensor:
    """B x B: True where two batch items share their video or their caption (not true negatives)."""
    return (video[:, None] == video[None, :]) | (caption[:, None] == caption[None, :])


class ClipDataset(Dataset):
    """Decoded, preprocessed clips of a split: {'pixels': T x 3 x S x S, 'frame_mask': T, 'video': index}."""

    def __init__(self, split: RetrievalSplit, num_frames: int, transform: ClipTransform, sample_fps: float = 1.0,
                 augment: bool = False, seed: int = 0):
        self.split, self.num_frames = split, num_frames
        self.transform = dataclasses.replace(transform, augment=augment)
        self.sample_fps, self.augment, self.seed = sample_fps, augment, seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.split.num_videos

    def clip(self, video: int, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        frames, mask = load_clip(self.split.video_paths[video], self.num_frames, self.sample_fps)
        gen = None
        if self.augment:  # one draw per (seed, epoch, item): identical with any number of workers
            gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, item)) & 0x7FFFFFFF)
        return self.transform(frames, mask, generator=gen), mask

    def __getitem__(self, i: int) -> dict:
        pixels, mask = self.clip(i, i)
        return {"pixels": pixels, "frame_mask": mask, "video": i}


class PairDataset(ClipDataset):
    """One item per caption: token ids, its video's pixels and mask, video index and caption id."""

    def __init__(self, split: RetrievalSplit, tokenizer, num_frames: int, transform: ClipTransform,
                 sample_fps: float = 1.0, augment: bool = False, seed: int = 0):
        super().__init__(split, num_frames, transform, sample_fps, augment, seed)
        self.ids = tokenizer(list(split.captions))
        self.caption = caption_ids(split.captions)

    def __len__(self) -> int:
        return self.split.num_captions

    def __getitem__(self, i: int) -> dict:
        video = self.split.caption_video[i]
        pixels, mask = self.clip(video, i)
        return {"ids": self.ids[i], "pixels": pixels, "frame_mask": mask, "video": video, "caption": int(self.caption[i])}


class CachedPairDataset(Dataset):
    """One item per caption from cached backbone features (frozen backbone, no decoding)."""

    def __init__(self, cache):
        self.cache = cache
        self.caption = caption_ids(cache.captions)

    def __len__(self) -> int:
        return len(self.cache.caption_video)

    def batch(self, indices) -> dict:
        """A whole batch by fancy indexing (much faster than collating items one by one)."""
        c = self.cache
        idx = np.sort(np.asarray(indices))  # sorted reads are friendlier to memory-mapped files
        order = np.argsort(np.argsort(np.asarray(indices)))
        vids = np.asarray(c.caption_video)[idx]
        out = {"sentence": torch.from_numpy(np.asarray(c.sentence[idx], dtype=np.float32)),
               "tokens": torch.from_numpy(np.asarray(c.tokens[idx], dtype=np.float32)),
               "token_mask": torch.from_numpy(np.asarray(c.token_mask[idx])),
               "frames": torch.from_numpy(np.asarray(c.frames[vids], dtype=np.float32)),
               "frame_mask": torch.from_numpy(np.asarray(c.frame_mask[vids])),
               "video": torch.from_numpy(vids.astype(np.int64)),
               "caption": torch.from_numpy(self.caption[idx])}
        return {k: v[torch.from_numpy(order)] for k, v in out.items()}

    def __getitem__(self, i: int) -> dict:
        c, v = self.cache, int(self.cache.caption_video[i])
        return {"sentence": torch.from_numpy(np.asarray(c.sentence[i], dtype=np.float32)),
                "tokens": torch.from_numpy(np.asarray(c.tokens[i], dtype=np.float32)),
                "token_mask": torch.from_numpy(np.asarray(c.token_mask[i])),
                "frames": torch.from_numpy(np.asarray(c.frames[v], dtype=np.float32)),
                "frame_mask": torch.from_numpy(np.asarray(c.frame_mask[v])),
                "video": v, "caption": int(self.caption[i])}


__all__ = ["ClipDataset", "PairDataset", "CachedPairDataset", "caption_ids", "same_pair_mask"]
