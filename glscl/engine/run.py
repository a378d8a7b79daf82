"""One run from a ``RunConfig``: data, backbone, training, test evaluation, results folder.

    results = run(cfg)

* with ``data.cache_dir`` set, the frozen backbone encodes every split once into the feature cache
  and only the head trains (fast: what ablation grids use): ``_run_cached``;
* otherwise training is end to end: decoded clips -> backbone -> head: ``_run_decoded``.

The run draws from one seed (``train.seed``, set once before either route starts): a random
backbone, the head, then training. Building the backbone and the feature caches leaves the
generators as they were (``generators_kept``), so a run that finds its caches built draws exactly
what the run that built them drew.

``model.head`` picks the head (GLSCL, mean pooling or ALPRO's VTC, ``glscl.model.factory.create_head``)
and its loss (``glscl.losses.create_loss``) for both routes; ``loss.pem_weight > 0`` adds ALPRO's
prompt entity modeling (end to end only).

The checkpoint evaluated on test is the one that scored best on the validation split. The
results folder (``<out_dir>/<name>``) gets, as the run's last step, its one record: metrics.json
(``glscl.engine.record``), one flat object that pandas reads (status "ok", the metrics on test,
steps, epochs, the timings cache_s, train_s and eval_s, the head's settings), plus, when the
config carries the paper's numbers (``reference``), one ``reference`` entry holding them.

Nothing silent, nothing lost. Before any data is read, the results folder is checked: when it
holds a run of another config the run stops, naming the fields that differ
(``glscl.engine.results_folder``). Then everything that can fail cheaply is checked before
training starts: the splits (train, val and test may not share a video), ``train.batch_size``
against the training captions, the videos of the evaluation splits (open + first frame, end to
end; the feature cache decodes every split before training anyway) and the backbone's weights.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from glscl.config import ConfigError, RunConfig
from glscl.data import load_splits, require_readable_videos
from glscl.data.cache import build_cache, cache_key, lookup_cache, weights_digest, weights_identity
from glscl.data.dataset import PairDataset
from glscl.data.video import ClipTransform
from glscl.engine import distributed as dist
from glscl.engine.checkpoint import load_weights
from glscl.engine.evaluate import evaluate_cached, evaluate_decoded
from glscl.engine.record import finish_record
from glscl.engine.resources import check_memory
from glscl.engine.results_folder import FolderLock, check_run_folder, run_folder, start_fresh, write_run_files
from glscl.engine.train import Batches, Trainer, cached_batches, decoded_batches, generators_kept, resolve_device, seed_everything
from glscl.files import atomic_write, write_json
from glscl.model.backbone import Tokenizer, create_backbone
from glscl.model.factory import Retriever, create_head
from glscl.pem import build_pem

SPLITS = ("train", "val", "test")


def _vocab(cfg: RunConfig, splits) -> tuple[int, ...] | None:
    if not cfg.model.compact_vocab:
        return None
    if cfg.data.dataset == "world":
        from glscl.engine.pretrain import world_vocab
        return world_vocab(cfg.data.root, cfg.model.max_words)
    return Tokenizer.build_vocab(sorted({c for s in splits.values() for c in s.captions}), cfg.model.max_words)


def _vocab_source(cfg: RunConfig, splits) -> str:
    """What ``_vocab`` builds the compact vocabulary from (the world's file, or every split's captions)."""
    if cfg.data.dataset == "world":
        return (Path(cfg.data.root) / "world.json").read_text()
    return json.dumps(sorted({c for s in splits.values() for c in s.captions}))


def cache_keys(cfg: RunConfig, splits, backbone=None) -> dict[str, str] | None:
    """Each split's ``glscl.data.cache.cache_key``. The weights are named by ``weights_identity``; a random
    backbone (``model.pretrained`` unset) by its built weights' digest, so its keys need ``backbone`` (None without)."""
    weights = weights_identity(cfg.model.pretrained, cfg.data.cache_dir)
    if weights is None:
        if backbone is None:
            return None
        weights = "sha256:" + weights_digest(backbone.clip)
    vocab_source = _vocab_source(cfg, splits) if cfg.model.compact_vocab else ""
    return {s: cache_key(cfg.model, cfg.data.sample_fps, splits[s], weights, vocab_source) for s in splits}


def find_caches(cfg: RunConfig, splits) -> dict | None:
    """Every split's feature cache when all are built (found by key, the backbone unbuilt); None otherwise."""
    keys = cache_keys(cfg, splits)
    if keys is None or cfg.model.temporal_init == "clip":  # the head copies the backbone's text layers
        return None
    caches = {s: lookup_cache(cfg.data.cache_dir, splits[s], k) for s, k in keys.items()}
    return None if any(c is None for c in caches.values()) else caches


def load_backbone(cfg: RunConfig, splits, device="cpu"):
    """The configured backbone (with the compact vocabulary when asked) and that vocabulary."""
    vocab = _vocab(cfg, splits)
    backbone = create_backbone(cfg.model.backbone, cfg.model.pretrained, context_length=cfg.model.max_words, device=device)
    if vocab is not None:
        backbone.use_compact_vocab(vocab)
    return backbone, vocab


def build_caches(cfg: RunConfig, backbone, splits, device="cpu", progress: bool = True) -> dict:
    """Feature caches of every split (built once, then reused until weights, sampling or data change);
    ``backbone``: the one ``cfg`` names (``load_backbone``), whose features they hold."""
    keys = cache_keys(cfg, splits, backbone)
    return {s: build_cache(backbone, splits[s], cfg.data.cache_dir, keys[s], num_frames=cfg.model.num_frames,
                           sample_fps=cfg.data.sample_fps, num_workers=cfg.data.num_workers, device=device,
                           progress=progress) for s in splits}


def world_probes(cfg: RunConfig, sim: torch.Tensor, split) -> dict[str, float]:
    """Twin accuracy on the embedded world (how often a caption's video beats its time-reversed twin)."""
    if cfg.data.dataset != "world":
        return {}
    from glscl.data.world import load_world, twin_accuracy, twin_indices
    twins = twin_indices(load_world(cfg.data.root), split.video_ids)
    return {"twin_accuracy": 100.0 * twin_accuracy(sim.numpy(), split.caption_video, twins)} if twins else {}


def world_annotation(cfg: RunConfig, split):
    """The frame annotation of a split of the embedded world, sampled as the run samples it (None
    for other datasets: they carry none, and no mechanism metric is invented for them)."""
    if cfg.data.dataset != "world":
        return None
    from glscl.data.world import load_world
    from glscl.data.world.annotation import frame_annotation
    return frame_annotation(load_world(cfg.data.root), split, cfg.model.num_frames, cfg.data.sample_fps)


def check_batch_size(cfg: RunConfig, train_split) -> None:
    """``train.batch_size`` must fit in the training split (one step needs a full batch of captions)."""
    if cfg.train.batch_size > train_split.num_captions:
        source = f" ({', '.join(train_split.source)})" if train_split.source else ""
        raise ConfigError(f"train.batch_size = {cfg.train.batch_size} exceeds the {train_split.num_captions} captions "
                          f"of the training split{source}")


@dataclass(frozen=True)
class Options:
    """``run``'s options, passed on to either route (see ``run``)."""

    progress: bool
    resume: bool
    overwrite: bool
    stop_after_epoch: int | None


@dataclass
class Outcome:
    """What a route hands back: its trainer (steps, epochs, best score, training time), S and the metrics on
    test, and the seconds spent on the feature caches (0 end to end) and on the test evaluation."""

    trainer: Trainer
    sim: torch.Tensor
    metrics: dict
    cache_s: float
    eval_s: float


def run(cfg: RunConfig, *, progress: bool = True, resume: bool = True, overwrite: bool = False,
        stop_after_epoch: int | None = None) -> dict:
    """Train ``cfg`` and evaluate its validation-selected checkpoint on test; returns the run's record
    (what metrics.json holds, ``glscl.engine.record``).

    ``resume``: continue from ``checkpoints/last`` when the results folder holds a run of the same
    config (False: start over; the old folder is renamed to ``<name>.old-<time>``). ``overwrite``:
    also when the folder holds a run of another config (renamed the same way; nothing is deleted).
    """
    dist.init()
    if cfg.data.cache_dir and not cfg.model.freeze_backbone:
        raise ConfigError("data.cache_dir is set: training from the feature cache needs model.freeze_backbone=true")
    # one writer per results folder (rank 0 holds the lock for every process of a torchrun job)
    with FolderLock(run_folder(cfg), "glscl train") if dist.is_main() else contextlib.nullcontext():
        return _run(cfg, Options(progress, resume, overwrite, stop_after_epoch))


def _run(cfg: RunConfig, options: Options) -> dict:
    """``run`` with the results folder locked: checks, the route, the record."""
    device = resolve_device(cfg.device)
    check_run_folder(cfg, overwrite=options.overwrite)
    splits = load_splits(cfg.data)
    check_batch_size(cfg, splits["train"])
    check_memory(cfg, splits, device)
    seed_everything(cfg.train.seed)  # the run's one seed: a random backbone, the head, then training draw from it
    route = _run_cached if cfg.data.cache_dir else _run_decoded
    outcome = route(cfg, splits, device, options)
    run_dir, trainer, sim = run_folder(cfg), outcome.trainer, outcome.sim
    record = {"status": "ok", "name": cfg.name, "dataset": cfg.data.dataset, "eval_split": "test", "selected_on": "val",
              **outcome.metrics, **world_probes(cfg, sim, splits["test"]),
              "train_steps": trainer.step, "epochs": trainer.epoch, "best_val_score": trainer.best_score,
              "cache_s": outcome.cache_s, "train_s": trainer.train_seconds, "eval_s": outcome.eval_s,
              "seed": cfg.train.seed, "interaction": cfg.model.interaction, "num_queries": cfg.model.num_queries,
              "head": cfg.model.head, "pem_weight": cfg.loss.pem_weight,
              "skipped_items": sum(len(s.skipped) for s in splits.values())}
    if cfg.reference.rows():  # the paper's numbers: one nested entry, apart from the measured metrics
        record["reference"] = {"source": cfg.reference.source, **cfg.reference.rows()}
    if dist.is_main():
        skipped = [{"split": name, "file": f, "row": row, "reason": why} for name, s in splits.items() for f, row, why in s.skipped]
        if skipped:
            write_json(Path(run_dir) / "skipped.json", skipped)
            print(f"skipped {len(skipped)} bad items (data.skip_bad=true); listed in {Path(run_dir) / 'skipped.json'}")
        atomic_write(Path(run_dir) / "test_similarity.pt", lambda tmp: torch.save(sim, tmp))
        finish_record(run_dir, record)  # last: a complete record means a finished run
    return record


def _run_cached(cfg: RunConfig, splits, device, options: Options) -> Outcome:
    """The head alone, on the frozen backbone's feature caches (found by key, else built here)."""
    t0 = time.perf_counter()
    backbone = None
    with generators_kept(device):
        caches = find_caches(cfg, splits)
        if caches is None:  # a cache missing, or the head needs the backbone: build it (and the missing caches)
            backbone, _ = load_backbone(cfg, splits, device)
            caches = build_caches(cfg, backbone, splits, device, options.progress)
    cache_s = time.perf_counter() - t0
    meta = caches["train"].meta
    vocab = tuple(meta["vocab"]) if meta["vocab"] is not None else None
    if backbone is None:
        head = create_head(cfg.model, meta["width"], meta["logit_scale"]).to(device)
    else:
        head = create_head(cfg.model, backbone.width, float(backbone.logit_scale.detach()), backbone).to(device)
    validate = lambda: evaluate_cached(head, caches["val"], device)[1]  # noqa: E731
    trainer = _train(cfg, head, cached_batches(caches["train"]), device, validate, vocab, None, options)
    t1 = time.perf_counter()
    sim, metrics = evaluate_cached(head, caches["test"], device, annotation=world_annotation(cfg, splits["test"]))
    return Outcome(trainer, sim, metrics, cache_s, time.perf_counter() - t1)


def _run_decoded(cfg: RunConfig, splits, device, options: Options) -> Outcome:
    """End to end: decoded clips through the backbone and the head (plus PEM with ``loss.pem_weight > 0``)."""
    if not cfg.data.skip_bad:
        for name in ("val", "test"):
            require_readable_videos(splits[name])
    with generators_kept(device):
        backbone, vocab = load_backbone(cfg, splits, device)
    head = create_head(cfg.model, backbone.width, float(backbone.logit_scale.detach()), backbone).to(device)
    if cfg.model.freeze_backbone:
        backbone.requires_grad_(False)
    model = Retriever(backbone, head).to(device)
    ds = PairDataset(splits["train"], backbone.tokenizer, cfg.model.num_frames, ClipTransform.for_backbone(backbone),
                     cfg.data.sample_fps, augment=cfg.data.augment, seed=cfg.train.seed)
    pem = build_pem(cfg, model, splits["train"].captions, device) if cfg.loss.pem_weight > 0 else None

    def evaluate_split(split, annotation=None):
        return evaluate_decoded(model, split, cfg.model.num_frames, cfg.data.sample_fps, device,
                                num_workers=cfg.data.num_workers, annotation=annotation)

    batches = decoded_batches(ds, cfg.data.num_workers, device.type == "cuda")
    trainer = _train(cfg, model, batches, device, lambda: evaluate_split(splits["val"])[1], vocab, pem, options)
    t1 = time.perf_counter()
    sim, metrics = evaluate_split(splits["test"], world_annotation(cfg, splits["test"]))
    return Outcome(trainer, sim, metrics, 0.0, time.perf_counter() - t1)


def _train(cfg: RunConfig, model, batches: Batches, device, validate, vocab, pem, options: Options) -> Trainer:
    """Both routes' training: a fresh or resumed results folder, the trainer's loop, then ``model`` holds the
    checkpoint chosen on validation (``checkpoints/best``)."""
    start_fresh(cfg, resume=options.resume, overwrite=options.overwrite)
    run_dir = run_folder(cfg)
    trainer = Trainer(cfg, model, batches, run_dir, device, validate=validate, vocab=vocab, progress=options.progress,
                      pem=pem)
    if options.resume:
        trainer.resume()
    write_run_files(cfg, device)
    trainer.fit(stop_after_epoch=options.stop_after_epoch)
    load_weights(run_dir / "checkpoints" / "best", model)
    return trainer
