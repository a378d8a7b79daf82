"""The main job on the embedded default: world -> tiny CLIP pre-training -> GLSCL vs baselines -> table.

    glscl demo [--world scenes|objects] [--quick] [--root data/world] [--out runs/demo]

1. generate the procedural world (real mp4 files in MSR-VTT's layout);
2. pre-train a tiny open_clip model on single frames and their captions (our stand-in for CLIP);
3. cache the frozen backbone's features of every split;
4. train three heads the same way from the cache: GLSCL (global + local interaction), its global
   interaction alone, and CLIP4Clip-style mean pooling (same temporal transformer);
5. evaluate each on the world's test split with the checkpoint chosen on validation, and print
   one table: t2v and v2t R@1/R@5/R@10/MdR/MnR and twin accuracy (chance = 50).

The world, its tiny CLIP and the config come from ``glscl.engine.embedded``; ``--quick`` is its quick
(the small world, a short pre-training, the short schedule), in its own folders (``-quick``).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from glscl.config import ConfigError, RunConfig, build_config
from glscl.engine.embedded import PRESETS, demo_config, prepare_embedded, quick_root
from glscl.engine.results_folder import FolderLock, check_run_folder
from glscl.engine.run import run
from glscl.files import atomic_write, write_json

HEADS = (("GLSCL", "glscl", {"model.head": "glscl", "model.interaction": "both"}),
         ("global only", "global", {"model.head": "glscl", "model.interaction": "global"}),
         ("mean pooling", "mean", {"model.head": "mean_pooling"}))
"""(row of the table, run name, config overrides) of the three runs."""


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(prog="glscl demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default="scenes", choices=tuple(PRESETS),
                    help="the embedded world: scenes (the default) or objects (the order and twin probes)")
    ap.add_argument("--root", help="where the world is generated, reused if present (default data/world, "
                                   "data/world-objects for --world objects; with -quick appended for --quick)")
    ap.add_argument("--out", help="results folders of the three runs (default runs/demo, runs/demo-objects; "
                                  "with -quick appended for --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="the small world, a short pre-training and the short schedule (seconds; for tests)")
    ap.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = ap.parse_args(argv)
    suffix = "" if args.world == "scenes" else f"-{args.world}"
    root, out = f"data/world{suffix}", f"runs/demo{suffix}"
    if args.quick:
        root, out = quick_root(root), quick_root(out)
    args.root, args.out = args.root or root, args.out or out
    with FolderLock(args.out, "glscl demo"):  # one demo per results folder
        return _demo(args)


def _demo(args) -> list[dict]:
    progress = not args.no_progress
    t0 = time.perf_counter()
    root = Path(args.root)
    print(f"[1-2/4] {args.world} world -> {root}, then pre-training a tiny CLIP on single frames (both reused if present)")
    clip = prepare_embedded(root, args.quick, progress, world=args.world)
    base = demo_config(str(root), str(clip), args.out, str(root / "cache"), args.quick, args.world)
    records = []
    for label, name, overrides in HEADS:
        print(f"[3/4] training {label} ({', '.join(f'{k}={v}' for k, v in overrides.items())}) from the feature cache")
        cfg = build_config(base, {"name": name, **overrides})
        records.append({"label": label, **run(cfg, progress=progress, overwrite=_stale(cfg))})
    print(f"[4/4] test split of the world, checkpoints chosen on validation ({time.perf_counter() - t0:.0f} s in all)\n")
    table = format_table(records)
    print(table)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(args.out) / "table.md", lambda tmp: tmp.write_text(table + "\n"))
    write_json(Path(args.out) / "results.json", records)
    return records


def _stale(cfg: RunConfig) -> bool:
    """True when ``<out>/<name>`` holds a run of another config (e.g. the preset changed since): the demo
    then retrains, and the old folder is moved aside to ``<name>.old-<time>``, never reused."""
    try:
        check_run_folder(cfg)
    except ConfigError as e:
        print(f"      {e.args[0].split(';')[0]}: retraining, the old folder is kept beside it")
        return True
    return False


RETRIEVAL = ("t2v_R@1", "t2v_R@5", "t2v_R@10", "t2v_MdR", "t2v_MnR", "v2t_R@1", "v2t_R@5", "v2t_R@10", "v2t_MdR", "v2t_MnR",
             "twin_accuracy", "t2v_R@1:single", "t2v_R@1:while", "t2v_R@1:then")
MECHANISM = (("global_captioned_mass", "global weight on captioned frames"),
             ("global_captioned_chance", "(uniform weights)"),
             ("segment_coverage", "segments the queries cover"),
             ("segment_coverage_one", "(all queries on one)"),
             ("frame_cosine", "frame cosine"))


def _table(records: list[dict], columns, label, fmt: str) -> list[str]:
    """A markdown table of the columns that some record holds ('-' where one lacks it)."""
    columns = [(c, name) for c, name in columns if any(c in r for r in records)]
    lines = ["| head | " + " | ".join(name for _, name in columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for r in records:
        lines.append(f"| {r[label]} | " + " | ".join(format(r[c], fmt) if c in r else "-" for c, _ in columns) + " |")
    return lines


def format_table(records: list[dict]) -> str:
    """The demo's table: retrieval (with twin accuracy on the objects world, R@1 per caption kind on the
    scenes world), then the mechanism metrics the world provides."""
    names = [(c, c.replace("_", " ").replace("twin accuracy", "twin acc").replace("t2v R@1:", "R@1 "))
             for c in RETRIEVAL]
    lines = _table(records, names, "label", ".1f")
    if any(c in r for r in records for c, _ in MECHANISM):
        lines += ["", *_table(records, MECHANISM, "label", ".2f")]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
