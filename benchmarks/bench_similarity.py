"""Similarity-stage efficiency bench: GLSCL and the heads it is compared with, FLOPs, time and memory
for 1,000 texts against galleries of 1k, 10k and 100k videos (the same as ``glscl bench``).

    python benchmarks/bench_similarity.py [--out runs/bench] [--quick] [--direct-count]

What is measured and how: ``glscl.lab.bench.similarity``; writes <out>/bench.json and <out>/bench.png.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from glscl.lab.bench.similarity import main  # noqa: E402

if __name__ == "__main__":
    main()
