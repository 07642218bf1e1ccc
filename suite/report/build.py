"""The report: every table computed from a runs folder (or an export of one), with its headline."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from suite.errors import ConfigError
from suite.report.export import load_export, machine, sweep_records
from suite.report.fmt import is_missing, p_is, readable
from suite.report.load import Group, Skipped, group_runs, code_warnings, scan_runs, study_metric
from suite.report.labels import study_labels
from suite.report.claims import Plan, declaration, plan_tables, ticket_lines
from suite.report.published import Published
from suite.report.load import read_cost
from suite.report.tables import (COLLAPSED, Table, ablation_table, diff_text, family_of, row_metric, measured_cost_table, equivalence_table, head_to_head_table, mask_matters,
                                 init_effects, init_table, pattern_costs, structure_table,
                                 power_table, published_table, schedule_steps, skipped_table, summary_table,
                                 trajectory_table)

@dataclass
class Report:
    meta: dict
    tables: list[Table]
    groups: list[Group]
    skipped: list[Skipped] = field(default_factory=list)
    published: list[Published] = field(default_factory=list)

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


def _read_runs(root: Path) -> tuple[list, list, dict, Path]:
    """The finished runs and skipped folders under a runs directory or in an export, what was recorded about
    them, and the runs directory they name; ConfigError when there is none."""
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
    return runs, skipped, recorded, root


def _add_warnings(meta: dict, head: Table, tables: list[Table]) -> None:
    """Warns, in meta, of head-to-head rows whose protocols differ and of contrasts across code commits."""
    differs = [r for r in head.rows if r["protocol_differs"]]
    if differs:
        meta["warnings"].append(
            f"warning: {len(differs)} of {len(head.rows)} head-to-head rows compare groups whose distribution, "
            "dense layers, init or budget differ (the 'Protocol' column names it): those rows compare more than "
            "the pruning criterion")
    crossed = [f"{r['label']} vs {r.get('label_reference') or r.get('label_source')} at "
               f"{r['target_sparsity']:.4g}" for t in tables for r in t.rows if r.get("code_differs")]
    if crossed:
        meta["warnings"].append(
            f"warning: {len(crossed)} contrasts compare sides trained by different code commits, so their Δ mixes "
            f"code changes with the method: {'; '.join(crossed)}")


def build_report(root: Path, reference: str = "progressive", alpha: float = 0.05, margin: float | None = None,
                 published: Sequence[Published] = (), plan: Plan | None = None) -> Report:
    """Read RUNS_DIR and compute every table; raises ConfigError when there is nothing to report. The margin
    (None: a plan's one margin, else the metric's own, 0.1 accuracy points or 0.01 nats) is in the study metric's
    units; a report plan states the ONE margin of every table, so another --margin beside it is an error."""
    if not 0 < alpha < 0.5:
        raise ConfigError(f"--alpha must be in (0, 0.5), got {alpha}")
    if margin is not None and not margin > 0:
        raise ConfigError(f"--margin must be positive (in the metric's units), got {margin}")
    if plan is not None:
        if margin is not None and margin != plan.margin:
            raise ConfigError(f"--margin {margin:g} differs from the report plan's one margin {plan.margin:g} "
                              f"({plan.path.name}); leave --margin out or change the plan")
        margin = plan.margin
    if not root.exists():
        raise ConfigError(f"runs directory not found: {root}")
    given = root
    runs, skipped, recorded, root = _read_runs(root)
    groups = group_runs(runs, skipped, root)
    if plan is not None:
        plan.check_study(groups, given)
        plan.set_units(groups)
    labels = study_labels(groups)
    for g in groups:
        g.name = labels[g.id]
    metric = study_metric(groups)
    margin = metric.margin if margin is None else margin
    head = head_to_head_table(groups, reference, alpha)
    tables = [summary_table(groups, alpha), head, equivalence_table(groups, margin, alpha),
              published_table(groups, published, reference, alpha, plan.margin if plan is not None else None),
              power_table(head)]
    ablations = ablation_table(groups, alpha, margin)
    tables += [ablations] if ablations.rows else []  # only a study with ablation runs has the section
    structure = structure_table(groups, alpha, margin)
    tables += [structure] if structure.rows else []  # only a study with structured runs
    inits = init_table(groups, alpha, margin)
    tables += [inits] if inits.rows else []  # only a study that ran another init
    trajectory = trajectory_table(groups)
    tables += [trajectory] if trajectory.rows else []  # only where a group was pruned while it trained
    costs = recorded.get("costs")
    if costs is None:
        costs = [c for r in runs if r.round is None for c in [read_cost(r.path)] if c is not None]
    tables += [measured_cost_table(costs, groups)] if costs else []  # only where python -m suite.cost measured runs
    tables.append(skipped_table(skipped))
    if plan is not None:  # the declared family first; every other table is exploratory
        for table in tables:
            table.caption = f"Exploratory (outside the declared family). {table.caption}"
        tables = plan_tables(groups, plan) + tables
    counted = [r for g in groups for r in g.runs]
    meta = {"runs_dir": recorded["runs_dir"], "finished_results": len(counted),
            "groups": len(groups), "reference": reference, "alpha": alpha, "margin": margin,
            "metric": {"name": metric.name, "label": metric.label, "higher_is_better": metric.higher_is_better},
            "correction": ("Holm-Bonferroni per table within one data set, model, target sparsity and the "
                           "reference's training settings (epochs per cycle, init, ...), with Holm-consistent CIs"),
            "confidence": 0.95,
            "warnings": code_warnings(groups),
            "run_results": sum(1 for r in counted if r.round is None),
            "round_results": sum(1 for r in counted if r.round is not None),
            "chains": sum(1 for r in counted if r.round is None and r.rounds > 1),
            "chain_methods": sorted({r.method for r in counted if r.round is None and r.rounds > 1}),
            "sweeps": recorded.get("sweeps") or [], "recorded": recorded,
            "declaration": declaration(plan, metric) if plan is not None else []}
    if plan is not None:
        meta["claim_margin"] = plan.margin  # the one margin, also for the published-claim paragraphs
    report = Report(meta, tables, groups, skipped, list(published))
    _add_warnings(meta, head, tables)
    tickets = next((t for t in report.tables if t.name == "tickets"), None)
    # the answers first (per family, then the title question and the schedule), then the lines they rest on
    meta["headline"] = (answers(head.rows, reference) + (ticket_lines(tickets) if tickets is not None else [])
                        + schedule_steps(trajectory, reference) + headline(report) + mask_matters(ablations)
                        + pattern_costs(structure) + init_effects(inits))
    return report


def _cost(x: float) -> str:
    return "cost not recorded" if is_missing(x) else f"{x:.3g}x"


def headline(report: Report) -> list[str]:
    """One line per head-to-head comparison, starting with its family (sparsity, budget, init), then 'group vs
    reference group' as in the tables: Δ = group − reference, the row's test and Holm verdict, and both epochs
    and training costs (the group's first) relative to one dense cycle (the family answers, `answers`, stand
    before them in the document's headline)."""
    rows = report.table("head_to_head").rows
    one_study = len({(r["dataset"], r["model"]) for r in rows}) == 1
    lines = []
    for r in rows:
        p = r["primary_p_holm"]
        if r["primary_test"] == "same runs":
            test = "same runs, not tested"
        elif r["primary_test"] == COLLAPSED:
            test = "collapsed seeds: not tested (a failed draw is not seed noise)"
        elif is_missing(p):
            test = "no test (n < 2 or no spread)"
        else:
            test = f"{r['primary_test']}, Holm p {p_is(p)} (m={r['family_size']}): {r['verdict']}"
        epochs = r["trained_pair"]
        cost = (f"{epochs}, training cost {_cost(r['train_cost_x_dense_cycle'])} vs "
                f"{_cost(r['train_cost_x_dense_cycle_reference'])} in {r['cost_unit']}")
        family = family_of({**r, "target_sparsity": r["reference_sparsity"], "budget": r.get("budget_reference"),
                            "init": r.get("init_reference")})
        where = "" if one_study else f" ({readable(r['model'], r['dataset'])})"
        lines.append(f"{family} {r['label']} vs {r['label_reference']}{where}: Δ {diff_text(r)}, {test}; {cost}")
    return lines



TESTS = ("paired t", "Welch t")  # the primary tests a head-to-head row can carry a p-value from


def answers(rows: Sequence[dict], ref: str) -> list[str]:
    """Per family (data, model, sparsity, budget, init, the reference's protocol), the README's question ('does
    the reference, in one training cycle, beat the others?') answered from the head-to-head verdicts, each
    group with its cost."""
    out = []
    def key(r: dict) -> tuple:
        return (r["dataset"], r["model"], r["reference_sparsity"], r["budget_reference"], str(r.get("init_reference")),
                r["label_reference"])
    for dataset, model, sparsity, budget, init, ref_label in sorted({key(r) for r in rows}):
        at = [r for r in rows if key(r) == (dataset, model, sparsity, budget, init, ref_label)]
        first = at[0]

        def names(verdict: str) -> str:
            return ", ".join(f"{r['label']} ({_cost(r['train_cost_x_dense_cycle'])}, {r['trained_pair']})"
                             for r in at if r["verdict"] == verdict)
        parts = [f"{words} {names(verdict)}" for words, verdict in
                 (("better than", "worse"), ("worse than", "better"),
                  ("not significantly different from", "no significant difference")) if names(verdict)]
        refs = sorted({r["label_reference"] for r in at})
        parts = [f"{' / '.join(refs)} is {'; '.join(parts)}"] if parts else []
        untested = [r["label"] for r in at if r["verdict"] not in ("worse", "better", "no significant difference")]
        if untested:
            parts.append(f"not tested: {', '.join(untested)}")
        family = family_of({**first, "target_sparsity": sparsity, "budget": first.get("budget_reference"),
                            "init": first.get("init_reference")})
        metric = row_metric(first)
        better = "" if metric.higher_is_better else f"; better = lower {metric.short}"
        tests = " and ".join(sorted({r["primary_test"] for r in at if r["primary_test"] in TESTS}))  # each row's own
        out.append(f"{family} Answer ({readable(model, dataset)}, {' / '.join(refs)} at "
                   f"{_cost(first['train_cost_x_dense_cycle_reference'])} {first['cost_unit']}): {'; '.join(parts)} "
                   f"(costs in {first['cost_unit']}; {tests or 'no'} tests, Holm within this family{better}).")
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
