"""A short image-text "CLIP pre-training" of a tiny open_clip model on the world's frames.

Real GLSCL starts from CLIP, which already aligns images with words. Without it, a tiny model
learning video retrieval from scratch in minutes does not get past mean pooling. So the
embedded default first trains a tiny open_clip model contrastively on single frames captioned
with what they show ("a small red circle and a large blue square"), saves it as an ordinary
open_clip checkpoint, and GLSCL then loads it through the same ``pretrained=<path>`` route a
real CLIP uses.

    L = InfoNCE(exp(s) * cos(image_i, text_j)) with identical captions masked as false negatives.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from glscl.data.dataset import caption_ids
from glscl.data.video import ClipTransform, load_clip
from glscl.data.world import frame_caption_samples, load_world
from glscl.engine.train import warmup_cosine
from glscl.files import atomic_write, write_json
from glscl.losses import info_nce
from glscl.model.backbone import Tokenizer, create_backbone, save_backbone
from glscl.progress import progress_bar


@dataclass(frozen=True)
class PretrainConfig:
    """backbone: tiny open_clip config; steps, batch_size, lr, weight_decay, warmup: the optimisation."""

    backbone: str = "glscl-tiny"
    steps: int = 400
    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup: float = 0.05
    context_length: int = 32
    seed: int = 0


def world_vocab(world_root: str | Path, context_length: int = 32) -> tuple[int, ...]:
    """Compact vocabulary covering every caption of the world (video and frame captions)."""
    world = load_world(world_root)
    frame_captions = [c for _, _, c in frame_caption_samples(world_root, ("train", "val", "test"))]
    texts = [c.text for v in world.videos for c in v.captions] + frame_captions
    return Tokenizer.build_vocab(sorted(set(texts)), context_length)


def _frames_and_captions(world_root: Path, transform: ClipTransform, num_frames: int, show: bool):
    samples = frame_caption_samples(world_root, ("train",))
    world = load_world(world_root)
    by_video: dict[str, list[tuple[int, str]]] = {}
    for vid, t, cap in samples:
        by_video.setdefault(vid, []).append((t, cap))
    pixels, captions = [], []
    for vid, items in progress_bar(list(by_video.items()), desc="decode frames for pre-training", unit="video",
                                   enabled=show):
        frames, mask = load_clip(world.video_path(vid), num_frames)
        x = transform(frames, mask)
        for t, cap in items:
            pixels.append(x[t])
            captions.append(cap)
    return torch.stack(pixels), captions


def pretrain_clip(world_root: str | Path, out_file: str | Path, cfg: PretrainConfig = PretrainConfig(), *,
                  device: str | torch.device = "cpu", progress: bool = True) -> Path:
    """Pre-train a tiny CLIP on the world's frame captions; write ``out_file`` (safetensors) and reuse it if current.

    ``out_file`` is an open_clip checkpoint with the full token table: load it with
    ``create_backbone(cfg.backbone, pretrained=str(out_file))``. A sidecar ``.json`` records
    the settings and the world it was trained on; a mismatch retrains.
    """
    world_root, out_file = Path(world_root), Path(out_file)
    world_meta = (world_root / "world.json").read_bytes()
    stamp = {"config": asdict(cfg), "world": hashlib.sha256(world_meta).hexdigest()}
    sidecar = out_file.with_suffix(".json")
    if out_file.is_file() and sidecar.is_file() and json.loads(sidecar.read_text()).get("stamp") == stamp:
        return out_file
    torch.manual_seed(cfg.seed)
    backbone = create_backbone(cfg.backbone, None, context_length=cfg.context_length, device=device)
    backbone.use_compact_vocab(world_vocab(world_root, cfg.context_length))
    transform = ClipTransform.for_backbone(backbone)
    num_frames = load_world(world_root).config.frames
    pixels, captions = _frames_and_captions(world_root, transform, num_frames, show=progress)
    ids = backbone.tokenizer(captions)
    ids = ids[:, : int((ids != 0).sum(1).max())]  # frame captions are short: drop the all-padding tail
    cap_id = torch.from_numpy(caption_ids(captions))
    opt = torch.optim.AdamW(backbone.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.steps, cfg.warmup))
    g = torch.Generator().manual_seed(cfg.seed)
    backbone.train()
    t0, losses = time.perf_counter(), []
    bar = progress_bar(range(cfg.steps), desc="pre-train tiny CLIP on frames", unit="step", enabled=progress)
    for _ in bar:
        idx = torch.randint(len(captions), (cfg.batch_size,), generator=g)
        img = F.normalize(backbone.clip.encode_image(pixels[idx].to(device)), dim=-1)
        txt = F.normalize(backbone.encode_text(ids[idx].to(device)).sentence, dim=-1)
        same = (cap_id[idx][:, None] == cap_id[idx][None, :]).to(device)
        loss = info_nce(txt @ img.T, backbone.logit_scale, same_caption=same)
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"pre-training loss became non-finite at step {len(losses)}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out_file, lambda tmp: save_backbone(backbone, tmp))
    write_json(sidecar, {"stamp": stamp, "seconds": time.perf_counter() - t0, "first_loss": losses[0],
                         "last_loss": float(np.mean(losses[-20:])), "frames": len(captions)})
    return out_file
