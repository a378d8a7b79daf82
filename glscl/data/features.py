"""Backbone features of a whole split, block by block: what the head reads, in gallery order.

From decoded clips and tokenized captions (``backbone_texts``, ``backbone_videos``: what the
feature cache is written from, ``glscl.data.cache.build_cache``) or read back from a feature cache
(``cached_texts``, ``cached_videos``). Texts come as ``TextFeatures`` blocks (token states, mask,
sentence vector), videos as (frames x_f, mask) blocks with padded frames 0.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from glscl.data.dataset import ClipDataset
from glscl.data.video import ClipTransform
from glscl.model.backbone import Backbone, TextFeatures
from glscl.progress import progress_bar

VideoBlocks = Iterable[tuple[torch.Tensor, torch.Tensor]]
"""(frames x_f: B x T x d with padded frames 0, mask: B x T) per block of videos, in gallery order."""


@torch.no_grad()
def backbone_texts(backbone: Backbone, captions: Sequence[str], device="cpu", batch_size: int = 256) -> Iterator[TextFeatures]:
    """Every caption tokenized and encoded once by the backbone, ``batch_size`` at a time."""
    for i in range(0, len(captions), batch_size):
        yield backbone.encode_text(backbone.tokenizer(list(captions[i:i + batch_size])).to(device))


@torch.no_grad()
def backbone_videos(backbone: Backbone, split, num_frames: int, sample_fps: float = 1.0, device="cpu",
                    batch_size: int = 32, num_workers: int = 0, progress: str | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every video of ``split`` decoded (T frames at ``sample_fps``) and encoded once by the backbone:
    (x_f * mask, mask) per block, on ``device``. ``progress``: the progress bar's title (None: no bar)."""
    transform = ClipTransform.for_backbone(backbone)
    loader = DataLoader(ClipDataset(split, num_frames, transform, sample_fps), batch_size=batch_size, num_workers=num_workers)
    # tqdm gets the one iterator: given the loader, tqdm.auto's asyncio base calls iter() on it as well and
    # starts a second, never-consumed set of workers, left to the garbage collector (which, in Jupyter,
    # may run in the forked workers of the next loader: "can only test a child process" tracebacks)
    batches = iter(loader)
    for batch in progress_bar(batches, total=len(loader), desc=progress, enabled=progress is not None, unit="batch"):
        mask = batch["frame_mask"].to(device)
        yield backbone.encode_frames(batch["pixels"].to(device)) * mask[..., None], mask


def cached_texts(cache, batch_size: int = 512) -> Iterator[TextFeatures]:
    """The captions of a ``FeatureCache`` (float32), ``batch_size`` at a time."""
    as_tensor = lambda a, dtype=np.float32: torch.from_numpy(np.array(a, dtype=dtype))  # noqa: E731
    for i in range(0, len(cache.caption_video), batch_size):
        sl = slice(i, i + batch_size)
        yield TextFeatures(tokens=as_tensor(cache.tokens[sl]), mask=as_tensor(cache.token_mask[sl], bool),
                           sentence=as_tensor(cache.sentence[sl]))


def cached_videos(cache, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The videos of a ``FeatureCache`` (float32 frames), ``batch_size`` at a time."""
    for i in range(0, cache.frames.shape[0], batch_size):
        yield (torch.from_numpy(np.array(cache.frames[i:i + batch_size], dtype=np.float32)),
               torch.from_numpy(np.array(cache.frame_mask[i:i + batch_size])))
