"""Exact FLOPs of every bench head at the paper's shapes, in seconds, without timing anything.

Each stage of a head costs exactly F(N, M) = a N + b M + c N M (``glscl.lab.bench.cost``), so counting
each head on a few tiny workloads *at the paper's feature shapes* (d = 512, T = 12, L = 32, K = 8)
gives its FLOPs for any N x M: the ratios at 1k x 1k, or at 1k x 100k, are exact, not estimates.
(Shrinking the shapes instead, as ``glscl bench --quick`` does, changes the ratios: a d^2 term and
a d term do not shrink alike.) Times need a measured run: ``glscl bench`` writes them to bench.json.

    models = count_models()                       # about ten seconds on a CPU
    ratio_table(models, 1000, 1000)               # GFLOPs, per pair, ratios to GLSCL (whole head, pairwise stage)
    per_block()                                   # the released code's per-tile evaluation, FLOPs and result
    paper_shapes(json.load(open("runs/bench/bench.json")))   # is a saved record at the paper's shapes?
"""
from __future__ import annotations

import pandas as pd
import torch

from glscl.lab.bench.cost import FlopModel, fit_flop_model, per_block_flops
from glscl.lab.bench.heads import HEAD_TITLES, glscl_per_block_similarity, make_heads
from glscl.lab.bench.measure import RandomFeatures

PAPER_SHAPES = {"width": 512, "frames": 12, "words": 32, "queries": 8}
"""The feature shapes of the paper's efficiency comparison (CLIP ViT-B/32 features of MSR-VTT 1k-A)."""

DUAL = ("mean", "xpool", "xclip", "glscl")
"""The heads whose cost is counted (the cross-encoder is priced per pair by ``glscl bench``)."""


def count_models(width: int = 512, frames: int = 12, words: int = 32, queries: int = 8, decoder_layers: int = 3,
                 temporal_layers: int = 4, seed: int = 0, n0: int = 2) -> dict[str, FlopModel]:
    """{head: FlopModel} of the dual-encoder bench heads at these shapes, counted by FlopCounterMode on
    (n0, n0), (2 n0, n0), (n0, 2 n0) texts x videos and checked on a fourth workload (``model.check``)."""
    feats, heads = _bench(width, frames, words, queries, decoder_layers, temporal_layers, seed)
    with _one_thread():
        return {name: fit_flop_model(heads[name], feats, n0, n0) for name in DUAL}


def per_block(n: int = 1000, m: int = 1000, width: int = 512, frames: int = 12, words: int = 32, queries: int = 8,
              decoder_layers: int = 3, temporal_layers: int = 4, seed: int = 0, check: int = 32) -> dict:
    """GLSCL evaluated the released code's way (re-encoding every 16 x 16 tile of pairs) vs encoded once:
    the exact FLOPs of both at n x m, and whether both give the same S on ``check`` x ``check`` pairs."""
    feats, heads = _bench(width, frames, words, queries, decoder_layers, temporal_layers, seed)
    head = heads["glscl"]
    with _one_thread(), torch.inference_mode():
        tiles = per_block_flops(head, feats, n, m, 16, {})
        once = fit_flop_model(head, feats, 2, 2)(n, m)
        a = glscl_per_block_similarity(head.model, feats.texts(check), feats.videos(check), 16)
        b = head(*feats.texts(check), *feats.videos(check))
    return {"per_block_flops": tiles, "encode_once_flops": once, "flops_ratio": tiles / once,
            "same_result": bool(torch.allclose(a, b, atol=1e-4, rtol=1e-4)), "max_abs_difference": float((a - b).abs().max())}


def _bench(width, frames, words, queries, decoder_layers, temporal_layers, seed):
    feats = RandomFeatures(width, frames, words, seed)
    heads = make_heads(width=width, num_frames=frames, num_queries=queries, decoder_layers=decoder_layers,
                       temporal_layers=temporal_layers, seed=seed)
    return feats, heads


class _one_thread:
    """Tiny workloads run fastest on one thread on a shared machine."""

    def __enter__(self):
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)


def ratio_table(models: dict[str, FlopModel], n: int, m: int) -> pd.DataFrame:
    """One row per head at n texts x m videos: GFLOP, FLOPs per pair, and the head's FLOPs divided by
    GLSCL's whole head and by GLSCL's pairwise stage alone (S_g + lambda S_l, no per-item work)."""
    g = models["glscl"]
    whole, pair = g(n, m), g.stage("pair", n, m)
    return pd.DataFrame({name: {"title": HEAD_TITLES[name], "GFLOPs": mdl(n, m) / 1e9, "FLOPs per pair": mdl(n, m) / (n * m),
                                "vs GLSCL (whole head)": mdl(n, m) / whole, "vs GLSCL pairwise stage": mdl(n, m) / pair}
                         for name, mdl in models.items()}).T


def growth(models: dict[str, FlopModel], n: int, sizes) -> pd.DataFrame:
    """GFLOPs (10^9 FLOPs, 2 per multiply-add) of each head (columns) for n texts against each gallery size M (rows)."""
    return pd.DataFrame({name: [mdl(n, m) / 1e9 for m in sizes] for name, mdl in models.items()},
                        index=pd.Index(list(sizes), name="M"))


def limit_ratio(models: dict[str, FlopModel], name: str) -> float:
    """The head's FLOPs over GLSCL's as N and M both grow (per-pair coefficients c / c_GLSCL)."""
    return models[name].stages["pair"].c / models["glscl"].stages["pair"].c


def paper_shapes(record: dict) -> tuple[bool, str]:
    """Whether a saved bench record (bench.json) was measured at the paper's shapes and at least 1k x 1k,
    and a sentence saying which settings differ when it was not."""
    s = record.get("settings", {})
    wrong = [f"{k} = {s.get(k)} (paper: {v})" for k, v in PAPER_SHAPES.items() if s.get(k) != v]
    galleries = s.get("galleries") or [0]
    if s.get("texts", 0) < 1000 or min(galleries) < 1000:
        wrong.append(f"{s.get('texts')} texts x {min(galleries)} videos (paper: 1000 x 1000)")
    if s.get("quick"):
        wrong.append("quick mode")
    return (not wrong, "; ".join(wrong) or "paper shapes, 1k x 1k")
