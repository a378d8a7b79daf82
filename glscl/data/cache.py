"""Feature cache: a frozen backbone's outputs for every video and caption of a split, on disk.

Encoding frames with CLIP dominates the cost of a training step; with a frozen backbone it is
the same every epoch and every run of an ablation grid. ``build_cache`` encodes each video once
and each caption once and stores memory-mapped arrays:

    frames      M x T x d   float16   per-frame embeddings (padded frames are 0)
    frame_mask  M x T       bool
    sentence    N x d       float32   end-of-text state
    tokens      N x L x d   float16   token states
    token_mask  N x L       bool
    caption_video N         int64

The folder name is a hash of everything that changes the features: the backbone's weights,
its preprocessing (image size, mean, std), the frame sampling (T, fps), the text length and
vocabulary, and the split's videos and captions. Change any of them and the cache misses;
``meta.json`` is written last, so an interrupted build never looks complete.
Train-time augmentation is not applied to cached features. The features are computed by the
package's one split encoder (``glscl.engine.evaluate.backbone_videos`` / ``backbone_texts``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from glscl.data.splits import RetrievalSplit
from glscl.engine.evaluate import backbone_texts, backbone_videos

ARRAYS = ("frames", "frame_mask", "sentence", "tokens", "token_mask", "caption_video")


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 of every tensor of ``module``'s state dict (names, shapes, dtypes and bytes)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cache_key(backbone, split: RetrievalSplit, num_frames: int, sample_fps: float, weights: str | None = None) -> str:
    """Hash of everything that changes the cached features (``weights``: a precomputed ``weights_digest``).

    Video paths enter resolved, so 'data/world/videos/x.mp4' and its absolute spelling hit the same cache."""
    h = hashlib.sha256()
    meta = {"weights": weights or weights_digest(backbone.clip), "image_size": backbone.image_size,
            "mean": list(backbone.preprocess_cfg["mean"]), "std": list(backbone.preprocess_cfg["std"]),
            "num_frames": num_frames, "sample_fps": sample_fps, "context_length": backbone.context_length,
            "vocab": list(backbone.tokenizer.vocab) if backbone.tokenizer.vocab is not None else None,
            "dataset": split.dataset, "split": split.name, "videos": list(split.video_ids),
            "paths": [str(Path(p).resolve()) for p in split.video_paths], "captions": list(split.captions),
            "caption_video": list(split.caption_video)}
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()[:20]


@dataclass
class FeatureCache:
    """A built cache, arrays memory-mapped read-only (see the module docstring for shapes)."""

    folder: Path
    meta: dict
    frames: np.ndarray
    frame_mask: np.ndarray
    sentence: np.ndarray
    tokens: np.ndarray
    token_mask: np.ndarray
    caption_video: np.ndarray

    @property
    def captions(self) -> list[str]:
        return self.meta["captions"]

    @property
    def video_ids(self) -> list[str]:
        return self.meta["video_ids"]

    @classmethod
    def open(cls, folder: str | Path) -> FeatureCache:
        folder = Path(folder)
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder} is not a complete feature cache (meta.json missing)")
        meta = json.loads(meta_path.read_text())
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
        return cls(folder, meta, **arrays)


@torch.no_grad()
def build_cache(backbone, split: RetrievalSplit, cache_root: str | Path, *, num_frames: int, sample_fps: float = 1.0,
                batch_size: int = 32, num_workers: int = 2, device: str | torch.device = "cpu",
                progress: bool = True, weights: str | None = None) -> FeatureCache:
    """Encode ``split`` with the frozen ``backbone`` into ``cache_root/<dataset>-<split>-<key>`` (or reuse it)."""
    folder = Path(cache_root) / f"{split.dataset}-{split.name}-{cache_key(backbone, split, num_frames, sample_fps, weights)}"
    if (folder / "meta.json").is_file():
        return FeatureCache.open(folder)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    was_training = backbone.training
    backbone.eval()
    m, d = split.num_videos, backbone.width
    frames = np.lib.format.open_memmap(tmp / "frames.npy", mode="w+", dtype=np.float16, shape=(m, num_frames, d))
    frame_mask = np.zeros((m, num_frames), dtype=bool)
    i = 0
    for emb, mask in backbone_videos(backbone, split, num_frames, sample_fps, device, batch_size, num_workers,
                                     progress=f"cache {split.dataset}/{split.name} videos" if progress else None):
        frames[i:i + len(emb)] = emb.half().cpu().numpy()
        frame_mask[i:i + len(emb)] = mask.cpu().numpy()
        i += len(emb)
    frames.flush()
    del frames
    sentence, tokens, token_mask = [], [], []
    for f in backbone_texts(backbone, split.captions, device, 256):
        sentence.append(f.sentence.float().cpu())
        tokens.append(f.tokens.half().cpu())
        token_mask.append(f.mask.cpu())
    np.save(tmp / "frame_mask.npy", frame_mask)
    np.save(tmp / "sentence.npy", torch.cat(sentence).numpy())
    np.save(tmp / "tokens.npy", torch.cat(tokens).numpy())
    np.save(tmp / "token_mask.npy", torch.cat(token_mask).numpy())
    np.save(tmp / "caption_video.npy", np.asarray(split.caption_video, dtype=np.int64))
    meta = {"dataset": split.dataset, "split": split.name, "num_frames": num_frames, "sample_fps": sample_fps,
            "backbone": backbone.name, "width": d, "video_ids": list(split.video_ids), "captions": list(split.captions)}
    (tmp / "meta.json").write_text(json.dumps(meta))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    backbone.train(was_training)
    return FeatureCache.open(folder)
