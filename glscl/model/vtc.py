"""ALPRO's video-text contrastive (VTC) head.

**VTC** (``VTCHead``, ``vtc_loss``). A [CLS] vector per item, a linear projection to D (256),
L2 normalisation, and a symmetric InfoNCE over in-batch negatives at a learned temperature:

    z^t = normalize(W_t t),            t     = the text's end-of-text state (CLIP's sentence vector)
    z^v = normalize(W_v v_cls),        v_cls = mean over real frames of v_f
    S   = z^t (z^v)^T                  (cosine; N texts x M videos)
    L   = 1/2 [ CE_rows(S / temp, diag) + CE_cols(S / temp, diag) ]   (InfoNCE at scale 1 / temp, unclamped)

``v_f`` are the frame features after the temporal transformer (CLIP4Clip's seqTransf, the same
module GLSCL uses; ``model.temporal_layers = 0`` leaves the raw CLIP frame embeddings). ALPRO takes
the [CLS] token of its video encoder (TimeSformer); a CLIP image tower has no video-level token, so
the mean of the temporally mixed frame features stands in for it (CLIP4Clip's meanP, on seqTransf
outputs). With the same temporal transformer on both sides, VTC vs GLSCL differs only in the head
and the loss, which is what the ablation should isolate.

The temperature is a parameter initialised at 0.07 and, as in ALPRO, clamped *in place* to
[0.001, 0.5] before every use (``VTCHead.clamp_temperature_``): the stored value never leaves the
range, so it can move back from a bound. Negatives are the global batch: the trainer all-gathers
z^t and z^v (``glscl.engine.distributed.gather``, rank order), so the positive of local item i of rank r
sits in column r * local_batch + i, as ALPRO's targets say; every process computes the same global
loss and the averaged gradients equal the single-process gradient. ALPRO does not mask identical
captions; the workbench applies GLSCL's false-negative mask to both objectives
(``loss.mask_false_negatives``), so that the comparison isolates the objective.

``VTCHead`` keeps the heads' interface (``encode_text``, ``encode_video``, ``similarity_parts``,
``similarity``), so the evaluation code, the feature cache and end-to-end training run it unchanged.
Its embeddings carry z^t and z^v in their ``projected`` field (B x D); they have no queries.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from glscl.config import ModelConfig
from glscl.model.embedding import TextEmbedding, VideoEmbedding
from glscl.model.interaction import TemporalTransformer, masked_mean

TEMPERATURE_RANGE = (0.001, 0.5)
"""ALPRO clamps its learned temperature to this range before every forward pass."""


class VTCHead(nn.Module):
    """ALPRO's video-text contrastive head over backbone features; the heads' interface.

        v_f = frames + TemporalTransformer(frames + pos)      (absent when temporal_layers = 0)
        z^v = normalize(W_v mean_{real f} v_f)                 (B x D)
        z^t = normalize(W_t sentence)                          (B x D)
        S   = z^t (z^v)^T

    The embeddings carry z in their ``projected`` field (B x D).
    """

    part_weights = {"vtc": 1.0}
    """S is its one part, 'vtc'."""

    def __init__(self, cfg: ModelConfig, width: int):
        super().__init__()
        self.cfg = cfg
        self.temporal = TemporalTransformer.from_config(cfg, width)
        self.text_proj = nn.Linear(width, cfg.vtc_dim)
        self.video_proj = nn.Linear(width, cfg.vtc_dim)
        self.temperature = nn.Parameter(torch.tensor(float(cfg.vtc_temperature)))

    def clamp_temperature_(self) -> torch.Tensor:
        """Clamp the learned temperature into [0.001, 0.5] in place (no gradient), as ALPRO does
        before every forward pass; returns the parameter, ready to divide the similarities by."""
        with torch.no_grad():
            self.temperature.clamp_(*TEMPERATURE_RANGE)
        return self.temperature

    def encode_video(self, frames: torch.Tensor, mask: torch.Tensor) -> VideoEmbedding:
        """frames: per-frame embeddings (B x T x d); mask: True for real frames (B x T)."""
        mask = mask.bool()
        if self.temporal is not None:
            frames = self.temporal(frames, mask)
        z = F.normalize(self.video_proj(masked_mean(frames, mask)), dim=-1)
        return VideoEmbedding(frames, mask, projected=z)

    def encode_text(self, sentence: torch.Tensor, tokens: torch.Tensor | None = None,
                    mask: torch.Tensor | None = None) -> TextEmbedding:
        """sentence: end-of-text state t (B x d); token states are not used by VTC."""
        z = F.normalize(self.text_proj(sentence), dim=-1)
        return TextEmbedding(sentence, projected=z)

    def similarity_parts(self, text: TextEmbedding, video: VideoEmbedding) -> dict[str, torch.Tensor]:
        return {"vtc": text.projected @ video.projected.T}

    def similarity(self, text: TextEmbedding, video: VideoEmbedding) -> torch.Tensor:
        """S = z^t (z^v)^T, N texts x M videos (cosines)."""
        return self.similarity_parts(text, video)["vtc"]

    def forward(self, sentence, tokens, token_mask, frames, frame_mask):
        text = self.encode_text(sentence, tokens, token_mask)
        video = self.encode_video(frames, frame_mask)
        return self.similarity(text, video), text, video
