"""Report of the efficiency bench: the summary at the benchmark size (ratios to GLSCL, goals), the
printed tables, and the growth figure (cost vs gallery size, one line per head).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

# the GLSCL paper's similarity-head FLOPs for MSR-VTT 1k-A (its table, CLIP excluded; the values match multiply-adds)
PAPER_GMACS = {"mean": 0.5, "xpool": 275.0, "xclip": 220.9, "glscl": 1.0}


def summarise(record: dict, n: int, m: int, peak: float) -> dict:
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
    for h in heads.values():
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
        ours = {k: sm["rows"][k]["flops"] / 1e9 for k in PAPER_GMACS}
        ours["glscl pairwise"] = sm["glscl_stages"]["pairwise S_g + lambda S_l (per pair)"]["flops"] / 1e9
        lines += ["", "Paper's table (GLSCL paper; 1k x 1k; it prints multiply-adds, doubled here) vs this count, GFLOPs:",
                  "  " + ", ".join(f"{k} {2 * v:g} vs {ours[k]:.1f}" for k, v in PAPER_GMACS.items())
                  + f"; GLSCL pairwise stage alone {ours['glscl pairwise']:.1f}"]
    return "\n".join(lines)



# ----------------------------------------------------------------------------------------------
# the growth figure
# ----------------------------------------------------------------------------------------------

COST_LABELS = {"flops": ("GFLOP (FlopCounterMode, 2 per multiply-add)", 1e-9), "time": ("seconds (wall clock)", 1.0),
               "peak_bytes": ("peak tensor memory (MiB)", 2.0 ** -20)}
COST_TITLES = {"flops": "similarity-stage FLOPs", "time": "similarity-stage wall time", "peak_bytes": "peak tensor memory"}


def plot_growth(record: dict, keys: Sequence[str] = ("flops", "time"), axes=None, heads: Sequence[str] | None = None):
    """Log-log cost of the similarity stage vs gallery size M, one line per head of a bench record.

    Filled markers and solid segments: measured; hollow markers and dashed segments: extrapolated (or
    analytic). ``record``: as ``run`` returns it, or bench.json as loaded (cell keys may be strings);
    ``heads``: which heads, in order (default all). Returns the axes.
    """
    if axes is None:
        import matplotlib.pyplot as plt
        _, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.8))
    axes = list(np.atleast_1d(axes))
    n = record["settings"]["texts"]
    for i, name in enumerate(list(heads) if heads is not None else list(record["heads"])):
        h = record["heads"][name]
        color, width = f"C{i % 10}", 2.5 if name.startswith("glscl") else 1.5
        for ax, key in zip(axes, keys):
            scale = COST_LABELS.get(key, (key, 1.0))[1]
            pts = [(float(m), c[key] * scale, c.get("measured", False))
                   for m, c in sorted(h["cells"].items(), key=lambda kv: float(kv[0])) if c.get(key) is not None]
            for (x0, y0, m0), (x1, y1, m1) in zip(pts, pts[1:]):  # solid between measured points, dashed towards extrapolated ones
                ax.plot([x0, x1], [y0, y1], "-" if m0 and m1 else "--", color=color, lw=width, alpha=0.8)
            for x, y, measured in pts:
                ax.plot([x], [y], "o", color=color, markerfacecolor=color if measured else "white", ms=6)
        axes[-1].plot([], [], "-", color=color, lw=width, label=h.get("title", name))
    for ax, key in zip(axes, keys):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"gallery size M (videos), {n} texts")
        ax.set_ylabel(COST_LABELS.get(key, (key, 1.0))[0])
        ax.set_title(COST_TITLES.get(key, key), fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                    title="filled: measured\nhollow, dashed: extrapolated", title_fontsize=7)
    return axes


def save_growth(record: dict, path: str | Path) -> None:
    """The growth figure (FLOPs and time) written to ``path`` (no pyplot: safe inside notebooks)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 5))
    plot_growth(record, axes=fig.subplots(1, 2))
    fig.savefig(path, dpi=120, bbox_inches="tight")
