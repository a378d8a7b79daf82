"""One training step of the GLSCL head on a fixed global batch; run alone or under torchrun.

    python tests/ddp_step.py OUT            (single process, global batch)
    torchrun --nproc_per_node 2 tests/ddp_step.py OUT

Writes OUT/loss.txt and the averaged gradients OUT/grads.safetensors from rank 0.
"""
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from glscl.config import ModelConfig, RunConfig, TrainConfig
from glscl.data.dataset import CachedBatch
from glscl.engine import distributed as dist
from glscl.engine.train import Batches, Trainer
from glscl.model.glscl import GLSCL

B, T, L, D = 8, 4, 6, 16


def main(out: Path) -> None:
    dist.init()
    g = torch.Generator().manual_seed(0)
    batch = {"sentence": torch.randn(B, D, generator=g), "tokens": torch.randn(B, L, D, generator=g),
             "token_mask": torch.ones(B, L, dtype=torch.bool), "frames": torch.randn(B, T, D, generator=g),
             "frame_mask": torch.ones(B, T, dtype=torch.bool), "video": torch.arange(B), "caption": torch.arange(B)}
    batch["token_mask"][::2, 4:] = False
    batch["frame_mask"][1::3, 3:] = False
    cfg = RunConfig(model=ModelConfig(num_frames=T, temporal_layers=1, temporal_heads=2, num_queries=3, decoder_layers=1,
                                      decoder_heads=2, dropout=0.0),
                    train=TrainConfig(batch_size=B, epochs=1, warmup=0.0, lr=1e-2))
    torch.manual_seed(0)
    head = GLSCL(cfg.model, D)
    n, r = dist.world_size(), dist.rank()
    local = CachedBatch(**{k: v[r * B // n:(r + 1) * B // n] for k, v in batch.items()})
    trainer = Trainer(cfg, head, Batches(B, lambda o, e: iter(())), out, torch.device("cpu"), progress=False)
    losses = trainer.train_step(local)
    if dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
        (out / "loss.txt").write_text(repr(losses["loss"]))
        save_file({n: p.grad.contiguous() for n, p in head.named_parameters() if p.grad is not None},
                  str(out / "grads.safetensors"))
    dist.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
