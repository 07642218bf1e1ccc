"""The report's tables: rows of raw numbers per comparison (for CSV/JSON) and how to show them to people."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from suite import stats
from suite.report.fmt import (MISSING, fmt, fmt_ci, fmt_epochs, fmt_flops, fmt_p, fmt_sparsity, is_missing, mean,
                              value_text)
from suite.report.load import DENSE, SPARSITY_DECIMALS, Group, Skipped
from suite.report.published import Published

@dataclass(frozen=True)
class Column:
    """A column of the human-readable rendering: header and how to show a row."""
    header: str
    show: Callable[[dict], str]
    align: str = "right"
    paper: str = "yes"       # LaTeX: "yes" printed, "no" left out, "varies" only when rows differ in it


@dataclass
class Table:
    """Rows of raw numbers (for CSV/JSON) plus how to render them for people."""
    name: str
    title: str
    caption: str
    rows: list[dict]
    columns: list[Column]
    empty: str = "none"         # what to say when there are no rows
    line: Callable[[dict], str] | None = None  # markdown: one sentence per row instead of a table


def group_fields(g: Group) -> dict:
    return {"group": g.id, "dataset": g.dataset, "model": g.model, "method": g.method, "round": g.round_label,
            "target_sparsity": g.target_sparsity, "settings": g.settings, "epochs_trained": g.epochs,
            "train_flops_x_dense": g.flops_x_dense}


def budget_columns(rows: list[dict], suffix: str = "") -> list[Column]:
    """Epochs trained (and training FLOPs over dense, once the trainer records them) per row; with a
    suffix ('_reference') the row's value is shown against the reference's."""
    def pair(key: str, show: Callable[[Any], str]) -> Callable[[dict], str]:
        if not suffix:
            return lambda r: show(r[key])
        return lambda r: f"{show(r[key])} vs {show(r[key + suffix])}"
    columns = [Column("Epochs", pair("epochs_trained", fmt_epochs))]
    if any(not is_missing(r.get("train_flops_x_dense")) for r in rows):
        columns.append(Column("Train FLOPs", pair("train_flops_x_dense", fmt_flops)))
    return columns


ROUND_TOLERANCE = 0.002  # a chain's round stands for a requested sparsity it cannot hit exactly (0.7903 for 0.789)


def stands_for(g: Group, sparsity: float, groups: Sequence[Group]) -> bool:
    """Whether group g is the result at `sparsity`: a run at that target, or the round of an LTH chain
    nearest to it (within ROUND_TOLERANCE) when the chain's own target is elsewhere."""
    if g.round is None:
        return g.sparsity_key == round(sparsity, SPARSITY_DECIMALS)
    if abs(g.target_sparsity - sparsity) > ROUND_TOLERANCE:
        return False
    chain = [h for h in groups if h.experiment == g.experiment]
    return min(chain, key=lambda h: (abs(h.target_sparsity - sparsity), h.round is not None)) is g


def dense_for(g: Group, groups: Sequence[Group]) -> Group | None:
    """The dense baseline with the same data, model and training budget, if one ran."""
    if g.method in DENSE:
        return None
    for d in groups:
        if d.method in DENSE and d.round is None and d.match_key == g.match_key:
            return d
    return None


NO_TESTS = "n < 2: reported without tests (a spread needs at least 2 seeds)"


def summary_table(groups: Sequence[Group], alpha: float) -> Table:
    rows = []
    for g in groups:
        s = stats.summarize(g.accuracies)
        dense = dense_for(g, groups)
        dense_mean = mean(dense.accuracies) if dense else stats.NAN
        rows.append({
            **group_fields(g), "n": s.n, "seeds": g.seeds,
            "mean": s.mean, "sd": s.sd, "ci_low": s.ci_low, "ci_high": s.ci_high, "min": s.min, "max": s.max,
            "best_mean": mean([r.best_accuracy for r in g.runs]),
            "achieved_sparsity": mean([r.achieved_sparsity for r in g.runs]),
            "params_remaining": mean([r.params_remaining for r in g.runs]),
            "params_total": mean([r.params_total for r in g.runs]),
            "dense_mean": dense_mean, "diff_dense": s.mean - dense_mean,
            "mdd": stats.min_detectable_difference(s.sd, s.n, alpha),
            "note": NO_TESTS if s.n < 2 else "",
        })
    columns = [
        Column("Data", lambda r: r["dataset"], "left", "varies"),
        Column("Model", lambda r: r["model"], "left", "varies"),
        Column("Method", lambda r: r["method"], "left"),
        Column("Round", lambda r: r["round"], "left"),
        Column("Target s", lambda r: fmt_sparsity(r["target_sparsity"])),
        Column("n", lambda r: str(r["n"])),
        Column("Mean", lambda r: fmt(r["mean"])),
        Column("SD", lambda r: fmt(r["sd"])),
        Column("95% CI", lambda r: fmt_ci(r["ci_low"], r["ci_high"])),
        Column("Min", lambda r: fmt(r["min"]), paper="no"),
        Column("Max", lambda r: fmt(r["max"]), paper="no"),
        Column("Best epoch", lambda r: fmt(r["best_mean"]), paper="no"),
        Column("Achieved s", lambda r: fmt_sparsity(r["achieved_sparsity"]), paper="no"),
        Column("Params left", lambda r: MISSING if is_missing(r["params_remaining"])
               else f"{r['params_remaining']:,.0f}", paper="no"),
        *budget_columns(rows),
        Column("Δ dense", lambda r: fmt(r["diff_dense"], signed=True)),
    ]
    if not any(r["round"] for r in rows):
        columns = [c for c in columns if c.header != "Round"]
    if any(r["settings"] for r in rows):
        at = next(i for i, c in enumerate(columns) if c.header == "Target s") + 1
        columns.insert(at, Column("Settings", lambda r: ", ".join(
            f"{k}={value_text(v)}" for k, v in r["settings"].items()), "left", "no"))
    if any(r["note"] for r in rows):
        columns.append(Column("Note", lambda r: "n<2, no tests" if r["note"] else "", "left"))
    caption = ("Final test accuracy (%) over seeds: mean, sample SD (n-1), 95% Student-t CI of the mean, "
               "min and max; 'Best epoch' is the mean of each seed's best test accuracy at its final sparsity; "
               "achieved sparsity and parameters remaining are seed means; Δ dense is the difference of means "
               "to the dense baseline of the same model, data and budget. Rounds of an LTH chain are rows of "
               "their own ('round r'); 'final' is the chain's last round, counted once. 'Epochs' is the "
               "number of epochs trained to reach the result (a chain counts every round up to it); "
               "'Train FLOPs' is the training cost over a dense run's, where the trainer records it. "
               "Groups with n < 2 are reported without tests.")
    return Table("summary", "Summary", caption, rows, columns)


def head_to_head_table(groups: Sequence[Group], reference: str, alpha: float) -> Table:
    rows = []
    for g in groups:
        if g.method == reference or g.method in DENSE:
            continue
        for ref in groups:
            if ref.method != reference or ref.round is not None or ref.match_key != g.match_key \
                    or not stands_for(g, ref.target_sparsity, groups):
                continue
            a, b = g.accuracies, ref.accuracies
            w = stats.welch(a, b)
            is_paired = sorted(g.seeds) == sorted(ref.seeds) and len(a) >= 2
            by_seed_a = [r.final_accuracy for r in sorted(g.runs, key=lambda r: r.seed)]
            by_seed_b = [r.final_accuracy for r in sorted(ref.runs, key=lambda r: r.seed)]
            pt = stats.paired(by_seed_a, by_seed_b) if is_paired else None
            u, p_mw = stats.mann_whitney(a, b)
            primary = "paired t" if is_paired else "Welch t"
            p_primary = pt.p if pt is not None else w.p
            note = ""
            if len(a) < 2 or len(b) < 2:
                note = "n < 2 on one side: no tests"
            elif math.isnan(p_primary):
                note = "no spread on either side: t undefined"
            rows.append({
                **group_fields(g), "reference": reference, "reference_group": ref.id,
                "n": len(a), "n_reference": len(b), "mean": mean(a), "mean_reference": mean(b),
                "diff": w.diff, "diff_ci_low": w.ci_low, "diff_ci_high": w.ci_high,
                "welch_t": w.statistic, "welch_df": w.df, "welch_p": w.p,
                "paired": is_paired,
                "paired_diff": pt.diff if pt else stats.NAN,
                "paired_ci_low": pt.ci_low if pt else stats.NAN, "paired_ci_high": pt.ci_high if pt else stats.NAN,
                "paired_t": pt.statistic if pt else stats.NAN, "paired_p": pt.p if pt else stats.NAN,
                "wilcoxon_p": stats.wilcoxon(by_seed_a, by_seed_b) if is_paired else stats.NAN,
                "mannwhitney_u": u, "mannwhitney_p": p_mw, "hedges_g": stats.hedges_g(a, b),
                "primary_test": primary, "primary_p": p_primary, "alpha": alpha, "note": note,
                "reference_sparsity": ref.target_sparsity, "epochs_trained_reference": ref.epochs,
                "train_flops_x_dense_reference": ref.flops_x_dense,
            })
    adjusted = stats.holm([r["primary_p"] for r in rows])
    for row, p_adj in zip(rows, adjusted):
        row["primary_p_holm"] = p_adj
        row["verdict"] = stats.verdict(row["diff"], p_adj, alpha)
    columns = [
        Column("Data", lambda r: r["dataset"], "left", "varies"),
        Column("Model", lambda r: r["model"], "left", "varies"),
        Column("Target s", lambda r: fmt_sparsity(r["target_sparsity"])),
        Column("Method", lambda r: r["method"] + (f" ({r['round']})" if r["round"] else ""), "left"),
        Column("n", lambda r: f"{r['n']} vs {r['n_reference']}"),
        Column("Δ mean", lambda r: fmt(r["diff"], signed=True)),
        Column("95% CI (Welch)", lambda r: fmt_ci(r["diff_ci_low"], r["diff_ci_high"])),
        Column("Welch p", lambda r: fmt_p(r["welch_p"]), paper="no"),
        Column("Paired p", lambda r: fmt_p(r["paired_p"]), paper="no"),
        Column("Wilcoxon p", lambda r: fmt_p(r["wilcoxon_p"]), paper="no"),
        Column("MWU p", lambda r: fmt_p(r["mannwhitney_p"]), paper="no"),
        Column("Hedges g", lambda r: fmt(r["hedges_g"])),
        Column("Holm p", lambda r: fmt_p(r["primary_p_holm"]) + ("" if is_missing(r["primary_p_holm"]) else
                                                                  (" (paired)" if r["paired"] else " (Welch)"))),
        Column("Verdict", lambda r: r["verdict"], "left"),
        *budget_columns(rows, "_reference"),
    ]
    caption = (f"Each method against the reference '{reference}' at the same data, model, target sparsity and "
               f"training settings (an LTH round stands for the requested sparsity nearest to it, within "
               f"{ROUND_TOLERANCE:g}; its own sparsity is in its row). 'Epochs' shows the epochs each side "
               "trained: a chain method trains a full cycle per round, so the same settings are not the same "
               "training budget. Δ mean = method − {reference} in accuracy points, with the Welch 95% CI; "
               "Welch's t-test; paired t-test and Wilcoxon signed-rank test when both sides ran the same seeds "
               "(pairs matched by seed); Mann-Whitney U as a non-parametric check; Hedges' g with the exact "
               "small-sample correction. 'Holm p' is the primary p-value (paired t when available, else Welch) "
               "adjusted with the Holm-Bonferroni correction across all rows of this table; the verdict "
               f"(method better / worse than {reference}, or no significant difference) uses it at "
               f"alpha = {alpha:g}. With 3 pairs the Wilcoxon p cannot go below 0.25.")
    methods = sorted({g.method for g in groups})
    empty = (f"no method ran at the same data, model, sparsity and budget as a '{reference}' group"
             if reference in methods else
             f"no runs of the reference method '{reference}' (methods here: {', '.join(methods)})")
    return Table("head_to_head", f"Head-to-head against {reference}", caption, rows, columns, empty)


def equivalence_table(groups: Sequence[Group], margin: float, alpha: float) -> Table:
    rows = []
    for g in groups:
        dense = dense_for(g, groups)
        if dense is None:
            continue
        t = stats.tost(g.accuracies, dense.accuracies, margin, alpha)
        if math.isnan(t.p):
            outcome = ("not tested: n < 2 on one side" if min(len(g.runs), len(dense.runs)) < 2
                       else "not tested: no spread on either side")
        else:
            outcome = f"equivalent within ±{margin:g}" if t.equivalent else "not shown"
        rows.append({**group_fields(g), "dense_group": dense.id, "n": len(g.runs), "n_dense": len(dense.runs),
                     "mean": mean(g.accuracies), "dense_mean": mean(dense.accuracies), "diff": t.diff,
                     "ci90_low": t.ci_low, "ci90_high": t.ci_high, "margin": margin, "p_lower": t.p_lower,
                     "p_upper": t.p_upper, "p_tost": t.p, "equivalent": t.equivalent, "outcome": outcome})
    columns = [
        Column("Data", lambda r: r["dataset"], "left", "varies"),
        Column("Model", lambda r: r["model"], "left", "varies"),
        Column("Method", lambda r: r["method"] + (f" ({r['round']})" if r["round"] else ""), "left"),
        Column("Target s", lambda r: fmt_sparsity(r["target_sparsity"])),
        Column("n", lambda r: f"{r['n']} vs {r['n_dense']}"),
        Column("Δ vs dense", lambda r: fmt(r["diff"], signed=True)),
        Column(f"{100 * (1 - 2 * alpha):g}% CI", lambda r: fmt_ci(r["ci90_low"], r["ci90_high"])),
        Column("TOST p", lambda r: fmt_p(r["p_tost"])),
        Column("Equivalence", lambda r: r["outcome"], "left"),
        *budget_columns(rows),
    ]
    caption = (f"'No accuracy drop' checked as equivalence: TOST (two one-sided Welch t-tests) of each pruned "
               f"group against the dense baseline of the same data, model and budget, margin ±{margin:g} "
               f"accuracy points, alpha = {alpha:g}. Equivalence is shown when both one-sided tests reject, i.e. "
               f"the {100 * (1 - 2 * alpha):g}% CI of the difference lies inside the margin. With few seeds the "
               "CI is wide and 'not shown' is the expected, honest outcome: it means the data cannot rule out a "
               "drop larger than the margin, not that a drop was found.")
    return Table("equivalence", f"Equivalence to dense (TOST, margin ±{margin:g})", caption, rows, columns,
                 "no pruned group has a dense baseline with the same data, model and budget")


def published_table(groups: Sequence[Group], published: Sequence[Published], reference: str) -> Table:
    rows = []
    for pub in sorted(published, key=lambda p: (p.dataset, p.model, p.target_sparsity, p.method)):
        base = {"dataset": pub.dataset, "model": pub.model, "target_sparsity": pub.target_sparsity,
                "published_method": pub.method, "published_accuracy": pub.accuracy,
                "published_spread": pub.spread, "approximate": pub.approximate, "source": pub.source,
                "checked": pub.checked}
        rows.append({**base, "kind": "published, not re-run", "method": pub.method, "group": "", "n": 0,
                     "epochs_trained": stats.NAN, "train_flops_x_dense": stats.NAN, "mean": pub.accuracy, "diff": stats.NAN, "ci_low": stats.NAN, "ci_high": stats.NAN,
                     "t": stats.NAN, "df": stats.NAN, "p": stats.NAN, "note": pub.note})
        matches = [g for g in groups if g.dataset == pub.dataset and g.model == pub.model
                   and g.method in (pub.method, reference)
                   and (abs(g.target_sparsity - pub.target_sparsity) <= pub.sparsity_tolerance
                        or (g.round is not None and stands_for(g, pub.target_sparsity, groups)))]
        matches.sort(key=lambda g: (g.method != pub.method, g.sort_key()))
        for g in matches:
            t = stats.one_sample(g.accuracies, pub.accuracy)
            kind = "ours, same method" if g.method == pub.method else "ours, reference method"
            rows.append({**base, "kind": kind, "method": g.method_label, "group": g.id, "n": len(g.runs),
                         "epochs_trained": g.epochs, "train_flops_x_dense": g.flops_x_dense,
                         "mean": mean(g.accuracies), "diff": mean(g.accuracies) - pub.accuracy,
                         "ci_low": t.ci_low, "ci_high": t.ci_high, "t": t.statistic, "df": t.df, "p": t.p,
                         "note": NO_TESTS if len(g.runs) < 2 else ""})
        if not matches:
            rows[-1]["note"] = (rows[-1]["note"] + " " if rows[-1]["note"] else "") + "(no matching runs here)"

    def published_text(r: dict) -> str:
        if r["kind"] != "published, not re-run":
            return ""
        spread = "" if is_missing(r["published_spread"]) else f" ± {r['published_spread']:.2f}"
        return ("≈" if r["approximate"] else "") + f"{r['published_accuracy']:.2f}{spread}"

    columns = [
        Column("Data", lambda r: r["dataset"], "left", "varies"),
        Column("Model", lambda r: r["model"], "left", "varies"),
        Column("Target s", lambda r: fmt_sparsity(r["target_sparsity"])),
        Column("Row", lambda r: r["kind"], "left"),
        Column("Method", lambda r: r["method"], "left"),
        Column("Published", published_text),
        Column("n", lambda r: str(r["n"]) if r["n"] else MISSING),
        Column("Our mean", lambda r: fmt(r["mean"]) if r["n"] else MISSING),
        Column("Δ vs published", lambda r: fmt(r["diff"], signed=True)),
        Column("95% CI of Δ", lambda r: fmt_ci(r["ci_low"], r["ci_high"]), paper="no"),
        Column("t-test p", lambda r: fmt_p(r["p"])),
        *budget_columns(rows),
        Column("Source", lambda r: r["source"] if r["kind"] == "published, not re-run" else "", "left", "no"),
    ]
    caption = ("Numbers from the literature ('published, not re-run': copied from the source, never trained "
               "here; ≈ marks values read off a figure or rounded in the paper). Below each, our groups of the "
               f"same method and of the reference method '{reference}' at the same data, model and sparsity, "
               "with a one-sample t-test of our seeds against the published mean (the published value is "
               "treated as a fixed number; p-values unadjusted). Training recipes differ from the papers', "
               "so a difference is a property of the whole recipe, not of the pruning criterion alone.")
    return Table("published", "Published references", caption, rows, columns, "no published references loaded")


def power_table(groups: Sequence[Group], alpha: float, power: float = 0.8) -> Table:
    rows = []
    for g in groups:
        s = stats.summarize(g.accuracies)
        d = stats.min_detectable_effect(s.n, alpha, power)
        rows.append({**group_fields(g), "n": s.n, "sd": s.sd, "alpha": alpha, "power": power,
                     "min_effect_d": d, "mdd": stats.min_detectable_difference(s.sd, s.n, alpha, power)})

    def line(r: dict) -> str:
        method = r["method"] + (f" ({r['round']})" if r["round"] else "")
        name = f"{method} · {r['model']} · {r['dataset']} · s={r['target_sparsity']:g}"
        if r["n"] < 2:
            return f"{name}: n={r['n']}, no spread to estimate, no power statement (needs at least 2 seeds)"
        return (f"{name}: n={r['n']} per arm, SD {r['sd']:.2f} → smallest difference detectable at "
                f"{100 * power:g}% power: {r['mdd']:.2f} points (d = {r['min_effect_d']:.2f})")

    columns = [
        Column("Data", lambda r: r["dataset"], "left", "varies"),
        Column("Model", lambda r: r["model"], "left", "varies"),
        Column("Method", lambda r: r["method"] + (f" ({r['round']})" if r["round"] else ""), "left"),
        Column("Target s", lambda r: fmt_sparsity(r["target_sparsity"])),
        Column("n", lambda r: str(r["n"])),
        Column("SD", lambda r: fmt(r["sd"])),
        Column("Min. d", lambda r: fmt(r["min_effect_d"])),
        Column("Min. detectable Δ", lambda r: fmt(r["mdd"])),
        *budget_columns(rows),
    ]
    caption = (f"Smallest difference in mean accuracy (points) that a two-sided two-sample t-test with this "
               f"group's n seeds per arm detects with {100 * power:g}% power at alpha = {alpha:g}, taking the "
               "observed SD as the common SD of both arms. Solved with scipy's noncentral t: "
               "power(d) = P(T' > t*) + P(T' < −t*), T' ~ nct(df = 2n − 2, nc = d·sqrt(n/2)), "
               "t* = t(1 − alpha/2, 2n − 2); "
               "d* is the root of power(d) = target and the difference is d*·SD.")
    return Table("power", "Power: smallest detectable difference", caption, rows, columns, line=line)


def skipped_table(skipped: Sequence[Skipped]) -> Table:
    rows = [{"path": s.path, "status": s.status, "method": s.method, "seed": s.seed, "reason": s.reason}
            for s in sorted(skipped, key=lambda s: (s.path, s.status))]
    columns = [Column("Path", lambda r: r["path"], "left"), Column("Status", lambda r: r["status"], "left"),
               Column("Method", lambda r: r["method"], "left"), Column("Seed", lambda r: str(r["seed"])),
               Column("Reason", lambda r: r["reason"], "left")]
    caption = ("Run folders not in the tables: failed (reason from failed.json), unfinished (no result.json "
               "yet), unreadable, or a duplicate of a seed already counted.")
    return Table("not_included", "Runs not included", caption, rows, columns)

