"""The report's tables: rows of raw numbers per comparison (for CSV/JSON) and how to show them to people."""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from suite import stats
from suite.cost_rows import cost_batches, cost_rows
from suite.report.fmt import (MISSING, fmt, fmt_ci, fmt_epochs, fmt_flops, fmt_p, fmt_sparsity, is_missing, mean,
                              p_is, value_text)
from suite.report.load import (ACCURACY, BROKEN_DROP, CHANCE_POINTS, DENSE, SPARSITY_DECIMALS, Group, Metric, Run, Skipped, collapsed_seeds,
                               direction_note, run_records, study_metric, units)
from suite.report.published import Published, claim_outcome, stated_epochs

@dataclass(frozen=True)
class Column:
    """A column of the human-readable rendering: header and how to show a row."""
    header: str
    show: Callable[[dict], str]
    align: str = "right"
    paper: str = "yes"       # LaTeX: "yes" printed, "no" left out, "varies" only when rows differ in it;
                             # "data": in CSV/JSON only (the group's label says it in words)


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
    main: tuple[str, ...] = ()  # markdown: the headers of the short main table (the first `keys` of them name
    keys: int = 2               # the row again in the detail table below it, which holds every other column)


COST_MEANING = ("training cost = training FLOPs (counted as if sparse kernels skipped every pruned weight; "
                "mask-scoring passes included where the result records them) over the FLOPs of ONE dense training "
                "cycle of the study's base cycle (the shortest epochs or steps per cycle run for that model and data, "
                "e.g. 20-epoch dense cycles, named in the column: every cost of a table in one unit; absolute FLOPs "
                "are in the export); "
                "core-hours are the measured wall time of dense-masked training on the machine named in the result's 'device', times threads and processes")


def row_metric(r: dict) -> Metric:
    """The primary metric of a table row (group_fields)."""
    return Metric(r.get("metric", ACCURACY.name), r.get("metric_label", ACCURACY.label),
                  r.get("higher_is_better", True))


def diff_text(r: dict, key: str = "diff") -> str:
    """A row's difference with its unit: '+0.45 points', '-0.021 nats/char'."""
    m = row_metric(r)
    return f"{fmt(r[key], m.digits, signed=True)} {m.unit}"


def family_of(r: dict) -> str:
    """The headline prefix of a row: its sparsity, budget (epochs or steps per cycle) and init, in brackets."""
    budget = r.get("budget")
    if not isinstance(budget, str) or budget in ("", "–"):
        budget = "–" if is_missing(r.get("epochs_per_cycle")) else f"{r['epochs_per_cycle']:g} ep/cycle"
    init = "init not recorded" if r.get("init") is None else f"{r['init']} init"
    return f"[{100 * r['target_sparsity']:.4g}%, {budget}, {init}]"


def _dense_text(layers: Any) -> str | None:
    return None if layers is None else (", ".join(layers) if layers else "none")


def group_fields(g: Group) -> dict:
    return {"group": g.id, "label": g.label, "dataset": g.dataset, "model": g.model, "method": g.method,
            "round": g.round_label, "metric": g.metric.name, "metric_label": g.metric.label,
            "higher_is_better": g.metric.higher_is_better,
            "target_sparsity": g.target_sparsity, "settings": g.settings, "budget": g.budget_label,
            "epochs_per_cycle": g.epochs_per_cycle, "epochs_trained": g.epochs, "cycles": g.cycles,
            "steps_trained": g.steps_trained,  # a budget in optimizer steps (NaN: in epochs)
            "train_cost_x_dense_cycle": g.cost, "cost_unit": g.cost_unit,
            "cost_derived": any(r.cost_derived for r in g.runs),
            "train_flops": mean([r.train_flops for r in g.runs]),
            "scoring_flops": mean([r.scoring_flops for r in g.runs]),
            "core_hours": mean([r.core_hours for r in g.runs]), "device": g.protocol("device"),
            "init": g.protocol("init"), "distribution": g.protocol("distribution"),
            "dense_layers": _dense_text(g.protocol("dense_layers")), "val_size": g.protocol("val_size")}


def _shown(value: Any) -> str:
    return MISSING if value is None else str(value)


def budget_columns(rows: list[dict], suffix: str = "") -> list[Column]:
    """Epochs (or, for a study budgeted in optimizer steps, steps) trained and the training cost in the rows'
    one unit of dense cycles, named in the header; with a suffix ('_reference') the row's value is shown against
    the reference's."""
    def pair(key: str, show: Callable[[Any], str]) -> Callable[[dict], str]:
        if not suffix:
            return lambda r: show(r.get(key))
        return lambda r: f"{show(r.get(key))} vs {show(r.get(key + suffix))}"
    in_steps = any(not is_missing(r.get("steps_trained")) for r in rows)
    return [Column("Steps", pair("steps_trained", fmt_epochs)) if in_steps
            else Column("Epochs", pair("epochs_trained", fmt_epochs)),
            Column(cost_header(rows), pair("train_cost_x_dense_cycle", fmt_flops))]


def cost_header(rows: Sequence[dict]) -> str:
    """'Cost (20-epoch dense cycles)': a cost column's header names the rows' one unit (group_fields'
    cost_unit; 'dense cycles' only where rows of several studies share a table)."""
    units = {r.get("cost_unit") for r in rows} - {None}
    return f"Cost ({units.pop() if len(units) == 1 else 'dense cycles'})"


def protocol_columns(suffix: str = "") -> list[Column]:
    """Budget (epochs per cycle), layer distribution and init of each group ('x vs y' against the reference)."""
    def pair(key: str) -> Callable[[dict], str]:
        if not suffix:
            return lambda r: _shown(r.get(key))
        return lambda r: (_shown(r.get(key)) if r.get(key) == r.get(key + suffix)
                          else f"{_shown(r.get(key))} vs {_shown(r.get(key + suffix))}")
    return [Column("Budget", pair("budget"), "left", "varies"),
            Column("Distribution", pair("distribution"), "left", "varies"),
            Column("Init", pair("init"), "left", "varies")]


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


def loss_extras(metric: Metric, value: float) -> dict:
    """Bits and perplexity beside a loss in nats (empty for any other metric)."""
    if not metric.is_loss:
        return {}
    return {"bits": value / math.log(2), "perplexity": math.exp(value) if value < 700 else math.inf}


def distinct_trainings(groups: Sequence[Group]) -> tuple[list[Group], dict[str, list[str]]]:
    """The groups with each set of trainings once (the first to appear), and per kept group's id the labels of
    the later groups that are the same runs (an LTH chain's round 0 is the dense training of its settings)."""
    kept: list[Group] = []
    also: dict[str, list[str]] = {}
    for g in groups:
        first = next((k for k in kept if same_runs(g, k)), None)
        if first is None:
            kept.append(g)
        else:
            also.setdefault(first.id, []).append(g.label)
    return kept, also


def _note_text(r: dict) -> str:
    parts = (["n<2, no tests"] if r["note"] else []) + [f"also {label}" for label in r["same_runs_as"]]
    return "; ".join(parts)


def _folded_text(also: dict[str, list[str]], kept: Sequence[Group]) -> str:
    """The caption's sentence naming each group listed under another that is the same trainings."""
    if not also:
        return ""
    same = "; ".join(f"{g.label} is also {' and '.join(also[g.id])}" for g in kept if g.id in also)
    return ("Each set of runs is listed once: a group that is the same trainings as an earlier row is named in "
            "that row's Note, not repeated (an LTH chain's round 0 is the dense training of its settings): "
            f"{same}. ")


def _summary_row(g: Group, groups: Sequence[Group], same_as: list[str]) -> dict:
    """One group's summary over its seeds, with its difference to the dense baseline."""
    s = stats.summarize(g.values)
    dense = dense_for(g, groups)
    dense_mean = mean(dense.values) if dense else stats.NAN
    return {
        **group_fields(g), "n": s.n, "seeds": g.seeds, **loss_extras(g.metric, s.mean),
        "mean": s.mean, "sd": s.sd, "ci_low": s.ci_low, "ci_high": s.ci_high, "min": s.min, "max": s.max,
        "test_at_best_val_mean": mean([r.test_at_best_val for r in g.runs]),
        "achieved_sparsity": mean([r.achieved_sparsity for r in g.runs]),
        "params_remaining": mean([r.params_remaining for r in g.runs]),
        "params_total": mean([r.params_total for r in g.runs]),
        "dense_mean": dense_mean, "diff_dense": s.mean - dense_mean,
        "note": NO_TESTS if s.n < 2 else "", "same_runs_as": same_as,
    }


def summary_table(groups: Sequence[Group], alpha: float) -> Table:
    metric = study_metric(groups)
    kept, also = distinct_trainings(groups)
    rows = [_summary_row(g, groups, also.get(g.id, [])) for g in kept]
    columns = [
        Column("Data", lambda r: r["dataset"], "left", "varies"),
        Column("Model", lambda r: r["model"], "left", "varies"),
        Column("Group", lambda r: r["label"], "left"),
        Column("Target s", lambda r: fmt_sparsity(r["target_sparsity"])),
        *protocol_columns(),
        Column("n", lambda r: str(r["n"])),
        Column("Mean", lambda r: fmt(r["mean"], metric.digits)),
        Column("SD", lambda r: fmt(r["sd"], metric.digits)),
        Column("95% CI", lambda r: fmt_ci(r["ci_low"], r["ci_high"], metric.digits)),
        Column("Min", lambda r: fmt(r["min"]), paper="no"),
        Column("Max", lambda r: fmt(r["max"]), paper="no"),
        Column("Achieved s", lambda r: fmt_sparsity(r["achieved_sparsity"]), paper="no"),
        Column("Params left", lambda r: MISSING if is_missing(r["params_remaining"])
               else f"{r['params_remaining']:,.0f}", paper="no"),
        *budget_columns(rows),
        Column("Δ dense", lambda r: fmt(r["diff_dense"], metric.digits, signed=True)),
    ]
    if metric.is_loss:
        at = next(i for i, c in enumerate(columns) if c.header == "95% CI") + 1
        columns[at:at] = [Column("bits/char", lambda r: fmt(r.get("bits"), metric.digits)),
                          Column("Perplexity", lambda r: fmt(r.get("perplexity")))]
    if any(r["settings"] for r in rows):
        at = next(i for i, c in enumerate(columns) if c.header == "Target s") + 1
        columns.insert(at, Column("Settings", lambda r: ", ".join(
            f"{k}={value_text(v)}" for k, v in r["settings"].items()), "left", "data"))
    validated = any((r["val_size"] or 0) > 0 for r in rows)
    if validated:  # chosen on validation, reported on test; without a split only the final epoch counts
        at = next(i for i, c in enumerate(columns) if c.header == "95% CI") + 1
        columns.insert(at, Column("Test at best val.", lambda r: fmt(r["test_at_best_val_mean"])))
    if any(r["note"] or r["same_runs_as"] for r in rows):
        columns.append(Column("Note", _note_text, "left"))
    best = ("'Test at best val.' is the test accuracy at the epoch with the best validation accuracy (a split "
            "of the training set held out, val_size > 0), mean over seeds; the test set never selects an epoch"
            if validated else "no validation split was held out, so only the final epoch is reported (the test "
            "set never selects an epoch)")
    what = "test accuracy (%)" if metric == ACCURACY else metric.label + (
        ", with bits per character (nats / ln 2) and perplexity (e^nats) of the mean beside it" if metric.is_loss else "")
    caption = (f"Final {what} over seeds: mean, sample SD (n-1), 95% Student-t CI of the mean, "
               f"min and max; {best}. Achieved sparsity and parameters remaining are seed means; Δ dense is "
               "the difference of means to the dense baseline of the same model, data and budget. Rounds of an "
               "LTH chain are rows of their own ('round r'); 'final' is the chain's last round, counted once. "
               f"{_folded_text(also, kept)}"
               "'Budget' is the epochs (or optimizer steps) of one training cycle (groups that differ only in it "
               "are separate rows); "
               "'Distribution' the layer distribution of the sparsity and 'Init' the initialisation, as the "
               "results record them ('–': not recorded). 'Epochs' ('Steps') is the number of epochs (steps) "
               f"trained to reach the result (a chain counts every round up to it); 'Cost' is the {COST_MEANING}; "
               "'x' marks a multiple of one dense cycle (an LTH chain at round 7 cost about 4.2 of them, a "
               "one-cycle sparse method less than 1). Groups with n < 2 are reported without tests. Each group "
               "is named by its method and, in brackets, what differs from the study's common protocol (the "
               "same name in every table and figure)." + direction_note(metric))
    return Table("summary", "Summary", caption, rows, columns,
                 main=("Group", "Target s", "n", "Mean", "SD", "95% CI", "bits/char", "Perplexity", "Δ dense"))


def _training(r: Run) -> tuple:
    """What a run trained, as its files say: a dense training (no weight pruned: a dense run, an LTH chain's
    round 0) is its data, model and training settings and seed; any other is its experiment, round and seed."""
    if r.achieved_sparsity == 0:
        return ("dense", r.seed, tuple(sorted((k, json.dumps(v)) for k, v in r.science.items()
                                              if k.startswith(("data.", "model.", "train.")))))
    return (r.experiment, r.round, r.seed)


def same_runs(a: Group, b: Group) -> bool:
    """Whether two groups are the same trainings, decided from the runs (experiment, round and seed; an LTH
    chain's round 0 and a dense run of the same settings are one dense training), never from equal numbers:
    comparing them tests nothing."""
    return sorted(map(_training, a.runs)) == sorted(map(_training, b.runs))


def _accuracies_at(g: Group, seeds: Sequence[int]) -> list[float]:
    """g's final metric values at these seeds, in their order."""
    by_seed = {r.seed: r.value for r in g.runs}
    return [by_seed[s] for s in seeds]


def _seed_ordered(g: Group) -> list[float]:
    return [r.value for r in sorted(g.runs, key=lambda r: r.seed)]


def _min_p_text(min_p: float, n: str, alpha: float, p: float) -> str:
    """A non-parametric check's p, or why it cannot reject at this n (its smallest possible p >= alpha)."""
    if is_missing(min_p):
        return MISSING
    if min_p >= alpha:
        return f"cannot reject at {n} (min p {min_p:.3g})"
    return fmt_p(p)


_REFERENCE_FIELDS = ("label", "budget", "epochs_trained", "steps_trained", "train_cost_x_dense_cycle", "init",
                     "distribution", "dense_layers", "cycles")


def equal_budget(a: Group, b: Group) -> bool:
    """Equal training cost: the same total epochs trained (every round of a chain counts)."""
    return not (math.isnan(a.epochs) or math.isnan(b.epochs)) and abs(a.epochs - b.epochs) < 1e-9


EQUAL_EPOCHS = "equal epochs"  # what is equal: total epochs trained, not training FLOPs or time


def trained_pair(g: Group, ref: Group) -> str:
    """What both sides trained: 'equal epochs', '160 vs 20 epochs', or for budgets in optimizer steps
    'equal steps', '8200 vs 1000 steps'."""
    if not (math.isnan(g.steps_trained) or math.isnan(ref.steps_trained)):
        a, b = g.steps_trained, ref.steps_trained
        return "equal steps" if abs(a - b) < 1e-6 else f"{fmt_epochs(a)} vs {fmt_epochs(b)} steps"
    return EQUAL_EPOCHS if equal_budget(g, ref) else f"{fmt_epochs(g.epochs)} vs {fmt_epochs(ref.epochs)} epochs"


def budget_pairing(g: Group, ref: Group) -> str:
    """What both sides trained (trained_pair), with the training-cost ratio of g to the reference (both in the
    one cost unit): equal epochs are not an equal cost when one side trains fewer weights."""
    epochs = trained_pair(g, ref)
    if math.isnan(g.cost) or math.isnan(ref.cost) or ref.cost == 0:
        return f"{epochs}, cost ratio –"
    return f"{epochs}, cost ratio {g.cost / ref.cost:.3g}x"


def code_differs(a: Group, b: Group) -> bool:
    """Whether the two sides of a contrast were trained by different code (commits or dirty diffs), as far as
    their results record it."""
    x, y = ({r.code for r in g.runs if r.code is not None} for g in (a, b))
    return bool(x and y and x != y)


def protocol_differences(g: Group, ref: Group) -> list[str]:
    """What differs between two compared groups besides the method: distribution, dense layers, init and
    the budget (total epochs trained); fields a result does not record are not compared."""
    out = []
    for name, label in (("distribution", "distribution"), ("dense_layers", "dense layers"), ("init", "init")):
        x, y = g.protocol(name), ref.protocol(name)
        if x is not None and y is not None and x != y:
            out.append(f"{label} {_dense_text(x) if name == 'dense_layers' else x} vs "
                       f"{_dense_text(y) if name == 'dense_layers' else y}")
    if not (equal_budget(g, ref) or math.isnan(g.epochs) or math.isnan(ref.epochs)):
        out.append(f"budget {g.epochs:g} vs {ref.epochs:g} epochs")
    a, b = g.epochs_per_cycle, ref.epochs_per_cycle
    if not (math.isnan(a) or math.isnan(b) or a == b):  # the same epochs split into other cycles
        out.append(f"budget schedule {g.budget_label} x {g.cycles:g} vs {ref.budget_label} x {ref.cycles:g}")
    return out


def common_protocol(groups: Sequence[Group], reference: str) -> tuple:
    """(distribution, dense layers) of most of the reference's groups: the study's common protocol."""
    counts: dict[tuple, int] = {}
    for r in groups:
        if r.method == reference and r.round is None and "prune.structure" not in r.first.science:
            key = (r.protocol("distribution"), r.protocol("dense_layers"))
            counts[key] = counts.get(key, 0) + len(r.runs)
    return max(counts, key=lambda k: (counts[k], str(k))) if counts else (None, None)


# a method's settings that are the protocol of a comparison (compared by protocol_differences and structure),
# not the reference method's own variant of itself
PROTOCOL_SETTINGS = ("prune.distribution", "prune.keep_first_dense", "prune.keep_last_dense", "prune.structure",
                     "prune.nm")


def own_settings(g: Group) -> list[str]:
    """The settings of g's method that are its own variant, not the protocol (a schedule, an update rate)."""
    return [k for k, _ in g.variant[1] if not k.startswith(PROTOCOL_SETTINGS)]


def closest_references(g: Group, candidates: Sequence[Group], common: tuple = (None, None)) -> list[Group]:
    """The reference groups g is compared with: those under g's own structure (prune.structure), and of
    several at one budget (epochs trained) the one run under g's own protocol (distribution, dense layers,
    init), else the one under the study's common protocol (`common_protocol`), else the closest: a
    structured variant or a control that keeps a layer dense is never the reference of a method that ran
    without, and a method run under its authors' own distribution is compared with the common protocol.
    Of those, the reference at its own defaults: progressive under another schedule is a variant of the
    reference (the plan's schedule rows compare it), never every other method's reference beside it."""
    same = [r for r in candidates if structure_text(r) == structure_text(g)]
    by_epochs: dict[float, list[Group]] = {}
    for r in same:
        by_epochs.setdefault(r.epochs, []).append(r)
    out = []
    for members in by_epochs.values():
        differs = {id(r): len([d for d in protocol_differences(g, r) if not d.startswith("budget")]) for r in members}
        exact = [r for r in members if differs[id(r)] == 0]
        usual = [r for r in members if (r.protocol("distribution"), r.protocol("dense_layers")) == common]
        fewest = min(differs.values())
        chosen = exact or usual or [r for r in members if differs[id(r)] == fewest]
        plainest = min(len(own_settings(r)) for r in chosen)
        out += [r for r in chosen if len(own_settings(r)) == plainest]
    return [r for r in candidates if any(r is o for o in out)]


FAMILY = "per table and sparsity"  # the rows one Holm correction spans


def family_key(row: dict) -> tuple:
    """The Holm family of a head-to-head row: the rows at the same data, model, budget and sparsity whose
    reference ran the same protocol (its own settings too: the rows against progressive with its classifier
    kept dense are a family apart from those against progressive under one global ranking)."""
    return (row["reference_family"], row["reference_sparsity"])


def _references_for(g: Group, groups: Sequence[Group], reference: str) -> list[Group]:
    """The reference groups g may be compared with, before the closest are chosen."""
    candidates = []
    for ref in groups:
        if ref.method != reference or ref.round is not None or not stands_for(g, ref.target_sparsity, groups):
            continue
        # the same settings, or another budget (epochs per cycle) at the same total epochs: equal cost
        if ref.match_key != g.match_key and not (ref.protocol_key == g.protocol_key and equal_budget(g, ref)):
            continue
        candidates.append(ref)
    return candidates


COLLAPSED = "none: collapsed seeds"  # the primary test of a row whose group or reference has collapsed seeds


def collapsed_text(*sides: tuple[str, Group]) -> str:
    """'group seed 2: at chance (11.3%); reference seed 5: ...': every collapsed seed of the named sides (the
    collapse diagnostic's rule), empty when none collapsed."""
    return "; ".join(f"{side} seed {seed}: {why}" for side, g in sides for seed, why in collapsed_seeds(g).items())


def _contrast_row(g: Group, ref: Group, reference: str, alpha: float,
                  power: float) -> tuple[dict, Callable[[float], stats.TTest]]:
    """One head-to-head row of g against ref before Holm, and its primary test at a given confidence."""
    cross = ref.match_key != g.match_key
    a, b = g.values, ref.values
    w = stats.welch(a, b)
    is_paired = sorted(g.seeds) == sorted(ref.seeds) and len(a) >= 2
    by_seed_a, by_seed_b = _seed_ordered(g), _seed_ordered(ref)
    pt = stats.paired(by_seed_a, by_seed_b) if is_paired else None
    u, p_mw = stats.mann_whitney(a, b)
    identical = same_runs(g, ref)
    collapsed = "" if identical else collapsed_text(("group", g), ("reference", ref))
    primary = "same runs" if identical else COLLAPSED if collapsed else ("paired t" if is_paired else "Welch t")
    p_primary = stats.NAN if identical or collapsed else (pt.p if pt is not None else w.p)
    se, df = stats.paired_se(by_seed_a, by_seed_b) if is_paired else stats.welch_se(a, b)
    note = ""
    if identical:
        note = "same runs: the same trainings, seed for seed, not a comparison"
    elif collapsed:
        note = f"collapsed seeds, not t-tested (their spread is not seed noise): {collapsed}"
    elif len(a) < 2 or len(b) < 2:
        note = "n < 2 on one side: no tests"
    elif math.isnan(p_primary):
        note = "no spread on either side: t undefined"
    row = {
        **group_fields(g), "reference": reference, "reference_group": ref.id,
        "reference_family": ref.reference_family, "cross_budget": cross,
        "n": len(a), "n_reference": len(b), "mean": mean(a), "mean_reference": mean(b),
        "diff": w.diff, "primary_test": primary, "paired": is_paired,
        "primary_p": p_primary, "primary_se": se, "primary_df": df,
        "welch_t": w.statistic, "welch_df": w.df, "welch_p": w.p,
        "welch_ci95_low": w.ci_low, "welch_ci95_high": w.ci_high,
        "paired_diff": pt.diff if pt else stats.NAN,
        "paired_t": pt.statistic if pt else stats.NAN, "paired_p": pt.p if pt else stats.NAN,
        "wilcoxon_p": stats.wilcoxon(by_seed_a, by_seed_b) if is_paired else stats.NAN,
        "wilcoxon_min_p": stats.wilcoxon_min_p(len(a)) if is_paired else stats.NAN,
        "mannwhitney_u": u, "mannwhitney_p": p_mw,
        "mannwhitney_min_p": stats.mann_whitney_min_p(len(a), len(b)) if min(len(a), len(b)) >= 2
        else stats.NAN,
        "hedges_g": stats.hedges_g(a, b), "alpha": alpha, "power": power, "note": note,
        "reference_sparsity": ref.target_sparsity, **{f"{k}_reference": v for k, v in group_fields(ref).items()
                                                      if k in _REFERENCE_FIELDS},
        "trained_pair": trained_pair(g, ref), "budget_pairing": budget_pairing(g, ref),
        "protocol_differs": protocol_differences(g, ref),
        "equal_epochs": equal_budget(g, ref), "code_differs": code_differs(g, ref),
    }
    return row, (functools.partial(stats.paired, by_seed_a, by_seed_b) if is_paired
                 else functools.partial(stats.welch, a, b))


def _holm_by_family(rows: list[dict], retest: dict[int, Callable[[float], stats.TTest]], alpha: float,
                    power: float) -> None:
    """Adds each row's Holm p, verdict, Holm-consistent CI and MDD within its family, in place."""
    families: dict[tuple, list[dict]] = {}
    for row in rows:
        families.setdefault(family_key(row), []).append(row)
    for members in families.values():
        ps = [r["primary_p"] for r in members]
        m = sum(1 for p in ps if not math.isnan(p))
        for row, p_adj, level in zip(members, stats.holm(ps), stats.holm_alphas(ps, alpha)):
            row.update({"family": FAMILY, "family_size": m, "primary_p_holm": p_adj, "ci_alpha": level,
                        "verdict": "same runs" if row["primary_test"] == "same runs"
                        else "collapsed: not tested" if row["primary_test"] == COLLAPSED
                        else stats.verdict(row["diff"], p_adj, alpha, row["higher_is_better"])})
            test = (retest[id(row)](1 - level) if not math.isnan(level)
                    else stats.TTest(row["diff"], stats.NAN, stats.NAN, stats.NAN, stats.NAN, stats.NAN))
            row.update({"diff_ci_low": test.ci_low, "diff_ci_high": test.ci_high,
                        "mdd": stats.min_detectable_shift(row["primary_se"], row["primary_df"], level, power)
                        if not math.isnan(level) else stats.NAN})
    for row in rows:
        row.pop("reference_family")  # only the family needed it: the settings column says the same


def _head_to_head_columns(rows: list[dict], metric: Metric, alpha: float, power: float) -> list[Column]:
    """The head-to-head table's columns."""
    return [
        Column("Data", lambda r: r["dataset"], "left", "varies"),
        Column("Model", lambda r: r["model"], "left", "varies"),
        Column("Target s", lambda r: fmt_sparsity(r["target_sparsity"])),
        Column("Group", lambda r: r["label"], "left"),
        Column("Against", lambda r: r["label_reference"], "left"),
        *[dataclasses.replace(c, paper="data") for c in protocol_columns("_reference")],  # 'Protocol' says it
        Column("n", lambda r: f"{r['n']} vs {r['n_reference']}"),
        Column("Test", lambda r: r["primary_test"], "left"),
        Column("Δ mean", lambda r: fmt(r["diff"], metric.digits, signed=True)),
        Column("Adjusted CI", lambda r: fmt_ci(r["diff_ci_low"], r["diff_ci_high"], metric.digits) + (
            "" if is_missing(r["ci_alpha"]) else f" ({100 * (1 - r['ci_alpha']):.4g}%)")),
        Column("p", lambda r: fmt_p(r["primary_p"]), paper="no"),
        Column("Holm p", lambda r: fmt_p(r["primary_p_holm"]) + (
            "" if is_missing(r["primary_p_holm"]) else f" (m={r['family_size']})")),
        Column("Verdict", lambda r: r["verdict"], "left"),
        Column("Hedges g", lambda r: fmt(r["hedges_g"]), paper="no"),
        Column(f"MDD ({100 * power:g}%)", lambda r: fmt(r["mdd"], metric.digits)),
        Column("Wilcoxon (check)", lambda r: _min_p_text(r["wilcoxon_min_p"], f"n={r['n']}", alpha,
                                                         r["wilcoxon_p"]), paper="no"),
        *budget_columns(rows, "_reference"),
        Column("Budget pairing", lambda r: r["budget_pairing"], "left"),
        Column("Protocol", lambda r: "; ".join(r["protocol_differs"]) or "same", "left"),
    ]


def _head_to_head_caption(reference: str, metric: Metric, alpha: float, power: float) -> str:
    """The head-to-head table's caption: what is compared, the test, its family and the CI level."""
    return (f"Each method against the reference '{reference}' at the same data, model, target sparsity and "
               f"training settings (an LTH round stands for the requested sparsity nearest to it, within "
               f"{ROUND_TOLERANCE:g}; its own sparsity is in its row), plus, where the study has one, the "
               "reference at another budget (epochs per cycle) that trained the same total epochs (e.g. "
               "progressive for 160 epochs against LTH's round 7, 8 cycles of 20). 'Against' names the reference "
               "group of the row. 'Budget pairing' says whether both sides trained the same epochs and gives the "
               "cost ratio (the row's training cost over the reference's, both in dense cycles): equal epochs "
               "are not an equal cost when one side trains fewer weights. 'Protocol' names everything that "
               "differs between the two groups beyond the method (layer distribution, layers kept dense, init, "
               "epochs trained, epochs per cycle and cycles): such a row compares more than criteria. "
               f"Δ mean = group − reference, in {units(metric)}. One primary test per row, chosen before "
               "looking at the numbers: the paired t-test when "
               "both sides ran the same seeds (pairs matched by seed), else Welch's t-test; 'Test' names it. "
               f"Multiplicity family: {FAMILY} (the rows at one data set, model and target sparsity whose "
               "reference ran the same training settings: epochs per cycle, init and every other setting, its own "
               "sections too (layer distribution, layers kept dense, schedule); so the rows at another init, budget "
               "or reference protocol are a family of their own; m "
               "beside 'Holm p' is its size). 'Holm p' is the primary p adjusted by Holm-Bonferroni within the "
               f"family; the verdict (method better / worse than {reference}, or no significant difference) is "
               f"'Holm p < {alpha:g}'. 'Adjusted CI' is the primary test's CI of Δ at a Holm-consistent level "
               "(shown beside it): a row Holm rejects at step k of m gets 1 − alpha/(m − k + 1); a row it does "
               "not reject gets 1 − alpha/(m − r), the level of the step where Holm stopped after r rejections. "
               "So a CI excludes 0 exactly when the verdict is a difference. Rows whose two groups are the same "
               "trainings (the same experiment and seeds, or an LTH chain's round 0 and dense runs of its settings) "
               "are not tested: 'same runs' (equal numbers alone never make them so). Nor are rows where either "
               f"side has a collapsed seed ('collapsed: not tested': a class with no live output weight, within "
               f"{CHANCE_POINTS:g} points of chance accuracy, or {BROKEN_DROP:g} points under its group's median; "
               "such a spread is a failed draw, not seed noise, so a t-test would misread it; the note names the "
               "seeds). MDD is the smallest true Δ "
               f"the row's own test detects with {100 * power:g}% power at the row's adjusted level, from its "
               "observed standard error and df. 'Wilcoxon (check)', paired rows only, unadjusted and not used "
               "for the verdict: the exact signed-rank test cannot give p below 2/2^n (0.0625 at n = 5), and "
               "says so where that is not below alpha. 'Epochs' shows the epochs each side trained."
               + direction_note(metric))


def head_to_head_table(groups: Sequence[Group], reference: str, alpha: float, power: float = 0.8) -> Table:
    """Each method against the reference at the same data, model, sparsity and training settings: one
    primary test per row (paired t over shared seeds, else Welch), Holm-adjusted within the row's family,
    and the row's CI at the level that makes it agree with the verdict."""
    rows = []
    retest: dict[int, Callable[[float], stats.TTest]] = {}  # id(row) -> its primary test at a confidence
    common = common_protocol(groups, reference)
    metric = study_metric(groups)
    for g in groups:
        if g.method == reference or g.method in DENSE or "ablate.source_experiment" in g.first.science:
            continue  # an ablation is compared with its source (ablation_table), not with the reference
        for ref in closest_references(g, _references_for(g, groups, reference), common):
            row, retest_row = _contrast_row(g, ref, reference, alpha, power)
            rows.append(row)
            retest[id(row)] = retest_row
    _holm_by_family(rows, retest, alpha, power)
    columns = _head_to_head_columns(rows, metric, alpha, power)
    caption = _head_to_head_caption(reference, metric, alpha, power)
    methods = sorted({g.method for g in groups})
    empty = (f"no method ran at the same data, model, sparsity and budget as a '{reference}' group"
             if reference in methods else
             f"no runs of the reference method '{reference}' (methods here: {', '.join(methods)})")
    return Table("head_to_head", f"Head-to-head against {reference}", caption, rows, columns, empty,
                 main=("Group", "Target s", "Against", "n", "Δ mean", "Adjusted CI", "Holm p", "Verdict"))


def equivalence_table(groups: Sequence[Group], margin: float, alpha: float) -> Table:
    rows = []
    metric = study_metric(groups)
    for g in groups:
        dense = dense_for(g, groups)
        if dense is None or g.target_sparsity == 0 or same_runs(g, dense):
            continue  # nothing pruned (an LTH chain's round 0 is a dense training): no drop to rule out
        is_paired = sorted(g.seeds) == sorted(dense.seeds)  # pairs exist: the paired TOST, not Welch's
        t = (stats.paired_tost(_seed_ordered(g), _seed_ordered(dense), margin, alpha) if is_paired
             else stats.tost(g.values, dense.values, margin, alpha))
        collapsed = collapsed_text(("group", g), ("dense", dense))
        if collapsed:  # a failed draw is not seed noise: no interval to read as parity or a drop
            t = dataclasses.replace(t, ci_low=stats.NAN, ci_high=stats.NAN, p_lower=stats.NAN, p_upper=stats.NAN,
                                    p=stats.NAN, equivalent=False)
            outcome = f"collapsed: not tested ({collapsed})"
        elif math.isnan(t.p):
            outcome = ("not tested: n < 2 on one side" if min(len(g.runs), len(dense.runs)) < 2
                       else "not tested: no spread on either side")
        else:
            outcome = equivalence_words(t.ci_low, t.ci_high, margin, g.metric.higher_is_better)
        rows.append({**group_fields(g), "dense_group": dense.id, "n": len(g.runs), "n_dense": len(dense.runs),
                     "test": "paired TOST" if is_paired else "Welch TOST",
                     "mean": mean(g.values), "dense_mean": mean(dense.values), "diff": t.diff,
                     "ci90_low": t.ci_low, "ci90_high": t.ci_high, "margin": margin, "p_lower": t.p_lower,
                     "p_upper": t.p_upper, "p_tost": t.p, "equivalent": t.equivalent, "outcome": outcome})
    columns = [
        Column("Data", lambda r: r["dataset"], "left", "varies"),
        Column("Model", lambda r: r["model"], "left", "varies"),
        Column("Group", lambda r: r["label"], "left"),
        Column("Target s", lambda r: fmt_sparsity(r["target_sparsity"])),
        *protocol_columns(),
        Column("n", lambda r: f"{r['n']} vs {r['n_dense']}"),
        Column("Δ vs dense", lambda r: fmt(r["diff"], metric.digits, signed=True)),
        Column(f"{100 * (1 - 2 * alpha):g}% CI", lambda r: fmt_ci(r["ci90_low"], r["ci90_high"], metric.digits)),
        Column("TOST", lambda r: f"{r['test']}, p {p_is(r['p_tost'])}"),
        Column("Equivalence", lambda r: r["outcome"], "left"),
        *budget_columns(rows),
    ]
    drop = "accuracy" if metric == ACCURACY else metric.short
    caption = (f"'No {drop} drop' checked as equivalence: TOST (two one-sided t-tests, on the paired differences "
               f"where both ran the same seeds, else Welch's) of each pruned group against the dense baseline of the "
               f"same data, model and budget, margin ±{margin:g} {units(metric)}, alpha = {alpha:g} per row, unadjusted; Δ = group − "
               f"dense. Equivalence is shown when both one-sided tests reject, i.e. the {100 * (1 - 2 * alpha):g}% CI "
               "of the difference lies inside the margin; 'drop larger than the margin' when it lies wholly on the "
               "worse side of it; 'not shown' when it crosses the margin: the data cannot rule out a drop larger "
               "than the margin, nor show one; a group with a collapsed seed is not tested (its spread is a failed "
               "draw, not seed noise)." + direction_note(metric))
    return Table("equivalence", f"Equivalence to dense (TOST, margin ±{margin:g})", caption, rows, columns,
                 "no pruned group has a dense baseline with the same data, model and budget",
                 main=("Group", "Target s", "n", "Δ vs dense", f"{100 * (1 - 2 * alpha):g}% CI", "TOST",
                       "Equivalence"))


def equivalence_words(low: float, high: float, margin: float, higher_is_better: bool = True) -> str:
    """What an interval of a difference (group − control) says against the margin; for a metric where lower is
    better (a loss) a drop is an interval above it."""
    if math.isnan(low) or math.isnan(high):
        return "not tested"
    if -margin < low and high < margin:
        return f"equivalent within ±{margin:g}"
    if (high < -margin) if higher_is_better else (low > margin):
        return "drop larger than the margin"
    if (low > margin) if higher_is_better else (high < -margin):
        return "gain larger than the margin"
    return "not shown (the interval crosses the margin)"


ABLATION_KEYS = ("ablate.source_experiment", "ablate.source_round", "ablate.source_method")


def ablation_source(g: Group, groups: Sequence[Group]) -> Group | None:
    """The group an ablation group ablates: the source's experiment, at the round its mask came from
    (a chain's last round is the run result itself); None for a group that ablates nothing."""
    science = g.first.science
    if "ablate.source_experiment" not in science:
        return None
    experiment, source_round = science["ablate.source_experiment"], int(science.get("ablate.source_round", 0))
    for s in groups:
        at = s.round if s.round is not None else (s.first.result_round or 0)
        if s.experiment == experiment and at == source_round:
            return s
    return None


def paired_procedure(margin: float) -> str:
    """The caption sentence of every paired_rows table: its test, family and interval."""
    return ("The procedure of the head-to-head table: one primary test per row (paired t over the seeds both sides "
            "ran, when at least two, else Welch), Holm-Bonferroni within the rows of one data set, model, sparsity and budget, "
            f"the CI at the Holm-consistent level shown beside it. 'No difference' needs that CI inside ±{margin:g} "
            "points (the --margin); otherwise a non-significant row is 'not shown'. A row whose either side has a "
            "collapsed seed (a class with no live output weight, near chance, or far under its group's median) is "
            "'collapsed: not tested' and outside Holm's family: a failed draw is not seed noise. Epochs and cost (in "
            "dense training cycles) are each side's own.")


def paired_rows(pairs: Sequence[tuple[Group, Group, dict]], alpha: float, margin: float,
                outcomes: tuple[str, str, str]) -> list[dict]:
    """Rows of (control, treated, fields): Δ = control − treated, one primary test per row (paired t over
    the seeds both ran when at least two, else Welch), Holm-Bonferroni within the rows of one data
    set, model, sparsity and budget, the CI at the Holm-consistent level. `outcomes`: the texts for a
    significant positive Δ, a significant negative Δ, and a CI inside ±margin."""
    rows, retest = [], {}
    for control, g, fields in pairs:
        shared = sorted(set(control.seeds) & set(g.seeds))
        is_paired = len(shared) >= 2  # the seeds both ran are pairs (one init, one data order) even if others are not
        a, b = _accuracies_at(control, shared), _accuracies_at(g, shared)
        test = functools.partial(stats.paired if is_paired else stats.welch,
                                 a if is_paired else control.values, b if is_paired else g.values)
        t = test()
        collapsed = collapsed_text(("control", control), ("treated", g))  # a failed draw is not seed noise:
        # shown, not t-tested (as in the head-to-head)
        rows.append({**group_fields(g), **fields, "n": len(g.runs), "n_source": len(control.runs),
                     "label_source": control.label, "code_differs": code_differs(control, g),
                     "epochs_trained_source": control.epochs, "train_cost_x_dense_cycle_source": control.cost,
                     "mean": mean(g.values), "mean_source": mean(control.values), "diff": t.diff,
                     "primary_test": COLLAPSED if collapsed else "paired t" if is_paired else "Welch t",
                     "primary_p": stats.NAN if collapsed else t.p, "margin": margin,
                     "collapsed": collapsed})
        retest[id(rows[-1])] = test
    families: dict[tuple, list[dict]] = {}
    for row in rows:
        families.setdefault((row["dataset"], row["model"], row["target_sparsity"], row["budget"]), []).append(row)
    for members in families.values():
        ps = [r["primary_p"] for r in members]
        m = sum(1 for p in ps if not math.isnan(p))
        for row, p_adj, level in zip(members, stats.holm(ps), stats.holm_alphas(ps, alpha)):
            ci = retest[id(row)](1 - level) if not math.isnan(level) else None
            low, high = (ci.ci_low, ci.ci_high) if ci is not None else (stats.NAN, stats.NAN)
            if row["collapsed"]:
                outcome = f"collapsed: not tested ({row['collapsed']})"
            elif math.isnan(p_adj):
                outcome = "not tested (n < 2 or no spread)"
            elif p_adj < alpha and (row["diff"] > 0) == row["higher_is_better"]:
                outcome = outcomes[0]
            elif p_adj < alpha:
                outcome = outcomes[1]
            elif -margin < low and high < margin:
                outcome = f"no difference beyond ±{margin:g}: {outcomes[2]}"
            else:
                outcome = "not shown (the CI is wider than the margin)"
            row.update({"family_size": m, "primary_p_holm": p_adj, "ci_alpha": level, "diff_ci_low": low,
                        "diff_ci_high": high, "outcome": outcome})
    return rows


def _paired_columns(rows: Sequence[dict], control: str, treated: str, control_label: Callable[[dict], str],
                    treated_label: Callable[[dict], str], digits: int = 2) -> list[Column]:
    return [
        Column("Data", lambda r: r["dataset"], "left", "varies"),
        Column("Model", lambda r: r["model"], "left", "varies"),
        Column("Target s", lambda r: fmt_sparsity(r["target_sparsity"])),
        Column(control, control_label, "left"),
        Column(treated, treated_label, "left"),
        Column("n", lambda r: f"{r['n_source']} vs {r['n']}"),
        Column(f"{control} mean", lambda r: fmt(r["mean_source"], digits)),
        Column(f"{treated} mean", lambda r: fmt(r["mean"], digits)),
        Column("Epochs", lambda r: f"{fmt_epochs(r['epochs_trained_source'])} vs {fmt_epochs(r['epochs_trained'])}"),
        Column(cost_header(rows), lambda r: f"{fmt_flops(r['train_cost_x_dense_cycle_source'])} vs "
                                                f"{fmt_flops(r['train_cost_x_dense_cycle'])}"),
        Column("Test", lambda r: r["primary_test"], "left"),
        Column(f"Δ ({control.lower()} − {treated.lower()})", lambda r: fmt(r["diff"], digits, signed=True)),
        Column("Adjusted CI", lambda r: fmt_ci(r["diff_ci_low"], r["diff_ci_high"], digits) + (
            "" if is_missing(r["ci_alpha"]) else f" ({100 * (1 - r['ci_alpha']):.4g}%)")),
        Column("Holm p", lambda r: fmt_p(r["primary_p_holm"]) + (
            "" if is_missing(r["primary_p_holm"]) else f" (m={r['family_size']})")),
        Column("Outcome", lambda r: r["outcome"], "left"),
    ]


def _paired_main(control: str, treated: str) -> tuple[str, ...]:
    return (control, treated, "Target s", "n", f"Δ ({control.lower()} − {treated.lower()})", "Adjusted CI",
            "Holm p", "Outcome")


def ablation_table(groups: Sequence[Group], alpha: float, margin: float) -> Table:
    """Each ablation (shuffle, reinit, invert) against its source: Δ = source − ablation (paired_rows)."""
    pairs = []
    for g in groups:
        source = ablation_source(g, groups)
        if source is not None:
            pairs.append((source, g, {"kind": g.method, "source_method": source.method, "source_group": source.id,
                                      "source_round": source.round_label}))
    rows = paired_rows(pairs, alpha, margin, (
        "the source is better: its mask matters beyond what this ablation keeps", "the ablation is better",
        "this ablation keeps what the mask gives"))
    metric = study_metric(groups)
    columns = _paired_columns(rows, "Source", "Ablation", lambda r: r["label_source"], lambda r: r["kind"], metric.digits)
    caption = ("Sanity ablations (Frankle et al. 2021; Su et al. 2020): each ablation group trained the mask of a "
               "finished source group for one cycle of the source's budget, on its data, seed by seed (an LTH "
               "source trained one cycle per round, so the epochs and costs differ): 'shuffle' permutes the "
               "source's final mask within each layer (a random mask at the source's layer densities) and trains "
               "from the source's initialisation; 'reinit' keeps the mask and trains from a fresh initialisation; "
               "'invert' keeps the lowest initialisation scores at the source's per-layer counts. Δ = source − "
               f"ablation, in {units(metric)}. " + paired_procedure(margin) + direction_note(metric))
    return Table("ablations", "Ablations: source minus ablation", caption, rows, columns,
                 "no ablation runs (methods shuffle, reinit, invert)", main=_paired_main("Source", "Ablation"))


STRUCTURE_KEYS = ("prune.structure", "prune.nm")


def contrast_control(g: Group, groups: Sequence[Group], keys: tuple[str, ...]) -> Group | None:
    """The group g is contrasted with when it sets one of `keys` away from its default (a structure, an init):
    the one-cycle group at the same sparsity with none of `keys` set and every other setting equal (method,
    data, model, budget, distribution, layers kept dense); None when g sets none of them."""
    science = g.first.science
    if g.round is not None or not any(k in science for k in keys):
        return None
    rest = {k: v for k, v in science.items() if k not in keys}
    for h in groups:
        if (h is not g and h.round is None and h.sparsity_key == g.sparsity_key
                and not any(k in h.first.science for k in keys)
                and {k: v for k, v in h.first.science.items() if k not in keys} == rest):
            return h
    return None


def contrast_pairs(groups: Sequence[Group], keys: tuple[str, ...], fields: Callable[[Group, Group], dict],
                   differs: Callable[[Group, Group], bool] = lambda control, g: True) -> list[tuple[Group, Group, dict]]:
    """(control, group, fields) for every group that sets one of `keys` and has a control (contrast_control)
    that `differs` from it in what the keys resolve to (an init named as the model's own is its default:
    never a contrast of a setting with itself)."""
    pairs = []
    for g in groups:
        control = contrast_control(g, groups, keys)
        if control is not None and differs(control, g):
            pairs.append((control, g, {**fields(control, g), "control_group": control.id}))
    return pairs


def structure_text(g: Group) -> str:
    science = g.first.science
    kind = science.get("prune.structure", "unstructured")
    return f"{':'.join(map(str, science.get('prune.nm', [2, 4])))} (N:M)" if kind == "nm" else kind


def structure_table(groups: Sequence[Group], alpha: float, margin: float) -> Table:
    """What a hardware pattern costs in accuracy: each structured group against the unstructured group of the
    same settings, Δ = unstructured − structured (paired_rows)."""
    pairs = contrast_pairs(groups, STRUCTURE_KEYS, lambda control, g: {"structure": structure_text(g)})
    rows = paired_rows(pairs, alpha, margin, (
        "unstructured is better: the pattern costs accuracy", "the pattern is better",
        "the pattern costs less than the margin here"))
    metric = study_metric(groups)
    columns = _paired_columns(rows, "Unstructured", "Structured", lambda r: r["label_source"], lambda r: r["label"],
                              metric.digits)
    columns.insert(3, Column("Kept dense", lambda r: r["dense_layers"], "left", "varies"))
    caption = ("The accuracy cost of a hardware pattern (prune.structure): each structured group against the "
               "unstructured group of the same method and every other setting (data, model, budget, seeds, layer "
               f"distribution, layers kept dense), Δ = unstructured − structured, in {units(metric)}. 'N:M' keeps "
               "the N best of every M consecutive inputs of a row, and above the pattern's own sparsity prunes its "
               "survivors further by the same ranking; 'channel' prunes whole neurons or filters and keeps the "
               "classifier whole, so its control keeps it whole too. " + paired_procedure(margin)
               + direction_note(metric))
    return Table("structure", "Structured patterns: unstructured minus structured", caption, rows, columns,
                 "no structured runs (prune.structure nm or channel)", main=_paired_main("Unstructured", "Structured"))


def _test_text(row: dict) -> str:
    """A paired_rows row's test for a headline: 'paired t, Holm p 0.012', or 'not t-tested' (collapsed seeds)."""
    return "not t-tested" if row["collapsed"] else f"{row['primary_test']}, Holm p {fmt_p(row['primary_p_holm'])}"


def mask_matters(ablations: Table) -> list[str]:
    """One line per source method: does its mask matter beyond its layer densities? From the shuffle rows."""
    out = []
    for row in ablations.rows:
        if row["kind"] != "shuffle":
            continue
        answer = ("yes" if row["outcome"].startswith("the source is better") else
                  "no" if row["outcome"].startswith("no difference") else
                  "not tested: collapsed seeds" if row["collapsed"] else "not shown")
        out.append(f"{family_of(row)} {row['label_source']}: the mask matters beyond its layer densities: "
                   f"{answer} (source − shuffle {diff_text(row)}, {_test_text(row)})")
    return out


INIT_KEYS = ("model.init",)


def init_table(groups: Sequence[Group], alpha: float, margin: float) -> Table:
    """The initialisation as a protocol choice: each group started from another init (model.init) against the
    group of the same settings from the model's own default, Δ = default − other (paired_rows)."""
    pairs = contrast_pairs(groups, INIT_KEYS, lambda control, g: {"init_control": control.protocol("init")},
                           lambda control, g: control.protocol("init") != g.protocol("init"))
    rows = paired_rows(pairs, alpha, margin, (
        "the default init is better", "the other init is better", "the init moves it by less than the margin"))
    metric = study_metric(groups)
    columns = _paired_columns(rows, "Default", "Other", lambda r: f"{r['label_source']} ({_shown(r['init_control'])})",
                              lambda r: r["label"], metric.digits)
    caption = ("The initialisation is part of the protocol (model.init): each group started from another init "
               "against the group of the same method and every other setting from the model's own default init "
               f"(named in brackets), Δ = default − other, in {units(metric)}. " + paired_procedure(margin)
               + direction_note(metric))
    return Table("init", "Initialisation: the model's default minus another init", caption, rows, columns,
                 "no runs from another init (model.init)", main=_paired_main("Default", "Other"))


def init_effects(table: Table) -> list[str]:
    """One headline line per init contrast (init_table)."""
    return [f"{family_of(r)} {r['label']} against {r['label_source']}: init {_shown(r['init_control'])} − "
            f"{_shown(r['init'])} {diff_text(r)} ({_test_text(r)}): {r['outcome']}" for r in table.rows]


def largest_step(records: Sequence[dict], key: str, higher_is_better: bool = True) -> dict | None:
    """In one run's epoch records (sparsity after each epoch's pruning; the metric `key` evaluated after it), the
    epoch whose pruning removed the largest share of the weights alive before it (that share, the epoch, the
    metric at the end of the epoch before and right after it), the largest worsening of the metric across any
    one pruning epoch (and its epoch), and the last value. None when the sparsity never rose from one record to
    the next (pruned before training, or never)."""
    rows = sorted((r for r in records if isinstance(r.get("sparsity"), (int, float)) and isinstance(r.get("epoch"), int)),
                  key=lambda r: (int(r.get("round") or 0), r["epoch"]))
    best, fall = None, None
    sign = 1.0 if higher_is_better else -1.0
    for before, after in zip(rows, rows[1:]):
        removed = 1.0 - (1.0 - after["sparsity"]) / (1.0 - before["sparsity"]) if before["sparsity"] < 1 else 0.0
        if removed <= 1e-9:
            continue
        if best is None or removed > best["removed"]:
            best = {"removed": removed, "epoch": after["epoch"], "before": before.get(key), "after": after.get(key)}
        if isinstance(before.get(key), (int, float)) and isinstance(after.get(key), (int, float)):
            worse = sign * (before[key] - after[key])
            if fall is None or worse > fall[0]:
                fall = (worse, after["epoch"])
    if best is None:
        return None
    measured = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return {**best, "fall": fall[0] if fall else None, "fall_epoch": fall[1] if fall else None,
            "final": measured[-1] if measured else None}


def _span(epochs: Sequence[int]) -> str:
    """The seeds' epochs of an event: '80', '79/80', or '5–58' when they spread over more than two."""
    if len(epochs) > 2:
        return f"{min(epochs)}–{max(epochs)}"
    return "/".join(str(e) for e in epochs) or MISSING


def trajectory_table(groups: Sequence[Group]) -> Table:
    """What a pruning schedule does to a run while it trains, per dense-to-sparse group (largest_step of each
    seed, means over seeds): descriptive, no test."""
    metric = study_metric(groups)
    rows = []
    for g in groups:
        if g.round is not None or g.first.rounds > 1:
            continue  # a chain's rounds each start from their mask: nothing is pruned within a round's records
        steps = [s for s in (largest_step(run_records(r), metric.name, metric.higher_is_better) for r in g.runs)
                 if s is not None]
        if not steps:
            continue
        epochs = sorted({s["epoch"] for s in steps})
        rows.append({**group_fields(g), "n": len(steps), "removed": mean([s["removed"] for s in steps]),
                     "epochs": epochs, "before": mean([s["before"] for s in steps if s["before"] is not None]),
                     "after": mean([s["after"] for s in steps if s["after"] is not None]),
                     "fall": mean([s["fall"] for s in steps if s["fall"] is not None]),
                     "fall_epochs": sorted({s["fall_epoch"] for s in steps if s["fall_epoch"] is not None}),
                     "final": mean([s["final"] for s in steps if s["final"] is not None])})
    d = metric.digits
    caption = ("Descriptive (no test). For each group pruned while it trains (its sparsity rises from one epoch to the "
               "next; one-cycle groups), the epoch whose pruning removed the largest share of the weights still alive "
               "before it, from the epoch records (an epoch: one evaluation interval where the budget is in steps; "
               "each records the sparsity after the epoch's pruning and the metric "
               "evaluated after that): the share (mean over seeds), the epoch, and the metric at the end of the epoch "
               "before and right after that pruning; the largest worsening of the metric across any one epoch that "
               "pruned (a positive number is a loss of accuracy, or a rise in loss; the seeds' epochs of it); and the "
               "metric at the end of training (means over seeds). A schedule that "
               "removes most of the survivors in one step shows a deep 'after'; 'final' says how much of it the rest "
               "of the budget recovered." + direction_note(metric))
    return Table("trajectory", "Pruning trajectory: the largest single step", caption, rows, [
        Column("Data", lambda r: r["dataset"], "left", "varies"),
        Column("Model", lambda r: r["model"], "left", "varies"),
        Column("Group", lambda r: r["label"], "left"),
        Column("Target s", lambda r: fmt_sparsity(r["target_sparsity"])),
        Column("n", lambda r: str(r["n"])),
        Column("Largest step (% of survivors)", lambda r: fmt(100 * r["removed"], 1)),
        Column("Epoch", lambda r: _span(r["epochs"])),
        Column(f"Before ({metric.short})", lambda r: fmt(r["before"], d)),
        Column("Right after", lambda r: fmt(r["after"], d)),
        Column("Largest fall in one pruning epoch", lambda r: fmt(r["fall"], d)),
        Column("at epoch", lambda r: _span(r["fall_epochs"])),
        Column("Final", lambda r: fmt(r["final"], d)),
        *budget_columns(rows),
    ], "no group was pruned while it trained")


def schedule_steps(trajectory: Table, reference: str) -> list[str]:
    """One headline line per plain group of the reference method (no variant in its label): what its schedule's
    largest single step did to it (trajectory_table), the limit of a short budget in numbers."""
    out = []
    for r in trajectory.rows:
        if r["label"] != reference:
            continue
        d, short = row_metric(r).digits, row_metric(r).short
        out.append(f"{family_of(r)} {r['label']}: its largest pruning step (epoch {_span(r['epochs'])}) removes "
                   f"{100 * r['removed']:.1f}% of the surviving weights; {short} {fmt(r['before'], d)} before it, "
                   f"{fmt(r['after'], d)} right after, {fmt(r['final'], d)} at the end")
    return out


def pattern_costs(structure: Table) -> list[str]:
    """One headline line per structured group: its accuracy cost against unstructured (structure_table)."""
    return [f"{family_of(r)} {r['label']} against {r['label_source']}: unstructured − structured "
            f"{diff_text(r)} ({_test_text(r)}): {r['outcome']}" for r in structure.rows]


def measured_cost_table(costs: Sequence[dict], groups: Sequence[Group] = ()) -> Table:
    """Measured deployment cost per finished run and format (cost.json from python -m suite.cost), each row
    beside the accuracy of the group its run belongs to (matched on experiment hash and seed)."""
    costs = list(costs)
    rows, batches = cost_rows(costs), cost_batches(costs)
    owner = {(r.experiment, r.seed): g for g in groups for r in g.runs if r.round is None}
    for row in rows:
        g = owner.get((row["experiment"], row["seed"]))
        row["group"] = g.label if g is not None else None
        row["group_mean"] = mean(g.values) if g is not None else None
        row["group_n"] = len(g.values) if g is not None else None
    speed = [Column(f"Speed-up b{b}", lambda r, b=b: fmt(r[f"speedup_b{b}"])) for b in batches]
    latency = [Column(f"ms b{b}", lambda r, b=b: fmt(r[f"latency_ms_b{b}"], 3), paper="no") for b in batches]
    columns = [
        Column("Model", lambda r: _shown(r["model"]), "left", "varies"),
        Column("Group", lambda r: _shown(r["group"]), "left"),
        Column("Sparsity", lambda r: fmt_sparsity(r["sparsity"]) if r["sparsity"] is not None else MISSING),
        Column("Format", lambda r: r["format"], "left"),
        Column("Group mean (n)", lambda r: (f"{fmt(r['group_mean'])} ({r['group_n']})"
                                            if r["group_mean"] is not None else MISSING)),
        Column("Method", lambda r: _shown(r["method"]), "left"),
        Column("Structure", lambda r: _shown(r["structure"]), "left"),
        Column("Status", lambda r: (r["status"] if r["status"] != "skipped" else f"skipped: {r['reason']}")
               + (" (noisy)" if r.get("noisy") else ""), "left"),
        *latency, *speed,
        Column("Size ratio", lambda r: fmt(r["size_ratio"], 3)),
        Column("Device", lambda r: f"{_shown(r['device'])}, {_shown(r['threads'])} threads", "left", "varies"),
    ]
    caption = ("Measured cost of the finished networks as they would be deployed (python -m suite.cost): median "
               "latency at each batch size after warm-up, speed-up = the dense-masked model's latency over the "
               "format's on the same device and threads (the dense-masked model runs the dense arithmetic), size "
               "ratio = the format's saved weights over the dense-masked model's. Every format was checked to "
               "give the masked model's outputs on the test set (max difference in cost.json). Timings are of "
               "the machine named, not of sparse-FLOPs arithmetic. Beside each run, the mean final "
               + (f"{study_metric(groups).label} " if groups else "")
               + "of the group it belongs to, over that group's n seeds: the accuracy that latency buys"
               + ("; (noisy): measured under a load average above the cores or with a latency spread above 25%, so "
                  "its speed-ups are noise." if any(r.get("noisy") for r in rows) else "."))
    return Table("measured_cost", "Measured cost on this machine", caption, rows, columns, "no cost.json",
                 main=("Group", "Sparsity", "Format", "Group mean (n)", *(f"Speed-up b{b}" for b in batches),
                       "Size ratio"),
                 keys=3)


def _published_base(pub: Published) -> dict:
    """The fields every row under a published number shares: the number and where it comes from."""
    return {"dataset": pub.dataset, "model": pub.model, "target_sparsity": pub.target_sparsity,
            "published_method": pub.method, "published_accuracy": pub.accuracy,
            "published_spread": pub.spread, "approximate": pub.approximate, "source": pub.source,
            "checked": pub.checked, "published_runs": pub.runs, "higher_is_better": True,
            "metric": pub.metric, "metric_label": "", "epochs_per_cycle": stats.NAN}


def _published_matches(pub: Published, groups: Sequence[Group], reference: str) -> list[Group]:
    """Our groups of the published method and of the reference at its data, model and sparsity, its own first."""
    matches = [g for g in groups if g.dataset == pub.dataset and g.model == pub.model
               and g.method in (pub.method, reference) and g.metric.name == pub.metric
               and (abs(g.target_sparsity - pub.target_sparsity) <= pub.sparsity_tolerance
                    or (g.round is not None and stands_for(g, pub.target_sparsity, groups)))]
    matches.sort(key=lambda g: (g.method != pub.method, g.sort_key()))
    return matches


def _ours_against_published(base: dict, g: Group, pub: Published, alpha: float,
                            claim_margin: float | None) -> dict:
    """One of our groups tested against a published number: the row under it."""
    t = stats.against_published(g.values, pub.accuracy, pub.spread, pub.runs)
    kind = "ours, same method" if g.method == pub.method else "ours, reference method"
    test = ("one-sample t-test" if is_missing(pub.spread) else
            f"Welch t-test with the published SD over {pub.runs} runs" if pub.runs and pub.runs >= 2 else
            "t-test with the published SD as its uncertainty")
    per_cycle = g.epochs_per_cycle
    if kind == "ours, same method":
        outcome = claim_outcome(mean(g.values) - pub.accuracy, t.p, t.ci_low, t.ci_high, len(g.runs), alpha,
                                g.metric.higher_is_better,
                                g.metric.claim_margin if claim_margin is None else claim_margin,
                                None if math.isnan(per_cycle) else per_cycle, stated_epochs(pub.model, pub.dataset))
    else:  # another method's number: a comparison, not a claim of this group's to confirm
        outcome = ("not shown (no test with fewer than 2 seeds)" if len(g.runs) < 2 or t.p != t.p else
                   f"{'better' if (t.diff > 0) == g.metric.higher_is_better else 'worse'} than the published "
                   f"{pub.method}" if t.p < alpha else f"no significant difference from the published {pub.method}")
    return {**base, "kind": kind, "method": g.label, "group": g.id, "n": len(g.runs),
            "budget": g.budget_label, "distribution": g.protocol("distribution"),
            "init": g.protocol("init"),
            "epochs_trained": g.epochs, "train_cost_x_dense_cycle": g.cost, "cost_unit": g.cost_unit,
            "mean": mean(g.values), "diff": mean(g.values) - pub.accuracy,
            "ci_low": t.ci_low, "ci_high": t.ci_high, "test": test, "t": t.statistic, "df": t.df,
            "p": t.p, "outcome": outcome, "note": NO_TESTS if len(g.runs) < 2 else "",
            "higher_is_better": g.metric.higher_is_better, "metric_label": g.metric.label,
            "epochs_per_cycle": per_cycle}


def _published_text(r: dict) -> str:
    if r["kind"] != "published, not re-run":
        return ""
    spread = "" if is_missing(r["published_spread"]) else f" ± {r['published_spread']:.2f}"
    return ("≈" if r["approximate"] else "") + f"{r['published_accuracy']:.2f}{spread}"


def published_table(groups: Sequence[Group], published: Sequence[Published], reference: str,
                    alpha: float = 0.05, claim_margin: float | None = None) -> Table:
    """Published numbers for the data and models run here, each with our groups of the same method (and of
    the reference method) at its sparsity, tested against it; numbers for models not run here are left out."""
    rows = []
    present = {(g.dataset, g.model) for g in groups}
    shown = [p for p in published if (p.dataset, p.model) in present]
    for pub in sorted(shown, key=lambda p: (p.dataset, p.model, p.target_sparsity, p.method)):
        base = _published_base(pub)
        rows.append({**base, "kind": "published, not re-run", "method": pub.method, "group": "", "n": 0,
                     "budget": None, "distribution": None, "init": None,
                     "epochs_trained": stats.NAN, "train_cost_x_dense_cycle": stats.NAN, "cost_unit": None,
                     "mean": pub.accuracy,
                     "diff": stats.NAN, "ci_low": stats.NAN, "ci_high": stats.NAN, "test": "",
                     "t": stats.NAN, "df": stats.NAN, "p": stats.NAN, "outcome": "", "note": pub.note})
        matches = _published_matches(pub, groups, reference)
        rows += [_ours_against_published(base, g, pub, alpha, claim_margin) for g in matches]
        if not matches:
            rows[-1]["note"] = (rows[-1]["note"] + " " if rows[-1]["note"] else "") + "(no matching runs here)"

    columns = [
        Column("Data", lambda r: r["dataset"], "left", "varies"),
        Column("Model", lambda r: r["model"], "left", "varies"),
        Column("Target s", lambda r: fmt_sparsity(r["target_sparsity"])),
        Column("Row", lambda r: r["kind"], "left"),
        Column("Method", lambda r: r["method"], "left"),
        *[dataclasses.replace(c, paper="data") for c in protocol_columns()],  # the label says them
        Column("Published", _published_text),
        Column("n", lambda r: str(r["n"]) if r["n"] else MISSING),
        Column("Our mean", lambda r: fmt(r["mean"]) if r["n"] else MISSING),
        Column("Δ vs published", lambda r: fmt(r["diff"], signed=True)),
        Column("95% CI of Δ", lambda r: fmt_ci(r["ci_low"], r["ci_high"]), paper="no"),
        Column("p", lambda r: fmt_p(r["p"])),
        Column("Outcome", lambda r: r["outcome"], "left"),
        *budget_columns(rows),
        Column("Source", lambda r: r["source"] if r["kind"] == "published, not re-run" else "", "left", "no"),
    ]
    caption = ("Numbers from the literature ('published, not re-run': copied from the source, never trained "
               "here; ≈ marks values read off a figure or rounded in the paper), for the data and models run here. "
               f"Below each, our groups of the same method and of the reference method '{reference}' at the same "
               "data, model and sparsity, tested against it: a one-sample t-test of our seeds when the source "
               "gives no spread; when it gives one, a t-test that adds the published variance (SD² over its "
               "runs; over 1 run when the source does not say how many, which can only widen the CI). 95% CI of "
               f"Δ = ours − published; p-values unadjusted, alpha = {alpha:g}. Training recipes differ from the "
               "papers', so a significant Δ means our result differs from the published value under this "
               "suite's recipe: a property of the whole recipe, never a refutation of the paper. 'Outcome' uses "
               "the words of 'What it shows' below (confirmed and exceeded; confirmed; not shown with these seeds; "
               "not shown at this budget, when our epochs per cycle are fewer than the suite's seed config "
               "states; differs under this suite's recipe), so each row reads the same in both places; a row of the "
               "reference method against another method's number says only better, worse or no significant "
               "difference (that number is not its claim to confirm)."
               + direction_note(study_metric(groups)))
    return Table("published", "Published references", caption, rows, columns, "no published references loaded",
                 main=("Target s", "Method", "Row", "Published", "n", "Our mean", "Δ vs published", "p", "Outcome"),
                 keys=3)


def power_table(head_to_head: Table) -> Table:
    """Per head-to-head row: the smallest true difference its own primary test detects with the stated
    power at the row's Holm-adjusted level, from the row's observed standard error and df."""
    rows = []
    for h in head_to_head.rows:
        rows.append({k: h[k] for k in ("group", "label", "label_reference", "metric", "metric_label",
                                       "higher_is_better", "epochs_per_cycle", "dataset", "model", "method",
                                       "round", "target_sparsity", "settings",
                                       "reference", "reference_group", "n", "n_reference", "primary_test",
                                       "primary_se", "primary_df", "ci_alpha", "family_size", "power", "mdd",
                                       "epochs_trained", "steps_trained", "train_cost_x_dense_cycle", "budget",
                                       "distribution", "init")})

    def line(r: dict) -> str:
        name = (f"{family_of(r)} {r['label']} vs {r['label_reference']} · {r['model']} · {r['dataset']} · "
                f"s={r['target_sparsity']:g}")
        if r["primary_test"] == "same runs":
            return f"{name}: same runs, nothing to detect"
        if is_missing(r["mdd"]):
            return f"{name}: n={r['n']} vs {r['n_reference']}, no spread to estimate, no power statement"
        return (f"{name}: {r['primary_test']}, n={r['n']} vs {r['n_reference']}, SE {r['primary_se']:.3f} on "
                f"{r['primary_df']:.3g} df, level {r['ci_alpha']:.4g} (Holm, m={r['family_size']}) → smallest "
                f"difference detectable at {100 * r['power']:g}% power: {fmt(r['mdd'], row_metric(r).digits)} "
                f"{row_metric(r).unit}")

    columns = [
        Column("Data", lambda r: r["dataset"], "left", "varies"),
        Column("Model", lambda r: r["model"], "left", "varies"),
        Column("Group", lambda r: r["label"], "left"),
        Column("Target s", lambda r: fmt_sparsity(r["target_sparsity"])),
        *protocol_columns(),
        Column("Test", lambda r: r["primary_test"], "left"),
        Column("n", lambda r: f"{r['n']} vs {r['n_reference']}"),
        Column("Level", lambda r: MISSING if is_missing(r["ci_alpha"]) else f"{r['ci_alpha']:.4g}"),
        Column("Min. detectable Δ", lambda r: fmt(r["mdd"])),
    ]
    power = head_to_head.rows[0]["power"] if head_to_head.rows else 0.8
    metric = row_metric(head_to_head.rows[0]) if head_to_head.rows else ACCURACY
    caption = (f"For each head-to-head row, the smallest true difference in mean {metric.short} "
               f"({units(metric)}) that the row's "
               f"own primary test (paired t or Welch t) detects with {100 * power:g}% power at the alpha it was "
               "actually judged at (its Holm-consistent level), taking the observed standard error and df of the "
               "row as the truth: the root x of P(T' > t*) + P(T' < −t*) = power, T' ~ nct(df, x / SE), "
               "t* = t(1 − level/2, df) (scipy's noncentral t).")
    return Table("power", "Power: smallest detectable difference per comparison", caption, rows, columns,
                 "no head-to-head comparisons", line=line)


def skipped_table(skipped: Sequence[Skipped]) -> Table:
    rows = [{"path": s.path, "status": s.status, "method": s.method, "seed": s.seed, "reason": s.reason}
            for s in sorted(skipped, key=lambda s: (s.path, s.status))]
    columns = [Column("Path", lambda r: r["path"], "left"), Column("Status", lambda r: r["status"], "left"),
               Column("Method", lambda r: r["method"], "left"), Column("Seed", lambda r: str(r["seed"])),
               Column("Reason", lambda r: r["reason"], "left")]
    caption = ("Run folders not in the tables: failed (reason from failed.json), unfinished (no result.json "
               "yet), unreadable, or a duplicate of a seed already counted.")
    return Table("not_included", "Runs not included", caption, rows, columns)

