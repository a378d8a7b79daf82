"""Bootstrap intervals over test queries: how much a metric moves if the test set were drawn again.

For a direction's 1-based ranks r_1..r_n (one per query: captions for t2v, videos for v2t),
resample n queries with replacement B times, recompute the metric each time, and take the
(1 - level)/2 and (1 + level)/2 quantiles (percentile bootstrap). This is the test set's own
noise, for one trained model; the noise between training seeds is separate (grids report it).
"""
from __future__ import annotations

import numpy as np

from glscl.engine.metrics import t2v_ranks, v2t_ranks

HEADLINE = (1, 5, 10)
"""Recall levels that get an interval in every run's record."""


def bootstrap_recall(ranks, k: int, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of R@k = 100 * mean(r <= k) over resampled queries."""
    hits = (np.asarray(ranks) <= k).astype(np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(hits), size=(resamples, len(hits)))
    stats = 100.0 * hits[idx].mean(axis=1)
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def recall_intervals(sim, caption_video, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """{'t2v_R@1_lo': .., 't2v_R@1_hi': .., ...} for the headline recalls of both directions."""
    out = {}
    for direction, ranks in (("t2v", t2v_ranks(sim, caption_video)), ("v2t", v2t_ranks(sim, caption_video))):
        for k in HEADLINE:
            lo, hi = bootstrap_recall(ranks, k, resamples, level, seed)
            out[f"{direction}_R@{k}_lo"], out[f"{direction}_R@{k}_hi"] = lo, hi
    return out
