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
    text = render(list(GRIDS), docs / "findings", tmp_path / "findings.md", root / "ablations" / "findings" / "claims.yaml", timings)
    assert text == (docs / "findings.md").read_text()
    for g in GRIDS:
        assert (tmp_path / "findings" / g / "results.csv").read_bytes() == (docs / "findings" / g / "results.csv").read_bytes()
