"""Config YAML files: the presets, ``base:`` chains and configs layered left to right.

``glscl.config.build_config`` reads files through these functions (``glscl.config`` re-exports
``ConfigError``, ``presets``, ``PRESET_DIR`` and ``read_yaml_mapping``). A file is a mapping of config
sections; its ``base:`` names a preset, another file (relative to it) or a list of them, merged
underneath. Layering ``A`` then ``B`` puts ``A`` in the place of the preset ``B``'s chain starts from
(``B`` alone starts from it): ``didemo`` then ``released`` is the released recipe on DiDeMo.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the field."""


PRESET_DIR = Path(__file__).parent / "presets"


def presets() -> list[str]:
    """Names of the presets shipped in ``glscl/presets`` (YAML files, e.g. ``embedded``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def resolve_config_file(base: str | Path) -> Path:
    """A preset name ('embedded') or a YAML file."""
    if isinstance(base, str) and (PRESET_DIR / f"{base}.yaml").is_file():
        return PRESET_DIR / f"{base}.yaml"
    path = Path(base)
    if not path.is_file():
        if path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
            raise ConfigError(f"config file {path} does not exist")
        raise ConfigError(f"config '{base}' is neither a preset ({', '.join(presets())}) nor an existing YAML file")
    return path


def read_yaml_mapping(path: Path, what: str) -> dict:
    """A YAML file that holds a mapping (an empty file: {}); otherwise one-line ``ConfigError``s naming
    the file, with line and column for syntax errors. ``what`` says what the mapping should be."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML{yaml_where(e)} ({yaml_problem(e)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected {what}, got {type(data).__name__}")
    return data


def read_config_file(path: Path, start: dict | None = None, seen: tuple[Path, ...] = ()) -> dict:
    """A config file as a nested dict, its ``base:`` (a preset, a file, or a list of them) merged underneath.

    ``start``: the settings of the configs layered before this one (see ``build_config``). They take
    the place of the preset this file's ``base:`` chain starts from, or lie underneath a file without one.
    """
    if path.resolve() in seen:
        raise ConfigError(f"{path}: 'base' chain loops back to {path}")
    seen = seen + (path.resolve(),)
    data = read_yaml_mapping(path, "a mapping of config sections")
    base = data.pop("base", None)
    if base is None:
        return _merge(start or {}, data)
    if isinstance(base, list):
        return _merge(compose_files([_base_path(b, path) for b in base], start, seen), data)
    parent = _base_path(base, path)
    if start is not None and "base" not in read_yaml_mapping(parent, "a mapping of config sections"):
        return _merge(start, data)  # the chain's starting preset, replaced by the configs before this one
    return _merge(read_config_file(parent, start, seen), data)


def _base_path(base: Any, path: Path) -> Path:
    """The file a ``base:`` entry of ``path`` names: a preset, or a YAML file relative to ``path``'s folder."""
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base = {base!r} is not a preset name or a file (or a list of them)")
    return resolve_config_file(base) if (PRESET_DIR / f"{base}.yaml").is_file() else resolve_config_file(path.parent / base)


def compose_files(paths: list[Path], start: dict | None = None, seen: tuple[Path, ...] = ()) -> dict:
    """Config files layered left to right, each over the ones before it (``read_config_file``'s ``start``)."""
    for path in paths:
        start = read_config_file(path, start, seen)
    return start or {}


def yaml_where(e: yaml.YAMLError) -> str:
    """' at line L, column C' of a YAML error (1-based), when it has a position."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def yaml_problem(e: yaml.YAMLError) -> str:
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return " ".join(str(problem).split())
