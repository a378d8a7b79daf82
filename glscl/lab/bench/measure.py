"""Efficiency bench: the similarity stage of GLSCL and the heads it is compared with, side by side.

    python -m glscl.lab.bench.measure [--out runs/bench] [--quick] [--direct-count]     (or: glscl bench ...)

Workload: N = 1,000 texts against galleries of M = 1k, 10k and 100k videos (MSR-VTT 1k-A is
1k x 1k), random features at the paper's shapes (d = 512, T = 12 frames, L = 32 words; some
frames and words padded). CLIP is excluded: the stage starts from backbone features. Heads:
``glscl.lab.bench.heads`` (mean pooling, X-Pool-style, X-CLIP-style, ALPRO-style cross-encoder, GLSCL
encoded once, GLSCL re-encoded per 16 x 16 block as in the released code).

What is measured, and how
-------------------------
* FLOPs: PyTorch's ``FlopCounterMode``; 1 multiply-add = 2 FLOPs; only matrix products and
  attention kernels are counted (mm, addmm, bmm, SDPA), not softmax, norms or elementwise ops.
  The MHA fast path is switched off while counting (its fused kernels are invisible to the
  counter) and a formula for CPU flash attention is registered. Papers' "FLOPs" are usually
  profiler multiply-adds (half of these numbers): compare ratios, they do not depend on it.
  Each stage of each head costs exactly a N + b M + c N M (per text, per video, per pair), so
  the counter is run per stage on three small workloads, (a, b, c) solved, and checked against
  a direct count on a fourth; every cell's FLOPs then follow exactly. ``--direct-count`` also
  counts the 1k-A runs themselves (FlopCounterMode over FakeTensorMode: shapes, no arithmetic).
  GLSCL's per-block FLOPs are the sum over its tiles of a counted tile of the same shape.
* Time: wall clock (``time.perf_counter``), inference mode, PyTorch's fast paths on, this
  process's torch threads; median of repeats while a run is shorter than ``--min-time``.
* Peak memory: a second run with a tracker (``PeakMemory``) of the tensor storage allocated by
  PyTorch ops during the stage, live until its last tensor dies: the CPU analogue of
  ``torch.cuda.max_memory_allocated``. Includes per-item states, block temporaries and the
  N x M output; excludes the input features (the same for every head), the weights,
  allocator caching and kernels' internal scratch buffers.
* Achieved GFLOP/s, also as a share of a large fp32 matmul timed in the same run (best of a
  run at the start and one at the end). Other processes on the machine slow everything down:
  the record keeps the load average.
* Cells whose predicted cost exceeds ``--cell-limit`` are extrapolated (marked *): FLOPs exact
  from the model; time in proportion to FLOPs from the largest measured run of that head
  (linear in M, at that run's achieved FLOP rate); memory as the measured peak plus the extra
  output and per-item states. The cross-encoder and GLSCL's per-block evaluation never run at
  full size: they are timed on a sub-workload (``--cross-pairs``, ``--per-block-blocks``) and
  extrapolated the same way. ALPRO's own size (6 x BERT-base layers) is analytic
  (``heads.alpro_pair_flops``), its time at the bench cross-encoder's FLOP rate.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from glscl.lab.bench.heads import (ALPRO_VTM, HEAD_TITLES, GLSCLHead, PairwiseHead, alpro_pair_flops, glscl_per_block_similarity,
                    make_heads)

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
# cost model and measured cells
# ----------------------------------------------------------------------------------------------

@dataclass
class CostModel:
    """F(N, M) = a N + b M + c N M (per text, per video, per pair), fitted to exact counts."""

    a: float
    b: float
    c: float

    def __call__(self, n: int, m: int) -> int:
        return round(self.a * n + self.b * m + self.c * n * m)     # FLOP counts are integers

    @classmethod
    def fit(cls, points: list[tuple[int, int, float]]) -> "CostModel":
        x = torch.tensor([[n, m, n * m] for n, m, _ in points], dtype=torch.float64)
        y = torch.tensor([f for _, _, f in points], dtype=torch.float64)
        a, b, c = torch.linalg.lstsq(x, y[:, None]).solution[:, 0].tolist()
        return cls(a, b, c)


def _stages(head: PairwiseHead, text_in: tuple, video_in: tuple):
    n, m = text_in[0].shape[0], video_in[0].shape[0]
    return (lambda: head.text_states(*text_in),
            lambda: head.video_states(*video_in),
            lambda text, video: head.pairwise(text, video, n, m))


def count_stages(head: PairwiseHead, text_in: tuple, video_in: tuple) -> dict[str, int]:
    """FLOPs of each stage of one evaluation (text, video, pair; and GLSCL's temporal transformer,
    part of its video stage), counted by FlopCounterMode."""
    enc_t, enc_v, pair = _stages(head, text_in, video_in)
    text, cost_t = count_cost(enc_t)
    video, cost_v = count_cost(enc_v)
    _, cost_p = count_cost(pair, text, video)
    flops = {"text": cost_t.flops, "video": cost_v.flops, "pair": cost_p.flops}
    if isinstance(head, GLSCLHead) and head.model.temporal is not None:
        # FlopCounterMode names a module called outside any other module by its class name
        flops["temporal"] = cost_v.by_module[type(head.model.temporal).__name__]
    return flops


@dataclass
class FlopModel:
    """Exact FLOPs of a head for any N x M: one ``CostModel`` per stage, from counts on small workloads.

    ``check``: relative difference between the model and a direct count of a whole evaluation
    on a fourth workload (0 up to float rounding when the cost has the form a N + b M + c N M).
    """

    stages: dict[str, CostModel]
    check: float = 0.0

    def __call__(self, n: int, m: int) -> int:
        return sum(self.stages[k](n, m) for k in ("text", "video", "pair"))

    def stage(self, name: str, n: int, m: int) -> int:
        return self.stages[name](n, m) if name in self.stages else 0


def fit_flop_model(head: PairwiseHead, feats: RandomFeatures, n0: int = 8, m0: int = 8) -> FlopModel:
    """Count every stage on (n0, m0), (2 n0, m0), (n0, 2 m0), fit a N + b M + c N M per stage, and
    check the total against a direct count on (3 n0 + 1, 2 m0 + 3)."""
    points = [(n, m, count_stages(head, feats.texts(n), feats.videos(m))) for n, m in ((n0, m0), (2 * n0, m0), (n0, 2 * m0))]
    model = FlopModel({k: CostModel.fit([(n, m, c[k]) for n, m, c in points]) for k in points[0][2]})
    n, m = 3 * n0 + 1, 2 * m0 + 3
    _, cost = count_cost(head, *feats.texts(n), *feats.videos(m))
    model.check = abs(model(n, m) - cost.flops) / cost.flops
    return model


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
    enc_t, enc_v, pair = _stages(head, text_in, video_in)
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


def extrapolate(ref: dict, ref_nm: tuple[int, int], nm: tuple[int, int], flops: float) -> dict:
    """A cell at (N, M) from a measured one: exact FLOPs given; time in proportion to FLOPs (the
    achieved FLOP rate of the measured run); memory = measured peak + extra output + extra
    per-item states (the block working set does not grow)."""
    (n0, m0), (n, m) = ref_nm, nm
    extra = (ref["output_bytes_per_pair"] * (n * m - n0 * m0) + ref["text_state_bytes"] * (n - n0)
             + ref["video_state_bytes"] * (m - m0))
    return {"flops": flops, "time": ref["time"] * flops / ref["flops"], "peak_bytes": ref["peak_bytes"] + extra,
            "measured": False}


# ----------------------------------------------------------------------------------------------
# the bench
# ----------------------------------------------------------------------------------------------

# --quick: tiny shapes, one thread (tiny ops on a busy machine are much slower with two)
# (the second gallery size is always extrapolated: cell limit 0)
QUICK = dict(texts=32, galleries="16,32", probe=0, width=64, cell_limit=0.0, cross_layers=1, cross_width=32,
             cross_pairs=64, per_block_blocks=4, matmul_size=512, threads=1, min_time=0.02)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``glscl bench`` / ``python -m glscl.lab.bench.measure``."""
    a = parser.add_argument
    a("--out", default="runs/bench", help="output folder for bench.json and bench.png (default: %(default)s)")
    a("--texts", type=int, default=1000, help="N: texts (queries) (default: %(default)s, MSR-VTT 1k-A)")
    a("--galleries", default="1000,10000,100000", help="M: gallery sizes, comma-separated (default: %(default)s)")
    a("--probe", type=int, default=0, help="an extra small gallery size to measure (0 = none) (default: %(default)s)")
    a("--cell-limit", type=float, default=20.0,
      help="measure a cell only if its predicted cost (counted + timed pass) is below this many seconds; "
           "otherwise extrapolate it (default: %(default)s)")
    a("--width", type=int, default=512, help="d: feature width (default: %(default)s)")
    a("--frames", type=int, default=12, help="T: frames per video (default: %(default)s)")
    a("--words", type=int, default=32, help="L: tokens per text (default: %(default)s)")
    a("--queries", type=int, default=8, help="K: GLSCL queries (default: %(default)s)")
    a("--decoder-layers", type=int, default=3, help="GLSCL decoder layers (default: %(default)s)")
    a("--temporal-layers", type=int, default=4, help="GLSCL temporal transformer layers, 0 = none (default: %(default)s)")
    a("--cross-layers", type=int, default=2, help="cross-encoder layers at bench size (ALPRO: 6) (default: %(default)s)")
    a("--cross-width", type=int, default=256, help="cross-encoder width at bench size (ALPRO: 768) (default: %(default)s)")
    a("--cross-pairs", type=int, default=1024, help="pairs the cross-encoder is timed on (default: %(default)s)")
    a("--per-block-blocks", type=int, default=8,
      help="16 x 16 blocks GLSCL's per-block evaluation is timed on (default: %(default)s)")
    a("--matmul-size", type=int, default=2048, help="n of the n x n reference matmul (default: %(default)s)")
    a("--min-time", type=float, default=0.5, help="repeat a timed run (up to 5 times) until this many seconds "
                                                 "have passed; the median is reported (default: %(default)s)")
    a("--threads", type=int, default=0, help="torch threads (0 = leave as is) (default: %(default)s)")
    a("--seed", type=int, default=0, help="seed of weights and features (default: %(default)s)")
    a("--direct-count", action="store_true",
      help="also count the FLOPs of each dual-encoder head's 1k-A run directly (FlopCounterMode over "
           "FakeTensorMode: shapes only; adds about half a minute at the default sizes)")
    a("--no-figure", action="store_true", help="skip the matplotlib figure")
    a("--quick", action="store_true", help="tiny shapes and sizes (seconds; for tests)")
    return parser


def default_args(**overrides) -> argparse.Namespace:
    """The bench's arguments with defaults (for notebooks): ``run(default_args(quick=True))``."""
    args = add_arguments(argparse.ArgumentParser()).parse_args([])
    for k, v in overrides.items():
        setattr(args, k, v)
    return args


def _settings(args: argparse.Namespace) -> dict:
    s = {k: getattr(args, k) for k in ("out", "texts", "galleries", "probe", "cell_limit", "width", "frames", "words",
                                       "queries", "decoder_layers", "temporal_layers", "cross_layers", "cross_width",
                                       "cross_pairs", "per_block_blocks", "matmul_size", "min_time", "threads", "seed",
                                       "direct_count", "no_figure", "quick")}
    if s["quick"]:
        s.update(QUICK)
    if isinstance(s["galleries"], str):
        s["galleries"] = [int(x) for x in s["galleries"].split(",") if x.strip()]
    s["galleries"] = sorted(set(int(x) for x in s["galleries"]))
    return s


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict:
    """Run the bench; print the tables; write <out>/bench.json and <out>/bench.png; return the record."""
    s = _settings(args)
    threads = torch.get_num_threads()
    if s["threads"]:
        torch.set_num_threads(s["threads"])
    try:
        return _run(s)
    finally:
        torch.set_num_threads(threads)


def _run(s: dict) -> dict:
    started = time.perf_counter()
    n_texts, galleries = s["texts"], s["galleries"]
    sizes = sorted(set(galleries + ([s["probe"]] if s["probe"] else [])))
    feats = RandomFeatures(s["width"], s["frames"], s["words"], s["seed"])
    heads = make_heads(width=s["width"], num_frames=s["frames"], num_queries=s["queries"],
                       decoder_layers=s["decoder_layers"], temporal_layers=s["temporal_layers"],
                       cross_layers=s["cross_layers"], cross_width=s["cross_width"], seed=s["seed"])
    peak_start = matmul_gflops(s["matmul_size"], 2 * s["min_time"])
    _log(f"[bench] fp32 matmul {s['matmul_size']}^2: {peak_start:.1f} GFLOP/s, threads {torch.get_num_threads()}")
    _log("[bench] counting FLOPs on small workloads (FlopCounterMode)")
    fit = 4 if s["quick"] else 8
    models = {name: fit_flop_model(h, feats, fit, fit) for name, h in heads.items()}
    record: dict[str, Any] = {"settings": s, "heads": {},
                              "flop_model_check": {name: mdl.check for name, mdl in models.items()}}

    def with_flops(cell: dict, name: str, n: int, m: int) -> dict:
        model = models[name]
        cell["flops"] = model(n, m)
        cell["flops_stage"] = {k: model.stage(k, n, m) for k in model.stages}
        return cell

    # -- dual-encoder heads: measured where the cell limit allows, extrapolated elsewhere --------
    # (GLSCL last, so that its per-block evaluation is timed right after it, in the same conditions)
    for name in ("mean", "xclip", "xpool", "glscl"):
        head = heads[name]
        head(*feats.texts(4), *feats.videos(4))                            # warm-up
        cells, last = {}, None
        for m in sizes:
            flops = models[name](n_texts, m)
            # the 1k-A cell (and a smaller probe) is always measured; larger ones if the predicted
            # cost of the timed run plus the memory run stays under the cell limit
            if last is not None and m > galleries[0]:
                ref = cells[last]
                if 2 * ref["time"] * flops / ref["flops"] > s["cell_limit"]:
                    cells[m] = with_flops(extrapolate(ref, (n_texts, last), (n_texts, m), flops), name, n_texts, m)
                    continue
            _log(f"[bench] {name}: measuring {n_texts} x {m}")
            cells[m] = with_flops(measure_cell(head, feats.texts(n_texts), feats.videos(m), s["min_time"]),
                                  name, n_texts, m)
            last = m
        if s["direct_count"]:
            m = galleries[0]
            _log(f"[bench] {name}: direct count of {n_texts} x {m} (shapes only)")
            cells[m]["flops_direct"] = count_flops_shapes_only(head, *feats.texts(n_texts), *feats.videos(m))
        record["heads"][name] = {"title": HEAD_TITLES[name], "cells": cells,
                                 "flop_model": {k: vars(v) for k, v in models[name].stages.items()}}
        if name == "glscl":
            # -- GLSCL per block (released code): timed on a few blocks ---------------------------
            record["heads"]["glscl_per_block"] = _bench_per_block(heads["glscl"], feats, s, sizes)

    # -- cross-encoder at bench size: timed on a sub-workload ------------------------------------
    head = heads["cross"]
    n_sub = max(1, min(n_texts, int(math.sqrt(s["cross_pairs"] / 4))))
    m_sub = max(1, min(galleries[0], s["cross_pairs"] // n_sub))
    head(*feats.texts(2), *feats.videos(2))
    _log(f"[bench] cross: measuring sub-workload {n_sub} x {m_sub}")
    sub = with_flops(measure_cell(head, feats.texts(n_sub), feats.videos(m_sub), s["min_time"]), "cross", n_sub, m_sub)
    cells = {m: extrapolate(sub, (n_sub, m_sub), (n_texts, m), models["cross"](n_texts, m)) for m in sizes}
    record["heads"]["cross"] = {"title": HEAD_TITLES["cross"] + f" ({s['cross_layers']}L, w{s['cross_width']})",
                                "cells": cells, "sub_workload": [n_sub, m_sub, sub],
                                "flop_model": {k: vars(v) for k, v in models["cross"].stages.items()}}

    # -- ALPRO's VTM at ALPRO's size: analytic FLOPs, time at the bench cross-encoder's rate -----
    pair_flops = alpro_pair_flops()
    rate = sub["flops"] / sub["time"]
    record["heads"]["alpro"] = {
        "title": "ALPRO VTM at ALPRO's size (6L, w768)",
        "cells": {m: {"flops": pair_flops * n_texts * m, "time": pair_flops * n_texts * m / rate, "peak_bytes": None,
                      "measured": False, "analytic": True} for m in sizes},
        "pair_flops": pair_flops, "config": ALPRO_VTM}

    # keep a fixed row order in tables and the figure
    order = ("mean", "xpool", "xclip", "cross", "alpro", "glscl", "glscl_per_block")
    record["heads"] = {k: record["heads"][k] for k in order}
    peak_end = matmul_gflops(s["matmul_size"], 2 * s["min_time"])
    peak = max(peak_start, peak_end)
    record["matmul_gflops"] = {"start": peak_start, "end": peak_end, "used": peak}
    record["summary"] = _summarise(record, n_texts, galleries[0], peak)
    record["machine"] = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                         "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                         "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    record["wall_s"] = time.perf_counter() - started
    text = format_report(record)
    print(text)
    record["report"] = text

    out = Path(s["out"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(_jsonable(record), indent=1))
    if not s["no_figure"]:
        plot_growth(record, out / "bench.png")
    _log(f"[bench] wrote {out / 'bench.json'}" + ("" if s["no_figure"] else f" and {out / 'bench.png'}")
         + f" in {record['wall_s']:.0f} s")
    return record


def _per_block_flops(head: GLSCLHead, feats: RandomFeatures, n: int, m: int, block: int, cache: dict) -> int:
    """Exact FLOPs of the per-block evaluation of n x m: the sum over its tiles of a counted tile
    of the same shape (at most four shapes: full and remainder blocks on each side)."""
    def sizes(k):
        full, rest = divmod(k, block)
        return {block: full, **({rest: 1} if rest else {})}

    total = 0
    for bn, cn in sizes(n).items():
        for bm, cm in sizes(m).items():
            if (bn, bm) not in cache:
                _, cost = count_cost(glscl_per_block_similarity, head.model, feats.texts(bn), feats.videos(bm), block)
                cache[bn, bm] = cost.flops
            total += cn * cm * cache[bn, bm]
    return total


def _bench_per_block(head: GLSCLHead, feats: RandomFeatures, s: dict, sizes: list[int]) -> dict:
    """The released code's evaluation: timed on a few full 16 x 16 blocks (best of 3, extrapolated
    in proportion to FLOPs), FLOPs exact per tile, result compared with encode-once."""
    block, n_texts = 16, s["texts"]
    tb = 2 if s["per_block_blocks"] >= 4 else 1
    vb = max(1, s["per_block_blocks"] // tb)
    n_sub, m_sub = min(n_texts, block * tb), min(s["galleries"][0], block * vb)
    text_in, video_in = feats.texts(n_sub), feats.videos(m_sub)
    _log(f"[bench] glscl per-block: timing {n_sub} x {m_sub} ({tb} x {vb} blocks of 16 x 16)")
    run_blocks = lambda: glscl_per_block_similarity(head.model, text_in, video_in, block)  # noqa: E731
    # best of three: the most favourable time for the per-block evaluation (a conservative ratio)
    t = time_call(run_blocks, s["min_time"], max_repeats=3, min_repeats=3, stat=min)
    with torch.inference_mode(), PeakMemory() as mem:
        per_block = run_blocks()
    with torch.inference_mode():
        once = head(*text_in, *video_in)
    cache: dict = {}
    sub = {"flops": _per_block_flops(head, feats, n_sub, m_sub, block, cache), "time": t, "peak_bytes": mem.peak,
           "output_bytes_per_pair": per_block.element_size(), "text_state_bytes": 0, "video_state_bytes": 0,
           "measured": True}
    cells = {m: extrapolate(sub, (n_sub, m_sub), (n_texts, m), _per_block_flops(head, feats, n_texts, m, block, cache))
             for m in sizes}
    return {"title": "GLSCL per 16x16 block (released code)", "cells": cells, "sub_workload": [n_sub, m_sub, sub],
            "same_result_as_encode_once": bool(torch.allclose(per_block, once, atol=1e-4, rtol=1e-4)),
            "max_abs_difference": float((per_block - once).abs().max())}


def _summarise(record: dict, n: int, m: int, peak: float) -> dict:
    """The 1k-A (n x m) rows, ratios to GLSCL and the goals."""
    heads = record["heads"]
    g = heads["glscl"]["cells"][m]
    rows = {}
    for name, h in heads.items():
        c = h["cells"][m]
        rows[name] = {"title": h["title"], "flops": c["flops"], "flops_per_pair": c["flops"] / (n * m),
                      "time": c["time"], "gflops_per_s": c["flops"] / c["time"] / 1e9,
                      "share_of_matmul": c["flops"] / c["time"] / 1e9 / peak, "peak_bytes": c["peak_bytes"],
                      "measured": c["measured"], "flops_vs_glscl": c["flops"] / g["flops"],
                      "time_vs_glscl": c["time"] / g["time"],
                      "flops_vs_glscl_pairwise": c["flops"] / g["flops_stage"]["pair"]}
    # GLSCL's stages (measured in the same run)
    ft, tt = g["flops_stage"].get("temporal", 0.0), g.get("time_temporal", 0.0)
    stages = {"temporal transformer (per video)": (ft, tt),
              "local decoder (per text, per video)": (g["flops_stage"]["text"] + g["flops_stage"]["video"] - ft,
                                                      g["time_stage"]["text"] + g["time_stage"]["video"] - tt),
              "pairwise S_g + lambda S_l (per pair)": (g["flops_stage"]["pair"], g["time_stage"]["pair"])}
    per_block = heads["glscl_per_block"]["cells"][m]
    no_temporal = g["flops"] - ft
    goals = {
        "flops_vs_xclip_without_temporal": rows["xclip"]["flops"] / no_temporal,
        "flops_vs_xpool_without_temporal": rows["xpool"]["flops"] / no_temporal,
        "flops_200x_vs_xclip": rows["xclip"]["flops_vs_glscl"] >= 200,
        "flops_200x_vs_xpool": rows["xpool"]["flops_vs_glscl"] >= 200,
        "flops_vs_xclip": rows["xclip"]["flops_vs_glscl"], "flops_vs_xpool": rows["xpool"]["flops_vs_glscl"],
        "flops_vs_xclip_pairwise_only": rows["xclip"]["flops_vs_glscl_pairwise"],
        "flops_vs_xpool_pairwise_only": rows["xpool"]["flops_vs_glscl_pairwise"],
        "per_block_time_ratio": per_block["time"] / g["time"],
        "per_block_flops_ratio": per_block["flops"] / g["flops"],
        "encode_once_50x_faster": per_block["time"] / g["time"] >= 50,
    }
    return {"n": n, "m": m, "matmul_gflops": peak, "rows": rows,
            "glscl_stages": {k: {"flops": f, "time": t} for k, (f, t) in stages.items()}, "goals": goals}


# ----------------------------------------------------------------------------------------------
# report, figure, JSON
# ----------------------------------------------------------------------------------------------

def _fmt_flops(f: float) -> str:
    g = f / 1e9
    return f"{g:,.0f}" if g >= 100 else (f"{g:.1f}" if g >= 1 else f"{g:.3f}")


def _fmt_time(t: float) -> str:
    if t >= 86400:
        return f"{t / 86400:.1f} d"
    if t >= 3600:
        return f"{t / 3600:.1f} h"
    return f"{t:.1f} s" if t >= 1 else f"{t * 1e3:.0f} ms"


def _fmt_bytes(b) -> str:
    return "-" if b is None else (f"{b / 2**30:.1f} GiB" if b >= 2**30 else f"{b / 2**20:.0f} MiB")


def format_report(record: dict) -> str:
    sm, heads, s = record["summary"], record["heads"], record["settings"]
    n, m = sm["n"], sm["m"]
    lines = [f"Similarity stage, {n} texts x {m} videos (d={s['width']}, T={s['frames']}, L={s['words']}, "
             f"K={s['queries']}, decoder {s['decoder_layers']} layers, temporal {s['temporal_layers']} layers), "
             f"CPU threads {record['machine']['threads']}",
             f"Reference fp32 matmul: {sm['matmul_gflops']:.1f} GFLOP/s (start {record['matmul_gflops']['start']:.1f}, "
             f"end {record['matmul_gflops']['end']:.1f})",
             "FLOPs: FlopCounterMode, 2 per multiply-add, matrix products and attention only. * = extrapolated.",
             "FLOPs/GLSCL, time/GLSCL: the head's cost divided by GLSCL's (encode once, whole head): how many times "
             "cheaper GLSCL is;",
             "FLOPs/GLSCL-pairwise: divided by GLSCL's pairwise stage alone (S_g + lambda S_l, without its "
             "per-item temporal transformer and decoder).", ""]
    hdr = (f"{'head':44s} {'GFLOP':>11s} {'FLOP/pair':>10s} {'time':>9s} {'GFLOP/s':>8s} {'%matmul':>7s} "
           f"{'peak mem':>9s} {'FLOPs/GLSCL':>11s} {'time/GLSCL':>10s} {'FLOPs/GLSCL-pairwise':>20s}")
    lines += [hdr, "-" * len(hdr)]
    for name, r in sm["rows"].items():
        mark = "" if r["measured"] else "*"
        lines.append(f"{(r['title'] + mark)[:44]:44s} {_fmt_flops(r['flops']):>11s} {r['flops_per_pair']:>10.3g} "
                     f"{_fmt_time(r['time']):>9s} {r['gflops_per_s']:>8.1f} {100 * r['share_of_matmul']:>6.0f}% "
                     f"{_fmt_bytes(r['peak_bytes']):>9s} {r['flops_vs_glscl']:>10.3g}x {r['time_vs_glscl']:>9.3g}x "
                     f"{r['flops_vs_glscl_pairwise']:>19.3g}x")
        if name == "glscl":
            for stage, v in sm["glscl_stages"].items():
                rate = v["flops"] / v["time"] / 1e9 if v["time"] > 0 else float("nan")
                lines.append(f"{'   ' + stage:44s} {_fmt_flops(v['flops']):>11s} {v['flops'] / (n * m):>10.3g} "
                             f"{_fmt_time(v['time']):>9s} {rate:>8.1f} {100 * rate / sm['matmul_gflops']:>6.0f}%")

    lines += ["", f"Growth with gallery size ({n} texts; GFLOP | time | peak memory; * = extrapolated)"]
    sizes = sorted(next(iter(heads.values()))["cells"])
    hdr = f"{'head':44s} " + " ".join(f"{'M=' + format(x, ','):>12s}" for x in sizes)
    lines += [hdr, "-" * len(hdr)]
    for name, h in heads.items():
        for i, (what, fmt) in enumerate((("flops", _fmt_flops), ("time", _fmt_time), ("peak_bytes", _fmt_bytes))):
            label = h["title"][:44] if i == 0 else f"  {what}"
            cells = [fmt(h["cells"][x][what]) + ("" if h["cells"][x]["measured"] else "*") for x in sizes]
            lines.append(f"{label:44s} " + " ".join(f"{c:>12s}" for c in cells))

    gl = sm["goals"]
    pb = heads["glscl_per_block"]
    lines += ["", "Goals",
              f"  GLSCL >= 200x cheaper in FLOPs than X-CLIP-style: {'MET' if gl['flops_200x_vs_xclip'] else 'NOT MET'} "
              f"({gl['flops_vs_xclip']:.2f}x whole head, {gl['flops_vs_xclip_without_temporal']:.2f}x without the "
              f"temporal transformer, {gl['flops_vs_xclip_pairwise_only']:.1f}x pairwise stage alone)",
              f"  GLSCL >= 200x cheaper in FLOPs than X-Pool-style: {'MET' if gl['flops_200x_vs_xpool'] else 'NOT MET'} "
              f"({gl['flops_vs_xpool']:.2f}x whole head, {gl['flops_vs_xpool_without_temporal']:.2f}x without the "
              f"temporal transformer, {gl['flops_vs_xpool_pairwise_only']:.1f}x pairwise stage alone)",
              f"  encode-once >= 50x faster than per-block recompute: {'MET' if gl['encode_once_50x_faster'] else 'NOT MET'} "
              f"({gl['per_block_time_ratio']:.0f}x in time, per-block time extrapolated from "
              f"{pb['sub_workload'][0]} x {pb['sub_workload'][1]} pairs; {gl['per_block_flops_ratio']:.0f}x in FLOPs, exact)",
              f"  per-block and encode-once give the same matrix: {pb['same_result_as_encode_once']} "
              f"(max |difference| {pb['max_abs_difference']:.1e})",
              f"  FLOP model F = aN + bM + cNM vs a direct count on a fourth workload: max relative deviation "
              f"{max(record['flop_model_check'].values()):.1e}"]
    direct = {k: h["cells"][m]["flops_direct"] for k, h in heads.items() if "flops_direct" in h["cells"][m]}
    if direct:
        same = all(abs(v - heads[k]["cells"][m]["flops"]) <= 1e-9 * v for k, v in direct.items())
        lines.append(f"  direct FlopCounterMode counts of the {n} x {m} runs (FakeTensorMode) equal the model: {same}")
    if (n, m, s["width"], s["frames"], s["words"]) == (1000, 1000, 512, 12, 32):
        ours = {k: sm["rows"][k]["flops"] / 2e9 for k in PAPER_GMACS}
        ours["glscl pairwise"] = sm["glscl_stages"]["pairwise S_g + lambda S_l (per pair)"]["flops"] / 2e9
        lines += ["", "Paper's table (GLSCL paper; 1k x 1k, \"FLOPs\" that match multiply-adds) vs this count / 2 (G):",
                  "  " + ", ".join(f"{k} {v:g} vs {ours[k]:.1f}" for k, v in PAPER_GMACS.items())
                  + f"; GLSCL pairwise stage alone {ours['glscl pairwise']:.1f}"]
    return "\n".join(lines)


# DESIGN.md item 8: the paper's similarity-head FLOPs for MSR-VTT 1k-A (values match multiply-adds)
PAPER_GMACS = {"mean": 0.5, "xpool": 275.0, "xclip": 220.9, "glscl": 1.0}


def plot_growth(record: dict, path: Path) -> None:
    """Log-log figure: GFLOP and seconds of the similarity stage vs gallery size, one line per head."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.4))
    n = record["settings"]["texts"]
    for i, (name, h) in enumerate(record["heads"].items()):
        sizes = sorted(h["cells"])
        color = f"C{i}"
        width = 2.5 if name.startswith("glscl") else 1.5
        for ax, key, scale in ((axes[0], "flops", 1e-9), (axes[1], "time", 1.0)):
            ys = [h["cells"][x][key] * scale for x in sizes]
            measured = [h["cells"][x]["measured"] for x in sizes]
            for j in range(len(sizes) - 1):      # solid between measured points, dashed towards extrapolated ones
                ax.plot(sizes[j:j + 2], ys[j:j + 2], "-" if measured[j] and measured[j + 1] else "--", color=color,
                        lw=width, alpha=0.8)
            for x, y, meas in zip(sizes, ys, measured):
                ax.plot([x], [y], "o", color=color, markerfacecolor=color if meas else "white", ms=6)
            ax.plot([], [], "-", color=color, lw=width, label=h["title"])
    for ax, ylabel in zip(axes, ("GFLOP (FlopCounterMode, 2 per multiply-add)", "seconds (wall clock)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"gallery size M (videos), {n} texts")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_title("similarity-stage FLOPs (filled: measured, hollow/dashed: extrapolated)", fontsize=10)
    axes[1].set_title("similarity-stage wall time", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.2, top=0.93, wspace=0.22)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m glscl.lab.bench.measure", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
