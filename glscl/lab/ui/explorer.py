"""The retrieval explorer (ipywidgets), usable and testable without a browser.

``RetrievalExplorer``: type or pick a caption and see the top-k videos of a split, each with its
frame strip and its score S split into the additive parts the head's similarity is made of
(``similarity_parts``, each times its weight in ``part_weights``): the global contribution S_g and
the local contribution lambda * S_l for GLSCL, the one part of mean pooling or VTC. Built from a
trained head and a feature cache (``from_cache``) or from a results folder written by
``glscl.engine.run.run`` (``from_results``, through ``glscl.engine.loading.load_run``).

The callback is a plain method (``show``) and every result lands in a widget whose content can be
read in code: ``explorer.results.value`` (HTML, one ``data-video-id`` per row) and
``explorer.last_rows``. Setting a widget's value in code (``explorer.query.value = caption``) runs
the same callback a user's pick runs. Displayed, the widget comes with a static copy of its view
(``static_html``), so a notebook exported without a live kernel still shows it. ``attention_viewer`` opens a ``QueryAttentionViewer``
(``glscl.lab.ui.query_viewer``) on some pairs of the split.
"""
from __future__ import annotations

import base64
import html
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import torch

from glscl.data.features import backbone_texts, backbone_videos
from glscl.engine.evaluate import encode_texts, encode_videos
from glscl.lab.ui import viz
from glscl.lab.ui.query_viewer import QueryAttentionViewer
from glscl.lab.ui.retrieval_figure import plot_retrieval
from glscl.model.backbone import TextFeatures
from glscl.model.embedding import TextEmbedding, VideoEmbedding

__all__ = ["SplitFeatures", "RetrievalExplorer", "PARTS"]

PARTS = {"global": ("global", "S_g", "#1f77b4"), "local": ("local", "S_l", "#ff7f0e"),
         "mean": ("mean pooling", "cos(t, mean v_f)", "#2ca02c"), "vtc": ("VTC", "z^t·z^v", "#9467bd")}
"""Each similarity part a head can return: (name, symbol, colour) in the tables and figures."""


# ----------------------------------------------------------------------------------------------
# what the explorer searches
# ----------------------------------------------------------------------------------------------

@dataclass
class SplitFeatures:
    """Backbone features of one split (what the feature cache stores) and where its videos are.

    frames: M x T x d per-frame embeddings; frame_mask: M x T; sentence: N x d; tokens: N x L x d;
    token_mask: N x L; captions: N texts; caption_video: N video indices; video_ids: M ids;
    video_paths: M files (None: no frame strips); num_frames, sample_fps: how frames were sampled.
    """

    frames: torch.Tensor
    frame_mask: torch.Tensor
    sentence: torch.Tensor
    tokens: torch.Tensor
    token_mask: torch.Tensor
    captions: list[str]
    caption_video: np.ndarray
    video_ids: list[str]
    video_paths: list[Path] | None = None
    num_frames: int = 0
    sample_fps: float = 1.0

    @classmethod
    def from_cache(cls, cache, video_paths: Sequence[str | Path] | None = None) -> SplitFeatures:
        """From a ``glscl.data.cache.FeatureCache`` (arrays copied to float32 tensors)."""
        f32 = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))  # noqa: E731
        return cls(f32(cache.frames), torch.from_numpy(np.array(cache.frame_mask, bool)), f32(cache.sentence),
                   f32(cache.tokens), torch.from_numpy(np.array(cache.token_mask, bool)), list(cache.captions),
                   np.asarray(cache.caption_video, np.int64), list(cache.video_ids),
                   [Path(p) for p in video_paths] if video_paths is not None else None,
                   int(cache.meta.get("num_frames", cache.frames.shape[1])), float(cache.meta.get("sample_fps", 1.0)))

    @classmethod
    def from_split(cls, backbone, split, num_frames: int, sample_fps: float = 1.0, device: str | torch.device = "cpu",
                   batch_size: int = 32) -> SplitFeatures:
        """A ``RetrievalSplit`` decoded and encoded by ``backbone`` (``glscl.engine.evaluate``'s split encoder),
        for runs trained without a feature cache."""
        backbone.eval()
        texts = list(backbone_texts(backbone, split.captions, device))
        videos = list(backbone_videos(backbone, split, num_frames, sample_fps, device, batch_size))
        cat = lambda xs: torch.cat([x.float().cpu() for x in xs])  # noqa: E731
        return cls(cat(f for f, _ in videos), torch.cat([m.cpu() for _, m in videos]).bool(),
                   cat(t.sentence for t in texts), cat(t.tokens for t in texts), torch.cat([t.mask.cpu() for t in texts]),
                   list(split.captions), np.asarray(split.caption_video, np.int64), list(split.video_ids),
                   list(split.video_paths), num_frames, sample_fps)

    def texts(self, batch_size: int = 256) -> Iterator[TextFeatures]:
        """The captions' features, ``batch_size`` at a time (what ``glscl.engine.evaluate.encode_texts`` takes)."""
        for i in range(0, len(self.captions), batch_size):
            sl = slice(i, i + batch_size)
            yield TextFeatures(tokens=self.tokens[sl], mask=self.token_mask[sl], sentence=self.sentence[sl])

    def videos(self, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(frames, mask) blocks of the videos (what ``glscl.engine.evaluate.encode_videos`` takes)."""
        for i in range(0, len(self.video_ids), batch_size):
            yield self.frames[i:i + batch_size], self.frame_mask[i:i + batch_size]


def _colour(part: str) -> str:
    return PARTS[part][2] if part in PARTS else "#7f7f7f"


def _img_tag(png: bytes, title: str = "") -> str:
    return (f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" title="{html.escape(title)}" '
            f'style="image-rendering: pixelated; vertical-align: middle"/>')


def _backbone_text_encoder(backbone, device) -> Callable:
    @torch.no_grad()
    def encode(texts: list[str]):
        f = backbone.encode_text(backbone.tokenizer(list(texts)).to(device))
        return f.sentence.float(), f.tokens.float(), f.mask
    return encode


# ----------------------------------------------------------------------------------------------
# the retrieval explorer
# ----------------------------------------------------------------------------------------------

class RetrievalExplorer:
    """Caption -> top-k videos, with frame strips and S split into the parts of the head's similarity.

    head: a trained head (GLSCL, mean pooling or VTC); features: ``SplitFeatures`` of the gallery
    split (every video and caption is encoded once, here, by ``glscl.engine.evaluate``).
    encode_text(texts) -> (sentence, tokens, token_mask) backbone features for captions that are
    not in the split (None: only the split's captions can be searched). tokenizer: for word labels
    in ``attention_viewer``.

    UI (``widget``): a Combobox to type or pick a caption, a top-k slider, a status line and the
    results table. ``show(caption)`` is what a committed caption runs.
    """

    def __init__(self, head, features: SplitFeatures, *, encode_text: Callable | None = None, tokenizer=None,
                 k: int = 5, thumb_height: int = 40, device: str | torch.device = "cpu", max_options: int = 5000):
        self.head, self.features, self.device = head.to(device).eval(), features, torch.device(device)
        self.encode_text, self.tokenizer, self.thumb_height = encode_text, tokenizer, thumb_height
        self.text = encode_texts(self.head, features.texts(), self.device)
        self.gallery = VideoEmbedding.cat(list(encode_videos(self.head, features.videos(), self.device)))
        self.caption_index: dict[str, int] = {}
        self.caption_videos: dict[str, set[int]] = {}
        for i, (c, v) in enumerate(zip(features.captions, features.caption_video)):
            self.caption_index.setdefault(c, i)
            self.caption_videos.setdefault(c, set()).add(int(v))
        self._frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._strips: dict[int, bytes] = {}
        self.last_rows: list[dict] = []
        self.last_caption: str | None = None

        m = len(features.video_ids)
        self.query = widgets.Combobox(options=sorted(self.caption_index)[:max_options], placeholder="type or pick a caption",
                                      ensure_option=False, continuous_update=False, description="caption",
                                      layout=widgets.Layout(width="70%"))
        self.k_slider = widgets.IntSlider(value=min(k, m), min=1, max=max(1, min(20, m)), description="top k",
                                          continuous_update=False)
        self.status = widgets.HTML()
        self.results = widgets.HTML()
        self.widget = widgets.VBox([widgets.HBox([self.query, self.k_slider]), self.status, self.results])
        self.query.observe(self._on_query, names="value")
        self.k_slider.observe(self._on_k, names="value")

    # -- constructors ------------------------------------------------------------------------------
    @classmethod
    def from_cache(cls, head, cache, video_paths: Sequence[str | Path] | None = None, backbone=None,
                   **kwargs) -> RetrievalExplorer:
        """From a trained head and a ``FeatureCache`` of the gallery split.

        backbone (optional, the frozen backbone that built the cache): lets free text be searched.
        """
        tokenizer = kwargs.pop("tokenizer", None)
        encode_text = None
        if backbone is not None:
            backbone.eval()
            encode_text = _backbone_text_encoder(backbone, kwargs.get("device", "cpu"))
            tokenizer = tokenizer or backbone.tokenizer
        return cls(head, SplitFeatures.from_cache(cache, video_paths), encode_text=encode_text, tokenizer=tokenizer,
                   **kwargs)

    @classmethod
    def from_results(cls, run_dir: str | Path, split: str = "test", device: str | torch.device = "cpu",
                     **kwargs) -> RetrievalExplorer:
        """From a results folder of ``glscl.engine.run.run``: its best checkpoint, config and data (``load_run``).

        Cached runs: the frozen backbone's feature cache of ``split`` is reused (or built if it was
        deleted). End-to-end runs: the split is decoded and encoded with the checkpoint's backbone.
        """
        from glscl.data import load_split
        from glscl.data.cache import build_cache
        from glscl.engine.loading import load_run
        from glscl.engine.run import cache_keys

        loaded = load_run(run_dir, device)
        cfg = loaded.config
        gallery = load_split(cfg.data, split)
        if loaded.cached:
            key = cache_keys(cfg, {split: gallery}, loaded.backbone)[split]
            cache = build_cache(loaded.backbone, gallery, cfg.data.cache_dir, key, num_frames=cfg.model.num_frames,
                                sample_fps=cfg.data.sample_fps, num_workers=0, device=device, progress=False)
            features = SplitFeatures.from_cache(cache, gallery.video_paths)
        else:
            features = SplitFeatures.from_split(loaded.backbone, gallery, cfg.model.num_frames, cfg.data.sample_fps, device)
        return cls(loaded.head, features, encode_text=_backbone_text_encoder(loaded.backbone, device),
                   tokenizer=loaded.backbone.tokenizer, device=device, **kwargs)

    # -- computing ---------------------------------------------------------------------------------
    @torch.no_grad()
    def similarity(self) -> torch.Tensor:
        """S for every caption x video of the split (N x M), from the once-encoded items."""
        return self.head.similarity(self.text, self.gallery).float().cpu()

    @torch.no_grad()
    def _text_for(self, caption: str) -> TextEmbedding:
        i = self.caption_index.get(caption)
        if i is not None:
            return self.text[i:i + 1]
        if self.encode_text is None:
            raise KeyError(f"{caption!r} is not a caption of this split (and no backbone was given to encode new text)")
        sentence, tokens, mask = self.encode_text([caption])
        return self.head.encode_text(sentence.to(self.device), tokens.to(self.device), mask.to(self.device))

    def contributions(self, caption: str) -> dict[str, torch.Tensor]:
        """The additive parts of S for ``caption`` against every video (each M,): weight x part for every
        part of the head's ``similarity_parts`` ('global' = S_g and 'local' = lambda S_l for GLSCL's 'both';
        the one part of a single-part head). They sum to S."""
        with torch.no_grad():
            parts = self.head.similarity_parts(self._text_for(caption), self.gallery)
        weights = self.head.part_weights
        return {k: weights[k] * v[0].float().cpu() for k, v in parts.items()}

    def part_label(self, key: str) -> str:
        """'global S_g', 'local 0.5·S_l', ...: a part's name and symbol, with its weight when it is not 1."""
        name, symbol, _ = PARTS.get(key, (key, "", ""))
        w = self.head.part_weights[key]
        return f"{name} {'' if w == 1 else f'{w:g}·'}{symbol}".strip()

    def search(self, caption: str, k: int | None = None) -> list[dict]:
        """Top-k videos for ``caption``: dicts with rank, index, video_id, score (S), parts (each part's
        contribution, see ``contributions``), match (the caption's own video)."""
        caption = caption.strip()
        k = self.k_slider.value if k is None else k
        parts = self.contributions(caption)
        score = sum(parts.values())
        order = torch.argsort(score, descending=True, stable=True)[:k].tolist()
        own = self.caption_videos.get(caption, set())
        return [{"rank": r + 1, "index": j, "video_id": self.features.video_ids[j], "score": float(score[j]),
                 "parts": {name: float(v[j]) for name, v in parts.items()}, "match": j in own}
                for r, j in enumerate(order)]

    def example_rows(self, caption: str, k: int | None = None, related: Mapping[int, str] | None = None) -> list[dict]:
        """``search(caption, k)`` plus, where they are not in the top k, the caption's own video (role
        'match') and the videos of ``related`` (gallery index -> role, e.g. {twin's index: 'twin'}),
        each with its true rank (ties count against it, as in the metrics). Rows in rank order."""
        caption = caption.strip()
        rows = self.search(caption, k)
        parts = self.contributions(caption)
        score = sum(parts.values())
        own = self.caption_videos.get(caption, set())
        roles = {j: "match" for j in own} | {int(j): r for j, r in (related or {}).items() if int(j) not in own}
        for r in rows:
            r["role"] = roles.get(r["index"])
        shown = {r["index"] for r in rows}
        for j, role in roles.items():
            if j not in shown:
                rows.append({"rank": int((score >= score[j]).sum()), "index": j, "video_id": self.features.video_ids[j],
                             "score": float(score[j]), "parts": {n: float(v[j]) for n, v in parts.items()},
                             "match": j in own, "role": role})
        return sorted(rows, key=lambda r: (r["rank"], r["index"]))

    def rank_of_match(self, caption: str) -> int | None:
        """Rank of the caption's own video (ties count against the model, as in the metrics); None if unknown."""
        own = self.caption_videos.get(caption.strip())
        if not own:
            return None
        score = sum(self.contributions(caption.strip()).values())
        best = max(float(score[j]) for j in own)
        return int((score >= best).sum())

    def frames(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded frames (T, H, W, 3) uint8 and mask of gallery video ``index`` (sampled as in training)."""
        if index not in self._frames:
            from glscl.data.video import load_clip
            if self.features.video_paths is None:
                raise ValueError("no video files known: build the explorer with video_paths to see frames")
            frames, mask = load_clip(self.features.video_paths[index], self.features.num_frames or self.features.frames.shape[1],
                                     self.features.sample_fps)
            self._frames[index] = (frames.numpy(), mask.numpy())
        return self._frames[index]

    def _strip_png(self, index: int) -> bytes | None:
        if self.features.video_paths is None:
            return None
        if index not in self._strips:
            frames, mask = self.frames(index)
            self._strips[index] = viz.png_bytes(viz.strip_image(frames, mask, gap=2), height=self.thumb_height)
        return self._strips[index]

    # -- showing -----------------------------------------------------------------------------------
    def show(self, caption: str, k: int | None = None) -> list[dict]:
        """Search ``caption`` and fill ``status`` and ``results``; returns the rows (also ``last_rows``)."""
        caption = (caption or "").strip()
        self.last_caption = caption
        if not caption:
            self.last_rows, self.status.value, self.results.value = [], "", ""
            return []
        try:
            rows = self.search(caption, k)
        except (KeyError, ValueError) as e:
            self.last_rows = []
            message = e.args[0] if e.args else str(e)
            self.status.value = f'<span style="color:#b00020" class="glscl-error">{html.escape(str(message))}</span>'
            self.results.value = ""
            return []
        self.last_rows = rows
        rank = self.rank_of_match(caption)
        m = len(self.features.video_ids)
        if rank is None:
            status = f"new caption (not in the split): top {len(rows)} of {m} videos"
        else:
            status = f"caption of the split: its video ranks <b>#{rank}</b> of {m}"
        self.status.value = f'<span class="glscl-status">{status}</span>'
        self.results.value = self._table(caption, rows)
        return rows

    def _table(self, caption: str, rows: list[dict]) -> str:
        names = list(rows[0]["parts"])
        span = max([abs(v) for r in rows for v in r["parts"].values()] + [1e-9])

        def bar(v, colour):
            width = int(round(60 * abs(v) / span))
            return (f'<span style="display:inline-block;width:{width}px;height:9px;background:{colour};'
                    f'opacity:{1.0 if v >= 0 else 0.45}"></span> {v:+.3f}')

        own = self.caption_videos.get(caption, set())
        ref = None
        if own:     # the caption's own video: every score is also given as its difference from it
            score = sum(self.contributions(caption).values())
            ref = max(float(score[j]) for j in own)
        head = ["#", "video", "frames", "S"] + ([] if ref is None else ["S − S(own video)"])
        head += [html.escape(self.part_label(n)) for n in names]
        out = [f'<div class="glscl-results" data-caption="{html.escape(caption)}">',
               '<table style="border-collapse:collapse;font-size:12px">',
               "<tr>" + "".join(f'<th style="text-align:left;padding:2px 8px">{h}</th>' for h in head) + "</tr>"]
        for r in rows:
            png = self._strip_png(r["index"])
            style = "background:#e8f5e9" if r["match"] else ""
            cells = [str(r["rank"]), html.escape(r["video_id"]) + (" &#10003;" if r["match"] else ""),
                     _img_tag(png, r["video_id"]) if png else "", f"<b>{r['score']:.3f}</b>"]
            cells += [] if ref is None else [f"{r['score'] - ref:+.4f}"]
            cells += [bar(r["parts"][n], _colour(n)) for n in names]
            out.append(f'<tr data-video-id="{html.escape(r["video_id"])}" data-rank="{r["rank"]}" style="{style}">'
                       + "".join(f'<td style="padding:2px 8px">{c}</td>' for c in cells) + "</tr>")
        out.append("</table></div>")
        return "\n".join(out)

    def figure(self, caption: str, k: int | None = None, related: Mapping[int, str] | None = None):
        """A matplotlib figure of ``example_rows(caption, k, related)``: frame strips, and each score as its
        difference from the caption's own video, part by part (``retrieval_figure.plot_retrieval``)."""
        rows = self.example_rows(caption, k, related)
        names = list(rows[0]["parts"]) if rows else []
        return plot_retrieval(caption, rows, self.frames, labels={n: self.part_label(n) for n in names},
                                  colours={n: _colour(n) for n in names})

    def _on_query(self, change) -> None:
        self.show(change["new"])

    def _on_k(self, change) -> None:
        if self.last_caption:
            self.show(self.last_caption, change["new"])

    def attention_viewer(self, caption_indices: Sequence[int], **kwargs) -> QueryAttentionViewer:
        """A ``QueryAttentionViewer`` over some captions of the split, each paired with its own video
        (GLSCL heads with a local interaction only)."""
        f = self.features
        idx = [int(i) for i in caption_indices]
        vids = [int(f.caption_video[i]) for i in idx]
        words = None
        if self.tokenizer is not None:
            ids = self.tokenizer([f.captions[i] for i in idx])
            words = [viz.token_labels(self.tokenizer, ids[j]) for j in range(len(idx))]
        images = np.stack([self.frames(v)[0] for v in vids]) if f.video_paths is not None else None
        return QueryAttentionViewer(self.head, f.frames[vids], f.frame_mask[vids], f.tokens[idx], f.token_mask[idx],
                                    words=words, images=images, captions=[f.captions[i] for i in idx],
                                    labels=[f.video_ids[v] for v in vids], device=self.device, **kwargs)

    def static_html(self) -> str:
        """The explorer's current view (status and results, frame strips inlined as PNG) as plain HTML:
        what an export without a live kernel shows (``viz.display_widget``)."""
        return (f'<div class="glscl-static"><p><i>retrieval explorer, {html.escape(repr(self.last_caption or ""))}</i>: '
                f'{self.status.value}</p>{self.results.value}</div>')

    def _ipython_display_(self):
        viz.display_widget(self)
