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

Where the paper is silent, the released code's choices are options (``model.temporal_activation``,
``model.temporal_init``, ``model.temporal_dropout``, ``model.temporal_norm_eps``, ``model.decoder_norm``,
``model.decoder_key_padding_mask``, ``model.query_init``;
``glscl/presets/released.yaml`` sets them all).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from glscl.config import ConfigError

if TYPE_CHECKING:
    from glscl.config import ModelConfig


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """QuickGELU, OpenAI CLIP's activation: x * sigmoid(1.702 x)."""
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "quick_gelu": quick_gelu}
"""``model.temporal_activation`` -> what ``nn.TransformerEncoderLayer`` takes."""


class TemporalTransformer(nn.Module):
    """CLIP4Clip's 'seqTransf': frame position embeddings, a transformer encoder, a residual.

    v_f = x_f + Encoder(x + P)_f, with padded frames masked out of the attention. Each layer is
    pre-norm, like CLIP's residual attention blocks: x + Attn(LN_1(x)), then x + MLP(LN_2(x)),
    the MLP d -> 4d -> d with ``activation`` in between.
    """

    def __init__(self, width: int, layers: int, heads: int, max_frames: int, dropout: float,
                 activation: str = "relu", norm_eps: float = 1e-5):
        super().__init__()
        self.position = nn.Embedding(max_frames, width)
        nn.init.normal_(self.position.weight, std=0.01)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout, activation=ACTIVATIONS[activation],
                                           layer_norm_eps=norm_eps, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    @classmethod
    def from_config(cls, cfg: ModelConfig, width: int) -> TemporalTransformer | None:
        """The temporal transformer ``cfg`` asks for (None when ``model.temporal_layers`` = 0)."""
        if cfg.temporal_layers == 0:
            return None
        dropout = cfg.dropout if cfg.temporal_dropout is None else cfg.temporal_dropout
        return cls(width, cfg.temporal_layers, cfg.temporal_heads, cfg.num_frames, dropout, cfg.temporal_activation,
                   cfg.temporal_norm_eps)

    @torch.no_grad()
    def init_from_clip(self, clip: nn.Module) -> None:
        """CLIP4Clip's initialisation (``model.temporal_init = 'clip'``): layer i copies layer i of
        the text transformer of ``clip`` (an open_clip model: attention, ln_1, MLP, ln_2; the LayerNorms keep
        ``model.temporal_norm_eps``) and the
        frame positions copy the first T rows of its text positional embedding.

        The copied layers then compute what CLIP's text layers compute (without the causal mask)
        when ``model.temporal_activation`` is the backbone's own activation.
        """
        text, width = clip.transformer, self.position.embedding_dim
        layers, frames = list(self.encoder.layers), self.position.num_embeddings
        if text.width != width:
            raise ConfigError(f"model.temporal_init = 'clip' needs the backbone's text width ({text.width}) to equal "
                              f"its embedding width ({width}); use model.temporal_init=random")
        if len(layers) > len(text.resblocks):
            raise ConfigError(f"model.temporal_layers = {len(layers)} exceeds the backbone's {len(text.resblocks)} text "
                              "layers that model.temporal_init=clip copies")
        if frames > clip.positional_embedding.shape[0]:
            raise ConfigError(f"model.num_frames = {frames} exceeds the backbone's {clip.positional_embedding.shape[0]} "
                              "text positions that model.temporal_init=clip copies")
        for layer, block in zip(layers, text.resblocks):
            plain = (isinstance(block.attn, nn.MultiheadAttention)
                     and all(isinstance(getattr(block, ls, None), nn.Identity) for ls in ("ls_1", "ls_2"))
                     and [name for name, _ in block.mlp.named_children()] == ["c_fc", "gelu", "c_proj"]
                     and block.mlp.c_fc.weight.shape == layer.linear1.weight.shape)
            if not plain:
                raise ConfigError(f"model.temporal_init = 'clip': the text layers of model.backbone = {type(clip).__name__} "
                                  "are not plain residual attention blocks; use model.temporal_init=random")
            if block.attn.num_heads != layer.self_attn.num_heads:
                raise ConfigError(f"model.temporal_heads = {layer.self_attn.num_heads} differs from the {block.attn.num_heads} "
                                  "heads of the text layers that model.temporal_init=clip copies")
            pairs = [(layer.self_attn.in_proj_weight, block.attn.in_proj_weight),
                     (layer.self_attn.in_proj_bias, block.attn.in_proj_bias),
                     (layer.self_attn.out_proj.weight, block.attn.out_proj.weight),
                     (layer.self_attn.out_proj.bias, block.attn.out_proj.bias),
                     (layer.norm1.weight, block.ln_1.weight), (layer.norm1.bias, block.ln_1.bias),
                     (layer.linear1.weight, block.mlp.c_fc.weight), (layer.linear1.bias, block.mlp.c_fc.bias),
                     (layer.linear2.weight, block.mlp.c_proj.weight), (layer.linear2.bias, block.mlp.c_proj.bias),
                     (layer.norm2.weight, block.ln_2.weight), (layer.norm2.bias, block.ln_2.bias)]
            for dst, src in pairs:
                dst.copy_(src)
        self.position.weight.copy_(clip.positional_embedding[:frames])

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(frames.shape[1], device=frames.device)
        x = self.encoder(frames + self.position(positions), src_key_padding_mask=~mask)
        return frames + x


def global_interaction_weights(sentence: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor,
                               tau: float, normalize: bool = False) -> torch.Tensor:
    """w_f = softmax_f(t . v_f / tau) for every text x video pair: (N x M x T) (``normalize``: t and
    v_f L2-normalised first, as ``global_similarity`` does with ``model.global_normalize``).

    Padded frames are removed *before* the softmax, so they get weight exactly 0 and the
    weights of real frames sum to 1 (the released code multiplies by the mask after the
    softmax without renormalising, so its weights sum to less than 1 on short videos).
    """
    if normalize:
        sentence, frames = F.normalize(sentence, dim=-1), F.normalize(frames, dim=-1)
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
    cross-attention unless ``key_padding_mask`` is False (the released code passes no mask).

    Each decoder layer is self-attention over the queries, cross-attention to the memory and a
    d -> 4d -> d ReLU MLP, each a residual sublayer; ``norm`` places the layer norms:
        'pre':  x = x + Sub(LN(x)) per sublayer, and a final LN after the last layer;
        'post': x = LN(x + Sub(x)) per sublayer, no final LN (the released code).
    ``query_init``: 'randn' draws Q ~ N(0, 1/d), 'rand' Q ~ U[0, 1) (the released code).
    """

    def __init__(self, width: int, num_queries: int, layers: int, heads: int, dropout: float,
                 shared_queries: bool = True, shared_decoder: bool = True, norm: str = "pre", query_init: str = "randn",
                 key_padding_mask: bool = True):
        super().__init__()
        self.key_padding_mask = key_padding_mask
        self.video_queries = self._queries(num_queries, width, query_init)
        self.text_queries = self.video_queries if shared_queries else self._queries(num_queries, width, query_init)
        self.video_decoder = self._decoder(width, layers, heads, dropout, norm)
        self.text_decoder = self.video_decoder if shared_decoder else self._decoder(width, layers, heads, dropout, norm)

    @classmethod
    def from_config(cls, cfg: ModelConfig, width: int) -> LocalInteraction:
        """The local interaction module ``cfg`` asks for."""
        return cls(width, cfg.num_queries, cfg.decoder_layers, cfg.decoder_heads, cfg.dropout, cfg.shared_queries,
                   cfg.shared_decoder, cfg.decoder_norm, cfg.query_init, cfg.decoder_key_padding_mask)

    @staticmethod
    def _queries(num_queries: int, width: int, init: str) -> nn.Parameter:
        if init == "rand":
            return nn.Parameter(torch.rand(num_queries, width))
        return nn.Parameter(torch.randn(num_queries, width) * width ** -0.5)

    @staticmethod
    def _decoder(width: int, layers: int, heads: int, dropout: float, norm: str) -> nn.TransformerDecoder:
        layer = nn.TransformerDecoderLayer(width, heads, 4 * width, dropout, batch_first=True, norm_first=norm == "pre")
        return nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(width) if norm == "pre" else None)

    def _attend(self, queries: torch.Tensor, decoder: nn.TransformerDecoder, memory: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        q = queries.unsqueeze(0).expand(memory.shape[0], -1, -1)
        out = decoder(q, memory, memory_key_padding_mask=~mask.bool() if self.key_padding_mask else None)
        return F.normalize(out, dim=-1)

    @torch.no_grad()
    def attention_maps(self, memory: torch.Tensor, mask: torch.Tensor, modality: str = "video") -> torch.Tensor:
        """Cross-attention of each query over frames (video) or tokens (text), per decoder layer.

        Returns (layers x B x K x T), averaged over heads; padded positions get 0 (with the key-padding mask). Replays the
        decoder layer by layer, pre- or post-norm (same computation as ``encode_*``, in eval mode).
        """
        queries = self.video_queries if modality == "video" else self.text_queries
        decoder = self.video_decoder if modality == "video" else self.text_decoder
        x = queries.unsqueeze(0).expand(memory.shape[0], -1, -1)
        maps = []
        for layer in decoder.layers:
            pre = layer.norm_first
            x = x + layer._sa_block(layer.norm1(x), None, None) if pre else layer.norm1(x + layer._sa_block(x, None, None))
            padding = ~mask.bool() if self.key_padding_mask else None
            out, w = layer.multihead_attn(layer.norm2(x) if pre else x, memory, memory, key_padding_mask=padding,
                                          need_weights=True, average_attn_weights=True)
            maps.append(w)
            x = x + layer.dropout2(out) if pre else layer.norm2(x + layer.dropout2(out))
            x = x + layer._ff_block(layer.norm3(x)) if pre else layer.norm3(x + layer._ff_block(x))
        return torch.stack(maps)

    def encode_video(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """c^v (B x K x d), unit norm per query."""
        return self._attend(self.video_queries, self.video_decoder, frames, mask)

    def encode_text(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """c^t (B x K x d), unit norm per query."""
        return self._attend(self.text_queries, self.text_decoder, tokens, mask)
