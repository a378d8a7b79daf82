"""Gradients reach every trainable parameter, and a few steps on a fixed batch lower the loss."""
import torch

from glscl.config import LossConfig, ModelConfig
from glscl.losses import glscl_loss
from glscl.model.backbone import Tokenizer
from glscl.model.factory import create_model

CAPTIONS = ["a red circle moves left", "a blue square appears", "a small green triangle moves up",
            "a yellow circle disappears"]


def _model(**kw):
    cfg = ModelConfig(backbone="glscl-tiny", pretrained=None, max_words=16, num_frames=3, temporal_layers=1,
                      temporal_heads=2, decoder_layers=1, decoder_heads=2, num_queries=2, compact_vocab=True,
                      dropout=0.0, **kw)
    vocab = Tokenizer.build_vocab(CAPTIONS, 16)
    return create_model(cfg, vocab=vocab)


def test_gradients_reach_every_trainable_parameter():
    for shared in (True, False):
        model = _model(shared_queries=shared, shared_decoder=shared)
        ids = model.backbone.tokenizer(CAPTIONS)
        pixels = torch.randn(4, 3, 3, 64, 64)
        mask = torch.ones(4, 3, dtype=torch.bool)
        sim, text, video = model(ids, pixels, mask)
        out = glscl_loss(sim, model.head.logit_scale, text.queries, video.queries, LossConfig())
        out["loss"].backward()
        # CLIP's own logit scale is unused (the head holds the one GLSCL trains)
        missing = [n for n, p in model.named_parameters()
                   if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0) and n != "backbone.clip.logit_scale"]
        assert not missing, missing


def test_a_few_steps_on_a_fixed_batch_lower_the_loss():
    model = _model()
    ids = model.backbone.tokenizer(CAPTIONS)
    pixels = torch.randn(4, 3, 3, 64, 64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        sim, text, video = model(ids, pixels, mask)
        loss = glscl_loss(sim, model.head.logit_scale, text.queries, video.queries, LossConfig())["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
