"""Configuration: frozen dataclasses with validation, documented fields and a YAML round trip.

Every field carries its documentation in ``metadata["help"]``; the CLI's ``--help``, the run
notebook and the saved ``config.yaml`` of every result are built from it. Defaults are the
paper's (GLSCL, MSR-VTT, ViT-B/32) unless a field says otherwise.

Errors are one line and name the field::

    >>> ModelConfig(num_queries=0)
    ConfigError: model.num_queries = 0 is out of range: must be >= 1
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from glscl.config_files import (  # noqa: F401 (ConfigError, PRESET_DIR, presets, read_yaml_mapping: re-exported)
    PRESET_DIR,
    ConfigError,
    compose_files,
    presets,
    read_config_file,
    read_yaml_mapping,
    resolve_config_file,
    yaml_problem,
    yaml_where,
)


class ConfigTypeError(ConfigError):
    """A setting wrong for any value: the wrong type, not one of the field's choices, or a field the config
    does not read (a typo or a mistaken setting, as opposed to a value out of range)."""


def _field(default: Any, help: str, *, choices: tuple | None = None,
           min: float | None = None, max: float | None = None) -> Any:
    meta = {"help": help, "choices": choices, "min": min, "max": max}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed in frozen configs")
    return field(default=default, metadata=meta)


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        args = typing.get_args(tp)
        return (isinstance(value, tuple) and len(value) == len(args)
                and all(_type_ok(v, a) for v, a in zip(value, args)))
    if dataclasses.is_dataclass(tp):
        return isinstance(value, tp)
    return isinstance(value, tp)


def _finite(value: Any) -> bool:
    """False for a float (or a tuple holding one) that is NaN or infinite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, tuple):
        return all(_finite(v) for v in value)
    return True


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class _Section:
    """Validation shared by every config section (fields checked in ``__post_init__``)."""

    section: typing.ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            name = f"{self.section}.{f.name}" if self.section else f.name
            tp = hints[f.name]
            if isinstance(value, list) and typing.get_origin(tp) is tuple:
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            if tp is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                object.__setattr__(self, f.name, value)
            if not _type_ok(value, tp):
                raise ConfigTypeError(f"{name} = {value!r} has type {type(value).__name__}; expected {_type_name(tp)}")
            if not _finite(value):
                raise ConfigError(f"{name} = {value!r} is not a finite number")
            meta = f.metadata
            if meta.get("choices") is not None and value not in meta["choices"]:
                raise ConfigTypeError(f"{name} = {value!r} is not one of {list(meta['choices'])}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if meta.get("min") is not None and value < meta["min"]:
                    raise ConfigError(f"{name} = {value!r} is out of range: must be >= {meta['min']}")
                if meta.get("max") is not None and value > meta["max"]:
                    raise ConfigError(f"{name} = {value!r} is out of range: must be <= {meta['max']}")
        self.check()

    def check(self) -> None:
        """Cross-field checks; override in a section."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.section or cls.__name__}: expected a mapping, got {type(data).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in data.items():
            if key not in known:
                where = f"{cls.section}." if cls.section else ""
                raise ConfigError(f"unknown config key '{where}{key}'; known keys: {', '.join(known)}")
            tp = hints[key]
            if dataclasses.is_dataclass(tp) and isinstance(value, dict):
                value = tp.from_dict(value)
            kwargs[key] = value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, _Section):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out



@dataclass(frozen=True)
class ModelConfig(_Section):
    """The backbone and the GLSCL head."""

    section: typing.ClassVar[str] = "model"

    backbone: str = _field("ViT-B-32", "open_clip model name (any registered name, or a tiny config shipped in glscl/model/model_configs, e.g. 'glscl-tiny').")
    pretrained: str | None = _field("openai", "None (random init), an open_clip tag ('openai'), a local checkpoint file, or 'local-dir:<folder>'.")
    compact_vocab: bool = _field(False, "Map open_clip's 49,408 BPE ids onto the small vocabulary of the dataset (order-preserving); much faster for small worlds.")
    num_frames: int = _field(12, "T: frames sampled per video (paper: 12; 64 for DiDeMo/ActivityNet).", min=1)
    max_words: int = _field(32, "L: text context length in tokens, start and end tokens included (paper: 32).", min=4)
    temporal_layers: int = _field(4, "Layers of the temporal transformer over frame embeddings (0 disables it).", min=0)
    temporal_heads: int = _field(8, "Attention heads of the temporal transformer.", min=1)
    global_tau: float = _field(3.0, "tau of the global interaction: w_f = softmax_f(t . v_f / tau) (paper 3, LSMDC 5).", min=1e-6)
    global_normalize: bool = _field(False, "L2-normalise t and v_f before the global weights (then tau near 0.1 is sensible); the paper uses raw features.")
    num_queries: int = _field(8, "K: learnable queries of the local interaction module.", min=1)
    decoder_layers: int = _field(3, "Layers of the local interaction decoder.", min=1)
    decoder_heads: int = _field(8, "Attention heads of the local interaction decoder.", min=1)
    shared_queries: bool = _field(True, "One set of K queries for both modalities (paper) or one per modality.")
    shared_decoder: bool = _field(True, "One decoder for both modalities (paper) or one per modality.")
    local_weight: float = _field(0.5, "lambda in S = S_g + lambda * S_l.", min=0.0)
    interaction: str = _field("both", "GLSCL head: which interaction gives S: 'global' (S_g), 'local' (S_l) or 'both' (S_g + lambda S_l).", choices=("global", "local", "both"))
    dropout: float = _field(0.1, "Dropout inside the temporal transformer and the decoder.", min=0.0, max=1.0)
    temporal_activation: str = _field("relu", "Activation inside the temporal transformer's MLP: 'relu', 'quick_gelu' (x sigmoid(1.702 x): CLIP4Clip's seqTransf, as in the released code, and OpenAI CLIP's own) or 'gelu' (the text layers of open_clip's other models, glscl-tiny included).", choices=("relu", "gelu", "quick_gelu"))
    temporal_init: str = _field("random", "Initial weights of the temporal transformer: 'random', or 'clip' (CLIP4Clip's seqTransf, as in the released code): layer i copies layer i of the backbone's text transformer and the frame positions the first T rows of its text positional embedding (needs text width = embedding width and model.temporal_heads = the text heads).", choices=("random", "clip"))
    temporal_dropout: float | None = _field(None, "Dropout inside the temporal transformer; None = model.dropout (the released code's seqTransf has none: 0).", min=0.0, max=1.0)
    temporal_norm_eps: float = _field(1e-5, "eps of the temporal transformer's LayerNorms (CLIP's: 1e-5; the released code's seqTransf: 1e-12).", min=1e-30)
    decoder_norm: str = _field("pre", "Layer norms of the local interaction decoder: 'pre' (before each sublayer, plus a final LayerNorm) or 'post' (after each residual sum, no final norm: PyTorch's default decoder layer, as in the released code).", choices=("pre", "post"))
    decoder_key_padding_mask: bool = _field(True, "Keep padded frames and tokens out of the local interaction decoder's cross-attention (the released decoder passes no mask: its queries attend to padding too).")
    query_init: str = _field("randn", "Initial queries of the local interaction: 'randn' (normal, std d^-1/2) or 'rand' (uniform on [0, 1), as in the released code).", choices=("randn", "rand"))
    freeze_backbone: bool = _field(False, "Keep the CLIP backbone frozen (required when training from the feature cache).")
    head: str = _field("glscl", "Similarity head and its training loss: 'glscl' (S = S_g + lambda S_l, see model.interaction; InfoNCE + ICL + IDL), 'mean_pooling' (CLIP4Clip's meanP: S = cos(t, mean of the real v_f), same temporal transformer; InfoNCE) or 'vtc' (ALPRO's video-text contrastive baseline: text [CLS] = end-of-text state, video [CLS] = mean of the temporal transformer's frame outputs, each projected to model.vtc_dim and L2-normalised, S = cosine, symmetric InfoNCE at a learned temperature). Queries, interaction and ICL/IDL belong to 'glscl' only. Every head trains from the feature cache or end to end.", choices=("glscl", "mean_pooling", "vtc"))
    vtc_dim: int = _field(256, "VTC: width of the text and video projection heads (ALPRO: 256).", min=1)
    vtc_temperature: float = _field(0.07, "VTC: initial value of the learned temperature (ALPRO: 0.07); clamped to [0.001, 0.5] before every use.", min=0.001, max=0.5)


@dataclass(frozen=True)
class LossConfig(_Section):
    """Contrastive loss plus the two query regularisers (ICL and IDL)."""

    section: typing.ClassVar[str] = "loss"

    variant: str = _field("paper", "'paper': ICL/IDL with the paper's meaning; 'released': the released code's formulas (names swapped there).", choices=("paper", "released"))
    icl_weight: float = _field(0.1, "Weight of the Inter-Consistency Loss (matched visual and textual query k pulled together); 'paper' variant.", min=0.0)
    idl_weight: float = _field(0.1, "Weight of the Intra-Diversity Loss (the K query outputs of one modality pushed apart); 'paper' variant.", min=0.0)
    released_icl_weight: float = _field(1.0, "'released' variant: weight of its consistency term (released scripts: 1, the term is added unweighted).", min=0.0)
    released_idl_weight: float = _field(1e-4, "'released' variant: weight of its margin-ranking diversity term (released scripts: alpha = 1e-4; the LSMDC script keeps the code's default 0.01).", min=0.0)
    released_margin: float = _field(0.1, "'released' variant: margin of the ranking loss on the video query cosine matrix.", min=0.0)
    released_beta: float = _field(0.02, "'released' variant: beta of the per-query consistency term (released scripts: 0.02 for MSR-VTT, 0.005 for the other datasets).", min=0.0)
    released_target: float = _field(0.75, "'released' variant: target cosine of the per-query consistency term.", min=-1.0, max=1.0)
    mask_false_negatives: bool = _field(True, "Exclude in-batch pairs whose captions are identical from the negatives.")
    max_logit_scale: float | None = _field(100.0, "Clamp of the learned logit scale exp(s) (CLIP's: 100); None = no clamp, as in the released code.", min=1.0)
    pem_weight: float = _field(0.0, "Weight of ALPRO's prompt entity modeling loss, added to the head's loss (0 = off; ALPRO: 1). PEM needs pixels, so it trains end to end only (data.cache_dir must be unset); its settings are in the pem section.", min=0.0)


@dataclass(frozen=True)
class DataConfig(_Section):
    """Which dataset, where it lives and how frames are sampled."""

    section: typing.ClassVar[str] = "data"

    dataset: str = _field("world", "Dataset adapter: world, msrvtt, msvd, didemo, lsmdc, activitynet.", choices=("world", "msrvtt", "msvd", "didemo", "lsmdc", "activitynet"))
    root: str = _field("data/world", "Folder holding the dataset's native annotation files (and videos/).")
    world: str = _field("scenes", "With dataset=world: which embedded world `glscl demo` and the grids write at data.root: 'scenes' (clips of scene-cut segments, captions about part of a clip) or 'objects' (one scene per clip, captions about the whole clip; the order and twin probes).", choices=("scenes", "objects"))
    video_dir: str | None = _field(None, "Folder of the video files if not <root>/videos.")
    sample_fps: float = _field(1.0, "Decode at this rate before picking T frames uniformly (paper: 1 fps).", min=1e-3)
    augment: bool = _field(True, "Train-time augmentation, the same draw for every frame of a clip.")
    skip_bad: bool = _field(False, "Skip (and count) bad items instead of stopping with an error.")
    val_size: int = _field(100, "Videos carved from train for validation when the dataset ships no validation split.", min=1)
    num_workers: int = _field(2, "DataLoader worker processes.", min=0)
    cache_dir: str | None = _field(None, "Feature cache folder; None trains end to end (decoding + backbone).")
    video_ext: str | None = _field(None, "Extension of the video files, e.g. '.mp4'; None = the dataset's native one(s): msrvtt/world .mp4, msvd .avi or .mp4, didemo as named (or + .mp4), lsmdc .avi, activitynet .mp4, .mkv or .webm.")

    def check(self) -> None:
        ext = self.video_ext
        if ext is not None and (not re.fullmatch(r"\.[A-Za-z0-9]+", ext)):
            raise ConfigError(f"data.video_ext = {ext!r} is not an extension like '.mp4' (a dot, then letters or digits)")


@dataclass(frozen=True)
class TrainConfig(_Section):
    """Optimisation (released scripts' values by default)."""

    section: typing.ClassVar[str] = "train"

    epochs: int = _field(5, "Training epochs.", min=1)
    batch_size: int = _field(128, "Global batch size (split across processes).", min=2)
    lr: float = _field(1e-4, "Learning rate of the new modules (temporal transformer, queries, decoder).", min=0.0)
    backbone_lr_coef: float = _field(1e-3, "Backbone lr = lr x this coefficient (paper: 1e-7 = 1e-4 x 1e-3).", min=0.0)
    weight_decay: float = _field(0.2, "AdamW weight decay (not applied to biases, norms, embeddings, queries; nor to the logit scale unless train.logit_scale_group = 'backbone').", min=0.0)
    logit_scale_group: str = _field("head", "How the head's learned logit scale trains: 'head' (at train.lr, no weight decay) or 'backbone' (as the released code trains CLIP's own: at train.lr x train.backbone_lr_coef, with weight decay).", choices=("head", "backbone"))
    betas: tuple[float, float] = _field((0.9, 0.98), "AdamW betas.")
    eps: float = _field(1e-6, "AdamW epsilon.", min=0.0)
    warmup: float = _field(0.1, "Fraction of the steps spent in linear warm-up before the cosine decay.", min=0.0, max=1.0)
    grad_clip: float = _field(1.0, "Gradient-norm clipping (0 disables).", min=0.0)
    seed: int = _field(42, "Random seed (weights, data order, augmentation).")
    amp: str = _field("auto", "Mixed precision on CUDA: 'auto' (bf16 if supported), 'bf16', 'fp16', 'off'. Always off on CPU.", choices=("auto", "bf16", "fp16", "off"))
    eval_every: int = _field(1, "Validate every N epochs; the best checkpoint is chosen on the validation split.", min=1)
    max_steps: int = _field(0, "Stop after this many steps (0 = all epochs); for smoke tests.", min=0)

    def check(self) -> None:
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"train.betas = {list(self.betas)} is out of range: each must be in [0, 1)")


@dataclass(frozen=True)
class PEMConfig(_Section):
    """Prompt entity modeling (ALPRO); active when loss.pem_weight > 0, end to end only."""

    section: typing.ClassVar[str] = "pem"

    prompter: str | None = _field(None, "Checkpoint of the frozen prompter, a VTC-trained dual encoder (open_clip file or 'local-dir:<folder>'); None = model.pretrained (on the embedded world: the tiny CLIP pre-trained contrastively on frames).")
    prompter_backbone: str | None = _field(None, "open_clip model name of the prompter; None = model.backbone.")
    num_entities: int = _field(1000, "M: how many entities, the most frequent in the training captions (ALPRO: 1000); fewer when the captions hold fewer.", min=1)
    entity_kind: str = _field("nouns", "What an entity is: 'nouns' (ALPRO: head nouns, e.g. 'circle') or 'phrases' (the head noun with its adjectives, e.g. 'small red circle'; the embedded world has only 3 nouns).", choices=("nouns", "phrases"))
    templates: str = _field("video", "Prompt ensemble, averaged and re-normalised per entity: 'video' (ALPRO's 12 video templates, 'A footage of a {}.', 'A video of a {}.', ...) or 'bare' ('a {}', the style of the embedded world's frame captions).", choices=("video", "bare"))
    temperature: float | None = _field(None, "tau of the pseudo-labels q = softmax(cos(crop, prompt) / tau); None = the prompter's own learned temperature (as in ALPRO).", min=1e-4)
    min_confidence: float = _field(0.2, "A sample is dropped from the PEM loss when max_m q_m < this (paper: 0.2).", min=0.0, max=1.0)
    confidence_rule: str = _field("paper", "'paper': drop when max q < pem.min_confidence; 'released': the released code's test, which compares the argmax *index* with the threshold (a bug: it drops only samples whose best entity is entity 0).", choices=("paper", "released"))
    crop_min_area: float = _field(0.3, "Smallest share of the frame covered by the random crop box (ALPRO: 0.3); boxes lie on the patch grid.", min=0.0, max=1.0)
    crop_max_area: float = _field(0.5, "Largest share of the frame covered by the random crop box (ALPRO: 0.5).", min=0.0, max=1.0)

    def check(self) -> None:
        if self.crop_min_area > self.crop_max_area:
            raise ConfigError(f"pem.crop_min_area = {self.crop_min_area} exceeds pem.crop_max_area = {self.crop_max_area}")


RESULT_NAMES = ("R@1", "R@5", "R@10", "MdR", "MnR")
"""The five numbers a reference row holds per direction, in this order."""

_FIVE = tuple[float | None, float | None, float | None, float | None, float | None]


@dataclass(frozen=True)
class ReferenceConfig(_Section):
    """The paper's reported results on the benchmark: shown beside a run's as a separate row, never mixed
    with its measured metrics, and not part of the run's fingerprint (they change no result)."""

    section: typing.ClassVar[str] = "reference"

    source: str | None = _field(None, "Where the reference numbers come from (paper, table, protocol); None = no reference.")
    t2v: _FIVE = _field((None,) * 5, "Text-to-video R@1, R@5, R@10, MdR, MnR as the source reports them (null where it gives none).")
    v2t: _FIVE = _field((None,) * 5, "Video-to-text R@1, R@5, R@10, MdR, MnR as the source reports them (null where it gives none).")

    def check(self) -> None:
        for direction in ("t2v", "v2t"):
            for name, value in zip(RESULT_NAMES, getattr(self, direction)):
                if value is None:
                    continue
                if name.startswith("R@") and not 0 <= value <= 100:
                    raise ConfigError(f"reference.{direction} {name} = {value} is out of range: a recall is in [0, 100]")
                if not name.startswith("R@") and value < 1:
                    raise ConfigError(f"reference.{direction} {name} = {value} is out of range: a rank is >= 1")
        if self.source is None and self.rows():
            raise ConfigError("reference.source is not set: name the paper and table the reference numbers come from")

    def rows(self) -> dict[str, float | None]:
        """The reference numbers keyed like measured metrics ('t2v_R@1', ...); {} when there are none."""
        out = {f"{d}_{n}": v for d in ("t2v", "v2t") for n, v in zip(RESULT_NAMES, getattr(self, d))}
        return out if any(v is not None for v in out.values()) else {}


@dataclass(frozen=True)
class RunConfig(_Section):
    """Everything one run needs; saved as config.yaml beside every result."""

    section: typing.ClassVar[str] = ""

    name: str = _field("run", "Name of the run (its results folder is <out_dir>/<name>).")
    out_dir: str = _field("runs", "Where results folders are written.")
    device: str = _field("auto", "'auto' (cuda if available), 'cpu' or 'cuda[:i]'.")
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "The backbone and the GLSCL head."})
    loss: LossConfig = field(default_factory=LossConfig, metadata={"help": "Losses."})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Data."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Optimisation."})
    pem: PEMConfig = field(default_factory=PEMConfig, metadata={"help": "Prompt entity modeling (ALPRO)."})
    reference: ReferenceConfig = field(default_factory=ReferenceConfig, metadata={"help": "The paper's reported results."})

    def check(self) -> None:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ConfigError(f"device = {self.device!r} is not a device: use 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'")
        if self.loss.pem_weight > 0 and self.data.cache_dir:
            raise ConfigError(f"loss.pem_weight = {self.loss.pem_weight} needs pixels (prompt entity modeling trains end to end): unset data.cache_dir")
        if self.loss.pem_weight > 0 and self.pem.prompter is None and self.model.pretrained is None:
            raise ConfigError("loss.pem_weight > 0 needs a VTC-trained prompter: set pem.prompter (model.pretrained is None)")


def _parse_overrides(overrides: list[str] | dict[str, Any] | None) -> list[tuple[str, Any]]:
    if not overrides:
        return []
    if isinstance(overrides, dict):
        return list(overrides.items())
    items = []
    for text in overrides:
        if "=" not in text:
            raise ConfigError(f"override '{text}' is not of the form section.key=value")
        key, raw = text.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {key.strip()}: {raw!r} is not a valid YAML value{yaml_where(e)} ({yaml_problem(e)})") from None
        items.append((key.strip(), value))
    return items


def build_config(base: str | Path | RunConfig | list | tuple | None = None,
                 overrides: list[str] | dict[str, Any] | None = None) -> RunConfig:
    """The one way to make a run config: a base plus dotted overrides.

    ``base``: None (the paper's defaults, ``RunConfig()``), a preset name (``'embedded'``, see
    ``presets()``), a YAML file (as saved in every results folder; it may name its own ``base:``),
    a ``RunConfig``, or a list of presets and files layered left to right. Each layer applies over the
    ones before it, and those take the place of the preset its ``base:`` chain starts from:
    ``['didemo', 'released']`` is the released recipe with the DiDeMo preset in place of the embedded
    default it otherwise starts from. ``overrides``: ``{'model.num_queries': 4}`` or
    ``['model.num_queries=4']`` (values parsed as YAML). Unknown keys, wrong types and out-of-range
    values raise ``ConfigError`` naming the field.
    """
    if isinstance(base, (list, tuple)) and len(base) == 1:
        base = base[0]
    if isinstance(base, RunConfig):
        data = base.to_dict()
    elif base is None:
        data = RunConfig().to_dict()
    elif isinstance(base, (list, tuple)):
        data = compose_files([resolve_config_file(b) for b in base])
        base = " + ".join(str(b) for b in base)
    else:
        data = read_config_file(resolve_config_file(base))
    given = _parse_overrides(overrides)
    for key, value in given:
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {}) if p in _SECTIONS else None
            if not isinstance(node, dict):
                raise ConfigError(f"unknown config key '{key}'")
        if len(parts) == 1 and parts[0] in _SECTIONS:
            raise ConfigError(f"'{key}' is a config section, not a field: set its fields, e.g. {key}.<field>=value")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] not in _SECTIONS):
            raise ConfigError(f"unknown config key '{key}'")
        node[parts[-1]] = value
    try:
        cfg = RunConfig.from_dict(data)
    except ConfigError as e:
        if base is None or isinstance(base, RunConfig):
            raise
        # a config file and overrides: blame the override that set the field named first, else the file
        field = re.match(r"[\w.]+", str(e))
        texts = [t for t in overrides if isinstance(t, str)] if isinstance(overrides, list) else []
        set_by = [t for t, (key, _) in zip(texts, given) if field and key == field.group(0)]
        if set_by:
            raise type(e)(f"{set_by[-1]}: {e}") from None
        if any(field and key == field.group(0) for key, _ in given):
            raise
        raise type(e)(f"{base}: {e}") from None
    _refuse_ignored(cfg, [key for key, _ in given])
    return cfg


# loss weights that only one loss.variant reads: an override of one the chosen variant ignores is refused
_VARIANT_ONLY = {"paper": ("loss.icl_weight", "loss.idl_weight"),
                 "released": tuple(f"loss.released_{k}" for k in ("icl_weight", "idl_weight", "margin", "beta", "target"))}


def _refuse_ignored(cfg: RunConfig, keys: list[str]) -> None:
    """One-line ``ConfigTypeError`` when an override sets a loss weight that ``loss.variant`` does not read
    (a grid that varied it would measure nothing). Presets and files may carry both variants' weights."""
    for variant, fields in _VARIANT_ONLY.items():
        unread = [k for k in keys if k in fields and cfg.loss.variant != variant]
        if unread:
            raise ConfigTypeError(f"{unread[0]} is not read under loss.variant={cfg.loss.variant} (that variant's "
                                  f"weights are {', '.join(_VARIANT_ONLY[cfg.loss.variant])}); drop the override or "
                                  f"set loss.variant={variant}")


def save_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def load_config(path: str | Path) -> RunConfig:
    """A config YAML file (or preset name) without overrides: ``build_config(path)``."""
    return build_config(str(path) if isinstance(path, Path) else path)


def describe(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted name, default, help) for every field, nested sections flattened."""
    rows = []
    inst = cls()
    for f in dataclasses.fields(cls):
        v = getattr(inst, f.name)
        if isinstance(v, _Section):
            rows += describe(type(v), prefix + f.name + ".")
        else:
            rows.append((prefix + f.name, v, f.metadata.get("help", "")))
    return rows


_SECTIONS = {f.name for f in dataclasses.fields(RunConfig) if dataclasses.is_dataclass(f.type) or f.name in
             ("model", "loss", "data", "train", "pem", "reference")}
