"""PyTorch datasets over a ``RetrievalSplit``: decoded clips, caption/clip pairs, and cached features.

* ``ClipDataset``: one item per video (pixels + frame mask), for encoding a gallery or a cache.
* ``PairDataset``: one item per caption, with its video decoded (end-to-end training).
* ``CachedPairDataset``: one item per caption, from a ``FeatureCache`` (head-only training).

Training batches are typed, one type per route: ``CachedBatch`` (backbone features read from the
cache) and ``DecodedBatch`` (token ids and decoded pixels). Both carry ``frame_mask``, ``video``
(the video's index) and ``caption`` (an id shared by identical captions), from which in-batch
false negatives are masked.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from glscl.data.splits import RetrievalSplit
from glscl.data.video import ClipTransform, load_clip


def caption_ids(captions) -> np.ndarray:
    """An integer per caption, equal for identical caption texts."""
    index: dict[str, int] = {}
    return np.array([index.setdefault(c, len(index)) for c in captions], dtype=np.int64)


def same_pair_mask(video: torch.Tensor, caption: torch.Tensor) -> torch.Tensor:
    """B x B: True where two batch items share their video or their caption (not true negatives)."""
    return (video[:, None] == video[None, :]) | (caption[:, None] == caption[None, :])


@dataclass
class PairBatch:
    """B caption/video pairs: what both routes carry (``frame_mask`` B x T, ``video`` and ``caption`` B, int64)."""

    frame_mask: torch.Tensor
    video: torch.Tensor
    caption: torch.Tensor

    def to(self, device, non_blocking: bool = False):
        """The same batch with every tensor on ``device``."""
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                                            for f in dataclasses.fields(self)})

    def __len__(self) -> int:
        return len(self.video)


@dataclass
class CachedBatch(PairBatch):
    """A batch read from the feature cache (head-only training): the backbone's caption features
    (``sentence`` B x d, ``tokens`` B x L x d, ``token_mask`` B x L) and frame features (``frames`` B x T x d)."""

    sentence: torch.Tensor
    tokens: torch.Tensor
    token_mask: torch.Tensor
    frames: torch.Tensor


@dataclass
class DecodedBatch(PairBatch):
    """A batch of decoded clips (end-to-end training): token ids (``ids`` B x L) and pixels
    (``pixels`` B x T x 3 x S x S, padded frames 0)."""

    ids: torch.Tensor
    pixels: torch.Tensor

    @classmethod
    def collate(cls, items: list[dict]) -> DecodedBatch:
        """``PairDataset`` items stacked into one batch (a DataLoader's ``collate_fn``)."""
        return cls(**default_collate(items))

    def pin_memory(self) -> DecodedBatch:
        """Page-locked copies (what a DataLoader with ``pin_memory`` calls)."""
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).pin_memory() for f in dataclasses.fields(self)})


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

    def batch(self, indices) -> CachedBatch:
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
        return CachedBatch(**{k: v[torch.from_numpy(order)] for k, v in out.items()})

    def __getitem__(self, i: int) -> dict:
        c, v = self.cache, int(self.cache.caption_video[i])
        return {"sentence": torch.from_numpy(np.asarray(c.sentence[i], dtype=np.float32)),
                "tokens": torch.from_numpy(np.asarray(c.tokens[i], dtype=np.float32)),
                "token_mask": torch.from_numpy(np.asarray(c.token_mask[i])),
                "frames": torch.from_numpy(np.asarray(c.frames[v], dtype=np.float32)),
                "frame_mask": torch.from_numpy(np.asarray(c.frame_mask[v])),
                "video": v, "caption": int(self.caption[i])}


__all__ = ["ClipDataset", "PairDataset", "CachedPairDataset", "PairBatch", "CachedBatch", "DecodedBatch", "caption_ids",
           "same_pair_mask"]
