"""Intervals over seeds and paired-by-seed differences of a grid's tidy table (``results.csv``).

* ``mean_ci``: mean and half-width of the 95 % Student-t interval, ``t(0.975, n-1) * sd / sqrt(n)``;
* ``paired``: ``d_s = m_a(s) - m_b(s)`` over the seeds s both configurations finished, with
  ``mean_ci(d)``: a seed's shared data order and head initialisation cancel out of ``d_s``, so the
  paired interval is narrower than the two configurations' intervals side by side;
* ``verdict``: supported (interval above 0), contradicted (below 0) or not resolved at this power;
* ``seeds_to_resolve``: the smallest n with ``t(0.975, n-1) * sd / sqrt(n) <= 1`` point at the
  measured sd of ``d``;
* ``against_reference``: every configuration of a grid paired with its ``reference`` (grid file);
* ``DIRECTION`` / ``better_direction``: which way a metric is better (+1 higher, -1 lower), None for a
  diagnostic (a query cosine, an effective rank, an entropy, a coverage: neither way is better).

A configuration is a mapping column -> value (``None`` for a key that does not apply, e.g. K of the
global-only head); values compare as numbers when both are numbers (8 == 8.0), else as text.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


DIRECTION = {**{f"{d}_R@{k}": +1 for d in ("t2v", "v2t") for k in (1, 5, 10, 50)},
             **{f"{d}_{r}": -1 for d in ("t2v", "v2t") for r in ("MdR", "MnR")},
             "twin_accuracy": +1, "best_val_score": +1}
"""Metric -> +1 where higher is better (R@K, twin accuracy, the validation score), -1 where lower is better
(median and mean rank). Metrics not listed are diagnostics: no direction is better."""


def better_direction(metric: str) -> int | None:
    """+1 (higher is better), -1 (lower is better) or None (a diagnostic); 't2v_R@1:single' reads as 't2v_R@1'."""
    return DIRECTION.get(metric.split(":")[0])


def t_quantile(df: int) -> float:
    """t(0.975, df): table up to 30, then a Cornish-Fisher expansion around the normal quantile."""
    if df < 1:
        return math.nan
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def mean_ci(values: Iterable[float]) -> tuple[float, float, int]:
    """(mean, half-width of the 95 % t-interval, n) of the finite values; half-width NaN for n < 2."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(v[0]), math.nan, 1
    return float(v.mean()), float(t_quantile(n - 1) * v.std(ddof=1) / math.sqrt(n)), n


def seeds_to_resolve(sd: float, effect: float = 1.0, max_seeds: int = 1000) -> int | None:
    """Smallest n with t(0.975, n-1) * sd / sqrt(n) <= effect (None when even max_seeds does not)."""
    if not np.isfinite(sd):
        return None
    if sd == 0:
        return 2
    for n in range(2, max_seeds + 1):
        if t_quantile(n - 1) * sd / math.sqrt(n) <= effect:
            return n
    return None


def is_missing(value) -> bool:
    """None, pandas NA or NaN: a key that does not apply to a run (e.g. K of the global-only head)."""
    return value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def same_value(cell, want) -> bool:
    """A table cell equals a configuration's value: both missing, equal numbers, or equal text."""
    if is_missing(want) or is_missing(cell):
        return is_missing(want) and is_missing(cell)
    if _number(cell) and _number(want):
        return float(cell) == float(want)
    return str(cell) == str(want)


def select(table: pd.DataFrame, config: dict) -> pd.DataFrame | None:
    """The finished runs of ``config``, indexed by seed (None when the table lacks one of its columns)."""
    rows = table[table["status"] == "ok"] if "status" in table else table
    for col, want in config.items():
        if col not in rows:
            return None
        rows = rows[np.array([same_value(v, want) for v in rows[col]], dtype=bool)]
    return rows.set_index("seed")


@dataclass
class Paired:
    """a - b paired by seed: per-seed differences, their mean, 95 % t half-width and sd, the two means."""

    n: int = 0
    mean: float = math.nan
    hw: float = math.nan
    sd: float = math.nan
    a: float = math.nan
    b: float = math.nan
    diffs: list[float] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """supported (interval above 0), contradicted (below 0), or not resolved at this power."""
        if self.n < 2 or not np.isfinite(self.hw):
            return "not resolved (fewer than 2 paired seeds)"
        if self.mean - self.hw > 0:
            return "supported"
        if self.mean + self.hw < 0:
            return "contradicted"
        return "not resolved at this power"

    @property
    def seeds_for_1_point(self) -> int | None:
        return seeds_to_resolve(self.sd)

    def resolution(self) -> str:
        """'half-width H points; a 1-point difference needs N seeds at this noise (sd S)'."""
        need = self.seeds_for_1_point
        return (f"half-width {self.hw:.1f} points; a 1-point difference needs "
                + (f"{need} seeds at this noise (sd {self.sd:.1f})" if need else "more than 1000 seeds at this noise"))


def paired(table: pd.DataFrame, a: dict, b: dict, metric: str) -> Paired:
    """``metric`` of configuration a minus b over the seeds both finished."""
    sa, sb = select(table, a), select(table, b)
    if sa is None or sb is None or metric not in sa or metric not in sb:
        return Paired()
    sa, sb = sa[~sa.index.duplicated()], sb[~sb.index.duplicated()]
    common = sa.index.intersection(sb.index)
    va, vb = sa.loc[common, metric].astype(float), sb.loc[common, metric].astype(float)
    keep = np.isfinite(va.to_numpy()) & np.isfinite(vb.to_numpy())
    va, vb = va[keep], vb[keep]
    diffs = (va - vb).to_numpy()
    m, hw, n = mean_ci(diffs)
    return Paired(n=n, mean=m, hw=hw, sd=float(np.std(diffs, ddof=1)) if n > 1 else math.nan,
                  a=float(va.mean()) if n else math.nan, b=float(vb.mean()) if n else math.nan,
                  diffs=[float(x) for x in diffs])


def reference_config(spec) -> dict:
    """The grid's reference configuration as table columns (every varying column; None where its key
    does not apply at that point); {} when the grid file names none."""
    if not spec.reference:
        return {}
    from glscl.lab.grids.spec import configurations, matches

    values = next(v for v in configurations(spec) if matches(v, spec.reference))
    return {col: values.get(key) for key, col in spec.columns.items()}


def against_reference(table: pd.DataFrame, spec, metric: str) -> pd.DataFrame:
    """One row per configuration but the reference: its columns, ``metric`` of it and of the reference
    (means over the paired seeds), the paired difference (config - reference) with its 95 % t
    half-width, n seeds, the sd of the differences, the seeds a 1-point difference needs, the verdict.
    Empty when the grid has no reference."""
    ref = reference_config(spec)
    if not ref:
        return pd.DataFrame()
    cols = list(ref)
    ok = table[table["status"] == "ok"]
    rows = []
    for key, _ in ok.groupby(cols, dropna=False, sort=False):
        config = dict(zip(cols, key if isinstance(key, tuple) else (key,)))
        if all(same_value(config[c], ref[c]) for c in cols):
            continue
        d = paired(table, config, ref, metric)
        rows.append({**config, metric: d.a, "reference": d.b, "difference": d.mean, "half_width": d.hw, "n": d.n,
                     "sd": d.sd, "seeds_for_1_point": d.seeds_for_1_point, "verdict": d.verdict})
    return pd.DataFrame(rows)


def resolution_line(diffs: pd.DataFrame, metric: str) -> str:
    """One line over a grid's paired differences: the half-widths and the seeds a 1-point difference needs."""
    hw = diffs["half_width"].dropna() if len(diffs) else pd.Series(dtype=float)
    sd = diffs["sd"].dropna() if len(diffs) else pd.Series(dtype=float)
    if hw.empty:
        return f"Resolution ({metric}): no configuration has 2 paired seeds with the reference."
    need = seeds_to_resolve(float(sd.median()))
    return (f"Resolution ({metric}, paired by seed with the reference): half-width median {hw.median():.1f} points "
            f"(range {hw.min():.1f}-{hw.max():.1f}, n = {int(diffs['n'].max())} seeds); at the median sd of the "
            f"differences ({sd.median():.1f}) a 1-point difference needs "
            + (f"{need} seeds." if need else "more than 1000 seeds."))
