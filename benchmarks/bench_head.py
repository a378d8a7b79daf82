"""One training step of the GLSCL head alone at the paper's shapes, and its share of matmul peak.

    python benchmarks/bench_head.py [--batch 32] [--repeats 10]

Prints the forward+backward time of the head (temporal transformer, global and local
interaction, contrastive + ICL + IDL losses; CLIP excluded) on features of the paper's shapes
(d=512, T=12, L=32, K=8), its FLOPs (PyTorch's FlopCounterMode) and achieved GFLOP/s as a
share of a large fp32 matmul measured in the same run.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from glscl.config import LossConfig, ModelConfig
from glscl.lab.bench.measure import matmul_gflops
from glscl.losses import glscl_loss
from glscl.model.glscl import GLSCL


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    torch.manual_seed(0)
    d, t, words, b = 512, 12, 32, args.batch
    head = GLSCL(ModelConfig(), width=d)
    loss_cfg = LossConfig()
    frames, fmask = torch.randn(b, t, d), torch.ones(b, t, dtype=torch.bool)
    tokens, tmask, sent = torch.randn(b, words, d), torch.ones(b, words, dtype=torch.bool), torch.randn(b, d)

    def step():
        sim, text, video = head(sent, tokens, tmask, frames, fmask)
        loss = glscl_loss(sim, head.logit_scale, text.queries, video.queries, loss_cfg)["loss"]
        head.zero_grad(set_to_none=True)
        loss.backward()

    with FlopCounterMode(display=False) as fc:
        step()
    flops = fc.get_total_flops()
    peak = matmul_gflops()
    step()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    achieved = flops / med / 1e9
    print(f"GLSCL head, one training step (fwd+bwd), batch {b}, d={d}, T={t}, L={words}, K=8, threads={torch.get_num_threads()}")
    print(f"  step time (median of {args.repeats}): {med * 1e3:.1f} ms")
    print(f"  FLOPs per step: {flops / 1e9:.2f} GFLOP")
    print(f"  achieved: {achieved:.1f} GFLOP/s; large fp32 matmul in this run: {peak:.1f} GFLOP/s; share: {100 * achieved / peak:.1f} %")


if __name__ == "__main__":
    main()
