"""ALPRO baselines: video-text contrastive learning (VTC) and prompt entity modeling (PEM).

Li et al., *Align and Prompt: Video-and-Language Pre-training with Entity Prompts* (ALPRO, CVPR 2022,
arXiv 2112.09583). Both are switchable in a run's config, so an ablation grid can compare them with
GLSCL: ``model.objective = 'vtc'`` replaces GLSCL's similarity and loss; ``loss.pem_weight > 0`` adds
PEM to either objective ("GLSCL + PEM", "VTC + PEM" = ALPRO's retrieval objectives minus VTM).

**VTC** (``VTCHead``, ``vtc_loss``). A [CLS] vector per item, a linear projection to D (256),
L2 normalisation, and a symmetric InfoNCE over in-batch negatives at a learned temperature:

    z^t = normalize(W_t t),            t     = the text's end-of-text state (CLIP's sentence vector)
    z^v = normalize(W_v v_cls),        v_cls = mean over real frames of v_f
    S   = z^t (z^v)^T                  (cosine; N texts x M videos)
    L   = 1/2 [ CE_rows(S / temp, diag) + CE_cols(S / temp, diag) ]

``v_f`` are the frame features after the temporal transformer (CLIP4Clip's seqTransf, the same
module GLSCL uses; ``model.temporal_layers = 0`` leaves the raw CLIP frame embeddings). ALPRO takes
the [CLS] token of its video encoder (TimeSformer); a CLIP image tower has no video-level token, so
the mean of the temporally mixed frame features stands in for it (CLIP4Clip's meanP, on seqTransf
outputs). With the same temporal transformer on both sides, VTC vs GLSCL differs only in the head
and the loss, which is what the ablation should isolate.

The temperature is a parameter initialised at 0.07 and, as in ALPRO, clamped *in place* to
[0.001, 0.5] before every use (``VTCHead.clamp_temperature_``): the stored value never leaves the
range, so it can move back from a bound. Negatives are the global batch: the trainer all-gathers
z^t and z^v (``glscl.distributed.gather``, rank order), so the positive of local item i of rank r
sits in column r * local_batch + i, as ALPRO's targets say; every process computes the same global
loss and the averaged gradients equal the single-process gradient. ALPRO does not mask identical
captions; the workbench applies GLSCL's false-negative mask to both objectives
(``loss.mask_false_negatives``), so that the comparison isolates the objective.

``VTCHead`` keeps GLSCL's interface (``encode_text``, ``encode_video``, ``similarity``), so the
evaluation code, the feature cache and end-to-end training run it unchanged. Its projected [CLS]
vectors travel as the embeddings' single "query" (``queries`` of shape B x 1 x D): the code that
gathers, concatenates and streams GLSCL's query outputs carries them as they are, and
S = z^t (z^v)^T is GLSCL's ``local_similarity`` with K = 1.

**PEM** (``PromptEntityModeling``). Entity pseudo-labels from a frozen prompter, predicted by the
model from its own patch tokens:

1. entities: the M most frequent nouns of the training captions (``mine_entities``; a small
   rule-based tagger, no model download);
2. prompts: each entity in an ensemble of templates ("A video of a {}.", ...); the unit-norm text
   embeddings of its prompts are averaged and re-normalised: e_m = normalize(mean_j normalize(f(p_jm)))
   (the release averages without re-normalising);
3. a random box on the patch grid covering 30-50 % of the frame, the same for every frame of a
   clip; the prompter sees the clip with the pixels outside the box zeroed (black);
4. soft pseudo-labels from the prompter: c = normalize(mean over real frames of normalize(g(crop_f))),
   q = softmax(c . e / tau); a sample is dropped when max_m q_m < 0.2 (``pseudo_labels``);
5. the model's patch tokens (the same forward pass as retrieval) pooled inside the box, mean over
   the box's patches and the real frames, into an MLP (Linear d -> 2d, ReLU, Linear 2d -> M, as ALPRO);
6. L_PEM = mean over kept samples of -sum_m q_m log softmax(logits)_m (soft cross-entropy).

The released code has two quirks documented where they matter: its drop rule compares the argmax
*index* of the similarities with 0.2 (``confidence_rule='released'`` reproduces it), and its box is
drawn with area share in [0.3, 0.5] and *then* snapped down to the patch grid, so real boxes often
cover less than 30 %. Here the box is drawn among the grid-aligned boxes whose area share lies in
the range, so the 30-50 % promise holds. ALPRO pools the patch outputs of its fusion encoder (text
and video jointly); a dual encoder has none, so the visual encoder's own patch tokens are pooled.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone, create_backbone
from .config import ModelConfig, PEMConfig, RunConfig
from .model import GLSCL, TemporalTransformer, TextEmbedding, VideoEmbedding, local_similarity, masked_mean

TEMPERATURE_RANGE = (0.001, 0.5)
"""ALPRO clamps its learned temperature to this range before every forward pass."""

VIDEO_TEMPLATES = (
    "A footage of a {}.", "A footage of the {}.", "A footage of one {}.",
    "A video of a {}.", "A video of the {}.", "A video of one {}.",
    "A portrait of a {}.", "A portrait of the {}.", "A portrait of one {}.",
    "A video footage of a {}.", "A video footage of the {}.", "A video footage of one {}.",
)
"""ALPRO's prompt templates for video inputs (paper, Table 8)."""

BARE_TEMPLATES = ("a {}",)
"""One template in the style of the embedded world's frame captions ("a small red circle")."""

TEMPLATES = {"video": VIDEO_TEMPLATES, "bare": BARE_TEMPLATES}


# ================================================================================================
# VTC
# ================================================================================================


class VTCHead(nn.Module):
    """ALPRO's video-text contrastive head over backbone features; GLSCL's interface.

        v_f = frames + TemporalTransformer(frames + pos)      (absent when temporal_layers = 0)
        z^v = normalize(W_v mean_{real f} v_f)                 (B x D)
        z^t = normalize(W_t sentence)                          (B x D)
        S   = z^t (z^v)^T

    The embeddings carry z as their only "query" (B x 1 x D); see the module docstring.
    """

    def __init__(self, cfg: ModelConfig, width: int):
        super().__init__()
        self.cfg = cfg
        self.temporal = (TemporalTransformer(width, cfg.temporal_layers, cfg.temporal_heads, cfg.num_frames, cfg.dropout)
                         if cfg.temporal_layers > 0 else None)
        self.text_proj = nn.Linear(width, cfg.vtc_dim)
        self.video_proj = nn.Linear(width, cfg.vtc_dim)
        self.temperature = nn.Parameter(torch.tensor(float(cfg.vtc_temperature)))

    def clamp_temperature_(self) -> torch.Tensor:
        """Clamp the learned temperature into [0.001, 0.5] in place (no gradient), as ALPRO does
        before every forward pass; returns the parameter, ready to divide the similarities by."""
        with torch.no_grad():
            self.temperature.clamp_(*TEMPERATURE_RANGE)
        return self.temperature

    def encode_video(self, frames: torch.Tensor, mask: torch.Tensor) -> VideoEmbedding:
        """frames: per-frame embeddings (B x T x d); mask: True for real frames (B x T)."""
        mask = mask.bool()
        if self.temporal is not None:
            frames = self.temporal(frames, mask)
        z = F.normalize(self.video_proj(masked_mean(frames, mask)), dim=-1)
        return VideoEmbedding(frames, mask, z.unsqueeze(1))

    def encode_text(self, sentence: torch.Tensor, tokens: torch.Tensor | None = None,
                    mask: torch.Tensor | None = None) -> TextEmbedding:
        """sentence: end-of-text state t (B x d); token states are not used by VTC."""
        z = F.normalize(self.text_proj(sentence), dim=-1)
        return TextEmbedding(sentence, z.unsqueeze(1))

    def similarity_parts(self, text: TextEmbedding, video: VideoEmbedding) -> dict[str, torch.Tensor]:
        return {"vtc": local_similarity(text.queries, video.queries)}

    def similarity(self, text: TextEmbedding, video: VideoEmbedding) -> torch.Tensor:
        """S = z^t (z^v)^T, N texts x M videos (cosines)."""
        return self.similarity_parts(text, video)["vtc"]

    def forward(self, sentence, tokens, token_mask, frames, frame_mask):
        text = self.encode_text(sentence, tokens, token_mask)
        video = self.encode_video(frames, frame_mask)
        return self.similarity(text, video), text, video


def vtc_loss(sim: torch.Tensor, temperature: torch.Tensor | float,
             same_caption: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """ALPRO's VTC loss on the (gathered) B x B cosine matrix S, row = text, column = video.

        L_t2v = -1/B sum_i log( exp(S_ii / temp) / sum_j exp(S_ij / temp) )
        L_v2t = -1/B sum_i log( exp(S_ii / temp) / sum_j exp(S_ji / temp) )
        L     = (L_t2v + L_v2t) / 2

    (= ``info_nce`` with logit scale log(1 / temp) and no clamp). ``same_caption`` (B x B bool):
    off-diagonal pairs that are not true negatives, removed from the softmax. Returns
    {'vtc': L, 'loss': L, 'temperature': temp} (the last for logging).
    """
    temperature = torch.as_tensor(temperature, dtype=sim.dtype, device=sim.device)
    logits = sim / temperature
    if same_caption is not None:
        eye = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
        logits = logits.masked_fill(same_caption & ~eye, float("-inf"))
    target = torch.arange(sim.shape[0], device=sim.device)
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    return {"vtc": loss, "loss": loss, "temperature": temperature.detach()}


def create_head(cfg: ModelConfig, width: int, logit_scale: float = math.log(1 / 0.07)) -> GLSCL | VTCHead:
    """The head ``cfg.objective`` asks for: ``GLSCL`` ('glscl') or ``VTCHead`` ('vtc')."""
    if cfg.objective == "vtc":
        return VTCHead(cfg, width)
    return GLSCL(cfg, width, logit_scale)


# ================================================================================================
# PEM: entities mined from captions
# ================================================================================================

DETERMINERS = frozenset("a an the this that these those some any each every another one two three four five six "
                        "seven eight nine ten several many few both all his her its their my your our".split())
PLURAL_DETERMINERS = frozenset("these those some two three four five six seven eight nine ten several many few both all".split())
STOP_WORDS = DETERMINERS | frozenset(
    # pronouns, prepositions, conjunctions, auxiliaries, adverbs and fillers frequent in captions
    "i me he him she it we us they them you who whom whose which what where when why how there here "
    "of in on at to from by with without into onto over under above below behind between through across "
    "around near along about against during before after up down off out left right away back "
    "and or but while then than as if so because also too very just only still again not no nor "
    "is are was were be been being am has have had do does did can could will would shall should may might must "
    "something someone somebody anything everything nothing thing things other another same such own "
    "video videos clip footage scene shown showing shows".split())
ADJECTIVES = frozenset(
    "small large big little tiny huge giant tall short long wide narrow thick thin fat "
    "red green blue yellow black white brown orange pink purple gray grey golden silver dark light bright "
    "young old new good bad great nice beautiful pretty cute ugly happy sad funny angry serious "
    "hot cold warm cool wet dry clean dirty full empty open closed first second third last next "
    "front back top bottom middle main real whole single double several various different same "
    "busy crowded sunny cloudy heavy fast slow loud quiet famous shiny fancy fresh strong soft hard "
    "round wild asian african american english chinese indian".split())
ADJECTIVE_SUFFIXES = ("ful", "ous", "ive", "able", "ible", "less", "ish")
IRREGULAR_PLURALS = {"men": "man", "women": "woman", "children": "child", "people": "people", "feet": "foot",
                     "teeth": "tooth", "mice": "mouse", "geese": "goose"}
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[^\sa-z]")


def _is_word(token: str) -> bool:
    return token[0].isalpha()


def _is_modifier(token: str) -> bool:
    """Adjective-like: in the lexicon, an adjective suffix, a participle (-ing, -ed) or a numeral."""
    return (token in ADJECTIVES or token.endswith(ADJECTIVE_SUFFIXES) or token.endswith(("ing", "ed"))
            or token.isdigit())


def singular(noun: str) -> str:
    """A plural noun's singular by suffix rules: -ies -> -y; -sses, -xes, -ches, -shes -> drop 'es'; -s -> drop."""
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith("ies") and len(noun) > 4:
        return noun[:-3] + "y"
    if noun.endswith(("sses", "xes", "ches", "shes")):
        return noun[:-2]
    if noun.endswith("s") and not noun.endswith(("ss", "us", "is")):
        return noun[:-1]
    return noun


def noun_phrases(caption: str) -> list[tuple[tuple[str, ...], str]]:
    """(modifiers, head noun) of every determiner phrase of a caption, by a small rule-based tagger.

    A determiner ("a", "the", "two", "his", ...) opens a phrase; the adjective-like words after it
    (lexicon, suffixes -ful/-ous/-ive/-able/-ible/-less/-ish, participles -ing/-ed, numerals) are
    its modifiers as long as another word follows that is no stop word; the next word, if it is no
    stop word or punctuation, is the head noun (singularised after a plural determiner: "two dogs"
    -> "dog"). Nouns without a determiner ("people dancing") and compound heads ("a tennis ball"
    gives "tennis") are the known misses of so small a tagger.

        >>> noun_phrases("a small red circle moves left, then two dogs appear")
        [(('small', 'red'), 'circle'), ((), 'dog')]
    """
    tokens = _TOKEN.findall(caption.lower())
    out = []
    i = 0
    while i < len(tokens):
        det = tokens[i]
        i += 1
        if det not in DETERMINERS:
            continue
        mods = []
        while (i + 1 < len(tokens) and _is_word(tokens[i]) and tokens[i] not in STOP_WORDS and _is_modifier(tokens[i])
               and _is_word(tokens[i + 1]) and tokens[i + 1] not in STOP_WORDS):
            mods.append(tokens[i])
            i += 1
        if i < len(tokens) and _is_word(tokens[i]) and tokens[i] not in STOP_WORDS:
            head = singular(tokens[i]) if det in PLURAL_DETERMINERS else tokens[i]
            out.append((tuple(mods), head))
            i += 1
    return out


def mine_entities(captions: Iterable[str], size: int = 1000, kind: str = "nouns") -> tuple[str, ...]:
    """The ``size`` most frequent entities of the captions (count descending, then alphabetical).

    kind 'nouns': head nouns ("circle"), as ALPRO; 'phrases': head nouns with their modifiers
    ("small red circle"). Every occurrence counts. Fewer than ``size`` when the captions hold fewer.
    """
    if kind not in ("nouns", "phrases"):
        raise ValueError(f"kind must be 'nouns' or 'phrases', got {kind!r}")
    counts: Counter[str] = Counter()
    for caption in captions:
        for mods, head in noun_phrases(caption):
            counts[head if kind == "nouns" else " ".join((*mods, head))] += 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(word for word, _ in ranked[:size])


def entity_prompts(entities: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every template filled with every entity, template-major: prompt j * M + m is template j, entity m."""
    return [t.format(e) for t in templates for e in entities]


# ================================================================================================
# PEM: crop boxes on the patch grid
# ================================================================================================


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
        pre = self.prompter.backbone.preprocess_cfg
        mean_p = torch.tensor(pre["mean"], dtype=pixels.dtype, device=pixels.device)
        std_p = torch.tensor(pre["std"], dtype=pixels.dtype, device=pixels.device)
        if tuple(pre["mean"]) != tuple(self.model_mean) or tuple(pre["std"]) != tuple(self.model_std):
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
    backbone = create_backbone(name, weights, context_length=cfg.model.max_words, device=device)
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
    pre = model.backbone.preprocess_cfg
    return PromptEntityModeling(prompter, model.entity_head, patch, grid, cfg.pem,
                                tuple(pre["mean"]), tuple(pre["std"]))


def end_to_end_encoder(model: nn.Module, patch_tokens: bool = False):
    """``encode(batch)`` for end-to-end training: (text, video), plus {'patch_tokens': B x T x P x d}
    from the same forward pass when ``patch_tokens`` (what PEM pools)."""
    def encode(batch):
        text = model.encode_text(batch["ids"])
        if not patch_tokens:
            return text, model.encode_video(batch["pixels"], batch["frame_mask"])
        frames, tokens = model.backbone.encode_frames(batch["pixels"], patch_tokens=True)
        return text, model.head.encode_video(frames, batch["frame_mask"]), {"patch_tokens": tokens}
    return encode
