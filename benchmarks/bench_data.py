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
    parser.add_argument("--frames", type=int, default=12, help="frames per decoded clip (T; more than 8 pads)")
    parser.add_argument("--image-size", type=int, default=224, help="transform output side (ViT-B/32: 224)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # what one data-loading worker has

    n_eval = max(1, args.videos // 5)
    cfg = WorldConfig(n_train=args.videos - 2 * n_eval, n_val=n_eval, n_test=n_eval)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        world = load_world(generate_world(Path(tmp) / "world", cfg, progress=False, workers=args.workers))
        seconds = time.perf_counter() - start
        n = len(world.videos)
        kib = sum(world.video_path(v.video_id).stat().st_size for v in world.videos) / n / 1024
        print(f"world generation: {n} videos ({cfg.size}x{cfg.size}, {cfg.frames} frames) in {seconds:.2f} s "
              f"= {n / seconds:.1f} videos/s with {args.workers} workers; {kib:.1f} KiB/video")

        start = time.perf_counter()
        clips = [load_clip(world.video_path(v.video_id), args.frames) for v in world.videos]
        seconds = time.perf_counter() - start
        print(f"decode (load_clip, T={args.frames}): {n / seconds:.1f} clips/s ({1000 * seconds / n:.2f} ms/clip)")

        errors = [np.abs(frames[:cfg.frames].numpy().astype(int) - render_clip(v.clip, cfg)).mean()
                  for v, (frames, _) in zip(world.videos, clips, strict=True)]
        print(f"mean abs pixel error after the mp4 round trip: {np.mean(errors):.2f}/255 "
              f"(worst video {np.max(errors):.2f})")

    for augment in (False, True):
        transform = ClipTransform(image_size=args.image_size, augment=augment)
        generator = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        for frames, mask in clips:
            transform(frames, mask, generator)
        seconds = time.perf_counter() - start
        print(f"ClipTransform to {args.image_size} px (augment={augment}, 1 thread): {n / seconds:.1f} clips/s")


if __name__ == "__main__":
    main()
