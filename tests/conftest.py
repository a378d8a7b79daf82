import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A tiny generated world (real mp4 files), shared by the engine tests."""
    from glscl.data.world import WorldConfig, generate_world

    root = tmp_path_factory.mktemp("world")
    generate_world(root, WorldConfig(n_train=32, n_val=8, n_test=8, seed=3), progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_clip(tiny_world):
    """A tiny open_clip checkpoint written by the project's own pre-training (a few steps)."""
    from glscl.engine.pretrain import PretrainConfig, pretrain_clip

    return pretrain_clip(tiny_world, tiny_world / "clip.safetensors", PretrainConfig(steps=3, batch_size=32), progress=False)


def tiny_run_config(world, clip, out_dir, cache_dir=None, **train):
    """The embedded preset cut to a test's size (seconds on a CPU)."""
    from glscl.config import build_config

    t = dict(epochs=2, batch_size=8, lr=1e-3, backbone_lr_coef=0.1, weight_decay=0.05, warmup=0.1, seed=1, eval_every=1)
    t.update(train)
    return build_config("embedded", {
        "name": "tiny", "out_dir": str(out_dir), "device": "cpu",
        "model.pretrained": str(clip), "model.num_queries": 4, "model.decoder_layers": 1,
        "model.freeze_backbone": cache_dir is not None,
        "data.root": str(world), "data.cache_dir": str(cache_dir) if cache_dir else None, "data.num_workers": 0,
        "data.augment": True, **{f"train.{k}": v for k, v in t.items()}})
