"""PEM's crop boxes, pseudo-labels, prompter and loss (steps 3-6 of ``glscl.pem``)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from glscl.config import PEMConfig, RunConfig
from glscl.data.video import ClipTransform
from glscl.model.backbone import Backbone, create_backbone
from glscl.model.interaction import masked_mean
from glscl.pem.entities import TEMPLATES, entity_prompts, mine_entities


def box_sizes(grid_h: int, grid_w: int, min_area: float = 0.3, max_area: float = 0.5,
              aspect: tuple[float, float] = (0.3, 1 / 0.3)) -> list[tuple[int, int]]:
    """(height, width) in patches of the boxes whose area share h w / (H W) lies in [min_area, max_area]
    and whose aspect h / w lies in ``aspect`` (ALPRO's range)."""
    sizes = [(h, w) for h in range(1, grid_h + 1) for w in range(1, grid_w + 1)
             if min_area - 1e-9 <= h * w / (grid_h * grid_w) <= max_area + 1e-9 and aspect[0] <= h / w <= aspect[1]]
    if not sizes:
        raise ValueError(f"no box on a {grid_h}x{grid_w} patch grid covers {min_area:.0%}-{max_area:.0%} of the frame")
    return sizes


def sample_boxes(batch: int, grid_h: int, grid_w: int, min_area: float = 0.3, max_area: float = 0.5,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """One box per clip, (batch x 4) long: (top, left, height, width) in patch units.

    The size is drawn uniformly among ``box_sizes`` (so the area share is always in range), then
    the position uniformly among the places where the box fits. A clip's box is used for all its
    frames.
    """
    sizes = torch.tensor(box_sizes(grid_h, grid_w, min_area, max_area))
    pick = sizes[torch.randint(len(sizes), (batch,), generator=generator)]
    h, w = pick[:, 0], pick[:, 1]
    top = (torch.rand(batch, generator=generator) * (grid_h - h + 1)).long()
    left = (torch.rand(batch, generator=generator) * (grid_w - w + 1)).long()
    return torch.stack([top, left, h, w], dim=1)


def box_patch_mask(boxes: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """(B x grid_h*grid_w) bool, True for the patches inside each box (row-major, as ViT patch tokens)."""
    rows = torch.arange(grid_h, device=boxes.device)[None, :, None]
    cols = torch.arange(grid_w, device=boxes.device)[None, None, :]
    top, left, h, w = (boxes[:, i, None, None] for i in range(4))
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    return inside.flatten(1)


def crop_to_box(pixels: torch.Tensor, boxes: torch.Tensor, patch: tuple[int, int] | int,
                fill: torch.Tensor | float = 0.0) -> torch.Tensor:
    """The clips with every pixel outside the box set to ``fill``; the box is the same on every frame.

    pixels: B x T x C x H x W; boxes: B x 4 in patches; patch: patch size in pixels; fill: a number
    or a per-channel tensor (C), e.g. the normalised value of black.
    """
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    grid_h, grid_w = pixels.shape[-2] // ph, pixels.shape[-1] // pw
    inside = box_patch_mask(boxes, grid_h, grid_w).view(-1, 1, 1, grid_h, grid_w)
    inside = inside.repeat_interleave(ph, dim=3).repeat_interleave(pw, dim=4)
    fill = torch.as_tensor(fill, dtype=pixels.dtype, device=pixels.device)
    if fill.ndim == 1:
        fill = fill.view(1, 1, -1, 1, 1)
    return torch.where(inside, pixels, fill)


# ================================================================================================
# PEM: pseudo-labels, pooling, loss
# ================================================================================================


def pseudo_labels(sim: torch.Tensor, tau: float, min_confidence: float = 0.2,
                  rule: str = "paper") -> tuple[torch.Tensor, torch.Tensor]:
    """Soft labels q = softmax(sim / tau) (B x M) and which samples to keep (B, bool).

    'paper': keep a sample when max_m q_m >= min_confidence. 'released': the released code's test,
    ``ignore = sim.max(dim=1)[1] < threshold``, which compares the argmax *index* with the
    threshold: with 0.2 it drops exactly the samples whose best entity is entity 0, whatever their
    confidence (a bug, kept so its effect can be ablated).
    """
    q = (sim / tau).softmax(dim=-1)
    if rule == "paper":
        keep = q.max(dim=-1).values >= min_confidence
    elif rule == "released":
        keep = ~(sim.argmax(dim=-1) < min_confidence)
    else:
        raise ValueError(f"rule must be 'paper' or 'released', got {rule!r}")
    return q, keep


def pool_box(patch_tokens: torch.Tensor, inside: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the patch tokens inside the box, over the box's patches and the real frames.

        r = sum_{f,p} m_f b_p x_fp / sum_{f,p} m_f b_p        patch_tokens B x T x P x d -> B x d
    """
    w = frame_mask.to(patch_tokens.dtype)[:, :, None] * inside.to(patch_tokens.dtype)[:, None, :]  # B x T x P
    return torch.einsum("btp,btpd->bd", w, patch_tokens) / w.sum((1, 2)).clamp_min(1.0)[:, None]


def soft_cross_entropy(logits: torch.Tensor, q: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """L = 1/|kept| sum_{i kept} -sum_m q_im log softmax(logits_i)_m; 0 (still part of the graph)
    when no sample is kept (the release divides by zero then)."""
    ce = -(q * logits.log_softmax(dim=-1)).sum(-1)
    return (ce * keep.to(ce.dtype)).sum() / keep.sum().clamp_min(1)


class EntityHead(nn.Module):
    """ALPRO's PEM head: Linear(d, 2d), ReLU, Linear(2d, M): pooled box features -> entity logits."""

    def __init__(self, width: int, num_entities: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.ReLU(), nn.Linear(2 * width, num_entities))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.mlp(pooled)


class Prompter(nn.Module):
    """A frozen VTC-trained dual encoder (here a CLIP) that scores clips against entity prompts.

    Entity embeddings, computed once: e_m = normalize(mean_j normalize(f(template_j(entity_m)))).
    A clip's embedding: c = normalize(mean over real frames of normalize(g(frame))). Scores: c . e_m.
    Never trained (``requires_grad_(False)``, eval mode, no graph); not part of the trained model,
    so checkpoints do not carry it.
    """

    def __init__(self, backbone: Backbone, entities: Sequence[str], templates: Sequence[str]):
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.entities = tuple(entities)
        self.templates = tuple(templates)
        self.register_buffer("entity_embeddings", self._embed_entities(), persistent=False)
        self.eval()

    @torch.no_grad()
    def _embed_entities(self, batch_size: int = 512) -> torch.Tensor:
        prompts = entity_prompts(self.entities, self.templates)
        device = self.backbone.logit_scale.device
        feats = []
        for i in range(0, len(prompts), batch_size):
            ids = self.backbone.tokenizer(prompts[i:i + batch_size]).to(device)
            feats.append(F.normalize(self.backbone.encode_text(ids).sentence.float(), dim=-1))
        per_template = torch.cat(feats).view(len(self.templates), len(self.entities), -1)
        return F.normalize(per_template.mean(0), dim=-1)

    @property
    def temperature(self) -> float:
        """The prompter's own learned temperature: 1 / min(exp(logit_scale), 100), as CLIP clamps it."""
        return 1.0 / min(float(self.backbone.logit_scale.exp()), 100.0)

    def train(self, mode: bool = True):
        return super().train(False)  # always in eval mode (no dropout)

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """pixels (B x T x 3 x H x W, the prompter's normalisation), frame_mask (B x T) -> cosines (B x M)."""
        frames = F.normalize(self.backbone.encode_frames(pixels).float(), dim=-1)
        clip = F.normalize(masked_mean(frames, frame_mask.bool()), dim=-1)
        return clip @ self.entity_embeddings.T


@dataclass
class PromptEntityModeling:
    """PEM for one run: a frozen ``Prompter`` and the trained ``EntityHead`` (attached to the model).

    ``loss(pixels, frame_mask, patch_tokens, generator)`` runs steps 3-6 of the module docstring on
    one (local) batch and returns {'pem': L_PEM, 'pem_kept': share of samples kept}.

    pixels are normalised with the model's mean/std (``model_mean``, ``model_std``); the prompter's
    input is renormalised to its own when they differ, and the outside of the box is black.
    """

    prompter: Prompter
    head: EntityHead
    patch: tuple[int, int]
    grid: tuple[int, int]
    cfg: PEMConfig
    model_mean: tuple[float, float, float]
    model_std: tuple[float, float, float]

    @property
    def entities(self) -> tuple[str, ...]:
        return self.prompter.entities

    def _prompter_pixels(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels in the prompter's normalisation and the prompter's value of black (per channel)."""
        pre = ClipTransform.for_backbone(self.prompter.backbone)
        mean_p = torch.tensor(pre.mean, dtype=pixels.dtype, device=pixels.device)
        std_p = torch.tensor(pre.std, dtype=pixels.dtype, device=pixels.device)
        if pre.mean != tuple(self.model_mean) or pre.std != tuple(self.model_std):
            mean_m = torch.tensor(self.model_mean, dtype=pixels.dtype, device=pixels.device).view(1, 1, 3, 1, 1)
            std_m = torch.tensor(self.model_std, dtype=pixels.dtype, device=pixels.device).view(1, 1, 3, 1, 1)
            pixels = ((pixels * std_m + mean_m) - mean_p.view(1, 1, 3, 1, 1)) / std_p.view(1, 1, 3, 1, 1)
        return pixels, -mean_p / std_p

    def targets(self, pixels: torch.Tensor, frame_mask: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompter's soft labels q (B x M) and keep mask (B) for these boxes."""
        x, black = self._prompter_pixels(pixels.detach())
        sim = self.prompter(crop_to_box(x, boxes, self.patch, black), frame_mask)
        tau = self.cfg.temperature if self.cfg.temperature is not None else self.prompter.temperature
        return pseudo_labels(sim.float(), tau, self.cfg.min_confidence, self.cfg.confidence_rule)

    def loss(self, pixels: torch.Tensor, frame_mask: torch.Tensor, patch_tokens: torch.Tensor,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        boxes = sample_boxes(pixels.shape[0], *self.grid, self.cfg.crop_min_area, self.cfg.crop_max_area,
                             generator=generator).to(pixels.device)
        q, keep = self.targets(pixels, frame_mask, boxes)
        inside = box_patch_mask(boxes, *self.grid)
        logits = self.head(pool_box(patch_tokens, inside, frame_mask.bool())).float()
        return {"pem": soft_cross_entropy(logits, q, keep), "pem_kept": keep.float().mean()}


def build_prompter(cfg: RunConfig, entities: Sequence[str], device: str | torch.device = "cpu") -> Prompter:
    """The frozen prompter of ``cfg``: ``pem.prompter`` (or ``model.pretrained``) with ``pem.prompter_backbone``
    (or ``model.backbone``), the full BPE vocabulary (the templates' words are outside compact ones)."""
    name = cfg.pem.prompter_backbone or cfg.model.backbone
    weights = cfg.pem.prompter or cfg.model.pretrained
    backbone = create_backbone(name, weights, context_length=cfg.model.max_words, device=device,
                               setting="pem.prompter" if cfg.pem.prompter else "model.pretrained")
    return Prompter(backbone, entities, TEMPLATES[cfg.pem.templates]).to(device)


def build_pem(cfg: RunConfig, model: nn.Module, captions: Sequence[str],
              device: str | torch.device = "cpu") -> PromptEntityModeling:
    """Mine the entities from ``captions``, load the prompter, and attach a fresh ``EntityHead`` to
    ``model`` (a ``Retriever``) as ``model.entity_head``, so it trains and is saved with the model.
    Call before the optimiser is built."""
    entities = mine_entities(captions, cfg.pem.num_entities, cfg.pem.entity_kind)
    if not entities:
        raise ValueError("prompt entity modeling: no entity found in the training captions")
    visual = model.backbone.clip.visual
    patch = tuple(int(p) for p in (visual.patch_size if isinstance(visual.patch_size, (tuple, list)) else (visual.patch_size,) * 2))
    grid = tuple(int(g) for g in visual.grid_size)
    box_sizes(*grid, cfg.pem.crop_min_area, cfg.pem.crop_max_area)  # fail now, not at the first step
    prompter = build_prompter(cfg, entities, device)
    if prompter.backbone.image_size != model.backbone.image_size:
        raise ValueError(f"prompter image size {prompter.backbone.image_size} != model image size {model.backbone.image_size}")
    model.entity_head = EntityHead(model.backbone.width, len(entities)).to(device)
    pre = ClipTransform.for_backbone(model.backbone)
    return PromptEntityModeling(prompter, model.entity_head, patch, grid, cfg.pem, pre.mean, pre.std)
