"""Retrieval metrics on hand-made matrices."""
import numpy as np
import pytest
import torch

from glscl.engine.evaluate import metric_rows
from glscl.engine.metrics import QB_NORM, dual_softmax, qb_norm, rank_metrics, retrieval_metrics, t2v_ranks, v2t_ranks


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
    for protocol in ("group", "caption"):
        assert list(v2t_ranks(sim, cv, protocol)) == [1, 1]
    sim[1, 1] = 0.85  # another video's caption outranks video 1's best caption
    for protocol in ("group", "caption"):
        assert list(v2t_ranks(sim, cv, protocol)) == [1, 2]
    assert list(t2v_ranks(sim, cv)) == [1, 1, 1, 1]


def test_multi_caption_v2t_protocols_rank_groups_or_captions():
    # 4 videos; captions 0,1 -> video 0; 2,3 -> video 1; 4,5 -> video 2; 6 -> video 3
    cv = [0, 0, 1, 1, 2, 2, 3]
    sim = np.array([[0.90, 0.1, 0.0, 0.2],
                    [0.20, 0.3, 0.1, 0.1],
                    [0.95, 0.6, 0.2, 0.3],
                    [0.92, 0.2, 0.3, 0.0],
                    [0.30, 0.7, 0.5, 0.4],
                    [0.10, 0.8, 0.4, 0.1],
                    [0.93, 0.1, 0.6, 0.5]])
    # video 0 (column 0), own best 0.90 (caption 0):
    #   caption protocol: captions 2 (.95), 3 (.92), 6 (.93) of other videos score >= .90 -> rank 4
    #   group protocol: groups max = [g0 .90, g1 max(.95, .92) = .95, g2 .30, g3 .93] -> g1, g3 above -> rank 3
    # video 1 (column 1), own best .6 (caption 2): captions 4 (.7), 5 (.8) -> rank 3;
    #   groups [.3, .6, .8, .1] -> rank 2
    # video 2 (column 2), own best .5 (caption 4): caption 6 (.6) -> rank 2; groups [.1, .3, .5, .6] -> rank 2
    # video 3 (column 3), own .5 (caption 6): nothing above -> rank 1 in both
    assert list(v2t_ranks(sim, cv, "caption")) == [4, 3, 2, 1]
    assert list(v2t_ranks(sim, cv, "group")) == [3, 2, 2, 1]
    assert list(v2t_ranks(sim, cv)) == [3, 2, 2, 1]  # the published protocol is the default
    group, caption = retrieval_metrics(sim, cv), retrieval_metrics(sim, cv, v2t_protocol="caption")
    assert group["v2t_R@1"] == caption["v2t_R@1"] == 25.0  # R@1 agrees
    assert (group["v2t_MnR"], caption["v2t_MnR"]) == (2.0, 2.5)
    assert group["t2v_MnR"] == caption["t2v_MnR"]  # t2v does not depend on the protocol
    # ties count against the model in the group protocol too
    assert list(v2t_ranks(np.zeros((3, 2)), [0, 1, 1], "group")) == [2, 2]
    with pytest.raises(ValueError, match="protocol"):
        v2t_ranks(sim, cv, "video")


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
    out = qb_norm(sim, bank, k=1, beta=beta, theta=2)
    assert torch.equal(out[1], sim[1])
    norm = torch.log(torch.exp(beta * bank).sum(0))
    assert torch.allclose(out[0], beta * sim[0] - norm)
    # normalisation can reorder: video 0 is a hub (high bank scores) and gets pushed down
    assert out[0].argmax() == 1
    assert torch.equal(qb_norm(sim, bank, k=1, beta=beta, theta=3), sim)  # video 0 is in only 2 top-1 lists


def test_qb_norm_activation_set_needs_theta_occurrences():
    # 5 bank queries; their top-1 videos by hand: 0, 0, 1, 0, 2 -> counts {0: 3, 1: 1, 2: 1, 3: 0}
    bank = torch.tensor([[0.9, 0.1, 0.2, 0.0],
                         [0.8, 0.3, 0.1, 0.0],
                         [0.1, 0.7, 0.2, 0.3],
                         [0.6, 0.5, 0.4, 0.0],
                         [0.2, 0.1, 0.9, 0.3]])
    sim = torch.tensor([[0.9, 0.1, 0.0, 0.0],    # top-1 video 0
                        [0.0, 0.8, 0.1, 0.0],    # top-1 video 1
                        [0.0, 0.1, 0.7, 0.0],    # top-1 video 2
                        [0.0, 0.1, 0.2, 0.6]])   # top-1 video 3 (in no top-1 list)
    touched = {theta: [i for i in range(4) if not torch.equal(qb_norm(sim, bank, 1, 10.0, theta)[i], sim[i])]
               for theta in (1, 2, 3, 4)}
    assert touched == {1: [0, 1, 2], 2: [0], 3: [0], 4: []}
    # k = 2: top-2 lists {0,2}, {0,1}, {1,3}, {0,1}, {2,3} -> counts {0: 3, 1: 3, 2: 2, 3: 2}
    assert [i for i in range(4) if not torch.equal(qb_norm(sim, bank, 2, 10.0, 3)[i], sim[i])] == [0, 1]


def _qb_norm_numpy(sim, bank, k, beta, theta):
    """QB-Norm's dynamic inverted softmax written out in float64 numpy: count each gallery item's
    occurrences in the bank queries' top-k lists, activate those with >= theta, and replace each query
    row whose top-1 is active by log(exp(beta S_ij) / sum_q exp(beta B_qj)); returns (matrix, touched rows)."""
    sim, bank = np.asarray(sim, np.float64), np.asarray(bank, np.float64)
    top = np.argsort(-bank, axis=1)[:, :k].reshape(-1)
    items, counts = np.unique(top, return_counts=True)
    active = set(items[counts >= theta].tolist())
    shift = (beta * bank).max(0)
    log_norm = shift + np.log(np.exp(beta * bank - shift).sum(0))
    out, rows = sim.copy(), []
    for i in range(sim.shape[0]):
        if int(np.argmax(sim[i])) in active:
            out[i] = beta * sim[i] - log_norm
            rows.append(i)
    return out, rows


def test_qb_norm_against_numpy_on_a_100_x_100_matrix():
    rng = np.random.default_rng(0)
    sim, bank = rng.random((100, 100)), rng.random((200, 100))  # 200 bank queries, 2 top-1 hits per item on average
    for theta in (1, 3, 5):
        expected, rows = _qb_norm_numpy(sim, bank, 1, 70.0, theta)
        got = qb_norm(torch.tensor(sim, dtype=torch.float32), torch.tensor(bank, dtype=torch.float32), 1, 70.0, theta)
        touched = [i for i in range(100) if not np.array_equal(got[i].numpy(), np.float32(sim[i]))]
        assert touched == rows
        assert np.allclose(got.numpy(), expected, rtol=1e-5, atol=1e-3)
    # theta counts: the activation set, and so the normalised rows, shrink as theta grows
    n = [len(_qb_norm_numpy(sim, bank, 1, 70.0, t)[1]) for t in (1, 3, 5)]
    assert n[0] > n[1] > n[2] > 0


def test_qb_norm_rows_normalise_both_directions_with_the_published_settings():
    rng = np.random.default_rng(1)
    cv = [0, 0, 1, 2, 3, 4, 5, 5]  # 8 captions, 6 videos
    sim = torch.tensor(rng.random((8, 6)), dtype=torch.float32)
    bank_t2v = torch.tensor(rng.random((40, 6)), dtype=torch.float32)    # bank captions x test videos
    bank_v2t = torch.tensor(rng.random((30, 8)), dtype=torch.float32)    # bank videos x test captions
    assert QB_NORM == {"t2v": {"k": 1, "beta": 70.0, "theta": 3}, "v2t": {"k": 1, "beta": 70.0, "theta": 5}}
    row = metric_rows(sim, cv, bank_t2v=bank_t2v, bank_v2t=bank_v2t)["qb-norm (transductive)"]
    t2v, t2v_rows = _qb_norm_numpy(sim, bank_t2v, 1, 70.0, 3)
    v2t, v2t_rows = _qb_norm_numpy(sim.T, bank_v2t, 1, 70.0, 5)   # videos x captions: videos are the queries
    assert 0 < len(t2v_rows) < 8 and 0 < len(v2t_rows) < 6     # some queries normalised, not all
    expected = {**{f"t2v_{k}": v for k, v in rank_metrics(t2v_ranks(t2v, cv)).items()},
                **{f"v2t_{k}": v for k, v in rank_metrics(v2t_ranks(v2t.T, cv)).items()}}
    assert row == pytest.approx(expected)
    only_t2v = metric_rows(sim, cv, bank_t2v=bank_t2v)["qb-norm (transductive)"]
    assert set(only_t2v) == {k for k in expected if k.startswith("t2v")}
