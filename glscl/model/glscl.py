"""The GLSCL head: the forward pass from backbone features to the similarity matrix.

Inputs are what the backbone (``glscl.model.backbone``) gives: per-frame embeddings ``frames``
(B x T x d) with a validity mask (True = real frame), per-token text states ``tokens``
(B x L x d) with a validity mask, and the sentence vector ``sentence`` (B x d, the
end-of-text state).

    video:  v_f  = frames + TemporalTransformer(frames + pos)            (B x T x d)
            c^v  = normalize(Decoder(queries, memory=v_f))               (B x K x d)
    text:   t    = sentence                                              (B x d)
            c^t  = normalize(Decoder(queries, memory=tokens))            (B x K x d)

    global interaction (no parameters):
            w_f(t, v) = softmax_f(t . v_f / tau)     (padded frames: weight exactly 0)
            S_g(t, v) = cos(t, sum_f w_f v_f)
    local interaction:
            S_l(t, v) = (1/K) sum_k cos(c^t_k, c^v_k)
    similarity:
            S = S_g + lambda * S_l        (model.interaction: 'global', 'local' or 'both')

A video's outputs depend only on the video and a text's only on the text, so evaluation
encodes each item once (``encode_video`` / ``encode_text``) and forms S for all pairs with
``similarity``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from glscl.config import ModelConfig
from glscl.model.embedding import TextEmbedding, VideoEmbedding, weighted_sum
from glscl.model.interaction import LocalInteraction, TemporalTransformer, global_similarity, local_similarity


class GLSCL(nn.Module):
    """GLSCL similarity head over backbone features (the backbone lives in ``glscl.model.backbone``).

    Holds its own copy of CLIP's learned logit scale (initialised from the backbone's), so the
    head trains alone from cached features.
    """

    def __init__(self, cfg: ModelConfig, width: int, logit_scale: float = math.log(1 / 0.07)):
        super().__init__()
        self.cfg = cfg
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))
        self.temporal = TemporalTransformer.from_config(cfg, width)
        self.local = LocalInteraction.from_config(cfg, width) if cfg.interaction in ("local", "both") else None

    def encode_video(self, frames: torch.Tensor, mask: torch.Tensor) -> VideoEmbedding:
        """frames: per-frame embeddings (B x T x d); mask: True for real frames (B x T)."""
        mask = mask.bool()
        if self.temporal is not None:
            frames = self.temporal(frames, mask)
        queries = self.local.encode_video(frames, mask) if self.local is not None else None
        return VideoEmbedding(frames, mask, queries=queries)

    def encode_text(self, sentence: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> TextEmbedding:
        """sentence: t (B x d); tokens: token states (B x L x d); mask: True for real tokens (B x L)."""
        queries = self.local.encode_text(tokens, mask.bool()) if self.local is not None else None
        return TextEmbedding(sentence, queries=queries)

    @property
    def part_weights(self) -> dict[str, float]:
        """S = sum of weight x part: {'global': 1, 'local': lambda} ('both'); the one part weighs 1 otherwise."""
        if self.cfg.interaction == "both":
            return {"global": 1.0, "local": self.cfg.local_weight}
        return {self.cfg.interaction: 1.0}

    def similarity_parts(self, text: TextEmbedding, video: VideoEmbedding) -> dict[str, torch.Tensor]:
        """The interactions this configuration uses: 'global' (S_g) and/or 'local' (S_l), each N texts x M videos."""
        cfg, parts = self.cfg, {}
        if cfg.interaction in ("global", "both"):
            parts["global"] = global_similarity(text.sentence, video.frames, video.mask, cfg.global_tau, cfg.global_normalize)
        if cfg.interaction in ("local", "both"):
            parts["local"] = local_similarity(text.queries, video.queries)
        return parts

    def similarity(self, text: TextEmbedding, video: VideoEmbedding) -> torch.Tensor:
        """S (N x M): S_g + lambda S_l ('both'), S_g ('global') or S_l ('local')."""
        return weighted_sum(self.similarity_parts(text, video), self.part_weights)

    def forward(self, sentence, tokens, token_mask, frames, frame_mask):
        """Encode a batch of texts and videos; return (S, text embedding, video embedding)."""
        text = self.encode_text(sentence, tokens, token_mask)
        video = self.encode_video(frames, frame_mask)
        return self.similarity(text, video), text, video
