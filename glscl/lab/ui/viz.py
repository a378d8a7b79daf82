"""Plotting helpers shared by the tutorials and the widgets: frame strips, heat maps, score bars.

Nothing here computes the method; these functions only draw what ``glscl`` computes. (The bench's
growth figure is ``glscl.lab.bench.report.plot_growth``; a grid's figures are ``glscl.lab.grids.figures``.)

* frames: ``strip_image`` (frames side by side, padded frames grey), ``show_strip`` (on an axes,
  optionally with a per-frame weight bar underneath), ``png_bytes`` / ``figure_png`` (for widgets);
* widgets: ``display_widget`` (a widget and a static HTML copy of its view, for exports);
* matrices: ``heatmap`` (seaborn, optional annotation and highlighted cells), ``matrix_image`` (imshow,
  fast enough for widgets), ``cosine_matrix``;
* sampling: ``plot_sampling`` (which native frames ``sample_frame_indices`` keeps);
* training: ``plot_curve`` (retrieval figures: ``glscl.lab.ui.retrieval_figure``);
* text: ``token_labels`` (the word piece at every token position, for attention plots);
* paths: ``repo_path`` (notebooks run from ``notebooks/``; their relative paths mean the repository root),
  ``saved_path`` (a path from a saved config).
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PAD_GREY = 90  # colour of a padded (masked) frame in a strip
SMALL = 8      # the smallest font size (points) any helper here draws, at the figure's saved size


# ----------------------------------------------------------------------------------------------
# paths
# ----------------------------------------------------------------------------------------------

def repo_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the working directory) holding pyproject.toml."""
    here = Path(start or Path.cwd()).resolve()
    return next((p for p in (here, *here.parents) if (p / "pyproject.toml").is_file()), here)


def repo_path(path: str | Path | None) -> Path | None:
    """``path`` as given if absolute; otherwise relative to the repository root (None stays None)."""
    if path is None:
        return None
    path = Path(path)
    return path if path.is_absolute() else repo_root() / path


def saved_path(path: str | None) -> str | None:
    """A path read from a saved config: as is if absolute or existing from here, else from the repository
    root if it exists there (runs are usually started from the root, notebooks from notebooks/)."""
    if path is None or Path(path).is_absolute() or Path(path).exists():
        return path
    alt = repo_root() / path
    return str(alt) if alt.exists() else path


# ----------------------------------------------------------------------------------------------
# frames
# ----------------------------------------------------------------------------------------------

def as_frames(frames) -> np.ndarray:
    """(T, H, W, 3) uint8 numpy array from a torch tensor or array (uint8 or float in [0, 1])."""
    x = frames.detach().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got shape {x.shape}")
    if x.dtype != np.uint8:
        x = (np.clip(x, 0.0, 1.0) * 255).round().astype(np.uint8)
    return x


def strip_image(frames, mask=None, gap: int = 2, gap_value: int = 255) -> np.ndarray:
    """Frames side by side as one (H, T W + (T - 1) gap, 3) uint8 image; padded frames (mask False) grey."""
    x = as_frames(frames).copy()
    t, h, w, _ = x.shape
    if mask is not None:
        m = np.asarray(mask.cpu() if hasattr(mask, "cpu") else mask, dtype=bool)
        x[~m] = PAD_GREY
    out = np.full((h, t * w + (t - 1) * gap, 3), gap_value, np.uint8)
    for i in range(t):
        out[:, i * (w + gap): i * (w + gap) + w] = x[i]
    return out


def show_strip(frames, mask=None, ax=None, title: str | None = None, weights=None, labels: Sequence[str] | None = None,
               highlight: int | None = None, weight_label: str = "weight", title_size: float = 9,
               weight_max: float | None = None):
    """Draw a frame strip on ``ax`` (a new figure if None); returns the axes.

    weights: one value per frame, drawn as bars under the strip (e.g. global interaction weights or
    a query's attention), scaled to ``weight_max`` (default: their largest value); labels: text under
    each frame (default "t=0", "t=1", ... and "pad"); highlight: index of a frame to outline.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    x = as_frames(frames)
    t, h, w, _ = x.shape
    gap = max(1, w // 32)
    if ax is None:
        _, ax = plt.subplots(figsize=(min(1.1 * t, 16), 1.6 if weights is None else 2.4))
    ax.imshow(strip_image(x, mask, gap))
    centres = [i * (w + gap) + w / 2 - 0.5 for i in range(t)]
    m = np.ones(t, bool) if mask is None else np.asarray(mask.cpu() if hasattr(mask, "cpu") else mask, bool)
    if labels is None:
        labels = [f"t={i}" if m[i] else "pad" for i in range(t)]
    ax.set_xticks(centres)
    ax.set_xticklabels(labels, fontsize=SMALL)
    ax.tick_params(axis="x", length=0)
    ax.set_yticks([])
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    if highlight is not None:
        ax.add_patch(Rectangle((highlight * (w + gap) - 1, -1), w + 1, h + 1, fill=False, lw=2.5, ec="#ff00ff"))
    if title:
        ax.set_title(title, fontsize=title_size, loc="left")
    if weights is not None:
        wts = np.asarray(weights.detach().cpu() if hasattr(weights, "detach") else weights, dtype=float)
        bar_h = 0.75 * h
        top = h + 2
        ax.set_ylim(top + bar_h + 1, -1)
        peak = max(float(np.nanmax(wts)) if weight_max is None else float(weight_max), 1e-12)
        for i, v in enumerate(wts):
            height = 0.7 * bar_h * v / peak
            ax.add_patch(Rectangle((i * (w + gap), top + bar_h - height), w, height, color="#1f77b4", alpha=0.85))
            ax.text(centres[i], top + bar_h - height - 1, f"{v:.2f}", ha="center", va="bottom", fontsize=SMALL)
        ax.text(-2, top + bar_h, weight_label, ha="right", va="bottom", fontsize=SMALL)
    return ax


def png_bytes(image: np.ndarray, height: int | None = None) -> bytes:
    """PNG bytes of a uint8 (H, W, 3) image, optionally resized (nearest) to ``height`` pixels."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(image))
    if height and img.height != height:
        img = img.resize((max(1, round(img.width * height / img.height)), height), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def display_widget(view, static: bool = True) -> None:
    """Display ``view.widget`` and, below it, ``view.static_html()``: a copy of the widget's view as it is
    now, in plain HTML (images inlined). A notebook exported to HTML, or opened without a live kernel,
    shows the static copy where the widget itself cannot render."""
    from IPython.display import HTML, display

    display(view.widget)
    if static:
        display(HTML('<details open class="glscl-static-fallback"><summary style="font-size:12px;color:#555">'
                     "static copy of the widget's first view (for exports; the widget above is live)</summary>"
                     + view.static_html() + "</details>"))


def figure_png(fig, dpi: int = 90, close: bool = True, tight: bool = True) -> bytes:
    """PNG bytes of a matplotlib figure (closed afterwards unless ``close`` is False)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    if close:
        plt.close(fig)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# matrices
# ----------------------------------------------------------------------------------------------

def cosine_matrix(a, b=None) -> np.ndarray:
    """Cosine similarities between the rows of ``a`` (R x d) and of ``b`` (default ``a``): R x R'."""
    a = np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=np.float64)
    b = a if b is None else np.asarray(b.detach().cpu() if hasattr(b, "detach") else b, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return a @ b.T


def heatmap(matrix, ax=None, xlabels=None, ylabels=None, title: str | None = None, vmin=None, vmax=None,
            cmap: str = "viridis", annotate: bool | None = None, fmt: str = ".2f", cbar: bool = True,
            highlight: Sequence[tuple[int, int]] = (), xlabel: str | None = None, ylabel: str | None = None,
            label_size: float = SMALL, xrotation: float = 90, cbar_label: str | None = None):
    """A seaborn heat map of a 2-D matrix; ``highlight`` outlines cells (row, column). Returns the axes.

    annotate: write the values in the cells (default: when the matrix has at most 12 x 16 cells).
    Panels that are compared should share ``vmin`` and ``vmax`` (one colour scale); ``cbar_label``
    names the colour bar's quantity.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.patches import Rectangle

    m = np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"heatmap needs a 2-D matrix, got shape {m.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(3.0, 0.45 * m.shape[1] + 1.5), max(2.5, 0.35 * m.shape[0] + 1)))
    if annotate is None:
        annotate = m.shape[0] <= 12 and m.shape[1] <= 16
    sns.heatmap(m, ax=ax, vmin=vmin, vmax=vmax, cmap=cmap, annot=annotate, fmt=fmt, cbar=cbar,
                annot_kws={"fontsize": SMALL}, xticklabels=list(xlabels) if xlabels is not None else "auto",
                yticklabels=list(ylabels) if ylabels is not None else "auto", square=False,
                cbar_kws={"label": cbar_label} if cbar and cbar_label else None)
    if cbar and ax.collections and ax.collections[0].colorbar is not None:
        cb = ax.collections[0].colorbar
        cb.ax.tick_params(labelsize=SMALL)
        cb.ax.yaxis.label.set_size(SMALL)
    ax.tick_params(axis="x", labelsize=label_size, rotation=xrotation)
    ax.tick_params(axis="y", labelsize=label_size, rotation=0)
    for r, c in highlight:
        ax.add_patch(Rectangle((c, r), 1, 1, fill=False, ec="#ff00ff", lw=2))
    label_axes(ax, title, xlabel, ylabel)
    return ax


def label_axes(ax, title: str | None = None, xlabel: str | None = None, ylabel: str | None = None) -> None:
    """Title and axis labels at the tutorials' legible sizes (each only when given)."""
    if title:
        ax.set_title(title, fontsize=9)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=SMALL + 1)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=SMALL + 1)


def matrix_image(matrix, ax, xlabels=None, ylabels=None, title: str | None = None, vmin=None, vmax=None,
                 cmap: str = "magma", highlight_row: int | None = None, highlight_cell: tuple[int, int] | None = None,
                 xlabel: str | None = None, ylabel: str | None = None, label_size: float = SMALL,
                 colorbar: bool = True, cbar_label: str | None = None):
    """A light heat map (``imshow``, no annotations): fast enough to redraw on every widget event. Returns the image."""
    from matplotlib.patches import Rectangle

    m = np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix, dtype=float)
    im = ax.imshow(m, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    if xlabels is not None:
        ax.set_xticks(range(m.shape[1]))
        ax.set_xticklabels(list(xlabels), fontsize=label_size, rotation=90 if max(map(len, map(str, xlabels)), default=0) > 3 else 0)
    if ylabels is not None:
        ax.set_yticks(range(m.shape[0]))
        ax.set_yticklabels(list(ylabels), fontsize=label_size)
    if highlight_row is not None:
        ax.add_patch(Rectangle((-0.5, highlight_row - 0.5), m.shape[1], 1, fill=False, ec="#00e5ff", lw=1.5))
    if highlight_cell is not None:
        r, c = highlight_cell
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="#ff00ff", lw=2))
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
        cb.ax.tick_params(labelsize=SMALL)
        if cbar_label:
            cb.set_label(cbar_label, fontsize=SMALL)
    label_axes(ax, title, xlabel, ylabel)
    return im


# ----------------------------------------------------------------------------------------------
# sampling
# ----------------------------------------------------------------------------------------------

def plot_sampling(num_native_frames: int, native_fps: float, num_frames: int, sample_fps: float = 1.0, ax=None,
                  title: str | None = None):
    """Timeline of ``sample_frame_indices``: native frames, the 1-per-second candidates, the T kept, the mask.

    Returns (axes, indices, number of real frames).
    """
    import matplotlib.pyplot as plt

    from glscl.data.video import sample_frame_indices

    indices, valid = sample_frame_indices(num_native_frames, native_fps, num_frames, sample_fps)
    step = max(native_fps / sample_fps, 1.0)
    candidates = np.minimum(np.round(np.arange(0, num_native_frames, step)), num_native_frames - 1)
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 2.3))
    seconds = num_native_frames / native_fps
    ax.plot([0, num_native_frames - 1], [2, 2], color="0.7", lw=6, solid_capstyle="butt")
    ax.scatter(candidates, np.full(len(candidates), 1), marker="|", s=120, color="#1f77b4",
               label=f"{len(candidates)} candidates ({sample_fps:g} per second)")
    ax.scatter(indices, np.zeros(len(indices)), marker="v", s=60, color="#d62728", label=f"{valid} kept (T = {num_frames})")
    for idx in indices:
        ax.annotate("", xy=(idx, 0.15), xytext=(idx, 0.85), arrowprops=dict(arrowstyle="->", color="#d62728", lw=0.8))
    # the mask: T boxes, real ones filled
    box_w = (num_native_frames - 1) / max(num_frames, 1)
    for j in range(num_frames):
        real = j < valid
        ax.add_patch(plt.Rectangle((j * box_w, -1.4), box_w * 0.9, 0.6, color="#2ca02c" if real else "0.85", ec="0.3"))
        ax.text(j * box_w + box_w * 0.45, -1.1, "1" if real else "0", ha="center", va="center", fontsize=SMALL)
    ax.set_yticks([2, 1, 0, -1.1])
    ax.set_yticklabels([f"{num_native_frames} native frames\n({seconds:.1f} s at {native_fps:g} fps)", "1 fps candidates",
                        "kept", "mask (T slots)"], fontsize=SMALL)
    ax.set_ylim(-1.7, 2.6)
    ax.set_xlim(-0.02 * num_native_frames, 1.02 * num_native_frames)
    ax.set_xlabel("native frame index", fontsize=SMALL + 1)
    ax.tick_params(axis="x", labelsize=SMALL)
    ax.legend(fontsize=SMALL, loc="upper right", ncol=2, bbox_to_anchor=(1, 1.3))
    if title:
        ax.set_title(title, fontsize=9, loc="left")
    return ax, indices, valid


# ----------------------------------------------------------------------------------------------
# training and retrieval
# ----------------------------------------------------------------------------------------------

def plot_curve(curve, axes=None):
    """Training curve of a run (its curve.csv as a DataFrame): losses per epoch and validation R@K."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.3))
    ax = axes[0]
    for col, label in (("train_loss", "total"), ("train_contrastive", "contrastive"), ("train_icl", "ICL"),
                       ("train_idl", "IDL")):
        if col in curve and curve[col].notna().any():
            ax.plot(curve["epoch"], curve[col], marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (epoch mean)")
    for a in axes:
        a.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=SMALL)
    ax.grid(alpha=0.3)
    ax = axes[1]
    for k in ("R@1", "R@5", "R@10"):
        col = f"val_t2v_{k}"
        if col in curve:
            rows = curve[curve[col].notna()]
            ax.plot(rows["epoch"], rows[col], marker="o", ms=3, label=f"t2v {k}")
    score_cols = [f"val_t2v_R@{k}" for k in (1, 5, 10)]
    if all(c in curve for c in score_cols) and curve[score_cols].notna().all(axis=1).any():
        scored = curve[curve[score_cols].notna().all(axis=1)]
        best = scored.loc[scored[score_cols].sum(axis=1).idxmax(), "epoch"]   # the trainer's selection rule
        ax.axvline(best, color="0.3", ls="--", lw=1, label="selected checkpoint")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation (%)")
    ax.set_ylim(0, 101)
    ax.legend(fontsize=SMALL)
    ax.grid(alpha=0.3)
    return axes


# ----------------------------------------------------------------------------------------------
# text
# ----------------------------------------------------------------------------------------------

def token_labels(tokenizer, ids, mask=None) -> list[str]:
    """The word piece at every token position of one caption (``<start>``, words, ``<end>``).

    ``tokenizer``: a ``glscl.model.backbone.Tokenizer`` (compact vocabulary or not); ``ids``: its output
    for one caption (L,); ``mask``: real tokens (default: up to end-of-text). Padding is dropped.
    """
    ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    if tokenizer.vocab is not None:
        ids = [tokenizer.vocab[i] for i in ids]
    eot = tokenizer.eot_id
    n = (ids.index(eot) + 1 if eot in ids else len(ids)) if mask is None else int(np.asarray(mask).sum())
    decoder = tokenizer.bpe.decoder
    out = []
    for i in ids[:n]:
        word = decoder.get(i, f"<{i}>")
        word = {"<start_of_text>": "<start>", "<end_of_text>": "<end>"}.get(word, word.replace("</w>", ""))
        out.append(word)
    return out
