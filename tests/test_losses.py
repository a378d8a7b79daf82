"""Losses against values computed by hand in the test."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from glscl.config import LossConfig, build_config
from glscl.losses import (
    create_loss,
    glscl_loss,
    info_nce,
    inter_consistency,
    intra_diversity,
    released_consistency,
    released_diversity,
    vtc_loss,
)
from glscl.model.embedding import TextEmbedding, VideoEmbedding


def _ce(row, target):
    m = max(row)  # log-sum-exp, shifted so that large logits do not overflow
    return -row[target] + m + math.log(sum(math.exp(x - m) for x in row))


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
        a = torch.zeros(1, 1, 2)
        a[..., 0] = 1
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


def _margin_ranking_both(c, margin):
    """The released margin ranking loss, direction 'both', on a K x K matrix (lists), written out:
    row term  sum_{k != l} max(0, margin + C_kl - C_kk) / (K (K-1)), plus
    column term sum_{k != l} max(0, margin + C_kl - C_ll) / (K (K-1))."""
    k = len(c)
    off = [(a, b) for a in range(k) for b in range(k) if a != b]
    rows = sum(max(0.0, margin + c[a][b] - c[a][a]) for a, b in off) / (k * (k - 1))
    cols = sum(max(0.0, margin + c[a][b] - c[b][b]) for a, b in off) / (k * (k - 1))
    return rows + cols


def test_released_diversity_is_the_margin_ranking_loss_in_both_directions():
    # B = 2, K = 3 unit queries in 3-d; cosines by hand: batch 0: c01 = .6, c02 = 0, c12 = 0;
    # batch 1: c01 = 1, c02 = .8, c12 = .8 -> batch mean C01 = .8, C02 = .4, C12 = .4, diagonal 1
    v = torch.tensor([[[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]],
                      [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.8, 0.6, 0.0]]])
    c = [[1.0, 0.8, 0.4], [0.8, 1.0, 0.4], [0.4, 0.4, 1.0]]
    # margin 0.3: only (0, 1) and (1, 0) violate, by 0.3 + 0.8 - 1 = 0.1 each, in the row term and
    # again in the column term: (0.2 + 0.2) / 6
    assert _margin_ranking_both(c, 0.3) == pytest.approx(0.4 / 6)
    assert released_diversity(v, margin=0.3).item() == pytest.approx(0.4 / 6, abs=1e-6)
    assert released_diversity(v, margin=0.1).item() == 0.0  # no pair within 0.1 of the diagonal
    # margin 0.7: (0,1), (1,0) by 0.5, the four others by 0.1: rows (1.0 + 0.4) / 6, and the columns again
    assert released_diversity(v, margin=0.7).item() == pytest.approx(2 * 1.4 / 6, abs=1e-6)
    # random queries: the batch-mean cosine matrix through the written-out loss
    q = torch.randn(5, 4, 6)
    qn = F.normalize(q, dim=-1)
    cm = (qn @ qn.transpose(1, 2)).mean(0).tolist()
    for margin in (0.1, 0.5, 1.5):
        assert released_diversity(q, margin).item() == pytest.approx(_margin_ranking_both(cm, margin), abs=1e-6)


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
    # the released variant trains at its own weights (released scripts: 1 and alpha = 1e-4), whatever the paper's are
    rel = glscl_loss(s, scale, ct, cv, LossConfig(variant="released", icl_weight=0.3, idl_weight=0.7))
    expected = info_nce(s, scale) + 1.0 * released_consistency(ct, cv, beta=0.02) + 1e-4 * released_diversity(cv, 0.1)
    assert torch.allclose(rel["loss"], expected)
    rel = glscl_loss(s, scale, ct, cv, LossConfig(variant="released", released_icl_weight=0.5, released_idl_weight=2.0))
    assert torch.allclose(rel["loss"], info_nce(s, scale) + 0.5 * rel["icl"] + 2.0 * rel["idl"])
    only = glscl_loss(s, scale, None, None, LossConfig())
    assert set(only) == {"contrastive", "loss"}


def _vtc_by_hand(s, temp, same=None):
    """ALPRO's VTC loss written out with plain Python: softmax rows and columns of S / temp, masked pairs left out."""
    n = len(s)
    keep = lambda i, j: i == j or same is None or not same[i][j]  # noqa: E731
    rows = sum(_ce([s[i][j] / temp for j in range(n) if keep(i, j)], [j for j in range(n) if keep(i, j)].index(i))
               for i in range(n)) / n
    cols = sum(_ce([s[j][i] / temp for j in range(n) if keep(j, i)], [j for j in range(n) if keep(j, i)].index(i))
               for i in range(n)) / n
    return 0.5 * (rows + cols)


def test_vtc_loss_is_info_nce_at_the_learned_temperature_without_clamp():
    s = [[0.9, 0.1, 0.2], [0.3, 0.8, 0.0], [0.5, 0.4, 0.7]]
    same = [[True, True, False], [True, True, False], [False, False, True]]
    for temp in (0.07, 0.001, 0.5):  # 1 / 0.001 = 1000: far above info_nce's default clamp of 100, not clamped here
        out = vtc_loss(torch.tensor(s), torch.tensor(temp))
        assert out["loss"].item() == pytest.approx(_vtc_by_hand(s, temp), rel=1e-5)
        assert out["vtc"] is out["loss"] and out["temperature"].item() == pytest.approx(temp)
        masked = vtc_loss(torch.tensor(s), temp, same_caption=torch.tensor(same))
        assert masked["loss"].item() == pytest.approx(_vtc_by_hand(s, temp, same), rel=1e-5)
    # the same value as info_nce with logit scale log(1 / temp) and no clamp
    assert torch.allclose(vtc_loss(torch.tensor(s), 0.001)["loss"],
                          info_nce(torch.tensor(s), torch.tensor(math.log(1000.0)), max_scale=math.inf))
    # the temperature learns: d L / d temp = -(1 / temp^2) d L / d scale, checked by finite differences
    t = torch.tensor(0.07, dtype=torch.float64, requires_grad=True)
    sim = torch.tensor(s, dtype=torch.float64)
    vtc_loss(sim, t)["loss"].backward()
    eps = 1e-6
    numeric = (vtc_loss(sim, 0.07 + eps)["loss"] - vtc_loss(sim, 0.07 - eps)["loss"]).item() / (2 * eps)
    assert t.grad.item() == pytest.approx(numeric, rel=1e-5)


def _batch(b=3, k=2, d=4):
    torch.manual_seed(0)
    ct, cv = F.normalize(torch.randn(b, k, d), dim=-1), F.normalize(torch.randn(b, k, d), dim=-1)
    return torch.randn(b, b).clamp(-1, 1), TextEmbedding(torch.randn(b, d), queries=ct), VideoEmbedding(
        torch.randn(b, 5, d), torch.ones(b, 5, dtype=torch.bool), queries=cv)


def test_create_loss_gives_each_head_its_loss():
    sim, text, video = _batch()
    same = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    scale = torch.tensor(2.0)
    glscl = create_loss(build_config(None, {"loss.icl_weight": 0.3, "loss.idl_weight": 0.7}))
    head = SimpleNamespace(logit_scale=scale)
    got = glscl(head, sim, text, video, same)
    expected = (info_nce(sim, scale, same_caption=same) + 0.3 * inter_consistency(text.queries, video.queries)
                + 0.7 * intra_diversity(text.queries, video.queries))
    assert torch.allclose(got["loss"], expected) and set(got) == {"contrastive", "icl", "idl", "loss"}
    # mean pooling: no queries, InfoNCE alone
    mean = create_loss(build_config(None, {"model.head": "mean_pooling"}))
    got = mean(head, sim, TextEmbedding(text.sentence), VideoEmbedding(video.frames, video.mask), same)
    assert set(got) == {"contrastive", "loss"} and torch.allclose(got["loss"], info_nce(sim, scale, same_caption=same))
    # VTC: the head's temperature, clamped in place first; the mask follows loss.mask_false_negatives
    vtc_head = SimpleNamespace(temperature=torch.tensor(0.9))
    vtc_head.clamp_temperature_ = lambda: vtc_head.temperature.clamp_(0.001, 0.5)
    for mask in (True, False):
        vtc = create_loss(build_config(None, {"model.head": "vtc", "loss.mask_false_negatives": mask}))
        got = vtc(vtc_head, sim, text, video, same)
        assert vtc_head.temperature.item() == 0.5
        assert torch.allclose(got["loss"], torch.tensor(_vtc_by_hand(sim.tolist(), 0.5, same.tolist() if mask else None)),
                              rtol=1e-5)
