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

The folder, ``<dataset>-<split>-<key>``, is named by ``cache_key``: a hash of everything that
determines the features, read from the config without building the backbone (backbone name and
its config file, the weights' identity, text length and vocabulary, the frame sampling T and fps,
the split's videos and captions). Change any of them and the cache misses; a run whose caches are
all built never loads the backbone (``lookup_cache``). ``meta.json`` is written last, so an
interrupted build never looks complete. It also holds what a head needs of the backbone (width d,
logit_scale, the compact vocabulary).

Caches built by earlier versions, whose folders carry another hash, stay valid: those versions
recorded ``<cache_root>/sources/<key>.json`` -> folder, with the same key, and ``lookup_cache``
follows it. Train-time augmentation is not applied to cached features. The features are computed
by the package's one split encoder (``glscl.data.features.backbone_videos`` / ``backbone_texts``).
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
"""Folder under the cache root for the memo of file digests (``files.json``) and earlier versions' key -> folder entries."""
ARRAYS = ("frames", "frame_mask", "sentence", "tokens", "token_mask", "caption_video")


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 of every tensor of ``module``'s state dict (names, shapes, dtypes and bytes)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


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
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(memo_path, memo)
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


def cache_key(model, sample_fps: float, split: RetrievalSplit, weights: str, vocab_source: str) -> str:
    """The feature cache's key: sha256 (20 hex digits) of what determines a split's features, the backbone unbuilt:
    ``model`` (a ModelConfig) backbone and its config file, compact_vocab, max_words, num_frames; ``weights``
    (``weights_identity``, or a random initialisation's ``weights_digest``); ``vocab_source`` (what the compact
    vocabulary is built from); ``sample_fps``; the split's dataset, name, videos, resolved paths and captions.

    Video paths enter resolved, so 'data/world/videos/x.mp4' and its absolute spelling hit the same cache."""
    config = Path(__file__).parents[1] / "model" / "model_configs" / f"{model.backbone}.json"
    meta = {"backbone": model.backbone, "config": config.read_text() if config.is_file() else None, "weights": weights,
            "compact_vocab": model.compact_vocab, "vocab_source": vocab_source if model.compact_vocab else None,
            "max_words": model.max_words, "num_frames": model.num_frames, "sample_fps": sample_fps,
            "dataset": split.dataset, "split": split.name, "videos": list(split.video_ids),
            "paths": [str(Path(p).resolve()) for p in split.video_paths], "captions": list(split.captions),
            "caption_video": list(split.caption_video)}
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:20]


def cache_folder(cache_root: str | Path, split: RetrievalSplit, key: str) -> Path:
    """Where the cache of ``split`` under ``key`` is built: ``<cache_root>/<dataset>-<split>-<key>``."""
    return Path(cache_root) / f"{split.dataset}-{split.name}-{key}"


def _built_folder(cache_root: str | Path, split: RetrievalSplit, key: str) -> Path | None:
    """The folder holding a finished build (meta.json) of ``split`` under ``key``: ``cache_folder``, else the one
    an earlier version recorded in ``sources/<key>.json``; None when neither exists."""
    folder = cache_folder(cache_root, split, key)
    if not (folder / "meta.json").is_file():
        try:
            folder = Path(cache_root) / json.loads((Path(cache_root) / INDEX / f"{key}.json").read_text())["folder"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return folder if (folder / "meta.json").is_file() else None


def lookup_cache(cache_root: str | Path, split: RetrievalSplit, key: str) -> FeatureCache | None:
    """The cache of ``split`` under ``key`` (a ``cache_key``) when it is built and its meta holds what a head
    needs of the backbone, else None."""
    folder = _built_folder(cache_root, split, key)
    try:
        cache = FeatureCache.open(folder) if folder is not None else None
    except (OSError, ValueError):
        return None
    return cache if cache is not None and "logit_scale" in cache.meta else None


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
def build_cache(backbone, split: RetrievalSplit, cache_root: str | Path, key: str, *, num_frames: int,
                sample_fps: float = 1.0, batch_size: int = 32, num_workers: int = 2, device: str | torch.device = "cpu",
                progress: bool = True) -> FeatureCache:
    """Encode ``split`` with the frozen ``backbone`` into ``cache_folder(cache_root, split, key)``, or reuse the
    cache found under ``key`` (``key``: the ``cache_key`` of the config ``backbone`` was built from)."""
    head_meta = {"width": backbone.width, "logit_scale": float(backbone.logit_scale.detach()),
                 "vocab": list(backbone.tokenizer.vocab) if backbone.tokenizer.vocab is not None else None}
    folder, found = cache_folder(cache_root, split, key), _built_folder(cache_root, split, key)
    if found is not None:
        cache = FeatureCache.open(found)
        if any(cache.meta.get(k) != v for k, v in head_meta.items()):  # built before the meta held them
            cache.meta.update(head_meta)
            write_json(found / "meta.json", cache.meta)
        return cache
    tmp = folder.with_name(f"{folder.name}.partial-{os.getpid()}")  # this process's own; removed on any failure
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _encode_split(backbone, split, tmp, folder, num_frames, sample_fps, device, batch_size, num_workers, progress, head_meta)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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
