"""Retrieval metrics from a similarity matrix, and the (transductive) post-processing that papers use.

``sim`` is N texts x M videos; ``caption_video[i]`` is the index of the video caption i describes.

* text-to-video: for caption i, the rank of its video among the M videos;
* video-to-text, ``protocol='group'`` (the default; CLIP4Clip's, behind published MSVD numbers):
  the gallery is the M caption groups, one per video, each scored by its best caption,
  score(v, group j) = max_{c of video j} S[c, v]; the rank of the video's own group among the M;
* video-to-text, ``protocol='caption'``: the rank of the video's best caption among all N
  captions (every caption of every other video counts). With one caption per video the two
  protocols agree; with several, R@1 still agrees but R@5, R@10, R@50, MdR and MnR do not.

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


def v2t_ranks(sim, caption_video, protocol: str = "group") -> np.ndarray:
    """Rank (1 = best) of each video's captions; ties count against the model.

    'group': rank of the video's caption group among the M groups, a group scored by its best caption;
    'caption': rank of the video's best caption among all N captions (see the module docstring).
    """
    sim = _as_tensor(sim).float()
    cv = torch.as_tensor(np.array(caption_video), dtype=torch.long)
    n, m = sim.shape
    cols = sim.T  # M x N: each video's scores for every caption
    own = cv[None, :] == torch.arange(m)[:, None]  # M x N: caption belongs to video
    if not bool(own.any(1).all()):
        missing = int((~own.any(1)).nonzero()[0])
        raise ValueError(f"video {missing} has no caption: video-to-text is undefined")
    if protocol == "group":  # G[v, j] = max over the captions c of video j of S[c, v]
        groups = torch.full((m, m), float("-inf")).scatter_reduce(1, cv[None].expand(m, n), cols, "amax")
        return (groups >= groups.diagonal()[:, None]).sum(1).numpy()  # includes the own group itself
    if protocol != "caption":
        raise ValueError(f"v2t protocol {protocol!r} is not one of ['group', 'caption']")
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


def retrieval_metrics(sim, caption_video, v2t_protocol: str = "group") -> dict[str, float]:
    """t2v and v2t metrics as one flat record: {'t2v_R@1': ..., ..., 'v2t_MnR': ...}.

    t2v ranks each caption's video among the M videos; v2t follows ``v2t_protocol`` ('group', the
    published one, by default; 'caption'), see ``v2t_ranks``.
    """
    out = {}
    for direction, ranks in (("t2v", t2v_ranks(sim, caption_video)), ("v2t", v2t_ranks(sim, caption_video, v2t_protocol))):
        out.update({f"{direction}_{k}": v for k, v in rank_metrics(ranks).items()})
    return out


def dual_softmax(sim, temperature: float = 100.0) -> torch.Tensor:
    """DSL (dual softmax, CAMoE): S' = S * softmax_over_texts(temperature * S).

    Each video's column is re-weighted by how strongly it prefers each text over the other
    texts; uses the whole test set of texts, hence transductive.
    """
    sim = _as_tensor(sim).float()
    return sim * torch.softmax(sim * temperature, dim=0)


QB_NORM = {"t2v": {"k": 1, "beta": 70.0, "theta": 3}, "v2t": {"k": 1, "beta": 70.0, "theta": 5}}
"""The published QB-Norm settings per direction (Bogolin et al.; the released GLSCL scripts also search beta)."""


def qb_norm(sim, bank_sim, k: int = 1, beta: float = 70.0, theta: int = 3) -> torch.Tensor:
    """QB-Norm with the dynamic inverted softmax (Bogolin et al., CVPR 2022); rows are queries.

    ``sim`` (N queries x M gallery items); ``bank_sim`` (Q x M): a bank of queries (e.g. training
    captions for t2v, training videos for v2t) scored against the same gallery. The activation
    set A holds the gallery items found in the top-k of at least ``theta`` bank queries
    (occurrences counted over all bank queries' top-k lists). A query whose top-1 item is in A
    gets exp(beta S_ij) / sum_q exp(beta B_qj), returned as its log,
    beta S_ij - logsumexp_q(beta B_qj) (same ranking, no overflow); other queries keep S.
    """
    sim = _as_tensor(sim).float()
    bank = _as_tensor(bank_sim).float()
    topk = bank.topk(k, dim=1).indices
    counts = torch.bincount(topk.flatten(), minlength=sim.shape[1])
    active = counts >= theta
    log_norm = torch.logsumexp(beta * bank, dim=0)  # M
    normed = beta * sim - log_norm[None]
    use = active[sim.argmax(1)]
    return torch.where(use[:, None], normed, sim)
