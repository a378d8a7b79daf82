"""Resource guards: refuse, before allocating, what cannot fit in this machine's memory or disk.

The estimates count only the largest allocations (float32 activations of one training step and of
evaluation, the decoded clips of a batch, the similarity matrix, the weights with their gradients
and AdamW moments), so they err low: a config they refuse cannot run here, and one they let pass
may still need more than they say. Each refusal is one line naming the config fields to lower.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from glscl.config import ConfigError, RunConfig

FLOAT = 4  # bytes per float32
EVAL_TEXTS, EVAL_VIDEOS = 512, 256  # texts and videos evaluation encodes at a time (glscl.engine.evaluate)
CACHE_VIDEOS = 32  # videos the backbone decodes at a time when building a cache or evaluating end to end


def available_memory(device: torch.device) -> tuple[int, str]:
    """(bytes free for tensors, what they are): the GPU's free memory on CUDA, else the machine's available memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"{torch.cuda.get_device_name(device)}'s free memory"
    try:
        import psutil
        return psutil.virtual_memory().available, "this machine's available memory"
    except ImportError:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine's free memory"


def _backbone_shape(name: str) -> tuple[int, int]:
    """(embedding width, image size) of an open_clip model (512, 224 when it is unknown here)."""
    from glscl.model.backbone import model_config
    model_cfg = model_config(name) or {}
    return int(model_cfg.get("embed_dim", 512)), int(model_cfg.get("vision_cfg", {}).get("image_size", 224))


def memory_terms(cfg: RunConfig, num_captions: int, num_videos: int) -> list[tuple[int, str, tuple[str, ...]]]:
    """(bytes, what, the fields that set it) of the largest allocations of a run of ``cfg`` whose
    largest evaluation split has ``num_captions`` captions of ``num_videos`` videos."""
    m = cfg.model
    width, image = _backbone_shape(m.backbone)
    batch, frames, words = cfg.train.batch_size, m.num_frames, m.max_words
    terms = [(batch * m.temporal_heads * frames * frames * FLOAT * 2, "temporal attention of a batch",
              ("model.num_frames", "train.batch_size")),
             (num_captions * num_videos * FLOAT * 2, "the similarity matrix", ("data",))]
    if m.head == "glscl" and m.interaction != "global":
        q = m.num_queries
        per_sequence = m.decoder_heads * q * (q + max(frames, words)) + 8 * q * width  # one decoder layer
        terms += [
            (2 * batch * m.decoder_layers * per_sequence * FLOAT * 2, "the query decoders of a training batch",
             ("model.num_queries", "train.batch_size")),
            (max(EVAL_TEXTS, EVAL_VIDEOS) * per_sequence * FLOAT, "the query decoders during evaluation", ("model.num_queries",)),
            (EVAL_TEXTS * EVAL_VIDEOS * (q + frames) * FLOAT, "the local similarity of an evaluation block",
             ("model.num_queries", "model.num_frames")),
            (4 * 2 * q * width * FLOAT, "the queries with their gradients and optimiser moments", ("model.num_queries",)),
        ]
    clips = (batch if not cfg.data.cache_dir else CACHE_VIDEOS) * frames * 3 * image * image * FLOAT
    terms.append((clips, "the decoded clips of a batch", ("model.num_frames",) + (() if cfg.data.cache_dir else ("train.batch_size",))))
    return terms


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n < 1e12 else f"{n / 1e12:.1f} TB"


def check_memory(cfg: RunConfig, splits, device: torch.device) -> None:
    """Raise ``ConfigError`` when ``memory_terms`` add up to more than the device has (one line naming the fields)."""
    evaluated = [splits[s] for s in ("val", "test") if s in splits]
    captions = max((s.num_captions for s in evaluated), default=0)
    videos = max((s.num_videos for s in evaluated), default=0)
    terms = memory_terms(cfg, captions, videos)
    need = sum(t[0] for t in terms)
    have, where = available_memory(device)
    if need <= have:
        return
    size, what, fields = max(terms)
    flat = {**{f"model.{k}": v for k, v in cfg.model.to_dict().items()}, **{f"train.{k}": v for k, v in cfg.train.to_dict().items()}}
    named = ", ".join(f"{f}={flat[f]}" if f in flat else "the evaluation split" for f in fields)
    raise ConfigError(f"{named}: a run needs about {_gb(need)} of memory ({what}: {_gb(size)}), more than {where} "
                      f"({_gb(have)}); lower {' or '.join(f for f in fields if f in flat) or 'the evaluation split'}")


# -- the generated world -------------------------------------------------------------------------------

MP4_RATIO = 25  # raw RGB bytes per mp4 byte of a world video (measured: about 24 at the default settings)
WORLD_META_BYTES = 2000  # world.json and annotation bytes per video (captions, objects, events)


def check_world_size(root: str | Path, n_train: int, n_val: int, n_test: int, frames: int, size: int) -> None:
    """Refuse a world whose videos cannot fit on the disk under ``root``, or whose descriptions cannot
    fit in memory (``ConfigError`` naming the settings). Reads only."""
    videos = n_train + n_val + n_test
    disk = videos * (frames * size * size * 3 / MP4_RATIO + WORLD_META_BYTES)
    memory = videos * WORLD_META_BYTES * 4  # the world's description is built in memory
    where = Path(root).absolute()
    while not where.exists():
        where = where.parent
    free_disk = shutil.disk_usage(where).free
    free_memory, what = available_memory(torch.device("cpu"))
    settings = f"n_train={n_train}, n_val={n_val}, n_test={n_test}, frames={frames}, size={size}"
    if disk > free_disk:
        raise ConfigError(f"{settings}: the world needs about {_gb(disk)} on disk, more than the {_gb(free_disk)} free "
                          f"under {where}; lower n_train/n_val/n_test (or frames, size)")
    if memory > free_memory:
        raise ConfigError(f"{settings}: the world's description needs about {_gb(memory)} of memory, more than {what} "
                          f"({_gb(free_memory)}); lower n_train/n_val/n_test")
