"""`python -m suite.report RUNS_DIR`: tables, tests and plots that compare finished runs.

Reads every `result.json` under RUNS_DIR (LTH round results included as points at their own
sparsity), groups seeds by experiment hash and prints: a summary per group, head-to-head tests
against a reference method, TOST equivalence to the dense baseline, published reference numbers
and, per group, the smallest difference its seeds can detect. Local output is the source of
truth; `--wandb` only mirrors it.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from suite.errors import ConfigError
from suite.report.build import build_report
from suite.report.claims import load_plan
from suite.report.export import export_tree, merge_exports, read_tree, sweep_records, write_export
from suite.report.load import group_runs, scan_runs
from suite.report.published import DEFAULT_PUBLISHED, Published, load_published
from suite.report.render import RENDERERS, push_to_wandb, table_csv
from suite.report.study import write_study_files
from suite.results import atomic_write_text

FORMATS = ("markdown", "latex", "csv", "json")


DEFAULT_REFERENCE = "progressive"


def build_parser() -> argparse.ArgumentParser:
    """Every option with its default in --help."""
    p = argparse.ArgumentParser(prog="python -m suite.report", description=__doc__.splitlines()[0])
    p.add_argument("runs_dir", metavar="RUNS_DIR",
                   help="folder searched recursively for run folders, or a --export JSON file of a study")
    p.add_argument("--format", choices=FORMATS, default="markdown",
                   help="output format of the tables (default: markdown)")
    p.add_argument("--out", help="write the report to this file instead of stdout; with --format csv, a folder "
                   "ending in / gets one file per table (default: stdout)")
    p.add_argument("--plots", metavar="DIR", help="write PNG and PDF figures (trade-off, frontier, forest, "
                   "dynamics, layers) and the two GIF animations to this folder (default: no figures)")
    p.add_argument("--export", metavar="JSON", help="write the run summaries (results, epoch records, sweep wall "
                   "time, machine) to this file, then build everything else from it (default: no export)")
    p.add_argument("--merge", action="append", default=[], metavar="JSON",
                   help="an earlier export whose results join RUNS_DIR's in the --export (a study that goes on on "
                        "another machine, or after its runs folder was lost); repeatable; needs --export "
                        "(default: none)")
    p.add_argument("--doc", metavar="MD", help="write the results document (command, machine, wall time, "
                   "headline, tables, figures of --plots, what the published claims come to) (default: none)")
    p.add_argument("--readme", metavar="MD",
                   help="put the headline table between its markers in this README (default: none)")
    p.add_argument("--reference", default=None, help="method every other method is compared with; naming a "
                   f"method without results here is an error (default: {DEFAULT_REFERENCE})")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="significance level of every test, before Holm's adjustment (default: 0.05)")
    p.add_argument("--margin", type=float, default=None,
                   help="TOST equivalence margin in the metric's units (default: 0.1 accuracy points; 0.01 nats "
                        "for a loss metric)")
    p.add_argument("--published", default=None,
                   help="YAML of published numbers, or 'none' to leave them out (default: the repo's "
                        "configs/published.yaml)")
    p.add_argument("--plan", metavar="YAML", default=None,
                   help="report plan: the declared confirmatory family, the cost unit and the one margin "
                        "(e.g. configs/reports/lenet300_mnist.yaml); its tables come first, every other table is "
                        "labelled exploratory (default: none)")
    p.add_argument("--wandb", action="store_true", help="also push tables and plots to a W&B run (default: off)")
    p.add_argument("--wandb-project", default=os.environ.get("WANDB_PROJECT") or "progressive-pruning",
                   help="W&B project of that run (default: WANDB_PROJECT, else progressive-pruning)")
    p.add_argument("--wandb-entity", default=None, help="W&B entity (default: W&B's own default)")
    p.add_argument("--wandb-dir", default=None, help="where W&B writes its run folder (default: W&B's own)")
    p.add_argument("--wandb-mode", default="offline", choices=("online", "offline", "disabled"),
                   help="W&B mode, used when WANDB_MODE is not set (default: offline)")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an unexpected error on stderr too (default: off; it is always "
                        "written to RUNS_DIR/error.log)")
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def _published_from(arg: str | None) -> list[Published]:
    if arg is None:
        return load_published(DEFAULT_PUBLISHED) if DEFAULT_PUBLISHED.is_file() else []
    if arg.lower() == "none":
        return []
    return load_published(Path(arg))


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(given)
    try:
        return _main(args, given)
    except Exception as e:  # one line, never a traceback wall; the details go to a log
        from suite.exits import crash_line
        folder = Path(args.runs_dir) if Path(args.runs_dir).is_dir() else None
        print(crash_line(e, folder, getattr(args, "debug", False)), file=sys.stderr, flush=True)
        return 1


def _check_outputs(args: argparse.Namespace) -> None:
    """Each path the report will write can be: the nearest existing folder above it is a writable folder
    (missing folders are made), and --readme, whose block is replaced, exists."""
    if args.readme and not Path(args.readme).is_file():
        raise ConfigError(f"--readme: file not found: {args.readme}")
    outs = [("--plots", args.plots, True), ("--doc", args.doc, False), ("--export", args.export, False),
            ("--out", args.out, args.format == "csv" and args.out and args.out.endswith("/"))]
    for flag, path, folder in outs:
        if not path:
            continue
        above = Path(path) if folder else Path(path).parent
        while not above.exists() and above != above.parent:
            above = above.parent
        if not above.is_dir():
            raise ConfigError(f"{flag}: {path} cannot be written: {above} is not a folder")
        if not os.access(above, os.W_OK | os.X_OK):
            raise ConfigError(f"{flag}: {path} cannot be written: no permission to write in {above}")


def _merged_tree(args: argparse.Namespace, command: str, figures: str | None) -> dict:
    """RUNS_DIR's finished runs (none yet is fine: a study going on elsewhere) with every --merge export's."""
    earlier = [(Path(p), read_tree(Path(p))) for p in args.merge]  # all read before anything is written
    root = Path(args.runs_dir)
    if root.is_file():
        tree = read_tree(root)
    elif not root.is_dir():
        raise ConfigError(f"runs directory not found: {root}")
    else:
        runs, skipped = scan_runs(root)
        tree = export_tree(group_runs(runs, skipped, root), skipped, sweep_records(root), str(root), root,
                           command, figures)
    return {**merge_exports(tree, earlier), "command": command, "figures": figures}


def _main(args: argparse.Namespace, given: list[str]) -> int:
    import shlex

    try:
        if args.doc and args.plots is None and args.export:
            raise ConfigError("--doc with --export needs --plots (the document links the figures)")
        if args.merge and not args.export:
            raise ConfigError("--merge needs --export (the merged study is written there, then reported from it)")
        if args.plots and Path(args.plots).exists() and not Path(args.plots).is_dir():
            raise ConfigError(f"--plots: {args.plots} is a file, not a folder")
        _check_outputs(args)  # before the work: a typo in a path costs no minutes
        published = _published_from(args.published)
        named, args.reference = args.reference, args.reference or DEFAULT_REFERENCE
        plan = load_plan(Path(args.plan)) if args.plan else None
        figures_rel = os.path.relpath(args.plots, Path(args.doc).parent) if args.plots and args.doc else None
        command = "python -m suite.report " + shlex.join(given)
        if args.merge:  # the merged study is written first, then everything is built from it
            write_export(_merged_tree(args, command, figures_rel), Path(args.export))
        report = build_report(Path(args.export if args.merge else args.runs_dir), args.reference, args.alpha,
                              args.margin, published, plan)
        methods = sorted({g.method for g in report.groups})
        if named is not None and named not in methods:
            raise ConfigError(f"--reference: no results of method '{named}' here (methods: {', '.join(methods)})")
        for line in report.meta["warnings"]:
            print(line, file=sys.stderr)
        figures_rel = figures_rel or report.meta["recorded"].get("figures")
        if args.export and not args.merge:
            write_export(export_tree(report.groups, report.skipped, report.meta.get("sweeps", []),
                                     report.meta["runs_dir"], Path(args.runs_dir), command, figures_rel),
                         Path(args.export))
            report = build_report(Path(args.export), args.reference, args.alpha, args.margin, published, plan)
        plot_files: list[Path] = []
        if args.plots:
            from suite.report.figures import write_all  # late: matplotlib only when figures are asked for

            plot_files = write_all(report.groups, Path(args.plots), reference=args.reference,
                                   comparisons=report.table("head_to_head").rows)
            report.meta["plots"] = [p.name for p in plot_files]
        written = write_study_files(report, Path(args.doc) if args.doc else None,
                                    Path(args.readme) if args.readme else None, figures_rel)
        text = RENDERERS[args.format](report)
        if args.format == "csv" and args.out and (args.out.endswith("/") or Path(args.out).is_dir()):
            Path(args.out).mkdir(parents=True, exist_ok=True)
            for table in report.tables:
                atomic_write_text(Path(args.out) / f"{table.name}.csv", table_csv(table))
        elif args.out:
            atomic_write_text(Path(args.out), text)
        elif args.export or written:
            for path in [*([Path(args.export)] if args.export else []), *written]:
                print(f"wrote {path}", file=sys.stderr)
        else:
            sys.stdout.write(text)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.filename is None:
            raise
        print(f"error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    if args.wandb:
        try:
            outcome = push_to_wandb(report, plot_files, args.wandb_project, args.wandb_entity, args.wandb_dir,
                                    args.wandb_mode)
        except Exception as e:  # the local report is written; W&B is only a mirror
            print(f"error: W&B push failed ({type(e).__name__}: {e}); the local report is complete", file=sys.stderr)
            return 1
        print(outcome, file=sys.stderr)
    return 0

