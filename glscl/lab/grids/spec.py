"""Grid files: parse, check and expand an ablation grid into its runs (no runs are executed here).

A grid file (YAML) names a base config and dotted config keys (the ones ``glscl train`` takes as
``key=value``)::

    description: what the grid asks
    base: embedded             # a preset (glscl/presets: embedded, embedded-short) or a config YAML,
                               # relative to the grid file; required
    prepare_world: true        # data.dataset=world: generate the world and pre-train the tiny CLIP first
    fixed:                     # settings shared by every run, on top of the base
      train.epochs: 10
    vary:                      # key -> list of values; the grid is their product
      model.interaction: [global, local, both]
      model.num_queries: [1, 4, 8, 16]
    irrelevant:                # keys that do not matter for some points: dropped there,
      - when: {model.interaction: global}            # so those points collapse into one run
        keys: [model.num_queries]                    # (the key keeps its fixed/base value)
    exclude:                   # points to leave out: every key of an entry must match
      - {model.interaction: local, model.num_queries: 1}
    seeds: [0, 1, 2, 3, 4]     # train.seed of each run; each seed once
    reference: {model.interaction: global}           # optional: the configuration reports pair every
                                                     # other one with, seed by seed (one grid point)
    workers: 2                 # runs at once per machine: each gets the machine's CPUs // workers
                               # (the CLI's --workers and --cpus-per-run win)
    metrics: [t2v_R@1, v2t_R@1, twin_accuracy]       # optional; the first is the headline metric

``when`` values may be a list (any of them matches). A key or value in ``irrelevant.when``,
``exclude`` or ``reference`` that matches no grid point (a typo) stops with one line naming it, and
so does a repeated seed or a reference that matches more than one configuration. Each run gets a stable id built from the
varying values it keeps and its seed, e.g. ``interaction=both,num_queries=4,seed=0`` (the last part
of a dotted key, or the whole key where two would clash). Runs are ordered seed-major (every
configuration of seed 0 first), so a grid stopped early already covers whole seeds. A run's config
is ``build_config(base, fixed + its values + train.seed)``.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glscl.config import ConfigError, describe, presets, read_yaml_mapping

GRID_KEYS = {"description", "base", "prepare_world", "fixed", "vary", "irrelevant", "exclude", "seeds", "workers", "metrics",
             "reference"}
DEFAULT_METRICS = ("t2v_R@1", "v2t_R@1", "twin_accuracy")


@dataclass
class GridSpec:
    """A parsed grid file (see the module docstring for the format)."""

    base: str = "embedded"
    description: str = ""
    prepare_world: bool = True
    fixed: dict[str, Any] = field(default_factory=dict)
    vary: dict[str, list] = field(default_factory=dict)
    irrelevant: list[dict] = field(default_factory=list)
    exclude: list[dict] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    workers: int = 1
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    reference: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def columns(self) -> dict[str, str]:
        """Varying dotted key -> its column name (the last part, or the whole key where two would clash)."""
        last = [k.split(".")[-1] for k in self.vary]
        return {k: (s if last.count(s) == 1 else k) for k, s in zip(self.vary, last)}

    def resolved_base(self) -> str:
        """``base`` as ``build_config`` takes it: a preset name, or a YAML path made absolute (relative to the grid file)."""
        if self.base in presets():
            return self.base
        path = Path(self.base)
        if not path.is_absolute() and self.source:
            path = Path(self.source).resolve().parent / path
        return str(path.resolve())


@dataclass(frozen=True)
class RunSpec:
    """One run of a grid: its id, the varying values it keeps, its seed and all its overrides."""

    run_id: str
    values: dict
    seed: int
    overrides: dict


def load_grid(path: str | Path) -> GridSpec:
    """Read and check a grid file; unknown grid or config keys stop with one line naming them."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file {path} does not exist")
    data = read_yaml_mapping(path, "a grid file's mapping (base, fixed, vary, seeds, ...)")
    unknown = set(data) - GRID_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown grid key(s) {sorted(unknown)}; known: {sorted(GRID_KEYS)}")
    if not isinstance(data.get("base"), str):
        raise ConfigError(f"{path}: 'base' is required: a preset ({', '.join(presets())}) or a config YAML file")
    spec = GridSpec(**{k: v for k, v in data.items() if v is not None}, source=str(path))
    spec.fixed, spec.vary = dict(spec.fixed), dict(spec.vary)
    known = {name for name, _, _ in describe()}
    where = f"{path}:"
    for section in ("fixed", "vary"):
        for key in getattr(spec, section):
            if key not in known:
                raise ConfigError(f"{where} {section}: unknown config key '{key}'")
    for key, values in spec.vary.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where} vary: '{key}' needs a non-empty list of values")
    if "train.seed" in spec.vary or "train.seed" in spec.fixed:
        raise ConfigError(f"{where} set seeds with 'seeds:', not train.seed")
    for rule in spec.irrelevant:
        if not (isinstance(rule, dict) and set(rule) == {"when", "keys"} and isinstance(rule["when"], dict)
                and isinstance(rule["keys"], list)):
            raise ConfigError(f"{where} each 'irrelevant' entry has exactly 'when' (key: value) and 'keys' (list)")
        for key in rule["keys"]:
            if key not in spec.vary:
                raise ConfigError(f"{where} irrelevant: '{key}' is not a varying key")
        _check_condition(spec, rule["when"], f"{where} irrelevant: when")
    for entry in spec.exclude:
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} each 'exclude' entry is a mapping (varying key: value)")
        _check_condition(spec, entry, f"{where} exclude:")
    if not spec.seeds or not isinstance(spec.seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool)
                                                                        for s in spec.seeds):
        raise ConfigError(f"{where} seeds must be a non-empty list of integers")
    repeated = sorted({s for s in spec.seeds if spec.seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"{where} seeds {spec.seeds}: {', '.join(map(str, repeated))} repeated (each seed runs once)")
    if not isinstance(spec.workers, int) or spec.workers < 1:
        raise ConfigError(f"{where} workers must be an integer >= 1")
    if spec.reference:
        _check_reference(spec, where)
    return spec


def _check_reference(spec: GridSpec, where: str) -> None:
    """``reference`` names varying keys and values that pick exactly one configuration of the grid."""
    if not isinstance(spec.reference, dict):
        raise ConfigError(f"{where} reference must be a mapping (varying key: value), e.g. {{model.interaction: global}}")
    _check_condition(spec, spec.reference, f"{where} reference:")
    points = [values for values in configurations(spec) if matches(values, spec.reference)]
    if len(points) != 1:
        found = "no configuration (one of its keys does not apply there)" if not points else \
            f"{len(points)} configurations; name more keys"
        raise ConfigError(f"{where} reference {spec.reference} matches {found}")


def _check_condition(spec: GridSpec, condition: dict, where: str) -> None:
    """Every key of an ``irrelevant.when`` or ``exclude`` entry varies, and every value it names is one
    of that key's values: a value that matches no grid point (a typo) stops the grid."""
    for key, want in condition.items():
        if key not in spec.vary:
            raise ConfigError(f"{where} '{key}' is not a varying key")
        for value in want if isinstance(want, list) else [want]:
            if not any(_same(value, v) for v in spec.vary[key]):
                raise ConfigError(f"{where} {key} = {value!r} matches no grid point ({key} varies over {spec.vary[key]})")


def _same(a: Any, b: Any) -> bool:
    """Equal as grid values: 1 == 1.0, but True is not 1."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def matches(values: dict, condition: dict) -> bool:
    """True when every key of ``condition`` has that value (or one of a list of values) in ``values``."""
    for key, want in condition.items():
        if key not in values:
            return False
        options = want if isinstance(want, list) else [want]
        if not any(_same(values[key], o) for o in options):
            return False
    return True


def format_value(value: Any) -> str:
    """A value as it appears in a run id (YAML spelling; path separators and spaces replaced)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, float):
        text = format(value, "g")
    else:
        text = str(value)
    return re.sub(r"[\s/\\:]+", "_", text)


def configurations(spec: GridSpec) -> list[dict]:
    """The grid's points (varying key -> value) in order, exclusions and irrelevant keys applied."""
    points, seen = [], set()
    for combo in itertools.product(*spec.vary.values()):
        values = dict(zip(spec.vary, combo))
        if any(matches(values, e) for e in spec.exclude):
            continue
        for rule in spec.irrelevant:
            if matches(values, rule["when"]):
                values = {k: v for k, v in values.items() if k not in rule["keys"]}
        key = tuple(values.items())
        if key not in seen:
            seen.add(key)
            points.append(values)
    return points


def expand(spec: GridSpec) -> list[RunSpec]:
    """All runs of the grid in a fixed order (seed-major): each configuration once per seed."""
    cols, points = spec.columns, configurations(spec)
    runs = []
    for seed in spec.seeds:
        for values in points:
            run_id = ",".join([f"{cols[k]}={format_value(v)}" for k, v in values.items()] + [f"seed={seed}"])
            runs.append(RunSpec(run_id, values, seed, {**spec.fixed, **values, "train.seed": seed}))
    return runs


def shard(runs: list, i: int, n: int) -> list:
    """Every n-th run starting at i (0 <= i < n): the shards of a grid partition it."""
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"shard {i}/{n}: need 0 <= i < n")
    return runs[i::n]


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n), checked."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise ConfigError(f"--shard {text!r}: expected i/n, e.g. 0/4")
    i, n = int(m.group(1)), int(m.group(2))
    shard([], i, n)
    return i, n
