"""Results at 1 and 2 CPU threads: bit-identical at one thread count, within seed noise across them.

    python benchmarks/bench_threads.py [--seeds 0 1 2] [--out benchmarks/results/threads.json]

Trains the embedded default (``glscl train --config embedded``; the world and the tiny CLIP that
``glscl demo`` writes must exist) once per seed at ``OMP_NUM_THREADS=1`` and at 2, each thread count
building its own feature cache, and the first seed a second time at 2 threads. Writes t2v and v2t
R@1 per run, the repeat's difference (0 when a run is bit-identical to itself), the paired
difference 2 threads - 1 thread per seed, and the spread over seeds, to ``--out``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from glscl.engine.record import read_record
from glscl.files import write_json

METRICS = ("t2v_R@1", "v2t_R@1")


def train(threads: int, seed: int, root: Path, tag: str) -> dict:
    """One run of the embedded default at ``threads`` threads; its metrics record."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    name = f"threads{threads}-seed{seed}{tag}"
    cmd = [sys.executable, "-m", "glscl.cli", "train", "--config", "embedded", f"name={name}", f"out_dir={root}",
           f"train.seed={seed}", f"data.cache_dir={root / f'cache-{threads}'}"]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    record = read_record(root / name)
    print(f"{name}: t2v R@1 {record['t2v_R@1']:.1f}, v2t R@1 {record['v2t_R@1']:.1f} "
          f"({time.perf_counter() - start:.0f} s)", flush=True)
    return {m: record[m] for m in METRICS}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="benchmarks/results/threads.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="glscl-threads-") as tmp:
        root = Path(tmp)
        runs = {t: {s: train(t, s, root, "") for s in args.seeds} for t in (1, 2)}
        repeat = train(2, args.seeds[0], root, "-again")
    out = {"command": "python benchmarks/bench_threads.py", "seeds": args.seeds,
           "runs": {f"{t} threads": {str(s): r for s, r in by_seed.items()} for t, by_seed in runs.items()},
           "repeat_difference": {m: repeat[m] - runs[2][args.seeds[0]][m] for m in METRICS}}
    for m in METRICS:
        diffs = [runs[2][s][m] - runs[1][s][m] for s in args.seeds]
        out[m] = {"difference_2_minus_1": diffs, "max_abs_difference": max(abs(d) for d in diffs),
                  "seed_sd_1_thread": statistics.stdev(runs[1][s][m] for s in args.seeds),
                  "seed_sd_2_threads": statistics.stdev(runs[2][s][m] for s in args.seeds)}
        print(f"{m}: 2 - 1 threads per seed {', '.join(f'{d:+.1f}' for d in diffs)}; seed sd "
              f"{out[m]['seed_sd_1_thread']:.1f} (1 thread), {out[m]['seed_sd_2_threads']:.1f} (2); "
              f"the repeat differs by {out['repeat_difference'][m]:+.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, out)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
