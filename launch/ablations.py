"""An ablation sweep as runs: every kind of ablation of every finished result of another sweep (or of a
runs folder), each under its source's own settings."""
from __future__ import annotations

import json
from pathlib import Path

from launch.grid import Expansion, Run, chain_sparsities, expand_grid
from launch.sweepfile import Sweep, base_path, load_sweep, relative_out, sweep_error
from suite.config import dotted_value, to_dict
from suite.errors import ConfigError
from suite.experiment import load_config, override_text, run_dir
from suite.methods import SourceError, ablation_methods, dense_methods
from suite.results import RunFolder, moved_aside

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
            raise sweep_error(sweep.path, f"ablate.sources: sweep file not found: {spec.sources} (relative paths start "
                                    f"at the repo root)")
        inner = load_sweep(source, sweep.cli)  # the command line's overrides made the sources too
        if inner.ablate is not None:
            raise sweep_error(sweep.path, f"ablate.sources: {spec.sources} is itself an ablation sweep")
        for run in expand_grid(inner, out).runs:
            if not keep(run.cfg.method):
                continue
            tree = to_dict(run.cfg)
            if run.covers:  # the rounds that stand for the requested sparsities, each matched at its own
                rounds = chain_sparsities(run.cfg)
                for s in run.covers:
                    tree["prune"]["target_sparsity"] = s
                    if matches(tree):
                        found.append(run.dir / f"round_{min(range(len(rounds)), key=lambda i: abs(rounds[i] - s))}")
            elif matches(tree):
                found.append(run.dir)
    else:
        if not source.is_dir():
            raise sweep_error(sweep.path, f"ablate.sources: {spec.sources} is neither a sweep file nor a runs folder")
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
    texts = [override_text(k, v) for k, v in sweep.overrides.items()]
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
                raise sweep_error(sweep.path, f"({kind} of {folder}): {e}") from None
            run_folder = run_dir(cfg, out)
            if run_folder in by_dir:
                merged.setdefault(by_dir[run_folder].label, []).append(point)
                continue
            args = ["--out", out_text, "--no-progress", "--method", kind, f"ablate.source={relative_out(folder)}",
                    *texts]
            by_dir[run_folder] = Run(index=len(by_dir), cfg=cfg, dir=run_folder, args=tuple(args), point=point)
    return Expansion(runs=list(by_dir.values()), points=len(sources) * len(spec.kinds), merged=merged,
                     sources=states, held_back=held_back)
