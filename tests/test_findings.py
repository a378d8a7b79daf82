import json
import math

import pandas as pd
import pytest

from glscl.config import ConfigError
from glscl.lab.grids import spec as grids
from glscl.lab.grids.stats import against_reference, paired, reference_config, resolution_line, seeds_to_resolve


def _table(diffs):
    rows = []
    for seed, d in enumerate(diffs):
        rows.append({"status": "ok", "seed": seed, "k": 8, "t2v_R@1": 10.0 + seed + d})
        rows.append({"status": "ok", "seed": seed, "k": 1, "t2v_R@1": 10.0 + seed})
    return pd.DataFrame(rows)


def test_seeds_to_resolve_uses_the_t_quantile():
    # t(0.975, 5) * 1 / sqrt(6) = 2.571 / 2.449 > 1, t(0.975, 6) / sqrt(7) = 2.447 / 2.646 <= 1
    assert seeds_to_resolve(1.0) == 7
    assert seeds_to_resolve(0.0) == 2 and seeds_to_resolve(float("nan")) is None


def test_paired_differences_and_verdicts_by_hand():
    d = paired(_table([1.0, 2.0, 3.0]), {"k": 8}, {"k": 1}, "t2v_R@1")
    assert d.n == 3 and d.mean == pytest.approx(2.0) and d.sd == pytest.approx(1.0)
    assert d.hw == pytest.approx(4.303 / math.sqrt(3), rel=1e-3)
    assert d.a == pytest.approx(13.0) and d.b == pytest.approx(11.0) and d.diffs == pytest.approx([1.0, 2.0, 3.0])
    assert d.verdict == "not resolved at this power"
    assert d.resolution() == f"half-width {d.hw:.1f} points; a 1-point difference needs 7 seeds at this noise (sd 1.0)"
    assert paired(_table([2.0, 2.1, 1.9]), {"k": 8}, {"k": 1}, "t2v_R@1").verdict == "supported"
    assert paired(_table([-2.0, -2.1, -1.9]), {"k": 8}, {"k": 1}, "t2v_R@1").verdict == "contradicted"
    assert paired(_table([1.0]), {"k": 8}, {"k": 1}, "t2v_R@1").verdict.startswith("not resolved (fewer")


def test_pairing_uses_only_shared_finished_seeds_and_matches_values_as_numbers():
    table = _table([1.0, 5.0, 9.0])
    table.loc[(table["seed"] == 1) & (table["k"] == 1), "status"] = "failed"  # seed 1 has no pair
    table["k"] = table["k"].astype(float)  # a CSV round trip with gaps turns 8 into 8.0
    d = paired(table, {"k": 8}, {"k": 1}, "t2v_R@1")
    assert d.n == 2 and d.diffs == pytest.approx([1.0, 9.0])
    assert paired(table, {"k": 4}, {"k": 1}, "t2v_R@1").n == 0  # no such configuration
    assert paired(table, {"nope": 4}, {"k": 1}, "t2v_R@1").n == 0  # no such column
    table["status"] = "failed"
    assert paired(table, {"k": 8}, {"k": 1}, "t2v_R@1").n == 0  # nothing finished


GRID = """description: test
base: embedded
vary:
  model.interaction: [global, local, both]
  model.num_queries: [1, 8]
irrelevant:
  - {when: {model.interaction: global}, keys: [model.num_queries]}
seeds: [0, 1, 2]
"""


def _grid(tmp_path, reference: str):
    path = tmp_path / "g.yaml"
    path.write_text(GRID + reference)
    return grids.load_grid(path)


def test_a_grid_names_its_reference_and_reports_pair_every_configuration_with_it(tmp_path):
    spec = _grid(tmp_path, "reference: {model.interaction: global}\n")
    assert reference_config(spec) == {"interaction": "global", "num_queries": None}
    rows = []
    for run in grids.expand(spec):
        v = {spec.columns[k]: x for k, x in run.values.items()}
        # global: 10 + seed; local: +2 per query group; both: +1 + seed (so its difference varies by seed)
        score = 10.0 + run.seed + {"global": 0.0, "local": 2.0, "both": 1.0 + run.seed}[v["interaction"]] + v.get("num_queries", 0) / 8
        rows.append({"status": "ok", "seed": run.seed, "interaction": v["interaction"],
                     "num_queries": v.get("num_queries"), "t2v_R@1": score})
    diffs = against_reference(pd.DataFrame(rows), spec, "t2v_R@1")
    assert len(diffs) == 4  # local and both at K = 1 and 8, the reference left out
    local8 = diffs[(diffs["interaction"] == "local") & (diffs["num_queries"] == 8)].iloc[0]
    assert local8["difference"] == pytest.approx(3.0) and local8["half_width"] == pytest.approx(0.0)
    assert local8["verdict"] == "supported" and local8["n"] == 3
    both1 = diffs[(diffs["interaction"] == "both") & (diffs["num_queries"] == 1)].iloc[0]
    # differences 1.125, 2.125, 3.125: mean 2.125, sd 1, half-width t(0.975, 2) / sqrt(3)
    assert both1["difference"] == pytest.approx(2.125) and both1["sd"] == pytest.approx(1.0)
    assert both1["half_width"] == pytest.approx(4.303 / math.sqrt(3), rel=1e-3) and both1["seeds_for_1_point"] == 7
    line = resolution_line(diffs, "t2v_R@1")
    assert "median" in line and "n = 3 seeds" in line and "a 1-point difference needs" in line


@pytest.mark.parametrize("reference, message", [
    ("reference: {model.heads: glscl}\n", "'model.heads' is not a varying key"),
    ("reference: {model.interaction: globl}\n", "globl"),
    ("reference: {model.interaction: local}\n", "matches 2 configurations; name more keys"),
    ("reference: {model.interaction: global, model.num_queries: 8}\n", "matches no configuration"),
    ("reference: [global]\n", "reference must be a mapping"),
])
def test_a_reference_that_is_not_one_grid_point_is_refused(tmp_path, reference, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        _grid(tmp_path, reference)


def test_the_reference_figure_and_the_findings_page_lines(tmp_path):
    pytest.importorskip("seaborn")  # the lab's figures
    from glscl.lab.grids.figures import figures_for_grid
    from glscl.lab.grids.findings import claim_lines, reference_lines

    spec = _grid(tmp_path, "reference: {model.interaction: global}\n")
    rows = [{"status": "ok", "seed": r.seed, "interaction": r.values["model.interaction"],
             "num_queries": r.values.get("model.num_queries"), "t2v_R@1": 10.0 + r.seed * 0.5 + len(r.run_id) % 3,
             "v2t_R@1": 9.0, "twin_accuracy": 50.0} for r in grids.expand(spec)]
    table = pd.DataFrame(rows)
    paths = figures_for_grid(table, spec, tmp_path / "figures")
    assert tmp_path / "figures" / "paired_vs_reference.png" in paths
    failed_reference = table.assign(status=["failed" if i == "global" else "ok" for i in table["interaction"]])
    assert "paired_vs_reference.png" not in {p.name for p in figures_for_grid(failed_reference, spec, tmp_path / "f2")}
    assert reference_lines(failed_reference, spec, "t2v_R@1")[0].startswith("No configuration has a finished seed")
    lines = reference_lines(table, spec, "t2v_R@1")
    assert lines[0].startswith("Paired by seed against the reference (interaction=global")
    assert any(line.startswith("Resolution (t2v_R@1") for line in lines)
    assert claim_lines({"claim": "x", "a": {"num_queries": 4}, "b": {"interaction": "global"}}, table) == [
        "- **x** (scenes): no paired runs found (num_queries=4 vs interaction=global)."]


def test_the_reproducibility_section_reads_the_thread_benchmark(tmp_path):
    from glscl.lab.grids.findings import threads_lines

    assert threads_lines(tmp_path / "absent.json") == []
    runs = {1: {0: 5.2, 1: 4.4, 2: 4.4}, 2: {0: 5.3, 1: 4.3, 2: 4.6}}
    diffs = [runs[2][s] - runs[1][s] for s in (0, 1, 2)]
    sd1, sd2 = pd.Series(list(runs[1].values())).std(), pd.Series(list(runs[2].values())).std()
    record = {"command": "python benchmarks/bench_threads.py", "seeds": [0, 1, 2], "repeat_difference": {"t2v_R@1": 0.0, "v2t_R@1": 0.0}}
    for m in ("t2v_R@1", "v2t_R@1"):
        record[m] = {"difference_2_minus_1": diffs, "max_abs_difference": max(map(abs, diffs)),
                     "seed_sd_1_thread": sd1, "seed_sd_2_threads": sd2}
    (tmp_path / "t.json").write_text(json.dumps(record))
    text = "\n".join(threads_lines(tmp_path / "t.json"))
    assert "+0.1, -0.1, +0.2 (largest 0.2)" in text and f"{sd1:.1f} at 1 thread" in text
    assert "differ within seed noise" in text  # 0.2 < sd 0.46
    record["t2v_R@1"]["max_abs_difference"] = 1.0  # larger than the spread over seeds
    (tmp_path / "t.json").write_text(json.dumps(record))
    assert "by as much as the seed moves them" in "\n".join(threads_lines(tmp_path / "t.json"))


# -- figures: one mark per configuration, readable labels, colours only where a direction is better ---------

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _overlap(a, b, tol: float = 0.5) -> bool:
    """Two display boxes share more than ``tol`` pixels in both directions."""
    return min(a.x1, b.x1) - max(a.x0, b.x0) > tol and min(a.y1, b.y1) - max(a.y0, b.y0) > tol


def _layout_problems(fig) -> list[str]:
    """Tick labels of one axis that overlap, axis labels of two panels that overlap, and legends inside
    an axes that cover a point of a plotted line (the line sampled between its points too)."""
    import numpy as np

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    for i, ax in enumerate(fig.axes):
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text().strip()]
            boxes = [t.get_window_extent(renderer) for t in labels]
            problems += [f"axes {i}: tick labels {labels[a].get_text()!r} and {labels[b].get_text()!r} overlap"
                         for a in range(len(boxes)) for b in range(a + 1, len(boxes)) if _overlap(boxes[a], boxes[b])]
        legend = ax.get_legend()
        if legend is None:
            continue
        box, frame = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
        if not _overlap(box, frame):
            continue  # outside the axes
        for line in ax.get_lines():
            xy = np.column_stack([line.get_xdata(), line.get_ydata()]).astype(float)
            if len(xy) > 1:  # the segments between the points as well
                t = np.linspace(0, 1, 20)[:, None]
                xy = np.concatenate([a + t * (b - a) for a, b in zip(xy[:-1], xy[1:])])
            pts = line.get_transform().transform(xy)
            inside = [p for p in pts if frame.contains(*p)]
            if any(box.contains(*p) for p in inside):
                problems.append(f"axes {i}: the legend covers line {line.get_label()!r}")
    texts = [(i, ax.xaxis.label) for i, ax in enumerate(fig.axes) if ax.xaxis.label.get_text()]
    for a in range(len(texts)):
        for b in range(a + 1, len(texts)):
            if _overlap(texts[a][1].get_window_extent(renderer), texts[b][1].get_window_extent(renderer)):
                problems.append(f"x labels of axes {texts[a][0]} and {texts[b][0]} overlap")
    return problems


LONG = ["mean_pooling", "glscl / global interaction only", "glscl / local interaction\nK=8",
        "glscl / both interactions\nK=8", "a released-code recipe with every choice changed"]


def _long_label_table():
    rows = []
    for seed in range(3):
        for i, level in enumerate(LONG):
            for k in (1, 2, 4, 8):
                rows.append({"status": "ok", "seed": seed, "setting": level, "num_queries": k,
                             "t2v_R@1": 3 + i + 0.2 * seed + 0.1 * k, "v2t_R@1": 2 + i + 0.1 * seed,
                             "video_query_cos": 0.1 * i + 0.01 * seed})
    return pd.DataFrame(rows)


def test_long_labels_do_not_collide_and_legends_do_not_cover_lines():
    pytest.importorskip("seaborn")
    import matplotlib.pyplot as plt

    from glscl.lab.grids import figures

    table = _long_label_table()
    one_k = table[table["num_queries"] == 8]
    drawn = {"bars": figures.bar_plot(one_k, "setting", None, ["t2v_R@1", "video_query_cos"]),
             "grouped bars": figures.bar_plot(table[table["num_queries"].isin([1, 8])], "setting", "num_queries",
                                              ["t2v_R@1", "v2t_R@1"]),
             "lines": figures.line_plot(table, "num_queries", "setting", ["t2v_R@1", "video_query_cos"]),
             "heat map": figures.metric_heatmap(table.assign(w=table["seed"] * 0.05), "num_queries", "w", ["t2v_R@1", "v2t_R@1"])}
    for name, fig in drawn.items():
        assert _layout_problems(fig) == [], name
        plt.close(fig)


def test_the_layout_check_finds_overlapping_labels_and_a_covering_legend():
    """The check above can fail: crowded vertical labels and a legend on top of a line are found."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2, 3, 4], [1, 1, 1, 1, 1], marker="o", label="flat")
    ax.set_xticks(range(5), LONG)
    ax.legend(loc="center")
    problems = _layout_problems(fig)
    assert any("tick labels" in p for p in problems) and any("legend covers" in p for p in problems)
    plt.close(fig)


VARIANT_MEANS = {(): 5.0, ("decoder_norm",): 6.0, ("query_init",): 4.0, ("temporal_init",): 5.5,
                 ("temporal_activation",): 4.5, ("variant",): 3.0}


def _variant_table(spec):
    """The variant grid's runs with t2v R@1 = a value per configuration (by the keys it changes) + 0.1 * seed."""
    ref = reference_config(spec)
    rows = []
    for run in grids.expand(spec):
        values = {spec.columns[k]: v for k, v in run.values.items()}
        config = {c: values.get(c) for c in spec.columns.values()}
        changed = tuple(c for c in ref if config[c] is not None and config[c] != ref[c])
        base = VARIANT_MEANS.get(changed, 7.0)  # 7: all five changed
        rows.append({"status": "ok", "seed": run.seed, **config, "t2v_R@1": base + 0.1 * run.seed,
                     "v2t_R@1": base - 1 + 0.2 * run.seed})
    return pd.DataFrame(rows)


def test_a_one_at_a_time_grid_gets_one_point_per_configuration(tmp_path, monkeypatch):
    pytest.importorskip("seaborn")
    from glscl.lab.grids import figures

    spec = grids.load_grid(REPO / "ablations" / "variant.yaml")
    table = _variant_table(spec)
    configs = len(grids.configurations(spec))
    assert configs == 7
    cols = list(spec.columns.values())
    # a bar per value of one key would average e.g. post-norm alone with the whole released recipe
    assert figures.pools(table, ["decoder_norm"], cols) and not figures.pools(table, cols, cols)
    drawn = {}
    monkeypatch.setattr(figures, "save", lambda fig, out, name: drawn.setdefault(name, fig) and [])
    figures.figures_for_grid(table, spec, tmp_path)
    assert sorted(drawn) == ["configurations", "paired_vs_reference"]
    fig = drawn["configurations"]
    assert _layout_problems(fig) == [] and _layout_problems(drawn["paired_vs_reference"]) == []
    for ax, metric in zip(fig.axes, ["t2v_R@1", "v2t_R@1"]):
        points = sorted((y, x) for c in ax.containers for x, y in zip(c.lines[0].get_xdata(), c.lines[0].get_ydata()))
        assert len(points) == configs
        labels = {t.get_position()[1]: t.get_text() for t in fig.axes[0].get_yticklabels()}
        seeds = sum(spec.seeds) / len(spec.seeds)
        for y, x in points:
            label = labels[y]
            changed = () if label == "the reference" else tuple(p.split("=")[0] for p in label.replace(",\n", ", ").split(", "))
            expected = VARIANT_MEANS.get(changed, 7.0) + (0.1 if metric == "t2v_R@1" else 0.2) * seeds - (metric == "v2t_R@1")
            assert x == pytest.approx(expected), (metric, label)


def _direction_table(spec):
    rows = []
    for run in grids.expand(spec):
        mode = run.values["model.interaction"]
        effect = {"global": 0.0, "local": -3.0, "both": 3.0}[mode]
        rows.append({"status": "ok", "seed": run.seed, "interaction": mode, "num_queries": run.values.get("model.num_queries"),
                     "t2v_R@1": 10 + effect + run.seed, "t2v_MdR": 50 - 2 * effect + run.seed,
                     "video_query_cos": 0.5 + 0.1 * effect})
    return pd.DataFrame(rows)


def test_paired_colours_follow_the_better_direction_and_diagnostics_get_one_colour(tmp_path):
    pytest.importorskip("seaborn")
    from matplotlib.colors import to_rgb

    from glscl.lab.grids import figures
    from glscl.lab.grids.stats import DIRECTION, better_direction

    assert better_direction("t2v_R@1:single") == 1 and better_direction("v2t_MnR") == -1
    assert better_direction("twin_accuracy") == 1 and better_direction("video_query_cos") is None
    assert DIRECTION["t2v_MdR"] == -1
    spec = _grid(tmp_path, "reference: {model.interaction: global}\n")
    table = _direction_table(spec)
    fig = figures.reference_plot(table, spec, ["t2v_R@1", "t2v_MdR", "video_query_cos"])
    assert _layout_problems(fig) == []
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    green, red, neutral = to_rgb("tab:green"), to_rgb("tab:red"), to_rgb(figures.NEUTRAL)
    for ax, metric in zip(fig.axes, ["t2v_R@1", "t2v_MdR", "video_query_cos"]):
        colours = [to_rgb(c.lines[0].get_color()) for c in ax.containers]
        assert len(colours) == len(labels) == 4
        for label, colour in zip(labels, colours):
            if metric == "video_query_cos":
                assert colour == neutral, (metric, label)   # higher for 'both', but neither way is better
            else:  # 'both' has more R@1 and a lower (better) median rank: green in both panels
                assert colour == (green if "both" in label else red), (metric, label)
    assert "diagnostic" in fig.axes[2].get_title() and "diagnostic" not in fig.axes[0].get_title()
    assert "video query cos: a diagnostic" in fig._suptitle.get_text().replace("\n", " ")


def test_bars_only_for_counts_from_zero_points_otherwise():
    pytest.importorskip("seaborn")
    from matplotlib.patches import Rectangle

    from glscl.lab.grids import figures

    table = _long_label_table()
    fig = figures.bar_plot(table[table["num_queries"] == 8], "setting", None, ["t2v_R@1", "video_query_cos"])
    bars = [[p for c in ax.containers for p in getattr(c, "patches", []) if isinstance(p, Rectangle)] for ax in fig.axes]
    assert len(bars[0]) == len(LONG) and bars[1] == []
    assert sorted(p.get_width() for p in bars[0]) == pytest.approx([3 + i + 0.2 + 0.8 for i in range(len(LONG))])
    points = [x for c in fig.axes[1].containers for x in c.lines[0].get_xdata()]
    assert sorted(points) == pytest.approx([0.1 * i + 0.01 for i in range(len(LONG))])


def test_a_claim_also_reports_v2t_and_twin_accuracy(tmp_path):
    from glscl.lab.grids.findings import claim_lines

    spec = _grid(tmp_path, "")
    rows = []
    for run in grids.expand(spec):
        both = run.values["model.interaction"] == "both"
        rows.append({"status": "ok", "seed": run.seed, "interaction": run.values["model.interaction"],
                     "num_queries": run.values.get("model.num_queries"), "t2v_R@1": 10.0 + run.seed + 2 * both,
                     "v2t_R@1": 8.0 + (1.0 + run.seed) * both, "twin_accuracy": 60.0 - 5 * both})
    table = pd.DataFrame(rows)
    claim = {"claim": "both beats global", "a": {"interaction": "both", "num_queries": 8}, "b": {"interaction": "global"}}
    lines = claim_lines(claim, table)
    # v2t: differences 1, 2, 3 over seeds 0-2: mean 2, sd 1, half-width t(0.975, 2) / sqrt(3) = 2.48
    assert lines[1] == "  - v2t_R@1: 10.0 vs 8.0, paired difference +2.0 ± 2.5 (n=3): not resolved at this power."
    assert lines[2] == "  - twin_accuracy: 55.0 vs 60.0, paired difference -5.0 ± 0.0 (n=3): contradicted."
    assert len(claim_lines(claim, table.drop(columns="twin_accuracy"))) == 2


@pytest.mark.slow
def test_the_shipped_tables_render_the_shipped_findings_page(tmp_path):
    """docs/findings/<grid>/results.csv (what the tutorials quote) is the data docs/findings.md was rendered
    from: rendering the page from those folders gives the page, word for word, and copies the tables along."""
    pytest.importorskip("seaborn")
    import json
    from pathlib import Path

    from glscl.lab.grids.findings import GRIDS, render

    root = Path(__file__).resolve().parents[1]
    docs = root / "docs"
    timings = json.loads((docs / "findings" / "timings.json").read_text())
    text = render(list(GRIDS), docs / "findings", tmp_path / "findings.md", root / "ablations" / "findings" / "claims.yaml", timings,
                  root / "benchmarks" / "results" / "threads.json")
    assert text == (docs / "findings.md").read_text()
    for g in GRIDS:
        assert (tmp_path / "findings" / g / "results.csv").read_bytes() == (docs / "findings" / g / "results.csv").read_bytes()
