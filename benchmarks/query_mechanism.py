"""Why the K queries of the local interaction collapse on the embedded world at IDL weight 0.1.

    python benchmarks/query_mechanism.py [--root data/world] [--seeds 0] [--epochs 3] [--out DIR]

For IDL weight 0.1 and 1.0, at initialisation (a fresh head) and after training from the feature
cache, on the test split:

    cos/erank   item_diversity of c^v and c^t (mean off-diagonal cosine; effective rank, K = all distinct)
    map cos     per decoder layer, mean over items of the mean off-diagonal cosine between the K
                queries' cross-attention rows over frames (video) or tokens (text): 1 = one shared map
    frame cos   mean off-diagonal cosine between the real frames v_f of one video (the decoder's memory)
    norms       |q_k| (the learnable query, the decoder's starting residual), |v_f| (the memory) and
                |u_k| per layer, u_k the cross-attention output added to query k's residual; 'u cos'
                is the mean off-diagonal cosine of the u_k of one video (1 = the same vector for all k)

and the gradient balance on training batches from the cache, with respect to the local
interaction's parameters (queries and decoder):

    g_c = d InfoNCE / d theta,  g_d = d (w_IDL * IDL) / d theta:  |g_c|, |g_d|, |g_c| / |g_d|, cos(g_c, g_d)

Training follows the ``embedded`` preset except ``train.epochs`` (``--epochs``; the preset trains 25).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from glscl.config import build_config
from glscl.data import load_splits
from glscl.data.dataset import CachedPairDataset, same_pair_mask
from glscl.data.features import cached_texts, cached_videos
from glscl.engine.diversity import item_diversity
from glscl.engine.embedded import prepare_embedded
from glscl.engine.evaluate import encode_texts, encode_videos
from glscl.engine.loading import load_run
from glscl.engine.mechanism import pairwise_cosine
from glscl.engine.run import build_caches, find_caches, load_backbone, run
from glscl.engine.train import encode_batch, generators_kept, seed_everything
from glscl.losses import info_nce, intra_diversity
from glscl.model.factory import create_head

WEIGHTS = (0.1, 1.0)


def config(root: Path, out: Path, weight: float, seed: int, epochs: int):
    return build_config("embedded", {
        "loss.idl_weight": weight, "name": f"idl{weight:g}-seed{seed}", "out_dir": str(out), "train.seed": seed,
        "train.epochs": epochs, "data.root": str(root), "data.cache_dir": str(root / "cache"),
        "model.pretrained": str(root / "clip-tiny-pretrained.safetensors")})


def caches_and_init(cfg) -> tuple[dict, torch.nn.Module]:
    """Every split's feature cache and the head ``run`` would start from (same seed, same RNG state)."""
    splits = load_splits(cfg.data)
    seed_everything(cfg.train.seed)
    with generators_kept(torch.device("cpu")):
        caches, backbone = find_caches(cfg, splits), None
        if caches is None:
            backbone, _ = load_backbone(cfg, splits)
            caches = build_caches(cfg, backbone, splits, progress=False)
    if backbone is not None:
        return caches, create_head(cfg.model, backbone.width, float(backbone.logit_scale.detach()), backbone)
    meta = caches["train"].meta
    return caches, create_head(cfg.model, meta["width"], meta["logit_scale"])


@torch.no_grad()
def test_figures(head, cache) -> dict[str, float]:
    """Query diversity, attention-map similarity, frame cosine and norms on one split."""
    local = head.local
    updates: dict[int, list[torch.Tensor]] = {}
    hooks = [layer.multihead_attn.register_forward_hook(
        lambda mod, args, out, i=i: updates.setdefault(i, []).append(out[0].detach()))
        for i, layer in enumerate(local.video_decoder.layers)]
    try:
        videos = list(encode_videos(head, cached_videos(cache)))
    finally:
        for h in hooks:
            h.remove()
    text = encode_texts(head, cached_texts(cache))
    frames = torch.cat([v.frames for v in videos])
    mask = torch.cat([v.mask for v in videos])
    vq = torch.cat([v.queries for v in videos])
    out = {}
    for name, q in (("video", vq), ("text", text.queries)):
        cos, erank = item_diversity(q)
        out[f"{name}_cos"], out[f"{name}_erank"] = float(cos.mean()), float(erank.mean())
    vmaps = torch.cat([local.attention_maps(v.frames, v.mask, "video") for v in videos], dim=1)
    for i in range(vmaps.shape[0]):
        out[f"vmap{i}"] = float(pairwise_cosine(vmaps[i]).mean())
    tmaps = torch.cat([local.attention_maps(f.tokens, f.mask, "text")
                       for f in cached_texts(cache)], dim=1)
    for i in range(tmaps.shape[0]):
        out[f"tmap{i}"] = float(pairwise_cosine(tmaps[i]).mean())
    out["frame_cos"] = float(pairwise_cosine(frames, mask).mean())
    out["frame_norm"] = float(frames.norm(dim=-1)[mask].mean())
    out["query_norm"] = float(local.video_queries.norm(dim=-1).mean())
    for i, u in sorted(updates.items()):
        u = torch.cat(u)
        out[f"u{i}_norm"], out[f"u{i}_cos"] = float(u.norm(dim=-1).mean()), float(pairwise_cosine(u).mean())
    return out


def gradient_balance(head, cfg, cache, batches: int) -> dict[str, float]:
    """|g_c|, |g_d| (w_IDL * IDL), their ratio and cosine on the local interaction, averaged over ``batches`` batches."""
    ds = CachedPairDataset(cache)
    params = [p for p in head.local.parameters() if p.requires_grad]
    order = np.random.default_rng(cfg.train.seed).permutation(len(ds))
    b, lc = cfg.train.batch_size, cfg.loss
    head.train()
    rows = []
    for j in range(batches):
        batch = ds.batch(order[j * b:(j + 1) * b])
        text, video, _ = encode_batch(head, batch)
        sim = head.similarity(text, video)
        same = same_pair_mask(batch.video, batch.caption) if lc.mask_false_negatives else None
        contrastive = info_nce(sim, head.logit_scale, max_scale=lc.max_logit_scale, same_caption=same)
        idl = lc.idl_weight * intra_diversity(text.queries, video.queries)
        gc = torch.cat([g.flatten() for g in torch.autograd.grad(contrastive, params, retain_graph=True, allow_unused=True)
                        if g is not None])
        gd = torch.cat([g.flatten() for g in torch.autograd.grad(idl, params, allow_unused=True) if g is not None])
        rows.append((gc.norm(), gd.norm(), F.cosine_similarity(gc, gd, dim=0)))
    head.eval()
    gc, gd, cos = (float(torch.stack(r).mean()) for r in zip(*rows))
    return {"g_c": gc, "g_d": gd, "ratio": gc / max(gd, 1e-12), "g_cos": cos}


def table(rows: list[tuple[str, dict]], cols: list[tuple[str, str, str]]) -> str:
    head = f"{'':<16}" + "".join(f"{title:>9}" for _, title, _ in cols)
    lines = [head, "-" * len(head)]
    for label, r in rows:
        lines.append(f"{label:<16}" + "".join(f"{format(r[k], fmt) if k in r else '-':>9}" for k, _, fmt in cols))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="data/world", help="the embedded world (generated, with the tiny CLIP, if absent)")
    ap.add_argument("--seeds", default="0", help="comma-separated train.seed values (default 0)")
    ap.add_argument("--epochs", type=int, default=3, help="train.epochs of each run (the preset: 25)")
    ap.add_argument("--batches", type=int, default=4, help="training batches for the gradient balance")
    ap.add_argument("--out", default=None, help="results folders of the runs (default: a temporary folder)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    root = Path(args.root)
    prepare_embedded(root, progress=False)
    seeds = [int(s) for s in args.seeds.split(",")]
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="query_mechanism-")
    out = Path(args.out or tmp.name)
    rows = []
    for seed in seeds:
        for w in WEIGHTS:
            cfg = config(root, out, w, seed, args.epochs)
            caches, head = caches_and_init(cfg)
            head.eval()
            rows.append((f"w={w:g} s={seed} init", {**test_figures(head, caches["test"]),
                                                     **gradient_balance(head, cfg, caches["train"], args.batches)}))
            ts = time.perf_counter()
            record = run(cfg, progress=False)
            trained = load_run(out / cfg.name).head
            rows.append((f"w={w:g} s={seed} train", {**test_figures(trained, caches["test"]),
                                                      **gradient_balance(trained, cfg, caches["train"], args.batches),
                                                      "t2v_r1": record.get("t2v_R@1", float("nan"))}))
            print(f"trained {cfg.name}: {record['train_steps']} steps in {time.perf_counter() - ts:.0f} s", flush=True)
    layers = sum(1 for k in rows[0][1] if k.startswith("vmap"))
    print("\nquery outputs on test (cos: mean off-diagonal cosine of one item's K queries; erank of K)")
    print(table(rows, [("video_cos", "v cos", ".3f"), ("video_erank", "v erank", ".2f"),
                       ("text_cos", "t cos", ".3f"), ("text_erank", "t erank", ".2f"), ("t2v_r1", "t2v R@1", ".1f")]))
    print("\ncross-attention maps: mean cosine between the K queries' rows, per decoder layer (1 = shared map)")
    print(table(rows, [(f"{m}map{i}", f"{m} L{i}", ".3f") for m in "vt" for i in range(layers)]))
    print("\nvideo decoder: frames, queries and the cross-attention update u_k added to query k's residual")
    print(table(rows, [("frame_cos", "frm cos", ".3f"), ("frame_norm", "|v_f|", ".2f"), ("query_norm", "|q_k|", ".2f")]
                + [c for i in range(layers) for c in ((f"u{i}_norm", f"|u| L{i}", ".2f"), (f"u{i}_cos", f"u cos L{i}", ".3f"))]))
    print(f"\ngradient on the local interaction's parameters, mean over {args.batches} training batches "
          "(g_c: InfoNCE, g_d: w_IDL x IDL)")
    print(table(rows, [("g_c", "|g_c|", ".3f"), ("g_d", "|g_d|", ".4f"), ("ratio", "ratio", ".1f"),
                       ("g_cos", "cos", ".3f")]))
    print(f"\nwall time {time.perf_counter() - t0:.0f} s ({len(seeds)} seed(s), {args.epochs} epochs per run; runs in {out})")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
