"""The sweep file: its schema (`base`, `axes`, `overrides`, or `ablate`), read and checked into a Sweep, and
the repo-root paths it names."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.config import dotted_value, read_yaml, to_dict, yaml_text
from suite.errors import ConfigError
from suite.experiment import load_config, parse_override
from suite.methods import METHODS, ablation_methods

REPO = Path(__file__).resolve().parents[1]
SWEEP_KEYS = ("base", "axes", "overrides", "ablate")
ABLATE_KEYS = ("sources", "kinds", "methods", "where")


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file: one base config, the grids of settings to vary, and settings fixed for every run."""
    path: Path
    name: str                       # the file's stem: names the sweep's own log folder
    base: str                       # config file as written (relative paths: from the repo root)
    grids: tuple[dict[str, tuple], ...]  # each: dotted config key -> values, in file order
    overrides: dict[str, Any]       # dotted config key -> value, for every run
    ablate: "Ablate | None" = None  # an ablation sweep: base and grids are empty
    cli: tuple[str, ...] = ()       # the command line's `key=value` overrides (in `overrides` too)


@dataclass(frozen=True)
class Ablate:
    """`ablate:` of a sweep file: every kind of ablation of every finished result of another sweep
    (or of a runs folder)."""
    sources: str                    # a sweep file (its runs under --out) or a runs folder, as written
    kinds: tuple[str, ...]          # registered ablation methods: shuffle, reinit, invert
    methods: tuple[str, ...] = ()   # only sources of these methods (empty: every pruned source)
    where: tuple[tuple[str, tuple], ...] = ()  # only sources whose setting `key` is one of the values


def _where(path: Path, spec: Any) -> tuple[tuple[str, tuple], ...]:
    """`ablate.where`: dotted config key -> a value or a list of values, each key a known setting."""
    if not isinstance(spec, dict):
        raise sweep_error(path, "ablate.where: expected a mapping of settings to values, e.g. {prune.target_sparsity: [0.98]}")
    defaults = to_dict(load_config(None, []))
    out = []
    for key, values in spec.items():
        try:
            dotted_value(defaults, str(key))
        except KeyError:
            raise sweep_error(path, f"ablate.where: unknown setting '{key}'") from None
        one_list = isinstance(dotted_value(defaults, str(key)), list)  # prune.nm: [2, 4] is one value
        if one_list and isinstance(values, list) and not any(isinstance(v, list) for v in values):
            values = [values]
        values = tuple(values) if isinstance(values, list) else (values,)
        out.append((str(key), tuple(list(v) if isinstance(v, tuple) else v for v in values)))
    return tuple(out)


def sweep_error(path: Path, text: str) -> ConfigError:
    """The one-line error of a bad sweep file: its path, then what is wrong."""
    return ConfigError(f"{path}: {text}")


def base_path(base: str) -> Path:
    """The base config file: a relative path is read from the repo root, wherever the sweep runs."""
    return Path(base) if Path(base).is_absolute() else REPO / base


def load_sweep(path: str | Path, extra: list[str] = ()) -> Sweep:
    """Read and check a sweep file; `extra` are `key=value` overrides from the command line."""
    path = Path(path)
    tree = read_yaml(path, "sweep file")
    if not isinstance(tree, dict):
        raise sweep_error(path, f"expected a mapping with keys {', '.join(SWEEP_KEYS)}")
    for key in tree:
        if key not in SWEEP_KEYS:
            raise sweep_error(path, f"unknown key '{key}' (valid: {', '.join(SWEEP_KEYS)})")
    if "ablate" in tree:
        return _load_ablation_sweep(path, tree, extra)
    base = tree.get("base")
    if not isinstance(base, str) or not base:
        raise sweep_error(path, "base: expected the path of a config file, e.g. configs/quickstart.yaml")
    if not base_path(base).is_file():
        raise sweep_error(path, f"base: config file not found: {base} (relative paths start at the repo root)")

    axes_tree = tree.get("axes")
    if isinstance(axes_tree, dict):
        grids = (_grid(path, "axes", axes_tree),)
    elif isinstance(axes_tree, list) and axes_tree:
        grids = tuple(_grid(path, f"axes[{i}]", g) for i, g in enumerate(axes_tree))
    else:
        raise sweep_error(path, "axes: expected a mapping of config keys to lists of values (e.g. seed: [42, 123]), "
                          "or a list of such mappings")

    overrides = _overrides(path, tree, extra)
    for key in overrides:
        if any(key in grid for grid in grids):
            raise sweep_error(path, f"'{key}' is both an axis and a fixed override; keep one")
    return Sweep(path=path, name=path.stem, base=base, grids=grids, overrides=overrides, cli=tuple(extra))


def _overrides(path: Path, tree: dict, extra: list[str]) -> dict[str, Any]:
    overrides_tree = tree.get("overrides") or {}
    if not isinstance(overrides_tree, dict):
        raise sweep_error(path, "overrides: expected a mapping of config keys to values, e.g. train.epochs: 10")
    overrides = dict(overrides_tree)
    for text in extra:
        key, value = parse_override(text)
        overrides[key] = value
    for key in overrides:
        if not isinstance(key, str):
            raise sweep_error(path, f"overrides: key {key!r} is not a config key name")
    return overrides


def _load_ablation_sweep(path: Path, tree: dict, extra: list[str]) -> Sweep:
    """A sweep file with `ablate:` (and optional `overrides:`): no base, no axes (the sources bring
    their own settings)."""
    both = [k for k in ("base", "axes") if k in tree]
    if both:
        raise sweep_error(path, f"{both[0]}: an ablation sweep takes its settings from its sources; "
                          f"give either ablate or base and axes")
    spec = tree["ablate"]
    if not isinstance(spec, dict):
        raise sweep_error(path, "ablate: expected a mapping with sources, kinds and optionally methods and where")
    for key in spec:
        if key not in ABLATE_KEYS:
            raise sweep_error(path, f"ablate: unknown key '{key}' (valid: {', '.join(ABLATE_KEYS)})")
    sources = spec.get("sources")
    if not isinstance(sources, str) or not sources:
        raise sweep_error(path, "ablate.sources: expected a sweep file (e.g. configs/sweeps/quickstart.yaml) or a runs folder")
    kinds, methods = spec.get("kinds"), spec.get("methods", [])
    if not isinstance(kinds, list) or not kinds or any(k not in ablation_methods() for k in kinds):
        raise sweep_error(path, f"ablate.kinds: expected a list of {', '.join(ablation_methods())}, got {kinds!r}")
    if not isinstance(methods, list) or any(m not in METHODS for m in methods):
        raise sweep_error(path, f"ablate.methods: expected a list of registered methods, got {methods!r}")
    for key in ("method", "ablate.source"):
        if key in (tree.get("overrides") or {}) or any(t.split("=", 1)[0] == key for t in extra):
            raise sweep_error(path, f"overrides: {key} is set by ablate (kinds, sources)")
    return Sweep(path=path, name=path.stem, base="", grids=(), overrides=_overrides(path, tree, extra), cli=tuple(extra),
                 ablate=Ablate(sources=sources, kinds=tuple(kinds), methods=tuple(methods),
                               where=_where(path, spec.get("where", {}))))


def _grid(path: Path, where: str, tree: Any) -> dict[str, tuple]:
    """One grid: config key -> a non-empty list of distinct values."""
    if not isinstance(tree, dict) or not tree:
        raise sweep_error(path, f"{where}: expected a mapping of config keys to lists of values, got {tree!r}")
    grid: dict[str, tuple] = {}
    for key, values in tree.items():
        if not isinstance(key, str):
            raise sweep_error(path, f"{where}: key {key!r} is not a config key name")
        if not isinstance(values, list) or not values:
            raise sweep_error(path, f"{where}.{key}: expected a non-empty list of values, got {values!r}")
        seen = [format_value(v) for v in values]
        repeated = [v for v in seen if seen.count(v) > 1]
        if repeated:
            raise sweep_error(path, f"{where}.{key}: value {repeated[0]} is listed twice")
        grid[key] = tuple(values)
    return grid


def format_value(value: Any) -> str:
    """A value as run.py's `key=value` reads it back (YAML, one line): 1e30 -> 1.0e+30, 'yes' -> "'yes'"."""
    return yaml_text(value)



def relative_out(out: Path) -> str:
    """--out as run.py gets it: run.py works in the repo root, so relative to that when inside it."""
    try:
        return str(out.relative_to(REPO))
    except ValueError:
        return str(out)
