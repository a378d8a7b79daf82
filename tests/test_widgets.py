"""Widgets and plotting helpers, headless: callbacks are plain methods whose widgets can be read back."""
import dataclasses
import re

import numpy as np
import pytest
import torch

pytest.importorskip("ipywidgets")

from conftest import tiny_run_config  # noqa: E402

from glscl.config import ModelConfig, build_config  # noqa: E402
from glscl.data import load_split  # noqa: E402
from glscl.data.cache import FeatureCache  # noqa: E402
from glscl.data.video import sample_frame_indices  # noqa: E402
from glscl.engine.checkpoint import load_weights  # noqa: E402
from glscl.engine.metrics import t2v_ranks  # noqa: E402
from glscl.engine.run import run  # noqa: E402
from glscl.lab.ui import viz  # noqa: E402
from glscl.lab.ui.explorer import RetrievalExplorer, SplitFeatures  # noqa: E402
from glscl.lab.ui.query_viewer import QueryAttentionViewer  # noqa: E402
from glscl.model.glscl import GLSCL  # noqa: E402

pytestmark = pytest.mark.slow  # trained runs behind the widgets


@pytest.fixture(scope="module")
def trained_run(tiny_world, tiny_clip, tmp_path_factory):
    """A tiny GLSCL run trained from the feature cache: its results folder and its config."""
    tmp = tmp_path_factory.mktemp("widgets")
    torch.manual_seed(0)
    cfg = tiny_run_config(tiny_world, tiny_clip, tmp / "runs", cache_dir=tmp / "cache", epochs=1)
    run(cfg, progress=False)
    return tmp / "runs" / "tiny", cfg


@pytest.fixture(scope="module")
def explorer(trained_run):
    return RetrievalExplorer.from_results(trained_run[0], k=5)


def _ids_in_html(value):
    return re.findall(r'data-video-id="([^"]+)"', value)


def test_explorer_scores_equal_the_saved_test_similarity(explorer, trained_run):
    saved = torch.load(trained_run[0] / "test_similarity.pt", weights_only=True)
    assert torch.allclose(explorer.similarity(), saved, atol=1e-5)


def test_setting_a_caption_shows_its_top_videos(explorer):
    f = explorer.features
    sim = explorer.similarity()
    ranks = t2v_ranks(sim, f.caption_video)
    for i in range(3):
        caption = f.captions[i]
        explorer.query.value = caption              # what a user's pick runs
        expected = [f.video_ids[j] for j in torch.argsort(sim[i], descending=True, stable=True)[:5].tolist()]
        assert [r["video_id"] for r in explorer.last_rows] == expected
        assert _ids_in_html(explorer.results.value) == expected
        own = f.video_ids[f.caption_video[i]]
        assert [r["video_id"] for r in explorer.last_rows if r["match"]] == ([own] if own in expected else [])
        assert f"ranks <b>#{ranks[i]}</b>" in explorer.status.value
        assert explorer.rank_of_match(caption) == ranks[i]
        assert "data:image/png;base64," in explorer.results.value   # frame strips
        own_score = float(sim[i, f.caption_video[i]])
        top = explorer.last_rows[0]
        assert "S − S(own video)" in explorer.results.value and f"{round(top['score'] - own_score, 4) + 0.0:+.4f}" in explorer.results.value


def test_scores_split_into_global_and_local_contributions(explorer):
    caption = explorer.features.captions[1]
    rows = explorer.show(caption)
    lam = explorer.head.cfg.local_weight
    with torch.no_grad():
        parts = explorer.head.similarity_parts(explorer._text_for(caption), explorer.gallery)
    for r in rows:
        assert set(r["parts"]) == {"global", "local"}
        assert r["parts"]["global"] + r["parts"]["local"] == pytest.approx(r["score"], abs=1e-5)
        assert r["parts"]["global"] == pytest.approx(float(parts["global"][0, r["index"]]), abs=1e-6)
        assert r["parts"]["local"] == pytest.approx(lam * float(parts["local"][0, r["index"]]), abs=1e-6)
    assert "global S_g" in explorer.results.value and f"local {lam:g}·S_l" in explorer.results.value


def test_example_rows_add_the_own_video_and_related_videos_at_their_true_ranks(explorer):
    f = explorer.features
    sim = explorer.similarity()
    ranks = t2v_ranks(sim, f.caption_video)
    i = int(np.argmax(ranks))                                  # the caption whose video ranks worst
    caption, own = f.captions[i], int(f.caption_video[i])
    other = next(int(j) for j in torch.argsort(sim[i]) if int(j) != own)   # the lowest-scored other video
    rows = explorer.example_rows(caption, 2, related={other: "twin"})
    by_index = {r["index"]: r for r in rows}
    assert by_index[own]["match"] and by_index[own]["role"] == "match" and by_index[own]["rank"] == ranks[i]
    assert by_index[other]["role"] == "twin" and by_index[other]["rank"] == int((sim[i] >= sim[i, other]).sum())
    assert [r["rank"] for r in rows] == sorted(r["rank"] for r in rows)
    assert len(rows) == 2 + (ranks[i] > 2) + (by_index[other]["rank"] > 2)


def test_figure_shows_differences_from_the_caption_s_own_video(explorer):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = explorer.features
    caption, own = f.captions[0], int(f.caption_video[0])
    fig = explorer.figure(caption, k=3)
    panels = [ax for ax in fig.axes if ax.collections]        # the difference panels (the strips have no dots)
    bars = panels[-1]
    lam = explorer.head.cfg.local_weight
    legend = [t.get_text() for t in bars.get_legend().get_texts()]
    assert sorted(legend) == sorted(["difference in global S_g", f"difference in local {lam:g}·S_l", "difference in S"])
    rows = explorer.example_rows(caption, 3)
    assert any(r["index"] == own for r in rows)                # the caption's video is always drawn
    s_own = float(explorer.similarity()[0, own])
    dots = np.concatenate([ax.collections[0].get_offsets()[:, 0] for ax in panels])   # S - S(own video), one per row
    np.testing.assert_allclose(dots, [r["score"] - s_own for r in rows], atol=1e-5)
    assert bars.get_xlabel() == "score minus the caption's video's"
    plt.close(fig)


def test_each_difference_panel_fits_its_own_differences():
    """Rows below the top k get their own panel: a twin 0.002 below the caption's video is not drawn on
    the top videos' 0.15 scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from glscl.lab.ui.retrieval_figure import plot_retrieval

    def row(rank, s_g, s_l, role=None):
        return {"rank": rank, "index": rank, "video_id": f"v{rank}", "score": s_g + s_l, "parts": {"global": s_g, "local": s_l},
                "match": role == "match", "role": role}

    rows = [row(1, 1.15, 0.05), row(2, 1.1, 0.04), row(76, 1.0, 0.01, "match"), row(78, 1.001, 0.0065, "twin")]
    frames = lambda i: (np.zeros((2, 4, 4, 3), np.uint8), np.ones(2, bool))  # noqa: E731
    fig = plot_retrieval("c", rows, frames)
    panels = [ax for ax in fig.axes if ax.collections]
    assert len(panels) == 2
    for ax, expected in zip(panels, ([0.19, 0.13], [0.0, -0.0025])):
        dots = ax.collections[0].get_offsets()[:, 0]
        np.testing.assert_allclose(dots, expected, atol=1e-9)
        widest = max(abs(x) for x in (*expected, 0.15 if expected[0] else 0.0035))  # largest bar or dot
        lo, hi = ax.get_xlim()
        assert hi - lo < 3 * widest, (ax.get_xlim(), widest)
    plt.close(fig)
    fig = plot_retrieval("c", rows[:3], frames)                 # only the caption's video below the top: one panel
    assert len([ax for ax in fig.axes if ax.collections]) == 1
    plt.close(fig)


def test_every_text_of_the_widget_and_retrieval_figures_is_at_least_8_points(explorer):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    viewer = explorer.attention_viewer([0, 1])
    figures = [explorer.figure(explorer.features.captions[0], k=3), viewer._figure()]
    fig, ax = plt.subplots()
    viz.heatmap(np.random.default_rng(0).random((4, 5)), ax=ax, title="t", xlabel="x", ylabel="y", cbar_label="c")
    figures.append(fig)
    for fig in figures:
        fig.canvas.draw()
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()]
        assert sizes and min(sizes) >= viz.SMALL, min(sizes)
        plt.close(fig)


def test_widgets_carry_a_static_copy_of_their_view_for_exports(explorer):
    import base64

    explorer.query.value = explorer.features.captions[1]
    static = explorer.static_html()
    assert 'class="glscl-static"' in static and explorer.results.value in static and explorer.status.value in static
    assert "data:image/png;base64," in static                  # the frame strips travel inline
    viewer = explorer.attention_viewer([0, 1])
    static = viewer.static_html()
    assert base64.b64encode(viewer.image.value).decode() in static and viewer.summary.value in static
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    InteractiveShell.instance()
    with capture_output() as shown:
        viz.display_widget(viewer)
    kinds = [set(o.data) for o in shown.outputs]
    assert any("application/vnd.jupyter.widget-view+json" in k for k in kinds)
    assert any("text/html" in k and "glscl-static" in o.data["text/html"] for k, o in zip(kinds, shown.outputs))


def test_top_k_slider_and_new_captions(explorer):
    explorer.query.value = explorer.features.captions[0]
    explorer.k_slider.value = 2
    assert len(explorer.last_rows) == 2 and len(_ids_in_html(explorer.results.value)) == 2
    explorer.k_slider.value = 5
    assert len(explorer.last_rows) == 5
    # a sentence of the world's words that is not a test caption: encoded by the backbone
    explorer.query.value = "a large red circle moves up"
    assert "new caption" in explorer.status.value and len(explorer.last_rows) == 5
    assert "S − S(own video)" not in explorer.results.value          # no own video to compare with
    assert not any(r["match"] for r in explorer.last_rows)
    # words outside the compact vocabulary: a message, no rows, no exception
    explorer.query.value = "a purple elephant dances"
    assert "glscl-error" in explorer.status.value and "vocabulary" in explorer.status.value
    assert explorer.last_rows == [] and explorer.results.value == ""


def test_explorer_from_head_and_cache(explorer, trained_run):
    run_dir, cfg = trained_run
    head = GLSCL(cfg.model, 64)
    load_weights(run_dir / "checkpoints" / "best", head)
    folder = next(p.parent for p in (run_dir.parents[1] / "cache").glob("world-test-*/meta.json"))
    split = load_split(cfg.data, "test")
    from_cache = RetrievalExplorer.from_cache(head, FeatureCache.open(folder), video_paths=split.video_paths, k=3)
    caption = split.captions[2]
    from_cache.query.value = caption
    assert [r["video_id"] for r in from_cache.last_rows] == [r["video_id"] for r in explorer.search(caption, 3)]
    # without a backbone only the split's captions can be searched
    from_cache.query.value = "a large red circle moves up"
    assert "glscl-error" in from_cache.status.value and from_cache.last_rows == []


def test_explorer_from_an_end_to_end_run(tiny_world, tiny_clip, tmp_path):
    cfg = tiny_run_config(tiny_world, tiny_clip, tmp_path / "runs", epochs=1, batch_size=16, max_steps=1)
    run(cfg, progress=False)
    run_dir = tmp_path / "runs" / "tiny"
    ex = RetrievalExplorer.from_results(run_dir, k=3)     # decodes and encodes the test split itself
    assert torch.allclose(ex.similarity(), torch.load(run_dir / "test_similarity.pt", weights_only=True), atol=1e-4)
    ex.query.value = ex.features.captions[0]
    assert len(_ids_in_html(ex.results.value)) == 3


@pytest.mark.parametrize("overrides, part, label", [({"model.interaction": "global"}, "global", "global S_g"),
                                                     ({"model.head": "mean_pooling"}, "mean", "mean pooling"),
                                                     ({"model.head": "vtc", "model.vtc_dim": 16}, "vtc", "VTC")])
def test_single_part_heads_have_one_contribution(explorer, overrides, part, label):
    from glscl.model.factory import create_head

    f = explorer.features
    cfg = build_config("embedded", {"model.pretrained": None, "model.temporal_layers": 0, **overrides})
    features = SplitFeatures(f.frames, f.frame_mask, f.sentence, f.tokens, f.token_mask, f.captions, f.caption_video,
                             f.video_ids)   # no video files: no strips
    ex = RetrievalExplorer(create_head(cfg.model, 64), features)
    rows = ex.show(f.captions[0])
    sim = ex.similarity()[0]
    assert rows and all(list(r["parts"]) == [part] and r["parts"][part] == pytest.approx(r["score"]) for r in rows)
    assert [r["score"] for r in rows] == pytest.approx(torch.sort(sim, descending=True).values[:len(rows)].tolist(), abs=1e-6)
    assert label in ex.results.value and "S_l" not in ex.results.value and "<img" not in ex.results.value
    with pytest.raises(ValueError, match="no local interaction"):
        ex.attention_viewer([0])


def test_query_attention_viewer_follows_its_sliders(explorer):
    viewer = explorer.attention_viewer([0, 1, 2])
    first = viewer.image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    head, f = explorer.head, explorer.features
    viewer.query_slider.value = 1                       # what moving the slider runs
    assert viewer.current["query"] == 1 and viewer.image.value != first
    with torch.no_grad():
        video = head.encode_video(f.frames[[int(f.caption_video[0])]], f.frame_mask[[int(f.caption_video[0])]])
        maps = head.local.attention_maps(video.frames, video.mask, "video")
    np.testing.assert_allclose(viewer.current["frame_attention"], maps[-1, 0, 1].numpy(), atol=1e-6)
    assert viewer.current["frame_attention"].sum() == pytest.approx(1.0, abs=1e-5)
    assert viewer.current["word_attention"].sum() == pytest.approx(1.0, abs=1e-5)
    assert viewer.current["words"][0] == "<start>" and viewer.current["words"][-1] == "<end>"
    assert "query 1" in viewer.summary.value
    before = viewer.image.value
    viewer.item_slider.value = 2
    assert viewer.current["caption"] == f.captions[2] and viewer.image.value != before
    viewer.layer_dropdown.value = 0
    assert viewer.current["layer"] == 0


def test_viewer_gives_padding_no_attention_and_needs_a_local_branch():
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="glscl-tiny", pretrained=None, num_frames=6, temporal_layers=1, temporal_heads=2,
                      num_queries=3, decoder_layers=1, decoder_heads=2, dropout=0.0)
    head = GLSCL(cfg, 16)
    frame_mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    token_mask = torch.tensor([[True] * 5 + [False] * 3, [True] * 8])
    viewer = QueryAttentionViewer(head, torch.randn(2, 6, 16), frame_mask, torch.randn(2, 8, 16), token_mask)
    viewer.item_slider.value = 1
    viewer.frame_slider.value = 5
    assert np.all(viewer.current["frame_attention"][4:] == 0)
    assert "padding" in viewer.summary.value
    viewer.item_slider.value = 0
    assert len(viewer.current["word_attention"]) == 5      # padding tokens are not shown
    with pytest.raises(ValueError, match="no local interaction"):
        QueryAttentionViewer(GLSCL(dataclasses.replace(cfg, interaction="global"), 16), torch.randn(2, 6, 16), frame_mask,
                             torch.randn(2, 8, 16), token_mask)


def test_viz_helpers(tiny_world):
    from glscl.model.backbone import Tokenizer

    frames = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    mask = np.array([1, 1, 1, 0, 0], bool)
    strip = viz.strip_image(frames, mask, gap=2)
    assert strip.shape == (8, 5 * 8 + 4 * 2, 3) and np.all(strip[:, 3 * 10: 3 * 10 + 8] == viz.PAD_GREY)
    assert viz.png_bytes(strip, height=16)[:4] == b"\x89PNG"
    tok = Tokenizer(32)
    assert viz.token_labels(tok, tok("a small red circle, then")[0]) == ["<start>", "a", "small", "red", "circle", ",", "then", "<end>"]
    np.testing.assert_allclose(np.diag(viz.cosine_matrix(np.random.default_rng(1).normal(size=(4, 6)))), 1.0)
    import matplotlib
    matplotlib.use("Agg")
    _, indices, valid = viz.plot_sampling(2850, 30.0, 12)
    expected, n = sample_frame_indices(2850, 30.0, 12)
    assert valid == n == 12 and np.array_equal(indices, expected)
    assert viz.repo_path("data/world") == viz.repo_root() / "data" / "world"


def test_fit_queries_is_reproducible_and_idl_spreads_the_queries():
    from glscl.config import LossConfig
    from glscl.lab.ui import steps
    from glscl.model.backbone import TextFeatures

    cfg = ModelConfig(backbone="glscl-tiny", pretrained=None, num_frames=4, temporal_layers=1, temporal_heads=2,
                      num_queries=4, decoder_layers=1, decoder_heads=2, dropout=0.0)
    g = torch.Generator().manual_seed(0)
    text = TextFeatures(tokens=torch.randn(6, 5, 16, generator=g), mask=torch.ones(6, 5, dtype=torch.bool),
                        sentence=torch.randn(6, 16, generator=g))
    batch = steps.Batch(torch.randn(6, 4, 16, generator=g), torch.ones(6, 4, dtype=torch.bool), text)
    loss = LossConfig(icl_weight=0.0, idl_weight=1.0)
    a, b = (steps.fit_queries(cfg, 16, 2.0, batch, loss, steps=15, lr=1e-2) for _ in range(2))
    assert set(a.history.columns) >= {"loss", "contrastive", "icl", "idl"} and len(a.history) == 15
    assert a.history.equals(b.history), "the same seed, batch and loss give the same optimisation"
    before = steps.query_cosines(steps.fresh_head(cfg, 16, 2.0), batch)
    after = steps.query_cosines(a.head, batch)
    assert steps.off_diagonal_mean(after["visual"]) < steps.off_diagonal_mean(before["visual"])
    assert a.history["idl"].iloc[-1] < a.history["idl"].iloc[0]
    np.testing.assert_allclose(np.diag(after["visual"]), 1.0, atol=1e-5)


def test_a_claim_that_no_longer_holds_stops_the_notebook():
    from glscl.lab.ui.tutorial import claim, signed

    with pytest.raises(AssertionError, match="no longer holds: twins separate"):
        claim(False, "twins separate")
    assert signed(0.00431) == "+0.0043" and signed(-3e-7) == "-3.0e-07" and signed(0.0) == "+0.0000"


def test_an_exercise_compares_the_prediction_with_the_measured_answer():
    from glscl.lab.ui.tutorial import exercise

    assert exercise(None, "down", "IDL spreads the queries.") is None
    assert exercise("down", "down", "IDL spreads the queries.") is True
    assert exercise("up", "down", "IDL spreads the queries.") is False
    assert exercise(8, 8, "K queries.") is True and exercise(4, 8, "K queries.") is False
