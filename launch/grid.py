"""A grid sweep as runs of suite/run.py: the cartesian product of each grid's axes, points that share a
run folder merged, and each chain method (LTH) run once at its highest sparsity."""
from __future__ import annotations

import dataclasses
import functools
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from launch.sweepfile import Sweep, base_path, format_value, sweep_error
from suite.errors import ConfigError
from suite.experiment import Config, load_config, override_text, run_dir
from suite.methods import METHODS, PruningMethod, build_method, method_class


@functools.cache
def chain_methods() -> tuple[str, ...]:
    """Methods that train several rounds in one run (`rounds() > 1` at their defaults), each round
    a sparsity point of its own (LTH)."""
    # a class that keeps the one-round default is no chain (and an ablation has no config without its source)
    return tuple(name for name in METHODS if method_class(name).rounds is not PruningMethod.rounds
                 and method_class(name)(load_config(None, [], method=name)).rounds() > 1)


@dataclass(frozen=True)
class Run:
    """One call of suite/run.py."""
    index: int                      # position in the sweep: the SLURM array index is counted anew
    cfg: Config
    dir: Path                       # run_dir(cfg, out)
    args: tuple[str, ...]           # run.py's arguments (after `suite/run.py`)
    point: dict                     # the axis values that made it
    covers: tuple[float, ...] = ()  # chain methods: the requested sparsities this one run yields

    @property
    def label(self) -> str:
        """`<experiment folder>/seed_<seed>`: unique within one runs folder."""
        return f"{self.dir.parent.name}/{self.dir.name}"


@dataclass(frozen=True)
class Expansion:
    runs: list[Run]
    points: int                     # grid points before merging
    merged: dict[str, list[dict]] = field(default_factory=dict)  # run label -> other points it stands for
    # an ablation sweep: each source folder and its state; each (kind, source) that cannot run (yet), why
    sources: list[tuple[Path, str]] = field(default_factory=list)
    held_back: dict[str, list[str]] = field(default_factory=dict)  # reason -> "<kind> of <source>"


def _point_text(point: dict) -> str:
    return " ".join(f"{k}={format_value(v)}" for k, v in point.items())



def expand_grid(sweep: Sweep, out: str | Path, out_arg: str | None = None) -> Expansion:
    """The grids as runs: the cartesian product of each grid's axes, then points that land in one run folder
    merged (e.g. dense ignores prune.target_sparsity), then each LTH chain kept only at its highest
    sparsity (its rounds yield the lower points). `out` locates the folders; `out_arg` is the --out
    that run.py gets (default: `out`)."""
    config_file = base_path(sweep.base)
    points = [dict(zip(grid, values)) for grid in sweep.grids for values in itertools.product(*grid.values())]
    by_dir: dict[Path, Run] = {}
    merged: dict[str, list[dict]] = {}
    for point in points:
        settings = {**sweep.overrides, **point}
        method = settings.pop("method", None)
        texts = [override_text(k, v) for k, v in settings.items()]
        try:
            cfg = load_config(config_file, texts, None if method is None else str(method))
        except ConfigError as e:
            raise sweep_error(sweep.path, f"({_point_text(point)}): {e}") from None
        folder = run_dir(cfg, out)
        if folder in by_dir:
            merged.setdefault(by_dir[folder].label, []).append(point)
            continue
        # --no-progress: output goes to log files, where a progress bar is noise
        args = ["--config", sweep.base, "--out", str(out) if out_arg is None else out_arg, "--no-progress"]
        args += ["--method", cfg.method] if method is not None else []
        by_dir[folder] = Run(index=len(by_dir), cfg=cfg, dir=folder, args=tuple(args + texts), point=point)
    runs = _collapse_chains(list(by_dir.values()), sweep, out, merged)
    return Expansion(runs=[dataclasses.replace(r, index=i) for i, r in enumerate(runs)],
                     points=len(points), merged=merged)


def _collapse_chains(runs: list[Run], sweep: Sweep, out: str | Path, merged: dict) -> list[Run]:
    """Keep one run per chain-method experiment (all settings but the target sparsity): the one at the
    highest target; it records every requested target it stands for in `covers`."""
    def chain(cfg: Config) -> Path:  # the folder the experiment would have at sparsity 0
        return run_dir(dataclasses.replace(cfg, prune=dataclasses.replace(cfg.prune, target_sparsity=0.0)), out)

    # a chain method trains every round in one run; round r's result is its own sparsity point
    groups: dict[Path, list[Run]] = {}
    for run in runs:
        if run.cfg.method in chain_methods():
            groups.setdefault(chain(run.cfg), []).append(run)
    kept = []
    for run in runs:
        if run.cfg.method not in chain_methods():
            kept.append(run)
            continue
        group = groups[chain(run.cfg)]
        top = max(group, key=lambda r: r.cfg.prune.target_sparsity)
        if run is top:
            kept.append(dataclasses.replace(run, covers=tuple(sorted(r.cfg.prune.target_sparsity for r in group))))
        else:  # this point, and any that shared its folder, now stand with the chain
            merged.setdefault(top.label, []).extend([run.point, *merged.pop(run.label, [])])
    return kept



def chain_sparsities(cfg: Config) -> list[float]:
    """Each round's target sparsity in a chain method's run, asked of the method itself (round 0 is
    the dense training before the first prune)."""
    method = build_method(cfg)
    return [method.target_at(r, float(cfg.train.epochs)) for r in range(method.rounds())]


def describe_chain(run: Run) -> str:
    """Which requested sparsities this chain yields, and from which round."""
    rounds = chain_sparsities(run.cfg)
    parts = []
    for s in run.covers:
        r = min(range(len(rounds)), key=lambda i: abs(rounds[i] - s))
        parts.append(f"{s:g} <- round {r} ({rounds[r]:.4f})")
    return f"chain of {len(rounds)} rounds covers " + ", ".join(parts)
