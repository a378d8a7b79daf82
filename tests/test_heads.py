"""Comparison heads (glscl.lab.bench.heads) and the efficiency bench (glscl.lab.bench: measure, cost, report,
similarity): shapes, masking, hand-counted FLOPs, the cost model and extrapolation, per-block vs encode-once
evaluation, and a --quick bench run."""
import json

import pytest
import torch

from glscl.lab.bench.cost import CostModel, extrapolate, fit_flop_model, per_block_flops
from glscl.lab.bench.heads import (
    CrossEncoderHead,
    alpro_pair_flops,
    cross_encoder_pair_flops,
    glscl_encode_once_similarity,
    glscl_per_block_similarity,
    make_heads,
)
from glscl.lab.bench.measure import PeakMemory, RandomFeatures, count_cost, count_flops_shapes_only
from glscl.lab.bench.report import plot_growth
from glscl.lab.bench.similarity import default_args, main

# tiny shapes: d, T frames, L words, K queries, one decoder and one temporal layer, 2 heads
D, T, L, K = 16, 5, 6, 2
N, M = 3, 4
CROSS_W, CROSS_F = 8, 32


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny ops are much faster on one thread when the machine is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def heads():
    return make_heads(width=D, num_frames=T, num_queries=K, decoder_layers=1, temporal_layers=1, heads=2,
                      cross_layers=1, cross_width=CROSS_W, cross_heads=2)


def inputs(n=N, m=M, seed=0):
    g = torch.Generator().manual_seed(seed)
    sentence, tokens = torch.randn(n, D, generator=g), torch.randn(n, L, D, generator=g)
    frames = torch.randn(m, T, D, generator=g)
    token_mask = torch.arange(L)[None] < torch.randint(2, L + 1, (n, 1), generator=g)
    frame_mask = torch.arange(T)[None] < torch.randint(1, T + 1, (m, 1), generator=g)
    token_mask[0, 3:] = False          # at least one text and one video padded
    frame_mask[1, 2:] = False
    return sentence, tokens, token_mask, frames, frame_mask


HEADS = ["mean", "xpool", "xclip", "cross", "glscl"]


@pytest.mark.parametrize("name", HEADS)
def test_shape_blocks_and_masking(heads, name):
    head = heads[name]
    s, w, wm, f, fm = inputs()
    with torch.no_grad():
        out = head(s, w, wm, f, fm)
        assert out.shape == (N, M) and torch.isfinite(out).all()
        # the block size changes nothing
        for block in (1, (2, 3), (N, M)):
            assert torch.allclose(head(s, w, wm, f, fm, block=block), out, atol=1e-5)
        # garbage in padded tokens and frames changes nothing
        w2 = torch.where(wm[..., None], w, 100 * torch.randn_like(w))
        f2 = torch.where(fm[..., None], f, 100 * torch.randn_like(f))
        assert torch.allclose(head(s, w2, wm, f2, fm), out, atol=1e-5)
        # ... while changing a real frame does change the scores of that video
        f3 = f.clone()
        f3[1, 0] += torch.randn(D)     # (not a constant shift: layer norms would remove it)
        assert not torch.allclose(head(s, w, wm, f3, fm)[:, 1], out[:, 1])


# hand counts: 1 multiply-add = 2 FLOPs; matrix products and attention only (FlopCounterMode's convention)
def hand_flops(name):
    d, t, words, k, n, m = D, T, L, K, N, M
    if name == "mean":                 # t . v for every pair
        return n * m * 2 * d
    if name == "xpool":                # q per text; k, v per video; per pair: logits, pooling, W_o, W_ff, cosine
        return n * 2 * d * d + m * 2 * 2 * t * d * d + n * m * (2 * t * d + 2 * t * d + 2 * d * d + 2 * d * d + 2 * d)
    if name == "xclip":                # video-sentence, video-word, frame-sentence, frame-word
        return n * m * 2 * d * (1 + words + t + t * words)
    if name == "cross":                # per text/video input projections; per pair one layer on S = L + T tokens + score
        w, f, s = CROSS_W, CROSS_F, words + t
        layer = 2 * s * 3 * w * w + 2 * s * w * w + 2 * 2 * s * s * w + 2 * 2 * s * w * f
        return n * 2 * words * d * w + m * 2 * t * d * w + n * m * (layer + 2 * w)
    if name == "glscl":
        temporal = 2 * t * 3 * d * d + 2 * t * d * d + 2 * 2 * t * t * d + 2 * 2 * t * d * 4 * d

        def decoder(mem):              # K queries: self-attention, cross-attention to `mem` items, FFN
            self_attn = 2 * k * 3 * d * d + 2 * k * d * d + 2 * 2 * k * k * d
            cross = 2 * k * d * d + 2 * 2 * mem * d * d + 2 * k * d * d + 2 * 2 * k * mem * d
            return self_attn + cross + 2 * 2 * k * d * 4 * d

        gram = 2 * t * t * d           # per video: T x T Gram matrix of S_g
        pair = 2 * t * d + 2 * t * t + 2 * k * d    # t . v_f, w^T G w, flat(c^t) . flat(c^v)
        return n * decoder(words) + m * (temporal + decoder(t) + gram) + n * m * pair
    raise KeyError(name)


@pytest.mark.parametrize("name", HEADS)
def test_flops_equal_hand_count(heads, name):
    _, cost = count_cost(heads[name], *inputs())
    assert cost.flops == hand_flops(name)


def test_hand_count_numbers_and_alpro_size():
    # the formulas above, evaluated: a second, independent statement of the same numbers
    assert [hand_flops(h) for h in HEADS] == [384, 38528, 16128, 259136, 281688]
    assert cross_encoder_pair_flops(L + T, CROSS_W, CROSS_F, 1) + 2 * CROSS_W == 20784
    # ALPRO's fusion encoder: 6 BERT-base layers over 40 + 197 tokens, about 21 GFLOPs per pair
    assert 20.5e9 < alpro_pair_flops() < 21.5e9


def test_shapes_only_count_equals_hand_count(heads):
    # the bench's --direct-count: FlopCounterMode over FakeTensorMode (no arithmetic)
    assert count_flops_shapes_only(heads["glscl"], *inputs()) == hand_flops("glscl")


@pytest.mark.parametrize("name", HEADS)
def test_cost_model_is_exact(heads, name):
    feats = RandomFeatures(D, T, L)
    model = fit_flop_model(heads[name], feats, n0=2, m0=3)
    _, cost = count_cost(heads[name], *feats.texts(5), *feats.videos(7))
    assert model(5, 7) == pytest.approx(cost.flops, rel=1e-9)
    # F = 1 n + 3 m + 2 n m through three points
    assert CostModel.fit([(1, 1, 6.0), (2, 1, 9.0), (1, 2, 11.0)])(3, 3) == pytest.approx(1 * 3 + 3 * 3 + 2 * 9)


def test_extrapolated_cell_by_hand():
    ref = {"flops": 100.0, "time": 2.0, "peak_bytes": 1000, "output_bytes_per_pair": 4, "text_state_bytes": 10,
           "video_state_bytes": 20}
    cell = extrapolate(ref, (2, 3), (4, 5), 300.0)
    # time at the measured run's FLOP rate (2 s x 300 / 100); memory + 4 B x (20 - 6) pairs + 10 B x 2 texts + 20 B x 2 videos
    assert cell == {"flops": 300.0, "time": 6.0, "peak_bytes": 1000 + 56 + 20 + 40, "measured": False}


def test_per_block_and_encode_once_give_the_same_matrix(heads):
    glscl = heads["glscl"].model
    s, w, wm, f, fm = inputs(n=20, m=37)   # not multiples of 16: remainder blocks on both sides
    with torch.no_grad():
        once = glscl_encode_once_similarity(glscl, (s, w, wm), (f, fm), block=(8, 5), chunk=6)
        per_block = glscl_per_block_similarity(glscl, (s, w, wm), (f, fm), block=16)
        direct = glscl.similarity(glscl.encode_text(s, w, wm), glscl.encode_video(f, fm))
    assert torch.allclose(once, per_block, atol=1e-5)
    assert torch.allclose(once, direct, atol=1e-5)


def test_per_block_flops_sum_of_tiles_and_cost_ratio(heads):
    head = heads["glscl"]
    feats = RandomFeatures(D, T, L)
    n, m = 20, 37
    _, direct = count_cost(glscl_per_block_similarity, head.model, feats.texts(n), feats.videos(m), 16)
    assert per_block_flops(head, feats, n, m, 16, {}) == direct.flops
    _, once = count_cost(head, *feats.texts(n), *feats.videos(m))
    assert direct.flops > 2 * once.flops   # each video re-encoded twice, each text three times


def test_peak_memory_tracks_allocations_and_blocks_bound_it(heads):
    with PeakMemory() as mem:
        a = torch.empty(1000)            # 4000 bytes
        b = a.view(10, 100)              # a view: nothing new
        del a, b
        c = torch.empty(500)             # the first buffer is freed: peak stays 4000
    assert mem.peak == 4000 and mem.current == 2000
    del c
    head = heads["xclip"]
    s, w, wm, f, fm = inputs(n=12, m=12)
    _, small = count_cost(head, s, w, wm, f, fm, block=2)
    _, large = count_cost(head, s, w, wm, f, fm, block=12)
    assert small.peak_bytes < large.peak_bytes / 4


def test_cross_encoder_reads_the_first_text_token():
    head = CrossEncoderHead(in_width=D, width=CROSS_W, layers=1, heads=2, max_frames=T).eval()
    s, w, wm, f, fm = inputs()
    assert wm[:, 0].all()
    with torch.no_grad():
        assert head(s, w, wm, f, fm).shape == (N, M)


def test_bench_quick_writes_json_and_figure(tmp_path, capsys):
    out = tmp_path / "bench"
    record = main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "X-CLIP-style" in printed and "Goals" in printed and "GLSCL per 16x16 block" in printed
    data = json.loads((out / "bench.json").read_text())
    assert (out / "bench.png").stat().st_size > 10_000
    assert set(data["heads"]) == {"mean", "xpool", "xclip", "cross", "alpro", "glscl", "glscl_per_block"}
    assert data["heads"]["glscl_per_block"]["same_result_as_encode_once"] is True
    assert max(data["flop_model_check"].values()) < 1e-9
    m = str(data["summary"]["m"])
    assert data["heads"]["glscl"]["cells"][m]["measured"] and not data["heads"]["cross"]["cells"][m]["measured"]
    # the larger gallery is extrapolated (quick: cell limit 0): FLOPs exact, time in proportion to FLOPs
    big = data["heads"]["xclip"]["cells"]["32"]
    assert not big["measured"] and big["flops"] == 2 * data["heads"]["xclip"]["cells"]["16"]["flops"]
    # the growth figure from bench.json as loaded (string cell keys): measured points filled, extrapolated hollow and dashed
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    axes = plot_growth(data, keys=("flops", "time", "peak_bytes"))
    assert [t.get_text() for t in axes[-1].get_legend().get_texts()] == [h["title"] for h in data["heads"].values()]
    at_32 = {round(float(ln.get_ydata()[0]), 12): ln.get_markerfacecolor() for ln in axes[0].get_lines()
             if list(ln.get_xdata()) == [32.0] and ln.get_marker() == "o"}
    assert at_32[round(2 * data["heads"]["xclip"]["cells"]["16"]["flops"] / 1e9, 12)] == "white"  # GFLOP, extrapolated
    assert any(ln.get_linestyle() == "--" and list(ln.get_xdata()) == [16.0, 32.0] for ln in axes[0].get_lines())
    plt.close("all")
    goals = record["summary"]["goals"]
    assert goals["per_block_flops_ratio"] > 1 and goals["flops_vs_xclip_pairwise_only"] > 1
    assert default_args(quick=True).quick is True
