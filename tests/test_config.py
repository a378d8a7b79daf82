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


def _float_fields():
    """(section class, field name) of every float field, Optional[float] and float tuples included."""
    import typing

    from glscl.config import DataConfig, PEMConfig, TrainConfig
    out = []
    for cls in (ModelConfig, LossConfig, DataConfig, TrainConfig, PEMConfig):
        for name, tp in typing.get_type_hints(cls).items():
            if name != "section" and "float" in str(tp):
                out.append((cls, name))
    return out


FLOAT_FIELDS = _float_fields()


@pytest.mark.parametrize("cls, name", FLOAT_FIELDS, ids=[f"{c.section}.{n}" for c, n in FLOAT_FIELDS])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_every_float_field_refuses_non_finite_numbers(cls, name, bad):
    default = getattr(cls(), name)
    value = tuple(bad for _ in default) if isinstance(default, tuple) else bad
    with pytest.raises(ConfigError) as e:
        cls(**{name: value})
    msg = str(e.value)
    assert msg.startswith(f"{cls.section}.{name} = ") and "not a finite number" in msg and "\n" not in msg


def test_float_fields_are_all_found():
    names = {f"{c.section}.{n}" for c, n in FLOAT_FIELDS}
    assert {"model.global_tau", "model.dropout", "train.lr", "train.betas", "data.sample_fps", "pem.temperature"} <= names


def test_nan_from_yaml_is_refused_naming_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"^model\.global_tau = nan is not a finite number$"):
        build_config(RunConfig(), ["model.global_tau=.nan"])
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: .nan\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: train\.lr = nan is not a finite number"):
        load_config(p)


@pytest.mark.parametrize("overrides, message", [
    (["train.betas=[1.0, 0.9]"], r"train\.betas = \[1\.0, 0\.9\] is out of range: each must be in \[0, 1\)"),
    (["device=gpu"], r"device = 'gpu' is not a device"),
    (["device=cuda:x"], r"device = 'cuda:x' is not a device"),
    (["data.video_ext=mp4"], r"data\.video_ext = 'mp4' is not an extension like '\.mp4'"),
    (["data.video_ext=.m/4"], r"data\.video_ext = '\.m/4' is not an extension"),
    (["train.betas=[0.9"], r"override train\.betas: '\[0\.9' is not a valid YAML value at line 1, column 5"),
    (["model=3"], r"'model' is a config section, not a field"),
])
def test_cross_field_and_format_checks(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_config(RunConfig(), overrides)


def test_accepted_devices_and_video_ext():
    for device in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert build_config(RunConfig(), {"device": device}).device == device
    assert build_config(RunConfig(), {"data.video_ext": ".mp4"}).data.video_ext == ".mp4"
    assert RunConfig().data.video_ext is None


def test_invalid_yaml_names_line_and_column(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  num_queries: 4\n  dropout: [0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML at line 4, column 1 \(") as e:
        load_config(p)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("base, override, word", [
    ("released", "loss.icl_weight=0.5", "loss.icl_weight is not read under loss.variant=released"),
    ("released", "loss.idl_weight=0.0", "loss.idl_weight is not read under loss.variant=released"),
    ("embedded", "loss.released_beta=0.005", "loss.released_beta is not read under loss.variant=paper"),
    ("embedded", "loss.released_margin=0.2", "loss.released_margin is not read under loss.variant=paper"),
])
def test_an_override_the_loss_variant_does_not_read_is_refused(base, override, word):
    with pytest.raises(ConfigError, match=word) as e:
        build_config(base, [override])
    assert "\n" not in str(e.value)
    # the same weight is read, and kept, under the variant that reads it
    other = build_config(base, [override, f"loss.variant={'paper' if base == 'released' else 'released'}"])
    key, value = override.split("=")
    assert getattr(other.loss, key.split(".")[1]) == float(value)


def test_presets_may_carry_both_variants_weights():
    # the benchmark presets set the released scripts' weights; read only with --config released
    paper, released = build_config("didemo"), build_config(["didemo", "released"])
    assert (paper.loss.variant, released.loss.variant) == ("paper", "released")
    assert paper.loss.released_beta == released.loss.released_beta == 0.005
