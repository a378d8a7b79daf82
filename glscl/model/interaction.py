"""The interaction functions of GLSCL: the temporal transformer, the global interaction (S_g),
the local interaction module (K queries and a decoder, c^v and c^t) and S_l; and mean pooling,
the baseline's similarity.

    video:  v_f  = frames + TemporalTransformer(frames + pos)            (B x T x d)
    global interaction (no parameters):
            w_f(t, v) = softmax_f(t . v_f / tau)     (padded frames: weight exactly 0)
            S_g(t, v) = cos(t, sum_f w_f v_f)
    local interaction:
            c^v  = normalize(Decoder(queries, memory=v_f))               (B x K x d)
            c^t  = normalize(Decoder(queries, memory=tokens))            (B x K x d)
            S_l(t, v) = (1/K) sum_k cos(c^t_k, c^v_k)
    mean pooling (CLIP4Clip's meanP):
            S(t, v)   = cos(t, mean of the real v_f)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
    """CLIP4Clip's meanP: S(t, v) = cos(t, mean of the real v_f), (N x M)."""
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
