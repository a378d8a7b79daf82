"""Efficiency bench: the similarity stage of GLSCL and the heads it is compared with, side by side.

    glscl bench [--out runs/bench] [--quick] [--direct-count]     (or: python benchmarks/bench_similarity.py ...)

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
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from glscl.files import write_json
from glscl.lab.bench.cost import extrapolate, fit_flop_model, per_block_flops
from glscl.lab.bench.heads import ALPRO_VTM, HEAD_TITLES, GLSCLHead, alpro_pair_flops, glscl_per_block_similarity, make_heads
from glscl.lab.bench.measure import PeakMemory, RandomFeatures, count_flops_shapes_only, matmul_gflops, measure_cell, time_call
from glscl.lab.bench.report import format_report, save_growth, summarise

# ----------------------------------------------------------------------------------------------
# the bench
# ----------------------------------------------------------------------------------------------

# --quick: tiny shapes, one thread (tiny ops on a busy machine are much slower with two)
# (the second gallery size is always extrapolated: cell limit 0)
QUICK = dict(texts=32, galleries="16,32", probe=0, width=64, cell_limit=0.0, cross_layers=1, cross_width=32,
             cross_pairs=64, per_block_blocks=4, matmul_size=512, threads=1, min_time=0.02)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``glscl bench`` (and ``benchmarks/bench_similarity.py``)."""
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
    record["summary"] = summarise(record, n_texts, galleries[0], peak)
    record["machine"] = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                         "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                         "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    record["wall_s"] = time.perf_counter() - started
    text = format_report(record)
    print(text)
    record["report"] = text

    out = Path(s["out"])
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "bench.json", _jsonable(record), indent=1)
    if not s["no_figure"]:
        save_growth(record, out / "bench.png")
    _log(f"[bench] wrote {out / 'bench.json'}" + ("" if s["no_figure"] else f" and {out / 'bench.png'}")
         + f" in {record['wall_s']:.0f} s")
    return record


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
    sub = {"flops": per_block_flops(head, feats, n_sub, m_sub, block, cache), "time": t, "peak_bytes": mem.peak,
           "output_bytes_per_pair": per_block.element_size(), "text_state_bytes": 0, "video_state_bytes": 0,
           "measured": True}
    cells = {m: extrapolate(sub, (n_sub, m_sub), (n_texts, m), per_block_flops(head, feats, n_texts, m, block, cache))
             for m in sizes}
    return {"title": "GLSCL per 16x16 block (released code)", "cells": cells, "sub_workload": [n_sub, m_sub, sub],
            "same_result_as_encode_once": bool(torch.allclose(per_block, once, atol=1e-4, rtol=1e-4)),
            "max_abs_difference": float((per_block - once).abs().max())}


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="glscl bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))

