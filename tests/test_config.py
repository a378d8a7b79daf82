"""Configuration validation and YAML round trip."""
import dataclasses

import pytest

from glscl.config import ConfigError, LossConfig, ModelConfig, RunConfig, build_config, describe, load_config, save_config


def test_paper_defaults():
    c = RunConfig()
    assert (c.model.num_frames, c.model.max_words, c.model.num_queries, c.model.global_tau, c.model.local_weight) == (12, 32, 8, 3.0, 0.5)
    assert (c.train.batch_size, c.train.lr, c.train.weight_decay, c.train.betas, c.train.eps) == (128, 1e-4, 0.2, (0.9, 0.98), 1e-6)
    assert c.train.lr * c.train.backbone_lr_coef == pytest.approx(1e-7)


@pytest.mark.parametrize("kwargs, words", [
    (dict(num_queries=0), ["model.num_queries", ">= 1"]),
    (dict(num_queries="8"), ["model.num_queries", "int"]),
    (dict(num_queries=2.5), ["model.num_queries", "int"]),
    (dict(interaction="both+"), ["model.interaction", "global"]),
    (dict(shared_queries="yes"), ["model.shared_queries", "bool"]),
    (dict(dropout=1.5), ["model.dropout", "<= 1"]),
])
def test_bad_values_give_one_line_errors_naming_the_field(kwargs, words):
    with pytest.raises(ConfigError) as e:
        ModelConfig(**kwargs)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="unknown config key 'model.num_querys'"):
        RunConfig.from_dict({"model": {"num_querys": 4}})
    with pytest.raises(ConfigError, match="unknown config key 'lr'"):
        build_config(RunConfig(), ["lr=3"])


def test_yaml_round_trip(tmp_path):
    c = build_config(RunConfig(), ["model.num_queries=4", "loss.variant=released", "train.betas=[0.9, 0.99]",
                                      "model.pretrained=null"])
    assert c.model.num_queries == 4 and c.loss.variant == "released" and c.train.betas == (0.9, 0.99)
    assert c.model.pretrained is None
    save_config(c, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == c


def test_load_config_errors_name_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("loss:\n  idl_weight: -1\n")
    with pytest.raises(ConfigError, match="bad.yaml: loss.idl_weight = -1.0 is out of range"):
        load_config(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_configs_are_frozen_and_every_field_documented():
    with pytest.raises(dataclasses.FrozenInstanceError):
        LossConfig().icl_weight = 3.0
    rows = describe()
    assert len(rows) > 40
    assert all(help_ for _, _, help_ in rows)
