"""One run from a ``RunConfig``: data, backbone, training, test evaluation, results folder.

    results = run(cfg)

* with ``data.cache_dir`` set, the frozen backbone encodes every split once into the feature cache
  and only the head trains (fast: what ablation grids use);
* otherwise training is end to end: decoded clips -> backbone -> head.

``model.head`` picks the head (GLSCL, mean pooling or ALPRO's VTC, ``glscl.model.factory.create_head``)
and its loss (``glscl.losses.create_loss``) for both routes; ``loss.pem_weight > 0`` adds ALPRO's
prompt entity modeling (end to end only).

The checkpoint evaluated on test is the one that scored best on the validation split. The
results folder (``<out_dir>/<name>``) gets metrics.json: one flat record that pandas reads, plus,
when the config carries the paper's numbers (``reference``), one ``reference`` entry holding them.

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
from pathlib import Path

import torch

from glscl.config import ConfigError, RunConfig
from glscl.data import load_splits, require_readable_videos
from glscl.data.cache import build_cache, lookup_cache, source_key, weights_digest, weights_identity
from glscl.data.dataset import PairDataset
from glscl.data.video import ClipTransform
from glscl.engine import distributed as dist
from glscl.engine.checkpoint import load_weights
from glscl.engine.evaluate import evaluate_cached, evaluate_decoded
from glscl.engine.resources import check_memory
from glscl.engine.results_folder import FolderLock, check_run_folder, run_folder, start_fresh, write_run_files
from glscl.engine.train import Trainer, decoded_batches, resolve_device, seed_everything, train_from_cache
from glscl.files import atomic_write, write_json
from glscl.model.backbone import Tokenizer, create_backbone
from glscl.model.factory import Retriever, create_head, end_to_end_encoder
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


def source_keys(cfg: RunConfig, splits) -> dict[str, str] | None:
    """Each split's ``glscl.data.cache.source_key`` (None for a random backbone: no index)."""
    weights = weights_identity(cfg.model.pretrained, cfg.data.cache_dir)
    if weights is None:
        return None
    vocab_source = _vocab_source(cfg, splits) if cfg.model.compact_vocab else ""
    return {s: source_key(cfg.model, cfg.data.sample_fps, splits[s], weights, vocab_source) for s in splits}


def indexed_caches(cfg: RunConfig, splits, device) -> dict | None:
    """Every split's cache from the source index, the backbone unbuilt; None on any miss."""
    keys = source_keys(cfg, splits)
    if keys is None or cfg.model.temporal_init == "clip":  # the head copies the backbone's text layers
        return None
    caches = {s: lookup_cache(cfg.data.cache_dir, k) for s, k in keys.items()}
    return None if any(c is None for c in caches.values()) else caches


def load_backbone(cfg: RunConfig, splits, device="cpu"):
    """The configured backbone (with the compact vocabulary when asked) and that vocabulary."""
    vocab = _vocab(cfg, splits)
    backbone = create_backbone(cfg.model.backbone, cfg.model.pretrained, context_length=cfg.model.max_words, device=device)
    if vocab is not None:
        backbone.use_compact_vocab(vocab)
    return backbone, vocab


def build_caches(cfg: RunConfig, backbone, splits, device="cpu", progress: bool = True) -> dict:
    """Feature caches of every split (built once, then reused until weights, sampling or data change),
    each recorded in the source index."""
    weights = weights_digest(backbone.clip)  # hashed once for all splits
    keys = source_keys(cfg, splits) or {}
    return {s: build_cache(backbone, splits[s], cfg.data.cache_dir, num_frames=cfg.model.num_frames,
                           sample_fps=cfg.data.sample_fps, num_workers=cfg.data.num_workers, device=device,
                           progress=progress, weights=weights, source=keys.get(s)) for s in splits}


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


def run(cfg: RunConfig, *, progress: bool = True, resume: bool = True, overwrite: bool = False,
        stop_after_epoch: int | None = None) -> dict:
    """Train ``cfg`` and evaluate its validation-selected checkpoint on test; returns the metrics record.

    ``resume``: continue from ``checkpoints/last`` when the results folder holds a run of the same
    config (False: start over; the old folder is renamed to ``<name>.old-<time>``). ``overwrite``:
    also when the folder holds a run of another config (renamed the same way; nothing is deleted).
    """
    dist.init()
    if cfg.data.cache_dir and not cfg.model.freeze_backbone:
        raise ConfigError("data.cache_dir is set: training from the feature cache needs model.freeze_backbone=true")
    # one writer per results folder (rank 0 holds the lock for every process of a torchrun job)
    with FolderLock(run_folder(cfg), "glscl train") if dist.is_main() else contextlib.nullcontext():
        return _run(cfg, progress=progress, resume=resume, overwrite=overwrite, stop_after_epoch=stop_after_epoch)


def _run(cfg: RunConfig, *, progress: bool, resume: bool, overwrite: bool, stop_after_epoch: int | None) -> dict:
    """``run`` with the results folder locked."""
    device = resolve_device(cfg.device)
    check_run_folder(cfg, overwrite=overwrite)
    seed_everything(cfg.train.seed)
    splits = load_splits(cfg.data)
    check_batch_size(cfg, splits["train"])
    check_memory(cfg, splits, device)
    if not cfg.data.cache_dir and not cfg.data.skip_bad:
        for name in ("val", "test"):
            require_readable_videos(splits[name])
    t0 = time.perf_counter()
    caches = indexed_caches(cfg, splits, device) if cfg.data.cache_dir else None
    backbone = None
    if caches is None:  # no cache, or not every split's cache in the index: build the backbone (and the caches)
        backbone, vocab = load_backbone(cfg, splits, device)
        if cfg.data.cache_dir:
            caches = build_caches(cfg, backbone, splits, device, progress)
    if caches is not None:
        meta = caches["train"].meta
        vocab = tuple(meta["vocab"]) if meta["vocab"] is not None else None
    t_cache = time.perf_counter() - t0 if cfg.data.cache_dir else 0.0
    # building the backbone and the caches draws from the generator: the head and everything after it
    # are seeded here, so a run that finds its caches in the index (no backbone built) trains the same
    seed_everything(cfg.train.seed)
    if backbone is None:
        head = create_head(cfg.model, meta["width"], meta["logit_scale"]).to(device)
    else:
        head = create_head(cfg.model, backbone.width, float(backbone.logit_scale.detach()), backbone).to(device)
    t0 = time.perf_counter()
    if cfg.data.cache_dir:
        start_fresh(cfg, resume=resume, overwrite=overwrite)
        run_dir, trainer = train_from_cache(cfg, head, caches["train"], caches["val"], device=device, progress=progress,
                                            resume=resume, stop_after_epoch=stop_after_epoch, vocab=vocab)
        load_weights(run_dir / "checkpoints" / "best", head)
        t1 = time.perf_counter()
        sim, metrics = evaluate_cached(head, caches["test"], device, annotation=world_annotation(cfg, splits["test"]))
    else:
        if cfg.model.freeze_backbone:
            backbone.requires_grad_(False)
        model = Retriever(backbone, head).to(device)
        t_cache = 0.0
        ds = PairDataset(splits["train"], backbone.tokenizer, cfg.model.num_frames, ClipTransform.for_backbone(backbone),
                         cfg.data.sample_fps, augment=cfg.data.augment, seed=cfg.train.seed)

        pem = build_pem(cfg, model, splits["train"].captions, device) if cfg.loss.pem_weight > 0 else None
        encode = end_to_end_encoder(model, patch_tokens=pem is not None)
        evaluate_split = lambda split, annotation=None: evaluate_decoded(
            model, split, cfg.model.num_frames, cfg.data.sample_fps, device, num_workers=cfg.data.num_workers,
            annotation=annotation)
        start_fresh(cfg, resume=resume, overwrite=overwrite)
        run_dir = run_folder(cfg)
        trainer = Trainer(cfg, model, head, encode, decoded_batches(ds, cfg.data.num_workers, device.type == "cuda"),
                          run_dir, device, validate=lambda: evaluate_split(splits["val"])[1],
                          vocab=vocab, progress=progress, pem=pem)
        if resume:
            trainer.resume()
        write_run_files(cfg, device)
        trainer.fit(stop_after_epoch=stop_after_epoch)
        load_weights(run_dir / "checkpoints" / "best", model)
        t1 = time.perf_counter()
        sim, metrics = evaluate_split(splits["test"], world_annotation(cfg, splits["test"]))
    t_eval = time.perf_counter() - t1
    record = {"name": cfg.name, "dataset": cfg.data.dataset, "eval_split": "test", "selected_on": "val",
              **metrics, **world_probes(cfg, sim, splits["test"]),
              "train_steps": trainer.step, "epochs": trainer.epoch, "best_val_score": trainer.best_score,
              "cache_s": t_cache, "train_s": trainer.train_seconds, "eval_s": t_eval,
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
        write_json(Path(run_dir) / "metrics.json", record)
        atomic_write(Path(run_dir) / "test_similarity.pt", lambda tmp: torch.save(sim, tmp))
    return record
