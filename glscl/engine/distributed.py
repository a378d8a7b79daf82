"""Distributed helpers for torchrun (NCCL on GPU, gloo on CPU).

The contrastive loss needs the global batch: every process all-gathers the text and video
embeddings *with gradients* (``gather``), computes the same global loss, and after backward the
parameter gradients are averaged across processes (``average_gradients``). Each process's
gradient through the gather is world_size times its share, so the average is exactly the
gradient of the single-process loss on the global batch.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init() -> tuple[int, int, int]:
    """Start the process group when launched by torchrun; returns (rank, world size, local rank)."""
    if "RANK" not in os.environ or dist.is_initialized():
        return rank(), world_size(), int(os.environ.get("LOCAL_RANK", 0))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    local = int(os.environ.get("LOCAL_RANK", 0))
    if backend == "nccl":
        torch.cuda.set_device(local)
    return dist.get_rank(), dist.get_world_size(), local


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Only the main process (global rank 0) writes files."""
    return rank() == 0


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 as a sum of zero-padded slots (all_reduce), so it runs on any backend.

    Backward: the gradient of every process's copy of the output is summed (all_reduce) and each
    process keeps the slice of its own input.
    """

    @staticmethod
    def forward(ctx, x):
        n, r = world_size(), rank()
        out = x.new_zeros((n,) + tuple(x.shape))
        out[r] = x
        dist.all_reduce(out)
        ctx.rank, ctx.n = r, n
        return out.flatten(0, 1)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad.view(ctx.n, -1, *grad.shape[1:])[ctx.rank]


def gather(x: torch.Tensor | None) -> torch.Tensor | None:
    """Concatenate ``x`` (same shape on every process) along dim 0 in rank order, keeping gradients."""
    if x is None or not is_distributed():
        return x
    if x.requires_grad:
        return _GatherWithGrad.apply(x.contiguous())
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def average_gradients(params) -> None:
    if not is_distributed():
        return
    n = world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= n


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shutdown() -> None:
    """Wait for every process, then tear the process group down: a process that leaves while another
    still writes (rank 0 saving results) can abort the other's gloo connection at exit."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()
