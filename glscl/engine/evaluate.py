"""Encoding a whole split, and evaluation: every text once, every video once, then S for all pairs.

The one split encoder of the package. Two stages, each a loop over blocks:

1. backbone features of a split (``glscl.data.features``), from decoded clips and tokenized
   captions or read back from a feature cache: texts as ``TextFeatures`` blocks (token states,
   mask, sentence vector), videos as (frames x_f, mask) blocks with padded frames 0;
2. the head on those features: ``encode_texts`` (every caption once, kept: the smaller side,
   1,000 queries in MSR-VTT 1k-A), ``encode_videos`` (block by block) and ``similarity_matrix``,
   which scores each video block against all texts at once and drops it, so memory holds one
   video block plus the N x M result, whatever the gallery size.

``evaluate(head, texts, videos, caption_video)`` chains them into S and the retrieval metrics;
``evaluate_cached`` and ``evaluate_decoded`` are its two sources. Post-processing (DSL, QB-Norm)
is transductive and reported in separate rows, marked as such (``metric_rows``).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from glscl.data.features import VideoBlocks, backbone_texts, backbone_videos, cached_texts, cached_videos
from glscl.data.world.annotation import FrameAnnotation
from glscl.engine.diversity import QueryDiversity
from glscl.engine.intervals import recall_intervals
from glscl.engine.mechanism import FrameSimilarity, MechanismProbe
from glscl.engine.metrics import QB_NORM, dual_softmax, qb_norm, retrieval_metrics
from glscl.model.backbone import TextFeatures
from glscl.model.embedding import TextEmbedding, VideoEmbedding

__all__ = ["evaluate", "evaluate_cached", "evaluate_decoded", "encode_texts", "encode_videos", "similarity_matrix",
           "metric_rows"]


# -- stage 2: the head ------------------------------------------------------------------------------

@torch.no_grad()
def encode_texts(head, texts: Iterable[TextFeatures], device="cpu") -> TextEmbedding:
    """Every caption encoded once by the head (eval mode), concatenated."""
    head.eval()
    return TextEmbedding.cat([head.encode_text(f.sentence.to(device), f.tokens.to(device), f.mask.to(device)) for f in texts])


@torch.no_grad()
def encode_videos(head, videos: VideoBlocks, device="cpu") -> Iterator[VideoEmbedding]:
    """Every video encoded once by the head (eval mode), block by block."""
    head.eval()
    for frames, mask in videos:
        yield head.encode_video(frames.to(device), mask.to(device))


@torch.no_grad()
def similarity_matrix(head, text: TextEmbedding, videos: VideoBlocks, device="cpu") -> torch.Tensor:
    """S (N texts x M videos, float32 on CPU): each video block encoded once, scored against every text, dropped."""
    return torch.cat([head.similarity(text, video).float().cpu() for video in encode_videos(head, videos, device)], dim=1)


def evaluate(head, texts: Iterable[TextFeatures], videos: VideoBlocks, caption_video,
             device="cpu", annotation: FrameAnnotation | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """S and the retrieval metrics of ``head`` on one split: texts encoded first and kept, videos streamed.

    The metrics hold 95 % bootstrap intervals of the headline recalls over test queries
    (``glscl.engine.intervals``: t2v_R@1_lo, t2v_R@1_hi, ...). For heads with queries they also hold
    their diversity (``glscl.engine.diversity``):
    video_query_cos, video_query_erank, text_query_cos, text_query_erank. With the split's frame
    ``annotation`` (the embedded world) they hold the mechanism metrics (``glscl.engine.mechanism``).
    Every record holds ``frame_cosine``: how alike a video's frames are (``FrameSimilarity``)."""
    text = encode_texts(head, texts, device)
    video_diversity, blocks, alike = QueryDiversity(), [], FrameSimilarity()
    probe = MechanismProbe(annotation, caption_video) if annotation is not None else None
    offset = 0
    for video in encode_videos(head, alike.tap(videos), device):
        blocks.append(head.similarity(text, video).float().cpu())
        if video.queries is not None:
            video_diversity.add(video.queries.cpu())
        if probe is not None:
            probe.add(head, text, video, offset)
        offset += video.mask.shape[0]
    sim = torch.cat(blocks, dim=1)
    metrics = retrieval_metrics(sim, np.asarray(caption_video)) | recall_intervals(sim, np.asarray(caption_video))
    if probe is not None:
        metrics.update(probe.record(sim))
    metrics.update(alike.record())
    if text.queries is not None:  # GLSCL's local interaction: how distinct are the K query outputs?
        text_diversity = QueryDiversity()
        text_diversity.add(text.queries.cpu())
        metrics.update(video_diversity.record("video") | text_diversity.record("text"))
    return sim, metrics


def evaluate_cached(head, cache, device="cpu", batch_size: int = 256,
                    annotation: FrameAnnotation | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """``evaluate`` on a feature cache (one split)."""
    return evaluate(head, cached_texts(cache), cached_videos(cache, batch_size), cache.caption_video, device, annotation)


def evaluate_decoded(model, split, num_frames: int, sample_fps: float = 1.0, device="cpu", batch_size: int = 32,
                     num_workers: int = 0, annotation: FrameAnnotation | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """``evaluate`` end to end: a ``Retriever``'s backbone encodes the decoded split, its head scores it."""
    model.eval()
    texts = backbone_texts(model.backbone, split.captions, device)
    videos = backbone_videos(model.backbone, split, num_frames, sample_fps, device, batch_size, num_workers)
    return evaluate(model.head, texts, videos, split.caption_video, device, annotation)


def metric_rows(sim: torch.Tensor, caption_video, *, dsl: bool = False, bank_t2v: torch.Tensor | None = None,
                bank_v2t: torch.Tensor | None = None, qb_beta: float | None = None,
                v2t_protocol: str = "group") -> dict[str, dict[str, float]]:
    """Metrics rows: 'plain' always; 'dsl' and 'qb-norm' (transductive) only when asked.

    QB-Norm uses the published settings (``QB_NORM``; ``qb_beta`` replaces beta in both directions):
    t2v with ``bank_t2v`` (bank captions x test videos) normalises the rows of S; v2t with
    ``bank_v2t`` (bank videos x test captions) normalises the rows of S^T (videos x captions).
    """
    rows = {"plain": retrieval_metrics(sim, caption_video, v2t_protocol)}

    def row(t2v: torch.Tensor | None, v2t: torch.Tensor | None) -> dict[str, float]:
        out = {}
        for direction, s in (("t2v", t2v), ("v2t", v2t)):
            if s is not None:
                out.update({k: v for k, v in retrieval_metrics(s, caption_video, v2t_protocol).items()
                            if k.startswith(direction)})
        return out

    if dsl:  # the prior is taken over the gallery side of each direction
        rows["dsl (transductive)"] = row(dual_softmax(sim), dual_softmax(sim.T).T)
    if bank_t2v is not None or bank_v2t is not None:
        settings = {d: {**QB_NORM[d], **({"beta": qb_beta} if qb_beta is not None else {})} for d in QB_NORM}
        rows["qb-norm (transductive)"] = row(
            None if bank_t2v is None else qb_norm(sim, bank_t2v, **settings["t2v"]),
            None if bank_v2t is None else qb_norm(sim.T, bank_v2t, **settings["v2t"]).T)
    return rows
