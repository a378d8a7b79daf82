"""Retrieval metrics on hand-made matrices."""
import numpy as np
import torch

from glscl.engine.metrics import dual_softmax, qb_norm, retrieval_metrics, t2v_ranks, v2t_ranks


def test_identity_gives_perfect_recall():
    m = retrieval_metrics(np.eye(5), list(range(5)))
    assert m["t2v_R@1"] == 100.0 and m["t2v_MdR"] == 1.0 and m["t2v_MnR"] == 1.0
    assert m["v2t_R@1"] == 100.0 and m["v2t_MdR"] == 1.0


def test_reversed_ranking():
    n = 10
    # every caption's own video scores lowest (-1, the others 0): rank n for every query
    sim = -np.eye(n)
    m = retrieval_metrics(sim, list(range(n)))
    assert m["t2v_R@1"] == 0.0 and m["t2v_MdR"] == n and m["t2v_R@10"] == 100.0 and m["t2v_R@5"] == 0.0


def test_ties_count_against_the_model():
    sim = np.zeros((4, 4))
    m = retrieval_metrics(sim, [0, 1, 2, 3])
    assert m["t2v_R@1"] == 0.0 and m["t2v_MdR"] == 4.0 and m["v2t_MdR"] == 4.0
    sim = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert list(t2v_ranks(sim, [0, 1, 2])) == [2, 1, 1]


def test_recall_at_k_percentages():
    # ranks 1, 2, 6, 11 -> R@1 25, R@5 50, R@10 75, R@50 100; MdR 4, MnR 5
    n = 12
    sim = np.zeros((4, n))
    cv = [0, 1, 2, 3]
    for i, rank in enumerate([1, 2, 6, 11]):
        row = np.linspace(1, 0, n)  # decreasing scores by column
        order = [c for c in range(n) if c != cv[i]]
        sim[i, order] = np.delete(row, rank - 1)
        sim[i, cv[i]] = row[rank - 1]
    r = t2v_ranks(sim, cv)
    assert list(r) == [1, 2, 6, 11]
    from glscl.engine.metrics import rank_metrics
    m = rank_metrics(r)
    assert (m["R@1"], m["R@5"], m["R@10"], m["R@50"], m["MdR"], m["MnR"]) == (25.0, 50.0, 75.0, 100.0, 4.0, 5.0)


def test_multi_caption_v2t_uses_the_best_caption():
    # 2 videos; captions 0,1 -> video 0; captions 2,3 -> video 1
    cv = [0, 0, 1, 1]
    sim = np.array([[0.1, 0.0],   # caption 0
                    [0.9, 0.5],   # caption 1: best caption of video 0
                    [0.2, 0.3],   # caption 2
                    [0.0, 0.8]])  # caption 3
    # video 0 column: [0.1, 0.9, 0.2, 0.0] -> own best 0.9 is rank 1
    # video 1 column: [0.0, 0.5, 0.3, 0.8] -> own best 0.8 is rank 1
    assert list(v2t_ranks(sim, cv)) == [1, 1]
    sim[1, 1] = 0.85  # another video's caption outranks video 1's best caption
    assert list(v2t_ranks(sim, cv)) == [1, 2]
    assert list(t2v_ranks(sim, cv)) == [1, 1, 1, 1]


def test_dual_softmax_formula():
    s = torch.tensor([[0.5, 0.1], [0.2, 0.4]])
    t = 10.0
    col0 = torch.exp(t * torch.tensor([0.5, 0.2]))
    col0 = col0 / col0.sum()
    col1 = torch.exp(t * torch.tensor([0.1, 0.4]))
    col1 = col1 / col1.sum()
    expected = torch.stack([s[:, 0] * col0, s[:, 1] * col1], 1)
    assert torch.allclose(dual_softmax(s, t), expected)


def test_qb_norm_only_touches_queries_whose_top_video_is_activated():
    bank = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.1]])  # top-1 of both bank queries: video 0
    sim = torch.tensor([[0.7, 0.6, 0.1],    # top-1 video 0 (activated) -> normalised
                        [0.1, 0.9, 0.3]])   # top-1 video 1 (not activated) -> unchanged
    beta = 5.0
    out = qb_norm(sim, bank, k=1, beta=beta)
    assert torch.equal(out[1], sim[1])
    norm = torch.log(torch.exp(beta * bank).sum(0))
    assert torch.allclose(out[0], beta * sim[0] - norm)
    # normalisation can reorder: video 0 is a hub (high bank scores) and gets pushed down
    assert out[0].argmax() == 1
