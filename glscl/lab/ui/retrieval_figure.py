"""One caption's retrieval as a figure: frame strips of its videos, and their scores split into the parts of S.

``plot_retrieval`` (what ``RetrievalExplorer.figure`` draws): with the caption's own video among the rows,
every score is shown as its difference from that video's, part by part (``difference_bars``: the
differences that decide a ranking can be a thousandth of the score); otherwise the parts themselves
(``score_bars``, stacked). The rows below the top k (the caption's own video and its twin or neighbour at
their true ranks) get a panel of their own, each panel's axis fitted to its own differences: the
difference to a twin can be a hundredth of the top videos'.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from glscl.lab.ui.viz import SMALL, show_strip


def score_bars(ax, parts: dict[str, Sequence[float]], labels: Sequence[str], matches: Sequence[bool] | None = None,
               title: str | None = None, colours: Sequence[str] | None = None):
    """Horizontal stacked bars, one colour per additive part of S (e.g. S_g and lambda S_l), per item.

    ``parts``: legend label -> one contribution per item; ``colours``: one per part, in order. Positive
    contributions stack to the right of 0, negative ones to the left; a dot marks the total S.
    """
    y = np.arange(len(labels))[::-1]
    right, left, total = np.zeros(len(y)), np.zeros(len(y)), np.zeros(len(y))
    for i, (name, values) in enumerate(parts.items()):
        v = np.asarray(values, float)
        ax.barh(y, v, left=np.where(v >= 0, right, left), color=colours[i] if colours else f"C{i}", label=name)
        right, left, total = right + np.clip(v, 0, None), left + np.clip(v, None, 0), total + v
    ax.scatter(total, y, color="black", s=12, zorder=3, label="S")
    return _finish(ax, y, labels, matches, "contribution to S", 3, title)


def _finish(ax, y, labels, matches, xlabel: str, legend_columns: int, title: str | None):
    """The 0 line, item labels (the caption's own videos in bold green), x label, legend below, title."""
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=SMALL)
    ax.tick_params(axis="x", labelsize=SMALL)
    ax.set_xlabel(xlabel, fontsize=SMALL + 1)
    for tick, hit in zip(ax.get_yticklabels(), matches or []):
        if hit:
            tick.set_color("#2ca02c")
            tick.set_fontweight("bold")
    if legend_columns:
        ax.legend(fontsize=SMALL, loc="upper center", bbox_to_anchor=(0.5, 0), borderaxespad=3.5, ncol=legend_columns,
                  frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def difference_bars(ax, parts: dict[str, Sequence[float]], labels: Sequence[str], matches: Sequence[bool] | None = None,
                    title: str | None = None, colours: Sequence[str] | None = None, legend: bool = True):
    """Each item's score minus the reference item's, part by part: one bar per part (side by side)
    and a dot with its value for the difference in S (the sum of the parts' differences). The x axis
    spans the largest |difference| drawn (bars and dots), so small differences stay visible.

    ``parts``: legend label -> one difference per item (0 for the reference itself). A negative
    difference in S means the item scores below the reference: for retrieval, the caption's own
    video is the reference, so every video that outranks it shows a positive difference.
    """
    y = np.arange(len(labels))[::-1].astype(float)
    n = max(1, len(parts))
    h = 0.8 / n
    total = np.zeros(len(y))
    for i, (name, values) in enumerate(parts.items()):
        v = np.asarray(values, float)
        ax.barh(y + 0.4 - h * (i + 0.5), v, height=h * 0.9, color=colours[i] if colours else f"C{i}", label=name)
        total += v
    ax.scatter(total, y, color="black", s=14, zorder=3, label="difference in S")
    span = max(float(np.abs(np.concatenate([np.asarray(v, float) for v in parts.values()] + [total])).max()), 1e-6)
    for yi, t in zip(y, total):
        ax.text(span * 1.08, yi, f"{t:+.4f}", va="center", ha="left", fontsize=SMALL)
    ax.set_xlim(-span * 1.1, span * 1.55)
    return _finish(ax, y, labels, matches, "score minus the caption's video's", 1 if legend else 0, title)


ROLE_NOTES = {"match": "the caption's video", "twin": "its time-reversed twin", "variant": "its one-detail neighbour (one word apart)"}


def plot_retrieval(caption: str, rows: Sequence[dict], frames_of: Callable[[int], tuple], title: str | None = None,
                   labels: dict[str, str] | None = None, colours: dict[str, str] | None = None):
    """One caption's videos: a frame strip per video and its score, split into the parts of S.

    rows: what ``RetrievalExplorer.search`` or ``example_rows`` return (rank, index, video_id, score,
    parts, match, optional role); frames_of(index) -> (frames (T, H, W, 3) uint8, mask); labels,
    colours: per part name, for the legend (default: the part names). When one row is the caption's
    own video (match), the right panel shows every score as its difference from that video's, part
    by part (the differences that decide the ranking can be a thousandth); otherwise the parts
    themselves. Returns the figure.
    """
    import matplotlib.pyplot as plt

    k = len(rows)
    fig = plt.figure(figsize=(11, 0.95 * k + 1.3))
    grid = fig.add_gridspec(k, 2, width_ratios=[2.6, 1], wspace=0.3, hspace=0.5)
    for i, row in enumerate(rows):
        ax = fig.add_subplot(grid[i, 0])
        frames, mask = frames_of(row["index"])
        role = row.get("role") or ("match" if row.get("match") else None)
        note = f"  <- {ROLE_NOTES.get(role, role)}" if role else ""
        show_strip(frames, mask, ax=ax, labels=[""] * len(frames),
                   title=f"#{row['rank']} {row['video_id']}  S = {row['score']:.4f}{note}", title_size=SMALL + 1)
    names = list(rows[0]["parts"]) if rows else []
    labels, colours = labels or {}, colours or {}
    ticks = [f"#{r['rank']} {r['video_id']}" for r in rows]
    matches = [bool(r.get("match")) for r in rows]
    palette = [colours.get(n, f"C{i}") for i, n in enumerate(names)]
    own = next((r for r in rows if r.get("match")), None)
    if own is None:
        score_bars(fig.add_subplot(grid[:, 1]), {labels.get(n, n): [r["parts"][n] for r in rows] for n in names}, ticks,
                   matches, title="score parts", colours=palette)
    else:
        diffs = {n: [r["parts"][n] - own["parts"][n] for r in rows] for n in names}
        top = next((i for i, r in enumerate(rows) if r["rank"] != i + 1), k)   # rows 0..top-1: ranks 1..top
        below = [abs(sum(diffs[n][i] for n in names)) + sum(abs(diffs[n][i]) for n in names) for i in range(top, k)]
        groups = [(0, top), (top, k)] if 0 < top < k and max(below) > 0 else [(0, k)]
        panels = grid[:, 1].subgridspec(len(groups), 1, height_ratios=[b - a for a, b in groups], hspace=0.55)
        for g, (a, b) in enumerate(groups):
            last = g == len(groups) - 1
            ax = difference_bars(fig.add_subplot(panels[g]), {f"difference in {labels.get(n, n)}": v[a:b] for n, v in diffs.items()},
                                 ticks[a:b], matches[a:b], colours=palette, legend=last,
                                 title="vs the caption's video" if g == 0 else "below the top (own x scale)")
            if not last:
                ax.set_xlabel("")
    fig.suptitle(title or f"\"{caption}\"", fontsize=10, x=0.02, ha="left")
    return fig
