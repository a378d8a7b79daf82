"""Data-pipeline throughput: world generation (videos/s), decoding (clips/s), frame transform (clips/s).

    python benchmarks/bench_data.py [--videos 200] [--workers 2] [--frames 12] [--image-size 224]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from glscl.data.video import ClipTransform, load_clip
from glscl.data.world import WorldConfig, generate_world, load_world, render_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=200, help="videos in the generated world")
    parser.add_argument("--workers", type=int, default=2, help="mp4 files encoded at once")
    parser.add_argument("--frames", type=int, default=12, help="frames per decoded clip (T; > 8 pads)")
    parser.add_argument("--image-size", type=int, default=224, help="transform output side (ViT-B/32: 224)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one data worker's view

    n_test = max(1, args.videos // 5)
    cfg = WorldConfig(n_train=args.videos - 2 * n_test, n_val=n_test, n_test=n_test)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        world = load_world(generate_world(Path(tmp) / "world", cfg, progress=False, workers=args.workers))
        seconds = time.perf_counter() - start
        print(f"world generation: {len(world.videos)} videos ({cfg.size}x{cfg.size}, {cfg.frames} frames) in {seconds:.2f} s "
              f"= {len(world.videos) / seconds:.1f} videos/s with {args.workers} workers; "
              f"{sum(world.video_path(v.video_id).stat().st_size for v in world.videos) / len(world.videos) / 1024:.1f} KiB/video")

        start = time.perf_counter()
        clips = [load_clip(world.video_path(v.video_id), args.frames) for v in world.videos]
        seconds = time.perf_counter() - start
        print(f"decode (load_clip, T={args.frames}): {len(clips) / seconds:.1f} clips/s ({1000 * seconds / len(clips):.2f} ms/clip)")

        errors = [np.abs(frames[:cfg.frames].numpy().astype(int) - render_clip(v.clip, cfg)).mean()
                  for v, (frames, _) in zip(world.videos, clips)]
        print(f"mean abs pixel error after the mp4 round trip: {np.mean(errors):.2f}/255 (worst video {np.max(errors):.2f})")

    for augment in (False, True):
        transform = ClipTransform(image_size=args.image_size, augment=augment)
        generator = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        for frames, mask in clips:
            transform(frames, mask, generator)
        seconds = time.perf_counter() - start
        print(f"ClipTransform to {args.image_size}px (augment={augment}, 1 thread): {len(clips) / seconds:.1f} clips/s")


if __name__ == "__main__":
    main()
