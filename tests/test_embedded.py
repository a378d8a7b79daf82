"""The embedded world's one home (glscl.engine.embedded): one meaning of quick for the demo, the grids and the tutorials."""
import dataclasses

import pytest

from glscl.config import build_config
from glscl.data.world import WorldConfig
from glscl.engine import demo, embedded


def test_the_quick_world_is_the_shipped_world_at_the_small_size():
    for world in ("scenes", "objects"):
        full, quick = embedded.world_settings(world), embedded.world_settings(world, quick=True)
        assert (quick.n_train, quick.n_val, quick.n_test) == (120, 40, 40)
        assert dataclasses.replace(quick, n_train=full.n_train, n_val=full.n_val, n_test=full.n_test) == full
    assert embedded.world_settings("objects") == WorldConfig()  # the objects world is the generator's default
    assert embedded.pretrain_config(quick=True).steps == 20 and embedded.pretrain_config().steps == 400


def test_quick_means_the_same_for_the_demo_and_for_a_grid_run():
    """demo_config(quick=True) and quick_config(demo_config()) differ only where the quick world lives."""
    for world in ("scenes", "objects"):
        full = embedded.demo_config("data/w", out="runs/x", world=world)
        by_demo = embedded.demo_config("data/w-quick", out="runs/x", quick=True, world=world)
        by_grid = embedded.quick_config(full)
        assert by_grid == by_demo
        assert (by_demo.train.epochs, by_demo.train.eval_every) == (2, 1) != (full.train.epochs, full.train.eval_every)
        assert by_demo.data.root == "data/w-quick" and by_demo.model.pretrained == "data/w-quick/clip-tiny-pretrained.safetensors"


def test_the_short_preset_changes_only_the_schedule():
    assert embedded.short_schedule() == {"train.epochs": 2, "train.eval_every": 1}
    assert build_config(embedded.SHORT_PRESET) == build_config("embedded", {"train.epochs": 2, "train.eval_every": 1})


@pytest.mark.parametrize("argv, root, out", [
    ([], "data/world", "runs/demo"), (["--quick"], "data/world-quick", "runs/demo-quick"),
    (["--world", "objects", "--quick"], "data/world-objects-quick", "runs/demo-objects-quick"),
    (["--quick", "--root", "w", "--out", "o"], "w", "o")])
def test_a_quick_demo_has_its_own_folders(tmp_path, monkeypatch, argv, root, out):
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(demo, "_demo", lambda args: seen.append((args.root, args.out, args.quick)) or [])
    demo.main(argv)
    assert seen == [(root, out, "--quick" in argv)]
