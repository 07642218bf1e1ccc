"""The report: every table computed from a runs folder (or an export of one), with its headline."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from suite.config import ConfigError
from suite.report.export import load_export, machine, sweep_records
from suite.report.fmt import fmt, fmt_epochs, fmt_p, is_missing, readable
from suite.report.load import Group, Skipped, group_runs, code_warnings, scan_runs
from suite.report.claims import Plan, declaration, plan_tables, ticket_lines
from suite.report.published import Published
from suite.report.load import read_cost
from suite.report.tables import (EQUAL_EPOCHS, Table, ablation_table, measured_cost_table, equivalence_table, head_to_head_table, mask_matters,
                                 init_effects, init_table, pattern_costs, structure_table,
                                 power_table, published_table, skipped_table, summary_table)

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
                 published: Sequence[Published] = (), plan: Plan | None = None) -> Report:
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
              published_table(groups, published, reference, alpha), power_table(head)]
    ablations = ablation_table(groups, alpha, margin)
    tables += [ablations] if ablations.rows else []  # only a study with ablation runs has the section
    structure = structure_table(groups, alpha, margin)
    tables += [structure] if structure.rows else []  # only a study with structured runs
    inits = init_table(groups, alpha, margin)
    tables += [inits] if inits.rows else []  # only a study that ran another init
    costs = recorded.get("costs")
    if costs is None:
        costs = [c for r in runs if r.round is None for c in [read_cost(r.path)] if c is not None]
    tables += [measured_cost_table(costs)] if costs else []  # only where python -m suite.cost measured runs
    tables.append(skipped_table(skipped))
    if plan is not None:  # the declared family first; every other table is exploratory
        for table in tables:
            table.caption = f"Exploratory (outside the declared family). {table.caption}"
        tables = plan_tables(groups, plan) + tables
    counted = [r for g in groups for r in g.runs]
    meta = {"runs_dir": recorded["runs_dir"], "finished_results": len(counted),
            "groups": len(groups), "reference": reference, "alpha": alpha, "margin": margin,
            "correction": "Holm-Bonferroni per table and sparsity, with Holm-consistent CIs", "confidence": 0.95,
            "warnings": code_warnings(groups),
            "run_results": sum(1 for r in counted if r.round is None),
            "round_results": sum(1 for r in counted if r.round is not None),
            "chains": sum(1 for r in counted if r.round is None and r.rounds > 1),
            "chain_methods": sorted({r.method for r in counted if r.round is None and r.rounds > 1}),
            "sweeps": recorded.get("sweeps") or [], "recorded": recorded,
            "declaration": declaration(plan) if plan is not None else []}
    if plan is not None:
        meta["claim_margin"] = plan.margin  # the one margin, also for the published-claim paragraphs
    report = Report(meta, tables, groups, skipped, list(published))
    differs = [r for r in head.rows if r["protocol_differs"]]
    if differs:
        meta["warnings"].append(
            f"warning: {len(differs)} of {len(head.rows)} head-to-head rows compare groups whose distribution, "
            "dense layers, init or budget differ (the 'Protocol' column names it): those rows compare more than "
            "the pruning criterion")
    meta["headline"] = headline(report) + mask_matters(ablations) + pattern_costs(structure) + init_effects(inits)
    tickets = next((t for t in report.tables if t.name == "tickets"), None)
    meta["headline"] += ticket_lines(tickets) if tickets is not None else []
    return report


def _label(r: dict) -> str:
    """The row's method (its round), and its distribution where it is not the reference's (an authors' recipe)."""
    other = r.get("distribution") and r.get("distribution_reference") and r["distribution"] != r["distribution_reference"]
    return (r["method"] + (f" ({r['round']}, s={r['target_sparsity']:.4f})" if r["round"] else "")
            + (f" [{r['distribution']}]" if other else ""))


def _cost(x: float) -> str:
    return "cost not recorded" if is_missing(x) else f"{x:.3g}x"


def headline(report: Report) -> list[str]:
    """One line per head-to-head comparison, 'method vs reference' as in the tables: Δ = method − reference,
    the row's test and Holm verdict, and both training costs (method's first) relative to one dense cycle;
    then one sentence per sparsity answering the README's question under the study's protocol."""
    ref = report.meta["reference"]
    rows = report.table("head_to_head").rows
    lines = []
    for r in rows:
        p = r["primary_p_holm"]
        if r["primary_test"] == "same runs":
            test = "same runs, not tested"
        elif is_missing(p):
            test = "no test (n < 2 or no spread)"
        else:
            test = f"{r['primary_test']}, Holm p = {fmt_p(p)} (m={r['family_size']}): {r['verdict']}"
        cost = (f"{r['budget_pairing']}; " if r["budget_pairing"] == EQUAL_EPOCHS else "") + \
            (f"training cost {_cost(r['train_cost_x_dense_cycle'])} vs {_cost(r['train_cost_x_dense_cycle_reference'])} "
             f"in {r['cost_unit']}, {fmt_epochs(r['epochs_trained'])} vs {fmt_epochs(r['epochs_trained_reference'])} "
             "epochs")
        lines.append(f"{_label(r)} vs {ref} at {100 * r['reference_sparsity']:g}% "
                     f"({readable(r['model'], r['dataset'])}): Δ {fmt(r['diff'], signed=True)} points, {test}; {cost}")
    return lines + answers(rows, ref)


def answers(rows: Sequence[dict], ref: str) -> list[str]:
    """Per sparsity, the README's question ('does the reference, in one training cycle, beat the others?')
    answered from the head-to-head verdicts, each method with its cost."""
    out = []
    def key(r: dict) -> tuple:
        return (r["dataset"], r["model"], r["reference_sparsity"], r["budget_reference"], str(r.get("init_reference")))
    inits = {str(r.get("init_reference")) for r in rows}
    for dataset, model, sparsity, budget, init in sorted({key(r) for r in rows}):
        at = [r for r in rows if key(r) == (dataset, model, sparsity, budget, init)]
        if len(inits) > 1:  # the study ran several inits: each sentence names its own
            budget = f"{budget}, init {init}"

        def names(verdict: str) -> str:
            return ", ".join(f"{_label(r)} ({_cost(r['train_cost_x_dense_cycle'])}"
                             + (f", {EQUAL_EPOCHS}" if r["budget_pairing"] == EQUAL_EPOCHS else "") + ")"
                             for r in at if r["verdict"] == verdict)
        parts = [f"{words} {names(verdict)}" for words, verdict in
                 (("better than", "worse"), ("worse than", "better"),
                  ("not significantly different from", "no significant difference")) if names(verdict)]
        parts = [f"{ref} is {'; '.join(parts)}"] if parts else []
        untested = [_label(r) for r in at if r["verdict"] not in ("worse", "better", "no significant difference")]
        if untested:
            parts.append(f"not tested: {', '.join(untested)}")
        first = at[0]
        out.append(f"At {100 * sparsity:g}% ({readable(model, dataset)}, {budget}, {ref} at "
                   f"{_cost(first['train_cost_x_dense_cycle_reference'])} {first['cost_unit']}): {'; '.join(parts)} "
                   f"(costs in {first['cost_unit']}; {first['primary_test']} tests, Holm within the sparsity).")
    return out


def results_sentence(meta: dict) -> str:
    """'N finished results in M groups', and where results beyond the run folders come from."""
    text = f"{meta['finished_results']} finished results in {meta['groups']} groups"
    if meta.get("round_results"):
        methods = ", ".join(meta["chain_methods"]) or "chain"
        text += (f" ({meta['run_results']} run results plus {meta['round_results']} round results of "
                 f"{meta['chains']} {methods} chains: each round of a chain is a sparsity point of its own, "
                 "grouped over seeds like a run)")
    return text

