"""Data: the embedded world, video decoding, dataset adapters, datasets and the feature cache."""
from __future__ import annotations

import dataclasses

from .splits import RetrievalSplit


def load_split(cfg, split: str) -> RetrievalSplit:
    """The ``split`` ('train', 'val', 'test') of the dataset a ``DataConfig`` names.

    The embedded world is written in MSR-VTT's layout and read by the MSR-VTT adapter.
    """
    from .adapters import load_dataset

    name = "msrvtt" if cfg.dataset == "world" else cfg.dataset
    kwargs = {"video_dir": cfg.video_dir, "skip_bad": cfg.skip_bad}
    if name in ("msrvtt", "activitynet"):
        kwargs["val_size"] = cfg.val_size
    result = load_dataset(name, cfg.root, split, **kwargs)
    return dataclasses.replace(result, dataset=cfg.dataset) if cfg.dataset == "world" else result
