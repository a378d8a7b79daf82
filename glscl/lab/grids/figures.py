"""Figures of an ablation grid's tidy table (``results.csv`` written by glscl.lab.grids.runner).

Error bars and bands are **95 % Student-t intervals over seeds**: mean +- t(0.975, n-1) * sd / sqrt(n),
computed in ``glscl.lab.grids.summaries`` (``summarize``) rather than bootstrapped, because grids have few seeds (with 2 seeds a
bootstrap interval is just the range of the two values; the t-interval is wide, as it should be).
A configuration with one seed gets no interval. Figures clip intervals of R@K and accuracies to
[0, 100] when drawing; the summaries give them unclipped.

* ``line_plot``: a metric against a numeric key (e.g. the number of queries K), one line per level
  of a categorical key (e.g. the interaction mode); levels for which the numeric key is irrelevant
  (global-only has no queries) are drawn as a dashed horizontal reference with its band;
* ``metric_heatmap``: the mean over two numeric keys (e.g. ICL x IDL weights), annotated mean +- half-width;
* ``bar_plot``: a row per level of a categorical key (optionally grouped by a second one), drawn
  horizontally: a bar from 0 for R@K (a percentage of captions), a point with its interval for any
  other metric (cosines, ranks, accuracies with chance 50: a bar's length would mean nothing);
* ``configuration_plot``: one point per configuration, labelled by what differs from the reference,
  for grids whose keys do not cross (one change at a time);
* ``reference_plot``: each configuration minus the grid file's ``reference``, paired by seed
  (``glscl.lab.grids.stats``), with the resolution line; green/red only for metrics with a better
  direction (``stats.DIRECTION``), one neutral colour for diagnostics;
* ``figures_for_grid``: picks those that fit what the grid varies, never a mark that averages
  configurations differing in a key it does not show (``pools``); every figure is written as PNG,
  PDF and SVG. Legends sit outside the axes.
"""
from __future__ import annotations

import textwrap
from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from glscl.lab.grids.stats import (
    against_reference,
    better_direction,
    is_missing,
    mean_ci,
    reference_config,
    resolution_line,
    select,
)
from glscl.lab.grids.summaries import SHORT, best_by_validation, fmt_value, label_of, present, summarize

FORMATS = ("png", "pdf", "svg")
def _clip(metric: str, lo, hi):
    """Interval ends clipped to the metric's range (R@K and accuracies live in [0, 100]) for drawing only."""
    if "R@" in metric or "accuracy" in metric:
        return np.clip(lo, 0, 100), np.clip(hi, 0, 100)
    return lo, hi


def save(fig, out: str | Path, name: str) -> list[Path]:
    """Write ``fig`` as <out>/<name>.{png,pdf,svg}; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in FORMATS:
        path = out / f"{name}.{ext}"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _panels(n: int, width: float = 4.2, height: float = 3.4):
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, list(axes[0])


def _as_labels(table: pd.DataFrame, cols: Iterable[str]) -> pd.DataFrame:
    """``table`` with ``cols`` replaced by their labels (``fmt_value``: a missing value, e.g. K of the
    global-only runs, becomes the level '—'), so that every level, missing included, can be selected."""
    cols = [c for c in cols if c]
    return table.assign(**{c: [fmt_value(v) for v in table[c]] for c in cols}) if cols else table


def line_plot(table: pd.DataFrame, x: str, hue: str | None = None, metrics: Iterable[str] = ("t2v_R@1",)):
    """Metrics against numeric ``x`` (mean and 95 % t-band per ``hue`` level); returns the figure."""
    metrics = present(table, metrics)
    fig, axes = _panels(len(metrics))
    table = _as_labels(table, [hue])      # a missing hue value is the level '—'
    levels = list(dict.fromkeys(table.loc[table["status"] == "ok", hue])) if hue else [None]
    palette = dict(zip(levels, sns.color_palette(n_colors=max(1, len(levels)))))
    xs = sorted(v for v in table[x].dropna().unique())
    for ax, metric in zip(axes, metrics):
        for level in levels:
            sub = table if hue is None else table[table[hue] == level]
            s = summarize(sub, [x], metric)
            line, ref = s[s[x].notna()], s[s[x].isna()]
            label = str(level) if hue else None
            if len(line):
                xv = line[x].astype(float).to_numpy()
                ax.plot(xv, line["mean"], marker="o", color=palette[level], label=label)
                ax.fill_between(xv, *_clip(metric, line["lo"], line["hi"]), color=palette[level], alpha=0.2, linewidth=0)
            elif len(ref):  # this level ignores x: a horizontal reference
                r = ref.iloc[0]
                ax.axhline(r["mean"], ls="--", color=palette[level], label=f"{label} (no {x})" if hue else None)
                if np.isfinite(r["ci"]):
                    ax.axhspan(*_clip(metric, r["lo"], r["hi"]), color=palette[level], alpha=0.1, linewidth=0)
        if xs and min(xs) > 0 and max(xs) / min(xs) >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks([float(v) for v in xs], [format(v, "g") for v in xs])
        ax.set_xlabel(label_of(x))
        ax.set_ylabel(label_of(metric))
    if hue:
        _legend_outside(axes[-1], label_of(hue))
    fig.suptitle("mean over seeds, 95 % t-interval", fontsize="small")
    fig.tight_layout()
    return fig


def metric_heatmap(table: pd.DataFrame, x: str, y: str, metrics: Iterable[str] = ("t2v_R@1",)):
    """Mean of each metric over the (y, x) grid, cells annotated 'mean +- half-width'; returns the figure."""
    metrics = present(table, metrics)
    fig, axes = _panels(len(metrics), width=4.8, height=4.0)
    for ax, metric in zip(axes, metrics):
        s = summarize(table, [y, x], metric)
        mean = s.pivot(index=y, columns=x, values="mean").sort_index(ascending=False)
        ci = s.pivot(index=y, columns=x, values="ci").reindex_like(mean)
        cell = np.vectorize(lambda m, c: f"{m:.1f}" + ("" if not np.isfinite(c) else f"\n±{c:.1f}"))
        annot = cell(mean.to_numpy(float), ci.to_numpy(float))
        sns.heatmap(mean, annot=annot, fmt="", cmap="viridis", ax=ax, cbar_kws={"label": label_of(metric)},
                    annot_kws={"fontsize": "x-small"})
        ax.set_xticklabels([format(float(v), "g") for v in mean.columns])
        ax.set_yticklabels([format(float(v), "g") for v in mean.index], rotation=0)
        ax.set_xlabel(label_of(x))
        ax.set_ylabel(label_of(y))
        ax.set_title(label_of(metric), fontsize="small")
    fig.suptitle("mean over seeds (± 95 % t-interval half-width)", fontsize="small")
    fig.tight_layout()
    return fig


def _wrap(text: str, width: int = 22) -> str:
    """A label broken into lines of about ``width`` characters at spaces (existing line breaks kept)."""
    return "\n".join(textwrap.fill(part, width, break_long_words=False, break_on_hyphens=False) or part
                     for part in str(text).split("\n"))


def _from_zero(metric: str) -> bool:
    """Whether a bar's length from 0 means something: R@K counts captions retrieved (a percentage from 0).
    Cosines, ranks, entropies and accuracies with chance 50 get a point with its interval instead."""
    return "_R@" in metric


def _rows_height(labels: list[str], per_row: int = 1) -> float:
    """Inches per row of a horizontal figure: room for the tallest label (its lines) or ``per_row`` marks."""
    lines = max([str(t).count("\n") + 1 for t in labels] or [1])
    return max(0.28 * per_row, 0.2 * lines) + 0.2


def _caption(fig, text: str, fontsize: str = "x-small"):
    """The figure's title, each line wrapped to the figure's width and its labels (about 17 characters an inch at x-small)."""
    width = int((fig.get_size_inches()[0] + 1.5) * (17 if fontsize == "x-small" else 14))  # + the row labels' column
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in text.split("\n")), fontsize=fontsize)


def _legend_outside(ax, title: str):
    """The legend to the right of ``ax``, outside the axes, so it never covers a line or a point."""
    ax.legend(title=title, fontsize="small", title_fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0),
              borderaxespad=0.0, frameon=False)


def _row_ticks(ax, labels: list[str], show: bool):
    """Rows top to bottom at y = n-1 .. 0; labels on the first panel only."""
    n = len(labels)
    ax.set_yticks(np.arange(n)[::-1], labels if show else [""] * n, fontsize="small")
    ax.set_ylim(-0.6, n - 0.4)


def bar_plot(table: pd.DataFrame, x: str, hue: str | None = None, metrics: Iterable[str] = ("t2v_R@1",),
             title: str = "mean over seeds, 95 % t-interval"):
    """One row per level of ``x`` (grouped by ``hue``), drawn horizontally so that labels never collide; returns the figure.

    Each row is one configuration: a bar from 0 (mean, 95 % t-interval) for R@K (``_from_zero``), a point with
    its interval for any other metric. A missing value of ``x`` or ``hue`` (a key that does not apply to some
    runs) is a level of its own, '—'."""
    metrics = present(table, metrics)
    ok = _as_labels(table[table["status"] == "ok"], [x, hue])
    xs = list(dict.fromkeys(ok[x]))
    hues = list(dict.fromkeys(ok[hue])) if hue else [None]
    colors = sns.color_palette(n_colors=max(1, len(hues)))
    labels = [_wrap(v) for v in xs]
    fig, axes = _panels(len(metrics), width=3.8, height=max(2.4, _rows_height(labels, len(hues)) * len(xs) + 1.3))
    height = 0.8 / len(hues)
    for ax, metric in zip(axes, metrics):
        s = summarize(ok, [x] + ([hue] if hue else []), metric)
        for j, h in enumerate(hues):
            sub = s if hue is None else s[s[hue] == h]
            pos, mean, err = [], [], [[], []]
            for i, level in enumerate(xs):
                row = sub[sub[x] == level]
                if len(row) and np.isfinite(row["mean"].iloc[0]):
                    m, lo, hi = row["mean"].iloc[0], row["lo"].iloc[0], row["hi"].iloc[0]
                    lo, hi = _clip(metric, lo, hi) if np.isfinite(lo) else (m, m)
                    pos.append(len(xs) - 1 - i + 0.4 - height * (j + 0.5))
                    mean.append(m)
                    err[0].append(m - lo)
                    err[1].append(hi - m)
            label = None if hue is None else str(h)
            if _from_zero(metric):
                ax.barh(pos, mean, height=height * 0.9, xerr=err, capsize=3, label=label, color=colors[j])
            elif pos:
                ax.errorbar(mean, pos, xerr=err, fmt="o", capsize=3, label=label, color=colors[j])
        _row_ticks(ax, labels, ax is axes[0])
        ax.set_xlabel(label_of(metric))
    axes[0].set_ylabel(label_of(x))
    if hue:
        _legend_outside(axes[-1], label_of(hue))
    fig.suptitle(title, fontsize="small")
    fig.tight_layout()
    return fig


def _config_label(config: dict, reference: dict, per_line: int = 2) -> str:
    """A configuration by what differs from the reference ('interaction=both, K=8'), ``per_line`` keys a line."""
    parts = [f"{SHORT.get(c, c)}={fmt_value(v)}" for c, v in config.items()
             if not is_missing(v) and (c not in reference or fmt_value(reference[c]) != fmt_value(v))]
    lines = [", ".join(parts[i:i + per_line]) for i in range(0, len(parts), per_line)]
    return ",\n".join(lines) or "the reference"


NEUTRAL = "tab:blue"
"""The colour of a diagnostic's differences: no direction is better (``stats.DIRECTION``)."""


def verdict_color(metric: str, verdict: str) -> str:
    """Green where the interval lies on the better side of 0, red on the worse side, grey when it contains 0;
    one neutral colour for a diagnostic (``stats.better_direction`` is None)."""
    direction = better_direction(metric)
    if direction is None:
        return NEUTRAL
    side = {"supported": +1, "contradicted": -1}.get(verdict)
    return "tab:gray" if side is None else "tab:green" if side == direction else "tab:red"


def reference_plot(table: pd.DataFrame, spec, metrics: Iterable[str] = ("t2v_R@1",)):
    """Each configuration minus the grid's reference, paired by seed (mean and 95 % t-interval per
    metric, one row per configuration, 0 marked); the first metric's resolution line in the title.
    Coloured by ``verdict_color``: green better, red worse (for metrics with a better direction), one
    neutral colour for diagnostics. None when no configuration has a seed paired with the reference."""
    ref = reference_config(spec)
    diffs = {m: against_reference(table, spec, m) for m in present(table, metrics)}
    diffs = {m: d for m, d in diffs.items() if len(d) and d["difference"].notna().any()}  # e.g. no query cos for global only
    metrics = list(diffs)
    if not metrics:
        return None
    labels = [_config_label({c: row[c] for c in ref}, ref) for _, row in diffs[metrics[0]].iterrows()]
    fig, axes = _panels(len(metrics), width=3.6, height=_rows_height(labels) * len(labels) + 2.0)
    for ax, metric in zip(axes, metrics):
        d = diffs[metric]
        y = np.arange(len(d))[::-1]
        err = d["half_width"].fillna(0).to_numpy()
        for yi, m, e, verdict in zip(y, d["difference"], err, d["verdict"]):
            ax.errorbar(m, yi, xerr=e, fmt="o", color=verdict_color(metric, verdict), capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        _row_ticks(ax, [_config_label({c: row[c] for c in ref}, ref) for _, row in d.iterrows()], ax is axes[0])
        diagnostic = better_direction(metric) is None
        ax.set_title(label_of(metric) + ("\n(diagnostic: neither way is better)" if diagnostic else ""), fontsize="small")
    fig.supxlabel("configuration minus the reference", fontsize="small")
    shown = [m for m in metrics if better_direction(m) is not None]
    caption = ("green: better than the reference, red: worse (the interval excludes 0), grey: not resolved"
               if shown else "")
    diagnostics = [label_of(m) for m in metrics if better_direction(m) is None]
    if diagnostics:
        caption += ("; " if caption else "") + f"{', '.join(diagnostics)}: a diagnostic, one colour (neither way is better)"
    _caption(fig, f"minus the reference ({_config_label(ref, {}, per_line=len(ref))}), paired by seed, 95 % t-interval\n"
                  f"{caption}\n{resolution_line(diffs[metrics[0]], metrics[0])}")
    fig.tight_layout()
    return fig


def configuration_plot(table: pd.DataFrame, spec, metrics: Iterable[str] = ("t2v_R@1",)):
    """One point per configuration (mean over seeds, 95 % t-interval), labelled by what differs from the
    grid's reference (every key where there is none); the reference's mean dashed. Returns the figure.

    For grids whose keys do not cross (one change at a time, ``irrelevant`` rules): a figure per key would
    average configurations that differ in another key."""
    cols = [c for c in spec.columns.values() if c in table]
    ref = reference_config(spec)
    ok = table[table["status"] == "ok"]
    configs = [dict(zip(cols, key if isinstance(key, tuple) else (key,)))
               for key, _ in ok.groupby(cols, dropna=False, sort=False)]
    labels = [_config_label(c, ref) if ref else _config_label(c, {}) for c in configs]
    metrics = present(table, metrics)
    fig, axes = _panels(len(metrics), width=3.6, height=_rows_height(labels) * len(labels) + 1.3)
    for ax, metric in zip(axes, metrics):
        y = np.arange(len(configs))[::-1]
        for yi, config in zip(y, configs):
            m, hw, _ = mean_ci(select(table, config)[metric])
            lo, hi = _clip(metric, m - hw, m + hw) if np.isfinite(hw) else (m, m)
            ax.errorbar(m, yi, xerr=[[m - lo], [hi - m]], fmt="o", color=NEUTRAL, capsize=3)
        if ref:
            rm = mean_ci(select(table, ref)[metric])[0]
            if np.isfinite(rm):
                ax.axvline(rm, color="black", lw=0.8, ls="--")
        _row_ticks(ax, labels, ax is axes[0])
        ax.set_xlabel(label_of(metric))
    note = f"; dashed: the reference ({_config_label(ref, {}, per_line=len(ref))})" if ref else ""
    _caption(fig, f"one point per configuration: mean over seeds, 95 % t-interval{note}")
    fig.tight_layout()
    return fig


def _varying(table: pd.DataFrame, spec) -> tuple[list[str], list[str]]:
    """(numeric, categorical) columns of the grid's varying keys that take more than one value among ok runs.

    Numeric means numbers with at least three values; anything else is drawn as categories.
    """
    ok = table[table["status"] == "ok"]
    numeric, categorical = [], []
    for key, col in spec.columns.items():
        if col not in ok or ok[col].dropna().nunique() < 2:
            continue
        values = [v for v in spec.vary[key] if v is not None]
        if ok[col].dropna().nunique() >= 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            numeric.append(col)  # two numeric values read better as bars than as a line
        else:
            categorical.append(col)
    return numeric, categorical


def _configurations(table: pd.DataFrame, cols: list[str]) -> int:
    """How many distinct configurations the finished runs have over ``cols`` (a missing value is a level)."""
    ok = _as_labels(table[table["status"] == "ok"], cols)
    return len(ok[cols].drop_duplicates()) if cols else 1


def pools(table: pd.DataFrame, shown: list[str], varying: list[str]) -> bool:
    """Whether one mark per level of ``shown`` would average configurations that differ in another of
    the ``varying`` columns (never drawn: each bar, point or line point is one configuration)."""
    return _configurations(table, [c for c in shown if c]) < _configurations(table, varying)


def figures_for_grid(table: pd.DataFrame, spec, out: str | Path, metrics: Iterable[str] | None = None) -> list[Path]:
    """Draw the figures that fit what ``spec`` varies into ``out``; returns every file written.

    * two or more numeric keys: a heat map over the first two (e.g. ICL x IDL weights);
    * one numeric key: the metrics against it, one line per level of the other keys together
      (e.g. R@1 vs K per head / interaction mode);
    * categorical keys: bars per level; with two, grouped bars, or one bar per configuration where
      one key does not apply to some levels of the other (e.g. head x interaction). When a numeric
      key varies too, each bar is its level at the numeric value chosen on validation (e.g. each
      interaction mode at its best K), labelled with that value;
    * where one of those would average configurations that differ in a key it does not show (``pools``:
      one change at a time, e.g. the variant grid), ``configurations``: one point per configuration.
    """
    metrics = list(metrics or spec.metrics)
    numeric, categorical = _varying(table, spec)
    varying = numeric + categorical
    paths: list[Path] = []
    pooled = False
    if numeric and len(categorical) >= 2:
        # several categorical keys next to a numeric one (e.g. head x interaction x K): one level per
        # configuration ("glscl / local"), so a line never averages over a key it does not show
        col = "_".join(categorical)
        labels = [" / ".join(str(v) for v in row if not is_missing(v)) for row in table[categorical].itertuples(index=False)]
        table, categorical = table.assign(**{col: labels}), [col]
        varying = numeric + categorical
    if len(numeric) >= 2:
        if pools(table, numeric[:2], varying):
            pooled = True
        else:
            paths += save(metric_heatmap(table, numeric[1], numeric[0], metrics), out, f"heatmap_{numeric[0]}_x_{numeric[1]}")
    elif len(numeric) == 1:
        hue = categorical[0] if categorical else None
        name = f"{numeric[0]}" + (f"_by_{hue}" if hue else "")
        if pools(table, [numeric[0], hue], varying):
            pooled = True
        else:
            paths += save(line_plot(table, numeric[0], hue, metrics), out, name)
    if len(numeric) == 1 and categorical and "best_val_score" in table:
        col, x = categorical[0], numeric[0]
        best = best_by_validation(table, col, x).copy()
        best[col] = [f"{fmt_value(c)}\n{SHORT.get(x, x)}={fmt_value(k)}" if not is_missing(k) else fmt_value(c)
                     for c, k in zip(best[col], best[x])]
        if pools(best, [col], varying):
            pooled = True
        else:
            paths += save(bar_plot(best, col, None, metrics, title=f"each at its {SHORT.get(x, x)} chosen on validation; "
                                                                  "mean over seeds, 95 % t-interval"), out, f"bars_{col}_best_{x}")
        categorical = categorical[1:]
    ok = table[table["status"] == "ok"]
    if len(categorical) == 2 and not numeric and ok[categorical].isna().any().any():
        # one key does not apply to some levels of the other (e.g. interaction for mean pooling): a bar per configuration
        col = " / ".join(categorical)
        labels = ["\n".join(str(v) for v in row if not is_missing(v)) for row in table[categorical].itertuples(index=False)]
        paths += save(bar_plot(table.assign(**{col: labels}), col, None, metrics), out, f"bars_{'_'.join(categorical)}")
    elif len(categorical) == 2 and not numeric and not pools(table, categorical, varying):
        paths += save(bar_plot(table, categorical[0], categorical[1], metrics), out, f"bars_{categorical[0]}_by_{categorical[1]}")
    elif len(categorical) == 1 and not numeric and not pools(table, categorical, varying):
        paths += save(bar_plot(table, categorical[0], None, metrics), out, f"bars_{categorical[0]}")
    elif categorical and not numeric:
        pooled = True  # three or more keys, or keys that do not cross: a figure per key would average configurations
    if pooled:
        paths += save(configuration_plot(table, spec, metrics), out, "configurations")
    fig = reference_plot(table, spec, metrics) if spec.reference else None
    if fig is not None:
        paths += save(fig, out, "paired_vs_reference")
    return paths


# -- tables and findings for the report ---------------------------------------------------------

