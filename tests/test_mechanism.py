"""Mechanism metrics (glscl.engine.mechanism) against values computed here by hand, and the frame
annotation of a world split (glscl.data.world.annotation)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from glscl.config import build_config
from glscl.data.world.annotation import FrameAnnotation
from glscl.engine.evaluate import evaluate
from glscl.engine.mechanism import FrameSimilarity, MechanismProbe
from glscl.model.backbone import TextFeatures
from glscl.model.factory import create_head

D, T, L = 16, 6, 5


def _head(interaction: str = "both", k: int = 3, **model):
    cfg = build_config("embedded", {"model.pretrained": None, "model.num_frames": T, "model.num_queries": k,
                                    "model.interaction": interaction, "model.decoder_layers": 1,
                                    "model.temporal_layers": 1, **{f"model.{key}": v for key, v in model.items()}})
    torch.manual_seed(0)
    return create_head(cfg.model, D).eval()


def _inputs(n_videos=4, captions_per_video=2):
    g = torch.Generator().manual_seed(1)
    frames = torch.randn(n_videos, T, D, generator=g)
    mask = torch.ones(n_videos, T, dtype=torch.bool)
    mask[1, 4:] = False  # a shorter video, padded
    frames = frames * mask[..., None]
    n = n_videos * captions_per_video
    texts = TextFeatures(tokens=torch.randn(n, L, D, generator=g), mask=torch.ones(n, L, dtype=torch.bool),
                         sentence=torch.randn(n, D, generator=g))
    caption_video = np.repeat(np.arange(n_videos), captions_per_video)
    caption_frames = np.zeros((n, T), bool)
    for i in range(n):
        start = i % 3
        caption_frames[i, start:start + 2] = True
    segment = np.tile(np.array([0, 0, 1, 1, 2, 2]), (n_videos, 1))
    segment[1, 4:] = -1
    segment[1, :4] = [0, 0, 1, 1]
    kinds = tuple("single" if i % 2 else "then" for i in range(n))
    return frames, mask, texts, caption_video, FrameAnnotation(caption_frames, kinds, segment)


def test_captioned_mass_entropy_and_coverage_match_a_hand_computation():
    head = _head()
    frames, mask, texts, caption_video, annotation = _inputs()
    sim, metrics = evaluate(head, [texts], [(frames[:3], mask[:3]), (frames[3:], mask[3:])], caption_video,
                            annotation=annotation)
    with torch.no_grad():
        video = head.encode_video(frames, mask)
        v = F.normalize(video.frames, dim=-1).double()
        t = F.normalize(texts.sentence, dim=-1).double()
        tau = head.cfg.global_tau
        masses, chances, entropies = [], [], []
        for i, m in enumerate(caption_video):
            real = mask[m].numpy()
            logits = (v[m] @ t[i]).numpy() / tau
            w = np.exp(logits[real] - logits[real].max())
            w /= w.sum()
            captioned = annotation.caption_frames[i][real]
            masses.append(w[captioned].sum())
            chances.append(captioned.mean())
            entropies.append(-(w * np.log(w)).sum() / math.log(real.sum()))
        maps = head.local.attention_maps(video.frames, mask)[-1]
        coverage, one, random = [], [], []
        for b in range(len(frames)):
            seg = annotation.segment[b]
            n_seg = seg.max() + 1
            peaks = [int(np.argmax(maps[b, k].numpy())) for k in range(maps.shape[1])]
            coverage.append(len({seg[p] for p in peaks}) / n_seg)
            one.append(1 / n_seg)
            share = [(seg == s).sum() / (seg >= 0).sum() for s in range(n_seg)]
            random.append(np.mean([1 - (1 - p) ** maps.shape[1] for p in share]))
    assert metrics["global_captioned_mass"] == pytest.approx(np.mean(masses), abs=1e-6)
    assert metrics["global_captioned_chance"] == pytest.approx(np.mean(chances), abs=1e-6)
    assert metrics["global_weight_entropy"] == pytest.approx(np.mean(entropies), abs=1e-6)
    assert metrics["segment_coverage"] == pytest.approx(np.mean(coverage))
    assert metrics["segment_coverage_one"] == pytest.approx(np.mean(one))
    assert metrics["segment_coverage_random"] == pytest.approx(np.mean(random))
    ranks = [(sim[i] >= sim[i, m]).sum().item() for i, m in enumerate(caption_video)]
    for kind in ("single", "then"):
        rows = [i for i, k in enumerate(annotation.caption_kind) if k == kind]
        assert metrics[f"t2v_R@1:{kind}"] == pytest.approx(100 * np.mean([ranks[i] == 1 for i in rows]))
        assert metrics[f"captions:{kind}"] == len(rows)


def test_weights_on_one_frame_give_mass_one_and_entropy_zero():
    probe = MechanismProbe(FrameAnnotation(np.array([[True, False, False]]), ("single",), np.array([[0, 1, 1]])), [0])
    head = _head("global", global_tau=1e-4)  # the sharpest softmax: all weight on the best frame
    frames = torch.zeros(1, 3, D)
    frames[0, 0, 0] = frames[0, 1, 1] = frames[0, 2, 2] = 1.0
    text = head.encode_text(torch.eye(D)[:1], torch.zeros(1, 2, D), torch.ones(1, 2, dtype=torch.bool))
    from glscl.model.embedding import VideoEmbedding
    probe.add(head, text, VideoEmbedding(frames, torch.ones(1, 3, dtype=torch.bool)), 0)
    record = probe.record(torch.tensor([[1.0]]))
    assert record["global_captioned_mass"] == pytest.approx(1.0) and record["global_weight_entropy"] == pytest.approx(0.0)
    assert record["global_captioned_chance"] == pytest.approx(1 / 3)
    assert "segment_coverage" not in record  # a global-only head has no queries


def test_heads_without_the_mechanism_and_splits_without_annotations_get_no_mechanism_metrics():
    frames, mask, texts, caption_video, annotation = _inputs()
    _, plain = evaluate(_head(), [texts], [(frames, mask)], caption_video)
    assert not any(k.startswith(("global_", "segment_", "t2v_R@1:")) for k in plain)
    local_only = _head("local")
    _, local = evaluate(local_only, [texts], [(frames, mask)], caption_video, annotation=annotation)
    assert "segment_coverage" in local and "global_captioned_mass" not in local


def test_frame_cosine_is_the_mean_over_videos_of_their_real_frame_pairs():
    x = torch.zeros(2, 3, 2)
    x[0] = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])   # pairwise cosines 0, 1/sqrt2, 1/sqrt2
    x[1, :2] = torch.tensor([[1.0, 0.0], [2.0, 0.0]])            # one real pair, cosine 1; frame 2 padded
    mask = torch.tensor([[True, True, True], [True, True, False]])
    alike = FrameSimilarity()
    assert len(list(alike.tap([(x[:1], mask[:1]), (x[1:], mask[1:])]))) == 2
    assert alike.record()["frame_cosine"] == pytest.approx(((2 / math.sqrt(2)) / 3 + 1) / 2)
