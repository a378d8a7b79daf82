"""Evaluation: encode every text once and every video once, then S for all pairs, in bounded memory.

Texts (the smaller side: 1,000 queries in MSR-VTT 1k-A) are encoded first and kept. Videos are
streamed in blocks: each block is encoded once (temporal transformer and local queries) and
scored against all texts at once, then dropped, so memory holds one video block plus the
N x M result, whatever the gallery size.

Post-processing (DSL, QB-Norm) is transductive and reported in separate rows, marked as such.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from glscl.engine.metrics import dual_softmax, qb_norm, retrieval_metrics
from glscl.model.glscl import GLSCL
from glscl.model.interaction import TextEmbedding


def concat_text(parts: list[TextEmbedding]) -> TextEmbedding:
    """One TextEmbedding from several batches (in order)."""
    q = [p.queries for p in parts]
    return TextEmbedding(torch.cat([p.sentence for p in parts]), torch.cat(q) if q[0] is not None else None)


@torch.no_grad()
def encode_cached_texts(head: GLSCL, cache, device, batch_size: int = 512) -> TextEmbedding:
    parts = []
    for i in range(0, len(cache.caption_video), batch_size):
        sl = slice(i, i + batch_size)
        parts.append(head.encode_text(torch.from_numpy(np.array(cache.sentence[sl], dtype=np.float32)).to(device),
                                      torch.from_numpy(np.array(cache.tokens[sl], dtype=np.float32)).to(device),
                                      torch.from_numpy(np.array(cache.token_mask[sl])).to(device)))
    return concat_text(parts)


def cached_video_blocks(cache, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for i in range(0, cache.frames.shape[0], batch_size):
        yield (torch.from_numpy(np.array(cache.frames[i:i + batch_size], dtype=np.float32)),
               torch.from_numpy(np.array(cache.frame_mask[i:i + batch_size])))


@torch.no_grad()
def similarity_matrix(head: GLSCL, text: TextEmbedding, video_blocks: Iterable[tuple[torch.Tensor, torch.Tensor]],
                      device, parts: bool = False, progress: bool = False, total: int | None = None):
    """S (N texts x M videos, float32 on CPU), videos streamed block by block and encoded once.

    With ``parts=True`` also returns the components ({'global': ..., 'local': ...}) for analysis.
    """
    head.eval()
    blocks, part_blocks = [], []
    for frames, mask in tqdm(video_blocks, desc="scoring videos", disable=not progress, total=total, unit="block"):
        video = head.encode_video(frames.to(device), mask.to(device))
        blocks.append(head.similarity(text, video).float().cpu())
        if parts:
            part_blocks.append({k: v.float().cpu() for k, v in head.similarity_parts(text, video).items()})
    sim = torch.cat(blocks, dim=1)
    if not parts:
        return sim
    return sim, {k: torch.cat([p[k] for p in part_blocks], dim=1) for k in part_blocks[0]}


def evaluate_cached(head: GLSCL, cache, device="cpu", batch_size: int = 256) -> tuple[torch.Tensor, dict[str, float]]:
    """S and retrieval metrics of ``head`` on a feature cache (one split)."""
    text = encode_cached_texts(head, cache, device)
    sim = similarity_matrix(head, text, cached_video_blocks(cache, batch_size), device)
    return sim, retrieval_metrics(sim, np.asarray(cache.caption_video))


def metric_rows(sim: torch.Tensor, caption_video, *, dsl: bool = False, bank_sim: torch.Tensor | None = None) -> dict[str, dict[str, float]]:
    """Metrics rows: 'plain' always; 'dsl' and 'qb-norm' (transductive) only when asked."""
    rows = {"plain": retrieval_metrics(sim, caption_video)}
    if dsl:  # the prior is taken over the gallery side of each direction
        t2v = retrieval_metrics(dual_softmax(sim), caption_video)
        v2t = retrieval_metrics(dual_softmax(sim.T).T, caption_video)
        rows["dsl (transductive)"] = {**{k: v for k, v in t2v.items() if k.startswith("t2v")},
                                      **{k: v for k, v in v2t.items() if k.startswith("v2t")}}
    if bank_sim is not None:  # QB-Norm re-normalises text-to-video rows only
        normed = retrieval_metrics(qb_norm(sim, bank_sim), caption_video)
        rows["qb-norm (transductive)"] = {k: v for k, v in normed.items() if k.startswith("t2v")}
    return rows
