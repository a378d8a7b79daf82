"""Mechanism metrics: do the global weights find the captioned frames, do the queries divide a video?

Where a split has a ``FrameAnnotation`` (the embedded world), for each caption i and its own video v:

    captioned mass      m_i = sum_{f captioned} w_f(t_i, v)       (w: the global interaction's weights)
    chance              c_i = |captioned real frames| / |real frames|   (what uniform weights give)
    weight entropy      H(w(t_i, v)) / log |real frames|           (1 = uniform, 0 = one frame)

and for each video, with a_k = argmax_f of query k's cross-attention in the decoder's last layer:

    segment coverage    |{segment(a_k) : k = 1..K}| / number of segments
    one segment         1 / number of segments                     (every query on one segment)
    random frames       (1/n_seg) sum_s [1 - (1 - len_s / |real frames|)^K]   (K independent uniform peaks)

and t2v R@1 per caption kind (ranks over the whole gallery). Each is averaged over the split.
Datasets without frame annotations get none of these. Every dataset gets

    frame cosine        mean over videos of the mean cos(x_f, x_g), f != g real frames   (``FrameSimilarity``)

of the backbone's frame features x_f: how alike a video's frames are (1: one picture throughout).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from glscl.data.world.annotation import FrameAnnotation
from glscl.engine.metrics import t2v_ranks
from glscl.model.interaction import global_interaction_weights


def pairwise_cosine(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per item (B x K x n): the mean over k != l of cos(x_k, x_l), both real when ``mask`` (B x K) is
    given; (B,) in float64, NaN for an item with fewer than two real rows."""
    x = F.normalize(x.double(), dim=-1)
    k = x.shape[1]
    pair = ~torch.eye(k, dtype=torch.bool, device=x.device).expand(x.shape[0], k, k)
    if mask is not None:
        m = mask.bool()
        pair = pair & m[:, :, None] & m[:, None, :]
    n_pairs = pair.sum((1, 2))
    mean = ((x @ x.transpose(1, 2)) * pair).sum((1, 2)) / n_pairs.clamp_min(1)
    return mean.masked_fill(n_pairs == 0, float("nan"))


class FrameSimilarity:
    """Running mean of the frame cosine (module docstring) over the (frames, mask) blocks that ``tap`` passes on."""

    def __init__(self) -> None:
        self.total, self.n = 0.0, 0

    def tap(self, blocks):
        for frames, mask in blocks:
            per_video = pairwise_cosine(frames, mask)
            real = ~per_video.isnan()
            self.total += float(per_video[real].sum())
            self.n += int(real.sum())
            yield frames, mask

    def record(self) -> dict[str, float]:
        return {"frame_cosine": self.total / self.n} if self.n else {}


class MechanismProbe:
    """Collects the mechanism metrics block by block during ``glscl.engine.evaluate.evaluate``."""

    def __init__(self, annotation: FrameAnnotation, caption_video) -> None:
        self.annotation = annotation
        self.caption_video = np.asarray(caption_video)
        self.mass, self.chance, self.entropy = [], [], []
        self.coverage, self.one, self.random = [], [], []

    @torch.no_grad()
    def add(self, head, text, video, offset: int) -> None:
        """The captions whose video lies in this block (videos offset .. offset + B - 1), and the block's videos."""
        cfg = getattr(head, "cfg", None)
        if cfg is None or getattr(cfg, "head", "glscl") != "glscl":
            return
        frames, mask = video.frames, video.mask
        if cfg.interaction in ("global", "both"):
            captions = np.flatnonzero((self.caption_video >= offset) & (self.caption_video < offset + frames.shape[0]))
            if len(captions):
                own = torch.as_tensor(self.caption_video[captions] - offset)
                sentence = text.sentence[torch.as_tensor(captions)].to(frames.device)
                pairs = torch.arange(len(captions))
                w = global_interaction_weights(sentence, frames[own], mask[own], cfg.global_tau,
                                               cfg.global_normalize)[pairs, pairs].cpu().double()  # (n, T)
                real = mask[own].cpu()
                captioned = torch.as_tensor(self.annotation.caption_frames[captions]) & real
                self.mass += (w * captioned).sum(1).tolist()
                self.chance += (captioned.sum(1) / real.sum(1)).tolist()
                p = w.clamp_min(1e-300)
                n_real = real.sum(1).double()
                self.entropy += torch.where(n_real > 1, -(w * p.log()).sum(1) / n_real.log().clamp_min(1e-12),
                                            torch.zeros_like(n_real)).tolist()
        if video.queries is not None and getattr(head, "local", None) is not None:
            maps = head.local.attention_maps(frames, mask, "video")[-1].cpu()  # (B, K, T)
            segment = self.annotation.segment[offset:offset + frames.shape[0]]
            k = maps.shape[1]
            for b, peaks in enumerate(maps.argmax(-1).numpy()):
                seg = segment[b]
                n_seg = int(seg.max()) + 1
                if n_seg < 2:
                    continue
                lengths = np.bincount(seg[seg >= 0], minlength=n_seg) / (seg >= 0).sum()
                self.coverage.append(len(set(seg[peaks].tolist())) / n_seg)
                self.one.append(1 / n_seg)
                self.random.append(float(np.mean(1 - (1 - lengths) ** k)))

    def record(self, sim: torch.Tensor) -> dict[str, float]:
        """The split's means (see the module docstring) and t2v R@1 per caption kind ('t2v_R@1:<kind>')."""
        out: dict[str, float] = {}
        if self.mass:
            out |= {"global_captioned_mass": float(np.mean(self.mass)),
                    "global_captioned_chance": float(np.mean(self.chance)),
                    "global_weight_entropy": float(np.mean(self.entropy))}
        if self.coverage:
            out |= {"segment_coverage": float(np.mean(self.coverage)),
                    "segment_coverage_one": float(np.mean(self.one)),
                    "segment_coverage_random": float(np.mean(self.random))}
        ranks = t2v_ranks(sim, self.caption_video)
        kinds = np.asarray(self.annotation.caption_kind)
        for kind in sorted(set(kinds)):
            out[f"t2v_R@1:{kind}"] = 100.0 * float(np.mean(ranks[kinds == kind] <= 1))
            out[f"captions:{kind}"] = int((kinds == kind).sum())
        return out
