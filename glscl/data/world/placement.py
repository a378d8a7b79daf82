"""Where objects start: every object stays inside the frame for the whole clip, clear of the others."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from glscl.data.world.specs import MOTIONS, ObjectSpec, WorldConfig, object_radius


def place(rng: np.random.Generator, objects: Sequence[ObjectSpec], cfg: WorldConfig,
           rounds: int = 20, tries: int = 20) -> tuple[ObjectSpec, ...]:
    """Draws start positions keeping every object inside the frame for the whole clip.

    Objects are placed one after the other, each redrawn up to ``tries`` times until it stays more
    than the two radii + 2 px away from every object placed before it whenever both are visible;
    a round where some object finds no such place starts over, up to ``rounds`` times (after that
    the last round is kept: later objects are drawn on top).
    """
    for _ in range(rounds):
        placed: list[ObjectSpec] = []
        all_clear = True
        for obj in objects:
            for _ in range(tries):
                candidate = _random_position(rng, obj, cfg)
                clear = not any(objects_overlap(candidate, other, cfg.size) for other in placed)
                if clear:
                    break
            placed.append(candidate)
            all_clear = all_clear and clear
        if all_clear:
            break
    return tuple(placed)


def _random_position(rng: np.random.Generator, obj: ObjectSpec, cfg: WorldConfig) -> ObjectSpec:
    """obj with a start position drawn so that it stays inside the frame in every frame."""
    radius = object_radius(obj.size, cfg.size)
    low, high = radius + 1, cfg.size - 2 - radius
    travel = obj.speed * obj.steps(cfg.frames - 1)
    dx, dy = MOTIONS[obj.motion] if obj.motion else (0, 0)
    x = int(rng.integers(low + travel * (dx < 0), high - travel * (dx > 0) + 1))
    y = int(rng.integers(low + travel * (dy < 0), high - travel * (dy > 0) + 1))
    return replace(obj, x=x, y=y)


def objects_overlap(a: ObjectSpec, b: ObjectSpec, frame_size: int) -> bool:
    """Whether the two come within their radii + 2 px of each other in a frame showing both."""
    gap = object_radius(a.size, frame_size) + object_radius(b.size, frame_size) + 2
    for t in range(max(a.visible_from, b.visible_from), min(a.visible_to, b.visible_to)):
        (ax, ay), (bx, by) = a.centre(t), b.centre(t)
        if (ax - bx) ** 2 + (ay - by) ** 2 < gap * gap:
            return True
    return False
