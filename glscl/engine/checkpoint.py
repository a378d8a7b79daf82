"""Checkpoints: weights as safetensors, the config as YAML beside them, nothing executable.

A checkpoint folder holds

    model.safetensors   the weights (shared parameters stored once)
    config.yaml         the RunConfig that built the model
    vocab.json          the compact vocabulary, when one is used
    train_state.pt      optimiser / scheduler / step (only for resuming; loaded with weights_only=True)
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from glscl.config import RunConfig, load_config, save_config


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(folder: str | Path, model: nn.Module, cfg: RunConfig, *, vocab: tuple[int, ...] | None = None,
                    train_state: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights, ``cfg`` (and ``vocab``, ``train_state``) into ``folder``; each file atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic(folder / "model.safetensors", lambda p: save_model(model, str(p)))
    _atomic(folder / "config.yaml", lambda p: save_config(cfg, p))
    if vocab is not None:
        _atomic(folder / "vocab.json", lambda p: p.write_text(json.dumps(list(vocab))))
    if train_state is not None:
        _atomic(folder / "train_state.pt", lambda p: torch.save(train_state, p))
    return folder


def load_config_and_vocab(folder: str | Path) -> tuple[RunConfig, tuple[int, ...] | None]:
    folder = Path(folder)
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder} is not a checkpoint: model.safetensors is missing")
    cfg = load_config(folder / "config.yaml")
    vocab_file = folder / "vocab.json"
    vocab = tuple(json.loads(vocab_file.read_text())) if vocab_file.is_file() else None
    return cfg, vocab


def load_weights(folder: str | Path, model: nn.Module, ignore: tuple[str, ...] = ()) -> None:
    """Load ``folder/model.safetensors`` into ``model`` (same architecture). Checkpoint entries whose
    names start with one of ``ignore`` may be left out (e.g. PEM's training-only ``entity_head.``)."""
    missing, unexpected = load_model(model, str(Path(folder) / "model.safetensors"), strict=False)
    unexpected = [k for k in unexpected if not k.startswith(ignore)]
    if missing or unexpected:
        raise RuntimeError(f"{folder}: checkpoint does not match the model (missing {sorted(missing)[:3]}, "
                           f"unexpected {unexpected[:3]})")


def load_train_state(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / "train_state.pt"
    return torch.load(path, weights_only=True, map_location="cpu") if path.is_file() else None
