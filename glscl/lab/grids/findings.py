"""Findings: every shipped grid run at its defaults, and one verdict per claim, in one markdown page.

    python -m glscl.lab.grids.findings [--grids default,losses,...] [--out docs/findings.md] [--render-only]

Each grid runs with ``glscl ablate`` into ``runs/grids/<name>`` (resumable: a rerun skips finished
runs), then the page is rendered from the grids' ``results.csv``: per grid its figures (copied
next to the page), its summary table, and its wall time; per claim (``ablations/findings/claims.yaml``) the
difference between two configurations paired by seed, with a 95 % t-interval, and a verdict:

* **supported**: the interval lies above 0 (in the claim's favour);
* **contradicted**: the interval lies below 0;
* **not resolved at this power**: the interval contains 0. The page then gives the half-width and
  the seeds that would resolve a 1-point difference at the measured noise.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from glscl.lab.grids.figures import figures_for_grid, fmt_value, mean_ci, summary_table, t_quantile
from glscl.lab.grids.folder import read_table

GRIDS = ("default", "losses", "sharing", "variant", "queries", "alpro")
"""The shipped grids, in the order the page shows them."""


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


def _select(table: pd.DataFrame, cond: dict) -> pd.Series | None:
    sub = table[table["status"] == "ok"]
    for key, value in cond.items():
        if key not in sub:
            return None
        sub = sub[sub[key].isna()] if value is None else sub[sub[key].astype(str) == str(value)]
    return sub.set_index("seed")


def paired(table: pd.DataFrame, a: dict, b: dict, metric: str) -> dict:
    """a - b per shared seed: mean, half-width, n, sd, and the per-seed differences."""
    sa, sb = _select(table, a), _select(table, b)
    if sa is None or sb is None or metric not in sa or metric not in sb:
        return {"n": 0, "mean": math.nan, "hw": math.nan, "sd": math.nan, "diffs": []}
    common = sa.index.intersection(sb.index)
    diffs = (sa.loc[common, metric].astype(float) - sb.loc[common, metric].astype(float)).to_numpy()
    m, hw, n = mean_ci(diffs)
    sd = float(np.std(diffs, ddof=1)) if n > 1 else math.nan
    return {"n": n, "mean": m, "hw": hw, "sd": sd, "diffs": [float(x) for x in diffs],
            "a": float(sa.loc[common, metric].mean()) if n else math.nan,
            "b": float(sb.loc[common, metric].mean()) if n else math.nan}


def verdict(d: dict) -> str:
    if d["n"] < 2 or not np.isfinite(d["hw"]):
        return "not resolved (fewer than 2 paired seeds)"
    if d["mean"] - d["hw"] > 0:
        return "supported"
    if d["mean"] + d["hw"] < 0:
        return "contradicted"
    return "not resolved at this power"


def _cond(c: dict) -> str:
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in c.items())


def claim_lines(claim: dict, table: pd.DataFrame) -> list[str]:
    """The markdown of one claim: verdict, effect and interval, per-seed differences, resolution."""
    metric = claim.get("metric", "t2v_R@1")
    d = paired(table, claim["a"], claim["b"], metric)
    if d["n"] == 0:
        return [f"- **{claim['claim']}**: no paired runs found ({_cond(claim['a'])} vs {_cond(claim['b'])})."]
    need = seeds_to_resolve(d["sd"])
    lines = [f"- **{claim['claim']}**: **{verdict(d)}**. {metric}: {d['a']:.1f} ({_cond(claim['a'])}) vs "
             f"{d['b']:.1f} ({_cond(claim['b'])}); paired difference {d['mean']:+.1f} ± {d['hw']:.1f} "
             f"(95 % t, n={d['n']} seeds; per seed {', '.join(f'{x:+.1f}' for x in d['diffs'])}). "
             f"Resolution: half-width {d['hw']:.1f} points; a 1-point difference needs "
             + (f"{need} seeds at this noise (sd {d['sd']:.1f})." if need else "more than 1000 seeds at this noise.")]
    for extra in claim.get("also", []):
        e = paired(table, claim["a"], claim["b"], extra)
        if e["n"]:
            lines.append(f"  - {extra}: {e['a']:.3g} vs {e['b']:.3g}, paired difference {e['mean']:+.3g} ± {e['hw']:.2g}.")
    return lines


def _markdown_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = [f"{v:.3g}" if isinstance(v, float) and abs(v) < 10 else (f"{v:.1f}" if isinstance(v, float) else fmt_value(v))
                 for v in row]
        out.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(out)


def render(grids: list[str], grid_root: Path, out: Path, claims_file: Path, timings: dict) -> str:
    """Write the findings page ``out`` (figures under ``out.parent / 'findings'``); returns its text."""
    fig_root = out.parent / "findings"
    claims = yaml.safe_load(claims_file.read_text())
    tables = {}
    parts = ["# Findings of the shipped grids", "",
             "Every grid in `ablations/` run at its defaults on the embedded world (head trained from the frozen "
             "backbone's feature cache, 1,000 test captions, checkpoints chosen on validation), regenerated by "
             "`make findings`. Intervals are 95 % Student-t over seeds; differences are paired by seed. "
             "An effect whose interval contains 0 is *not resolved at this power*.", ""]
    total = sum(t for t in timings.values() if t)
    parts += [f"Wall time of the grids run here, on the 2-core CPU while other work shared it: {total / 60:.1f} min "
              f"({', '.join(f'{g} {timings[g] / 60:.1f} min' for g in grids if timings.get(g))}).", ""]
    for g in grids:
        folder = grid_root / g
        if (folder / "results.csv").is_file():
            tables[g] = read_table(folder)
    missing = [g for g in grids if g not in tables]
    partial = [f"{g} ({int((t['status'] == 'ok').sum())} of {len(t)} runs)" for g, (t, _) in tables.items()
               if (t["status"] != "ok").any()]
    if missing or partial:
        parts += ["Not complete: " + "; ".join([*(f"{g} (not run)" for g in missing), *partial])
                  + ". Claims on those grids are left out or marked; `make findings` resumes them.", ""]
    parts += ["## Verdicts", ""]
    for claim in claims:
        if claim["grid"] in tables:
            parts += claim_lines(claim, tables[claim["grid"]][0])
    parts.append("")
    for g in grids:
        if g not in tables:
            parts += [f"## {g}", "", "Not run.", ""]
            continue
        table, spec = tables[g]
        ok = int((table["status"] == "ok").sum())
        parts += [f"## {g}", "", spec.description.strip(), "",
                  f"{ok} of {len(table)} runs finished; seeds {spec.seeds}.", ""]
        for p in figures_for_grid(table, spec, fig_root / g):
            if p.suffix == ".png":  # the page shows PNGs; PDF and SVG stay in the grid's own figures/
                parts += [f"![{g}: {p.stem}](findings/{g}/{p.name})", ""]
            else:
                p.unlink()
        parts += [_markdown_table(summary_table(table, spec)), ""]
    text = "\n".join(parts)
    out.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m glscl.lab.grids.findings", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grids", default=",".join(GRIDS), help="comma-separated grid names (ablations/<name>.yaml)")
    ap.add_argument("--ablations", default="ablations", help="folder of the grid files (and findings/claims.yaml)")
    ap.add_argument("--grid-root", default="runs/grids", help="where the grids' folders go")
    ap.add_argument("--out", default="docs/findings.md", help="the page (figures go to <its folder>/findings/)")
    ap.add_argument("--render-only", action="store_true", help="do not run the grids; render what is there")
    args = ap.parse_args(argv)
    grids = [g for g in args.grids.split(",") if g]
    out, grid_root = Path(args.out), Path(args.grid_root)
    out.parent.mkdir(parents=True, exist_ok=True)
    timing_file = out.parent / "findings" / "timings.json"
    timing_file.parent.mkdir(parents=True, exist_ok=True)
    timings = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    status = 0
    if not args.render_only:
        for g in grids:
            t0 = time.perf_counter()
            print(f"grid {g}: glscl ablate {args.ablations}/{g}.yaml --out {grid_root / g}", flush=True)
            rc = subprocess.call([sys.executable, "-m", "glscl.cli", "ablate", f"{args.ablations}/{g}.yaml",
                                  "--out", str(grid_root / g)])
            timings[g] = timings.get(g, 0.0) + (time.perf_counter() - t0)  # resumed runs add up
            timing_file.write_text(json.dumps(timings, indent=2))
            status = status or rc
    for g in grids:  # figures are regenerated from the tables; stale copies go
        shutil.rmtree(out.parent / "findings" / g, ignore_errors=True)
    render(grids, grid_root, out, Path(args.ablations) / "findings" / "claims.yaml", timings)
    print(f"findings -> {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
