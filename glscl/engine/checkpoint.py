"""Checkpoints: weights as safetensors, the config as YAML beside them, nothing executable.

A checkpoint folder holds

    model.safetensors   the weights (shared parameters stored once)
    config.yaml         the RunConfig that built the model
    vocab.json          the compact vocabulary, when one is used
    train_state.pt      optimiser / scheduler / step (only for resuming; loaded with weights_only=True)

A file that cannot be loaded raises ``CheckpointError``, one line naming it; a pickle that holds
anything but tensors and plain data is refused unread (nothing in it runs).
"""
from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from glscl.config import RunConfig, load_config, save_config
from glscl.files import atomic_write, write_text

PICKLE_REFUSED = "is a pickle; glscl loads only safetensors/weights-only files (it holds objects or code: refused unread)"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded; the message is one line naming the file."""


def save_checkpoint(folder: str | Path, model: nn.Module, cfg: RunConfig, *, vocab: tuple[int, ...] | None = None,
                    train_state: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights, ``cfg`` (and ``vocab``, ``train_state``) into ``folder``; each file atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "model.safetensors", lambda p: save_model(model, str(p)))
    atomic_write(folder / "config.yaml", lambda p: save_config(cfg, p))
    if vocab is not None:
        write_text(folder / "vocab.json", json.dumps(list(vocab)))
    if train_state is not None:
        save_train_state(folder, train_state)
    return folder


def save_train_state(folder: str | Path, train_state: dict[str, Any]) -> None:
    """Write ``folder/train_state.pt`` atomically (the weights beside it are left as they are)."""
    atomic_write(Path(folder) / "train_state.pt", lambda p: torch.save(train_state, p))


def load_config_and_vocab(folder: str | Path) -> tuple[RunConfig, tuple[int, ...] | None]:
    folder = Path(folder)
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder} is not a checkpoint: model.safetensors is missing")
    cfg = load_config(folder / "config.yaml")
    vocab_file = folder / "vocab.json"
    if not vocab_file.is_file():
        return cfg, None
    try:
        vocab = json.loads(vocab_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{vocab_file}: not valid JSON at line {e.lineno}, column {e.colno} ({e.msg})") from None
    if not isinstance(vocab, list) or not all(isinstance(i, int) for i in vocab):
        raise CheckpointError(f"{vocab_file}: expected a JSON list of token ids")
    return cfg, tuple(vocab)


def load_weights(folder: str | Path, model: nn.Module, ignore: tuple[str, ...] = ()) -> None:
    """Load ``folder/model.safetensors`` into ``model`` (same architecture). Checkpoint entries whose
    names start with one of ``ignore`` may be left out (e.g. PEM's training-only ``entity_head.``)."""
    path = Path(folder) / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (not a checkpoint)")
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: cannot be read as safetensors ({_first_line(e)})") from None
    except RuntimeError as e:  # tensors of the wrong shape
        raise CheckpointError(f"{path}: does not match the model ({_first_line(e, last=True)})") from None
    unexpected = [k for k in unexpected if not k.startswith(ignore)]
    if missing or unexpected:
        raise CheckpointError(f"{path}: checkpoint does not match the model (missing {sorted(missing)[:3]}, "
                              f"unexpected {unexpected[:3]})")


def load_tensors(path: str | Path) -> Any:
    """A torch file (tensors and plain data), loaded weights-only on the CPU; ``CheckpointError`` naming the
    file when it cannot be read, and unread when it is a pickle that holds objects."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before refusing
            return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        with open(path, "rb") as f:
            is_pickle = f.read(1) == b"\x80"  # protocol 2 or later
        if is_pickle or zipfile.is_zipfile(path):  # a (zipped) pickle that holds more than tensors and plain data
            raise CheckpointError(f"{path} {PICKLE_REFUSED}") from None
        raise CheckpointError(f"{path}: cannot be read (not a torch file: {_first_line(e)})") from None
    except (EOFError, RuntimeError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot be read (truncated or not a torch file: {_first_line(e)})") from None


def load_train_state(folder: str | Path) -> dict[str, Any] | None:
    """``folder/train_state.pt`` (None when absent), loaded weights-only: a pickle with objects is refused."""
    path = Path(folder) / "train_state.pt"
    if not path.is_file():
        return None
    state = load_tensors(path)
    if not isinstance(state, dict) or not {"optimizer", "scheduler", "step", "epoch"} <= set(state):
        raise CheckpointError(f"{path}: not a training state (expected optimizer, scheduler, step and epoch)")
    return state


def _first_line(e: BaseException, last: bool = False) -> str:
    """The first (or last) line of an error message, cut after its first sentence."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = (lines[-1] if last else lines[0]) if lines else type(e).__name__
    return text.split(". ")[0][:160]
