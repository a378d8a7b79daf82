"""requirements.txt and environment.yml agree; the package ships its tiny model configs."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[name.lower().replace("_", "-")] = version
    return out


def test_environment_yml_agrees_with_requirements():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_entries = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert _pins(pip_entries) == req
    assert "python=3.11" in env["dependencies"]


def test_requirements_pin_a_matching_torch_torchvision_pair():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    pairs = {"2.14.1": "0.29.1", "2.9.1": "0.24.1"}
    assert pairs.get(req["torch"]) == req["torchvision"]


def test_tiny_model_configs_are_registered():
    import open_clip

    import glscl.model.backbone  # noqa: F401  (registers the configs)

    assert {"glscl-tiny", "glscl-small"} <= set(open_clip.list_models())
