"""ALPRO baselines: VTC and prompt entity modeling, against values worked out by hand in the test."""
import json
import math

import pandas as pd
import pytest
import torch
from conftest import tiny_run_config

from glscl.config import ConfigError, ModelConfig, RunConfig, build_config
from glscl.losses import vtc_loss
from glscl.model.factory import create_head
from glscl.model.glscl import GLSCL
from glscl.model.vtc import VTCHead
from glscl.pem.entities import mine_entities, noun_phrases
from glscl.pem.modeling import (
    EntityHead,
    PromptEntityModeling,
    Prompter,
    box_patch_mask,
    build_pem,
    crop_to_box,
    pool_box,
    pseudo_labels,
    sample_boxes,
    soft_cross_entropy,
)


def _ce(row, target):
    return -row[target] + math.log(sum(math.exp(x) for x in row))


# -- VTC ------------------------------------------------------------------------------------------

def test_vtc_head_and_loss_on_a_hand_made_case():
    cfg = ModelConfig(head="vtc", vtc_dim=2, temporal_layers=0, num_frames=3)
    head = create_head(cfg, width=2)
    assert isinstance(head, VTCHead) and isinstance(create_head(ModelConfig(), 8), GLSCL)
    with torch.no_grad():  # identity projections, so z = normalize(input)
        for proj in (head.text_proj, head.video_proj):
            proj.weight.copy_(torch.eye(2))
            proj.bias.zero_()
    sentence = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    frames = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]],     # third frame is padding
                           [[2.0, 0.0], [2.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False], [True, True, False]])
    text = head.encode_text(sentence, None, None)
    video = head.encode_video(frames, mask)
    sim = head.similarity(text, video)
    # by hand: video 0 [CLS] = mean(1,0; 0,1) = (0.5, 0.5) -> (1, 1)/sqrt2; video 1 -> (1, 0)
    # text 0 = (0.6, 0.8), text 1 = (1, 0)
    s = [[(0.6 + 0.8) / math.sqrt(2), 0.6], [1 / math.sqrt(2), 1.0]]
    assert torch.allclose(sim, torch.tensor(s), atol=1e-6)
    temp = 0.07
    lg = [[x / temp for x in r] for r in s]
    rows = (_ce(lg[0], 0) + _ce(lg[1], 1)) / 2
    cols = (_ce([lg[0][0], lg[1][0]], 0) + _ce([lg[0][1], lg[1][1]], 1)) / 2
    got = vtc_loss(sim, head.clamp_temperature_())
    assert got["loss"].item() == pytest.approx(0.5 * (rows + cols), rel=1e-5)
    # identical captions: the off-diagonal pair leaves both softmaxes, each row keeps only its positive
    same = torch.tensor([[True, True], [True, True]])
    assert vtc_loss(sim, temp, same_caption=same)["loss"].item() == pytest.approx(0.0, abs=1e-6)


def test_vtc_temperature_starts_at_0_07_and_is_clamped_in_place():
    head = VTCHead(ModelConfig(head="vtc", temporal_layers=0), width=8)
    assert head.temperature.item() == pytest.approx(0.07)
    with torch.no_grad():
        head.temperature.fill_(3.0)
    assert head.clamp_temperature_().item() == pytest.approx(0.5) and head.temperature.item() == pytest.approx(0.5)
    with torch.no_grad():
        head.temperature.fill_(1e-6)
    assert head.clamp_temperature_().item() == pytest.approx(0.001)
    # inside the range the parameter learns
    with torch.no_grad():
        head.temperature.fill_(0.07)
    sim = torch.tensor([[0.9, 0.2], [0.1, 0.8]])
    vtc_loss(sim, head.clamp_temperature_())["loss"].backward()
    assert head.temperature.grad is not None and head.temperature.grad.abs() > 0
    assert head.video_proj.out_features == 256
    with pytest.raises(ConfigError, match="model.vtc_temperature"):
        ModelConfig(vtc_temperature=0.6)


# -- PEM: boxes and crops ---------------------------------------------------------------------------

@pytest.mark.parametrize("grid, patch", [((4, 4), 16), ((7, 7), 32)])
def test_crop_boxes_lie_on_the_patch_grid_cover_30_to_50_percent_and_are_shared_by_frames(grid, patch):
    g = torch.Generator().manual_seed(0)
    boxes = sample_boxes(400, *grid, generator=g)
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= grid[0]).all() and (left + w <= grid[1]).all()
    share = (h * w).float() / (grid[0] * grid[1])
    assert (share >= 0.3 - 1e-9).all() and (share <= 0.5 + 1e-9).all()
    side = grid[0] * patch
    pixels = torch.rand(8, 3, 3, side, side) + 1.0  # never zero
    cropped = crop_to_box(pixels, boxes[:8], patch)
    inside = cropped != 0
    assert torch.equal(cropped[inside], pixels[inside])  # inside untouched, outside exactly zero
    for b in range(8):
        m = inside[b]
        assert all(torch.equal(m[t], m[0]) for t in range(3))  # same box on every frame and channel
        region = m[0, 0]
        rows, cols = region.any(1).nonzero().squeeze(1), region.any(0).nonzero().squeeze(1)
        t0, l0, hh, ww = (int(v) for v in boxes[b])
        assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (t0 * patch, (t0 + hh) * patch, l0 * patch, (l0 + ww) * patch)
        assert 0.3 <= region.float().mean() <= 0.5
    # the patch mask matches the pixels: patch (r, c) is inside iff its pixels are
    pm = box_patch_mask(boxes[:8], *grid).view(8, *grid)
    assert torch.equal(pm, inside[:, 0, 0, ::patch, ::patch])
    # a per-channel fill (e.g. the normalised value of black)
    black = torch.tensor([-1.0, -2.0, -3.0])
    filled = crop_to_box(pixels, boxes[:8], patch, black)
    for c in range(3):
        assert (filled[:, :, c][~inside[:, :, c]] == black[c]).all()
        assert torch.equal(filled[:, :, c][inside[:, :, c]], pixels[:, :, c][inside[:, :, c]])


def test_no_box_fits_a_one_patch_grid():
    with pytest.raises(ValueError, match="no box on a 1x1 patch grid"):
        sample_boxes(2, 1, 1)


# -- PEM: pseudo-labels -----------------------------------------------------------------------------

def test_low_confidence_samples_are_dropped_paper_rule_and_released_bug():
    tau = 0.1
    sim = torch.tensor([[0.30, 0.10, 0.00, 0.00],    # confident, best entity 0
                        [0.01, 0.02, 0.00, 0.01],    # nearly uniform
                        [0.00, 0.00, 0.50, 0.10]])   # confident, best entity 2
    q, keep = pseudo_labels(sim, tau, 0.2, "paper")
    # by hand: max q of row 1 = e^0.2 / (e^0.1 + e^0.2 + e^0 + e^0.1) = 0.2735..., of row 0 = e^3 / (e^3 + e^1 + 2)
    assert q[1].max().item() == pytest.approx(math.exp(0.2) / (2 * math.exp(0.1) + math.exp(0.2) + 1), rel=1e-5)
    assert q[0].max().item() == pytest.approx(math.exp(3) / (math.exp(3) + math.e + 2), rel=1e-5)
    assert keep.tolist() == [True, True, True]
    _, keep = pseudo_labels(sim, tau, 0.3, "paper")
    assert keep.tolist() == [True, False, True]  # 0.2735 < 0.3
    # the release compares the argmax index with the threshold: drops row 0 (index 0), keeps row 1
    _, keep = pseudo_labels(sim, tau, 0.3, "released")
    assert keep.tolist() == [False, True, True]
    # soft cross-entropy averages over kept rows only, by hand
    logits = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    q, keep = pseudo_labels(sim, tau, 0.3, "paper")
    ce = [-sum(q[i, m].item() * (logits[i, m].item() - math.log(sum(math.exp(x) for x in logits[i].tolist())))
               for m in range(4)) for i in range(3)]
    assert soft_cross_entropy(logits, q, keep).item() == pytest.approx((ce[0] + ce[2]) / 2, rel=1e-5)
    none = soft_cross_entropy(logits.requires_grad_(), q, torch.zeros(3, dtype=torch.bool))
    assert none.item() == 0.0 and none.requires_grad


def test_pool_box_is_the_mean_over_box_patches_and_real_frames():
    tokens = torch.arange(2 * 2 * 4 * 1, dtype=torch.float).view(2, 2, 4, 1)  # B=2, T=2, P=4, d=1
    inside = torch.tensor([[True, False, True, False], [False, False, False, True]])
    frames = torch.tensor([[True, True], [True, False]])
    pooled = pool_box(tokens, inside, frames)
    # clip 0: frame 0 patches 0, 2 -> 0, 2; frame 1 -> 4, 6; mean 3. clip 1: frame 0 patch 3 -> 11
    assert pooled.squeeze(1).tolist() == [3.0, 11.0]


# -- PEM: entities --------------------------------------------------------------------------------

CAPTIONS = [
    "a man is playing a guitar on the stage.",
    "A woman sings a song",
    "two dogs run in the park",
    "a small red circle moves left, then a large blue square appears",
    "the man rides a red bicycle",
    "a man is cooking in the kitchen",
]


def test_entity_mining_finds_the_nouns_by_hand():
    # nouns, by hand: man x3; guitar, stage, woman, song, dog (from "dogs"), park, circle, square, bicycle, kitchen x1
    assert mine_entities(CAPTIONS, 3) == ("man", "bicycle", "circle")  # count, then alphabetical
    assert set(mine_entities(CAPTIONS, 100)) == {"man", "guitar", "stage", "woman", "song", "dog", "park", "circle",
                                                 "square", "bicycle", "kitchen"}
    phrases = mine_entities(CAPTIONS, 100, kind="phrases")
    assert {"small red circle", "large blue square", "red bicycle", "man"} <= set(phrases)
    assert noun_phrases("two dogs appear") == [((), "dog")]


# -- PEM: gradients ---------------------------------------------------------------------------------

def test_pem_gradient_reaches_the_visual_encoder_and_not_the_prompter(tiny_world, tiny_clip, tmp_path):
    from glscl.model.backbone import create_backbone
    from glscl.model.factory import Retriever

    cfg = build_config(tiny_run_config(tiny_world, tiny_clip, tmp_path), {"loss.pem_weight": 1.0, "pem.templates": "bare"})
    backbone = create_backbone("glscl-tiny", str(tiny_clip))
    model = Retriever(backbone, create_head(cfg.model, backbone.width))
    pem = build_pem(cfg, model, ["a small red circle moves up", "a large blue square moves left", "a triangle"])
    assert isinstance(pem, PromptEntityModeling) and isinstance(pem.prompter, Prompter)
    assert set(pem.entities) == {"circle", "square", "triangle"} and isinstance(model.entity_head, EntityHead)
    assert pem.grid == (4, 4) and pem.patch == (16, 16)
    assert not any(n.startswith("prompter") for n, _ in model.named_parameters())  # not saved, not optimised
    pixels = torch.randn(3, 2, 3, 64, 64)
    mask = torch.tensor([[True, True], [True, False], [True, True]])
    model.train()
    frames, tokens = model.backbone.encode_frames(pixels, patch_tokens=True)
    out = pem.loss(pixels, mask, tokens, generator=torch.Generator().manual_seed(0))
    assert out["pem_kept"].item() == 1.0  # 3 entities: max q >= 1/3 > 0.2
    out["pem"].backward()
    assert model.backbone.clip.visual.conv1.weight.grad.abs().sum() > 0
    assert model.entity_head.mlp[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in pem.prompter.parameters())
    assert not pem.prompter.training
    # the prompter's entity embeddings: unit norm, one per entity
    e = pem.prompter.entity_embeddings
    assert e.shape == (3, backbone.width) and torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_pem_with_the_feature_cache_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as e:
        build_config(RunConfig(), {"loss.pem_weight": 0.5, "data.cache_dir": "cache"})
    assert "\n" not in str(e.value) and "end to end" in str(e.value) and "data.cache_dir" in str(e.value)
    with pytest.raises(ConfigError, match="pem.crop_min_area"):
        build_config(RunConfig(), {"pem.crop_min_area": 0.6})


# -- runs -------------------------------------------------------------------------------------------

def test_vtc_trains_from_the_feature_cache(tiny_world, tiny_clip, tmp_path):
    from glscl.engine.run import run
    cfg = build_config(tiny_run_config(tiny_world, tiny_clip, tmp_path / "runs", cache_dir=tmp_path / "cache", epochs=1),
                          {"model.head": "vtc", "model.vtc_dim": 32})
    record = run(cfg, progress=False)
    assert record["head"] == "vtc" and 0 <= record["t2v_R@1"] <= 100
    assert "train_vtc" in pd.read_csv(tmp_path / "runs" / "tiny" / "curve.csv")


@pytest.mark.parametrize("head", ["vtc", "glscl"])
def test_tiny_end_to_end_run_with_pem_writes_metrics(tiny_world, tiny_clip, tmp_path, head):
    from glscl.engine.run import run
    cfg = build_config(tiny_run_config(tiny_world, tiny_clip, tmp_path / "runs", epochs=1, batch_size=16),
                          {"model.head": head, "loss.pem_weight": 1.0, "pem.templates": "bare",
                           "model.vtc_dim": 32})
    record = run(cfg, progress=False)
    d = tmp_path / "runs" / "tiny"
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["head"] == head and metrics["pem_weight"] == 1.0 and metrics["train_steps"] == 2
    assert record["t2v_R@1"] == metrics["t2v_R@1"]
    curve = pd.read_csv(d / "curve.csv")
    assert {"train_pem", "train_pem_kept", "train_loss"} <= set(curve.columns)
    # 3 nouns in the world (circle, square, triangle): max q >= 1/3 > 0.2, so every sample is kept
    assert curve["train_pem_kept"].iloc[0] == 1.0 and math.isfinite(curve["train_pem"].iloc[0]) and curve["train_pem"].iloc[0] > 0
