"""The mean-pooling head: CLIP4Clip's meanP baseline, GLSCL's temporal transformer without any interaction.

    v_f = frames + TemporalTransformer(frames + pos)      (absent when temporal_layers = 0)
    S   = cos(t, mean over the real frames of v_f)        (N texts x M videos)

Trained with the symmetric InfoNCE at CLIP's learned logit scale (no ICL / IDL: there are no
queries). Its parameters are the logit scale and the temporal transformer, created in GLSCL's
order, so with the same seed the two heads start from the same temporal transformer.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from glscl.config import ModelConfig
from glscl.model.embedding import TextEmbedding, VideoEmbedding
from glscl.model.interaction import TemporalTransformer, mean_pooling_similarity


class MeanPooling(nn.Module):
    """CLIP4Clip's meanP over backbone features; the heads' interface (``encode_text``, ``encode_video``,
    ``similarity_parts``, ``similarity``). Holds its own copy of CLIP's logit scale, as GLSCL does."""

    part_weights = {"mean": 1.0}
    """S is its one part, 'mean'."""

    def __init__(self, cfg: ModelConfig, width: int, logit_scale: float = math.log(1 / 0.07)):
        super().__init__()
        self.cfg = cfg
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))
        self.temporal = TemporalTransformer.from_config(cfg, width)

    def encode_video(self, frames: torch.Tensor, mask: torch.Tensor) -> VideoEmbedding:
        """frames: per-frame embeddings (B x T x d); mask: True for real frames (B x T)."""
        mask = mask.bool()
        if self.temporal is not None:
            frames = self.temporal(frames, mask)
        return VideoEmbedding(frames, mask)

    def encode_text(self, sentence: torch.Tensor, tokens: torch.Tensor | None = None,
                    mask: torch.Tensor | None = None) -> TextEmbedding:
        """sentence: t (B x d); token states are not used."""
        return TextEmbedding(sentence)

    def similarity_parts(self, text: TextEmbedding, video: VideoEmbedding) -> dict[str, torch.Tensor]:
        return {"mean": mean_pooling_similarity(text.sentence, video.frames, video.mask)}

    def similarity(self, text: TextEmbedding, video: VideoEmbedding) -> torch.Tensor:
        """S = cos(t, mean of the real v_f), N texts x M videos."""
        return self.similarity_parts(text, video)["mean"]

    def forward(self, sentence, tokens, token_mask, frames, frame_mask):
        text = self.encode_text(sentence, tokens, token_mask)
        video = self.encode_video(frames, frame_mask)
        return self.similarity(text, video), text, video
