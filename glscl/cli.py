"""The ``glscl`` command: world, pretrain, cache, train, data check, eval, ablate, bench, demo.

Configs: ``--config run.yaml`` and/or ``section.key=value`` overrides (values parsed as YAML),
e.g. ``glscl train data.cache_dir=.cache model.num_queries=4 train.epochs=10``.

Errors: bad input (a config value, a dataset file, a video, a checkpoint, a results folder that
holds another config's run) ends with one line naming the setting or the file, exit status 2;
``glscl --debug ...`` or ``GLSCL_DEBUG=1`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import os
import re
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
    p.add_argument("--config", action="append", help="a preset name (embedded, msrvtt, released, ...) or a run config YAML "
                   "(as saved in every results folder); default: the paper's settings. Repeat to layer configs left to "
                   "right: --config didemo --config released")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. model.num_queries=4")


def cmd_world(args) -> None:
    import dataclasses

    from glscl.data.world import WorldConfig, generate_world
    fields = {f.name: f.type for f in dataclasses.fields(WorldConfig)}
    import yaml

    from glscl.config import ConfigError
    kw = {}
    for text in args.settings:
        key, _, value = text.partition("=")
        if key not in fields:
            raise ConfigError(f"unknown setting '{key}'; known: {', '.join(fields)}")
        try:
            kw[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"{key} = {value!r} is not a number") from None
    try:
        world = WorldConfig(**kw)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    root = generate_world(args.root, world, progress=True)
    print(f"world written to {root}")


def cmd_pretrain(args) -> None:
    from glscl.engine.pretrain import PretrainConfig, pretrain_clip
    out = pretrain_clip(args.root, args.out or Path(args.root) / "clip-tiny-pretrained.safetensors",
                        PretrainConfig(steps=args.steps, batch_size=args.batch_size))
    print(f"open_clip checkpoint: {out}  (use model.pretrained={out})")


def cmd_cache(args) -> None:
    from glscl.config import ConfigError
    from glscl.data import load_splits
    from glscl.engine.run import build_caches, load_backbone
    cfg = _load_cfg(args)
    if not cfg.data.cache_dir:
        raise ConfigError("data.cache_dir is not set: set data.cache_dir=<folder>")
    splits = load_splits(cfg.data)
    backbone, _ = load_backbone(cfg, splits)
    for s, c in build_caches(cfg, backbone, splits).items():
        print(f"{splits[s].summary()} -> {c.folder}")


def cmd_train(args) -> None:
    from glscl.engine import distributed as dist
    from glscl.engine.run import run
    record = run(_load_cfg(args), resume=not args.no_resume, overwrite=args.overwrite)
    dist.shutdown()  # under torchrun: wait for every process, then leave the process group
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
    banks = _qb_norm_banks(run_dir) if args.qb_norm else {}
    rows = metric_rows(sim, np.asarray(split.caption_video), dsl=args.dsl, **banks, qb_beta=args.qb_beta,
                       v2t_protocol=args.v2t_protocol)
    for name, m in rows.items():
        print(name.ljust(24), "  ".join(f"{k}={v:.1f}" for k, v in m.items()))
    if cfg.reference.rows():  # reported, not measured: its own row, after the run's
        print(f"\nreference, not measured here: {cfg.reference.source}")
        print("paper".ljust(24), "  ".join(f"{k}={'-' if v is None else f'{v:.1f}'}" for k, v in cfg.reference.rows().items()))


def _qb_norm_banks(run_dir: Path) -> dict:
    """QB-Norm's query banks from the feature cache: the training captions scored against the test
    videos (t2v) and the training videos scored against the test captions (v2t)."""
    from glscl.data import load_split
    from glscl.engine.evaluate import cached_texts, cached_videos, encode_texts, similarity_matrix
    from glscl.engine.loading import load_run
    from glscl.engine.run import build_caches
    loaded = load_run(run_dir)
    if not loaded.cached:
        raise SystemExit("glscl eval --qb-norm: needs a run trained from the feature cache (data.cache_dir)")
    cfg, head = loaded.config, loaded.head
    caches = build_caches(cfg, loaded.backbone, {s: load_split(cfg.data, s) for s in ("train", "test")}, progress=False)
    bank_t2v = similarity_matrix(head, encode_texts(head, cached_texts(caches["train"])), cached_videos(caches["test"]))
    bank_v2t = similarity_matrix(head, encode_texts(head, cached_texts(caches["test"])), cached_videos(caches["train"])).T
    return {"bank_t2v": bank_t2v, "bank_v2t": bank_v2t}


def cmd_data_check(args) -> int:
    from glscl.data.check import check_dataset
    cfg = _load_cfg(args)
    folder = Path(args.out or Path(cfg.out_dir) / f"data-check-{cfg.data.dataset}")
    report = check_dataset(cfg, workers=args.workers, probe_cache=folder / "probes.jsonl", gpu_figures=args.gpu_figures)
    print(report.summary(report.write(folder / "report.json")))
    return 2 if report.errors else 0


def cmd_ablate(args) -> int:
    from glscl.lab.grids import runner as ablate
    return ablate.main(args)


def cmd_bench(args) -> None:
    from glscl.lab.bench import similarity
    similarity.run(args)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="glscl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line (also GLSCL_DEBUG=1)")
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
            p.add_argument("--no-resume", action="store_true",
                           help="start over even if checkpoints/last holds a run of the same config (the old folder is renamed "
                                "to <name>.old-<time>)")
            p.add_argument("--overwrite", action="store_true",
                           help="start over even if the results folder holds a run of another config: it is first renamed to "
                                "<name>.old-<time> (nothing is deleted)")
        p.set_defaults(func=func)

    from glscl.data import check as data_check
    p = sub.add_parser("data", help="dataset tools: glscl data check", formatter_class=raw)
    check = p.add_subparsers(dest="data_command", required=True, metavar="command").add_parser(
        "check", formatter_class=raw, help="check a dataset for a config without training (exit 2: a run would stop)",
        description=data_check.__doc__)
    _add_config_args(check)
    check.add_argument("--workers", type=int, default=4, help="videos probed at once")
    check.add_argument("--out", help="folder of report.json and the probe cache (default <out_dir>/data-check-<dataset>)")
    check.add_argument("--gpu-figures", help="JSON written by benchmarks/gpu_check.py --json: adds a rough time per epoch")
    check.set_defaults(func=cmd_data_check)

    p = sub.add_parser("eval", help="metrics of a finished run (optionally with DSL or QB-Norm, marked transductive)", formatter_class=raw)
    p.add_argument("run", help="results folder of a run")
    p.add_argument("--dsl", action="store_true", help="also report dual-softmax re-scoring (transductive)")
    p.add_argument("--qb-norm", action="store_true",
                   help="also report QB-Norm (transductive; k=1, beta=70, theta=3 for t2v and 5 for v2t) with the training "
                        "captions (t2v) and the training videos (v2t) as query banks; needs a run trained from the feature cache")
    p.add_argument("--qb-beta", type=float, default=None, help="QB-Norm's beta in both directions (default 70)")
    p.add_argument("--v2t-protocol", choices=("group", "caption"), default="group",
                   help="video-to-text with several captions per video: 'group' ranks the videos' caption groups, each "
                        "scored by its best caption (CLIP4Clip's, the published protocol; default); 'caption' ranks the "
                        "best own caption among all captions")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("ablate", help="run an ablation grid (ablations/*.yaml) with the run notebook, on Ray",
                       formatter_class=raw, description="Expand a grid file into runs, execute the run notebook shipped with "
                       "the package (glscl/lab/run.ipynb) once per run with papermill, each run a Ray task on a local "
                       "instance or a cluster (resumable, shardable), and write <out>/results.csv and figures.")
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


def _expected(e: BaseException) -> bool:
    """Errors that report bad input (one line naming the setting or file), as opposed to bugs."""
    from glscl.config import ConfigError
    from glscl.data.adapters import DatasetError
    from glscl.data.video import VideoError
    from glscl.engine.checkpoint import CheckpointError
    from glscl.engine.train import NonFiniteLossError
    return isinstance(e, (ConfigError, DatasetError, VideoError, CheckpointError, NonFiniteLossError, OSError))


def _one_line(e: BaseException) -> str:
    """The message of ``e`` on one line; an error re-raised from a DataLoader worker keeps its last line."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else type(e).__name__
    return re.sub(r"^[\w.]+(Error|Exception): ", "", text)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = os.environ.get("GLSCL_DEBUG", "").strip() not in ("", "0")
    if argv[:1] == ["--debug"] and argv[1:2] == ["demo"]:
        debug, argv = True, argv[1:]
    if argv[:1] == ["demo"]:  # the demo has its own options (glscl demo --help)
        from glscl.engine import demo
        command, call = "demo", lambda: demo.main(argv[1:])
    else:
        args = build_parser().parse_args(argv)
        debug = debug or args.debug
        command, call = args.command, lambda: args.func(args)
    try:
        status = call()
    except Exception as e:
        if debug or not _expected(e):
            raise
        print(f"glscl {command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
