"""Engine figures: data wait, cache vs end-to-end training speed, evaluation time and memory at scale.

    python benchmarks/bench_engine.py [--parts train,realsize,eval] [--world data/world] [--galleries 10000,100000]

train: on the embedded world (generated and pre-trained as by ``glscl demo`` if missing),
       training clips/s and the data-wait share of step time
         - end to end (decode + backbone + head), DataLoader with 0 and 2 worker processes,
           backbone frozen (forward only) and fine-tuned;
         - head only, from the feature cache;
       and the ratio of a head-only epoch's time to an end-to-end epoch's, measured in one run.
realsize: the same cache vs end-to-end comparison with a ViT-B/32-sized backbone (random
       weights: only the cost matters) at 224 px on a small world.
eval:  1,000 queries against synthetic cached galleries at the paper's shapes (d=512, T=12,
       L=32, K=8, 4 temporal layers, 3 decoder layers): wall time and peak resident memory of
       the whole evaluation process (each gallery in a fresh subprocess; the memory-mapped
       gallery pages count when touched).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def train_figures(world: Path, out: Path, steps: int, batch: int) -> list[dict]:
    import pandas as pd

    from glscl.config import build_config
    from glscl.engine.embedded import prepare_embedded
    from glscl.engine.run import run

    clip = prepare_embedded(world, progress=False)  # the scenes world and its tiny CLIP
    base = build_config("embedded", {"out_dir": str(out), "data.root": str(world), "data.cache_dir": str(world / "cache"),
                                     "model.pretrained": str(clip), "train.epochs": 1, "train.max_steps": steps,
                                     "train.batch_size": batch, "train.eval_every": 1})
    end_to_end = {"data.cache_dir": None, "data.num_workers": 2}
    cases = [("end to end, frozen backbone, 0 workers", {**end_to_end, "data.num_workers": 0}, True),
             ("end to end, frozen backbone, 2 workers", end_to_end, True),
             ("end to end, fine-tuned backbone, 2 workers", end_to_end, False),
             ("head only, feature cache", {}, True)]
    rows = []
    for i, (label, data, frozen) in enumerate(cases):
        cfg = build_config(base, {"name": f"bench{i}", **data, "model.freeze_backbone": frozen, "model.interaction": "both",
                                  "train.backbone_lr_coef": 0.0 if frozen else 0.1})
        run(cfg, progress=False, resume=False)
        curve = pd.read_csv(out / f"bench{i}" / "curve.csv").iloc[-1]
        row = {"case": label, "clips_per_s": float(curve["clips_per_s"]), "data_wait_share": float(curve["data_wait_share"])}
        rows.append(row)
        print(f"  {label:45s} {row['clips_per_s']:8.1f} clips/s   data wait {100 * row['data_wait_share']:5.1f} % of step time", flush=True)
    ratio = rows[3]["clips_per_s"] / rows[1]["clips_per_s"]
    print(f"  head-only epoch from the cache is {ratio:.1f}x faster than the same epoch end to end (frozen backbone, 2 workers)")
    return rows


def real_size_figures(world: Path, out: Path) -> dict:
    """Cache vs end to end with a ViT-B/32-sized backbone (random weights, 224 px, 8 frames) on a small world."""
    import pandas as pd

    from glscl.config import ModelConfig, build_config
    from glscl.data.world import WorldConfig, generate_world
    from glscl.engine.run import run

    generate_world(world, WorldConfig(n_train=96, n_val=16, n_test=16), progress=False)
    # the whole model section at the paper's defaults (ViT-B/32-sized, paper-size head), random weights
    model = ModelConfig(backbone="ViT-B-32", pretrained=None, compact_vocab=True, num_frames=8, freeze_backbone=True)
    base = build_config("embedded", {"out_dir": str(out), "data.root": str(world), "data.cache_dir": str(world / "cache"),
                                     **{f"model.{k}": v for k, v in model.to_dict().items()},
                                     "train.epochs": 1, "train.batch_size": 16, "train.eval_every": 1,
                                     "train.backbone_lr_coef": 0.0})
    rows = {}
    for label, data in (("end to end, frozen ViT-B/32, 2 workers", {"data.cache_dir": None, "data.num_workers": 2}),
                        ("head only, feature cache", {})):
        name = "real-e2e" if data else "real-cache"
        run(build_config(base, {"name": name, **data}), progress=False, resume=False)
        curve = pd.read_csv(out / name / "curve.csv").iloc[-1]
        rows[label] = float(curve["clips_per_s"])
        print(f"  {label:45s} {rows[label]:8.2f} clips/s   data wait {100 * float(curve['data_wait_share']):5.1f} %", flush=True)
    values = list(rows.values())
    print(f"  head-only epoch from the cache is {values[1] / values[0]:.1f}x faster than the same epoch end to end")
    return rows


def eval_child(m: int, n: int, folder: str) -> None:
    """Runs in a fresh process: evaluate n queries against an m-video synthetic cached gallery."""
    import numpy as np
    import torch

    from glscl.config import ModelConfig
    from glscl.engine.evaluate import similarity_matrix
    from glscl.model.glscl import GLSCL

    d, t, words = 512, 12, 32
    frames = np.load(Path(folder) / "frames.npy", mmap_mode="r")[:m]
    mask = np.ones((256, t), dtype=bool)
    torch.manual_seed(0)
    head = GLSCL(ModelConfig(), d).eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        text = head.encode_text(torch.randn(n, d), torch.randn(n, words, d), torch.ones(n, words, dtype=torch.bool))
        blocks = ((torch.from_numpy(np.array(frames[i:i + 256], dtype=np.float32)), torch.from_numpy(mask[: min(256, m - i)]))
                  for i in range(0, m, 256))
        sim = similarity_matrix(head, text, blocks, "cpu")
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"videos": m, "queries": n, "seconds": seconds, "peak_rss_mb": peak_mb, "shape": list(sim.shape)}))


def eval_figures(galleries: list[int], n: int = 1000) -> list[dict]:
    import numpy as np

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        m_max = max(galleries)
        frames = np.lib.format.open_memmap(Path(folder) / "frames.npy", mode="w+", dtype=np.float16, shape=(m_max, 12, 512))
        rng = np.random.default_rng(0)
        for i in range(0, m_max, 10000):
            frames[i:i + 10000] = rng.standard_normal((min(10000, m_max - i), 12, 512), dtype=np.float32).astype(np.float16)
        frames.flush()
        del frames
        for m in galleries:
            r = subprocess.run([sys.executable, __file__, "--eval-child", str(m), str(n), folder],
                               capture_output=True, text=True, check=True)
            row = json.loads(r.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"  {n} x {m:>7,d} gallery: {row['seconds']:7.1f} s, peak memory {row['peak_rss_mb'] / 1024:5.2f} GB", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="train,realsize,eval")
    ap.add_argument("--world", default="data/world")
    ap.add_argument("--out", default="runs/bench-engine")
    ap.add_argument("--steps", type=int, default=9, help="training steps measured per case (9 = one epoch at batch 64)")
    ap.add_argument("--batch", type=int, default=64, help="training batch (the embedded default's)")
    ap.add_argument("--galleries", default="10000,100000")
    ap.add_argument("--eval-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.eval_child:
        eval_child(int(args.eval_child[0]), int(args.eval_child[1]), args.eval_child[2])
        return
    record = {}
    if "train" in args.parts:
        print(f"training speed on the embedded world (glscl-tiny, 8 frames, batch {args.batch}):")
        record["train"] = train_figures(Path(args.world), Path(args.out), args.steps, args.batch)
    if "realsize" in args.parts:
        print("cache vs end to end at ViT-B/32 size (random weights, 224 px, 8 frames, batch 16, paper-size head):")
        record["realsize"] = real_size_figures(Path(args.world + "-realsize"), Path(args.out))
    if "eval" in args.parts:
        print("evaluation at the paper's shapes, 1,000 queries, streamed gallery:")
        record["eval"] = eval_figures([int(x) for x in args.galleries.split(",")])
    Path(args.out).mkdir(parents=True, exist_ok=True)
    from glscl.files import write_json
    write_json(Path(args.out) / "bench_engine.json", record)


if __name__ == "__main__":
    main()
