"""The embedded world: the one home of its presets, its world, its tiny CLIP and its run configs.

``glscl demo`` trains on it; the grids, the tutorials and the benchmarks prepare it here.

* ``PRESETS``: the preset of each world (scenes: ``embedded``, objects: ``embedded-objects``);
* ``world_settings(world, quick)``: the world's generator settings (``glscl.data.world.WorldConfig``);
* ``prepare_embedded(root, quick, world=...)``: the world written at ``root`` and the tiny CLIP
  pre-trained on its frames (``<root>/clip-tiny-pretrained.safetensors``), each reused when done;
* ``demo_config(root, clip, out, cache, quick, world)``: the demo's run config on that world;
* ``quick_config(cfg)``: any run config on the world made quick (what ``glscl ablate --quick`` runs).

Quick has one meaning: the small world, a short pre-training of the tiny CLIP and the short
schedule, together. ``glscl demo --quick``, ``glscl ablate --quick``, ``tutorial.setup(quick=True)``
and the tutorials' ``quick`` parameter all mean it. Its parts have their own names:

    SMALL_WORLD            120 / 40 / 40 videos (train / val / test) instead of the shipped sizes
    SHORT_PRETRAIN_STEPS   20 pre-training steps of the tiny CLIP instead of 400
    SHORT_PRESET           preset embedded-short: two epochs, validated every epoch (``short_schedule``)

A quick world lives in its own folder, ``<root>-quick`` (``quick_root``), so a quick run never
replaces the full world (``generate_world`` rewrites a folder whose world has other settings).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from glscl.config import RunConfig, build_config
from glscl.data.world import WorldConfig, generate_world, world_config
from glscl.engine.pretrain import PretrainConfig, pretrain_clip

PRESETS = {"scenes": "embedded", "objects": "embedded-objects"}
"""The preset of each embedded world."""
SHORT_PRESET = "embedded-short"
"""The embedded default on the short schedule (the only fields it changes: ``short_schedule``)."""
SMALL_WORLD = {"n_train": 120, "n_val": 40, "n_test": 40}
"""The quick world's sizes (WorldConfig fields): seconds to write."""
SHORT_PRETRAIN_STEPS = 20
"""Pre-training steps of the tiny CLIP when quick (``PretrainConfig().steps`` otherwise)."""
CLIP_NAME = "clip-tiny-pretrained.safetensors"
"""The tiny CLIP checkpoint's file name in the world folder."""
WORLD_PATH_KEYS = ("data.root", "data.video_dir", "data.cache_dir", "model.pretrained")
"""Config fields that may name a path inside the world folder (``quick_config`` moves them)."""

__all__ = ["PRESETS", "SHORT_PRESET", "SMALL_WORLD", "SHORT_PRETRAIN_STEPS", "CLIP_NAME", "world_settings",
           "pretrain_config", "prepare_embedded", "pretrain_tiny_clip", "short_schedule", "demo_config", "quick_root",
           "quick_config", "quick_overrides"]


def world_settings(world: str = "scenes", quick: bool = False) -> WorldConfig:
    """The generator settings of ``world`` (scenes or objects): the shipped world, ``SMALL_WORLD``-sized when quick."""
    return world_config(world, **(SMALL_WORLD if quick else {}))


def pretrain_config(quick: bool = False) -> PretrainConfig:
    """The tiny CLIP's pre-training: ``SHORT_PRETRAIN_STEPS`` steps when quick, else the full 400."""
    return PretrainConfig(steps=SHORT_PRETRAIN_STEPS) if quick else PretrainConfig()


def pretrain_tiny_clip(root: str | Path, quick: bool = False, progress: bool = True) -> Path:
    """The tiny CLIP pre-trained on the frames of the world at ``root`` (``<root>/CLIP_NAME``; reused when current)."""
    root = Path(root)
    return pretrain_clip(root, root / CLIP_NAME, pretrain_config(quick), progress=progress)


def prepare_embedded(root: str | Path = "data/world", quick: bool = False, progress: bool = True,
                     world: str = "scenes") -> Path:
    """Write ``world`` (``world_settings``) at ``root`` and pre-train the tiny CLIP on its frames (each reused
    when already done); returns the checkpoint."""
    root = Path(root)
    generate_world(root, world_settings(world, quick), progress=progress)
    return pretrain_tiny_clip(root, quick, progress)


def short_schedule() -> dict[str, Any]:
    """The fields preset ``SHORT_PRESET`` sets differently from ``embedded`` (the short schedule), as overrides."""
    full, short = build_config("embedded"), build_config(SHORT_PRESET)
    return {f"{section}.{key}": value for section in ("model", "loss", "data", "train")
            for key, value in vars(getattr(short, section)).items() if getattr(getattr(full, section), key) != value}


def demo_config(root: str = "data/world", clip: str | None = None, out: str = "runs", cache: str | None = None,
                quick: bool = False, world: str = "scenes") -> RunConfig:
    """The embedded default of ``world`` (preset ``PRESETS[world]``; ``short_schedule`` on top when quick) with its
    folders moved to ``root`` (the world), ``clip`` (default ``<root>/CLIP_NAME``), ``out`` and ``cache``
    (default ``<root>/cache``)."""
    root = Path(root)
    return build_config(PRESETS[world], {
        **(short_schedule() if quick else {}),
        "out_dir": str(out), "data.root": str(root), "data.cache_dir": str(cache or root / "cache"),
        "model.pretrained": str(clip or root / CLIP_NAME)})


def quick_root(root: str | Path) -> str:
    """Where the quick world of ``root`` lives: ``<root>-quick``."""
    return str(root).rstrip("/") + "-quick"


def quick_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` made quick: ``short_schedule`` on top and, on the embedded world, every path inside ``data.root``
    (``WORLD_PATH_KEYS``) moved to ``quick_root``, where ``prepare_embedded(quick=True)`` writes the small world."""
    return build_config(cfg, quick_overrides(cfg))


def quick_overrides(cfg: RunConfig) -> dict[str, Any]:
    """What ``quick_config`` changes in ``cfg``, as dotted overrides."""
    changes = short_schedule()
    if cfg.data.dataset == "world":
        root = cfg.data.root.rstrip("/")
        for key in WORLD_PATH_KEYS:
            section, field = key.split(".")
            value = getattr(getattr(cfg, section), field)
            if isinstance(value, str) and (value == root or value.startswith(root + "/")):
                changes[key] = quick_root(root) + value[len(root):]
    return changes
