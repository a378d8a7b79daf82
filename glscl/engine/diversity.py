"""Query diversity: are the K outputs of the local interaction distinct, or one vector K times?

For one item's unit-norm query outputs c (K x d), with C = c c^T (K x K cosines):

    cos   = mean_{k != l} C_kl                               1 = collapsed, 0 = orthogonal
    erank = exp(H(p)),  p = eig(C) / K  (eigenvalues sum to trace C = K)   1 = one direction, K = all distinct

Both are averaged over the items of a split (c^v over videos, c^t over captions). The effective
rank is taken per item and then averaged: the question is how many distinct directions one video
or one caption gets (the rank of the mean matrix would overstate it, entropy being concave).
"""
from __future__ import annotations

import torch


def item_diversity(queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item (B x K x d, unit norm): the mean off-diagonal cosine (NaN for K = 1) and the effective rank, each (B,)."""
    q = queries.double()
    k = q.shape[1]
    cos = q @ q.transpose(1, 2)
    off = (cos.sum((1, 2)) - cos.diagonal(dim1=1, dim2=2).sum(1)) / (k * (k - 1)) if k > 1 else \
        torch.full((q.shape[0],), float("nan"), dtype=q.dtype)
    p = torch.linalg.eigvalsh(cos).clamp_min(0.0)
    p = p / p.sum(1, keepdim=True).clamp_min(1e-12)
    entropy = -(p * p.clamp_min(1e-300).log()).sum(1)
    return off.float(), entropy.exp().float()


class QueryDiversity:
    """Running means of ``item_diversity`` over the blocks of a split."""

    def __init__(self) -> None:
        self.cos, self.erank, self.n = 0.0, 0.0, 0

    def add(self, queries: torch.Tensor) -> None:
        cos, erank = item_diversity(queries)
        self.cos += float(cos.sum())
        self.erank += float(erank.sum())
        self.n += queries.shape[0]

    def record(self, modality: str) -> dict[str, float]:
        """{'<modality>_query_cos': ..., '<modality>_query_erank': ...} (empty before any block; no cosine
        for K = 1, where there is no pair of queries)."""
        if not self.n:
            return {}
        record = {f"{modality}_query_erank": self.erank / self.n}
        if self.cos == self.cos:  # not NaN
            record[f"{modality}_query_cos"] = self.cos / self.n
        return record
