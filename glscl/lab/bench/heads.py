"""Similarity heads GLSCL is compared with, for the efficiency bench only (not trained here).

Every head maps backbone features to an N texts x M videos similarity matrix:

    texts:  sentence t (N x d), token states w (N x L x d), token mask (N x L, True = real)
    videos: frame states v (M x T x d), frame mask (M x T, True = real)

and every head is computed in the same three stages (``PairwiseHead``):

    per text,  once:        a_i   = encode_text(t_i, w_i)          (in chunks of ``chunk`` items)
    per video, once:        b_j   = encode_video(v_j)              (in chunks of ``chunk`` items)
    per pair,  in blocks:   S_ij  = score(a_i, b_j)                (``block`` = texts x videos per block)

so that memory stays bounded by the block size (plus the N x M output) however large the
gallery is. Whatever can be computed once per item is; the heads differ in how much work is
left per pair (FLOPs, 1 multiply-add = 2 FLOPs, counting matrix products only):

    mean pooling (CLIP4Clip meanP)   2d                         per pair
    X-Pool-style                     4Td + 4d^2 + 2d            per pair   (+ 2d^2 per text, 4Td^2 per video)
    X-CLIP-style                     2d (1 + L + T + TL)        per pair
    ALPRO-style cross-encoder        layers [2S(4w^2 + 2wf) + 4S^2 w] + 2w per pair, S = L + T
    GLSCL (``glscl.model.GLSCL``)    2Td + 2T^2 + 2Kd           per pair   (+ temporal transformer
                                                                            and decoder once per item)

GLSCL itself is ``glscl.model.GLSCL``; ``GLSCLHead`` only adapts it to this interface
(encode once with ``encode_text`` / ``encode_video``, then ``similarity`` block by block).
``glscl_per_block_similarity`` evaluates it the released code's way instead, re-encoding both
sides for every 16 x 16 block of pairs.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from glscl.config import ModelConfig
from glscl.model.glscl import GLSCL
from glscl.model.interaction import masked_mean

Block = int | tuple[int, int]  # texts x videos per block (an int: square)

# ALPRO's VTM cross-encoder (ALPRO's release: BERT-base fusion layers over [text ; video] tokens):
# 6 layers, width 768, FFN 3072; max_txt_len 40 (MSR-VTT retrieval config) and 1 + 14 x 14 video
# tokens (CLS + patches of the temporally pooled TimeSformer output at 224 px).
ALPRO_VTM = dict(layers=6, width=768, ffn=3072, text_tokens=40, video_tokens=197)


# ----------------------------------------------------------------------------------------------
# helpers: slicing and concatenating per-item states (dicts of tensors or GLSCL's dataclasses)
# ----------------------------------------------------------------------------------------------

def _take(state: Any, start: int, stop: int) -> Any:
    """Rows start:stop of every tensor in a state (dict, dataclass, tensor or None)."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state[start:stop]
    if isinstance(state, dict):
        return {k: _take(v, start, stop) for k, v in state.items()}
    if dataclasses.is_dataclass(state):
        return type(state)(**{f.name: _take(getattr(state, f.name), start, stop) for f in dataclasses.fields(state)})
    raise TypeError(f"cannot slice a {type(state).__name__}")


def _cat(states: list[Any]) -> Any:
    """Concatenate per-chunk states along the item dimension."""
    first = states[0]
    if len(states) == 1 or first is None:
        return first
    if isinstance(first, torch.Tensor):
        return torch.cat(states)
    if isinstance(first, dict):
        return {k: _cat([s[k] for s in states]) for k in first}
    if dataclasses.is_dataclass(first):
        return type(first)(**{f.name: _cat([getattr(s, f.name) for s in states]) for f in dataclasses.fields(first)})
    raise TypeError(f"cannot concatenate {type(first).__name__}")


def _block_shape(block: Block) -> tuple[int, int]:
    bn, bm = (block, block) if isinstance(block, int) else block
    if bn < 1 or bm < 1:
        raise ValueError(f"block sizes must be >= 1, got {block}")
    return int(bn), int(bm)


def _chunked(fn, tensors: tuple[torch.Tensor, ...], chunk: int) -> Any:
    n = tensors[0].shape[0]
    return _cat([fn(*(x[i:i + chunk] for x in tensors)) for i in range(0, n, chunk)])


def _mask_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where valid, -inf where padded (added to logits before a softmax)."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def _attention_over_similarity(sim: torch.Tensor, bias: torch.Tensor, dim: int, tau: float) -> torch.Tensor:
    """X-CLIP's aggregation over ``dim``: sum_i softmax_i(s_i / tau + bias_i) s_i, bias -inf on padding.

    Padded entries get weight exactly 0 (similarities are finite cosines, so 0 * s_i = 0).
    """
    weights = torch.softmax(torch.add(bias, sim, alpha=1 / tau), dim=dim)
    return weights.mul_(sim).sum(dim=dim)


# ----------------------------------------------------------------------------------------------
# the common shape: encode once per item, score pairs block by block
# ----------------------------------------------------------------------------------------------

class PairwiseHead(nn.Module):
    """Base of all heads: per-item encodes done once (in chunks), pair scores in blocks.

    Subclasses define ``encode_text(sentence, tokens, token_mask)``, ``encode_video(frames,
    frame_mask)`` (states: dicts of tensors with items on dim 0) and ``score(text, video)``
    (a block of n x m similarities). ``forward`` returns the N x M matrix; peak memory is
    bounded by ``chunk`` and ``block`` plus the per-item states and the output.
    """

    default_block: tuple[int, int] = (256, 256)
    chunk: int = 256

    def encode_text(self, sentence: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor) -> Any:
        raise NotImplementedError

    def encode_video(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> Any:
        raise NotImplementedError

    def score(self, text: Any, video: Any) -> torch.Tensor:
        raise NotImplementedError

    def text_states(self, sentence: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor) -> Any:
        """Stage 1: every text encoded once (chunks of ``self.chunk``)."""
        return _chunked(self.encode_text, (sentence, tokens, token_mask.bool()), self.chunk)

    def video_states(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> Any:
        """Stage 2: every video encoded once (chunks of ``self.chunk``)."""
        return _chunked(self.encode_video, (frames, frame_mask.bool()), self.chunk)

    def pairwise(self, text: Any, video: Any, n: int, m: int, block: Block | None = None) -> torch.Tensor:
        """Stage 3: S (n x m) filled block by block (``block`` texts x videos, default ``default_block``)."""
        bn, bm = _block_shape(block or self.default_block)
        out = None
        for i in range(0, n, bn):
            t = _take(text, i, i + bn)
            for j in range(0, m, bm):
                s = self.score(t, _take(video, j, j + bm))
                if out is None:
                    out = s.new_empty(n, m)
                out[i:i + bn, j:j + bm] = s
        return out

    def forward(self, sentence: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor,
                frames: torch.Tensor, frame_mask: torch.Tensor, block: Block | None = None) -> torch.Tensor:
        """S (N x M) for N texts (sentence N x d, tokens N x L x d, mask N x L) and M videos
        (frames M x T x d, mask M x T)."""
        text = self.text_states(sentence, tokens, token_mask)
        video = self.video_states(frames, frame_mask)
        return self.pairwise(text, video, sentence.shape[0], frames.shape[0], block)


# ----------------------------------------------------------------------------------------------
# the heads
# ----------------------------------------------------------------------------------------------

class MeanPoolingHead(PairwiseHead):
    """CLIP4Clip 'meanP': v = mean of the valid frames v_f; S = cos(t, v).

    Follows CLIP4Clip's parameter-free mean pooling (same as ``model.mean_pooling_similarity``);
    simplifies nothing (CLIP4Clip's 'seqTransf' variant would add a temporal transformer per video).
    Per pair: one d-dimensional dot product, 2d FLOPs (a single N x d by d x M product).
    """

    default_block = (1024, 4096)

    def encode_text(self, sentence, tokens, token_mask):
        return {"t": F.normalize(sentence, dim=-1)}

    def encode_video(self, frames, frame_mask):
        return {"v": F.normalize(masked_mean(frames, frame_mask), dim=-1)}

    def score(self, text, video):
        return text["t"] @ video["v"].T


class XPoolHead(PairwiseHead):
    """X-Pool-style text-conditioned pooling (Gorti et al., CVPR 2022): one video vector per text.

        q = W_q LN(t),  k_f = W_k LN(v_f),  u_f = W_v LN(v_f)               (once per item)
        a_f = softmax_f(q . k_f / sqrt(d_h))  (padded frames excluded)      (per pair)
        x = LN_2(W_o sum_f a_f u_f);  v_t = LN_3(x + W_ff x);  S = cos(t, v_t)

    Follows X-Pool's released ``Transformer`` block (shared input layer norm, multi-head cross
    attention with one head by default, output projection, layer norm, a d x d linear
    'feed-forward' with a residual, final layer norm). Simplified: inference only (no dropout),
    a frame mask added (X-Pool samples a fixed number of frames). The two d x d projections are
    applied to each (text, video) pair, so the cost grows with N x M x d^2:
    per pair 4Td + 4d^2 + 2d FLOPs; per text 2d^2; per video 4Td^2.
    """

    default_block = (64, 128)

    def __init__(self, width: int = 512, heads: int = 1):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.norm_in = nn.LayerNorm(width)
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(width, width) for _ in range(3))
        self.out_proj = nn.Linear(width, width)
        self.norm_attn = nn.LayerNorm(width)
        self.linear = nn.Linear(width, width)
        self.norm_out = nn.LayerNorm(width)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1))

    def encode_text(self, sentence, tokens, token_mask):
        return {"t": F.normalize(sentence, dim=-1), "q": self._split(self.q_proj(self.norm_in(sentence)))}

    def encode_video(self, frames, frame_mask):
        x = self.norm_in(frames)
        return {"k": self._split(self.k_proj(x)), "u": self._split(self.v_proj(x)), "mask": frame_mask}

    def score(self, text, video):
        q, k, u = text["q"], video["k"], video["u"]                       # n,h,c   m,t,h,c
        logits = torch.einsum("nhc,mthc->nmht", q, k) * q.shape[-1] ** -0.5
        logits = logits.masked_fill(~video["mask"][None, :, None, :], float("-inf"))
        pooled = torch.einsum("nmht,mthc->nmhc", logits.softmax(-1), u).flatten(-2)   # n,m,d
        x = self.norm_attn(self.out_proj(pooled))
        v_t = F.normalize(self.norm_out(x + self.linear(x)), dim=-1)
        return torch.einsum("nd,nmd->nm", text["t"], v_t)


class XCLIPHead(PairwiseHead):
    """X-CLIP-style multi-grained similarity (Ma et al., ACM MM 2022).

    On L2-normalised features: sentence s, words w_l, frames f_t, video v = normalize(mean_t f_t):

        video-sentence  s . v
        video-word      AOSM_l(w_l . v)
        frame-sentence  AOSM_t(s . f_t)
        frame-word      (AOSM_l AOSM_t (w_l . f_t) + AOSM_t AOSM_l (w_l . f_t)) / 2
        S = mean of the four,    AOSM_i(x_i) = sum_i softmax_i(x_i / tau) x_i,  tau = 0.01

    i.e. each matrix is aggregated with softmax attention over the similarity matrix itself, as
    X-CLIP does. Simplified: the released code's learnable re-weighting matrices (d x d on the
    features, T x T and L x L on the similarity matrices, initialised to the identity) and its
    temporal transformer are left out; padded words and frames are masked. Per pair
    2d (1 + L + T + TL) FLOPs, dominated by the T x L frame-word matrix.
    """

    default_block = (64, 256)

    def __init__(self, tau: float = 0.01):
        super().__init__()
        self.tau = tau

    def encode_text(self, sentence, tokens, token_mask):
        return {"s": F.normalize(sentence, dim=-1), "w": F.normalize(tokens, dim=-1),
                "wbias": _mask_bias(token_mask, tokens.dtype)}

    def encode_video(self, frames, frame_mask):
        f = F.normalize(frames, dim=-1)
        return {"f": f, "v": F.normalize(masked_mean(f, frame_mask), dim=-1), "fbias": _mask_bias(frame_mask, f.dtype)}

    def score(self, text, video):
        s, w, wb = text["s"], text["w"], text["wbias"][:, None, :]          # n,d  n,l,d  n,1,l
        f, v, fb = video["f"], video["v"], video["fbias"][None]            # m,t,d  m,d  1,m,t
        aosm, tau = _attention_over_similarity, self.tau
        video_sentence = s @ v.T
        video_word = aosm(torch.einsum("nld,md->nml", w, v), wb, -1, tau)
        frame_sentence = aosm(torch.einsum("nd,mtd->nmt", s, f), fb, -1, tau)
        fw = torch.einsum("nld,mtd->nmlt", w, f)                           # n,m,l,t
        per_word = aosm(fw, fb[:, :, None, :], -1, tau)                    # over frames: n,m,l
        per_frame = aosm(fw, wb[..., None], -2, tau)                       # over words:  n,m,t
        frame_word = (aosm(per_word, wb, -1, tau) + aosm(per_frame, fb, -1, tau)) / 2
        return (video_sentence + video_word + frame_sentence + frame_word) / 4


class CrossEncoderHead(PairwiseHead):
    """ALPRO-style VTM cross-encoder: a fusion transformer over [text tokens ; video tokens] per pair.

        x^t = W_t w + e_text,  x^v = W_v v + e_video + p_f                 (once per item)
        h = Encoder([x^t ; x^v])   (key padding from both masks)           (per pair)
        S = w_s . LN(h_0)          (read at the first text token)

    Follows ALPRO's VTM: its fusion encoder is 6 BERT-base layers (width 768, FFN 3072) over the
    concatenated text and video embeddings with a linear head on [CLS], about 21 GFLOPs per pair
    (see ``ALPRO_VTM`` and ``cross_encoder_pair_flops``). Simplified: configurable (small)
    ``layers`` / ``width`` so the bench can run it, pre-norm layers, one matching logit instead
    of ALPRO's two-way classifier; the bench extrapolates FLOPs analytically to ALPRO's size.
    Per pair ``cross_encoder_pair_flops(L + T, width, ffn, layers) + 2 width`` FLOPs.
    """

    default_block = (8, 32)

    def __init__(self, in_width: int = 512, width: int = 256, layers: int = 2, heads: int = 4,
                 ffn: int | None = None, max_frames: int = 12):
        super().__init__()
        self.text_proj = nn.Linear(in_width, width)
        self.video_proj = nn.Linear(in_width, width)
        self.modality = nn.Embedding(2, width)
        self.frame_position = nn.Embedding(max_frames, width)
        layer = nn.TransformerEncoderLayer(width, heads, ffn or 4 * width, 0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.score_head = nn.Linear(width, 1)

    def encode_text(self, sentence, tokens, token_mask):
        return {"x": self.text_proj(tokens) + self.modality.weight[0], "mask": token_mask}

    def encode_video(self, frames, frame_mask):
        pos = self.frame_position.weight[: frames.shape[1]]
        return {"x": self.video_proj(frames) + self.modality.weight[1] + pos, "mask": frame_mask}

    def score(self, text, video):
        xt, xv = text["x"], video["x"]                                     # n,l,w  m,t,w
        n, m = xt.shape[0], xv.shape[0]
        seq = torch.cat([xt[:, None].expand(n, m, -1, -1), xv[None].expand(n, m, -1, -1)], dim=2)
        mask = torch.cat([text["mask"][:, None].expand(n, m, -1), video["mask"][None].expand(n, m, -1)], dim=2)
        h = self.encoder(seq.flatten(0, 1), src_key_padding_mask=~mask.flatten(0, 1))
        return self.score_head(self.norm(h[:, 0])).view(n, m)


def cross_encoder_pair_flops(seq_len: int, width: int, ffn: int, layers: int) -> int:
    """FLOPs of one pair through a fusion transformer (2 per multiply-add, matrix products only):

        layers x [ 2S (3w^2 + w^2) (QKV, output) + 2 x 2 S^2 w (attention) + 2 x 2 S w f (FFN) ]

    ALPRO's size (``ALPRO_VTM``: S = 40 + 197, w = 768, f = 3072, 6 layers): 21.2 GFLOPs.
    """
    s, w = seq_len, width
    return layers * (2 * s * 4 * w * w + 4 * s * s * w + 4 * s * w * ffn)


def alpro_pair_flops() -> int:
    """FLOPs per (text, video) pair of ALPRO's VTM fusion encoder (about 21.2 GFLOPs)."""
    a = ALPRO_VTM
    return cross_encoder_pair_flops(a["text_tokens"] + a["video_tokens"], a["width"], a["ffn"], a["layers"])


# ----------------------------------------------------------------------------------------------
# GLSCL: encode once (the cheap way) and per 16 x 16 block (the released code's way)
# ----------------------------------------------------------------------------------------------

class GLSCLHead(PairwiseHead):
    """Adapter: ``glscl.model.GLSCL`` behind the ``PairwiseHead`` interface (no own computation).

    encode_text / encode_video are the model's (decoder, and temporal transformer for videos,
    once per item); score is ``model.similarity`` on a block. ``global_similarity`` recomputes
    the videos' T x T Gram matrices per call, i.e. once per block of texts (2 T^2 d FLOPs per
    video per text block; the default text block of 1024 makes that once for a 1k query set).
    """

    default_block = (1024, 256)

    def __init__(self, model: GLSCL):
        super().__init__()
        self.model = model

    def encode_text(self, sentence, tokens, token_mask):
        return self.model.encode_text(sentence, tokens, token_mask)

    def encode_video(self, frames, frame_mask):
        return self.model.encode_video(frames, frame_mask)

    def score(self, text, video):
        return self.model.similarity(text, video)


def glscl_encode_once_similarity(head: GLSCL, text_inputs: tuple, video_inputs: tuple,
                                 block: Block = (1024, 256), chunk: int = 256) -> torch.Tensor:
    """S (N x M) with every text and video encoded once: O(N + M) decoder passes, then S in blocks.

    text_inputs = (sentence N x d, tokens N x L x d, token_mask N x L);
    video_inputs = (frames M x T x d, frame_mask M x T).
    """
    adapter = GLSCLHead(head)
    adapter.chunk = chunk
    return adapter(*text_inputs, *video_inputs, block=block)


def glscl_per_block_similarity(head: GLSCL, text_inputs: tuple, video_inputs: tuple, block: int = 16) -> torch.Tensor:
    """S (N x M) the released code's way: for every block x block tile of pairs, re-encode its
    texts (decoder) and its videos (temporal transformer + decoder), then score the tile.

    Same result as ``glscl_encode_once_similarity`` (up to float rounding), but each text is
    encoded ceil(M / block) times and each video ceil(N / block) times: O(N M / block) passes.
    """
    sentence, tokens, token_mask = text_inputs
    frames, frame_mask = video_inputs
    n, m = sentence.shape[0], frames.shape[0]
    out = sentence.new_empty(n, m)
    for i in range(0, n, block):
        for j in range(0, m, block):
            text = head.encode_text(sentence[i:i + block], tokens[i:i + block], token_mask[i:i + block].bool())
            video = head.encode_video(frames[j:j + block], frame_mask[j:j + block].bool())
            out[i:i + block, j:j + block] = head.similarity(text, video)
    return out


# ----------------------------------------------------------------------------------------------
# the bench's line-up at the paper's shapes
# ----------------------------------------------------------------------------------------------

HEAD_TITLES = {
    "mean": "mean pooling (CLIP4Clip meanP)",
    "xpool": "X-Pool-style",
    "xclip": "X-CLIP-style",
    "cross": "ALPRO-style cross-encoder",
    "glscl": "GLSCL (encode once)",
}


def make_heads(width: int = 512, num_frames: int = 12, num_queries: int = 8, decoder_layers: int = 3,
               temporal_layers: int = 4, heads: int = 8, cross_layers: int = 2, cross_width: int = 256,
               cross_heads: int = 4, xpool_heads: int = 1, seed: int = 0) -> dict[str, PairwiseHead]:
    """All heads at the given shapes (paper: d=512, T=12, K=8, 3 decoder layers, 4 temporal
    layers), randomly initialised, in eval mode with gradients off (inference benchmark)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(num_frames=num_frames, num_queries=num_queries, decoder_layers=decoder_layers,
                      decoder_heads=heads, temporal_layers=temporal_layers, temporal_heads=heads, dropout=0.0)
    made = {
        "mean": MeanPoolingHead(),
        "xpool": XPoolHead(width, heads=xpool_heads),
        "xclip": XCLIPHead(),
        "cross": CrossEncoderHead(width, cross_width, cross_layers, cross_heads, max_frames=num_frames),
        "glscl": GLSCLHead(GLSCL(cfg, width, logit_scale=math.log(1 / 0.07))),
    }
    return {k: h.eval().requires_grad_(False) for k, h in made.items()}
