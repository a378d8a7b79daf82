"""The GLSCL head: the whole forward pass from backbone features to the similarity matrix.

Inputs are what the backbone (``glscl.backbone``) gives: per-frame embeddings ``frames``
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
            S = S_g + lambda * S_l        (modes: 'global', 'local', 'both', 'mean')

A video's outputs depend only on the video and a text's only on the text, so evaluation
encodes each item once (``encode_video`` / ``encode_text``) and forms S for all pairs with
``similarity``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone, create_backbone
from .config import ModelConfig


@dataclass
class VideoEmbedding:
    """Encoded videos. frames: v_f (B x T x d); mask: valid frames (B x T); queries: c^v (B x K x d), unit norm."""

    frames: torch.Tensor
    mask: torch.Tensor
    queries: torch.Tensor | None


@dataclass
class TextEmbedding:
    """Encoded texts. sentence: t (B x d); queries: c^t (B x K x d), unit norm."""

    sentence: torch.Tensor
    queries: torch.Tensor | None


class TemporalTransformer(nn.Module):
    """CLIP4Clip's 'seqTransf': frame position embeddings, a transformer encoder, a residual.

    v_f = x_f + Encoder(x + P)_f, with padded frames masked out of the attention.
    """

    def __init__(self, width: int, layers: int, heads: int, max_frames: int, dropout: float):
        super().__init__()
        self.position = nn.Embedding(max_frames, width)
        nn.init.normal_(self.position.weight, std=0.01)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(frames.shape[1], device=frames.device)
        x = self.encoder(frames + self.position(positions), src_key_padding_mask=~mask)
        return frames + x


def global_interaction_weights(sentence: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor,
                               tau: float) -> torch.Tensor:
    """w_f = softmax_f(t . v_f / tau) for every text x video pair: (N x M x T).

    Padded frames are removed *before* the softmax, so they get weight exactly 0 and the
    weights of real frames sum to 1 (the released code multiplies by the mask after the
    softmax without renormalising, so its weights sum to less than 1 on short videos).
    """
    logits = torch.einsum("nd,mtd->nmt", sentence, frames) / tau
    logits = logits.masked_fill(~mask[None], float("-inf"))
    return logits.softmax(dim=-1)


def global_similarity(sentence: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor, tau: float,
                      normalize: bool = False) -> torch.Tensor:
    """S_g(t, v) = cos(t, v_bar), v_bar = sum_f w_f v_f: (N x M). Parameter-free.

    Computed without materialising v_bar per pair: with a_f = t . v_f (one matrix product for
    all pairs) and the video's Gram matrix G = V V^T,
        t . v_bar = sum_f w_f a_f,   |v_bar|^2 = w^T G w.
    """
    if normalize:
        sentence, frames = F.normalize(sentence, dim=-1), F.normalize(frames, dim=-1)
    dots = torch.einsum("nd,mtd->nmt", sentence, frames)  # a_f for all pairs
    logits = (dots / tau).masked_fill(~mask[None], float("-inf"))
    w = logits.softmax(dim=-1)
    gram = torch.einsum("mtd,msd->mts", frames, frames)
    t_dot_vbar = (w * dots.masked_fill(~mask[None], 0.0)).sum(-1)
    w_gram = torch.bmm(w.transpose(0, 1), gram).transpose(0, 1)  # (N x M x T), batched over videos
    vbar_sq = (w_gram * w).sum(-1).clamp_min(1e-12)
    return t_dot_vbar / (sentence.norm(dim=-1, keepdim=True).clamp_min(1e-12) * vbar_sq.sqrt())


def local_similarity(text_queries: torch.Tensor, video_queries: torch.Tensor) -> torch.Tensor:
    """S_l(t, v) = (1/K) sum_k cos(c^t_k, c^v_k) for unit-norm queries: one N x Kd by Kd x M product."""
    k = text_queries.shape[1]
    return text_queries.flatten(1) @ video_queries.flatten(1).T / k


def masked_mean(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real frames: sum_f m_f v_f / max(1, sum_f m_f), (B x T x d) -> (B x d).

    Padded positions are filled with 0 first, so whatever they hold (even inf) never leaks in.
    """
    m = mask.bool().unsqueeze(-1)
    return frames.masked_fill(~m, 0.0).sum(1) / m.sum(1).clamp_min(1).to(frames.dtype)


def mean_pooling_similarity(sentence: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CLIP4Clip meanP baseline: S = cos(t, mean of valid v_f)."""
    return F.normalize(sentence, dim=-1) @ F.normalize(masked_mean(frames, mask), dim=-1).T


class LocalInteraction(nn.Module):
    """Shared local interaction module: K learnable queries cross-attend to one modality's features.

    c_k = normalize(Decoder(Q, memory)_k). One set of queries and one decoder serve both
    modalities by default; ``shared_queries`` / ``shared_decoder`` = False give each modality
    its own (the paper's ablations). Padded frames and tokens are masked out of the
    cross-attention (the released code passes no mask).
    """

    def __init__(self, width: int, num_queries: int, layers: int, heads: int, dropout: float,
                 shared_queries: bool = True, shared_decoder: bool = True):
        super().__init__()
        self.video_queries = nn.Parameter(torch.randn(num_queries, width) * width ** -0.5)
        self.text_queries = self.video_queries if shared_queries else nn.Parameter(torch.randn(num_queries, width) * width ** -0.5)
        self.video_decoder = self._decoder(width, layers, heads, dropout)
        self.text_decoder = self.video_decoder if shared_decoder else self._decoder(width, layers, heads, dropout)

    @staticmethod
    def _decoder(width: int, layers: int, heads: int, dropout: float) -> nn.TransformerDecoder:
        layer = nn.TransformerDecoderLayer(width, heads, 4 * width, dropout, batch_first=True, norm_first=True)
        return nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(width))

    def _attend(self, queries: torch.Tensor, decoder: nn.TransformerDecoder, memory: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        q = queries.unsqueeze(0).expand(memory.shape[0], -1, -1)
        out = decoder(q, memory, memory_key_padding_mask=~mask)
        return F.normalize(out, dim=-1)

    @torch.no_grad()
    def attention_maps(self, memory: torch.Tensor, mask: torch.Tensor, modality: str = "video") -> torch.Tensor:
        """Cross-attention of each query over frames (video) or tokens (text), per decoder layer.

        Returns (layers x B x K x T), averaged over heads; padded positions get 0. Replays the
        pre-norm decoder layer by layer (same computation as ``encode_*``, in eval mode).
        """
        queries = self.video_queries if modality == "video" else self.text_queries
        decoder = self.video_decoder if modality == "video" else self.text_decoder
        x = queries.unsqueeze(0).expand(memory.shape[0], -1, -1)
        maps = []
        for layer in decoder.layers:
            x = x + layer._sa_block(layer.norm1(x), None, None)
            out, w = layer.multihead_attn(layer.norm2(x), memory, memory, key_padding_mask=~mask.bool(),
                                          need_weights=True, average_attn_weights=True)
            maps.append(w)
            x = x + layer.dropout2(out)
            x = x + layer._ff_block(layer.norm3(x))
        return torch.stack(maps)

    def encode_video(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """c^v (B x K x d), unit norm per query."""
        return self._attend(self.video_queries, self.video_decoder, frames, mask)

    def encode_text(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """c^t (B x K x d), unit norm per query."""
        return self._attend(self.text_queries, self.text_decoder, tokens, mask)


class GLSCL(nn.Module):
    """GLSCL similarity head over backbone features (the backbone lives in ``glscl.backbone``).

    Holds its own copy of CLIP's learned logit scale (initialised from the backbone's), so the
    head trains alone from cached features.
    """

    def __init__(self, cfg: ModelConfig, width: int, logit_scale: float = math.log(1 / 0.07)):
        super().__init__()
        self.cfg = cfg
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))
        self.temporal = (TemporalTransformer(width, cfg.temporal_layers, cfg.temporal_heads, cfg.num_frames, cfg.dropout)
                         if cfg.temporal_layers > 0 else None)
        self.local = (LocalInteraction(width, cfg.num_queries, cfg.decoder_layers, cfg.decoder_heads, cfg.dropout,
                                       cfg.shared_queries, cfg.shared_decoder)
                      if cfg.interaction in ("local", "both") else None)

    def encode_video(self, frames: torch.Tensor, mask: torch.Tensor) -> VideoEmbedding:
        """frames: per-frame embeddings (B x T x d); mask: True for real frames (B x T)."""
        mask = mask.bool()
        if self.temporal is not None:
            frames = self.temporal(frames, mask)
        queries = self.local.encode_video(frames, mask) if self.local is not None else None
        return VideoEmbedding(frames, mask, queries)

    def encode_text(self, sentence: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> TextEmbedding:
        """sentence: t (B x d); tokens: token states (B x L x d); mask: True for real tokens (B x L)."""
        queries = self.local.encode_text(tokens, mask.bool()) if self.local is not None else None
        return TextEmbedding(sentence, queries)

    def similarity_parts(self, text: TextEmbedding, video: VideoEmbedding) -> dict[str, torch.Tensor]:
        """The similarity components used by this configuration, each N texts x M videos."""
        cfg, parts = self.cfg, {}
        if cfg.interaction == "mean":
            parts["mean"] = mean_pooling_similarity(text.sentence, video.frames, video.mask)
        if cfg.interaction in ("global", "both"):
            parts["global"] = global_similarity(text.sentence, video.frames, video.mask, cfg.global_tau, cfg.global_normalize)
        if cfg.interaction in ("local", "both"):
            parts["local"] = local_similarity(text.queries, video.queries)
        return parts

    def similarity(self, text: TextEmbedding, video: VideoEmbedding) -> torch.Tensor:
        """S (N x M): S_g + lambda S_l ('both'), S_g ('global'), S_l ('local') or mean pooling ('mean')."""
        parts = self.similarity_parts(text, video)
        if self.cfg.interaction == "both":
            return parts["global"] + self.cfg.local_weight * parts["local"]
        return parts[self.cfg.interaction]

    def forward(self, sentence, tokens, token_mask, frames, frame_mask):
        """Encode a batch of texts and videos; return (S, text embedding, video embedding)."""
        text = self.encode_text(sentence, tokens, token_mask)
        video = self.encode_video(frames, frame_mask)
        return self.similarity(text, video), text, video


class Retriever(nn.Module):
    """Backbone + GLSCL head: pixels and token ids in, similarity out (end-to-end training)."""

    def __init__(self, backbone: Backbone, head: GLSCL):
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
    """Backbone (open_clip, ``cfg.backbone`` / ``cfg.pretrained``) plus a fresh GLSCL head.

    ``vocab``: compact vocabulary (``Tokenizer.build_vocab``) when ``cfg.compact_vocab`` is set.
    """
    backbone = create_backbone(cfg.backbone, cfg.pretrained, context_length=cfg.max_words, device=device)
    if cfg.compact_vocab:
        if vocab is None:
            raise ValueError("model.compact_vocab is set but no vocabulary was given")
        backbone.use_compact_vocab(vocab)
    if cfg.freeze_backbone:
        backbone.requires_grad_(False)
    from .alpro import create_head  # GLSCL or ALPRO's VTC head, by cfg.objective

    head = create_head(cfg, backbone.width, float(backbone.logit_scale.detach())).to(device)
    return Retriever(backbone, head)
