"""Expand a sweep file into runs of suite/run.py and run them: one after another, on N GPUs, as
Accelerate DDP jobs, or as a SLURM job array.

    python launch/sweep.py configs/sweeps/quickstart.yaml [key=value ...] [--out runs]
        [--backend local|accelerate|slurm|print] [--dry-run] [--gpus N] [--jobs N] [--submit]
        [--retry-failed]

A run's folder (suite.config.run_dir) is the only state: finished runs (result.json) are skipped, an
interrupted run resumes from its checkpoint when run.py sees it again, a failed one (failed.json)
is left alone unless --retry-failed, and a result.json that does not parse or lacks a field is reported
and run again. Exit (suite.results): 0 every run finished, 1 some run failed (or an unexpected error:
one line, the traceback in <out>/sweeps/<name>/error.log), 2 bad input, 75 interrupted (run the same
command again to go on).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python launch/sweep.py` works without installing the package
    sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from suite.config import (Config, ConfigError, dotted_value, load_config, parse_override, read_yaml,  # noqa: E402
                          run_dir, to_dict)
from suite.results import (EXIT_BAD_INPUT, EXIT_CTRL_C, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_LOCKED,  # noqa: E402
                           RunFolder, check_output_dir, crash_line, lock_held, moved_aside)
from suite.threads import CORES_ENV, available_cores  # noqa: E402
from suite.methods import METHODS, PruningMethod, SourceError, ablation_methods, dense_methods, method_class  # noqa: E402

SWEEP_KEYS = ("base", "axes", "overrides", "ablate")
ABLATE_KEYS = ("sources", "kinds", "methods", "where")
BACKENDS = ("local", "accelerate", "slurm", "print")
SLURM_TEMPLATE = REPO / "launch" / "slurm" / "sweep_array.sbatch"


@functools.cache
def chain_methods() -> tuple[str, ...]:
    """Methods that train several rounds in one run (`rounds() > 1` at their defaults), each round
    a sparsity point of its own (LTH)."""
    # a class that keeps the one-round default is no chain (and an ablation has no config without its source)
    return tuple(name for name in METHODS if method_class(name).rounds is not PruningMethod.rounds
                 and method_class(name)(load_config(None, [], method=name)).rounds() > 1)


# --- the sweep file ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file: one base config, the grids of settings to vary, and settings fixed for every run."""
    path: Path
    name: str                       # the file's stem: names the sweep's own log folder
    base: str                       # config file as written (relative paths: from the repo root)
    grids: tuple[dict[str, tuple], ...]  # each: dotted config key -> values, in file order
    overrides: dict[str, Any]       # dotted config key -> value, for every run
    ablate: "Ablate | None" = None  # an ablation sweep: base and grids are empty


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
        raise _fail(path, "ablate.where: expected a mapping of settings to values, e.g. {prune.target_sparsity: [0.98]}")
    defaults = to_dict(load_config(None, []))
    out = []
    for key, values in spec.items():
        try:
            dotted_value(defaults, str(key))
        except KeyError:
            raise _fail(path, f"ablate.where: unknown setting '{key}'") from None
        values = tuple(values) if isinstance(values, list) else (values,)
        out.append((str(key), tuple(list(v) if isinstance(v, tuple) else v for v in values)))
    return tuple(out)


def _fail(path: Path, text: str) -> ConfigError:
    return ConfigError(f"{path}: {text}")


def base_path(base: str) -> Path:
    """The base config file: a relative path is read from the repo root, wherever the sweep runs."""
    return Path(base) if Path(base).is_absolute() else REPO / base


def load_sweep(path: str | Path, extra: list[str] = ()) -> Sweep:
    """Read and check a sweep file; `extra` are `key=value` overrides from the command line."""
    path = Path(path)
    tree = read_yaml(path, "sweep file")
    if not isinstance(tree, dict):
        raise _fail(path, f"expected a mapping with keys {', '.join(SWEEP_KEYS)}")
    for key in tree:
        if key not in SWEEP_KEYS:
            raise _fail(path, f"unknown key '{key}' (valid: {', '.join(SWEEP_KEYS)})")
    if "ablate" in tree:
        return _load_ablation_sweep(path, tree, extra)
    base = tree.get("base")
    if not isinstance(base, str) or not base:
        raise _fail(path, "base: expected the path of a config file, e.g. configs/quickstart.yaml")
    if not base_path(base).is_file():
        raise _fail(path, f"base: config file not found: {base} (relative paths start at the repo root)")

    axes_tree = tree.get("axes")
    if isinstance(axes_tree, dict):
        grids = (_grid(path, "axes", axes_tree),)
    elif isinstance(axes_tree, list) and axes_tree:
        grids = tuple(_grid(path, f"axes[{i}]", g) for i, g in enumerate(axes_tree))
    else:
        raise _fail(path, "axes: expected a mapping of config keys to lists of values (e.g. seed: [42, 123]), "
                          "or a list of such mappings")

    overrides = _overrides(path, tree, extra)
    for key in overrides:
        if any(key in grid for grid in grids):
            raise _fail(path, f"'{key}' is both an axis and a fixed override; keep one")
    return Sweep(path=path, name=path.stem, base=base, grids=grids, overrides=overrides)


def _overrides(path: Path, tree: dict, extra: list[str]) -> dict[str, Any]:
    overrides_tree = tree.get("overrides") or {}
    if not isinstance(overrides_tree, dict):
        raise _fail(path, "overrides: expected a mapping of config keys to values, e.g. train.epochs: 10")
    overrides = dict(overrides_tree)
    for text in extra:
        key, value = parse_override(text)
        overrides[key] = value
    for key in overrides:
        if not isinstance(key, str):
            raise _fail(path, f"overrides: key {key!r} is not a config key name")
    return overrides


def _load_ablation_sweep(path: Path, tree: dict, extra: list[str]) -> Sweep:
    """A sweep file with `ablate:` (and optional `overrides:`): no base, no axes (the sources bring
    their own settings)."""
    both = [k for k in ("base", "axes") if k in tree]
    if both:
        raise _fail(path, f"{both[0]}: an ablation sweep takes its settings from its sources; "
                          f"give either ablate or base and axes")
    spec = tree["ablate"]
    if not isinstance(spec, dict):
        raise _fail(path, "ablate: expected a mapping with sources, kinds and optionally methods and where")
    for key in spec:
        if key not in ABLATE_KEYS:
            raise _fail(path, f"ablate: unknown key '{key}' (valid: {', '.join(ABLATE_KEYS)})")
    sources = spec.get("sources")
    if not isinstance(sources, str) or not sources:
        raise _fail(path, "ablate.sources: expected a sweep file (e.g. configs/sweeps/quickstart.yaml) or a runs folder")
    from suite.methods import METHODS
    kinds, methods = spec.get("kinds"), spec.get("methods", [])
    if not isinstance(kinds, list) or not kinds or any(k not in ablation_methods() for k in kinds):
        raise _fail(path, f"ablate.kinds: expected a list of {', '.join(ablation_methods())}, got {kinds!r}")
    if not isinstance(methods, list) or any(m not in METHODS for m in methods):
        raise _fail(path, f"ablate.methods: expected a list of registered methods, got {methods!r}")
    for key in ("method", "ablate.source"):
        if key in (tree.get("overrides") or {}) or any(t.split("=", 1)[0] == key for t in extra):
            raise _fail(path, f"overrides: {key} is set by ablate (kinds, sources)")
    return Sweep(path=path, name=path.stem, base="", grids=(), overrides=_overrides(path, tree, extra),
                 ablate=Ablate(sources=sources, kinds=tuple(kinds), methods=tuple(methods),
                               where=_where(path, spec.get("where", {}))))


def _grid(path: Path, where: str, tree: Any) -> dict[str, tuple]:
    """One grid: config key -> a non-empty list of distinct values."""
    if not isinstance(tree, dict) or not tree:
        raise _fail(path, f"{where}: expected a mapping of config keys to lists of values, got {tree!r}")
    grid: dict[str, tuple] = {}
    for key, values in tree.items():
        if not isinstance(key, str):
            raise _fail(path, f"{where}: key {key!r} is not a config key name")
        if not isinstance(values, list) or not values:
            raise _fail(path, f"{where}.{key}: expected a non-empty list of values, got {values!r}")
        seen = [format_value(v) for v in values]
        repeated = [v for v in seen if seen.count(v) > 1]
        if repeated:
            raise _fail(path, f"{where}.{key}: value {repeated[0]} is listed twice")
        grid[key] = tuple(values)
    return grid


def format_value(value: Any) -> str:
    """A value as run.py's `key=value` reads it back (YAML, one line): 1e30 -> 1.0e+30, 'yes' -> "'yes'"."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
    return text[:-len("\n...")] if text.endswith("\n...") else text  # drop YAML's end-of-document mark


# --- grid expansion ----------------------------------------------------------------------------

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


def expand(sweep: Sweep, out: str | Path, out_arg: str | None = None) -> Expansion:
    """The grids as runs: the cartesian product of each grid's axes, then points that land in one run folder
    merged (e.g. dense ignores prune.target_sparsity), then each LTH chain kept only at its highest
    sparsity (its rounds yield the lower points). `out` locates the folders; `out_arg` is the --out
    that run.py gets (default: `out`). An ablation sweep: see `expand_ablations`."""
    if sweep.ablate is not None:
        return expand_ablations(sweep, out, out_arg)
    config_file = base_path(sweep.base)
    points = [dict(zip(grid, values)) for grid in sweep.grids for values in itertools.product(*grid.values())]
    by_dir: dict[Path, Run] = {}
    merged: dict[str, list[dict]] = {}
    for point in points:
        settings = {**sweep.overrides, **point}
        method = settings.pop("method", None)
        texts = [f"{k}={format_value(v)}" for k, v in settings.items()]
        try:
            cfg = load_config(config_file, texts, None if method is None else str(method))
        except ConfigError as e:
            raise _fail(sweep.path, f"({_point_text(point)}): {e}") from None
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


NOT_FINISHED = "source not finished: run its sweep first"
NOT_APPLICABLE = "does not apply to its source"


def ablation_sources(sweep: Sweep, out: str | Path) -> list[Path]:
    """The result folders an ablation sweep ablates, finished or not: each run of the source sweep under
    `out` (an LTH chain: the round folder of each sparsity it covers), or each seed folder of a runs
    folder (an LTH chain: its final result). Dense runs and ablations are never sources; `methods`
    keeps only sources of those methods, `where` only those whose settings match."""
    spec = sweep.ablate

    def keep(method: str) -> bool:
        return method not in dense_methods() + ablation_methods() and (not spec.methods or method in spec.methods)

    def matches(tree: dict) -> bool:
        try:
            return all(dotted_value(tree, key) in values for key, values in spec.where)
        except KeyError:
            return False

    source = base_path(spec.sources) if spec.sources.endswith((".yaml", ".yml")) else Path(spec.sources)
    found: list[Path] = []
    if source.suffix in (".yaml", ".yml"):
        if not source.is_file():
            raise _fail(sweep.path, f"ablate.sources: sweep file not found: {spec.sources} (relative paths start "
                                    f"at the repo root)")
        inner = load_sweep(source)
        if inner.ablate is not None:
            raise _fail(sweep.path, f"ablate.sources: {spec.sources} is itself an ablation sweep")
        for run in expand(inner, out).runs:
            if not keep(run.cfg.method) or not matches(to_dict(run.cfg)):
                continue
            if run.covers:  # the rounds that stand for the requested sparsities
                rounds = chain_sparsities(run.cfg)
                found += [run.dir / f"round_{min(range(len(rounds)), key=lambda i: abs(rounds[i] - s))}"
                          for s in run.covers]
            else:
                found.append(run.dir)
    else:
        if not source.is_dir():
            raise _fail(sweep.path, f"ablate.sources: {spec.sources} is neither a sweep file nor a runs folder")
        for folder in sorted(source.glob("*/seed_*")):
            if moved_aside(folder.parent.name) or moved_aside(folder.name) or not folder.is_dir():
                continue
            try:
                tree = json.loads((folder / "config.json").read_text())
                method = tree["method"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not a run folder of this suite
            if keep(method) and matches(tree):
                found.append(folder)
    return list(dict.fromkeys(found))


def expand_ablations(sweep: Sweep, out: str | Path, out_arg: str | None = None) -> Expansion:
    """Every kind of `ablate.kinds` for every finished source (ablation_sources): one run each, under
    the source's own settings plus the sweep's overrides. A source not finished yet, and a kind that
    does not apply to its source (invert of a method without scores at init), are held back with the
    reason; two sources with one mask (an LTH seed folder and its last round) run once."""
    spec = sweep.ablate
    out_text = str(out) if out_arg is None else out_arg
    texts = [f"{k}={format_value(v)}" for k, v in sweep.overrides.items()]
    sources = ablation_sources(sweep, out)
    by_dir: dict[Path, Run] = {}
    merged: dict[str, list[dict]] = {}
    states: list[tuple[Path, str]] = []
    held_back: dict[str, list[str]] = {}
    for folder in sources:
        status = RunFolder(folder).status()
        states.append((folder, status.state + (f" ({status.detail})" if status.detail else "")))
        for kind in spec.kinds:
            point = {"method": kind, "ablate.source": str(folder)}
            if status.state != "finished":
                held_back.setdefault(NOT_FINISHED, []).append(f"{kind} of {folder}")
                continue
            try:
                cfg = load_config(None, [f"ablate.source={folder}", *texts], kind)
            except SourceError as e:
                held_back.setdefault(NOT_APPLICABLE, []).append(f"{kind} of {folder}: {e}")
                continue
            except ConfigError as e:
                raise _fail(sweep.path, f"({kind} of {folder}): {e}") from None
            run_folder = run_dir(cfg, out)
            if run_folder in by_dir:
                merged.setdefault(by_dir[run_folder].label, []).append(point)
                continue
            args = ["--out", out_text, "--no-progress", "--method", kind, f"ablate.source={_relative_out(folder)}",
                    *texts]
            by_dir[run_folder] = Run(index=len(by_dir), cfg=cfg, dir=run_folder, args=tuple(args), point=point)
    return Expansion(runs=list(by_dir.values()), points=len(sources) * len(spec.kinds), merged=merged,
                     sources=states, held_back=held_back)


def chain_sparsities(cfg: Config) -> list[float]:
    """Each round's target sparsity in a chain method's run, asked of the method itself (round 0 is
    the dense training before the first prune)."""
    from suite.methods import build_method
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


# --- what a run folder says --------------------------------------------------------------------

STATES = ("done", "running", "failed", "invalid", "partial", "pending")


@dataclass(frozen=True)
class Status:
    state: str        # done | running | failed | invalid | partial | pending
    detail: str = ""


def failure_reason(folder: Path) -> str | None:
    """The reason in `<folder>/failed.json`, or None when there is none."""
    return RunFolder(folder).failure_reason()


def run_status(folder: Path) -> Status:
    """The state of a run folder, as suite.results.RunFolder reads it ("finished" is "done" here)."""
    status = RunFolder(folder).status()
    return Status("done" if status.state == "finished" else status.state, status.detail)


# --- commands ----------------------------------------------------------------------------------

def run_command(run: Run) -> list[str]:
    """`python suite/run.py ...` for one process (CUDA_VISIBLE_DEVICES picks its GPU)."""
    return ["python", "suite/run.py", *run.args]


def accelerate_processes(gpus: int | None) -> int:
    """The processes of one accelerate-backend run: --gpus N, else every visible GPU, else 2 on the CPU."""
    import torch
    if gpus:
        return gpus
    if not torch.cuda.is_available():
        return 2
    return len(visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count()))


def accelerate_command(run: Run, processes: int, gpus_present: bool) -> tuple[list[str], dict[str, str]]:
    """`accelerate launch ... suite/run.py ...` and the environment it needs. With no GPU the processes
    form a gloo group on the CPU: Accelerate needs ACCELERATE_USE_CPU=1 and --multi_gpu for that,
    else each process would train alone."""
    if gpus_present:
        config = "single_gpu.yaml" if processes == 1 else "one_node_8gpu.yaml"
        flags = ["--num_processes", str(processes)]
        env: dict[str, str] = {}
    else:
        config = "cpu_2proc.yaml"
        flags = ["--multi_gpu" if processes > 1 else "--cpu", "--num_processes", str(processes)]
        env = {"ACCELERATE_USE_CPU": "1"}
    argv = ["accelerate", "launch", "--config_file", f"launch/accelerate/{config}", *flags, "suite/run.py", *run.args]
    return argv, env


def executable(argv: list[str]) -> list[str]:
    """The argv to start: `python` and `accelerate launch` run under this very interpreter."""
    if argv[:2] == ["accelerate", "launch"]:
        return [sys.executable, "-m", "accelerate.commands.launch", *argv[2:]]
    if argv[:1] == ["python"]:
        return [sys.executable, *argv[1:]]
    return list(argv)


def shell_line(argv: list[str], env: dict[str, str] | None = None) -> str:
    prefix = [f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()]
    return " ".join(prefix + [shlex.quote(a) for a in argv])


def visible_gpus(visible: str | None, device_count: int) -> list[str]:
    """The GPU ids this process may hand out: CUDA_VISIBLE_DEVICES if set, else 0..device_count-1."""
    return [v.strip() for v in visible.split(",") if v.strip()] if visible else [str(i) for i in range(device_count)]


def gpu_slots(slots: int, per_slot: int, ids: list[str]) -> list[str]:
    """CUDA_VISIBLE_DEVICES for each slot: `per_slot` GPUs each, in order, never shared."""
    if slots * per_slot > len(ids):
        raise ConfigError(f"{slots} x {per_slot} GPUs asked for, but only {len(ids)} visible")
    return [",".join(ids[k * per_slot:(k + 1) * per_slot]) for k in range(slots)]


# --- running -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    run: Run
    argv: list[str]                 # as a person would type it ("python ...", "accelerate launch ...")
    env: dict[str, str]


@dataclass(frozen=True)
class Outcome:
    run: Run
    state: str                      # done | failed | locked | interrupted
    reason: str = ""
    seconds: float = 0.0


def _tail(path: Path, offset: int = 0, lines: int = 12) -> list[str]:
    """The last non-empty lines written to `path` after byte `offset` (this attempt's part of the log)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    # tqdm draws with carriage returns: keep what a terminal would show last on each line
    shown = [line.rsplit("\r", 1)[-1].rstrip() for line in text.splitlines()]
    return [line for line in shown if line.strip()][-lines:]


def classify(rc: int, folder: Path, stderr_tail: list[str], started: float, stopped: bool) -> tuple[str, str]:
    """What a finished process did, from its folder first (launchers such as `accelerate launch` turn
    every failing exit into 1) and its exit code and stderr second."""
    run = RunFolder(folder)
    # the lock, not a message, says whether another process has it; a run another process finished
    # while this one waited counts there, not here (two sweepers must not both count it as done)
    if rc == EXIT_LOCKED or (rc != 0 and run.locked()):
        return "locked", "running elsewhere"
    if run.finished():
        return "done", ""
    failed = folder / "failed.json"
    if failed.is_file() and failed.stat().st_mtime >= started - 1.0:  # written by this process
        return "failed", failure_reason(folder) or "failed.json without a reason"
    if rc in (EXIT_INTERRUPTED, EXIT_CTRL_C) or stopped:
        return "interrupted", "stopped by a signal; run again to resume from the checkpoint"
    # run.py's own one-line `error: ...` says more than a launcher's closing words after it
    errors = [line for line in stderr_tail if line.startswith("error: ")]
    last = errors[-1] if errors else stderr_tail[-1] if stderr_tail else "no output on stderr"
    if rc == 0:
        return "failed", f"exit 0 but no result.json ({last})"
    if rc < 0:
        return "failed", f"killed by {signal.Signals(-rc).name} ({last})"
    return "failed", f"exit {rc}: {last}"


class SweepLog:
    """`<out>/sweeps/<name>/sweep.log`: one line per event, with each failure's reason and stderr."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "sweep.log"

    def write(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.path, "a") as f:
            f.write("".join(f"{stamp} {line}\n" for line in text.splitlines()))


def execute(tasks: list[Task], jobs: int, slot_env: list[dict[str, str]], log: SweepLog,
            total: int) -> tuple[list[Outcome], bool]:
    """Run the tasks, `jobs` at a time, each as its own process group; slot k adds `slot_env[k]` to
    the environment. SIGTERM or Ctrl-C forwards SIGTERM to every run (they write a checkpoint and exit
    75) and starts no new one; a second signal kills them. Returns the outcomes and whether stopped."""
    logs = log.folder / "logs"
    logs.mkdir(exist_ok=True)
    pending = list(tasks)
    running: dict[int, tuple[Task, subprocess.Popen, float, Path, int]] = {}
    outcomes: list[Outcome] = []
    signals = [0]

    def forward(sig: int) -> None:
        for _, proc, *_ in running.values():
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass

    def on_signal(signum, frame) -> None:
        signals[0] += 1
        forward(signal.SIGTERM if signals[0] == 1 else signal.SIGKILL)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while running or (pending and not signals[0]):
            free = [k for k in range(jobs) if k not in running]
            while pending and free and not signals[0]:
                slot, task = free.pop(0), pending.pop(0)
                name = task.run.label.replace("/", ".")
                err = logs / f"{name}.err"
                extra = slot_env[slot % len(slot_env)]
                gpu = extra.get("CUDA_VISIBLE_DEVICES")
                where = f" on GPU {gpu}" if gpu is not None else ""
                # appended, so a resumed run's log keeps its earlier attempts
                header = f"=== {time.strftime('%Y-%m-%d %H:%M:%S')}{where}: {shell_line(task.argv, task.env)}\n"
                with open(logs / f"{name}.out", "a") as out_file, open(err, "a") as err_file:
                    for f in (out_file, err_file):
                        f.write(header)
                        f.flush()  # before the child writes to the same file
                    offset = err_file.tell()
                    proc = subprocess.Popen(executable(task.argv), cwd=REPO, env={**os.environ, **task.env, **extra},
                                            stdout=out_file, stderr=err_file, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
                running[slot] = (task, proc, time.time(), err, offset)
                if signals[0]:  # a signal came while it started
                    forward(signal.SIGTERM)
                print(f"[{task.run.index + 1}/{total}] start   {task.run.label}{where}", flush=True)
                log.write(f"start {task.run.label}{where}: {shell_line(task.argv, task.env)}")
            for slot, (task, proc, started, err, offset) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del running[slot]
                tail = _tail(err, offset)
                state, reason = classify(rc, task.run.dir, tail, started, bool(signals[0]))
                seconds = time.time() - started
                outcomes.append(Outcome(task.run, state, reason, seconds))
                shown = {"locked": "skipped", "interrupted": "stopped"}.get(state, state)
                note = f": {reason}" if reason else ""
                print(f"[{task.run.index + 1}/{total}] {shown:<7} {task.run.label} ({seconds:.1f} s){note}", flush=True)
                log.write(f"{state} {task.run.label} exit {rc} after {seconds:.1f} s{note}")
                if state == "failed":
                    log.write("  stderr: " + "\n  stderr: ".join(tail or ["(empty)"]))
            time.sleep(0.05)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return outcomes, bool(signals[0])


# --- SLURM -------------------------------------------------------------------------------------

def sbatch_quote(value: str) -> str:
    """A value for an `#SBATCH --opt=` line: in double quotes, so spaces and `$(...)` stay literal
    (sbatch expands nothing there; bash never reads these lines). A double quote, backslash or newline
    cannot be written safely: one ConfigError line."""
    bad = [c for c in ('"', "\\", "\n") if c in value]
    if bad:
        raise ConfigError(f"{value!r}: a SLURM #SBATCH value cannot hold {bad[0]!r}; use another --out or sweep name")
    return f'"{value}"'


def slurm_script(sweep: Sweep, runs: list[Run], gpus: int, jobs: int | None, log_folder: Path,
                 template: str | None = None) -> str:
    """The job array for `runs`: task i runs runs[i]; an interrupted task requeues itself."""
    template = SLURM_TEMPLATE.read_text() if template is None else template
    cases = []
    for i, run in enumerate(runs):
        argv = run_command(run) if gpus <= 1 else accelerate_command(run, gpus, True)[0]
        cases.append(f"    {i}) run_dir={shlex.quote(str(run.dir))}\n"
                     f"       set -- {shell_line(argv)} ;;")
    array = f"0-{len(runs) - 1}" + (f"%{jobs}" if jobs else "")
    gpu_line = f"#SBATCH --gpus-per-node={gpus}" if gpus > 0 else "# (no GPUs requested: --gpus 0)"
    filled = {  # #SBATCH values are read by sbatch, not bash: double quotes, % doubled in file patterns
        "--job-name=@NAME@": f"--job-name={sbatch_quote(f'pp-{sweep.name}')}", "@ARRAY@": array,
        "--output=@LOGS@/%A_%a.out": f"--output={sbatch_quote(str(log_folder).replace('%', '%%') + '/%A_%a.out')}",
        "@REPO@": shlex.quote(str(REPO)),
    }
    text = "".join(line for line in template.splitlines(keepends=True) if not line.startswith("#|"))
    text = text.replace("# @GENERATED@", f"# Sweep job array for {sweep.path}, one task per run, written by "
                                         f"launch/sweep.py\n# from launch/slurm/sweep_array.sbatch; "
                                         f"to change it, edit the template and run the sweep again.")
    text = text.replace("#SBATCH --gpus-per-node=@GPUS@", gpu_line)
    for key, value in filled.items():
        text = text.replace(key, value)
    return text.replace("    # @RUNS@", "\n".join(cases))


# --- the command line --------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="launch/sweep.py",
        description="Expand a sweep file (configs/sweeps/*.yaml) into runs of suite/run.py and run the "
                    "ones not finished yet.")
    parser.add_argument("sweep", help="sweep file, e.g. configs/sweeps/quickstart.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="settings for every run, on top of the sweep's overrides (e.g. train.epochs=1)")
    parser.add_argument("--out", default="runs", help="runs folder (default: runs)")
    parser.add_argument("--backend", default="local", choices=BACKENDS,
                        help="local: subprocesses here; accelerate: each run a DDP job on all GPUs; slurm: "
                             "write a job array; print: print the commands (default: local)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the runs and what is done / failed / partial; run nothing (default: off)")
    parser.add_argument("--gpus", type=int, default=None, metavar="N",
                        help="local: N runs at once, one GPU each (default: no GPU pinning); accelerate: "
                             "processes per run (default: every visible GPU; with no GPU, 2 CPU processes); "
                             "slurm: GPUs per array task (default: 1)")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="runs at once: local (default: --gpus or 1), accelerate (each on its own "
                             "--gpus GPUs; default: 1), slurm (array tasks at once; default: no limit)")
    parser.add_argument("--submit", action="store_true", help="slurm: submit the array with sbatch (default: off)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="run failed runs (failed.json) again; they are skipped by default")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an unexpected error on stderr too (default: off; it is "
                             "always written to <out>/sweeps/<name>/error.log)")
    return parser.parse_intermixed_args(argv)


def _relative_out(out: Path) -> str:
    """--out as run.py gets it: run.py works in the repo root, so relative to that when inside it."""
    try:
        return str(out.relative_to(REPO))
    except ValueError:
        return str(out)


def _print_dry_run(sweep: Sweep, expansion: Expansion, statuses: list[Status], todo: list[Run],
                   backend: str) -> None:
    runs = expansion.runs
    if sweep.ablate is not None:
        finished = sum(state == "finished" for _, state in expansion.sources)
        print(f"sweep {sweep.path}: {', '.join(sweep.ablate.kinds)} of {len(expansion.sources)} sources "
              f"({finished} finished) from {sweep.ablate.sources} -> {len(runs)} runs")
        for folder, state in expansion.sources:
            print(f"  source {state}: {folder}")
        for why, items in expansion.held_back.items():
            print(f"  held back ({why}): {len(items)}")
            if why != NOT_FINISHED:  # the unfinished sources are listed above
                print("\n".join(f"    {item}" for item in items))
    else:
        print(f"sweep {sweep.path}: {expansion.points} grid points -> {len(runs)} runs")
    width = len(str(len(runs)))
    for run, status in zip(runs, statuses):
        notes = [status.detail] if status.detail else []
        if run.covers:
            notes.append(describe_chain(run))
        elif run.label in expansion.merged:
            notes.append(_merged_note(run, expansion.merged[run.label]))
        tail = f"  ({'; '.join(notes)})" if notes else ""
        print(f"  {run.index:>{width}} {status.state:<8} {run.label}{tail}")
    counts = {s: sum(st.state == s for st in statuses) for s in STATES}
    print("status: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if backend == "slurm":
        print(f"would write a job array of {len(todo)} tasks (--array=0-{len(todo) - 1})")
    else:
        print(f"would start {len(todo)} runs with backend {backend}")


def _merged_note(run: Run, points: list[dict]) -> str:
    """`also prune.target_sparsity=0.7,0.75 (dense does not read them)` for points sharing a folder."""
    keys = list(dict.fromkeys(k for p in points for k in p if p.get(k) != run.point.get(k)))
    values = {k: ",".join(dict.fromkeys(format_value(p[k]) for p in points if k in p)) for k in keys}
    return "also " + " ".join(f"{k}={v}" for k, v in values.items()) + f" ({run.cfg.method} does not read them)"


def _summary(sweep: Sweep, outcomes: list[Outcome], skipped: dict[str, list[str]], not_started: list[Run]) -> list[str]:
    done = [o for o in outcomes if o.state == "done"]
    failed = [o for o in outcomes if o.state == "failed"]
    locked = [o.run.label for o in outcomes if o.state == "locked"]
    stopped = [o.run.label for o in outcomes if o.state == "interrupted"] + [r.label for r in not_started]
    skipped = {**skipped, "running elsewhere": skipped.get("running elsewhere", []) + locked}
    n_skipped = sum(len(v) for v in skipped.values())
    lines = [f"sweep {sweep.name}: {len(done)} done, {n_skipped} skipped, {len(failed)} failed"
             + (f", {len(stopped)} stopped" if stopped else "")]
    lines += [f"  done: {o.run.label} ({o.seconds:.1f} s)" for o in done]
    for why, labels in skipped.items():
        lines += [f"  skipped ({why}): {label}" for label in labels]
    lines += [f"  failed: {o.run.label}: {o.reason}" for o in failed]
    lines += [f"  stopped: {label}" for label in stopped]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return _main(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    except Exception as e:  # one line, never a traceback wall; the details go to the sweep's folder
        folder = Path(args.out) / "sweeps" / Path(args.sweep).stem if Path(args.out).is_dir() else None
        print(crash_line(e, folder, args.debug), file=sys.stderr, flush=True)
        return EXIT_FAILED


def _main(args: argparse.Namespace) -> int:
    for flag in ("gpus", "jobs"):
        value = getattr(args, flag)
        if value is not None and value < (0 if flag == "gpus" else 1):
            raise ConfigError(f"--{flag}: must be at least {0 if flag == 'gpus' else 1}, got {value}")
    if args.submit and args.backend != "slurm":
        raise ConfigError("--submit: only with --backend slurm")
    overrides = list(args.overrides)
    if args.backend == "accelerate":  # the process count is science (in the hash): N-process runs' folders
        overrides.append(f"train.processes={accelerate_processes(args.gpus)}")
    sweep = load_sweep(args.sweep, overrides)
    out = check_output_dir(args.out).resolve()
    expansion = expand(sweep, out, _relative_out(out))
    runs = expansion.runs
    statuses = [run_status(r.dir) for r in runs]
    skipped: dict[str, list[str]] = {"finished earlier": [], "failed earlier, see --retry-failed": [],
                                     **expansion.held_back}
    todo = []
    for run, status in zip(runs, statuses):
        if status.state == "done":
            skipped["finished earlier"].append(run.label)
        elif status.state == "failed" and not args.retry_failed:
            skipped["failed earlier, see --retry-failed"].append(f"{run.label}: {status.detail}")
        else:
            if status.state == "invalid" and not args.dry_run:
                print(f"warning: invalid result, running again: {run.label}: {status.detail}", file=sys.stderr,
                      flush=True)
            todo.append(run)

    _check_before_start(args, todo)
    if args.dry_run:
        _print_dry_run(sweep, expansion, statuses, todo, args.backend)
        return 0
    if args.backend == "print":
        for run in todo:
            print(shell_line(run_command(run)))
        return 0

    log = SweepLog(out / "sweeps" / sweep.name)
    os.environ["PP_SWEEP"] = sweep.name  # inherited by every run (SLURM exports it too): its W&B tag
    if args.backend == "slurm":
        return _slurm(args, sweep, todo, log)

    import torch
    gpus_present = torch.cuda.is_available()
    ids = visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count() if gpus_present else 0)
    if args.backend == "local":
        # --gpus N: N one-GPU slots; --jobs beyond N puts several runs on one GPU, round robin
        slot_env = [{"CUDA_VISIBLE_DEVICES": g} for g in gpu_slots(args.gpus, 1, ids)] if args.gpus else [{}]
        jobs = args.jobs or max(1, args.gpus or 1)
        threads = {}
        if not args.gpus and "OMP_NUM_THREADS" not in os.environ:
            # each run's share of the cores; within it a run picks its threads (suite.threads)
            cores = available_cores()
            threads = {CORES_ENV: str(max(1, cores // jobs))}
            if todo:
                print(f"threads: each run may use {threads[CORES_ENV]} of {cores} cores (--jobs {jobs}); a small model "
                      f"on the CPU uses one thread (OMP_NUM_THREADS=n sets it)", flush=True)
        tasks = [Task(r, run_command(r), threads) for r in todo]
    else:
        jobs = args.jobs or 1
        processes = accelerate_processes(args.gpus)
        # --jobs J: J runs at once, each a DDP job on its own `processes` GPUs
        slot_env = [{"CUDA_VISIBLE_DEVICES": g} for g in gpu_slots(jobs, processes, ids)] \
            if gpus_present and jobs > 1 else [{}]
        tasks = []
        for r in todo:
            argv, env = accelerate_command(r, processes, gpus_present)
            if not gpus_present:
                env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")  # no oversubscribed cores
            tasks.append(Task(r, argv, env))

    log.write(f"sweep {sweep.path} backend {args.backend}: {len(runs)} runs, {len(todo)} to start")
    outcomes, stopped = execute(tasks, jobs, slot_env, log, len(runs))
    ran = {o.run.index for o in outcomes}
    not_started = [t.run for t in tasks if t.run.index not in ran]
    lines = _summary(sweep, outcomes, skipped, not_started)
    print("\n".join(lines), flush=True)
    log.write("\n".join(lines))
    if stopped or any(o.state == "interrupted" for o in outcomes):
        return EXIT_INTERRUPTED
    failed_now = any(o.state == "failed" for o in outcomes)
    return EXIT_FAILED if failed_now or skipped["failed earlier, see --retry-failed"] else 0


def _check_before_start(args: argparse.Namespace, todo: list[Run]) -> None:
    """What would fail every run, or the launch itself, checked once before anything starts (the dry
    run too): GPUs asked for that are not here, data files that are not where data.root says, a batch
    or a target no run could train with. ConfigError: exit 2."""
    from suite.preflight import check_run, data_files_problem

    if args.gpus and args.backend == "local":  # (accelerate on a CPU: --gpus N is N CPU processes)
        import torch
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        ids = visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), count) if count else []
        if args.gpus > len(ids):
            raise ConfigError(f"--gpus {args.gpus}: {len(ids)} GPUs visible here "
                              f"({'no CUDA device' if not count else 'CUDA_VISIBLE_DEVICES=' + os.environ.get('CUDA_VISIBLE_DEVICES', '')}); "
                              f"leave --gpus out to run on the CPU")
    problems: dict[str, int] = {}
    for run in todo:
        problem = data_files_problem(run.cfg.data)
        if problem:
            problems[problem] = problems.get(problem, 0) + 1
    if problems:
        problem, n = next(iter(problems.items()))
        raise ConfigError(f"{problem}; {n} of the {len(todo)} runs to start read it, none started")
    for run in todo:
        try:
            check_run(run.cfg, files=False)
        except ConfigError as e:
            raise ConfigError(f"{run.label}: {e}") from None


def _slurm(args: argparse.Namespace, sweep: Sweep, todo: list[Run], log: SweepLog) -> int:
    if not todo:
        print(f"sweep {sweep.name}: every run is finished (or failed: see --retry-failed); nothing to submit")
        return 0
    gpus = 1 if args.gpus is None else args.gpus
    slurm_logs = log.folder / "slurm"
    slurm_logs.mkdir(exist_ok=True)
    script = log.folder / "array.sbatch"
    script.write_text(slurm_script(sweep, todo, gpus, args.jobs, slurm_logs))
    log.write(f"wrote {script}: {len(todo)} array tasks")
    print(f"wrote {script}: job array of {len(todo)} runs (--array=0-{len(todo) - 1})")
    if not args.submit:
        print(f"submit with: sbatch {script}")
        return 0
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise ConfigError("--submit: sbatch not found (run on a SLURM login node, or submit the script by hand)")
    done = subprocess.run([sbatch, str(script)], capture_output=True, text=True)
    if done.returncode != 0:
        raise ConfigError(f"sbatch failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    print(done.stdout.strip())
    log.write(f"submitted: {done.stdout.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
