"""One factory for the heads and the end-to-end model: ``create_head`` and ``create_model``."""
from __future__ import annotations

import math

import torch
from torch import nn

from glscl.config import ConfigError, ModelConfig
from glscl.model.backbone import Backbone, create_backbone
from glscl.model.embedding import TextEmbedding, VideoEmbedding
from glscl.model.glscl import GLSCL
from glscl.model.mean_pooling import MeanPooling
from glscl.model.vtc import VTCHead

Head = GLSCL | MeanPooling | VTCHead


def create_head(cfg: ModelConfig, width: int, logit_scale: float = math.log(1 / 0.07),
                backbone: Backbone | None = None) -> Head:
    """The head ``cfg.head`` names: ``GLSCL`` ('glscl'), ``MeanPooling`` ('mean_pooling') or ``VTCHead`` ('vtc').

    ``logit_scale``: CLIP's learned log-scale, the initial value of the InfoNCE heads' own copy (VTC learns a temperature).
    ``backbone``: needed when ``model.temporal_init = 'clip'`` (the temporal transformer copies its text layers).
    """
    if cfg.head == "vtc":
        head = VTCHead(cfg, width)
    elif cfg.head == "mean_pooling":
        head = MeanPooling(cfg, width, logit_scale)
    else:
        head = GLSCL(cfg, width, logit_scale)
    if cfg.temporal_init == "clip" and head.temporal is not None:
        if backbone is None:
            raise ConfigError("model.temporal_init = 'clip' copies the backbone's text layers: "
                              "pass the backbone to create_head(..., backbone=...)")
        head.temporal.init_from_clip(backbone.clip)
    return head


class Retriever(nn.Module):
    """Backbone + head: pixels and token ids in, similarity out (end-to-end training)."""

    def __init__(self, backbone: Backbone, head: Head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def encode_video(self, pixels: torch.Tensor, mask: torch.Tensor) -> VideoEmbedding:
        """pixels (B x T x 3 x H x W), mask (B x T) -> video embedding."""
        return self.head.encode_video(self.backbone.encode_frames(pixels), mask)

    def encode_text(self, ids: torch.Tensor) -> TextEmbedding:
        """token ids (B x L) -> text embedding."""
        f = self.backbone.encode_text(ids)
        return self.head.encode_text(f.sentence, f.tokens, f.mask)

    def forward(self, ids: torch.Tensor, pixels: torch.Tensor, frame_mask: torch.Tensor):
        text, video = self.encode_text(ids), self.encode_video(pixels, frame_mask)
        return self.head.similarity(text, video), text, video


def create_model(cfg: ModelConfig, device: str | torch.device = "cpu", vocab: tuple[int, ...] | None = None) -> Retriever:
    """Backbone (open_clip, ``cfg.backbone`` / ``cfg.pretrained``) plus a fresh head (``create_head``).

    ``vocab``: compact vocabulary (``Tokenizer.build_vocab``) when ``cfg.compact_vocab`` is set.
    """
    backbone = create_backbone(cfg.backbone, cfg.pretrained, context_length=cfg.max_words, device=device)
    if cfg.compact_vocab:
        if vocab is None:
            raise ValueError("model.compact_vocab is set but no vocabulary was given")
        backbone.use_compact_vocab(vocab)
    if cfg.freeze_backbone:
        backbone.requires_grad_(False)
    head = create_head(cfg, backbone.width, float(backbone.logit_scale.detach()), backbone).to(device)
    return Retriever(backbone, head)
