"""Interactive widgets for the tutorials (ipywidgets), usable and testable without a browser.

``RetrievalExplorer``: type or pick a caption and see the top-k videos of a split, each with its
frame strip and its score S split into the global contribution S_g and the local contribution
lambda * S_l. Built from a trained head and a feature cache (``from_cache``) or from a results
folder written by ``glscl.engine.run.run`` (``from_results``).

``QueryAttentionViewer``: sliders over the learnable query, the (video, caption) item, the frame
and the decoder layer; shows what the selected query attends to over the frames of the video and
over the words of the caption (``LocalInteraction.attention_maps``).

Every callback is a plain method (``RetrievalExplorer.show``, ``QueryAttentionViewer.update``) and
every result lands in a widget whose content can be read in code: ``explorer.results.value``
(HTML, one ``data-video-id`` per row), ``explorer.last_rows``, ``viewer.image.value`` (PNG bytes)
and ``viewer.current`` (the numbers drawn). Setting a widget's value in code (``explorer.query.value
= caption``, ``viewer.query_slider.value = 3``) runs the same callback a user's click runs.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import ipywidgets as widgets
import numpy as np
import torch

from glscl.lab.ui import viz
from glscl.model.factory import create_head
from glscl.model.glscl import GLSCL
from glscl.model.interaction import TextEmbedding, VideoEmbedding

__all__ = ["SplitFeatures", "RetrievalExplorer", "QueryAttentionViewer", "encode_features"]


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
    def from_cache(cls, cache, video_paths: Sequence[str | Path] | None = None) -> "SplitFeatures":
        """From a ``glscl.data.cache.FeatureCache`` (arrays copied to float32 tensors)."""
        f32 = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))  # noqa: E731
        return cls(f32(cache.frames), torch.from_numpy(np.array(cache.frame_mask, bool)), f32(cache.sentence),
                   f32(cache.tokens), torch.from_numpy(np.array(cache.token_mask, bool)), list(cache.captions),
                   np.asarray(cache.caption_video, np.int64), list(cache.video_ids),
                   [Path(p) for p in video_paths] if video_paths is not None else None,
                   int(cache.meta.get("num_frames", cache.frames.shape[1])), float(cache.meta.get("sample_fps", 1.0)))


@torch.no_grad()
def encode_features(backbone, split, num_frames: int, sample_fps: float = 1.0, batch_size: int = 32,
                    device: str | torch.device = "cpu") -> SplitFeatures:
    """Decode and encode a ``RetrievalSplit`` with ``backbone`` (for runs trained without a cache)."""
    from torch.utils.data import DataLoader

    from glscl.data.dataset import ClipDataset
    from glscl.data.video import ClipTransform

    backbone.eval()
    transform = ClipTransform(backbone.image_size, tuple(backbone.preprocess_cfg["mean"]), tuple(backbone.preprocess_cfg["std"]))
    frames, masks = [], []
    for batch in DataLoader(ClipDataset(split, num_frames, transform, sample_fps), batch_size=batch_size):
        emb = backbone.encode_frames(batch["pixels"].to(device)) * batch["frame_mask"].to(device)[..., None]
        frames.append(emb.float().cpu())
        masks.append(batch["frame_mask"])
    sent, toks, tmask = [], [], []
    for i in range(0, split.num_captions, 256):
        f = backbone.encode_text(backbone.tokenizer(list(split.captions[i:i + 256])).to(device))
        sent.append(f.sentence.float().cpu()); toks.append(f.tokens.float().cpu()); tmask.append(f.mask.cpu())
    return SplitFeatures(torch.cat(frames), torch.cat(masks).bool(), torch.cat(sent), torch.cat(toks), torch.cat(tmask),
                         list(split.captions), np.asarray(split.caption_video, np.int64), list(split.video_ids),
                         list(split.video_paths), num_frames, sample_fps)


@torch.no_grad()
def _encode(head: GLSCL, f: SplitFeatures, device, batch_size: int = 256) -> tuple[TextEmbedding, VideoEmbedding]:
    """Every caption and every video of the split encoded once by the head."""
    head.eval()
    texts, videos = [], []
    for i in range(0, len(f.captions), batch_size):
        sl = slice(i, i + batch_size)
        texts.append(head.encode_text(f.sentence[sl].to(device), f.tokens[sl].to(device), f.token_mask[sl].to(device)))
    for i in range(0, len(f.video_ids), batch_size):
        sl = slice(i, i + batch_size)
        videos.append(head.encode_video(f.frames[sl].to(device), f.frame_mask[sl].to(device)))
    cat = lambda xs: None if xs[0] is None else torch.cat(xs)  # noqa: E731
    text = TextEmbedding(torch.cat([t.sentence for t in texts]), cat([t.queries for t in texts]))
    video = VideoEmbedding(torch.cat([v.frames for v in videos]), torch.cat([v.mask for v in videos]),
                           cat([v.queries for v in videos]))
    return text, video


def _img_tag(png: bytes, title: str = "") -> str:
    return (f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" title="{html.escape(title)}" '
            f'style="image-rendering: pixelated; vertical-align: middle"/>')


# ----------------------------------------------------------------------------------------------
# the retrieval explorer
# ----------------------------------------------------------------------------------------------

class RetrievalExplorer:
    """Caption -> top-k videos, with frame strips and S split into global and local contributions.

    head: a trained ``GLSCL`` head; features: ``SplitFeatures`` of the gallery split (every video
    and caption is encoded once, here). encode_text(texts) -> (sentence, tokens, token_mask)
    backbone features for captions that are not in the split (None: only the split's captions can
    be searched). tokenizer: for word labels in ``attention_viewer``.

    UI (``widget``): a Combobox to type or pick a caption, a top-k slider, a status line and the
    results table. ``show(caption)`` is what a committed caption runs.
    """

    def __init__(self, head: GLSCL, features: SplitFeatures, *, encode_text: Callable | None = None, tokenizer=None,
                 k: int = 5, thumb_height: int = 40, device: str | torch.device = "cpu", max_options: int = 5000):
        self.head, self.features, self.device = head.to(device).eval(), features, torch.device(device)
        self.encode_text, self.tokenizer, self.thumb_height = encode_text, tokenizer, thumb_height
        self.text, self.gallery = _encode(self.head, features, self.device)
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
    def from_cache(cls, head: GLSCL, cache, video_paths: Sequence[str | Path] | None = None, backbone=None,
                   **kwargs) -> "RetrievalExplorer":
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
                     **kwargs) -> "RetrievalExplorer":
        """From a results folder of ``glscl.engine.run.run``: its best checkpoint, config and data.

        Cached runs: the frozen backbone's feature cache of ``split`` is reused (or built if it was
        deleted). End-to-end runs: the split is decoded and encoded with the checkpoint's backbone.
        """
        from glscl.model.backbone import create_backbone
        from glscl.engine.checkpoint import load_config_and_vocab, load_weights
        from glscl.data import load_split
        from glscl.data.cache import build_cache
        from glscl.model.factory import Retriever

        best = Path(run_dir) / "checkpoints" / "best"
        cfg, vocab = load_config_and_vocab(best)
        data = cfg.data.replace(root=viz.saved_path(cfg.data.root), video_dir=viz.saved_path(cfg.data.video_dir),
                                cache_dir=viz.saved_path(cfg.data.cache_dir))
        gallery = load_split(data, split)
        cached = data.cache_dir is not None
        backbone = create_backbone(cfg.model.backbone, viz.saved_path(cfg.model.pretrained) if cached else None,
                                   context_length=cfg.model.max_words, device=device)
        if vocab is not None:
            backbone.use_compact_vocab(vocab)
        head = create_head(cfg.model, backbone.width)
        if cached:
            load_weights(best, head)
            cache = build_cache(backbone, gallery, data.cache_dir, num_frames=cfg.model.num_frames,
                                sample_fps=data.sample_fps, num_workers=0, device=device, progress=False)
            features = SplitFeatures.from_cache(cache, gallery.video_paths)
        else:
            load_weights(best, Retriever(backbone, head))
            features = encode_features(backbone, gallery, cfg.model.num_frames, data.sample_fps, device=device)
        backbone.eval()
        explorer = cls(head, features, encode_text=_backbone_text_encoder(backbone, device), tokenizer=backbone.tokenizer,
                       device=device, **kwargs)
        explorer.run_dir, explorer.config = Path(run_dir), cfg
        return explorer

    # -- computing ---------------------------------------------------------------------------------
    @torch.no_grad()
    def similarity(self) -> torch.Tensor:
        """S for every caption x video of the split (N x M), from the once-encoded items."""
        return self.head.similarity(self.text, self.gallery).float().cpu()

    @torch.no_grad()
    def _text_for(self, caption: str) -> TextEmbedding:
        i = self.caption_index.get(caption)
        if i is not None:
            q = None if self.text.queries is None else self.text.queries[i:i + 1]
            return TextEmbedding(self.text.sentence[i:i + 1], q)
        if self.encode_text is None:
            raise KeyError(f"{caption!r} is not a caption of this split (and no backbone was given to encode new text)")
        sentence, tokens, mask = self.encode_text([caption])
        return self.head.encode_text(sentence.to(self.device), tokens.to(self.device), mask.to(self.device))

    def contributions(self, caption: str) -> dict[str, torch.Tensor]:
        """The additive parts of S for ``caption`` against every video (each M,): 'global' = S_g and
        'local' = lambda S_l for 'both'; the one part of a single-branch head. They sum to S."""
        with torch.no_grad():
            parts = {k: v[0].float().cpu() for k, v in self.head.similarity_parts(self._text_for(caption), self.gallery).items()}
        if self.head.cfg.interaction == "both":
            parts["local"] = self.head.cfg.local_weight * parts["local"]
        return parts

    def search(self, caption: str, k: int | None = None) -> list[dict]:
        """Top-k videos for ``caption``: dicts with rank, index, video_id, score (S), global, local
        (contributions, None where the head has no such branch), match (the caption's own video)."""
        caption = caption.strip()
        k = self.k_slider.value if k is None else k
        parts = self.contributions(caption)
        score = sum(parts.values())
        order = torch.argsort(score, descending=True, stable=True)[:k].tolist()
        own = self.caption_videos.get(caption, set())
        return [{"rank": r + 1, "index": j, "video_id": self.features.video_ids[j], "score": float(score[j]),
                 "global": float(parts["global"][j]) if "global" in parts else None,
                 "local": float(parts["local"][j]) if "local" in parts else None,
                 "mean": float(parts["mean"][j]) if "mean" in parts else None,
                 "match": j in own} for r, j in enumerate(order)]

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
        has_g, has_l = rows[0]["global"] is not None, rows[0]["local"] is not None
        span = max([abs(r[p]) for r in rows for p in ("global", "local") if r[p] is not None] + [1e-9])
        lam = self.head.cfg.local_weight

        def bar(v, colour):
            width = int(round(60 * abs(v) / span))
            return (f'<span style="display:inline-block;width:{width}px;height:9px;background:{colour};'
                    f'opacity:{1.0 if v >= 0 else 0.45}"></span> {v:+.3f}')

        head = ["#", "video", "frames", "S"] + (["global S_g"] if has_g else []) + ([f"local {lam:g}&middot;S_l"] if has_l else [])
        if rows[0]["mean"] is not None:
            head.append("mean pooling")
        out = [f'<div class="glscl-results" data-caption="{html.escape(caption)}">',
               '<table style="border-collapse:collapse;font-size:12px">',
               "<tr>" + "".join(f'<th style="text-align:left;padding:2px 8px">{h}</th>' for h in head) + "</tr>"]
        for r in rows:
            png = self._strip_png(r["index"])
            style = "background:#e8f5e9" if r["match"] else ""
            cells = [str(r["rank"]), html.escape(r["video_id"]) + (" &#10003;" if r["match"] else ""),
                     _img_tag(png, r["video_id"]) if png else "", f"<b>{r['score']:.3f}</b>"]
            if has_g:
                cells.append(bar(r["global"], "#1f77b4"))
            if has_l:
                cells.append(bar(r["local"], "#ff7f0e"))
            if r["mean"] is not None:
                cells.append(f"{r['mean']:.3f}")
            out.append(f'<tr data-video-id="{html.escape(r["video_id"])}" data-rank="{r["rank"]}" style="{style}">'
                       + "".join(f'<td style="padding:2px 8px">{c}</td>' for c in cells) + "</tr>")
        out.append("</table></div>")
        return "\n".join(out)

    def figure(self, caption: str, k: int | None = None):
        """A matplotlib figure of ``search(caption, k)``: frame strips and score parts."""
        rows = self.search(caption, k)
        return viz.plot_retrieval(caption, rows, self.frames)

    def _on_query(self, change) -> None:
        self.show(change["new"])

    def _on_k(self, change) -> None:
        if self.last_caption:
            self.show(self.last_caption, change["new"])

    def attention_viewer(self, caption_indices: Sequence[int], **kwargs) -> "QueryAttentionViewer":
        """A ``QueryAttentionViewer`` over some captions of the split, each paired with its own video."""
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

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


def _backbone_text_encoder(backbone, device) -> Callable:
    @torch.no_grad()
    def encode(texts: list[str]):
        f = backbone.encode_text(backbone.tokenizer(list(texts)).to(device))
        return f.sentence.float(), f.tokens.float(), f.mask
    return encode


# ----------------------------------------------------------------------------------------------
# the query-attention viewer
# ----------------------------------------------------------------------------------------------

class QueryAttentionViewer:
    """What each learnable query of the local interaction attends to, over frames and over words.

    head: a ``GLSCL`` head with a local branch. Item b pairs video b (frames: backbone frame
    embeddings B x T x d, before the temporal transformer; frame_mask B x T) with caption b
    (tokens: token states B x L x d; token_mask B x L). images: (B, T, H, W, 3) uint8 frames to
    draw; words: per caption, the word piece at each token position (``viz.token_labels``);
    captions, labels: texts shown for each item.

    Sliders: query k, item b, frame f (outlined, with the queries that attend to it most), and the
    decoder layer. ``update()`` redraws ``image`` (PNG) and ``summary`` (HTML) and returns
    ``current``: the item, query, layer, frame, the attention over frames and over words.
    """

    def __init__(self, head: GLSCL, frames, frame_mask, tokens, token_mask, *, words: Sequence[Sequence[str]] | None = None,
                 images=None, captions: Sequence[str] | None = None, labels: Sequence[str] | None = None,
                 item: int = 0, query: int = 0, device: str | torch.device = "cpu", dpi: int = 80):
        if head.local is None:
            raise ValueError(f"the head has no local interaction (model.interaction = {head.cfg.interaction!r})")
        head = head.to(device).eval()
        frame_mask, token_mask = torch.as_tensor(frame_mask).bool(), torch.as_tensor(token_mask).bool()
        with torch.no_grad():
            video = head.encode_video(torch.as_tensor(frames).float().to(device), frame_mask.to(device))
            self.video_maps = head.local.attention_maps(video.frames, video.mask, "video").cpu().numpy()
            self.text_maps = head.local.attention_maps(torch.as_tensor(tokens).float().to(device),
                                                       token_mask.to(device), "text").cpu().numpy()
        self.frame_mask, self.token_mask = frame_mask.numpy(), token_mask.numpy()
        layers, b, k, t = self.video_maps.shape
        self.num_layers, self.num_items, self.num_queries, self.num_frames = layers, b, k, t
        self.images = None if images is None else viz.as_frames(images.reshape(-1, *images.shape[2:])).reshape(images.shape)
        self.captions = list(captions) if captions is not None else [f"caption {i}" for i in range(b)]
        self.labels = list(labels) if labels is not None else [f"video {i}" for i in range(b)]
        n_tokens = self.token_mask.sum(1)
        self.words = ([list(w)[: int(n)] for w, n in zip(words, n_tokens)] if words is not None
                      else [[f"tok{j}" for j in range(int(n))] for n in n_tokens])
        self.dpi = dpi
        self.current: dict = {}

        self.query_slider = widgets.IntSlider(value=query, min=0, max=k - 1, description="query k", continuous_update=False)
        self.item_slider = widgets.IntSlider(value=item, min=0, max=b - 1, description="video", continuous_update=False)
        self.frame_slider = widgets.IntSlider(value=0, min=0, max=t - 1, description="frame", continuous_update=False)
        self.layer_dropdown = widgets.Dropdown(options=[(f"layer {i + 1}" + (" (last)" if i == layers - 1 else ""), i)
                                                        for i in range(layers)], value=layers - 1, description="decoder")
        self.image = widgets.Image(format="png")
        self.summary = widgets.HTML()
        self.widget = widgets.VBox([widgets.HBox([self.query_slider, self.item_slider]),
                                    widgets.HBox([self.frame_slider, self.layer_dropdown]), self.summary, self.image])
        for w in (self.query_slider, self.item_slider, self.frame_slider, self.layer_dropdown):
            w.observe(self.update, names="value")
        self.update()

    def attention(self, item: int, query: int, layer: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """(attention over the T frames, attention over the item's real tokens) of one query."""
        n = len(self.words[item])
        return self.video_maps[layer, item, query].copy(), self.text_maps[layer, item, query, :n].copy()

    def update(self, change=None) -> dict:
        """Redraw for the sliders' current values; returns ``current``."""
        b, k = self.item_slider.value, self.query_slider.value
        f, layer = self.frame_slider.value, self.layer_dropdown.value
        over_frames, over_words = self.attention(b, k, layer)
        words = self.words[b]
        frame_col = self.video_maps[layer, b, :, f]
        self.current = {"item": b, "query": k, "frame": f, "layer": layer, "caption": self.captions[b],
                        "video": self.labels[b], "frame_attention": over_frames, "word_attention": over_words,
                        "words": words, "queries_on_frame": frame_col.copy(),
                        "top_frame": int(np.argmax(over_frames)), "top_word": words[int(np.argmax(over_words))]}
        self.image.value = viz.figure_png(self._figure(), dpi=self.dpi, tight=False)
        real = bool(self.frame_mask[b, f])
        self.summary.value = (
            f'<div class="glscl-attention"><b>{html.escape(self.labels[b])}</b> &mdash; "{html.escape(self.captions[b])}"<br>'
            f"query {k}, {'last layer' if layer == self.num_layers - 1 else f'layer {layer + 1}'}: "
            f"most attention on frame {self.current['top_frame']} ({over_frames.max():.2f}) and on the word "
            f"'{html.escape(self.current['top_word'])}' ({over_words.max():.2f}); "
            + (f"frame {f} is attended most by query {int(np.argmax(frame_col))} ({frame_col.max():.2f})"
               if real else f"frame {f} is padding (every query gives it 0)") + "</div>")
        return self.current

    def _figure(self):
        import matplotlib.pyplot as plt

        c = self.current
        b, k, f, layer = c["item"], c["query"], c["frame"], c["layer"]
        t, words = self.num_frames, c["words"]
        fig = plt.figure(figsize=(12, 5.4))
        grid = fig.add_gridspec(2, 2, width_ratios=[1.6, 1], hspace=0.7, wspace=0.2, left=0.06, right=0.97,
                                top=0.93, bottom=0.16)
        ax = fig.add_subplot(grid[0, 0])
        if self.images is not None:
            viz.show_strip(self.images[b], self.frame_mask[b], ax=ax, weights=c["frame_attention"], highlight=f,
                           weight_label=f"query {k}", title=f"{self.labels[b]}: attention of query {k} over frames")
        else:
            ax.bar(range(t), c["frame_attention"], color="#1f77b4")
            ax.set_xticks(range(t))
            ax.set_title(f"{self.labels[b]}: attention of query {k} over frames", fontsize=9, loc="left")
        ax = fig.add_subplot(grid[0, 1])
        viz.matrix_image(self.video_maps[layer, b], ax=ax, vmin=0,
                         xlabels=[str(i) if self.frame_mask[b, i] else "pad" for i in range(t)],
                         ylabels=[f"q{i}" for i in range(self.num_queries)], highlight_row=k, highlight_cell=(k, f),
                         title="all queries x frames", xlabel="frame")
        ax = fig.add_subplot(grid[1, 0])
        ax.bar(range(len(words)), c["word_attention"], color="#ff7f0e")
        ax.set_xticks(range(len(words)))
        ax.set_xticklabels(words, rotation=60, fontsize=7, ha="right")
        ax.set_ylim(0, max(0.05, float(c["word_attention"].max()) * 1.15))
        ax.set_title(f"\"{self.captions[b]}\": attention of query {k} over words", fontsize=9, loc="left")
        ax.grid(axis="y", alpha=0.3)
        ax = fig.add_subplot(grid[1, 1])
        viz.matrix_image(self.text_maps[layer, b, :, :len(words)], ax=ax, vmin=0, xlabels=words,
                         ylabels=[f"q{i}" for i in range(self.num_queries)], highlight_row=k, title="all queries x words")
        return fig

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)
