"""How ambiguous a scenes-world test caption is at the appearance level, for two vocabularies.

    python benchmarks/world_floor.py

For each test caption (the shipped scenes world, seed 0): how many *other* test videos show every
object the caption names (same shape, colour and size), anywhere and doing anything. A model that
reads appearances perfectly but not motion or co-occurrence ranks its video among these.
"""
from __future__ import annotations

import numpy as np

from glscl.data.world import sample_world, world_config


def ambiguity(shapes: int, colours: int) -> np.ndarray:
    test = [v for v in sample_world(world_config("scenes", shapes=shapes, colours=colours)) if v.split == "test"]
    counts = []
    for video in test:
        a, b = video.captions[0].frames
        named = {o.appearance for o in video.clip.objects if a <= o.visible_from and o.visible_to <= b}
        counts.append(sum(named <= {o.appearance for o in other.clip.objects} for other in test if other is not video))
    return np.array(counts)


if __name__ == "__main__":
    for shapes, colours in ((3, 4), (5, 8)):
        n = ambiguity(shapes, colours)
        print(f"{shapes} shapes x {colours} colours x 2 sizes: other test videos showing a caption's objects: "
              f"mean {n.mean():.1f}, median {np.median(n):.0f}, none for {100 * (n == 0).mean():.0f} % of captions")
