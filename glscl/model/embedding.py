"""What the heads' encoders return: a batch of encoded texts or videos.

Every field is a batch-first tensor (first dimension = items) or None when the head does not
produce it, so one generic ``cat`` (blocks of a split), ``map`` (e.g. an all-gather across
processes) and ``[index]`` (a subset of items) serve every head:

    text:   sentence   t    (B x d)       the end-of-text state (CLIP's sentence vector)
            queries    c^t  (B x K x d)   GLSCL's local interaction outputs, unit norm
            projected  z^t  (B x D)       VTC's projected, L2-normalised [CLS] vector
    video:  frames     v_f  (B x T x d)   after the temporal transformer
            mask            (B x T)       True = real frame
            queries    c^v  (B x K x d)   GLSCL's local interaction outputs, unit norm
            projected  z^v  (B x D)       VTC's projected, L2-normalised [CLS] vector
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

E = TypeVar("E", bound="_Items")


class _Items:
    """Field-wise operations on a dataclass of batch-first tensors (None fields stay None)."""

    def map(self: E, fn: Callable[[torch.Tensor], torch.Tensor]) -> E:
        """The same embedding with ``fn`` applied to every tensor field."""
        return dataclasses.replace(self, **{f.name: fn(v) for f in dataclasses.fields(self)
                                            if (v := getattr(self, f.name)) is not None})

    def __getitem__(self: E, index) -> E:
        """The items selected by ``index`` (a slice, an index tensor or a list), along the batch dimension."""
        return self.map(lambda t: t[index])

    @classmethod
    def cat(cls: type[E], parts: Sequence[E]) -> E:
        """One embedding from several blocks, in order."""
        if not parts:
            raise ValueError(f"{cls.__name__}.cat: no blocks to concatenate")
        return cls(**{f.name: None if getattr(parts[0], f.name) is None else torch.cat([getattr(p, f.name) for p in parts])
                      for f in dataclasses.fields(cls)})


@dataclass
class TextEmbedding(_Items):
    """Encoded texts: sentence t (B x d); queries c^t (GLSCL) or projected z^t (VTC), see the module docstring."""

    sentence: torch.Tensor
    queries: torch.Tensor | None = None
    projected: torch.Tensor | None = None


@dataclass
class VideoEmbedding(_Items):
    """Encoded videos: frames v_f (B x T x d), mask (B x T); queries c^v (GLSCL) or projected z^v (VTC)."""

    frames: torch.Tensor
    mask: torch.Tensor
    queries: torch.Tensor | None = None
    projected: torch.Tensor | None = None


def weighted_sum(parts: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """S = sum_k weight_k * part_k over the parts a head's similarity is made of (a weight of 1 is not multiplied)."""
    total = None
    for key, w in weights.items():
        term = parts[key] if w == 1 else w * parts[key]
        total = term if total is None else total + term
    return total
