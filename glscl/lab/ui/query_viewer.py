"""What each learnable query of GLSCL's local interaction attends to, over frames and over words.

``QueryAttentionViewer``: sliders over the query, the (video, caption) item, the frame and the
decoder layer (``LocalInteraction.attention_maps``). ``update`` is what moving a slider runs;
``viewer.image.value`` (PNG bytes) and ``viewer.current`` (the numbers drawn) can be read in code.
Displayed, the widget comes with a static copy of its view (``static_html``) for exports.
"""
from __future__ import annotations

import base64
import html
from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np
import torch

from glscl.lab.ui import viz

__all__ = ["QueryAttentionViewer"]


class QueryAttentionViewer:
    """What each learnable query of the local interaction attends to, over frames and over words.

    head: a ``GLSCL`` head with a local interaction (model.interaction 'local' or 'both'). Item b pairs video b (frames: backbone frame
    embeddings B x T x d, before the temporal transformer; frame_mask B x T) with caption b
    (tokens: token states B x L x d; token_mask B x L). images: (B, T, H, W, 3) uint8 frames to
    draw; words: per caption, the word piece at each token position (``viz.token_labels``);
    captions, labels: texts shown for each item.

    Sliders: query k, item b, frame f (outlined, with the queries that attend to it most), and the
    decoder layer. ``update()`` redraws ``image`` (PNG) and ``summary`` (HTML) and returns
    ``current``: the item, query, layer, frame, the attention over frames and over words.
    """

    def __init__(self, head, frames, frame_mask, tokens, token_mask, *, words: Sequence[Sequence[str]] | None = None,
                 images=None, captions: Sequence[str] | None = None, labels: Sequence[str] | None = None,
                 item: int = 0, query: int = 0, device: str | torch.device = "cpu", dpi: int = 80):
        if getattr(head, "local", None) is None:
            raise ValueError(f"the head has no local interaction (model.head = {head.cfg.head!r}, "
                             f"model.interaction = {head.cfg.interaction!r})")
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
        fig = plt.figure(figsize=(11, 5.6))
        grid = fig.add_gridspec(2, 2, width_ratios=[1.6, 1], hspace=0.75, wspace=0.25, left=0.07, right=0.97,
                                top=0.93, bottom=0.17)
        ax = fig.add_subplot(grid[0, 0])
        title = f"{self.labels[b]}: attention of query {k} over frames"
        if self.images is not None:
            viz.show_strip(self.images[b], self.frame_mask[b], ax=ax, weights=c["frame_attention"], highlight=f,
                           weight_label=f"query {k}", title=title)
        else:
            ax.bar(range(t), c["frame_attention"], color="#1f77b4")
            ax.set_xticks(range(t))
            ax.tick_params(labelsize=viz.SMALL)
            ax.set_xlabel("frame", fontsize=viz.SMALL + 1)
            ax.set_ylabel("attention", fontsize=viz.SMALL + 1)
            ax.set_title(title, fontsize=9, loc="left")
        ax = fig.add_subplot(grid[0, 1])
        top = float(max(self.video_maps[layer, b].max(), self.text_maps[layer, b, :, :len(words)].max()))  # one scale
        viz.matrix_image(self.video_maps[layer, b], ax=ax, vmin=0, vmax=top,
                         xlabels=[str(i) if self.frame_mask[b, i] else "pad" for i in range(t)],
                         ylabels=[f"q{i}" for i in range(self.num_queries)], highlight_row=k, highlight_cell=(k, f),
                         title="all queries x frames", xlabel="frame", ylabel="query", cbar_label="attention")
        ax = fig.add_subplot(grid[1, 0])
        ax.bar(range(len(words)), c["word_attention"], color="#ff7f0e")
        ax.set_xticks(range(len(words)))
        ax.set_xticklabels(words, rotation=60, fontsize=viz.SMALL, ha="right")
        ax.tick_params(axis="y", labelsize=viz.SMALL)
        ax.set_ylabel("attention", fontsize=viz.SMALL + 1)
        ax.set_ylim(0, max(0.05, float(c["word_attention"].max()) * 1.15))
        ax.set_title(f"\"{self.captions[b]}\": attention of query {k} over words", fontsize=9, loc="left")
        ax.grid(axis="y", alpha=0.3)
        ax = fig.add_subplot(grid[1, 1])
        viz.matrix_image(self.text_maps[layer, b, :, :len(words)], ax=ax, vmin=0, vmax=top, xlabels=words,
                         ylabels=[f"q{i}" for i in range(self.num_queries)], highlight_row=k, title="all queries x words",
                         ylabel="query", cbar_label="attention")
        return fig

    def static_html(self) -> str:
        """The viewer's current view (summary and figure, inlined as PNG) as plain HTML: what an export
        without a live kernel shows (``viz.display_widget``)."""
        png = base64.b64encode(self.image.value).decode()
        return (f'<div class="glscl-static"><p><i>query-attention viewer</i>: {self.summary.value}</p>'
                f'<img src="data:image/png;base64,{png}" alt="query attention" style="max-width:100%"/></div>')

    def _ipython_display_(self):
        viz.display_widget(self)
