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
``meta.json`` is written last, so an interrupted build never looks complete. It also holds what
a head needs of the backbone (width d, logit_scale, the compact vocabulary).

Source index: that key needs the backbone built. ``<cache_root>/sources/<source key>.json`` names
the folder from what determines the features without building it (``source_key``: backbone
name, weights identity, text length, vocabulary, frame sampling, the split), so a run whose caches
are all built never loads the backbone (``lookup_cache``).
Train-time augmentation is not applied to cached features. The features are computed by the
package's one split encoder (``glscl.data.features.backbone_videos`` / ``backbone_texts``).
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

from glscl.data.features import backbone_texts, backbone_videos
from glscl.data.splits import RetrievalSplit
from glscl.files import write_json

INDEX = "sources"
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


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, obj)


def file_digest(path: str | Path, cache_root: str | Path) -> str:
    """sha256 of a file's bytes, remembered in the index per (resolved path, size, mtime_ns): hashed once."""
    path = Path(path).resolve()
    st = path.stat()
    memo_path = Path(cache_root) / INDEX / "files.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    stamp = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    if stamp not in memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        memo = {k: v for k, v in memo.items() if not k.startswith(f"{path}|")}
        memo[stamp] = h.hexdigest()
        _write_json(memo_path, memo)
    return memo[stamp]


def weights_identity(pretrained: str | None, cache_root: str | Path) -> str | None:
    """What names the weights without loading them: a file's sha256, each file of a ``local-dir:``, or the
    open_clip tag; None for a random initialisation (its weights depend on the RNG: no index)."""
    if not pretrained:
        return None
    if pretrained.startswith("local-dir:"):
        folder = Path(pretrained[len("local-dir:"):])
        return "dir:" + ",".join(f"{p.name}={file_digest(p, cache_root)}" for p in sorted(folder.iterdir()) if p.is_file())
    if Path(pretrained).is_file():
        return "file:" + file_digest(pretrained, cache_root)
    return "tag:" + pretrained


def source_key(model, sample_fps: float, split: RetrievalSplit, weights: str, vocab_source: str) -> str:
    """Hash of what determines a split's features, the backbone unbuilt: ``model`` (a ModelConfig) backbone,
    compact_vocab, max_words, num_frames; ``weights`` (``weights_identity``); ``vocab_source`` (what the compact
    vocabulary is built from); ``sample_fps``; the split's dataset, name, videos, resolved paths and captions."""
    config = Path(__file__).parents[1] / "model" / "model_configs" / f"{model.backbone}.json"
    meta = {"backbone": model.backbone, "config": config.read_text() if config.is_file() else None, "weights": weights,
            "compact_vocab": model.compact_vocab, "vocab_source": vocab_source if model.compact_vocab else None,
            "max_words": model.max_words, "num_frames": model.num_frames, "sample_fps": sample_fps,
            "dataset": split.dataset, "split": split.name, "videos": list(split.video_ids),
            "paths": [str(Path(p).resolve()) for p in split.video_paths], "captions": list(split.captions),
            "caption_video": list(split.caption_video)}
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:20]


def lookup_cache(cache_root: str | Path, source: str) -> FeatureCache | None:
    """The cache the index names for ``source`` (a ``source_key``), or None when absent or incomplete."""
    try:
        folder = json.loads((Path(cache_root) / INDEX / f"{source}.json").read_text())["folder"]
        cache = FeatureCache.open(Path(cache_root) / folder)
    except (OSError, ValueError, KeyError):
        return None
    return cache if "logit_scale" in cache.meta else None


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
                progress: bool = True, weights: str | None = None, source: str | None = None) -> FeatureCache:
    """Encode ``split`` with the frozen ``backbone`` into ``cache_root/<dataset>-<split>-<key>`` (or reuse it);
    ``source``: its ``source_key``, recorded in the index."""
    folder = Path(cache_root) / f"{split.dataset}-{split.name}-{cache_key(backbone, split, num_frames, sample_fps, weights)}"
    head_meta = {"width": backbone.width, "logit_scale": float(backbone.logit_scale.detach()),
                 "vocab": list(backbone.tokenizer.vocab) if backbone.tokenizer.vocab is not None else None}
    if (folder / "meta.json").is_file():
        cache = FeatureCache.open(folder)
        if any(cache.meta.get(k) != v for k, v in head_meta.items()):  # built before the meta held them
            cache.meta.update(head_meta)
            _write_json(folder / "meta.json", cache.meta)
        if source:
            _write_json(Path(cache_root) / INDEX / f"{source}.json", {"folder": folder.name})
        return cache
    tmp = folder.with_name(f"{folder.name}.partial-{os.getpid()}")  # this process's own; removed on any failure
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _encode_split(backbone, split, tmp, folder, num_frames, sample_fps, device, batch_size, num_workers, progress, head_meta)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if source:
        _write_json(Path(cache_root) / INDEX / f"{source}.json", {"folder": folder.name})
    return FeatureCache.open(folder)


def _encode_split(backbone, split, tmp: Path, folder: Path, num_frames, sample_fps, device, batch_size, num_workers,
                  progress, head_meta) -> None:
    """Encode ``split`` into ``tmp``, then rename it to ``folder`` (another process's finished copy is kept)."""
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
            "backbone": backbone.name, **head_meta, "video_ids": list(split.video_ids), "captions": list(split.captions)}
    (tmp / "meta.json").write_text(json.dumps(meta))
    backbone.train(was_training)
    if (folder / "meta.json").is_file():  # another process finished the same cache meanwhile
        shutil.rmtree(tmp)
        return
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
