"""Findings: every shipped grid run at its defaults, and one verdict per claim, in one markdown page.

    python -m glscl.lab.grids.findings [--grids default,losses,...] [--out docs/findings.md] [--render-only]

Each grid runs with ``glscl ablate`` into ``runs/grids/<name>`` (resumable: a rerun skips finished
runs), then the page is rendered from the grids' ``results.csv``: per grid its figures and its table
(copied next to the page, ``docs/findings/<grid>/``: ``results.csv`` and ``grid.yaml``, so that
``glscl.lab.grids.folder.read_table`` reads them there; the tutorials quote them), its summary table,
every configuration minus the grid file's ``reference`` paired by seed with the resolution line
(``glscl.lab.grids.stats``), and its wall time; per claim (``ablations/findings/claims.yaml``) the
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

import pandas as pd
import yaml

from glscl.files import write_json, write_text
from glscl.lab.grids.figures import figures_for_grid
from glscl.lab.grids.folder import read_table
from glscl.lab.grids.stats import against_reference, paired, reference_config, resolution_line
from glscl.lab.grids.summaries import fmt_value, summary_table

GRIDS = ("default", "losses", "sharing", "variant", "queries", "alpro", "default-objects", "losses-objects")
"""The shipped grids, in the order the page shows them: each grid file on the scenes world (its ``base``,
the embedded preset), and ``<grid>-objects``, the same file on the objects world, the control."""
OBJECTS = "-objects"
OBJECTS_BASE = "embedded-objects"
KINDS = ("single", "while", "then")
OTHER_METRICS = ("v2t_R@1", "twin_accuracy")
"""Metrics each claim also reports below its headline metric, where the grid's table has them."""
MECHANISM = (("frame_cosine", "frame cosine (backbone features, one video)"),
             ("global_captioned_mass", "global weight on the captioned frames"),
             ("global_captioned_chance", "  ... what uniform weights give"),
             ("global_weight_entropy", "global weight entropy (1 = uniform)"),
             ("segment_coverage", "segments hit by some query's attention peak"),
             ("segment_coverage_one", "  ... if every query looked at one segment"),
             ("segment_coverage_random", "  ... K uniformly random peaks"),
             ("video_query_cos", "video query cosine (1 = collapsed)"))


def grid_file(job: str) -> str:
    """The grid file a job runs (``default-objects`` runs ``default``)."""
    return job.removesuffix(OBJECTS)


def world_of(job: str) -> str:
    return "objects" if job.endswith(OBJECTS) else "scenes"


def _cond(c: dict) -> str:
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in c.items())


def claim_lines(claim: dict, table: pd.DataFrame, world: str = "scenes") -> list[str]:
    """The markdown of one claim on one world: verdict, effect and interval, per-seed differences,
    resolution; then the same difference a - b of each of ``OTHER_METRICS`` the table has (interval and
    verdict), the claim's ``also`` diagnostics, and the verdict per caption kind where the records hold R@1 per kind."""
    metric = claim.get("metric", "t2v_R@1")
    d = paired(table, claim["a"], claim["b"], metric)
    if d.n == 0:
        return [f"- **{claim['claim']}** ({world}): no paired runs found ({_cond(claim['a'])} vs {_cond(claim['b'])})."]
    lines = [f"- **{claim['claim']}** ({world} world): **{d.verdict}**. {metric}: {d.a:.1f} ({_cond(claim['a'])}) vs "
             f"{d.b:.1f} ({_cond(claim['b'])}); paired difference {d.mean:+.1f} ± {d.hw:.1f} "
             f"(95 % t, n={d.n} seeds; per seed {', '.join(f'{x:+.1f}' for x in d.diffs)}). "
             f"Resolution: {d.resolution()}."]
    for other in OTHER_METRICS:
        if other != metric and other in table.columns:
            o = paired(table, claim["a"], claim["b"], other)
            if o.n:
                lines.append(f"  - {other}: {o.a:.1f} vs {o.b:.1f}, paired difference {o.mean:+.1f} ± {o.hw:.1f} "
                             f"(n={o.n}): {o.verdict}.")
    for extra in claim.get("also", []):
        e = paired(table, claim["a"], claim["b"], extra)
        if e.n:
            lines.append(f"  - {extra}: {e.a:.3g} vs {e.b:.3g}, paired difference {e.mean:+.3g} ± {e.hw:.2g}.")
    for kind in KINDS:
        column = f"{metric}:{kind}"
        if column in table.columns and metric == "t2v_R@1":
            k = paired(table, claim["a"], claim["b"], column)
            if k.n:
                count = table[f"captions:{kind}"].dropna()
                size = f", {int(count.iloc[0])} captions" if len(count) else ""
                lines.append(f"  - {kind} captions{size}: {k.a:.1f} vs {k.b:.1f}, paired difference "
                             f"{k.mean:+.1f} ± {k.hw:.1f}: {k.verdict}.")
    return lines


def mechanism_lines(tables: dict) -> list[str]:
    """The mechanism metrics side by side: scenes and objects world (default grid: GLSCL, both
    interactions, K = 8; losses grid: IDL 1.0 vs off), means over seeds."""
    both = {"head": "glscl", "interaction": "both", "num_queries": 8}
    columns = {"scenes, GLSCL": ("default", both), "objects, GLSCL": ("default-objects", both),
               "scenes, IDL off": ("losses", {"icl_weight": 0.1, "idl_weight": 0.0}),
               "objects, IDL off": ("losses-objects", {"icl_weight": 0.1, "idl_weight": 0.0})}
    values = {}
    for label, (job, where) in columns.items():
        if job not in tables:
            continue
        table = tables[job][0]
        rows = table[table["status"] == "ok"]
        for key, value in where.items():
            if key in rows.columns:
                rows = rows[rows[key] == value]
        values[label] = {m: rows[m].mean() if m in rows.columns and len(rows) else float("nan") for m, _ in MECHANISM}
    if not values:
        return []
    header = "| measure | " + " | ".join(values) + " |"
    lines = ["## The two worlds: what the mechanisms do", "",
             "Means over the seeds of the finished runs (test split). The objects world's captions describe "
             "whole clips, so its captioned mass is 1 by construction and it has no segments to cover.", "",
             header, "|" + "---|" * (len(values) + 1)]
    for metric, label in MECHANISM:
        cells = [v[metric] for v in values.values()]
        lines.append(f"| {label} | " + " | ".join("-" if not math.isfinite(c) else f"{c:.2f}" for c in cells) + " |")
    return [*lines, ""]


def threads_lines(path: Path) -> list[str]:
    """The reproducibility section, from what ``benchmarks/bench_threads.py`` wrote (nothing when absent)."""
    if not path.is_file():
        return []
    m = json.loads(path.read_text())
    lines = ["## Reproducibility: seeds and threads", "",
             "The same machine, thread count and seed give bit-identical results (a test checks it: "
             "`tests/test_engine.py::test_same_seed_and_threads_give_bit_identical_results`). Another thread count "
             "sums floats in another order, so its results differ. Measured by `" + m["command"] + "` (the embedded "
             f"default, seeds {m['seeds']}, each thread count with its own feature cache):", ""]
    within = True
    for metric in ("t2v_R@1", "v2t_R@1"):
        r = m[metric]
        below = r["max_abs_difference"] < min(r["seed_sd_1_thread"], r["seed_sd_2_threads"])
        within = within and below
        lines.append(f"- {metric}: 2 threads minus 1 thread per seed "
                     f"{', '.join(f'{d:+.1f}' for d in r['difference_2_minus_1'])} (largest {r['max_abs_difference']:.1f}); "
                     f"the sd over seeds is {r['seed_sd_1_thread']:.1f} at 1 thread and {r['seed_sd_2_threads']:.1f} "
                     f"at 2 (the largest difference is {'below' if below else 'not below'} both); a second run at "
                     f"2 threads differs by {m['repeat_difference'][metric]:+.1f}.")
    verdict = ("within seed noise" if within else "by as much as the seed moves them, or more")
    return [*lines, "", "A grid runs all its runs at one thread count (the machine's CPUs // workers), so its paired "
                        f"differences compare like with like; runs at another thread count differ {verdict}.", ""]


def reference_lines(table: pd.DataFrame, spec, metric: str) -> list[str]:
    """The markdown of a grid's paired differences against its reference: a table and the resolution line."""
    ref = reference_config(spec)
    diffs = against_reference(table, spec, metric)
    if diffs.empty:
        return []
    if diffs["difference"].isna().all():
        return [f"No configuration has a finished seed paired with the reference ({_cond(ref)}).", ""]
    show = diffs[[*ref, metric, "difference", "half_width", "n", "seeds_for_1_point", "verdict"]].copy()
    show[metric] = [f"{v:.1f}" for v in show[metric]]
    show["difference"] = [f"{m:+.1f} ± {h:.1f}" for m, h in zip(diffs["difference"], diffs["half_width"])]
    show = show.drop(columns="half_width").rename(columns={"seeds_for_1_point": "seeds for 1 point"})
    return [f"Paired by seed against the reference ({_cond({k: v for k, v in ref.items() if v is not None})}, "
            f"{metric} {diffs['reference'].mean():.1f}): configuration minus reference.", "",
            _markdown_table(show), "", resolution_line(diffs, metric), ""]


def _markdown_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = [fmt_value(v) if not isinstance(v, float) or not math.isfinite(v) else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
                 for v in row]
        out.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(out)


def render(grids: list[str], grid_root: Path, out: Path, claims_file: Path, timings: dict,
           threads_file: Path = Path("benchmarks/results/threads.json")) -> str:
    """Write the findings page ``out`` (figures under ``out.parent / 'findings'``); returns its text."""
    fig_root = out.parent / "findings"
    claims = yaml.safe_load(claims_file.read_text())
    tables = {}
    parts = ["# Findings of the shipped grids", "",
             "Every grid in `ablations/` run at its defaults on the embedded scenes world, and the default and losses "
             "grids also on the objects world as the control (head trained from the frozen "
             "backbone's feature cache, except `alpro`, which trains end to end; 1,000 test captions, checkpoints "
             "chosen on validation), regenerated by "
             "`make findings`. Intervals are 95 % Student-t over seeds; differences are paired by seed. "
             "An effect whose interval contains 0 is *not resolved at this power*.", ""]
    total = sum(t for t in timings.values() if t)
    parts += [f"Wall time of the grids (`make findings` from empty, one grid after another, 2-core CPU): {total / 60:.1f} min "
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
    parts += mechanism_lines(tables)
    parts += threads_lines(threads_file)
    parts += ["## Verdicts", "",
              "Each claim on the scenes world (the embedded default), and on the objects world where its grid "
              "runs there too; below each, the same difference in video-to-text R@1 and twin accuracy (where the "
              "grid measures it), in the claim's diagnostics, and per caption kind (t2v R@1 of the captions of "
              "one kind, ranked against the whole gallery).", ""]
    for claim in claims:
        for job in (claim["grid"], claim["grid"] + OBJECTS):
            if job in tables:
                parts += claim_lines(claim, tables[job][0], world_of(job))
    parts.append("")
    for g in grids:
        if g not in tables:
            parts += [f"## {g}", "", "Not run.", ""]
            continue
        table, spec = tables[g]
        (fig_root / g).mkdir(parents=True, exist_ok=True)
        for name in ("results.csv", "grid.yaml"):   # the data this section is rendered from
            shutil.copyfile(grid_root / g / name, fig_root / g / name)
        ok = int((table["status"] == "ok").sum())
        parts += [f"## {g}", "", f"({world_of(g)} world) " + spec.description.strip(), "",
                  f"{ok} of {len(table)} runs finished; seeds {spec.seeds}.", ""]
        for p in figures_for_grid(table, spec, fig_root / g):
            if p.suffix == ".png":  # the page shows PNGs; PDF and SVG stay in the grid's own figures/
                parts += [f"![{g}: {p.stem}](findings/{g}/{p.name})", ""]
            else:
                p.unlink()
        parts += [_markdown_table(summary_table(table, spec)), ""]
        parts += reference_lines(table, spec, spec.metrics[0])
    text = "\n".join(parts)
    write_text(out, text)
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
            base = ["--base", OBJECTS_BASE] if world_of(g) == "objects" else []
            command = ["ablate", f"{args.ablations}/{grid_file(g)}.yaml", "--out", str(grid_root / g), *base]
            print(f"grid {g}: glscl {' '.join(command)}", flush=True)
            rc = subprocess.call([sys.executable, "-m", "glscl.cli", *command])
            timings[g] = timings.get(g, 0.0) + (time.perf_counter() - t0)  # resumed runs add up
            write_json(timing_file, timings)
            status = status or rc
    for g in grids:  # figures are regenerated from the tables; stale copies go
        shutil.rmtree(out.parent / "findings" / g, ignore_errors=True)
    render(grids, grid_root, out, Path(args.ablations) / "findings" / "claims.yaml", timings)
    print(f"findings -> {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
