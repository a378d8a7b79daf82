"""Drawing a clip: each object's shape, filled with its colour, at its centre in every frame it is visible."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from glscl.data.world.specs import COLOURS, ClipSpec, WorldConfig, object_radius


@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:size, 0:size]
    return cols.astype(np.float32), rows.astype(np.float32)


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: int) -> np.ndarray:
    """Pixels (offsets dx, dy from the centre) inside a shape that fits the circle of this radius.

    circle: dx^2 + dy^2 <= r^2; square: max(|dx|, |dy|) <= 0.85 r; triangle: the upright
    equilateral triangle inscribed in the circle (centroid at the centre): dy <= r/2 and
    dy >= sqrt(3) |dx| - r; diamond: |dx| + |dy| <= r; cross: an upright plus sign, two bars
    of half-width 0.3 r and half-length r.
    """
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.85 * radius
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius
    if shape == "cross":
        bar = 0.3 * radius
        return ((np.abs(dx) <= bar) & (np.abs(dy) <= radius)) | ((np.abs(dy) <= bar) & (np.abs(dx) <= radius))
    return (dy <= radius / 2) & (dy >= math.sqrt(3) * np.abs(dx) - radius)


def render_clip(clip: ClipSpec, cfg: WorldConfig) -> np.ndarray:
    """The clip's frames, (frames, size, size, 3) uint8; objects drawn in order, later ones on top."""
    video = np.zeros((cfg.frames, cfg.size, cfg.size, 3), np.uint8)
    cols, rows = _pixel_grid(cfg.size)
    for obj in clip.objects:
        radius = object_radius(obj.size, cfg.size)
        for t in range(obj.visible_from, obj.visible_to):
            cx, cy = obj.centre(t)
            video[t][_shape_mask(obj.shape, cols - cx, rows - cy, radius)] = COLOURS[obj.colour]
    return video
