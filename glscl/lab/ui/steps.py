"""Optimising a GLSCL head on one fixed batch of backbone features: what a loss does to the query outputs.

    fit = fit_queries(model_cfg, width, batch, LossConfig(icl_weight=1.0), steps=100)
    fit.history        # one row per step: the loss and its parts
    query_cosines(fit.head, batch)

A demonstration for the tutorials (notebook 03), not a training recipe: the head starts from the
same initial weights for every loss (``seed``), sees the same batch at every step (no data order,
no augmentation), and is optimised with AdamW at a constant learning rate. Training proper is
``glscl.engine.run.run``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from glscl.config import LossConfig, ModelConfig
from glscl.losses import glscl_loss
from glscl.model.backbone import TextFeatures
from glscl.model.glscl import GLSCL

__all__ = ["Batch", "Fit", "fresh_head", "fit_queries", "query_cosines", "off_diagonal_mean"]


@dataclass
class Batch:
    """Backbone features of B matched pairs: frames x_f (B x T x d, padded frames 0), frame_mask (B x T),
    and the captions' ``TextFeatures``."""

    frames: torch.Tensor
    frame_mask: torch.Tensor
    text: TextFeatures

    def encode(self, head):
        """(text embedding, video embedding) of the batch under ``head``."""
        text = head.encode_text(self.text.sentence, self.text.tokens, self.text.mask)
        return text, head.encode_video(self.frames, self.frame_mask)


@dataclass
class Fit:
    """An optimised head and its history (DataFrame: one row per step, columns 'loss', 'contrastive',
    'icl', 'idl' as ``glscl_loss`` returns them)."""

    head: GLSCL
    history: pd.DataFrame


def fresh_head(cfg: ModelConfig, width: int, logit_scale: float, seed: int = 0) -> GLSCL:
    """A newly initialised GLSCL head, the same weights for the same seed."""
    torch.manual_seed(seed)
    return GLSCL(cfg, width, logit_scale)


def fit_queries(cfg: ModelConfig, width: int, logit_scale: float, batch: Batch, loss: LossConfig, steps: int,
                lr: float = 1e-3, seed: int = 0) -> Fit:
    """Optimise a fresh head (``fresh_head(cfg, width, logit_scale, seed)``) on ``batch`` for ``steps``
    AdamW steps (no weight decay) of ``glscl_loss`` with the weights and variant of ``loss``."""
    head = fresh_head(cfg, width, logit_scale, seed)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    history = []
    head.train()
    for _ in range(steps):
        text, video = batch.encode(head)
        parts = glscl_loss(head.similarity(text, video), head.logit_scale, text.queries, video.queries, loss)
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in parts.items()})
    head.eval()
    return Fit(head, pd.DataFrame(history))


@torch.no_grad()
def query_cosines(head: GLSCL, batch: Batch) -> dict[str, np.ndarray]:
    """K x K cosine matrices of the query outputs, averaged over the batch: 'visual' (c^v_k . c^v_l),
    'textual' (c^t_k . c^t_l) and 'visual vs textual' (c^v_k . c^t_l of matched pairs; its diagonal is
    what ICL pulls towards 1)."""
    head.eval()
    text, video = batch.encode(head)
    cv, ct = video.queries, text.queries
    return {"visual": (cv @ cv.transpose(1, 2)).mean(0).numpy(),
            "textual": (ct @ ct.transpose(1, 2)).mean(0).numpy(),
            "visual vs textual": (cv @ ct.transpose(1, 2)).mean(0).numpy()}


def off_diagonal_mean(matrix: np.ndarray) -> float:
    """Mean of the off-diagonal entries of a square matrix."""
    m = np.asarray(matrix)
    return float(m[~np.eye(len(m), dtype=bool)].mean())
