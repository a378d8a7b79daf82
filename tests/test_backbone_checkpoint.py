"""open_clip backbone (tiny config), compact vocabulary, checkpoints written and reloaded locally."""
import pytest
import torch

from glscl.config import ConfigError, ModelConfig, RunConfig
from glscl.engine.checkpoint import load_config_and_vocab, load_weights, save_checkpoint
from glscl.model.backbone import Tokenizer, create_backbone, save_backbone
from glscl.model.factory import create_model

CAPTIONS = ["a red circle moves left", "a blue square appears", "a small green triangle moves up"]


def test_backbone_shapes_and_text_mask():
    b = create_backbone("glscl-tiny", None, context_length=16).eval()
    ids = b.tokenizer(CAPTIONS)
    f = b.encode_text(ids)
    assert f.tokens.shape == (3, 16, b.width) and f.sentence.shape == (3, b.width)
    # mask covers start, words and end-of-text: count = number of BPE tokens + 2
    n_words = [len(b.tokenizer.bpe.encode(c)) for c in CAPTIONS]
    assert f.mask.sum(1).tolist() == [n + 2 for n in n_words]
    frames = torch.randn(2, 3, 3, 64, 64)
    e, p = b.encode_frames(frames, patch_tokens=True)
    assert e.shape == (2, 3, b.width) and p.shape == (2, 3, (64 // 16) ** 2, b.width)
    # per-frame embedding equals open_clip's own image encoder on that frame
    assert torch.allclose(e[1, 2], b.clip.encode_image(frames[1, 2:3])[0], atol=1e-5)


def test_compact_vocabulary_is_order_preserving_and_gives_the_same_features():
    b = create_backbone("glscl-tiny", None, context_length=16).eval()
    full = b.encode_text(b.tokenizer(CAPTIONS))
    vocab = Tokenizer.build_vocab(CAPTIONS, 16)
    b.use_compact_vocab(vocab)
    ids = b.tokenizer(CAPTIONS)
    assert ids.max() == len(vocab) - 1 and b.clip.token_embedding.num_embeddings == len(vocab)
    compact = b.encode_text(ids)
    assert torch.allclose(full.sentence, compact.sentence, atol=1e-6)
    assert torch.equal(full.mask, compact.mask)
    with pytest.raises(ValueError, match="outside the compact vocabulary"):
        b.tokenizer(["a purple hexagon"])


@pytest.mark.parametrize("as_dir", [False, True])
def test_backbone_saved_locally_reloads_through_open_clip(tmp_path, as_dir):
    b = create_backbone("glscl-tiny", None, context_length=16).eval()
    vocab = Tokenizer.build_vocab(CAPTIONS, 16)
    b.use_compact_vocab(vocab)
    with torch.no_grad():
        b.clip.token_embedding.weight.add_(1.0)  # a change that must survive the round trip
    path = save_backbone(b, tmp_path / ("clip" if as_dir else "clip.safetensors"), as_dir=as_dir)
    pretrained = f"local-dir:{path}" if as_dir else str(path)
    b2 = create_backbone("glscl-tiny", pretrained, context_length=16).eval()
    b2.use_compact_vocab(vocab)
    ids = b.tokenizer(CAPTIONS)
    assert torch.equal(b.encode_text(ids).sentence, b2.encode_text(ids).sentence)
    x = torch.randn(1, 2, 3, 64, 64)
    assert torch.equal(b.encode_frames(x), b2.encode_frames(x))


def test_unknown_backbone_and_missing_checkpoint_are_clear():
    with pytest.raises(ConfigError, match="model.backbone = 'ViT-Q-99'"):
        create_backbone("ViT-Q-99", None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_backbone("glscl-tiny", "/nowhere/clip.safetensors")


def test_checkpoint_round_trips_bit_exactly(tmp_path):
    cfg = RunConfig(model=ModelConfig(backbone="glscl-tiny", pretrained=None, max_words=16, num_frames=4,
                                      temporal_layers=1, decoder_layers=1, num_queries=3, compact_vocab=True))
    vocab = Tokenizer.build_vocab(CAPTIONS, 16)
    model = create_model(cfg.model, vocab=vocab)
    save_checkpoint(tmp_path / "ckpt", model, cfg, vocab=vocab)
    cfg2, vocab2 = load_config_and_vocab(tmp_path / "ckpt")
    assert cfg2 == cfg and vocab2 == vocab
    torch.manual_seed(123)  # a different init that loading must overwrite
    model2 = create_model(cfg2.model, vocab=vocab2)
    load_weights(tmp_path / "ckpt", model2)
    sd1, sd2 = model.state_dict(), model2.state_dict()
    assert sd1.keys() == sd2.keys()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)


def test_model_configs_are_read_as_open_clip_reads_them_without_importing_it():
    import subprocess
    import sys

    from glscl.model.backbone import _open_clip, model_config
    open_clip = _open_clip()
    for name in ("glscl-tiny", "glscl-small", "ViT-B-32", "ViT-B-16", "RN50"):
        assert model_config(name) == open_clip.get_model_config(name), name
    assert model_config("no-such-model") is None
    # the memory guard of a run from the feature cache needs the backbone's shape, not open_clip
    code = ("import sys; from glscl.engine.resources import _backbone_shape; "
            "print(_backbone_shape('glscl-tiny'), 'open_clip' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["(64,", "64)", "False"]
