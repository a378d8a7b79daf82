"""ALPRO baselines on the embedded world: pseudo-label quality, PEM's cost per step, and the effect
of PEM and of VTC vs GLSCL on retrieval (mean and 95 % CI over seeds).

    python benchmarks/bench_alpro.py [--world data/world] [--out runs/bench_alpro] [--parts labels,cost,quality]
                                     [--seeds 0,1,2] [--epochs 6] [--batch-size 64] [--steps 12]

The world and the tiny CLIP (its pre-trained checkpoint is also the PEM prompter) are generated as
``glscl demo`` does, and reused when present.

labels   the frozen prompter's pseudo-labels on random 30-50 % crops of 256 training clips, per
         entity kind x template set: entities, share of samples kept (max q >= 0.2), mean max q,
         and precision@1: how often the top entity is an object whose centre lies in the box in
         some frame (world.json knows where every object is). Decides the PEM settings used below.
cost     milliseconds per end-to-end training step (decoded batch held in memory, so decoding is
         not counted; median of ``--steps`` after 2 warm-up steps), without and with PEM, for both
         heads (GLSCL, VTC); PEM's extra cost in ms and as a ratio; the prompter's forward pass alone.
quality  end-to-end runs (decode -> backbone -> head; backbone fine-tuned at lr x 0.1) of GLSCL,
         GLSCL+PEM and VTC (``--configs`` adds VTC+PEM) for every seed, same schedule (``--epochs`` over the world's
         600 training clips, batch 64, validation at the end of each half, test on the checkpoint
         chosen on validation). Prints mean and 95 % t-interval of test t2v/v2t R@1, t2v R@5 and
         twin accuracy per configuration, and the paired per-seed differences
         (PEM - no PEM, VTC - GLSCL) with their intervals.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 20: 2.086, 30: 2.042}


def t_interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the two-sided 95 % t-interval); half-width nan for one value."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, float("nan")
    t = T975.get(n - 1) or T975[max(k for k in T975 if k <= n - 1)]
    return mean, t * statistics.stdev(values) / math.sqrt(n)


def prepare(world: Path) -> Path:
    from glscl.engine.embedded import prepare_embedded
    return prepare_embedded(world, quick=False, progress=False)


def base_config(world: Path, clip: Path, out: Path, epochs: int, batch_size: int):
    """The embedded preset, end to end: no cache, backbone fine-tuned at lr x 0.1."""
    from glscl.config import build_config
    return build_config("embedded", {
        "out_dir": str(out), "data.root": str(world), "model.pretrained": str(clip),
        "data.cache_dir": None, "data.num_workers": 2, "model.freeze_backbone": False,
        "train.epochs": epochs, "train.batch_size": batch_size, "train.backbone_lr_coef": 0.1,
        "train.eval_every": max(1, epochs // 2), "pem.entity_kind": "phrases", "pem.templates": "bare"})


# -- labels -----------------------------------------------------------------------------------------

def _objects_in_box(video, box, patch: int, frames: int, kind: str) -> set[str]:
    top, left, h, w = (int(v) * patch for v in box)
    names = set()
    for o in video.clip.objects:
        for t in range(o.visible_from, min(o.visible_to, frames)):
            x, y = o.centre(t)
            if left <= x < left + w and top <= y < top + h:
                names.add(o.shape if kind == "nouns" else f"{o.size} {o.colour} {o.shape}")
    return names


def labels_part(world: Path, clip: Path, n_clips: int = 256) -> list[dict]:
    from glscl.config import DataConfig
    from glscl.data import load_split
    from glscl.data.video import ClipTransform, load_clip
    from glscl.data.world import load_world
    from glscl.model.backbone import create_backbone
    from glscl.pem import TEMPLATES, Prompter, crop_to_box, mine_entities, pseudo_labels, sample_boxes

    w = load_world(world)
    split = load_split(DataConfig(dataset="world", root=str(world)), "train")
    by_id = {v.video_id: v for v in w.videos}
    backbone = create_backbone("glscl-tiny", str(clip))
    transform = ClipTransform.for_backbone(backbone)
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(split.num_videos, generator=g)[:n_clips].tolist()
    clips = [load_clip(split.video_paths[i], w.config.frames) for i in idx]
    pixels = torch.stack([transform(f, m) for f, m in clips])
    mask = torch.stack([m for _, m in clips])
    patch = backbone.clip.visual.patch_size[0]
    boxes = sample_boxes(len(idx), *backbone.clip.visual.grid_size, generator=g)
    black = -torch.tensor(transform.mean) / torch.tensor(transform.std)
    cropped = crop_to_box(pixels, boxes, patch, black)
    rows = []
    print(f"prompter pseudo-labels on {len(idx)} random 30-50 % crops of training clips (tiny CLIP as the prompter)")
    print(f"  {'entities':8s} {'templates':9s} {'M':>3s} {'kept':>6s} {'mean max q':>10s} {'prec@1':>7s} {'chance':>7s}")
    for kind in ("nouns", "phrases"):
        entities = mine_entities(split.captions, 1000, kind)
        for templates in ("video", "bare"):
            prompter = Prompter(backbone, entities, TEMPLATES[templates])
            sim = prompter(cropped, mask)
            q, keep = pseudo_labels(sim, prompter.temperature, 0.2)
            top = q.argmax(-1)
            hits, chance, n = 0, 0.0, 0
            for b, i in enumerate(idx):
                present = _objects_in_box(by_id[split.video_ids[i]], boxes[b], patch, w.config.frames, kind)
                if present:
                    n += 1
                    hits += entities[int(top[b])] in present
                    chance += len(present & set(entities)) / len(entities)
            row = {"entities": kind, "templates": templates, "M": len(entities), "kept": float(keep.float().mean()),
                   "mean_max_q": float(q.max(-1).values.mean()), "precision_at_1": hits / max(1, n),
                   "chance": chance / max(1, n), "boxes_with_an_object": n}
            rows.append(row)
            print(f"  {kind:8s} {templates:9s} {row['M']:3d} {100 * row['kept']:5.1f}% {row['mean_max_q']:10.3f} "
                  f"{100 * row['precision_at_1']:6.1f}% {100 * row['chance']:6.1f}%")
    print(f"  ({rows[0]['boxes_with_an_object']} of {len(idx)} boxes hold an object centre; precision counts those)")
    return rows


# -- cost -------------------------------------------------------------------------------------------

def cost_part(base, out: Path, steps: int, batch_size: int) -> list[dict]:
    from torch.utils.data import DataLoader

    from glscl.config import build_config
    from glscl.data import load_split
    from glscl.data.dataset import DecodedBatch, PairDataset
    from glscl.data.video import ClipTransform
    from glscl.engine.run import SPLITS, _vocab
    from glscl.engine.train import Batches, Trainer
    from glscl.model.backbone import create_backbone
    from glscl.model.factory import Retriever, create_head
    from glscl.pem import build_pem

    splits = {s: load_split(base.data, s) for s in SPLITS}
    vocab = _vocab(base, splits)
    rows, batch = [], None
    print(f"\nms per end-to-end training step (batch {batch_size}, {base.model.num_frames} frames of 64x64, decoded batch "
          f"in memory; the two cases alternate step by step so that load on the machine hits both alike; "
          f"median of {steps} steps each, {torch.get_num_threads()} threads)")
    for head in ("glscl", "vtc"):
        trainers, pem = {}, None
        for pem_weight in (0.0, 1.0):
            cfg = build_config(base, {"name": f"cost-{head}-{pem_weight}", "model.head": head,
                                      "loss.pem_weight": pem_weight, "train.batch_size": batch_size})
            torch.manual_seed(0)
            backbone = create_backbone(cfg.model.backbone, cfg.model.pretrained, context_length=cfg.model.max_words)
            backbone.use_compact_vocab(vocab)
            model = Retriever(backbone, create_head(cfg.model, backbone.width, float(backbone.logit_scale.detach())))
            if batch is None:
                ds = PairDataset(splits["train"], backbone.tokenizer, cfg.model.num_frames, ClipTransform.for_backbone(backbone),
                                 augment=True, seed=0)
                batch = next(iter(DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0,
                                             collate_fn=DecodedBatch.collate)))
            if pem_weight > 0:
                pem = build_pem(cfg, model, splits["train"].captions)
            trainers[pem_weight] = Trainer(cfg, model, Batches(len(splits["train"].captions), lambda o, e: iter(())), out / "cost",
                                           torch.device("cpu"), progress=False, pem=pem if pem_weight > 0 else None)
        laps: dict[float, list[float]] = {0.0: [], 1.0: []}
        boxes = torch.tensor([[0, 0, 2, 3]] * batch_size)
        prompter = []
        for i in range(steps + 2):
            for pem_weight, trainer in trainers.items():
                t0 = time.perf_counter()
                trainer.train_step(batch)
                if i >= 2:
                    laps[pem_weight].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            pem.targets(batch.pixels, batch.frame_mask, boxes)
            prompter.append(time.perf_counter() - t0)
        ms = {k: 1000 * statistics.median(v) for k, v in laps.items()}
        row = {"head": head, "ms_without_pem": ms[0.0], "ms_with_pem": ms[1.0], "pem_extra_ms": ms[1.0] - ms[0.0],
               "ratio": ms[1.0] / ms[0.0], "prompter_ms": 1000 * statistics.median(prompter[2:])}
        rows.append(row)
        print(f"  {head:5s}  without PEM {row['ms_without_pem']:7.1f} ms   with PEM {row['ms_with_pem']:7.1f} ms   "
              f"PEM extra {row['pem_extra_ms']:+6.1f} ms (x{row['ratio']:.2f}); "
              f"of which the prompter's forward pass {row['prompter_ms']:.1f} ms")
    return rows


# -- quality ----------------------------------------------------------------------------------------

CONFIGS = (("GLSCL", "glscl", 0.0), ("GLSCL+PEM", "glscl", 1.0), ("VTC", "vtc", 0.0), ("VTC+PEM", "vtc", 1.0))
METRICS = ("t2v_R@1", "t2v_R@5", "v2t_R@1", "twin_accuracy")


def quality_part(base, out: Path, seeds: list[int], labels: list[str]) -> list[dict]:
    from glscl.config import build_config
    from glscl.engine.record import read_record, record_problem
    from glscl.engine.run import run
    configs = [c for c in CONFIGS if c[0] in labels]
    records = []
    print(f"\nend-to-end runs on the world: {base.train.epochs} epochs, batch {base.train.batch_size}, "
          f"backbone lr x {base.train.backbone_lr_coef}, PEM weight 1 ({base.pem.entity_kind}, {base.pem.templates} prompts); "
          f"test split, checkpoint chosen on validation")
    for seed in seeds:  # seed-major: a stopped bench still covers whole seeds
        for label, head, pem_weight in configs:
            name = f"{label.replace('+', '_')}-seed{seed}"
            cfg = build_config(base, {"name": name, "model.head": head, "loss.pem_weight": pem_weight, "train.seed": seed})
            t0 = time.perf_counter()  # a finished run's record is read, not trained again
            rec = read_record(out / name) if record_problem(out / name) is None else run(cfg, progress=False)
            records.append({"config": label, "seed": seed, **{m: rec[m] for m in METRICS}, "train_s": rec["train_s"]})
            print(f"  {label:10s} seed {seed}: " + "  ".join(f"{m} {rec[m]:5.1f}" for m in METRICS)
                  + f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"\nmean and 95 % t-interval over {len(seeds)} seeds")
    print(f"  {'config':10s} " + " ".join(f"{m:>15s}" for m in METRICS))
    for label, _, _ in configs:
        cells = []
        for m in METRICS:
            mean, half = t_interval([r[m] for r in records if r["config"] == label])
            cells.append(f"{mean:6.1f} +- {half:5.1f}")
        print(f"  {label:10s} " + " ".join(f"{c:>15s}" for c in cells))
    print("paired differences per seed (same seed, same data order), mean and 95 % t-interval")
    for a, b in [(a, b) for a, b in (("GLSCL+PEM", "GLSCL"), ("VTC+PEM", "VTC"), ("VTC", "GLSCL")) if {a, b} <= set(labels)]:
        cells = []
        for m in METRICS:
            diffs = [next(r[m] for r in records if r["config"] == a and r["seed"] == s)
                     - next(r[m] for r in records if r["config"] == b and r["seed"] == s) for s in seeds]
            mean, half = t_interval(diffs)
            cells.append(f"{mean:+6.1f} +- {half:5.1f}")
        print(f"  {a + ' - ' + b:19s} " + " ".join(f"{c:>15s}" for c in cells))
    return records


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default="data/world", help="world folder (generated and pre-trained if missing)")
    ap.add_argument("--out", default="runs/bench_alpro", help="results folders of the runs (reused when complete)")
    ap.add_argument("--parts", default="labels,cost,quality")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=6, help="end-to-end epochs per run (quality)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per case (cost)")
    ap.add_argument("--configs", default="GLSCL,GLSCL+PEM,VTC",
                    help="quality: which of GLSCL, GLSCL+PEM, VTC, VTC+PEM to run (each once per seed)")
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))
    world, out = Path(args.world), Path(args.out)
    clip = prepare(world)
    base = base_config(world, clip, out, args.epochs, args.batch_size)
    results: dict = {}
    if "labels" in parts:
        results["labels"] = labels_part(world, clip)
    if "cost" in parts:
        results["cost"] = cost_part(base, out, args.steps, args.batch_size)
    if "quality" in parts:
        results["quality"] = quality_part(base, out, [int(s) for s in args.seeds.split(",")], args.configs.split(","))
    out.mkdir(parents=True, exist_ok=True)
    from glscl.files import write_json
    write_json(out / "bench_alpro.json", results)
    return results


if __name__ == "__main__":
    main()
