"""Numbers and sentences from an ablation grid's tidy table (``results.csv``): no plotting.

* ``summarize``: per configuration n, mean and the 95 % Student-t half-width over seeds,
  mean +- t(0.975, n-1) * sd / sqrt(n) (few seeds: a bootstrap over 2 seeds would be their range);
* ``summary_table``: one row per configuration, 'mean ± half-width' per metric;
* ``findings``: a few sentences computed from the table (best configuration, interaction modes,
  K chosen on validation via ``best_by_validation``, never on test);
* ``fmt_value``, ``label_of``, ``present``: how keys, values and metrics are written.

``glscl.lab.grids.figures`` draws from the same summaries.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from glscl.lab.grids.stats import is_missing, mean_ci, paired

LABELS = {"t2v_R@1": "text-to-video R@1", "t2v_R@5": "text-to-video R@5", "v2t_R@1": "video-to-text R@1",
          "twin_accuracy": "twin accuracy (chance 50)", "num_queries": "number of queries K",
          "icl_weight": "ICL weight", "idl_weight": "IDL weight"}
def summarize(table: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    """Per configuration (the ``by`` columns; empty values kept as a level): n, mean, ci (half-width), lo, hi."""
    ok = table[table["status"] == "ok"] if "status" in table else table
    rows = []
    for key, group in ok.groupby(by, dropna=False, sort=True) if by else [((), ok)]:
        key = key if isinstance(key, tuple) else (key,)
        m, hw, n = mean_ci(group[metric])
        rows.append({**dict(zip(by, key)), "n": n, "mean": m, "ci": hw, "lo": m - hw, "hi": m + hw})
    return pd.DataFrame(rows, columns=[*by, "n", "mean", "ci", "lo", "hi"])


SHORT = {"num_queries": "K"}


def fmt_value(value) -> str:
    """A key's value for labels: integral floats without '.0' (CSV round trips turn ints with gaps into floats)."""
    if is_missing(value):
        return "—"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def label_of(name: str) -> str:
    """A key or metric as an axis or table label."""
    return LABELS.get(name, name.replace("_", " "))


def present(table: pd.DataFrame, metrics: Iterable[str]) -> list[str]:
    """The ``metrics`` the table has values for."""
    return [m for m in metrics if m in table and table[m].notna().any()]


def best_by_validation(table: pd.DataFrame, level_col: str, choose_col: str, score: str = "best_val_score") -> pd.DataFrame:
    """For each level of ``level_col``, keep only the runs whose ``choose_col`` value has the best mean validation score.

    E.g. each interaction mode at its best K, where "best" is decided on the validation split (``best_val_score``
    of metrics.json: t2v R@1 + R@5 + R@10 on val), never on test. Rows where ``choose_col`` is empty are kept.
    """
    ok = table[table["status"] == "ok"]
    keep = []
    for _, group in ok.groupby(level_col, sort=False, dropna=False):
        chosen = group[group[choose_col].isna()]
        rest = group[group[choose_col].notna()]
        if len(rest):
            means = rest.groupby(choose_col)[score].mean()
            chosen = pd.concat([chosen, rest[rest[choose_col] == means.idxmax()]])
        keep.append(chosen)
    return pd.concat(keep) if keep else ok


def summary_table(table: pd.DataFrame, spec, metrics: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per configuration: n seeds and 'mean ± half-width' (95 % t-interval) per metric ('—' where
    a metric does not apply, e.g. the query cosine of one query); R@K and accuracies to 0.1, others to 0.001."""
    by = [c for c in spec.columns.values() if c in table]
    metrics = present(table, metrics or spec.metrics)
    out = None
    for metric in metrics:
        s = summarize(table, by, metric)
        digits = 1 if "R@" in metric or "accuracy" in metric else 3  # e.g. query cosines live in [-1, 1]
        s[metric] = ["—" if not np.isfinite(m) else f"{m:.{digits}f}" + ("" if not np.isfinite(c) else f" ± {c:.{digits}f}")
                     for m, c in zip(s["mean"], s["ci"])]
        s = s[by + ["n", metric]]
        out = s if out is None else out.merge(s.drop(columns="n"), on=by, how="outer")
    if out is None:
        return pd.DataFrame()
    if metrics:
        order = summarize(table, by, metrics[0])["mean"].to_numpy()
        out = out.iloc[np.argsort(-order, kind="stable")].reset_index(drop=True)
    for c in by:
        out[c] = [fmt_value(v) for v in out[c]]
    return out


def _in_words(d) -> str:
    if d.n == 0:
        return "no paired seeds"
    if d.verdict in ("supported", "contradicted"):
        return "the interval excludes 0"
    return "the interval includes 0: not resolved with these seeds"


def findings(table: pd.DataFrame, spec, metric: str | None = None) -> str:
    """A few sentences (markdown) computed from the table: best configuration, interaction modes, best K.

    Where a mode has several K, "its K" is the one with the best mean validation score (never chosen on test).
    """
    metric = metric or spec.metrics[0]
    by = [c for c in spec.columns.values() if c in table]
    ok = table[table["status"] == "ok"]
    lines = [f"Metric: **{label_of(metric)}** on test, mean ± 95 % t-interval over seeds; {len(ok)} of {len(table)} runs finished"
             + (f", {int((table['status'] == 'failed').sum())} failed." if (table["status"] == "failed").any() else ".")]
    if ok.empty or metric not in ok:
        return "\n\n".join(lines)
    s = summarize(table, by, metric).sort_values("mean", ascending=False)

    def name(row) -> str:
        return ", ".join(f"{c}={fmt_value(row[c])}" for c in by) or "the configuration"

    def fmt(m, c) -> str:
        return f"{m:.1f}" + ("" if not np.isfinite(c) else f" ± {c:.1f}")
    best = s.iloc[0]
    lines.append(f"Highest test mean: {name(best)}: {fmt(best['mean'], best['ci'])} (n={int(best['n'])}).")
    has_k = "num_queries" in by and ok["num_queries"].nunique() > 1 and "best_val_score" in ok
    if "interaction" in by and ok["interaction"].nunique() > 1:
        chosen = best_by_validation(table, "interaction", "num_queries") if has_k else ok
        parts, conds = [], {}
        for mode, group in chosen.groupby("interaction", sort=False):
            m, hw, n = mean_ci(group[metric])
            k = group["num_queries"].iloc[0] if "num_queries" in group else None
            conds[mode] = {c: group[c].iloc[0] for c in by}
            parts.append(f"{mode}{'' if is_missing(k) or not has_k else f' (K={fmt_value(k)})'}: {fmt(m, hw)}")
        lines.append("Per interaction mode" + (" (K chosen on validation)" if has_k else "") + ": " + "; ".join(parts) + ".")
        for mode in ("both", "local"):
            if mode in conds and "global" in conds:
                d = paired(table, conds[mode], conds["global"], metric)
                lines.append(f"{mode} minus global-only, paired by seed: {fmt(d.mean, d.hw)} points (n={d.n}; {_in_words(d)}).")
    if has_k:
        groups = ok[ok["num_queries"].notna()].groupby("interaction", sort=False) if "interaction" in by else [("", ok)]
        for mode, group in groups:
            val = group.groupby("num_queries")["best_val_score"].mean()
            per_k = summarize(group, ["num_queries"], metric)
            curve = ", ".join(f"K={int(r['num_queries'])}: {fmt(r['mean'], r['ci'])}" for _, r in per_k.iterrows())
            ks = sorted(group["num_queries"].unique())
            d = paired(group, {"num_queries": ks[-1]}, {"num_queries": ks[0]}, metric)
            lines.append(f"{mode + ': ' if mode else ''}best K on validation = {int(val.idxmax())}; on test {curve}. "
                         f"K={int(ks[-1])} minus K={int(ks[0])}, paired by seed: {fmt(d.mean, d.hw)} points (n={d.n}; {_in_words(d)}).")
    if (s["n"] < 3).any():
        lines.append("Caution: configurations with fewer than 3 seeds have intervals that rest on one or two "
                     "differences (t(0.975, 1) = 12.7); equal values give a zero-width interval that is not evidence of precision.")
    return "\n\n".join(lines)
