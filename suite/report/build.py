"""The report: every table computed from a runs folder (or an export of one), with its headline."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from suite.config import ConfigError
from suite.report.export import load_export, machine, sweep_records
from suite.report.fmt import fmt, fmt_p, is_missing, readable
from suite.report.load import Group, Skipped, group_runs, code_warnings, scan_runs
from suite.report.published import Published
from suite.report.tables import (Table, equivalence_table, head_to_head_table, power_table, published_table,
                                 skipped_table, summary_table)

@dataclass
class Report:
    meta: dict
    tables: list[Table]
    groups: list[Group]
    skipped: list[Skipped] = field(default_factory=list)
    published: list[Published] = field(default_factory=list)

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


def build_report(root: Path, reference: str = "progressive", alpha: float = 0.05, margin: float = 0.1,
                 published: Sequence[Published] = ()) -> Report:
    """Read RUNS_DIR and compute every table; raises ConfigError when there is nothing to report."""
    if not 0 < alpha < 0.5:
        raise ConfigError(f"--alpha must be in (0, 0.5), got {alpha}")
    if not margin > 0:
        raise ConfigError(f"--margin must be positive (accuracy points), got {margin}")
    if not root.exists():
        raise ConfigError(f"runs directory not found: {root}")
    recorded: dict = {}
    if root.is_file() and root.suffix == ".json":
        runs, skipped, recorded = load_export(root)  # the committed study: its runs as exported
        root = Path(recorded["runs_dir"])
    elif not root.is_dir():
        raise ConfigError(f"runs directory is a file, not a folder (nor a --export JSON file): {root}")
    else:
        runs, skipped = scan_runs(root)
        recorded = {"runs_dir": str(root), "sweeps": sweep_records(root), "machine": machine()}
    if not runs:
        extra = f" ({len(skipped)} unfinished or failed run folders)" if skipped else ""
        raise ConfigError(f"no finished runs (result.json) under {root}{extra}")
    groups = group_runs(runs, skipped, root)
    head = head_to_head_table(groups, reference, alpha)
    tables = [summary_table(groups, alpha), head, equivalence_table(groups, margin, alpha),
              published_table(groups, published, reference, alpha), power_table(head), skipped_table(skipped)]
    counted = [r for g in groups for r in g.runs]
    meta = {"runs_dir": recorded["runs_dir"], "finished_results": len(counted),
            "groups": len(groups), "reference": reference, "alpha": alpha, "margin": margin,
            "correction": "Holm-Bonferroni", "confidence": 0.95, "warnings": code_warnings(groups),
            "run_results": sum(1 for r in counted if r.round is None),
            "round_results": sum(1 for r in counted if r.round is not None),
            "chains": sum(1 for r in counted if r.round is None and r.rounds > 1),
            "chain_methods": sorted({r.method for r in counted if r.round is None and r.rounds > 1}),
            "sweeps": recorded.get("sweeps") or [], "recorded": recorded}
    report = Report(meta, tables, groups, skipped, list(published))
    meta["headline"] = headline(report)
    return report


def headline(report: Report) -> list[str]:
    """One line per head-to-head comparison, from the reference's side: difference, Holm verdict, budget."""
    ref = report.meta["reference"]
    alpha = report.meta["alpha"]
    lines = []
    for r in report.table("head_to_head").rows:
        other = r["method"] + (f" ({r['round']}, s={r['target_sparsity']:.4f})" if r["round"] else "")
        diff = -r["diff"]  # reference − method: the reference speaks
        p = r["primary_p_holm"]
        if is_missing(p):
            test = "no test (n < 2 or no spread)"
        else:
            test = ("significant" if p < alpha else "not significant") + f" after Holm (p = {fmt_p(p)})"
        e, e_ref = r["epochs_trained"], r["epochs_trained_reference"]
        if is_missing(e) or is_missing(e_ref) or e_ref == 0:
            budget = "epochs trained not recorded"
        elif e == e_ref:
            budget = f"same epochs ({e:g})"
        else:
            budget = f"{r['method']} trained {e / e_ref:.3g}x the epochs ({e:g} vs {e_ref:g})"
        f, f_ref = r["train_flops_x_dense"], r["train_flops_x_dense_reference"]
        if not (is_missing(f) or is_missing(f_ref)):
            budget += f", training FLOPs {f:.3g}x vs {f_ref:.3g}x dense"
        lines.append(f"{ref} vs {other} at {100 * r['reference_sparsity']:g}% ({readable(r['model'], r['dataset'])}): "
                     f"{fmt(diff, signed=True)} points, {test}; {budget}")
    return lines


def results_sentence(meta: dict) -> str:
    """'N finished results in M groups', and where results beyond the run folders come from."""
    text = f"{meta['finished_results']} finished results in {meta['groups']} groups"
    if meta.get("round_results"):
        methods = ", ".join(meta["chain_methods"]) or "chain"
        text += (f" ({meta['run_results']} run results plus {meta['round_results']} round results of "
                 f"{meta['chains']} {methods} chains: each round of a chain is a sparsity point of its own, "
                 "grouped over seeds like a run)")
    return text

