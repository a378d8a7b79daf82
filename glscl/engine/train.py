"""Training: one loop for head-only training from the feature cache and for end-to-end training.

* parameter groups: backbone lr = lr x backbone_lr_coef; no weight decay on biases, norms,
  embeddings, queries and the logit scale;
* AdamW; linear warm-up over ``warmup`` of the real number of steps, then cosine to zero;
* gradient-norm clipping; AMP (bf16 / fp16) on CUDA;
* deterministic: data order and augmentation are drawn from (seed, epoch), dropout from a
  checkpointed RNG state, so a run interrupted and resumed ends with the same weights;
* one loop for both routes: a head on a ``CachedBatch`` (features from the cache) or a
  ``Retriever`` (backbone + head) on a ``DecodedBatch`` (``encode_batch``);
* validation on the validation split every ``eval_every`` epochs; the best checkpoint is chosen
  on it (t2v R@1 + R@5 + R@10), never on test;
* each epoch's checkpoint (``last``) is saved before validation, so a failing validation loses
  no finished epoch (a resumed run validates that epoch first);
* a non-finite loss stops the run with a clear error naming the last good checkpoint, if any;
* under torchrun, embeddings are all-gathered so the loss sees the global batch; only rank 0 writes;
* the loss is the configured head's (``glscl.losses.create_loss``: GLSCL's, mean pooling's InfoNCE,
  or ALPRO's VTC); with a ``pem`` object (``loss.pem_weight > 0``, end to end) the prompt entity
  modeling loss is added: L = L_head + pem_weight * L_PEM, its crop boxes drawn from (seed, step, rank).

The trainer writes curve.csv and checkpoints/{last,best} into ``run_dir``, the run's results folder
(``glscl.engine.results_folder``).
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from glscl.config import ConfigError, RunConfig
from glscl.data.dataset import CachedBatch, CachedPairDataset, DecodedBatch, PairDataset, same_pair_mask
from glscl.engine import distributed as dist
from glscl.engine.checkpoint import load_train_state, load_weights, save_checkpoint, save_train_state
from glscl.files import atomic_write
from glscl.losses import create_loss
from glscl.model.embedding import TextEmbedding, VideoEmbedding
from glscl.model.factory import Retriever
from glscl.progress import progress_bar

NO_DECAY_WORDS = ("bias", "norm", "ln_", "embedding", "position", "queries", "logit_scale", "class_embedding")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint (if any) is kept."""


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's generators (every device's) set to ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def generators_kept(device: torch.device) -> Iterator[None]:
    """Whatever runs inside draws from the generators as they are, and leaves them as they were: building
    the backbone or the feature caches does not move what the head and training draw after it."""
    py, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
    random.setstate(py)
    np.random.set_state(np_state)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device = {name!r} but CUDA is not available on this machine (use device=cpu or device=auto)")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device = {name!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device = 'mps' but MPS is not available on this machine (use device=cpu or device=auto)")
    return torch.device(name)


def param_groups(model: torch.nn.Module, lr: float, backbone_lr_coef: float, weight_decay: float,
                 logit_scale_group: str = "head") -> list[dict]:
    """Four groups: {backbone, new modules} x {decay, no decay}; frozen parameters are left out.

    The head's logit scale is a new module's parameter without decay, or with ``logit_scale_group`` =
    'backbone' one of the backbone's with decay (the released code trains CLIP's own that way)."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        as_backbone = logit_scale_group == "backbone" and name.endswith("logit_scale")
        is_backbone = name.startswith("backbone.") or as_backbone
        no_decay = not as_backbone and (p.ndim < 2 or any(w in name for w in NO_DECAY_WORDS))
        groups.setdefault((is_backbone, no_decay), []).append(p)
    return [{"params": ps, "lr": lr * (backbone_lr_coef if bb else 1.0), "weight_decay": 0.0 if nd else weight_decay}
            for (bb, nd), ps in sorted(groups.items())]


def warmup_cosine(total_steps: int, warmup: float) -> Callable[[int], float]:
    """lr multiplier: linear 0 -> 1 over the first ``warmup`` share of steps, then cosine 1 -> 0."""
    warm = max(1, int(round(warmup * total_steps))) if warmup > 0 else 0

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


Batch = CachedBatch | DecodedBatch


@dataclass
class Batches:
    """Where training batches come from: the feature cache (head only) or decoded videos (end to end).

    ``iterate(order, epoch)`` yields one batch per row of ``order`` (rows of caption indices).
    """

    num_items: int
    iterate: Callable[[np.ndarray, int], Iterable[Batch]]


def cached_batches(cache) -> Batches:
    """``CachedBatch``es of a ``FeatureCache``, read by fancy indexing."""
    ds = CachedPairDataset(cache)
    return Batches(len(ds), lambda order, epoch: (ds.batch(idx) for idx in order))


def decoded_batches(ds: PairDataset, num_workers: int, pin_memory: bool = False) -> Batches:
    """``DecodedBatch``es through a DataLoader with worker processes (augmentation seeded per item)."""
    def iterate(order, epoch):
        ds.epoch = epoch  # workers copy the dataset when the iterator starts
        return DataLoader(ds, batch_sampler=order.tolist(), num_workers=num_workers, pin_memory=pin_memory,
                          prefetch_factor=4 if num_workers else None, collate_fn=DecodedBatch.collate)
    return Batches(len(ds), iterate)


def encode_batch(model: torch.nn.Module, batch: Batch,
                 patch_tokens: bool = False) -> tuple[TextEmbedding, VideoEmbedding, torch.Tensor | None]:
    """(text embedding, video embedding, patch tokens) of a batch: a head on a ``CachedBatch``'s features, a
    ``Retriever`` (backbone, then head) on a ``DecodedBatch``. ``patch_tokens``: also the backbone's patch
    tokens (B x T x P x d, from the same forward pass; what PEM pools), else None."""
    if isinstance(batch, CachedBatch):
        return (model.encode_text(batch.sentence, batch.tokens, batch.token_mask),
                model.encode_video(batch.frames, batch.frame_mask), None)
    text = model.encode_text(batch.ids)
    if not patch_tokens:
        return text, model.encode_video(batch.pixels, batch.frame_mask), None
    frames, tokens = model.backbone.encode_frames(batch.pixels, patch_tokens=True)
    return text, model.head.encode_video(frames, batch.frame_mask), tokens


class Trainer:
    """Trains ``model``: a head on ``CachedBatch``es, or a ``Retriever`` (backbone + head) end to end on
    ``DecodedBatch``es.

    Each step encodes the local batch (``encode_batch``), gathers the embeddings across processes,
    forms S with the head's ``similarity`` and applies the head's loss (``create_loss(cfg)``).
    ``validate()`` -> metrics dict on the validation split (or None).
    ``pem``: a ``glscl.pem.PromptEntityModeling`` whose loss is added with weight ``loss.pem_weight``.
    """

    def __init__(self, cfg: RunConfig, model: torch.nn.Module, batches: Batches, run_dir: str | Path,
                 device: torch.device, validate: Callable[[], dict] | None = None, vocab=None, progress: bool = True,
                 pem=None):
        self.cfg, self.model, self.batches = cfg, model, batches
        self.head = model.head if isinstance(model, Retriever) else model
        self.pem, self.loss = pem, create_loss(cfg)
        self.run_dir, self.device, self.validate, self.vocab, self.progress = Path(run_dir), device, validate, vocab, progress
        t = cfg.train
        self.world = dist.world_size()
        if t.batch_size % self.world:
            raise ConfigError(f"train.batch_size = {t.batch_size} is not divisible by the {self.world} processes")
        self.local_batch = t.batch_size // self.world
        self.steps_per_epoch = batches.num_items // t.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(f"train.batch_size = {t.batch_size} exceeds the {batches.num_items} captions of the training split")
        self.total_steps = self.steps_per_epoch * t.epochs
        if t.max_steps:
            self.total_steps = min(self.total_steps, t.max_steps)
        self.optimizer = torch.optim.AdamW(param_groups(model, t.lr, t.backbone_lr_coef, t.weight_decay, t.logit_scale_group),
                                           betas=t.betas, eps=t.eps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(self.total_steps, t.warmup))
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.step, self.epoch, self.best_score, self.curve = 0, 0, -math.inf, []
        self.train_seconds, self.pending_validation = 0.0, False

    def _amp_dtype(self):
        amp = self.cfg.train.amp
        if self.device.type != "cuda" or amp == "off":
            return None
        if amp == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if amp == "bf16" else torch.float16

    # -- checkpoints ---------------------------------------------------------------------------
    def _state(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "step": self.step, "epoch": self.epoch, "best_score": self.best_score,
                "torch_rng": torch.get_rng_state(), "curve": json.dumps(self.curve),
                "train_seconds": self.train_seconds, "pending_validation": self.pending_validation,
                **({"cuda_rng": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {})}

    def save(self, which: str) -> None:
        if dist.is_main():
            save_checkpoint(self.run_dir / "checkpoints" / which, self.model, self.cfg, vocab=self.vocab,
                            train_state=self._state() if which == "last" else None)
        dist.barrier()

    def resume(self) -> bool:
        """Continue from checkpoints/last if it exists; returns whether it did."""
        folder = self.run_dir / "checkpoints" / "last"
        state = load_train_state(folder)
        if state is None:
            return False
        load_weights(folder, self.model)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch, self.best_score = state["step"], state["epoch"], state["best_score"]
        self.curve = json.loads(state["curve"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.pending_validation = bool(state.get("pending_validation", False))
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        if dist.is_main():
            print(f"resuming {self.run_dir} (same config) after epoch {self.epoch} of {self.cfg.train.epochs}")
        return True

    # -- one step ------------------------------------------------------------------------------
    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimiser step on ``batch`` (on the trainer's device); returns the loss and its parts."""
        self.model.train()
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            text, video, patch_tokens = encode_batch(self.model, batch, patch_tokens=self.pem is not None)
            text, video = text.map(dist.gather), video.map(dist.gather)  # the global batch
            sim = self.head.similarity(text, video).float()
            same = same_pair_mask(dist.gather(batch.video.to(self.device)), dist.gather(batch.caption.to(self.device)))
            parts = self.loss(self.head, sim, text, video, same)
            if self.pem is not None:
                boxes = torch.Generator().manual_seed(hash((self.cfg.train.seed, self.step, dist.rank())) & 0x7FFFFFFF)
                parts.update(self.pem.loss(batch.pixels, batch.frame_mask, patch_tokens, generator=boxes))
                parts["loss"] = parts["loss"] + self.cfg.loss.pem_weight * parts["pem"]
        loss = parts["loss"]
        if not torch.isfinite(loss):
            last = self.run_dir / "checkpoints" / "last"
            kept = (f"last good checkpoint: {last} (epoch {self.epoch})" if (last / "model.safetensors").is_file()
                    else "no checkpoint was saved yet (the first epoch did not finish)")
            raise NonFiniteLossError(f"non-finite loss ({loss.item()}) at step {self.step} (epoch {self.epoch + 1}); "
                                     f"stopped; {kept}; check train.lr, the loss weights and the data")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        dist.average_gradients(params)
        if self.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.train.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return {k: float(v.detach()) for k, v in parts.items()}

    def _epoch_order(self, epoch: int) -> np.ndarray:
        """This process's share of the epoch's shuffled captions, drawn from (seed, epoch)."""
        g = torch.Generator().manual_seed(self.cfg.train.seed * 1000 + epoch)
        order = torch.randperm(self.batches.num_items, generator=g).numpy()
        order = order[: self.steps_per_epoch * self.cfg.train.batch_size].reshape(self.steps_per_epoch, self.world, self.local_batch)
        return order[:, dist.rank()]

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, stop_after_epoch: int | None = None) -> dict:
        """Train to the end (or to ``stop_after_epoch``, to simulate an interruption)."""
        t = self.cfg.train
        if self.step == 0:  # dropout draws start from the seed, whatever ran before (cache building, ...)
            torch.manual_seed(t.seed)
        self._validate_pending()  # a resumed run whose last epoch was saved but not yet validated
        bar = progress_bar(total=self.total_steps, initial=self.step, desc=f"train {self.cfg.name}", unit="step",
                           enabled=self.progress and dist.is_main())
        try:  # the bar is closed whatever happens, so an error message starts on its own line
            while self.step < self.total_steps and self.epoch < t.epochs:
                t0 = time.perf_counter()
                row = self._train_epoch(bar)
                self.epoch += 1
                self.curve.append(row)
                self.train_seconds += time.perf_counter() - t0
                self.pending_validation = self.validate is not None and (
                    self.epoch % t.eval_every == 0 or self.epoch == t.epochs or self.step >= self.total_steps)
                self.save("last")  # the finished epoch is kept whatever validation does
                if dist.is_main():
                    self._write_curve()
                self._validate_pending()
                if stop_after_epoch is not None and self.epoch >= stop_after_epoch:
                    break
        finally:
            bar.close()
        if self.validate is None:  # no validation split: the last epoch is the result (save() writes on rank 0)
            self.save("best")
        return {"steps": self.step, "epochs": self.epoch, "best_val_score": self.best_score}

    def _train_epoch(self, bar) -> dict:
        """Train epoch ``self.epoch`` (what is left of it); returns its row of the curve."""
        order = self._epoch_order(self.epoch)
        first = self.step - self.epoch * self.steps_per_epoch  # > 0 only when max_steps cut an epoch
        order = order[first: first + self.total_steps - self.step]
        t0, n_clips, wait = time.perf_counter(), 0, 0.0
        sums: dict[str, float] = {}
        batches = iter(self.batches.iterate(order, self.epoch))
        while True:
            tw = time.perf_counter()
            batch = next(batches, None)
            wait += time.perf_counter() - tw
            if batch is None:
                break
            batch = batch.to(self.device, non_blocking=True)
            losses = self.train_step(batch)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
            n_clips += len(batch) * self.world
            bar.update(1)
            bar.set_postfix(loss=f"{losses['loss']:.3f}", clips_s=f"{n_clips / (time.perf_counter() - t0):.0f}")
        n = max(1, self.step - self.epoch * self.steps_per_epoch)
        return {"epoch": self.epoch + 1, "step": self.step, "lr": self.scheduler.get_last_lr()[0],
                "clips_per_s": n_clips / max(1e-9, time.perf_counter() - t0),
                "data_wait_share": wait / max(1e-9, time.perf_counter() - t0),
                **{f"train_{k}": v / n for k, v in sums.items()}}

    def _validate_pending(self) -> None:
        """Validate the epoch just saved; keep ``best`` if it scores higher (t2v R@1 + R@5 + R@10)."""
        if not self.pending_validation:
            return
        val = self.validate()
        self.curve[-1].update({f"val_{k}": v for k, v in val.items()})
        score = val["t2v_R@1"] + val["t2v_R@5"] + val["t2v_R@10"]
        if score > self.best_score:
            self.best_score = score
            self.save("best")
        self.pending_validation = False
        if dist.is_main():
            save_train_state(self.run_dir / "checkpoints" / "last", self._state())
            self._write_curve()
        dist.barrier()

    def _write_curve(self) -> None:
        keys = sorted({k for r in self.curve for k in r}, key=lambda k: (k not in ("epoch", "step", "lr"), k))
        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=keys)
                w.writeheader()
                w.writerows(self.curve)
        atomic_write(self.run_dir / "curve.csv", write)
