import numpy as np
import torch

from glscl.engine.intervals import bootstrap_recall, recall_intervals


def test_bootstrap_interval_brackets_the_estimate_and_shrinks_with_more_queries():
    rng = np.random.default_rng(1)
    small = rng.integers(1, 20, size=100)
    large = np.tile(small, 10)  # same R@k, ten times the queries
    r_small = 100.0 * np.mean(small <= 5)
    lo_s, hi_s = bootstrap_recall(small, 5)
    lo_l, hi_l = bootstrap_recall(large, 5)
    assert lo_s <= r_small <= hi_s and lo_l <= r_small <= hi_l
    # the binomial standard error scales as 1/sqrt(n): the interval is about sqrt(10) times narrower
    ratio = (hi_s - lo_s) / (hi_l - lo_l)
    assert 2.4 < ratio < 4.2
    # and about 2 x 1.96 standard errors wide
    p = r_small / 100
    se = 100 * np.sqrt(p * (1 - p) / len(small))
    assert abs((hi_s - lo_s) - 2 * 1.96 * se) < 0.35 * 2 * 1.96 * se


def test_degenerate_ranks_give_a_point_interval_and_records_cover_both_directions():
    assert bootstrap_recall(np.ones(50), 1) == (100.0, 100.0)
    sim = torch.eye(6) + 0.01 * torch.randn(6, 6)
    rec = recall_intervals(sim, np.arange(6))
    assert set(rec) == {f"{d}_R@{k}_{b}" for d in ("t2v", "v2t") for k in (1, 5, 10) for b in ("lo", "hi")}
    assert rec["t2v_R@1_lo"] == rec["t2v_R@1_hi"] == 100.0
