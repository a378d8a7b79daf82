"""Measuring tools of the efficiency bench: FLOP counting, wall-clock timing, peak tensor memory, and
the random workload they run on.

* FLOPs: PyTorch's ``FlopCounterMode``; 1 multiply-add = 2 FLOPs; only matrix products and attention
  kernels are counted (mm, addmm, bmm, SDPA). The MHA fast path is switched off while counting (its
  fused kernels are invisible to the counter) and a formula for CPU flash attention is registered.
* Time: ``time.perf_counter`` under inference mode; median of repeats (``time_call``).
* Peak memory: ``PeakMemory``, the tensor storage allocated by PyTorch ops inside a context, live
  until its last tensor dies: the CPU analogue of ``torch.cuda.max_memory_allocated``.
"""
from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from glscl.lab.bench.heads import GLSCLHead, PairwiseHead

# ----------------------------------------------------------------------------------------------
# measuring tools
# ----------------------------------------------------------------------------------------------


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """CPU flash attention: QK^T and AV, 2 x 2 B H S_q S_k d_h FLOPs (torch registers GPU kernels only)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_CUSTOM_FLOPS = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _CUSTOM_FLOPS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_flops


class PeakMemory(TorchDispatchMode):
    """Peak bytes of tensor storage allocated by PyTorch ops inside the context.

    Each op output with a storage not aliasing one of the op's inputs is a new allocation; it
    stays live while any tensor viewing it is alive (weakref finalizers). Inputs created before
    the context and weights are not counted. ``current`` / ``peak`` are in bytes.
    """

    def __init__(self):
        super().__init__()
        self.live: dict[int, list[int]] = {}
        self.current = 0
        self.peak = 0

    def _release(self, ptr: int) -> None:
        entry = self.live.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            entry = self.live.get(ptr)
            if entry is None:
                if ptr == 0 or ptr in inputs:      # empty, or a view / in-place result of an untracked input
                    continue
                entry = self.live[ptr] = [storage.nbytes(), 0]
                self.current += entry[0]
                self.peak = max(self.peak, self.current)
            entry[1] += 1
            weakref.finalize(t, self._release, ptr)
        return out


@dataclass
class Cost:
    """What one counted run cost: FLOPs (2 per multiply-add), peak tensor bytes, FLOPs per module."""

    flops: int
    peak_bytes: int
    by_module: dict[str, int] = field(default_factory=dict)


def count_cost(fn: Callable, *args, **kwargs) -> tuple[Any, Cost]:
    """Run ``fn(*args, **kwargs)`` under ``FlopCounterMode`` and ``PeakMemory``; return (result, Cost).

    Runs without autograd and with the MHA fast path off (its fused kernels are not counted).
    Modules called by ``fn`` must have ``requires_grad`` off (FlopCounterMode's module tracker
    fails on views of trainable parameters under no_grad); ``heads.make_heads`` does that.
    """
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        mem = PeakMemory()
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as fc, mem:
            result = fn(*args, **kwargs)
        by_module = {k: sum(v.values()) for k, v in fc.get_flop_counts().items()}
        return result, Cost(fc.get_total_flops(), mem.peak, by_module)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def time_call(fn: Callable, min_time: float = 0.5, max_repeats: int = 5, min_repeats: int = 1,
              stat: Callable = statistics.median) -> float:
    """Wall-clock seconds of ``fn()`` under inference mode (``stat`` of the repeats: median by
    default); repeats while shorter than ``min_time`` in total, at least ``min_repeats`` times."""
    times = []
    with torch.inference_mode():
        while True:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            if len(times) >= max_repeats or (sum(times) >= min_time and len(times) >= min_repeats):
                return stat(times)


def matmul_gflops(n: int = 2048, min_time: float = 1.0) -> float:
    """Achieved GFLOP/s of an n x n fp32 matmul (2 n^3 FLOPs), best of repeats: the machine's practical peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best, spent = float("inf"), 0.0
    while spent < min_time:
        t0 = time.perf_counter()
        a @ b
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
    return 2 * n ** 3 / best / 1e9


def state_bytes(state: Any) -> int:
    """Bytes of the tensors held by a per-item state (dict, dataclass or tensor)."""
    if state is None:
        return 0
    if isinstance(state, torch.Tensor):
        return state.untyped_storage().nbytes()
    values = state.values() if isinstance(state, dict) else vars(state).values()
    return sum(state_bytes(v) for v in values)


# ----------------------------------------------------------------------------------------------
# workload: deterministic random features, generated in chunks and grown on demand
# ----------------------------------------------------------------------------------------------

class RandomFeatures:
    """Random backbone features at fixed shapes; item i is the same whatever size is asked for.

    Texts: sentence (d), tokens (L x d), the first 4..L tokens valid. Videos: frames (T x d),
    the first T/2..T frames valid. Padded positions hold random values too (masking is tested).
    """

    CHUNK = 1000

    def __init__(self, width: int, frames: int, words: int, seed: int = 0):
        self.d, self.t, self.l, self.seed = width, frames, words, seed
        self._texts: list[tuple] = []
        self._videos: list[tuple] = []

    def _gen(self, kind: int, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + kind * 100_003 + index)

    def _grow(self, store: list, count: int, make: Callable) -> tuple:
        while len(store) * self.CHUNK < count:
            store.append(make(len(store)))
        parts = list(zip(*store))
        return tuple(torch.cat(p)[:count] if len(p) > 1 else p[0][:count] for p in parts)

    def _text_chunk(self, i: int) -> tuple:
        g, c = self._gen(1, i), self.CHUNK
        lengths = torch.randint(min(4, self.l), self.l + 1, (c, 1), generator=g)
        return (torch.randn(c, self.d, generator=g), torch.randn(c, self.l, self.d, generator=g),
                torch.arange(self.l)[None] < lengths)

    def _video_chunk(self, i: int) -> tuple:
        g, c = self._gen(2, i), self.CHUNK
        lengths = torch.randint(max(1, self.t // 2), self.t + 1, (c, 1), generator=g)
        return torch.randn(c, self.t, self.d, generator=g), torch.arange(self.t)[None] < lengths

    def texts(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sentence n x d, tokens n x L x d, token mask n x L)."""
        return self._grow(self._texts, n, self._text_chunk)

    def videos(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(frames m x T x d, frame mask m x T)."""
        return self._grow(self._videos, m, self._video_chunk)


# ----------------------------------------------------------------------------------------------
# one head on one workload: FLOPs per stage, time per stage, peak memory
# ----------------------------------------------------------------------------------------------

def stages(head: PairwiseHead, text_in: tuple, video_in: tuple):
    """The three stages of one evaluation: per-text states, per-video states, the N x M pairwise scores."""
    n, m = text_in[0].shape[0], video_in[0].shape[0]
    return (lambda: head.text_states(*text_in),
            lambda: head.video_states(*video_in),
            lambda text, video: head.pairwise(text, video, n, m))


def count_stages(head: PairwiseHead, text_in: tuple, video_in: tuple) -> dict[str, int]:
    """FLOPs of each stage of one evaluation (text, video, pair; and GLSCL's temporal transformer,
    part of its video stage), counted by FlopCounterMode."""
    enc_t, enc_v, pair = stages(head, text_in, video_in)
    text, cost_t = count_cost(enc_t)
    video, cost_v = count_cost(enc_v)
    _, cost_p = count_cost(pair, text, video)
    flops = {"text": cost_t.flops, "video": cost_v.flops, "pair": cost_p.flops}
    if isinstance(head, GLSCLHead) and head.model.temporal is not None:
        # FlopCounterMode names a module called outside any other module by its class name
        flops["temporal"] = cost_v.by_module[type(head.model.temporal).__name__]
    return flops


def count_flops_shapes_only(fn: Callable, *tensors: torch.Tensor) -> int:
    """FlopCounterMode on fake copies of ``tensors`` (FakeTensorMode: shapes propagate, no arithmetic),
    so a full-size evaluation is counted in seconds. Same code path and conventions as ``count_cost``."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            fakes = [mode.from_tensor(t) for t in tensors]
            with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as fc:
                fn(*fakes)
        return fc.get_total_flops()
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def measure_cell(head: PairwiseHead, text_in: tuple, video_in: tuple, min_time: float = 0.5) -> dict:
    """Time one evaluation of ``head`` (per stage), then track its peak memory in a second run."""
    enc_t, enc_v, pair = stages(head, text_in, video_in)
    n, m = text_in[0].shape[0], video_in[0].shape[0]
    times = {"text": [], "video": [], "pair": []}

    def once():
        t0 = time.perf_counter()
        text = enc_t()
        t1 = time.perf_counter()
        video = enc_v()
        t2 = time.perf_counter()
        pair(text, video)
        t3 = time.perf_counter()
        for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
            times[k].append(dt)

    cell = {"time": time_call(once, min_time), "measured": True}
    cell["time_stage"] = {k: statistics.median(v) for k, v in times.items()}
    if isinstance(head, GLSCLHead) and head.model.temporal is not None:
        frames, mask = video_in
        temporal, chunk = head.model.temporal, head.chunk
        cell["time_temporal"] = time_call(
            lambda: [temporal(frames[i:i + chunk], mask[i:i + chunk]) for i in range(0, m, chunk)], min_time)

    with torch.inference_mode(), PeakMemory() as mem:
        text, video = enc_t(), enc_v()
        out = pair(text, video)
    cell.update(peak_bytes=mem.peak, text_state_bytes=state_bytes(text) / n, video_state_bytes=state_bytes(video) / m,
                output_bytes_per_pair=out.element_size())
    return cell

