import math

import torch
import torch.nn.functional as F

from glscl.engine.diversity import QueryDiversity, item_diversity


def test_collapsed_and_orthogonal_queries_are_the_two_ends():
    one = F.normalize(torch.randn(1, 1, 16), dim=-1).expand(3, 8, 16)
    cos, erank = item_diversity(one)
    assert torch.allclose(cos, torch.ones(3), atol=1e-6) and torch.allclose(erank, torch.ones(3), atol=1e-4)
    eye = torch.eye(16)[:8].expand(2, 8, 16)
    cos, erank = item_diversity(eye)
    assert torch.allclose(cos, torch.zeros(2), atol=1e-6) and torch.allclose(erank, torch.full((2,), 8.0), atol=1e-4)


def test_two_queries_at_a_known_angle_match_the_closed_form():
    theta = 1.0
    q = torch.tensor([[[1.0, 0.0], [math.cos(theta), math.sin(theta)]]])
    cos, erank = item_diversity(q)
    c = math.cos(theta)
    p = [(1 + c) / 2, (1 - c) / 2]  # eigenvalues of [[1, c], [c, 1]] over K = 2
    assert abs(float(cos[0]) - c) < 1e-6
    assert abs(float(erank[0]) - math.exp(-sum(x * math.log(x) for x in p))) < 1e-5


def test_running_means_over_blocks_equal_the_mean_over_items():
    q = F.normalize(torch.randn(10, 4, 8), dim=-1)
    acc = QueryDiversity()
    acc.add(q[:3])
    acc.add(q[3:])
    cos, erank = item_diversity(q)
    rec = acc.record("video")
    assert abs(rec["video_query_cos"] - float(cos.mean())) < 1e-6
    assert abs(rec["video_query_erank"] - float(erank.mean())) < 1e-5
    assert QueryDiversity().record("text") == {}


def test_a_single_query_has_rank_one_and_no_pairwise_cosine():
    q = F.normalize(torch.randn(4, 1, 8), dim=-1)
    cos, erank = item_diversity(q)
    assert torch.isnan(cos).all() and torch.allclose(erank, torch.ones(4))
    acc = QueryDiversity()
    acc.add(q)
    assert acc.record("video") == {"video_query_erank": 1.0}
