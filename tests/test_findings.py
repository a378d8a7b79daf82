import math

import pandas as pd
import pytest

pytest.importorskip("seaborn")  # the lab's figures module comes with the findings
from glscl.lab.grids.findings import claim_lines, paired, seeds_to_resolve, verdict  # noqa: E402


def _table(diffs):
    rows = []
    for seed, d in enumerate(diffs):
        rows.append({"status": "ok", "seed": seed, "k": 8, "t2v_R@1": 10.0 + seed + d})
        rows.append({"status": "ok", "seed": seed, "k": 1, "t2v_R@1": 10.0 + seed})
    return pd.DataFrame(rows)


def test_seeds_to_resolve_uses_the_t_quantile():
    # t(0.975, 5) * 1 / sqrt(6) = 2.571 / 2.449 > 1, t(0.975, 6) / sqrt(7) = 2.447 / 2.646 <= 1
    assert seeds_to_resolve(1.0) == 7
    assert seeds_to_resolve(0.0) == 2 and seeds_to_resolve(float("nan")) is None


def test_paired_differences_and_verdicts_by_hand():
    d = paired(_table([1.0, 2.0, 3.0]), {"k": 8}, {"k": 1}, "t2v_R@1")
    assert d["n"] == 3 and d["mean"] == pytest.approx(2.0) and d["sd"] == pytest.approx(1.0)
    assert d["hw"] == pytest.approx(4.303 / math.sqrt(3), rel=1e-3)
    assert verdict(d) == "not resolved at this power"
    assert verdict(paired(_table([2.0, 2.1, 1.9]), {"k": 8}, {"k": 1}, "t2v_R@1")) == "supported"
    assert verdict(paired(_table([-2.0, -2.1, -1.9]), {"k": 8}, {"k": 1}, "t2v_R@1")) == "contradicted"
    assert verdict(paired(_table([1.0]), {"k": 8}, {"k": 1}, "t2v_R@1")).startswith("not resolved (fewer")


def test_a_claim_without_runs_says_so():
    lines = claim_lines({"claim": "x", "a": {"k": 4}, "b": {"k": 1}}, _table([1.0, 2.0]))
    assert lines == ["- **x**: no paired runs found (k=4 vs k=1)."]
