"""The released recipe (glscl/presets/released.yaml) pinned against re-derivations written in the test.

Each choice the paper leaves open is re-derived here from its definition, independently of the
package's code: the post-norm decoder layer (attention written out with the layer's own weights),
the temporal transformer started from CLIP's text layers (weights and outputs), QuickGELU, the
uniform query init, the released similarity (softmax then mask, S_g + lambda S_l) and the released
losses at the released scripts' weights.
"""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from glscl.config import ConfigError, build_config
from glscl.losses import create_loss, info_nce
from glscl.model.backbone import create_backbone
from glscl.model.embedding import TextEmbedding, VideoEmbedding
from glscl.model.factory import create_head
from glscl.model.interaction import LocalInteraction, TemporalTransformer

RELEASED = {"model.decoder_norm": "post", "model.query_init": "rand", "model.temporal_init": "clip",
            "model.temporal_activation": "quick_gelu", "model.temporal_dropout": 0.0, "loss.variant": "released",
            "loss.released_icl_weight": 1.0, "loss.released_idl_weight": 1e-4, "loss.released_beta": 0.02,
            "model.temporal_norm_eps": 1e-12, "model.decoder_key_padding_mask": False, "model.global_normalize": False,
            "loss.mask_false_negatives": False, "loss.max_logit_scale": None,
            "train.logit_scale_group": "backbone", "train.backbone_lr_coef": 1e-3}  # model.global_tau: each dataset's


def _flat(cfg) -> dict:
    return {f"{section}.{k}": v for section, fields in cfg.to_dict().items() if isinstance(fields, dict)
            for k, v in fields.items()}


def test_the_released_preset_is_the_embedded_default_plus_the_released_choices():
    released, embedded = _flat(build_config("released")), _flat(build_config("embedded"))
    changed = {k: released[k] for k in released if released[k] != embedded[k]}
    assert changed == {k: v for k, v in RELEASED.items() if embedded[k] != v}
    assert all(released[k] == v for k, v in RELEASED.items())
    paper = build_config(None)  # the paper-faithful defaults stay
    assert (paper.model.decoder_norm, paper.model.query_init, paper.model.temporal_init, paper.model.temporal_activation,
            paper.model.temporal_dropout, paper.loss.variant) == ("pre", "randn", "random", "relu", None, "paper")
    assert (paper.model.temporal_norm_eps, paper.model.decoder_key_padding_mask, paper.loss.mask_false_negatives,
            paper.loss.max_logit_scale, paper.train.logit_scale_group) == (1e-5, True, True, 100.0, "head")


# -- the local interaction decoder, post-norm -------------------------------------------------------

def _attention(x, memory, attn, key_padding=None):
    """Multi-head attention written out from nn.MultiheadAttention's weights: returns (output, weights
    averaged over heads)."""
    d, h = x.shape[-1], attn.num_heads
    w, b = attn.in_proj_weight, attn.in_proj_bias
    q, k, v = x @ w[:d].T + b[:d], memory @ w[d:2 * d].T + b[d:2 * d], memory @ w[2 * d:].T + b[2 * d:]
    split = lambda t: t.view(t.shape[0], t.shape[1], h, d // h).transpose(1, 2)  # noqa: E731
    logits = split(q) @ split(k).transpose(-1, -2) / math.sqrt(d // h)
    if key_padding is not None:
        logits = logits.masked_fill(key_padding[:, None, None, :], float("-inf"))
    p = logits.softmax(-1)
    out = (p @ split(v)).transpose(1, 2).reshape(x.shape)
    return out @ attn.out_proj.weight.T + attn.out_proj.bias, p.mean(1)


def _layer_norm(x, ln):
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def test_post_norm_decoder_layer_matches_a_hand_written_reference():
    torch.manual_seed(0)
    local = LocalInteraction(8, num_queries=3, layers=1, heads=2, dropout=0.1, norm="post").eval()
    assert local.video_decoder.norm is None  # no final LayerNorm
    layer = local.video_decoder.layers[0]
    memory = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    # by hand: x = LN1(q + SelfAttn(q)); x = LN2(x + CrossAttn(x, memory)); x = LN3(x + W2 relu(W1 x + b1) + b2)
    x = local.video_queries.detach().expand(2, -1, -1)
    x = _layer_norm(x + _attention(x, x, layer.self_attn)[0], layer.norm1)
    cross, weights = _attention(x, memory, layer.multihead_attn, key_padding=~mask)
    x = _layer_norm(x + cross, layer.norm2)
    x = _layer_norm(x + layer.linear2(F.relu(layer.linear1(x))), layer.norm3)
    with torch.no_grad():
        got = local.encode_video(memory, mask)
        maps = local.attention_maps(memory, mask, "video")
    assert torch.allclose(got, F.normalize(x, dim=-1), atol=1e-5)
    assert torch.allclose(maps[0], weights, atol=1e-5) and torch.all(maps[0, 1, :, 3:] == 0)


def test_pre_norm_decoder_keeps_its_final_layer_norm():
    local = LocalInteraction(8, 3, 2, 2, 0.0, norm="pre")
    assert isinstance(local.video_decoder.norm, torch.nn.LayerNorm)
    assert all(layer.norm_first for layer in local.video_decoder.layers)
    assert not any(layer.norm_first for layer in LocalInteraction(8, 3, 2, 2, 0.0, norm="post").video_decoder.layers)


def test_query_init_rand_is_uniform_on_0_1():
    torch.manual_seed(0)
    rand = LocalInteraction(64, 16, 1, 2, 0.0, query_init="rand", shared_queries=False)
    for q in (rand.video_queries, rand.text_queries):
        assert q.min() >= 0 and q.max() < 1 and abs(q.mean().item() - 0.5) < 0.05
    randn = LocalInteraction(64, 16, 1, 2, 0.0, query_init="randn").video_queries
    assert randn.min() < 0 and abs(randn.std().item() - 64 ** -0.5) < 0.02


# -- the temporal transformer from CLIP's text layers ----------------------------------------------

def _tiny_clip_config(**kw):
    return build_config("embedded", {"model.pretrained": None, "model.temporal_init": "clip", "model.temporal_layers": 2,
                                     **{f"model.{k}": v for k, v in kw.items()}}).model


def _clip_block(x, block, act):
    """CLIP's residual attention block (pre-norm) without a causal mask, written out: x + Attn(LN_1 x),
    then x + c_proj(act(c_fc(LN_2 x)))."""
    h = _layer_norm(x, block.ln_1)
    x = x + _attention(h, h, block.attn)[0]
    return x + block.mlp.c_proj(act(block.mlp.c_fc(_layer_norm(x, block.ln_2))))


def test_temporal_transformer_starts_from_clips_text_layers():
    backbone = create_backbone("glscl-tiny", None)
    clip = backbone.clip
    for head_name in ("glscl", "mean_pooling", "vtc"):
        head = create_head(_tiny_clip_config(head=head_name), backbone.width, backbone=backbone)
        layers = head.temporal.encoder.layers
        assert len(layers) == 2
        for layer, block in zip(layers, clip.transformer.resblocks):
            assert torch.equal(layer.self_attn.in_proj_weight, block.attn.in_proj_weight)
            assert torch.equal(layer.self_attn.in_proj_bias, block.attn.in_proj_bias)
            assert torch.equal(layer.self_attn.out_proj.weight, block.attn.out_proj.weight)
            assert torch.equal(layer.self_attn.out_proj.bias, block.attn.out_proj.bias)
            assert torch.equal(layer.linear1.weight, block.mlp.c_fc.weight) and torch.equal(layer.linear1.bias, block.mlp.c_fc.bias)
            assert torch.equal(layer.linear2.weight, block.mlp.c_proj.weight) and torch.equal(layer.linear2.bias, block.mlp.c_proj.bias)
            for ours, theirs in ((layer.norm1, block.ln_1), (layer.norm2, block.ln_2)):
                assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)
        assert torch.equal(head.temporal.position.weight, clip.positional_embedding[:head.temporal.position.num_embeddings])
    # random init draws other weights
    other = create_head(_tiny_clip_config(temporal_init="random"), backbone.width)
    assert not torch.equal(other.temporal.encoder.layers[0].linear1.weight, clip.transformer.resblocks[0].mlp.c_fc.weight)


@pytest.mark.parametrize("activation, act", [("gelu", F.gelu), ("quick_gelu", lambda x: x * torch.sigmoid(1.702 * x))])
def test_temporal_layers_compute_clips_blocks_with_their_activation(activation, act):
    """glscl-tiny's text layers use GELU: with 'gelu' the temporal layers compute exactly CLIP's blocks;
    'quick_gelu' (the released code's, OpenAI CLIP's own) swaps in x sigmoid(1.702 x)."""
    backbone = create_backbone("glscl-tiny", None)
    cfg = _tiny_clip_config(temporal_activation=activation, temporal_dropout=0.0)
    temporal = create_head(cfg, backbone.width, backbone=backbone).temporal.eval()
    frames = torch.randn(3, 8, backbone.width)
    mask = torch.ones(3, 8, dtype=torch.bool)
    x = frames + backbone.clip.positional_embedding[:8]
    with torch.no_grad():
        for block in backbone.clip.transformer.resblocks:
            x = _clip_block(x, block, act)
        got = temporal(frames, mask)
    assert torch.allclose(got, frames + x, atol=1e-5)


def test_temporal_init_from_clip_refuses_what_it_cannot_copy():
    backbone = create_backbone("glscl-tiny", None)  # text: width 64, 2 heads, 2 layers, 32 positions
    with pytest.raises(ConfigError, match=r"^model.temporal_init = 'clip' needs the backbone's text width \(64\)"):
        TemporalTransformer(32, 1, 2, 8, 0.0).init_from_clip(backbone.clip)
    with pytest.raises(ConfigError, match=r"^model.temporal_layers = 3 exceeds"):
        create_head(_tiny_clip_config(temporal_layers=3), 64, backbone=backbone)
    with pytest.raises(ConfigError, match=r"^model.temporal_heads = 4 differs"):
        create_head(_tiny_clip_config(temporal_heads=4), 64, backbone=backbone)
    with pytest.raises(ConfigError, match=r"^model.num_frames = 40 exceeds"):
        create_head(_tiny_clip_config(num_frames=40), 64, backbone=backbone)
    with pytest.raises(ConfigError, match=r"^model.temporal_init = 'clip' copies the backbone's text layers"):
        create_head(_tiny_clip_config(), 64)


def test_temporal_dropout_defaults_to_model_dropout():
    def rates(**kw):
        t = TemporalTransformer.from_config(build_config("embedded", kw).model, 8)
        return {m.p for m in t.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates() == {0.1}
    assert rates(**{"model.temporal_dropout": 0.0}) == {0.0}
    assert TemporalTransformer.from_config(build_config("embedded", {"model.temporal_layers": 0}).model, 8) is None


# -- the released similarity and losses ---------------------------------------------------------------

def test_released_similarity_matches_the_released_formulas_written_out():
    """S = S_g + lambda S_l as the released code writes it, on padded captions and videos:
    w = softmax_f(t . v_f / 3) * mask (raw features), v_bar = sum_f w_f v_f, S_g = cos(t, v_bar);
    S_l = (1/K) sum_k <c^t_k / |c^t_k|, c^v_k / |c^v_k|> with c = Decoder(queries, memory), no key-padding mask."""
    torch.manual_seed(0)
    cfg = build_config("released", {"model.temporal_init": "random", "model.global_tau": 3.0}).model
    head = create_head(cfg, 16).eval()
    sentence, tokens = torch.randn(4, 16), torch.randn(4, 6, 16)
    frames = torch.randn(3, 8, 16)
    tmask, fmask = torch.ones(4, 6, dtype=torch.bool), torch.ones(3, 8, dtype=torch.bool)
    tmask[1, 4:], tmask[3, 2:], fmask[2, 5:] = False, False, False
    with torch.no_grad():
        sim, _, video = head(sentence, tokens, tmask, frames, fmask)
        v = video.frames  # after the temporal transformer
        w = torch.stack([torch.softmax(sentence @ v[j].T / 3.0, dim=-1) * fmask[j] for j in range(3)], 1)  # N x M x T
        vbar = torch.stack([w[:, j] @ v[j] for j in range(3)], 1)                                           # N x M x d
        s_g = F.cosine_similarity(sentence[:, None], vbar, dim=-1)
        dec, q = head.local.video_decoder, head.local.video_queries
        cv = F.normalize(dec(q.expand(3, -1, -1), v), dim=-1)
        ct = F.normalize(dec(q.expand(4, -1, -1), tokens), dim=-1)
        s_l = sum(ct[:, q] @ cv[:, q].T for q in range(cfg.num_queries)) / cfg.num_queries
        masked = create_head(dataclasses.replace(cfg, decoder_key_padding_mask=True), 16).eval()
        masked.load_state_dict(head.state_dict())
        sim_masked = masked(sentence, tokens, tmask, frames, fmask)[0]
    assert torch.allclose(sim, s_g + cfg.local_weight * s_l, atol=1e-5)
    # with the key-padding mask, S moves on the padded captions and the padded video only
    moved = (sim_masked - sim).abs() > 1e-6
    assert moved[1].all() and moved[3].all() and moved[:, 2].all() and not moved[[0, 2]][:, [0, 1]].any()


def test_released_loss_matches_the_released_formulas_written_out():
    """loss = InfoNCE + [MSE(mean_b c^v, mean_b c^t) + beta r] + alpha * margin_ranking(C, 0.1, 'both'),
    r = sum_k ((sum_b c^v_bk . c^t_bk) / K - 0.75)^2, C = mean_b c^v_b c^v_b^T, beta = 0.02, alpha = 1e-4."""
    torch.manual_seed(0)
    b, k, d = 5, 4, 6
    cv, ct = F.normalize(torch.randn(b, k, d), dim=-1), F.normalize(torch.randn(b, k, d), dim=-1)
    sim, scale = torch.randn(b, b).clamp(-1, 1), torch.tensor(3.0)
    cfg = build_config("released")
    head = type("Head", (), {"logit_scale": scale})()
    got = create_loss(cfg)(head, sim, TextEmbedding(torch.randn(b, d), queries=ct),
                           VideoEmbedding(torch.randn(b, 3, d), torch.ones(b, 3, dtype=torch.bool), queries=cv))
    mse = ((cv.mean(0) - ct.mean(0)) ** 2).mean()
    r = sum(((cv[:, q] * ct[:, q]).sum() / k - 0.75) ** 2 for q in range(k))
    c = sum(cv[i] @ cv[i].T for i in range(b)) / b
    off = ~torch.eye(k, dtype=torch.bool)
    diag = c.diagonal().view(k, 1)
    margin = ((0.1 + c - diag).clamp(min=0)[off].sum() + (0.1 + c - diag.t()).clamp(min=0)[off].sum()) / (k * (k - 1))
    expected = info_nce(sim, scale) + (mse + 0.02 * r) + 1e-4 * margin
    assert torch.allclose(got["loss"], expected, atol=1e-6)
    assert torch.allclose(got["icl"], mse + 0.02 * r) and torch.allclose(got["idl"], margin)


def test_released_loss_keeps_identical_captions_as_negatives_and_never_clamps_the_scale():
    """Released InfoNCE: s = exp(logit_scale) unclamped (here 200), every off-diagonal pair a negative."""
    torch.manual_seed(1)
    b = 4
    sim, scale = torch.randn(b, b).clamp(-1, 1), torch.tensor(math.log(200.0))
    same = torch.zeros(b, b, dtype=torch.bool)
    same[0, 1] = same[1, 0] = True  # captions 0 and 1 are identical
    logits = 200.0 * sim
    target = torch.arange(b)
    by_hand = 0.5 * (-logits.log_softmax(1)[target, target].mean() - logits.log_softmax(0)[target, target].mean())
    released, paper = build_config("released").loss, build_config("embedded").loss
    assert torch.allclose(info_nce(sim, scale, max_scale=released.max_logit_scale,
                                   same_caption=same if released.mask_false_negatives else None), by_hand, atol=1e-5)
    # the workbench's default clamps at 100 and drops the identical pair from the negatives
    clamped = 100.0 * sim
    clamped = clamped.masked_fill(same, float("-inf"))
    ours = 0.5 * (-clamped.log_softmax(1)[target, target].mean() - clamped.log_softmax(0)[target, target].mean())
    assert torch.allclose(info_nce(sim, scale, max_scale=paper.max_logit_scale, same_caption=same), ours, atol=1e-5)
    assert not torch.allclose(ours, by_hand, atol=1e-3)


def test_released_logit_scale_trains_as_clips_own():
    """train.logit_scale_group = 'backbone': lr x backbone_lr_coef (1e-3) with weight decay; 'head': lr, no decay."""
    from glscl.engine.train import param_groups
    for preset, lr_coef, decays in (("released", 1e-3, True), ("embedded", 1.0, False)):
        cfg = build_config(preset, {"model.temporal_init": "random"})
        head = create_head(cfg.model, 16)
        t = cfg.train
        groups = param_groups(head, t.lr, t.backbone_lr_coef, t.weight_decay, t.logit_scale_group)
        (group,) = [g for g in groups if any(p is head.logit_scale for p in g["params"])]
        assert group["lr"] == pytest.approx(t.lr * lr_coef)
        assert group["weight_decay"] == (t.weight_decay if decays else 0.0)
        # every other parameter keeps its group: the queries train at lr without decay in both recipes
        (queries,) = [g for g in groups if any(p is head.local.video_queries for p in g["params"])]
        assert queries["lr"] == t.lr and queries["weight_decay"] == 0.0


def test_released_temporal_layer_norms_use_eps_1e_12():
    """seqTransf's LayerNorms: (x - mu) / sqrt(var + 1e-12); on near-constant frames eps 1e-5 would move them."""
    def layer_norm(x, ln, eps):
        mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        return (x - mu) / torch.sqrt(var + eps) * ln.weight + ln.bias

    torch.manual_seed(0)
    cfg = build_config("released", {"model.temporal_init": "random", "model.temporal_dropout": 0.0}).model
    temporal = TemporalTransformer.from_config(cfg, 16).eval()
    norms = [m for m in temporal.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.eps == 1e-12 for m in norms)
    frames, mask = 1e-3 * torch.randn(2, cfg.num_frames, 16), torch.ones(2, cfg.num_frames, dtype=torch.bool)
    (layer,) = temporal.encoder.layers
    x = frames + temporal.position.weight[:cfg.num_frames]
    with torch.no_grad():
        for eps in (1e-12, 1e-5):
            h = layer_norm(x, layer.norm1, eps)
            y = x + _attention(h, h, layer.self_attn)[0]
            y = y + layer.linear2(_quick_gelu(layer.linear1(layer_norm(y, layer.norm2, eps))))
            if eps == 1e-12:
                assert torch.allclose(temporal(frames, mask), frames + y, atol=1e-6)
            else:
                assert not torch.allclose(temporal(frames, mask), frames + y, atol=1e-6)


def _quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)
