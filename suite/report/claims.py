"""The study's declared answer: its confirmatory family (the research's claims, the head-to-heads it was run
to decide), the exploratory contrasts beside it, the collapse diagnostic per group and the ticket contrasts.

The family is data, not code: a report plan file (configs/reports/<study>.yaml) lists each comparison with
selectors of the groups it reads (dotted science keys, e.g. `{method: progressive, train.epochs: 160}`), so
the comparisons are fixed before the results are read and Holm's correction spans exactly that list. Costs
are in ONE unit per table: dense cycles of the plan's `unit_epochs` (e.g. "20-epoch dense cycles").
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from scipy import stats as sps

from suite import stats
from suite.config import dotted_value, read_yaml
from suite.errors import ConfigError
from suite.method_facts import default_tree
from suite.report.fmt import fmt, fmt_ci, fmt_p, fmt_sparsity, mean, p_is
from suite.report.load import (ACCURACY, Group, Metric, collapsed_seeds, correct_bits, direction_note, live_per_class,
                               study_metric, unit_text)
from suite.report.tables import Column, Table, ablation_source, equivalence_words

KINDS = ("claim", "contrast", "did")
SELECTOR_EXTRA = ("method", "round", "target_sparsity")  # keys a selector may use besides science keys


# --- cost in one unit ---------------------------------------------------------------------------------

def cost_in_unit(g: Group, unit_epochs: float, unit_steps: float = stats.NAN) -> float:
    """The group's training FLOPs in dense cycles of `unit_epochs` epochs, or of `unit_steps` optimizer steps for
    a study budgeted in steps (mean over seeds): the figures' and tables' one unit (Group.cost with the unit set)."""
    return dataclasses.replace(g, unit_epochs=unit_epochs, unit_steps=unit_steps).cost


def unit_name(unit_epochs: float, unit_steps: float = stats.NAN) -> str:
    """The unit in words: '20-epoch dense cycles', '1000-step dense cycles'."""
    return unit_text(unit_epochs, unit_steps)


def matching_epochs(target_flops: float, flops_per_epoch: float, fixed_flops: float = 0.0) -> int:
    """Epochs of training at `flops_per_epoch` (plus one-off `fixed_flops`, e.g. scoring passes) that cost
    `target_flops` in all, rounded to the nearest epoch: the equal-FLOPs cell of a one-cycle method."""
    if not flops_per_epoch > 0:
        raise ValueError(f"matching_epochs: flops_per_epoch must be positive, got {flops_per_epoch}")
    return max(1, round((target_flops - fixed_flops) / flops_per_epoch))


# --- the plan -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One declared comparison: a claim (a group against a number), a contrast (treated - control, paired
    over seeds) or a difference in differences ((treated - control) - (treated_dense - control_dense))."""
    name: str
    kind: str
    groups: dict            # role -> selector: claim: group; contrast: treated, control; did: + the two dense
    claim: float = stats.NAN
    claim_source: str = ""
    readme: bool = False    # an exploratory row the README block shows beside the confirmatory answer


ROLES = {"claim": ("group",), "contrast": ("treated", "control"),
         "did": ("treated", "control", "treated_dense", "control_dense")}


@dataclass(frozen=True)
class Plan:
    """A study's report plan: the study it is for (model and data), the cost unit, the one margin, the
    collapse rule and the declared comparisons."""
    path: Path
    model: str                  # the study's model and data set: a plan reads only their groups
    data: str
    unit_epochs: float          # costs in dense cycles of this many epochs (NaN where the unit is in steps)
    margin: float               # accuracy points: the ONE equivalence / non-inferiority margin
    alpha: float
    chance_points: float        # a seed within this many points of chance accuracy is collapsed
    broken_drop: float          # a seed this many points under its group's median is collapsed
    confirmatory: tuple[Entry, ...]
    exploratory: tuple[Entry, ...]
    unit_steps: float = stats.NAN  # a study budgeted in optimizer steps: costs in dense cycles of this many steps
    protocol: str = ""             # the head-to-head tables' protocols in words, and why: stated before the tables

    @property
    def unit(self) -> str:
        return unit_name(self.unit_epochs, self.unit_steps)

    def cost(self, g: Group) -> float:
        return cost_in_unit(g, self.unit_epochs, self.unit_steps)

    def covers(self, g: Group) -> bool:
        return (g.model, g.dataset) == (self.model, self.data)

    def set_units(self, groups: Sequence[Group]) -> None:
        """The plan names its study's one cost unit: every group it covers counts its cost in it, in every
        table, figure and line, a partial study too (whose shortest cycle, the unit without a plan, may not
        have run yet)."""
        for g in groups:
            if self.covers(g):
                g.unit_epochs, g.unit_steps = self.unit_epochs, self.unit_steps

    def check_study(self, groups: Sequence[Group], root: Path) -> None:
        """ConfigError when the runs hold no result of the plan's model and data (a plan read against
        another study would test its claims, in its units, on another metric)."""
        if not any(self.covers(g) for g in groups):
            held = sorted({f"{g.model} on {g.dataset}" for g in groups})
            raise ConfigError(f"report plan {self.path.name} is for {self.model} on {self.data}, but {root} holds "
                              f"results of {', '.join(held)} only")


def _entry(raw: Any, where: str) -> Entry:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ConfigError(f"{where}: expected a mapping with a name")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where} ({raw['name']}): kind must be one of {', '.join(KINDS)}, got {kind!r}")
    allowed = {"name", "kind", "claim", "claim_source", "readme", *ROLES[kind]}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where} ({raw['name']}): unknown key '{unknown[0]}' (valid: {', '.join(sorted(allowed))})")
    groups = {}
    for role in ROLES[kind]:
        if not isinstance(raw.get(role), dict) or "method" not in raw[role]:
            raise ConfigError(f"{where} ({raw['name']}): {role} must be a selector mapping naming a method")
        groups[role] = dict(raw[role])
    claim = raw.get("claim")
    if kind == "claim" and not isinstance(claim, (int, float)):
        raise ConfigError(f"{where} ({raw['name']}): a claim needs its number (claim: accuracy in percent)")
    if not isinstance(raw.get("readme", False), bool):
        raise ConfigError(f"{where} ({raw['name']}): readme must be true or false, got {raw['readme']!r}")
    return Entry(raw["name"], kind, groups, float(claim) if claim is not None else stats.NAN,
                 str(raw.get("claim_source", "")), raw.get("readme", False))


def load_plan(path: Path) -> Plan:
    """Parse a report plan file; each problem is one ConfigError line naming the entry."""
    tree = read_yaml(path, "report plan")
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping")
    known = {"model", "data", "unit_epochs", "unit_steps", "margin", "alpha", "chance_points", "broken_drop",
             "confirmatory", "exploratory", "protocol"}
    unknown = sorted(set(tree) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0]}' (valid: {', '.join(sorted(known))})")
    for key in ("model", "data"):
        if not isinstance(tree.get(key), str) or not tree[key]:
            raise ConfigError(f"{path}: name the study's {key} (as result.json records it, e.g. "
                              f"{'lenet300' if key == 'model' else 'mnist'}), got {tree.get(key)!r}")
    units = [key for key in ("unit_epochs", "unit_steps") if key in tree]
    if len(units) != 1:
        raise ConfigError(f"{path}: name the cost unit once: unit_epochs (a dense cycle of so many epochs) or "
                          f"unit_steps (of so many optimizer steps), got {', '.join(units) or 'neither'}")
    for key in (units[0], "margin"):
        if not isinstance(tree.get(key), (int, float)) or not tree[key] > 0:
            raise ConfigError(f"{path}: {key} must be a positive number, got {tree.get(key)!r}")
    if not isinstance(tree.get("protocol", ""), str):
        raise ConfigError(f"{path}: protocol must be text (the head-to-head protocols in words), got {tree['protocol']!r}")
    lists = {}
    for name in ("confirmatory", "exploratory"):
        raw = tree.get(name) or []
        if not isinstance(raw, list):
            raise ConfigError(f"{path}: {name} must be a list of comparisons")
        lists[name] = tuple(_entry(e, f"{path}: {name}[{i}]") for i, e in enumerate(raw))
    return Plan(path, tree["model"], tree["data"], float(tree.get("unit_epochs", stats.NAN)), float(tree["margin"]),
                float(tree.get("alpha", 0.05)), float(tree.get("chance_points", 5.0)),
                float(tree.get("broken_drop", 10.0)), lists["confirmatory"], lists["exploratory"],
                float(tree.get("unit_steps", stats.NAN)), " ".join(tree.get("protocol", "").split()))


def _default(key: str) -> Any:
    try:
        value = dotted_value(default_tree(), key)
    except KeyError:
        return None
    return tuple(value) if isinstance(value, list) else value


def matches(g: Group, selector: dict) -> bool:
    """A group fits a selector: its method, its target sparsity (within 0.002, a chain's round standing for
    the requested point), its round ('final' or a number; default: any) and every other dotted key's value as
    its science settings have it (a key absent there is at its default)."""
    science = g.first.science
    for key, want in selector.items():
        if key == "method":
            if g.method != want:
                return False
        elif key == "target_sparsity":
            if abs(g.target_sparsity - float(want)) > 0.002:
                return False
        elif key == "round":
            if (g.round_label if want == "final" else g.round) != want:
                return False
        else:
            have = science.get(key, _default(key))
            have = tuple(have) if isinstance(have, list) else have
            want = tuple(want) if isinstance(want, list) else want
            if have != want and not (isinstance(have, (int, float)) and isinstance(want, (int, float))
                                     and float(have) == float(want)):
                return False
    return True


def select(groups: Sequence[Group], selector: dict, entry: str) -> Group | None:
    """The one group a selector names; None when it has not run; ConfigError when it names several."""
    found = [g for g in groups if matches(g, selector)]
    if len(found) > 1:
        raise ConfigError(f"report plan: '{entry}' selects {len(found)} groups ({', '.join(g.id for g in found)}): "
                          "add the setting that tells them apart")
    return found[0] if found else None


# --- the collapse diagnostic ----------------------------------------------------------------------------

def collapse_table(groups: Sequence[Group], plan: Plan) -> Table:
    """Per group: live output weights per class (min and median over seeds and classes), collapsed seeds."""
    rows = []
    for g in groups:
        live = [v for r in g.runs for v in (live_per_class(r) or [])]
        seeds = collapsed_seeds(g, plan.chance_points, plan.broken_drop)
        rows.append({"group": g.id, "label": g.label, "method": g.method_label, "target_sparsity": g.target_sparsity,
                     "settings": g.settings_text, "n": len(g.runs),
                     "live_min": min(live) if live else None,
                     "live_median": statistics.median(live) if live else None,
                     "collapsed": {str(s): why for s, why in seeds.items()}, "flagged": bool(seeds)})
    caption = (f"Live weights per output class from each result's mask (result.json live_per_class; – where the "
               f"result predates it), and the seeds that collapsed: a class with no live weight, within "
               f"{plan.chance_points:g} points of chance, or {plan.broken_drop:g} points under the group's median. "
               "A flagged group is not t-tested in the plan's tables: its spread is not noise.")
    return Table("collapse", "Collapse diagnostic", caption, rows, [
        Column("Group", lambda r: r["label"], "left"),
        Column("Target s", lambda r: fmt_sparsity(r["target_sparsity"])),
        Column("Settings", lambda r: r["settings"] or "–", "left", "data"),  # the label says what differs
        Column("n", lambda r: str(r["n"])),
        Column("Live per class (min / median)", lambda r: "–" if r["live_min"] is None
               else f"{r['live_min']} / {r['live_median']:g}"),
        Column("Collapsed seeds", lambda r: "; ".join(f"{s}: {w}" for s, w in r["collapsed"].items()) or "none",
               "left"),
    ])


# --- the comparisons ----------------------------------------------------------------------------------

def _paired_values(a: Group, b: Group) -> tuple[list[float], list[float]]:
    """The primary metric of both groups at their shared seeds (accuracy, or a held-out loss)."""
    shared = sorted(set(a.seeds) & set(b.seeds))
    value_a, value_b = dict(zip(a.seeds, a.values)), dict(zip(b.seeds, b.values))
    return [value_a[s] for s in shared], [value_b[s] for s in shared]


def _row(entry: Entry, groups: Sequence[Group], plan: Plan) -> dict:
    chosen = {role: select(groups, sel, entry.name) for role, sel in entry.groups.items()}
    metric = next((g.metric for g in chosen.values() if g is not None), ACCURACY)
    higher = metric.higher_is_better
    row = {"entry": entry.name, "kind": entry.kind, "claim": entry.claim, "claim_source": entry.claim_source,
           "readme": entry.readme,
           "higher_is_better": higher, "unit": metric.unit, "digits": metric.digits, "cost_unit": plan.unit,
           "groups": {role: (g.id if g else None) for role, g in chosen.items()}, "n": 0, "diff": stats.NAN,
           "ci_low": stats.NAN, "ci_high": stats.NAN, "ci_level": stats.NAN, "ci_alpha": stats.NAN,
           "eq_low": stats.NAN, "eq_high": stats.NAN, "p": stats.NAN, "se": stats.NAN, "df": stats.NAN,
           "mdd": stats.NAN, "means": {role: (mean(g.values) if g else stats.NAN) for role, g in chosen.items()},
           "costs": {role: (plan.cost(g) if g else stats.NAN) for role, g in chosen.items()},
           "epochs": {role: (g.epochs if g else stats.NAN) for role, g in chosen.items()},
           "steps": {role: (g.steps_trained if g else stats.NAN) for role, g in chosen.items()},
           "collapsed": {}, "status": "tested"}
    missing = [role for role, g in chosen.items() if g is None]
    if missing:
        row["status"] = f"not run yet ({', '.join(missing)})"
        return row
    for role, g in chosen.items():
        seeds = collapsed_seeds(g, plan.chance_points, plan.broken_drop)
        if seeds:
            row["collapsed"][role] = {str(s): why for s, why in seeds.items()}
    if row["collapsed"]:
        row["status"] = "collapsed seeds: not t-tested"
        return row
    if entry.kind == "claim":
        values = chosen["group"].values
        row["n"] = len(values)
        t = stats.one_sample(values, entry.claim)
        row["diff"] = t.diff
        if len(values) >= 2 and not math.isnan(t.statistic):
            se = t.diff / t.statistic
            df = len(values) - 1
            sign = 1.0 if higher else -1.0  # H0: worse than the claim by the margin or more (Δ <= -margin, or
            row["p"] = float(sps.t.sf((sign * t.diff + plan.margin) / se, df))  # Δ >= +margin for a loss)
            row.update(se=se, df=float(df))
        return row
    if entry.kind == "contrast":
        a, b = _paired_values(chosen["treated"], chosen["control"])
    else:
        t1, c1 = _paired_values(chosen["treated"], chosen["control"])
        shared = sorted(set(chosen["treated"].seeds) & set(chosen["control"].seeds)
                        & set(chosen["treated_dense"].seeds) & set(chosen["control_dense"].seeds))
        acc = {role: dict(zip(g.seeds, g.values)) for role, g in chosen.items()}
        a = [acc["treated"][s] - acc["control"][s] for s in shared]
        b = [acc["treated_dense"][s] - acc["control_dense"][s] for s in shared]
    row["n"] = len(a)
    t = stats.paired(a, b)
    row.update(diff=t.diff, p=t.p)
    if not math.isnan(t.p):
        se, df = stats.paired_se(a, b)
        row.update(se=se, df=df)
    return row


def _at_level(row: dict, a: float) -> None:
    """The row's intervals and smallest detectable Δ at `a`, its Holm-consistent level (stats.holm_alphas), so
    that the row's p, interval and verdict come from one test: a contrast's two-sided (1 − a) CI excludes 0
    exactly when Holm rejects; a claim's one-sided test at a rejects exactly when the matching end of the
    (1 − 2a) CI clears the margin, and so does a contrast's TOST (its parity reading). An untested row has none."""
    row["ci_alpha"] = a
    if math.isnan(a):
        return
    se, df, diff = row["se"], row["df"], row["diff"]
    eq = stats.t_interval(diff, se, df, 1 - 2 * a)
    row.update(eq_low=eq[0], eq_high=eq[1], mdd=stats.min_detectable_shift(se, df, alpha=a),
               ci_level=1 - 2 * a if row["kind"] == "claim" else 1 - a)
    row["ci_low"], row["ci_high"] = eq if row["kind"] == "claim" else stats.t_interval(diff, se, df, 1 - a)


def _verdict(row: dict, alpha: float, margin: float) -> str:
    if row["status"] != "tested":
        return row["status"]
    if math.isnan(row["p_holm"]):
        return "not tested (n < 2 or no spread)"
    higher = row.get("higher_is_better", True)
    unit = row.get("unit", "points")
    if row["kind"] == "claim":
        if row["p_holm"] < alpha:
            bound = f"−{margin:g}-point" if unit == "points" else f"{'−' if higher else '+'}{margin:g} {unit}"
            return f"reproduced (within the {bound} margin)"
        if (row["eq_high"] < -margin) if higher else (row["eq_low"] > margin):
            return "not reproduced under this recipe: drop larger than the margin"
        return "not reproduced under this recipe: a drop larger than the margin is not ruled out"
    if row["p_holm"] < alpha:
        first_better = (row["diff"] > 0) == higher
        return f"significant: Δ {'>' if row['diff'] > 0 else '<'} 0 (the first {'better' if first_better else 'worse'})"
    return f"no significant difference; {equivalence_words(row['eq_low'], row['eq_high'], margin, higher)}"


def family_rows(entries: Sequence[Entry], groups: Sequence[Group], plan: Plan) -> list[dict]:
    """One row per declared comparison, Holm-Bonferroni over exactly these rows (untested ones not counted)."""
    rows = [_row(e, groups, plan) for e in entries]
    adjusted = stats.holm([r["p"] for r in rows])
    levels = stats.holm_alphas([r["p"] for r in rows], plan.alpha)
    m = sum(1 for p in adjusted if not math.isnan(p))
    for row, p, a in zip(rows, adjusted, levels):
        _at_level(row, a)
        row.update(p_holm=p, family_size=m, verdict=_verdict({**row, "p_holm": p}, plan.alpha, plan.margin))
    return rows


def _level(confidence: float) -> str:
    """' (98.33%)': the confidence level a cell's interval is at, or nothing for an untested row (NaN)."""
    return "" if math.isnan(confidence) else f" ({100 * confidence:.4g}%)"


def _budget_columns(plan: Plan) -> list[Column]:
    """Epochs (or steps) trained and training cost in the plan's one unit, each side of a row 'x vs y'."""
    trained = "steps" if not math.isnan(plan.unit_steps) else "epochs"  # what a budget is counted in
    return [Column(trained.capitalize(), lambda r: " vs ".join(f"{v:g}" if not math.isnan(v) else "–"
                                                               for v in r[trained].values())),
            Column(f"Cost ({plan.unit})", lambda r: " vs ".join(f"{v:.3g}" if not math.isnan(v) else "–"
                                                                for v in r["costs"].values()))]


def _columns(plan: Plan) -> list[Column]:
    digits = lambda r: r.get("digits", 2)  # noqa: E731 (the metric's own: a loss shows 3 decimals)

    def means(r: dict) -> str:
        return " vs ".join(fmt(v, digits(r)) for v in r["means"].values()) + (
            f" vs claim {r['claim']:.{digits(r)}f}" if r["kind"] == "claim" else "")

    return [Column("Comparison", lambda r: r["entry"], "left"),
            Column("n", lambda r: str(r["n"])),
            Column("Means", means),
            *_budget_columns(plan),
            Column("Δ", lambda r: fmt(r["diff"], digits(r), signed=True)),
            Column("Adjusted CI", lambda r: fmt_ci(r["ci_low"], r["ci_high"], digits(r)) + _level(r["ci_level"])),
            Column("TOST CI", lambda r: fmt_ci(r["eq_low"], r["eq_high"], digits(r)) + _level(1 - 2 * r["ci_alpha"])),
            Column("Smallest detectable Δ", lambda r: fmt(r["mdd"], digits(r))),
            Column("Holm p", lambda r: fmt_p(r["p_holm"]) + ("" if math.isnan(r["p_holm"]) else f" (m={r['family_size']})")),
            Column("Verdict", lambda r: r["verdict"], "left")]


_LEVELS = ("Every interval and the smallest detectable Δ are at the row's Holm-consistent level a (alpha / (m − k + 1) "
           "for the k-th smallest p that Holm rejects; alpha / (m − r) for every row after it stopped at r rejections), "
           "so that a row's p, interval and verdict are one test's: 'Adjusted CI' is a contrast's two-sided (1 − a) "
           "CI, which excludes 0 exactly when the verdict is a difference, and a claim's (1 − 2a) CI, whose lower end "
           "clears −margin exactly when the claim is reproduced (the upper end +margin where lower is better); "
           "'TOST CI' is the (1 − 2a) CI that reads parity (inside ±margin) or a drop or gain larger than the margin "
           "(outside it). The smallest detectable Δ is the true difference the test finds with 80% power at a. "
           "An untested row (not run, collapsed seeds, n < 2) has no interval.")
_MAIN = ("Comparison", "n", "Δ", "Adjusted CI", "Holm p", "Verdict")  # the short table; the rest below it


def confirmatory_table(groups: Sequence[Group], plan: Plan) -> Table:
    metric = study_metric(groups)
    h0 = f"Δ <= −{plan.margin:g}" if metric.higher_is_better else f"Δ >= +{plan.margin:g}"
    caption = (f"The confirmatory family, declared in {plan.path.name} before the results were read: "
               f"{len(plan.confirmatory)} comparisons, Holm-Bonferroni over exactly these. A claim is a one-sided "
               f"non-inferiority test of our seeds against the number (H0: {h0}): 'reproduced' when "
               f"Holm rejects it; otherwise 'not reproduced under this recipe' (a different recipe cannot refute a "
               f"paper). A contrast is a paired t-test over shared seeds (treated − control), read as parity only "
               f"through the paired TOST at the one margin ±{plan.margin:g} {metric.unit}. " + _LEVELS
               + f" Costs in {plan.unit}." + direction_note(metric))
    return Table("confirmatory", "Confirmatory family", caption, family_rows(plan.confirmatory, groups, plan),
                 _columns(plan), main=_MAIN, keys=1)


def exploratory_table(groups: Sequence[Group], plan: Plan) -> Table:
    caption = ("Exploratory: comparisons the study measures but did not declare confirmatory (Holm within this "
               "table only); differences in differences subtract each side's dense model of its own cycle length. "
               "A contrast is a paired t-test over shared seeds, a claim a one-sided non-inferiority test against the "
               f"number (margin ±{plan.margin:g}). " + _LEVELS + f" Costs in {plan.unit}.")
    return Table("exploratory", "Exploratory comparisons", caption, family_rows(plan.exploratory, groups, plan),
                 _columns(plan), main=_MAIN, keys=1)


def _example_bits(treated: Group, control: Group) -> tuple[list, list] | None:
    """Both sides' right/wrong per test example at their shared seeds (seed s against seed s), or None when a
    seed has no predictions or the two sides were not tested on the same labels."""
    shared = sorted(set(treated.seeds) & set(control.seeds))
    texts = [{r.seed: r.test_correct for r in g.runs} for g in (treated, control)]
    if not shared or any(t.get(s) is None for t in texts for s in shared):
        return None
    decoded = [[correct_bits(t[s]) for s in shared] for t in texts]
    if len({key for side in decoded for key, _ in side}) != 1:
        return None
    return [bits for _, bits in decoded[0]], [bits for _, bits in decoded[1]]


def example_table(rows: Sequence[dict], groups: Sequence[Group], plan: Plan) -> Table:
    """The plan's tested contrasts once more, over test examples instead of seeds (stats.paired_examples):
    whether each difference exceeds the test set's own sampling noise. Holm within the table, each CI at its
    Holm-consistent level; rows only where every shared seed of both sides kept its predictions."""
    by_id = {g.id: g for g in groups}
    out, bits, missing = [], [], []
    for r in rows:
        if r["kind"] != "contrast" or r["status"] != "tested":
            continue
        pair = _example_bits(by_id[r["groups"]["treated"]], by_id[r["groups"]["control"]])
        if pair is None:
            missing.append(r["entry"])
            continue
        t = stats.paired_examples(*pair)
        out.append({"entry": r["entry"], "seeds": len(pair[0]), "examples": int(pair[0][0].size), "diff": t.diff,
                    "p": t.p, "seed_verdict": r["verdict"], "seed_p_holm": r["p_holm"], "costs": r["costs"],
                    "epochs": r["epochs"], "steps": r["steps"]})
        bits.append(pair)
    ps = [r["p"] for r in out]
    for row, pair, p, a in zip(out, bits, stats.holm(ps), stats.holm_alphas(ps, plan.alpha)):
        t = stats.paired_examples(*pair, confidence=1 - a) if not math.isnan(a) else None
        row.update(p_holm=p, ci_level=1 - a, ci_low=t.ci_low if t else stats.NAN, ci_high=t.ci_high if t else stats.NAN,
                   verdict="not tested" if math.isnan(p) else
                   f"beyond the test set's noise: the {'first' if row['diff'] > 0 else 'second'} side is more often right"
                   if p < plan.alpha else "within the test set's noise")
    caption = ("Exploratory. The tested contrasts of the tables above once more, over test examples instead of seeds: "
               "the seed-level tests take the test set as fixed, so a difference of a few tenths of a point may be a "
               "property of these examples. Per test example i, d_i = 100 x the mean over the shared seeds of "
               "(first side right − second side right); a one-sample t-test of the d_i against 0 (df = examples − 1; "
               "with one seed, McNemar's question), conditional on the trained networks. Its Δ equals the seed-level "
               "mean difference. Holm within this table; 'Adjusted CI' at the row's Holm-consistent level (shown "
               "beside it), so it excludes 0 exactly when the verdict is a difference. A difference that both this "
               "test and the seed-level one find is beyond both noise sources. Rows need every shared seed's "
               "predictions (predictions.npy; an export carries them as right/wrong bits)"
               + (f"; not here for lack of them or of one test set: {'; '.join(missing)}." if missing else "."))
    return Table("examples", "Contrasts over test examples", caption, out, [
        Column("Comparison", lambda r: r["entry"], "left"),
        Column("Seeds", lambda r: str(r["seeds"])),
        Column("Test examples", lambda r: f"{r['examples']:,}"),
        Column("Δ", lambda r: fmt(r["diff"], signed=True)),
        Column("Adjusted CI", lambda r: fmt_ci(r["ci_low"], r["ci_high"]) + _level(r["ci_level"])),
        Column("Holm p", lambda r: fmt_p(r["p_holm"])),
        Column("Verdict", lambda r: r["verdict"], "left"),
        Column("Seed-level verdict", lambda r: r["seed_verdict"], "left"),
        *_budget_columns(plan),
    ], main=("Comparison", "Seeds", "Δ", "Adjusted CI", "Holm p", "Verdict"), keys=1)


# "source": the run whose final mask the others retrain (the research's title asks whether it finds a ticket)
TICKET_CONTRASTS = (("ticket", "reinit"), ("ticket", "source"), ("ticket", "shuffle"), ("reinit", "shuffle"),
                    ("rewire", "shuffle"))


def ticket_table(groups: Sequence[Group], plan: Plan) -> Table:
    """Per source, the contrasts between its sparse-from-the-start retrainings (paired over seeds, Holm
    within the table): ticket − reinit (Frankle & Carbin's test), ticket − source (the mask trained sparse from
    the start against the run that found it), ticket − shuffle, reinit − shuffle, and rewire − shuffle (what
    the neurons' degrees carry)."""
    by_source: dict[str, dict[str, Group]] = {}
    sources: dict[str, Group] = {}
    for g in groups:
        source = ablation_source(g, groups)
        if source is not None:
            by_source.setdefault(source.id, {})[g.method] = g
            sources[source.id] = source
    rows = []
    for sid, kinds in sorted(by_source.items()):
        kinds = {**kinds, "source": sources[sid]}
        for treated, control in TICKET_CONTRASTS:
            if treated in kinds and control in kinds:
                a, b = _paired_values(kinds[treated], kinds[control])
                t = stats.paired(a, b)
                collapsed = {side: {str(k): why for k, why in seeds.items()} for side in (treated, control)
                             for seeds in [collapsed_seeds(kinds[side], plan.chance_points, plan.broken_drop)] if seeds}
                rows.append({"source": sid, "source_method": sources[sid].method_label,
                             "label_source": sources[sid].label,
                             "target_sparsity": sources[sid].target_sparsity,
                             "budget": sources[sid].budget_label, "higher_is_better": sources[sid].metric.higher_is_better,
                             "unit": sources[sid].metric.unit, "contrast": f"{treated} − {control}",
                             "n": len(a), "diff": t.diff, "collapsed": collapsed,
                             "p": stats.NAN if collapsed else t.p,  # a failed draw is not seed noise: no t-test
                             "se_df": stats.paired_se(a, b),
                             "epochs": {side: kinds[side].epochs for side in (treated, control)},
                             "steps": {side: kinds[side].steps_trained for side in (treated, control)},
                             "costs": {side: plan.cost(kinds[side]) for side in (treated, control)}})
    ps = [r["p"] for r in rows]
    for row, p, level in zip(rows, stats.holm(ps), stats.holm_alphas(ps, plan.alpha)):
        se, df = row.pop("se_df")
        row["p_holm"], row["ci_level"] = p, 1 - level
        row["ci_low"], row["ci_high"] = (stats.NAN, stats.NAN) if math.isnan(p) else stats.t_interval(row["diff"], se, df, 1 - level)
        row["verdict"] = (f"collapsed seeds ({', '.join(row['collapsed'])}): not t-tested" if row["collapsed"] else
                          "not tested" if math.isnan(p) else
                          ("positive" if (row["diff"] > 0) == row["higher_is_better"] else "negative") if p < plan.alpha
                          else "no significant difference")
    caption = ("Exploratory. For each dense-to-sparse source, its final mask retrained sparse from the start: ticket "
               "(the source's own init), reinit (a fresh init), shuffle (the mask permuted within each layer), rewire "
               "(every neuron's fan-in and fan-out kept). ticket − reinit > 0 is Frankle & Carbin's winning ticket; "
               "ticket − source > 0 says the mask, trained sparse from the start at the source's own init, beats "
               "the run that found it (whose costs differ: each side's are beside it); "
               "paired t over seeds, Holm within the table; 'Adjusted CI' is at the row's Holm-consistent level "
               "(shown beside it), so it excludes 0 exactly when the outcome is positive or negative. A side with a "
               "collapsed seed (the collapse diagnostic's rule) is not t-tested: such a spread is a failed draw, not "
               "seed noise.")
    return Table("tickets", "Lottery-ticket contrasts", caption, rows, [
        Column("Source", lambda r: r["label_source"], "left"),
        Column("Target s", lambda r: fmt_sparsity(r["target_sparsity"])),
        Column("Budget", lambda r: r["budget"]),
        Column("Contrast", lambda r: r["contrast"], "left"),
        Column("n", lambda r: str(r["n"])),
        Column("Δ", lambda r: fmt(r["diff"], signed=True)),
        Column("Adjusted CI", lambda r: fmt_ci(r["ci_low"], r["ci_high"]) + _level(r["ci_level"])),
        Column("Holm p", lambda r: fmt_p(r["p_holm"])),
        Column("Outcome", lambda r: r["verdict"], "left"),
        *_budget_columns(plan),
    ])


def ticket_lines(tickets: Table) -> list[str]:
    """The research's title question per source, for the headline: is its final mask a winning ticket (its own
    init better than a fresh one, ticket − reinit, Holm within the ticket table)? And does that ticket, trained
    sparse from the start, beat the run that found it (ticket − source)?"""
    against_source = {r["source"]: r for r in tickets.rows if r["contrast"] == "ticket − source"}
    out = []
    for r in tickets.rows:
        if r["contrast"] != "ticket − reinit":
            continue
        answer = {"not tested": "not tested", "positive": "yes, a winning ticket: its own init beats a fresh one",
                  "negative": "no: a fresh init beats its own"}.get(
            r["verdict"], "not shown: its own init and a fresh one do not differ significantly")
        line = (f"{r['label_source']} at {100 * r['target_sparsity']:g}%, {r['budget']}: is its final mask a "
                f"lottery ticket? {answer} (ticket − reinit Δ {fmt(r['diff'], signed=True)} {r['unit']}, "
                f"n = {r['n']}, Holm p {p_is(r['p_holm'])})")
        s = against_source.get(r["source"])
        if s is not None:
            versus = {"not tested": "is not tested against", "positive": "beats",
                      "negative": "falls short of"}.get(s["verdict"], "does not differ significantly from")
            line += (f"; trained sparse from the start, that ticket {versus} the run that found it (ticket − "
                     f"source Δ {fmt(s['diff'], signed=True)} {s['unit']}, n = {s['n']}, Holm p {p_is(s['p_holm'])})")
        out.append(line + ".")
    return out


def declaration(plan: Plan, metric: Metric = ACCURACY) -> list[str]:
    """The family, stated before any table: one line per declared comparison, then what the rest is."""
    out = [f"Confirmatory family ({plan.path.name}, Holm over these {len(plan.confirmatory)}; margin "
           f"±{plan.margin:g} {metric.unit}; costs in {plan.unit}):"]
    claim = "{:.2f}%" if metric.unit == "points" else "{:g} " + metric.unit
    out += [f"{i}. {e.name}" + (f" (claim {claim.format(e.claim)}: {e.claim_source})" if e.kind == "claim" else "")
            for i, e in enumerate(plan.confirmatory, 1)]
    out += ["", "Every other table is exploratory: its p-values are corrected within the table only."]
    return out + (["", f"Protocols of the head-to-head tables: {plan.protocol}"] if plan.protocol else [])


def plan_tables(groups: Sequence[Group], plan: Plan) -> list[Table]:
    """The plan's tables, confirmatory first; the ticket table only where ablations of that kind ran. Only
    the groups of the plan's model and data are read."""
    groups = [g for g in groups if plan.covers(g)]
    declared = [confirmatory_table(groups, plan), exploratory_table(groups, plan)]
    examples = example_table([r for t in declared for r in t.rows], groups, plan)
    tickets = ticket_table(groups, plan)
    return [*declared, *([examples] if examples.rows else []), collapse_table(groups, plan),
            *([tickets] if tickets.rows else [])]
