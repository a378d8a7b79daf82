"""Loading a trained run: its config, vocabulary, backbone and head with the chosen weights.

    loaded = load_run("runs/demo/glscl")        # checkpoints/best
    S = loaded.head.similarity(text, video)

A run trained from the feature cache saves the head only: the frozen backbone is rebuilt from
``model.pretrained``. An end-to-end run saves backbone and head together (a ``Retriever``; PEM's
training-only entity head is left out).

Paths in a saved config are relative to the folder the run was started from. When ``run_dir``
ends with the config's ``<out_dir>/<name>``, that folder is ``run_dir`` without them, and
relative paths that exist from there (data root, video and cache folders, backbone and prompter
checkpoints) are made absolute, so a run loads from any working directory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from glscl.config import RunConfig, build_config
from glscl.engine.checkpoint import load_config_and_vocab, load_weights
from glscl.model.backbone import Backbone, create_backbone
from glscl.model.factory import Head, Retriever, create_head

PATH_FIELDS = ("data.root", "data.video_dir", "data.cache_dir", "model.pretrained", "pem.prompter")


@dataclass
class LoadedRun:
    """A trained run, in eval mode. config: its RunConfig (paths resolved); vocab: the compact
    vocabulary or None; backbone and head: with the checkpoint's weights."""

    config: RunConfig
    vocab: tuple[int, ...] | None
    backbone: Backbone
    head: Head

    @property
    def cached(self) -> bool:
        """Whether the run trained from the feature cache (frozen backbone, head-only checkpoint)."""
        return self.config.data.cache_dir is not None


def started_from(run_dir: str | Path, cfg: RunConfig) -> Path | None:
    """The folder the run was started from: ``run_dir`` minus the config's ``<out_dir>/<name>`` (None when it does not end so)."""
    run_dir = Path(run_dir).resolve()
    tail = Path(cfg.out_dir) / cfg.name
    if tail.is_absolute():
        return None
    n = len(tail.parts)
    if run_dir.parts[-n:] != tail.parts:
        return None
    return run_dir.parents[n - 1]


def _resolve(value: str | None, base: Path) -> str | None:
    """A saved path as is if absolute or existing from here, else from ``base`` if it exists there."""
    if value is None:
        return None
    prefix = "local-dir:" if value.startswith("local-dir:") else ""
    path = Path(value[len(prefix):])
    if path.is_absolute() or path.exists() or not (base / path).exists():
        return value
    return prefix + str(base / path)


def resolve_paths(cfg: RunConfig, base: Path | None) -> RunConfig:
    """``cfg`` with the relative paths of ``PATH_FIELDS`` that exist from ``base`` made absolute."""
    if base is None:
        return cfg
    overrides = {}
    for key in PATH_FIELDS:
        section, field = key.split(".")
        value = getattr(getattr(cfg, section), field)
        resolved = _resolve(value, base)
        if resolved != value:
            overrides[key] = resolved
    return build_config(cfg, overrides) if overrides else cfg


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", checkpoint: str = "best") -> LoadedRun:
    """The run in ``run_dir`` (a results folder of ``glscl.engine.run.run``) with the weights of
    ``checkpoints/<checkpoint>`` ('best': chosen on validation, or 'last'), on ``device``, in eval mode."""
    folder = Path(run_dir) / "checkpoints" / checkpoint
    cfg, vocab = load_config_and_vocab(folder)
    cfg = resolve_paths(cfg, started_from(run_dir, cfg))
    cached = cfg.data.cache_dir is not None
    # a cached run keeps its backbone frozen at model.pretrained; an end-to-end run saved its own
    backbone = create_backbone(cfg.model.backbone, cfg.model.pretrained if cached else None,
                               context_length=cfg.model.max_words, device=device)
    if vocab is not None:
        backbone.use_compact_vocab(vocab)
    head = create_head(cfg.model, backbone.width, backbone=backbone).to(device)
    load_weights(folder, head if cached else Retriever(backbone, head), ignore=("entity_head.",))
    return LoadedRun(cfg, vocab, backbone.eval(), head.eval())
