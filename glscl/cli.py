"""The ``glscl`` command: world, pretrain, cache, train, eval, ablate, bench, demo.

Configs: ``--config run.yaml`` and/or ``section.key=value`` overrides (values parsed as YAML),
e.g. ``glscl train data.cache_dir=.cache model.num_queries=4 train.epochs=10``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _options_help() -> str:
    from glscl.config import describe
    lines = ["config fields (set with key=value; defaults are the paper's):"]
    for name, default, help_ in describe():
        lines.append(f"  {name} = {default!r}\n      {help_}")
    return "\n".join(lines)


def _load_cfg(args):
    from glscl.config import build_config
    return build_config(args.config, args.overrides)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a preset name (embedded, ...) or a run config YAML (as saved in every results folder); "
                                    "default: the paper's settings")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. model.num_queries=4")


def cmd_world(args) -> None:
    import dataclasses

    from glscl.data.world import WorldConfig, generate_world
    fields = {f.name: f.type for f in dataclasses.fields(WorldConfig)}
    kw = {}
    for text in args.settings:
        key, _, value = text.partition("=")
        if key not in fields:
            raise SystemExit(f"glscl world: unknown setting '{key}'; known: {', '.join(fields)}")
        kw[key] = int(value)
    root = generate_world(args.root, WorldConfig(**kw), progress=True)
    print(f"world written to {root}")


def cmd_pretrain(args) -> None:
    from glscl.engine.pretrain import PretrainConfig, pretrain_clip
    out = pretrain_clip(args.root, args.out or Path(args.root) / "clip-tiny-pretrained.safetensors",
                        PretrainConfig(steps=args.steps, batch_size=args.batch_size))
    print(f"open_clip checkpoint: {out}  (use model.pretrained={out})")


def cmd_cache(args) -> None:
    from glscl.data import load_split
    from glscl.engine.run import SPLITS, build_caches, load_backbone
    cfg = _load_cfg(args)
    if not cfg.data.cache_dir:
        raise SystemExit("glscl cache: set data.cache_dir=<folder>")
    splits = {s: load_split(cfg.data, s) for s in SPLITS}
    backbone, _ = load_backbone(cfg, splits)
    for s, c in build_caches(cfg, backbone, splits).items():
        print(f"{splits[s].summary()} -> {c.folder}")


def cmd_train(args) -> None:
    from glscl.engine.run import run
    record = run(_load_cfg(args), resume=not args.no_resume)
    print(json.dumps(record, indent=2))


def cmd_eval(args) -> None:
    import numpy as np
    import torch

    from glscl.data import load_split
    from glscl.engine.checkpoint import load_config_and_vocab
    from glscl.engine.evaluate import metric_rows
    from glscl.engine.loading import resolve_paths, started_from
    run_dir = Path(args.run)
    sim_file = run_dir / "test_similarity.pt"
    if not sim_file.is_file():
        raise SystemExit(f"glscl eval: {sim_file} not found (train the run first)")
    cfg, _ = load_config_and_vocab(run_dir / "checkpoints" / "best")
    split = load_split(resolve_paths(cfg, started_from(run_dir, cfg)).data, "test")
    sim = torch.load(sim_file, weights_only=True)
    bank = _qb_norm_bank(run_dir) if args.qb_norm else None
    rows = metric_rows(sim, np.asarray(split.caption_video), dsl=args.dsl, bank_sim=bank)
    for name, m in rows.items():
        print(name.ljust(24), "  ".join(f"{k}={v:.1f}" for k, v in m.items()))


def _qb_norm_bank(run_dir: Path):
    """Similarities of the training captions (the query bank) to the test videos, from the feature cache."""
    from glscl.data import load_split
    from glscl.engine.evaluate import cached_texts, cached_videos, encode_texts, similarity_matrix
    from glscl.engine.loading import load_run
    from glscl.engine.run import build_caches
    loaded = load_run(run_dir)
    if not loaded.cached:
        raise SystemExit("glscl eval --qb-norm: needs a run trained from the feature cache (data.cache_dir)")
    cfg = loaded.config
    caches = build_caches(cfg, loaded.backbone, {s: load_split(cfg.data, s) for s in ("train", "test")}, progress=False)
    bank_text = encode_texts(loaded.head, cached_texts(caches["train"]))
    return similarity_matrix(loaded.head, bank_text, cached_videos(caches["test"]))


def cmd_ablate(args) -> int:
    from glscl.lab.grids import runner as ablate
    return ablate.main(args)


def cmd_bench(args) -> None:
    from glscl.lab.bench import similarity
    similarity.run(args)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="glscl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="command")
    raw = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("world", help="generate the embedded procedural video world", formatter_class=raw,
                       description="Generate the procedural world (mp4 files in MSR-VTT's layout).",
                       epilog="settings: n_train, n_val, n_test, frames, size, max_objects, distractors (integers), e.g. n_train=300")
    p.add_argument("--root", default="data/world", help="output folder")
    p.add_argument("settings", nargs="*", metavar="key=value", help="WorldConfig settings")
    p.set_defaults(func=cmd_world)

    p = sub.add_parser("pretrain", help="pre-train a tiny CLIP on the world's frames", formatter_class=raw,
                       description="Image-text contrastive pre-training of glscl-tiny on frame captions; writes an open_clip checkpoint.")
    p.add_argument("--root", default="data/world", help="world folder")
    p.add_argument("--out", help="checkpoint file (default <root>/clip-tiny-pretrained.safetensors)")
    p.add_argument("--steps", type=int, default=400, help="optimisation steps")
    p.add_argument("--batch-size", type=int, default=256, help="frames per step")
    p.set_defaults(func=cmd_pretrain)

    for name, func, text in (("cache", cmd_cache, "encode every split once with the frozen backbone"),
                             ("train", cmd_train, "train (from the cache or end to end), then evaluate on test")):
        p = sub.add_parser(name, help=text, description=text, epilog=_options_help(), formatter_class=raw)
        _add_config_args(p)
        if name == "train":
            p.add_argument("--no-resume", action="store_true", help="start over even if checkpoints/last exists")
        p.set_defaults(func=func)

    p = sub.add_parser("eval", help="metrics of a finished run (optionally with DSL, marked transductive)", formatter_class=raw)
    p.add_argument("run", help="results folder of a run")
    p.add_argument("--dsl", action="store_true", help="also report dual-softmax re-scoring (transductive)")
    p.add_argument("--qb-norm", action="store_true",
                   help="also report QB-Norm (k=1, beta=70) with the training captions as query bank (transductive; t2v only)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("ablate", help="run an ablation grid (ablations/*.yaml) with the run notebook, in parallel",
                       formatter_class=raw, description="Expand a grid file into runs, execute the run notebook shipped with "
                       "the package (glscl/lab/run.ipynb) once per run with papermill (resumable, shardable) and "
                       "write <out>/results.csv and figures.")
    from glscl.lab.grids import runner as ablate
    ablate.add_arguments(p)
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("bench", help="similarity-head efficiency benchmark (FLOPs, time, memory)", formatter_class=raw)
    try:
        from glscl.lab.bench import similarity
        similarity.add_arguments(p)
    except ImportError:
        pass
    p.set_defaults(func=cmd_bench)

    sub.add_parser("demo", help="the main job on the embedded default (world, pre-training, GLSCL vs baselines); "
                                "see glscl demo --help")
    return ap


def main(argv=None) -> int:
    from glscl.config import ConfigError
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["demo"]:  # the demo has its own options (glscl demo --help)
        from glscl.engine import demo
        demo.main(argv[1:])
        return 0
    from glscl.data.adapters import DatasetError
    from glscl.data.video import VideoError
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
    except (ConfigError, DatasetError, VideoError, FileNotFoundError) as e:
        # errors raised inside DataLoader workers arrive with the worker's traceback: keep the message line
        lines = [line for line in str(e).strip().splitlines() if line.strip()]
        print(f"glscl {args.command}: error: {lines[-1] if lines else type(e).__name__}", file=sys.stderr)
        return 2
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
