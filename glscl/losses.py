"""Losses: the symmetric contrastive loss, ICL and IDL (the paper's meaning and the released code's).

Notation: a batch of B matched (text, video) pairs; S (B x B) similarities, row = text,
column = video; c^t, c^v (B x K x d) the unit-norm query outputs of the local interaction.

The released code swaps the prefixes of the two names: its "Inter_Diversity" is a diversity term
within the video queries and its "Intra_Consistency" a consistency term between the modalities.
``released_diversity`` and ``released_consistency`` reproduce its formulas under names that say
what they do, and ``loss.variant=released`` trains with them at the released scripts' weights, so
the difference between the paper's meaning and the released code can be ablated.

``create_loss(cfg)`` returns the training loss of the configured head (GLSCL, mean pooling or VTC).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from glscl.config import LossConfig, RunConfig


def info_nce(sim: torch.Tensor, logit_scale: torch.Tensor, *, max_scale: float | None = 100.0,
             same_caption: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE over in-batch negatives.

        s = min(exp(logit_scale), max_scale)        (max_scale None: s = exp(logit_scale))
        L = 1/2 [ CE_rows(s S, diag) + CE_cols(s S, diag) ]

    ``logit_scale`` is CLIP's learned log-scale. ``same_caption`` (B x B bool) marks off-diagonal
    pairs whose captions are identical (false negatives): they are removed from the softmax.
    """
    scale = logit_scale.exp() if max_scale is None else logit_scale.exp().clamp(max=max_scale)
    logits = scale * sim
    if same_caption is not None:
        eye = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
        logits = logits.masked_fill(same_caption & ~eye, float("-inf"))
    target = torch.arange(sim.shape[0], device=sim.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def inter_consistency(text_queries: torch.Tensor, video_queries: torch.Tensor) -> torch.Tensor:
    """ICL (paper meaning): pull visual query k towards textual query k of the matched pair.

        L_ICL = 1/(B K) sum_b sum_k (1 - cos(c^v_bk, c^t_bk))

    Zero when matched query outputs coincide; 2 when they are opposite.
    """
    return (1.0 - (F.normalize(text_queries, dim=-1) * F.normalize(video_queries, dim=-1)).sum(-1)).mean()


def _off_diagonal_cos_sq(queries: torch.Tensor) -> torch.Tensor:
    q = F.normalize(queries, dim=-1)
    k = q.shape[1]
    if k < 2:
        return queries.new_zeros(())
    cos = q @ q.transpose(1, 2)  # B x K x K
    off = ~torch.eye(k, dtype=torch.bool, device=q.device)
    return cos.pow(2)[:, off].mean()


def intra_diversity(text_queries: torch.Tensor, video_queries: torch.Tensor) -> torch.Tensor:
    """IDL (paper meaning): push the K query outputs of one modality apart, for both modalities.

        D(c) = 1/(B K (K-1)) sum_b sum_{k != l} cos(c_bk, c_bl)^2
        L_IDL = (D(c^v) + D(c^t)) / 2

    0 for mutually orthogonal queries (its minimum), 1 for identical ones (its maximum). The square
    makes orthogonality, not anti-alignment, the target (K > 2 vectors cannot all be opposite).
    """
    return 0.5 * (_off_diagonal_cos_sq(video_queries) + _off_diagonal_cos_sq(text_queries))


def released_diversity(video_queries: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """The released code's diversity term (video queries only), a margin ranking loss in both directions.

    C = batch mean of the K x K cosine matrices of c^v. Every off-diagonal entry must fall
    ``margin`` below the diagonal entry of its row (row term) and of its column (column term):
        L = 1/(K (K-1)) sum_{k != l} [ max(0, margin + C_kl - C_kk) + max(0, margin + C_kl - C_ll) ]
    C is symmetric, so the two terms are equal and L is twice the row term.
    """
    q = F.normalize(video_queries, dim=-1)
    k = q.shape[1]
    if k < 2:
        return video_queries.new_zeros(())
    c = (q @ q.transpose(1, 2)).mean(0)
    off = ~torch.eye(k, dtype=torch.bool, device=q.device)
    diag = c.diagonal()
    rows = F.relu(margin + c - diag[:, None])[off].mean()
    cols = F.relu(margin + c - diag[None, :])[off].mean()
    return rows + cols


def released_consistency(text_queries: torch.Tensor, video_queries: torch.Tensor, beta: float = 0.02,
                         target: float = 0.75) -> torch.Tensor:
    """The released code's consistency term (its "Intra_Consistency"), between the modalities.

        L = MSE(mean_b c^v_b, mean_b c^t_b) + beta * sum_k ( (sum_b cos(c^v_bk, c^t_bk)) / K - target )^2

    MSE averages over the K x d entries of the batch means.

    The inner sum over the batch is divided by K, not by B, as in the released code (it looks
    like a bug: the term then depends on the batch size).
    """
    k = text_queries.shape[1]
    mse = F.mse_loss(video_queries.mean(0), text_queries.mean(0))
    cos = F.cosine_similarity(video_queries, text_queries, dim=-1)  # B x K
    return mse + beta * ((cos.sum(0) / k - target) ** 2).sum()


def glscl_loss(sim: torch.Tensor, logit_scale: torch.Tensor, text_queries: torch.Tensor | None,
               video_queries: torch.Tensor | None, cfg: LossConfig,
               same_caption: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Total loss and its parts: L = InfoNCE + w_ICL * ICL + w_IDL * IDL (variant from ``cfg``).

    'paper': ICL = ``inter_consistency``, IDL = ``intra_diversity``, weights ``icl_weight`` / ``idl_weight``;
    'released': ICL = ``released_consistency``, IDL = ``released_diversity``, weights
    ``released_icl_weight`` / ``released_idl_weight`` (the released scripts: 1 and 1e-4).
    Returns a dict with 'loss' (what is optimised) and each part, for logging.
    """
    parts = {"contrastive": info_nce(sim, logit_scale, max_scale=cfg.max_logit_scale,
                                     same_caption=same_caption if cfg.mask_false_negatives else None)}
    total = parts["contrastive"]
    if text_queries is not None and video_queries is not None:
        if cfg.variant == "paper":
            parts["icl"] = inter_consistency(text_queries, video_queries)
            parts["idl"] = intra_diversity(text_queries, video_queries)
            weights = cfg.icl_weight, cfg.idl_weight
        else:
            parts["icl"] = released_consistency(text_queries, video_queries, cfg.released_beta, cfg.released_target)
            parts["idl"] = released_diversity(video_queries, cfg.released_margin)
            weights = cfg.released_icl_weight, cfg.released_idl_weight
        total = total + weights[0] * parts["icl"] + weights[1] * parts["idl"]
    parts["loss"] = total
    return parts


def vtc_loss(sim: torch.Tensor, temperature: torch.Tensor | float,
             same_caption: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """ALPRO's VTC loss on the (gathered) B x B cosine matrix S, row = text, column = video:
    ``info_nce`` at the learned temperature, logit scale log(1 / temp), unclamped.

        L = 1/2 [ CE_rows(S / temp, diag) + CE_cols(S / temp, diag) ]

    ``same_caption`` (B x B bool): off-diagonal pairs that are not true negatives, removed from
    the softmax. Returns {'vtc': L, 'loss': L, 'temperature': temp} (the last for logging).
    """
    temperature = torch.as_tensor(temperature, dtype=sim.dtype, device=sim.device)
    loss = info_nce(sim, -temperature.log(), max_scale=math.inf, same_caption=same_caption)
    return {"vtc": loss, "loss": loss, "temperature": temperature.detach()}


Loss = Callable[..., dict[str, torch.Tensor]]
"""``loss(head, sim, text, video, same_caption)`` -> {'loss': what is optimised, and each part for logging}."""


def create_loss(cfg: RunConfig) -> Loss:
    """The training loss of ``cfg.model.head``, called as ``loss(head, S, text, video, same_caption)``:

    * 'glscl': ``glscl_loss``, InfoNCE at the head's logit scale + ICL + IDL on the query outputs;
    * 'mean_pooling': the same without queries, i.e. InfoNCE alone ('contrastive');
    * 'vtc': ``vtc_loss``, InfoNCE at the head's learned temperature (clamped in place first, as ALPRO does).

    S and the embeddings are the gathered global batch; ``same_caption`` (B x B) marks pairs that share a
    video or a caption, removed from the negatives when ``loss.mask_false_negatives``.
    """
    lc = cfg.loss
    if cfg.model.head == "vtc":
        def vtc(head, sim, text, video, same_caption=None):
            return vtc_loss(sim, head.clamp_temperature_(), same_caption if lc.mask_false_negatives else None)
        return vtc

    def contrastive(head, sim, text, video, same_caption=None):
        return glscl_loss(sim, head.logit_scale, _float(text.queries), _float(video.queries), lc, same_caption)
    return contrastive


def _float(queries: torch.Tensor | None) -> torch.Tensor | None:
    """Query outputs in float32 (they may be bf16 under AMP)."""
    return None if queries is None else queries.float()
