"""The CLIP backbone, over open_clip: frame embeddings, text token states, and the tokenizer.

``create_backbone(name, pretrained)`` accepts any open_clip model name (the tiny configs in
``glscl/model/model_configs`` are registered on import) and ``pretrained`` as

* ``None``: random initialisation;
* an open_clip tag such as ``"openai"`` (needs the weights in open_clip's cache: no hub is reached
  when ``HF_HUB_OFFLINE=1``);
* a local checkpoint file (``.safetensors``, ``.pt``/``.pth``/``.bin``), e.g. one written by
  ``save_backbone``;
* ``"local-dir:<folder>"``: a folder holding ``open_clip_config.json`` and the weights
  (``save_backbone(..., as_dir=True)`` writes one).

Outputs (d = the CLIP embedding width):

* video: per-frame image embeddings (B x T x d); on request the patch tokens projected to d
  (B x T x P x d), which prompt entity modeling pools inside a crop box;
* text: all token states after ``ln_final`` and the text projection (B x L x d), the
  end-of-text state as the sentence vector (B x d), and the padding mask (B x L, True = real
  token, up to and including end-of-text).
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from glscl.config import ConfigError

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
OPENAI_DATASET_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's pixel normalisation (open_clip.constants)
OPENAI_DATASET_STD = (0.26862954, 0.26130258, 0.27577711)


def _open_clip():
    """open_clip, imported on first use with the package's model configs registered (a run from the
    feature cache never needs it)."""
    import open_clip
    if str(MODEL_CONFIG_DIR) not in getattr(_open_clip, "registered", ()):
        open_clip.add_model_config(MODEL_CONFIG_DIR)
        _open_clip.registered = (str(MODEL_CONFIG_DIR),)
    return open_clip


def model_config(name: str) -> dict | None:
    """The model config of ``name`` (a package config, or one of open_clip's), read from its JSON file
    without importing open_clip (seconds saved in every run from the feature cache); None when unknown."""
    import importlib.util
    spec = importlib.util.find_spec("open_clip")
    folders = [MODEL_CONFIG_DIR]
    if spec is not None:  # open_clip's own configs, found without running its __init__
        folders += [Path(p) / "model_configs" for p in spec.submodule_search_locations or ()]
    for folder in folders:
        file = folder / f"{name}.json"
        if file.is_file():
            config = json.loads(file.read_text())
            if all(k in config for k in ("embed_dim", "vision_cfg", "text_cfg")):  # what open_clip registers
                return config
    return None


def embedding_width(name: str) -> int | None:
    """d, the joint embedding width of the open_clip model ``name`` (or a package config), read from its
    config without building it; None for an unknown name."""
    config = model_config(name)
    return int(config["embed_dim"]) if config else None


@dataclass
class TextFeatures:
    """tokens: token states (B x L x d); mask: real tokens (B x L); sentence: end-of-text state (B x d)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    sentence: torch.Tensor


class Tokenizer:
    """open_clip's BPE tokenizer, optionally mapped onto a compact vocabulary.

    With ``vocab`` (a sorted tuple of BPE ids), id ``vocab[i]`` becomes ``i``. The map is
    order-preserving, so end-of-text (49407, the largest id) stays the argmax that open_clip's
    pooling looks for, and padding (0) stays 0. Unknown words raise a clear error.
    """

    def __init__(self, context_length: int, vocab: tuple[int, ...] | None = None):
        self.context_length = context_length
        self.bpe = _open_clip().tokenizer.SimpleTokenizer()
        self.vocab = vocab
        if vocab is not None:
            if list(vocab) != sorted(set(vocab)) or vocab[0] != 0:
                raise ValueError("compact vocabulary must be sorted, unique and start with the padding id 0")
            self._lookup = torch.full((max(vocab) + 1,), -1, dtype=torch.long)
            self._lookup[torch.tensor(vocab)] = torch.arange(len(vocab))

    @property
    def eot_id(self) -> int:
        return self.bpe.eot_token_id

    def bpe_ids(self, texts: list[str]) -> torch.Tensor:
        return self.bpe(texts, context_length=self.context_length)

    def __call__(self, texts: str | list[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        ids = self.bpe_ids(texts)
        if self.vocab is None:
            return ids
        mapped = self._lookup[ids.clamp_max(len(self._lookup) - 1)]
        unknown = (mapped < 0) | (ids >= len(self._lookup))
        if unknown.any():
            row = int(unknown.any(1).nonzero()[0])
            raise ValueError(f"caption {texts[row]!r} has words outside the compact vocabulary")
        return mapped

    @classmethod
    def build_vocab(cls, texts: list[str], context_length: int) -> tuple[int, ...]:
        """Sorted BPE ids used by ``texts`` plus padding, start- and end-of-text."""
        ids = cls(context_length).bpe_ids(list(texts))
        return tuple(sorted(set(ids.unique().tolist()) | {0}))


def _resolve(name: str, pretrained: str | None, setting: str = "model.pretrained") -> tuple[str, str | None]:
    if pretrained and pretrained.startswith("local-dir:"):
        folder = Path(pretrained[len("local-dir:"):])
        if not (folder / "open_clip_config.json").is_file():
            raise FileNotFoundError(f"{setting} = {pretrained!r}: {folder}/open_clip_config.json not found")
        return pretrained, None
    if pretrained and not Path(pretrained).exists() and ("/" in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))):
        raise FileNotFoundError(f"{setting} = {pretrained!r}: the checkpoint file does not exist")
    open_clip = _open_clip()
    if name not in open_clip.list_models():
        raise ConfigError(f"model.backbone = {name!r} is not an open_clip model; e.g. {', '.join(['glscl-tiny', 'ViT-B-32', 'ViT-B-16'])}")
    if pretrained and not Path(pretrained).exists() and not open_clip.get_pretrained_cfg(name, pretrained):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise ConfigError(f"{setting} = {pretrained!r} is neither a file nor an open_clip tag of {name!r} (its tags: {tags})")
    return name, pretrained


def _offline() -> bool:
    try:
        from huggingface_hub import constants
        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")


def _weights_error(e: Exception, name: str, pretrained: str, tag: str | None, setting: str) -> ConfigError:
    """One line naming ``setting`` for a failure to load the weights ``pretrained`` of ``name``."""
    if isinstance(e, pickle.UnpicklingError):
        return ConfigError(f"{setting} = {pretrained!r} is a pickle; glscl loads only safetensors/weights-only files "
                           "(it holds objects or code: refused unread)")
    if tag and not Path(tag).exists() and "download" in str(e).lower():
        if _offline():
            return ConfigError(f"{setting} = {tag!r}: the weights of {name} are not in the local cache and offline mode is on "
                               f"(HF_HUB_OFFLINE=1); download them once online, or give a local file ({setting}=<file.safetensors>)")
        return ConfigError(f"{setting} = {tag!r}: downloading the weights of {name} failed; "
                           f"give a local file ({setting}=<file.safetensors>)")
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    reason = lines[-1] if lines else type(e).__name__
    return ConfigError(f"{setting} = {pretrained!r} cannot be loaded as weights of {name} ({type(e).__name__}: {reason[:200]})")


class Backbone(nn.Module):
    """A CLIP model (open_clip) exposing what GLSCL needs. Build it with ``create_backbone``."""

    def __init__(self, clip: nn.Module, name: str, preprocess_cfg: dict, context_length: int):
        super().__init__()
        if not hasattr(clip, "token_embedding"):
            raise ConfigError(f"model.backbone = {name!r}: only open_clip models with the built-in text tower are supported")
        self.clip = clip
        self.name = name
        self.preprocess_cfg = preprocess_cfg
        self.context_length = context_length
        self.tokenizer = Tokenizer(context_length)

    @property
    def width(self) -> int:
        """d, the joint embedding width."""
        return int(self.clip.text_projection.shape[1]) if self.clip.text_projection is not None else self.clip.transformer.width

    @property
    def image_size(self) -> int:
        size = self.clip.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.clip.logit_scale

    def use_compact_vocab(self, vocab: tuple[int, ...]) -> None:
        """Keep only the embedding rows of ``vocab`` (see ``Tokenizer``); both are switched together."""
        old = self.clip.token_embedding
        new = nn.Embedding(len(vocab), old.embedding_dim)
        new.weight.data.copy_(old.weight.data[torch.tensor(vocab)])
        self.clip.token_embedding = new.to(old.weight.device)
        self.tokenizer = Tokenizer(self.context_length, vocab)

    def expanded_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict with a full-size token table (compact rows scattered back), loadable by open_clip."""
        sd = {k: v.detach().clone() for k, v in self.clip.state_dict().items()}
        vocab = self.tokenizer.vocab
        if vocab is not None:
            full = torch.zeros(len(self.tokenizer.bpe.encoder), sd["token_embedding.weight"].shape[1])
            full[torch.tensor(vocab)] = sd["token_embedding.weight"]
            sd["token_embedding.weight"] = full
        return sd

    def encode_frames(self, frames: torch.Tensor, patch_tokens: bool = False):
        """frames (B x T x 3 x H x W) -> embeddings (B x T x d) [, patch tokens (B x T x P x d)]."""
        b, t = frames.shape[:2]
        visual = self.clip.visual
        flat = frames.flatten(0, 1)
        if not patch_tokens:
            return self.clip.encode_image(flat).view(b, t, -1)
        visual.output_tokens = True
        try:
            pooled, tokens = visual(flat)
        finally:
            visual.output_tokens = False
        if getattr(visual, "proj", None) is not None:
            tokens = tokens @ visual.proj
        return pooled.view(b, t, -1), tokens.view(b, t, tokens.shape[1], -1)

    def encode_text(self, ids: torch.Tensor) -> TextFeatures:
        """token ids (B x L) -> token states (B x L x d), mask (B x L) and sentence vector (B x d)."""
        c = self.clip
        x = c.token_embedding(ids) + c.positional_embedding[: ids.shape[1]]
        attn_mask = c.attn_mask[: ids.shape[1], : ids.shape[1]] if c.attn_mask is not None else None
        x = c.ln_final(c.transformer(x, attn_mask=attn_mask))
        if c.text_projection is not None:
            x = c.text_projection(x) if isinstance(c.text_projection, nn.Linear) else x @ c.text_projection
        eot = ids.argmax(dim=-1)
        mask = torch.arange(ids.shape[1], device=ids.device)[None] <= eot[:, None]
        return TextFeatures(tokens=x, mask=mask, sentence=x[torch.arange(ids.shape[0]), eot])


def create_backbone(name: str = "ViT-B-32", pretrained: str | None = None, *, context_length: int = 32,
                    device: str | torch.device = "cpu", setting: str = "model.pretrained") -> Backbone:
    """Build a CLIP backbone with open_clip.

    Args:
        name: an open_clip model name (``open_clip.list_models()``), including the tiny
            ``glscl-*`` configs shipped with this package.
        pretrained: None, an open_clip tag, a checkpoint file, or ``local-dir:<folder>``.
        context_length: L, tokens per caption (the positional table is cut to it).
        device: where the model lives.
        setting: the config field that named ``pretrained`` (for error messages).
    """
    model_name, tag = _resolve(name, pretrained, setting)
    open_clip = _open_clip()
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.CRITICAL)  # open_clip warns on purpose-random init and logs what it raises
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")
            clip = open_clip.create_model(model_name, pretrained=tag, device=device)
    except Exception as e:  # loading the weights: every failure is about the file or the tag
        if pretrained is None:
            raise
        raise _weights_error(e, name, pretrained, tag, setting) from e
    finally:
        logging.getLogger().setLevel(quiet)
    cfg = open_clip.get_model_config(model_name) if not model_name.startswith("local-dir:") else \
        json.loads((Path(model_name[len("local-dir:"):]) / "open_clip_config.json").read_text())["model_cfg"]
    max_ctx = cfg["text_cfg"].get("context_length", 77)
    if context_length > max_ctx:
        raise ConfigError(f"model.max_words = {context_length} exceeds the backbone's context length {max_ctx}")
    pre = dict(getattr(clip.visual, "preprocess_cfg", {}) or {})
    pre.setdefault("mean", OPENAI_DATASET_MEAN)
    pre.setdefault("std", OPENAI_DATASET_STD)
    return Backbone(clip, model_name if not model_name.startswith("local-dir:") else name, pre, context_length)


def save_backbone(backbone: Backbone, path: str | Path, *, as_dir: bool = False) -> Path:
    """Write the backbone as an open_clip checkpoint (safetensors) that ``create_backbone`` reloads.

    A file: pass it as ``pretrained=<file>`` with the same model name. ``as_dir=True``: a folder
    with ``open_clip_config.json`` + ``open_clip_model.safetensors``, for ``pretrained='local-dir:<folder>'``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    sd = {k: v.contiguous() for k, v in backbone.expanded_state_dict().items()}
    if as_dir:
        path.mkdir(parents=True, exist_ok=True)
        model_cfg = _open_clip().get_model_config(backbone.name)
        (path / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {
            "mean": list(backbone.preprocess_cfg["mean"]), "std": list(backbone.preprocess_cfg["std"])}}, indent=2))
        save_file(sd, str(path / "open_clip_model.safetensors"))
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path
