"""Retrieval metrics from a similarity matrix, and the (transductive) post-processing that papers use.

``sim`` is N texts x M videos; ``caption_video[i]`` is the index of the video caption i describes.

* text-to-video: for caption i, the rank of its video among the M videos;
* video-to-text: for video j, the rank of its *best-ranked* caption among the N captions
  (with one caption per video this is the usual v2t; with several, e.g. MSVD, a video counts as
  found at rank r if any of its captions is at rank r).

Ties count against the model: the rank of the correct item is 1 + the number of *other* items
scoring greater than **or equal** to it. A constant similarity matrix therefore scores the
worst possible ranks, never perfect ones.

R@K is the percentage of queries whose rank is <= K; MdR the median rank; MnR the mean rank.

DSL and QB-Norm change the scores using the whole test gallery (or a bank of training
queries); they are transductive, run only when called, and their results belong in separate rows.
"""
from __future__ import annotations

import numpy as np
import torch

RECALL_AT = (1, 5, 10, 50)


def _as_tensor(sim) -> torch.Tensor:
    return sim if isinstance(sim, torch.Tensor) else torch.as_tensor(np.asarray(sim))


def t2v_ranks(sim, caption_video) -> np.ndarray:
    """Rank (1 = best) of each caption's video among all videos; ties count against the model."""
    sim = _as_tensor(sim).float()
    cv = torch.as_tensor(np.array(caption_video), dtype=torch.long)
    correct = sim[torch.arange(sim.shape[0]), cv][:, None]
    return ((sim >= correct).sum(1)).numpy()  # includes the correct item itself


def v2t_ranks(sim, caption_video) -> np.ndarray:
    """Rank of each video's best-ranked caption among all captions (multi-caption aware)."""
    sim = _as_tensor(sim).float()
    cv = torch.as_tensor(np.array(caption_video), dtype=torch.long)
    n, m = sim.shape
    cols = sim.T  # M x N: each video's scores for every caption
    own = cv[None, :] == torch.arange(m)[:, None]  # M x N: caption belongs to video
    if not bool(own.any(1).all()):
        missing = int((~own.any(1)).nonzero()[0])
        raise ValueError(f"video {missing} has no caption: video-to-text is undefined")
    best_own = cols.masked_fill(~own, float("-inf")).max(1).values[:, None]
    # other videos' captions scoring >= the best own caption, + 1 for the own caption itself
    return ((cols >= best_own) & ~own).sum(1).numpy() + 1


def rank_metrics(ranks: np.ndarray) -> dict[str, float]:
    """R@1, R@5, R@10, R@50 (percent), MdR, MnR from 1-based ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {f"R@{k}": float(100.0 * np.mean(ranks <= k)) for k in RECALL_AT}
    out["MdR"] = float(np.median(ranks))
    out["MnR"] = float(np.mean(ranks))
    return out


def retrieval_metrics(sim, caption_video) -> dict[str, float]:
    """t2v and v2t metrics as one flat record: {'t2v_R@1': ..., ..., 'v2t_MnR': ...}."""
    out = {}
    for direction, ranks in (("t2v", t2v_ranks(sim, caption_video)), ("v2t", v2t_ranks(sim, caption_video))):
        out.update({f"{direction}_{k}": v for k, v in rank_metrics(ranks).items()})
    return out


def dual_softmax(sim, temperature: float = 100.0) -> torch.Tensor:
    """DSL (dual softmax, CAMoE): S' = S * softmax_over_texts(temperature * S).

    Each video's column is re-weighted by how strongly it prefers each text over the other
    texts; uses the whole test set of texts, hence transductive.
    """
    sim = _as_tensor(sim).float()
    return sim * torch.softmax(sim * temperature, dim=0)


def qb_norm(sim, bank_sim, k: int = 1, beta: float = 70.0) -> torch.Tensor:
    """QB-Norm with the dynamic inverted softmax (Bogolin et al., CVPR 2022).

    ``bank_sim`` (Q x M): similarities of a bank of queries (e.g. training captions) to the same
    gallery. Gallery items in the top-k of some bank query form the activation set A. For a test
    query whose top-1 video is in A, scores become exp(beta S_ij) / sum_q exp(beta B_qj);
    other queries keep their raw scores.
    """
    sim = _as_tensor(sim).float()
    bank = _as_tensor(bank_sim).float()
    topk = bank.topk(k, dim=1).indices
    active = torch.zeros(sim.shape[1], dtype=torch.bool)
    active[topk.flatten()] = True
    log_norm = torch.logsumexp(beta * bank, dim=0)  # M
    normed = beta * sim - log_norm[None]  # log of the normalised score (monotone, stable)
    use = active[sim.argmax(1)]
    return torch.where(use[:, None], normed, sim)
