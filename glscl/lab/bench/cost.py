"""Cost model of the efficiency bench: exact FLOPs of a head for any N x M from counts on small
workloads, the per-block evaluation's FLOPs, and the extrapolation of measured cells.

Each stage of each head costs exactly F(N, M) = a N + b M + c N M (per text, per video, per pair),
so the counter is run per stage on three small workloads, (a, b, c) solved, and checked against a
direct count on a fourth; every cell's FLOPs then follow exactly. Cells too large to run are
extrapolated: time in proportion to FLOPs, memory as the measured peak plus the extra output and
per-item states.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from glscl.lab.bench.heads import GLSCLHead, PairwiseHead, glscl_per_block_similarity
from glscl.lab.bench.measure import RandomFeatures, count_cost, count_stages


@dataclass
class CostModel:
    """F(N, M) = a N + b M + c N M (per text, per video, per pair), fitted to exact counts."""

    a: float
    b: float
    c: float

    def __call__(self, n: int, m: int) -> int:
        return round(self.a * n + self.b * m + self.c * n * m)     # FLOP counts are integers

    @classmethod
    def fit(cls, points: list[tuple[int, int, float]]) -> CostModel:
        x = torch.tensor([[n, m, n * m] for n, m, _ in points], dtype=torch.float64)
        y = torch.tensor([f for _, _, f in points], dtype=torch.float64)
        a, b, c = torch.linalg.lstsq(x, y[:, None]).solution[:, 0].tolist()
        return cls(a, b, c)


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


def per_block_flops(head: GLSCLHead, feats: RandomFeatures, n: int, m: int, block: int, cache: dict) -> int:
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


def extrapolate(ref: dict, ref_nm: tuple[int, int], nm: tuple[int, int], flops: float) -> dict:
    """A cell at (N, M) from a measured one: exact FLOPs given; time in proportion to FLOPs (the
    achieved FLOP rate of the measured run); memory = measured peak + extra output + extra
    per-item states (the block working set does not grow)."""
    (n0, m0), (n, m) = ref_nm, nm
    extra = (ref["output_bytes_per_pair"] * (n * m - n0 * m0) + ref["text_state_bytes"] * (n - n0)
             + ref["video_state_bytes"] * (m - m0))
    return {"flops": flops, "time": ref["time"] * flops / ref["flops"], "peak_bytes": ref["peak_bytes"] + extra,
            "measured": False}

