"""Losses against values computed by hand in the test."""
import math

import torch
import torch.nn.functional as F

from glscl.config import LossConfig
from glscl.losses import (glscl_loss, info_nce, inter_consistency, intra_diversity, released_consistency,
                          released_diversity)


def _ce(row, target):
    return -row[target] + math.log(sum(math.exp(x) for x in row))


def test_info_nce_on_a_3x3_matrix():
    s = [[0.9, 0.1, 0.2], [0.3, 0.8, 0.0], [0.5, 0.4, 0.7]]
    scale = 10.0
    logits = [[scale * x for x in r] for r in s]
    rows = sum(_ce(logits[i], i) for i in range(3)) / 3
    cols = sum(_ce([logits[j][i] for j in range(3)], i) for i in range(3)) / 3
    expected = 0.5 * (rows + cols)
    got = info_nce(torch.tensor(s), torch.tensor(math.log(scale)))
    assert abs(got.item() - expected) < 1e-5


def test_info_nce_clamps_the_logit_scale_at_100():
    s = torch.tensor([[0.9, 0.1], [0.3, 0.8]])
    a = info_nce(s, torch.tensor(math.log(1000.0)))
    b = info_nce(s, torch.tensor(math.log(100.0)))
    assert torch.allclose(a, b)


def test_info_nce_masks_same_caption_false_negatives():
    s = [[0.9, 0.85, 0.2], [0.8, 0.9, 0.0], [0.5, 0.4, 0.7]]
    same = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    scale = 10.0
    lg = [[scale * x for x in r] for r in s]
    # rows 0,1 lose their column 1/0 entry; columns likewise
    rows = (_ce([lg[0][0], lg[0][2]], 0) + _ce([lg[1][1], lg[1][2]], 0) + _ce(lg[2], 2)) / 3
    cols = (_ce([lg[0][0], lg[2][0]], 0) + _ce([lg[1][1], lg[2][1]], 0) + _ce([lg[0][2], lg[1][2], lg[2][2]], 2)) / 3
    got = info_nce(torch.tensor(s), torch.tensor(math.log(scale)), same_caption=same)
    assert abs(got.item() - 0.5 * (rows + cols)) < 1e-5


def test_icl_is_zero_when_matched_queries_coincide_and_grows_with_divergence():
    c = F.normalize(torch.randn(4, 3, 8), dim=-1)
    assert inter_consistency(c, c).item() < 1e-6
    values = []
    for angle in (0.1, 0.5, 1.0, 2.0, math.pi):
        a = torch.zeros(1, 1, 2); a[..., 0] = 1
        b = torch.tensor([[[math.cos(angle), math.sin(angle)]]])
        values.append(inter_consistency(a, b).item())
        assert abs(values[-1] - (1 - math.cos(angle))) < 1e-6
    assert values == sorted(values)


def test_idl_lowest_for_orthogonal_highest_for_identical_queries():
    eye = torch.eye(4).unsqueeze(0)  # 4 orthogonal queries in 4-d
    same = torch.ones(1, 4, 4) / 2.0  # 4 identical queries
    mixed = F.normalize(torch.eye(4) + 0.3, dim=-1).unsqueeze(0)
    lo, hi, mid = intra_diversity(eye, eye).item(), intra_diversity(same, same).item(), intra_diversity(mixed, mixed).item()
    assert abs(lo) < 1e-7 and abs(hi - 1.0) < 1e-6 and lo < mid < hi
    # both modalities count: orthogonal video + identical text = halfway
    assert abs(intra_diversity(same, eye).item() - 0.5) < 1e-6


def test_released_diversity_matches_formula():
    # two queries in 2-d for batch of 2: cos matrices computed by hand
    v = torch.tensor([[[1.0, 0.0], [1.0, 0.0]],          # cos = 1 between queries
                      [[1.0, 0.0], [0.0, 1.0]]])         # cos = 0
    # batch-mean cosine matrix C = [[1, .5], [.5, 1]]; gaps = 0.5; margin 0.1 -> relu(0.1-0.5) = 0
    assert released_diversity(v, margin=0.1).item() == 0.0
    # margin 0.7 -> relu(0.7 - 0.5) = 0.2 on both off-diagonal entries
    assert abs(released_diversity(v, margin=0.7).item() - 0.2) < 1e-6


def test_released_consistency_matches_formula():
    ct = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])  # B=2, K=2, d=2
    cv = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]])
    # mean over batch: ct -> [[1,0],[.5,.5]], cv -> [[.5,.5],[1,0]]; MSE over 4 entries
    mse = ((1 - .5) ** 2 + (0 - .5) ** 2 + (.5 - 1) ** 2 + (.5 - 0) ** 2) / 4
    # per-pair cosines: b0: k0 = 1, k1 = 0; b1: k0 = 0, k1 = 1 -> sums over batch: k0 = 1, k1 = 1
    beta, target, k = 0.02, 0.75, 2
    term = beta * ((1 / k - target) ** 2 + (1 / k - target) ** 2)
    got = released_consistency(ct, cv, beta=beta, target=target)
    assert abs(got.item() - (mse + term)) < 1e-6


def test_glscl_loss_weights_and_variants():
    s = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    ct = F.normalize(torch.randn(2, 3, 4), dim=-1)
    cv = F.normalize(torch.randn(2, 3, 4), dim=-1)
    scale = torch.tensor(2.0)
    paper = glscl_loss(s, scale, ct, cv, LossConfig(icl_weight=0.3, idl_weight=0.7))
    expected = info_nce(s, scale) + 0.3 * inter_consistency(ct, cv) + 0.7 * intra_diversity(ct, cv)
    assert torch.allclose(paper["loss"], expected)
    rel = glscl_loss(s, scale, ct, cv, LossConfig(variant="released", icl_weight=1.0, idl_weight=1e-4))
    expected = info_nce(s, scale) + released_consistency(ct, cv) + 1e-4 * released_diversity(cv)
    assert torch.allclose(rel["loss"], expected)
    only = glscl_loss(s, scale, None, None, LossConfig())
    assert set(only) == {"contrastive", "loss"}
