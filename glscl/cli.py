"""The ``glscl`` command: world, pretrain, cache, train, data check, eval, ablate, bench, demo.

Configs: ``--config run.yaml`` and/or ``section.key=value`` overrides (values parsed as YAML),
e.g. ``glscl train data.cache_dir=.cache model.num_queries=4 train.epochs=10``.

Errors: bad input (a config value, a dataset file, a video, a checkpoint, a results folder that
holds another config's run or is in use by another process, a file that cannot be written) ends
with one line naming the setting or the file, exit status 2; ``glscl --debug ...`` or
``GLSCL_DEBUG=1`` shows the traceback instead. Ctrl-C (SIGINT) or SIGTERM ends with one line
saying what a rerun does, exit status 130 or 143.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import re
import signal
import sys
import threading
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

    from glscl.data.world import WorldConfig, generate_world, world_config
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
        world = world_config(kw.pop("kind", "scenes"), **kw)  # the shipped world of that kind, settings on top
    except ValueError as e:
        raise ConfigError(str(e)) from None
    from glscl.engine.resources import check_world_size
    check_world_size(args.root, world.n_train, world.n_val, world.n_test, world.frames, world.size)
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

    from glscl.config import ConfigError
    from glscl.data import load_split
    from glscl.engine.checkpoint import CheckpointError, load_config_and_vocab, load_tensors
    from glscl.engine.evaluate import metric_rows
    from glscl.engine.loading import resolve_paths, started_from
    run_dir = Path(args.run)
    sim_file = run_dir / "test_similarity.pt"
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such results folder")
    if not sim_file.is_file():
        raise ConfigError(f"{sim_file}: missing (the run has not finished: rerun its glscl train to finish it)")
    cfg, _ = load_config_and_vocab(run_dir / "checkpoints" / "best")
    split = load_split(resolve_paths(cfg, started_from(run_dir, cfg)).data, "test")
    sim = load_tensors(sim_file)
    shape = (split.num_captions, split.num_videos)
    if not isinstance(sim, torch.Tensor) or sim.dim() != 2 or tuple(sim.shape) != shape or not sim.is_floating_point():
        got = f"shape {tuple(sim.shape)}" if isinstance(sim, torch.Tensor) else type(sim).__name__
        raise CheckpointError(f"{sim_file}: not this run's test similarity (expected a float matrix of shape {shape}: "
                              f"captions x videos of the test split; got {got})")
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
    from glscl.config import ConfigError
    from glscl.data import load_split
    from glscl.data.features import cached_texts, cached_videos
    from glscl.engine.evaluate import encode_texts, similarity_matrix
    from glscl.engine.loading import load_run
    from glscl.engine.run import build_caches
    loaded = load_run(run_dir)
    if not loaded.cached:
        raise ConfigError(f"--qb-norm: {run_dir} was trained end to end; QB-Norm needs a run trained from the feature "
                          "cache (data.cache_dir)")
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


LAB_COMMANDS = {
    "ablate": "run an ablation grid (ablations/*.yaml): the run notebook shipped with the package (glscl/lab/run.ipynb) "
              "once per run with papermill, each run a Ray task on a local instance or a cluster (resumable, "
              "shardable); writes <out>/results.csv and figures",
    "bench": "similarity-head efficiency benchmark (FLOPs, time, memory)",
}
"""The commands that live in the lab (glscl.lab): their modules are imported only when one runs."""


def run_lab_command(command: str, argv: list[str]) -> int | None:
    """``glscl ablate`` / ``glscl bench``: import the lab module, parse its options, run it."""
    from glscl.config import ConfigError
    try:
        if command == "ablate":
            from glscl.lab.grids import runner as module
        else:
            from glscl.lab.bench import similarity as module
    except ImportError as e:
        raise ConfigError(f"glscl {command} needs the lab's packages ({e.name} is not installed): "
                          "pip install -e '.[lab]'") from None
    parser = argparse.ArgumentParser(prog=f"glscl {command}", description=LAB_COMMANDS[command],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    return module.main(args) if command == "ablate" else module.run(args)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="glscl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line (also GLSCL_DEBUG=1)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="command")
    raw = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("world", help="generate the embedded procedural video world", formatter_class=raw,
                       description="Generate the procedural world (mp4 files in MSR-VTT's layout).",
                       epilog="settings: n_train, n_val, n_test, frames, size, max_objects, distractors (integers), e.g. n_train=300")
    p.add_argument("--root", default="data/world", help="output folder")
    p.add_argument("settings", nargs="*", metavar="key=value",
                   help="WorldConfig settings on top of the shipped world of kind=scenes (default) or kind=objects")
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

    for command, text in LAB_COMMANDS.items():  # parsed by the lab itself, imported only when run
        sub.add_parser(command, help=text, add_help=False).add_argument("options", nargs=argparse.REMAINDER)

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


_OS_HINTS = {errno.ENOSPC: "no space left on the device: free some, or write elsewhere",
             errno.EROFS: "read-only file system: write elsewhere", errno.EACCES: "permission denied",
             errno.EPERM: "operation not permitted", errno.EDQUOT: "disk quota exceeded: free some, or write elsewhere"}

# what an interrupted command leaves, for its one line
_RESUME = {"eval": "interrupted (eval writes nothing)", "bench": "interrupted",
           "pretrain": "interrupted; rerun the same command to pre-train again (no checkpoint was written)"}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, like Ctrl-C's KeyboardInterrupt (so cleanup runs)."""


def _terminate(signum, frame):
    raise Terminated()


def _one_line(e: BaseException) -> str:
    """The message of ``e`` on one line; an error re-raised from a DataLoader worker keeps its last line;
    an OS error names its file."""
    if isinstance(e, OSError) and e.filename and e.errno in _OS_HINTS:
        return f"{e.filename}: {_OS_HINTS[e.errno]}"
    if isinstance(e, OSError) and e.filename and e.strerror:
        return f"{e.filename}: {e.strerror}"
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else type(e).__name__
    return re.sub(r"^[\w.]+(Error|Exception): ", "", text)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = os.environ.get("GLSCL_DEBUG", "").strip() not in ("", "0")
    if argv[:1] == ["--debug"] and argv[1:2] and argv[1] in ("demo", *LAB_COMMANDS):
        debug, argv = True, argv[1:]
    if argv[:1] == ["demo"]:  # the demo has its own options (glscl demo --help)
        from glscl.engine import demo
        command, call = "demo", lambda: demo.main(argv[1:])
    elif argv[:1] and argv[0] in LAB_COMMANDS:
        command, call = argv[0], lambda: run_lab_command(argv[0], argv[1:])
    else:
        args = build_parser().parse_args(argv)
        debug = debug or args.debug
        command, call = args.command, lambda: args.func(args)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        status = call()
    except KeyboardInterrupt as e:  # Ctrl-C (SIGINT) or SIGTERM: the files in progress were removed on the way out
        if debug:
            raise
        print(f"\nglscl {command}: {_RESUME.get(command, 'interrupted; rerun the same command to resume')}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except Exception as e:
        if debug or not _expected(e):
            raise
        print(f"glscl {command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
