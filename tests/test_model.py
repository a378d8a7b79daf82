"""The heads: GLSCL's global and local interaction, mean pooling, VTC; masking, independence of the two encoders."""
import math

import pytest
import torch
import torch.nn.functional as F

from glscl.config import ConfigError, ModelConfig
from glscl.model.embedding import TextEmbedding, VideoEmbedding, weighted_sum
from glscl.model.factory import create_head
from glscl.model.glscl import GLSCL
from glscl.model.interaction import global_interaction_weights, global_similarity, local_similarity
from glscl.model.mean_pooling import MeanPooling
from glscl.model.vtc import VTCHead


def small_cfg(**kw):
    base = dict(num_frames=6, temporal_layers=1, temporal_heads=2, num_queries=3, decoder_layers=1,
                decoder_heads=2, dropout=0.0)
    base.update(kw)
    return ModelConfig(**base)


def test_global_interaction_matches_hand_computed_pooling():
    t = torch.tensor([[1.0, 0.0]])
    v = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    tau = 2.0
    # hand: logits t.v_f / tau = [1, 0, 0.5]
    e = [math.exp(1.0), math.exp(0.0), math.exp(0.5)]
    w = [x / sum(e) for x in e]
    vbar = [2 * w[0] + 0 * w[1] + 1 * w[2], 0 * w[0] + 1 * w[1] + 1 * w[2]]
    expected = vbar[0] / math.hypot(*vbar)  # cos(t, vbar) with |t| = 1
    got = global_similarity(t, v, mask, tau)
    assert abs(got.item() - expected) < 1e-6
    assert torch.allclose(global_interaction_weights(t, v, mask, tau)[0, 0], torch.tensor(w), atol=1e-6)


def test_padded_frames_get_exactly_zero_weight_and_weights_renormalise():
    t = torch.randn(2, 4)
    v = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    w = global_interaction_weights(t, v, mask, 3.0)
    assert torch.all(w[:, 0, 3:] == 0) and torch.all(w[:, 2, 1:] == 0)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3))
    assert torch.allclose(w[:, 2, 0], torch.ones(2))
    # the similarity equals a direct computation on the valid frames only
    s = global_similarity(t, v, mask, 3.0)
    for j, n in enumerate([3, 5, 1]):
        ww = torch.softmax(t @ v[j, :n].T / 3.0, dim=-1)
        vbar = ww @ v[j, :n]
        assert torch.allclose(s[:, j], F.cosine_similarity(t, vbar, dim=-1), atol=1e-5)


def test_masking_padded_frames_after_the_softmax_cannot_change_S_g():
    """The released code takes the softmax over all T frames (padded ones included, whatever they hold) and
    multiplies by the mask afterwards, without renormalising: its v_bar is ours times Z_real / Z_all > 0,
    and the cosine ignores the scale, so S_g is the same."""
    torch.manual_seed(4)
    t = torch.randn(3, 6)
    v = torch.randn(4, 5, 6)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    v[~mask] = 5 * torch.randn(int((~mask).sum()), 6)  # padded frames hold large garbage
    tau = 3.0
    w = torch.stack([torch.softmax(t @ v[j].T / tau, dim=-1) * mask[j] for j in range(4)], 1)  # N x M x T, mask after
    assert (w.sum(-1)[:, [0, 2, 3]] < 1 - 1e-3).all()  # the released weights do not sum to 1 on padded videos
    vbar = torch.stack([w[:, j] @ v[j] for j in range(4)], 1)
    released = F.cosine_similarity(t[:, None], vbar, dim=-1)
    assert torch.allclose(global_similarity(t, v, mask, tau), released, atol=1e-5)


def test_global_interaction_module_has_no_parameters():
    head = GLSCL(small_cfg(interaction="global", temporal_layers=0), width=8)
    assert [n for n, _ in head.named_parameters()] == ["logit_scale"]


def test_local_similarity_is_mean_of_per_query_cosines():
    ct = F.normalize(torch.randn(2, 4, 5), dim=-1)
    cv = F.normalize(torch.randn(3, 4, 5), dim=-1)
    s = local_similarity(ct, cv)
    for i in range(2):
        for j in range(3):
            expected = sum(F.cosine_similarity(ct[i, k], cv[j, k], dim=0) for k in range(4)) / 4
            assert abs(s[i, j].item() - expected.item()) < 1e-5


def test_text_queries_do_not_depend_on_the_video_batch():
    head = GLSCL(small_cfg(), width=8).eval()
    sent, tok, tmask = torch.randn(2, 8), torch.randn(2, 7, 8), torch.ones(2, 7, dtype=torch.bool)
    _, text_a, _ = head(sent, tok, tmask, torch.randn(3, 6, 8), torch.ones(3, 6, dtype=torch.bool))
    _, text_b, _ = head(sent, tok, tmask, torch.randn(5, 6, 8), torch.ones(5, 6, dtype=torch.bool))
    assert torch.equal(text_a.queries, text_b.queries)
    vid = torch.randn(3, 6, 8)
    _, _, va = head(sent, tok, tmask, vid, torch.ones(3, 6, dtype=torch.bool))
    _, _, vb = head(torch.randn(4, 8), torch.randn(4, 7, 8), tmask.new_ones(4, 7), vid, torch.ones(3, 6, dtype=torch.bool))
    assert torch.equal(va.queries, vb.queries)


def test_query_outputs_are_unit_norm():
    head = GLSCL(small_cfg(), width=8).eval()
    v = head.encode_video(torch.randn(3, 6, 8), torch.ones(3, 6, dtype=torch.bool))
    assert torch.allclose(v.queries.norm(dim=-1), torch.ones(3, 3), atol=1e-5)


HEADS = [("glscl", "global"), ("glscl", "local"), ("glscl", "both"), ("mean_pooling", "both"), ("vtc", "both")]


def test_appending_padded_frames_or_tokens_leaves_similarity_unchanged():
    for name, mode in HEADS:
        torch.manual_seed(1)
        head = create_head(small_cfg(num_frames=8, head=name, interaction=mode, vtc_dim=4), width=8).eval()
        sent, tok = torch.randn(2, 8), torch.randn(2, 5, 8)
        tmask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
        frames = torch.randn(3, 4, 8)
        fmask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
        s1, _, _ = head(sent, tok, tmask, frames, fmask)
        # append 3 padded frames (garbage values) and 4 padded tokens (garbage values)
        frames2 = torch.cat([frames, 100 * torch.randn(3, 3, 8)], 1)
        fmask2 = torch.cat([fmask, torch.zeros(3, 3, dtype=torch.bool)], 1)
        tok2 = torch.cat([tok, 100 * torch.randn(2, 4, 8)], 1)
        tmask2 = torch.cat([tmask, torch.zeros(2, 4, dtype=torch.bool)], 1)
        s2, _, _ = head(sent, tok2, tmask2, frames2, fmask2)
        assert torch.allclose(s1, s2, atol=1e-5), (name, mode)
        # and garbage in already-padded positions changes nothing either
        frames3 = frames.clone()
        frames3[1, 2:] = 50.0
        s3, _, _ = head(sent, tok, tmask, frames3, fmask)
        assert torch.allclose(s1, s3, atol=1e-5), (name, mode)


def test_similarity_modes_combine_as_documented():
    torch.manual_seed(2)
    head = GLSCL(small_cfg(local_weight=0.5), width=8).eval()
    args = (torch.randn(2, 8), torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool),
            torch.randn(3, 6, 8), torch.ones(3, 6, dtype=torch.bool))
    s, text, video = head(*args)
    parts = head.similarity_parts(text, video)
    assert torch.allclose(s, parts["global"] + 0.5 * parts["local"])


def test_shared_and_separate_queries_and_decoders():
    shared = GLSCL(small_cfg(), width=8)
    separate = GLSCL(small_cfg(shared_queries=False, shared_decoder=False), width=8)
    assert shared.local.text_queries is shared.local.video_queries
    assert shared.local.text_decoder is shared.local.video_decoder
    assert separate.local.text_queries is not separate.local.video_queries
    assert separate.local.text_decoder is not separate.local.video_decoder
    n_shared = sum(p.numel() for p in shared.parameters())
    n_sep = sum(p.numel() for p in separate.parameters())
    assert n_sep > n_shared


def test_attention_maps_replay_the_decoder_and_respect_masks():
    head = GLSCL(small_cfg(decoder_layers=2), width=8).eval()
    frames = torch.randn(2, 6, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    maps = head.local.attention_maps(frames, mask, "video")
    assert maps.shape == (2, 2, 3, 6)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 2, 3), atol=1e-5)
    assert torch.all(maps[:, 1, :, 3:] == 0)


def test_create_head_builds_the_configured_head():
    assert type(create_head(small_cfg(), 8)) is GLSCL
    assert type(create_head(small_cfg(head="mean_pooling"), 8)) is MeanPooling
    assert type(create_head(small_cfg(head="vtc"), 8)) is VTCHead
    with pytest.raises(ConfigError, match="model.head = 'meanP' is not one of"):
        small_cfg(head="meanP")
    with pytest.raises(ConfigError, match="model.interaction = 'mean' is not one of"):
        small_cfg(interaction="mean")


def test_mean_pooling_is_the_cosine_with_the_mean_of_real_frames():
    head = MeanPooling(small_cfg(temporal_layers=0), width=3).eval()
    sentence = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    frames = torch.tensor([[[1.0, 1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 0.0, 9.0]]])   # third frame is padding
    mask = torch.tensor([[True, True, False]])
    s, text, video = head(sentence, None, None, frames, mask)
    # by hand: mean of the real frames = (1, 0, 0): cos with t0 = 1, with t1 = 0
    assert torch.allclose(s, torch.tensor([[1.0], [0.0]]), atol=1e-6)
    assert text.queries is None and video.queries is None and text.projected is None
    assert head.part_weights == {"mean": 1.0} and set(head.similarity_parts(text, video)) == {"mean"}


def test_mean_pooling_starts_from_the_same_weights_as_glscl_without_queries():
    """Same parameters, created in the same order: the same seed gives the same temporal transformer."""
    torch.manual_seed(5)
    mean = MeanPooling(small_cfg(), width=8)
    torch.manual_seed(5)
    glscl = GLSCL(small_cfg(interaction="global"), width=8)
    a, b = mean.state_dict(), glscl.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name, mode", HEADS)
def test_similarity_is_the_weighted_sum_of_its_parts(name, mode):
    torch.manual_seed(3)
    head = create_head(small_cfg(head=name, interaction=mode, local_weight=0.3, vtc_dim=4), width=8).eval()
    args = (torch.randn(2, 8), torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool),
            torch.randn(3, 6, 8), torch.ones(3, 6, dtype=torch.bool))
    s, text, video = head(*args)
    parts = head.similarity_parts(text, video)
    assert set(parts) == set(head.part_weights)
    assert torch.allclose(s, sum(head.part_weights[k] * v for k, v in parts.items()), atol=1e-6)


def test_embeddings_carry_only_what_the_head_makes():
    args = (torch.randn(2, 8), torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool),
            torch.randn(3, 6, 8), torch.ones(3, 6, dtype=torch.bool))
    _, text, video = create_head(small_cfg(), 8).eval()(*args)
    assert text.queries.shape == (2, 3, 8) and video.queries.shape == (3, 3, 8)
    assert text.projected is None and video.projected is None
    _, text, video = create_head(small_cfg(head="vtc", vtc_dim=4), 8).eval()(*args)
    assert text.projected.shape == (2, 4) and video.projected.shape == (3, 4)
    assert text.queries is None and video.queries is None


def test_embedding_cat_index_and_map_work_field_by_field():
    a = TextEmbedding(torch.arange(4.0).view(2, 2), projected=torch.ones(2, 3))
    b = TextEmbedding(torch.arange(4.0, 6.0).view(1, 2), projected=torch.zeros(1, 3))
    both = TextEmbedding.cat([a, b])
    assert both.sentence.tolist() == [[0, 1], [2, 3], [4, 5]] and both.queries is None
    assert both.projected.sum(1).tolist() == [3, 3, 0]
    assert both[1:].sentence.tolist() == [[2, 3], [4, 5]] and both[[2, 0]].projected.sum(1).tolist() == [0, 3]
    doubled = both.map(lambda t: 2 * t)
    assert doubled.sentence[2].tolist() == [8, 10] and doubled.queries is None
    v = VideoEmbedding(torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))
    assert VideoEmbedding.cat([v, v[:1]]).mask.shape == (3, 3)
    with pytest.raises(ValueError, match="no blocks"):
        VideoEmbedding.cat([])
    assert torch.equal(weighted_sum({"g": torch.ones(2), "l": torch.ones(2)}, {"g": 1.0, "l": 0.5}), torch.full((2,), 1.5))
