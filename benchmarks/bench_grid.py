"""Fixed cost of one grid run: papermill wall time of the run notebook minus the time inside ``run()``.

    python benchmarks/bench_grid.py [--runs 4] [--base embedded-short] [--workers 1] [--keep DIR]

Writes a small grid file (``base`` + model.num_queries x seeds, all from the feature cache), runs it
with ``glscl ablate`` into a temporary folder, and prints per run and on average: wall_s (the
notebook's wall time), run_s (inside ``run()``), overhead_s = wall_s - run_s and overhead / wall.
It also times ``python -c pass``, ``import glscl.engine.run`` and a bare Jupyter kernel start,
the parts of the overhead that do not depend on the run.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def timed(cmd: list[str], repeat: int = 3) -> float:
    """Best-of-``repeat`` wall seconds of ``cmd``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t0)
    return best


def kernel_start() -> float:
    """Seconds to start a python3 Jupyter kernel and run one empty cell."""
    code = ("import time; t=time.perf_counter(); from jupyter_client.manager import start_new_kernel; "
            "km, kc = start_new_kernel(kernel_name='python3'); kc.execute_interactive('pass', timeout=60); "
            "print(time.perf_counter()-t); kc.stop_channels(); km.shutdown_kernel(now=True)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def grid_file(folder: Path, base: str, runs: int, workers: int) -> Path:
    seeds = list(range(max(1, runs // 2)))
    path = folder / "bench.yaml"
    path.write_text(f"description: fixed cost of a grid run\nbase: {base}\nvary:\n  model.num_queries: [1, 4]\n"
                    f"seeds: {seeds}\nworkers: {workers}\n")
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=4, help="runs in the grid (even: 2 values of K x runs/2 seeds)")
    ap.add_argument("--base", default="embedded-short", help="the grid's base config")
    ap.add_argument("--workers", type=int, default=1, help="runs at once")
    ap.add_argument("--keep", help="grid folder to keep (default: a temporary one, removed)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-grid-") as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / "grid"
        grid = grid_file(Path(tmp), args.base, args.runs, args.workers)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "glscl.cli", "ablate", str(grid), "--out", str(out)], check=True)
        total = time.perf_counter() - t0
        table = pd.read_csv(out / "results.csv")
    cols = ["run_id", "status", "wall_s", "run_s", "overhead_s"]
    table = table[cols].copy()
    table["overhead_share"] = table["overhead_s"] / table["wall_s"]
    mean = table[["wall_s", "run_s", "overhead_s", "overhead_share"]].mean()
    pd.set_option("display.width", 160)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print("mean   wall_s {wall_s:.2f}  run_s {run_s:.2f}  overhead_s {overhead_s:.2f}  overhead/wall {overhead_share:.1%}"
          .format(**mean))
    print(f"grid wall (ablate command, {len(table)} runs): {total:.1f} s")
    bare = timed([sys.executable, "-c", "pass"])
    imp = timed([sys.executable, "-c", "import glscl.engine.run"])
    try:
        kernel = f"{kernel_start():.2f} s"
    except Exception as e:  # jupyter_client missing or kernel not installed
        kernel = f"n/a ({type(e).__name__})"
    print(f"python -c pass: {bare:.2f} s; import glscl.engine.run: {imp:.2f} s; kernel start + empty cell: {kernel}")
    return 0 if (table["status"] == "ok").all() else 1


if __name__ == "__main__":
    sys.exit(main())
