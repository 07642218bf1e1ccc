"""`python -m suite.report RUNS_DIR`: tables, tests and plots that compare finished runs.

Reads every `result.json` under RUNS_DIR (LTH round results included as points at their own
sparsity), groups seeds by experiment hash and prints: a summary per group, head-to-head tests
against a reference method, TOST equivalence to the dense baseline, published reference numbers
and, per group, the smallest difference its seeds can detect. Local output is the source of
truth; `--wandb` only mirrors it.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml
from tabulate import tabulate

from suite import stats
from suite.config import ConfigError, read_yaml
from suite.study import load_export, machine, readable, sweep_records
from suite.results import InvalidResult, RunFolder, check_result, moved_aside, read_result
from suite.methods import dense_methods, method_sections

# the dense controls (methods with prunes = False) and the method-specific science settings
# ("prune.", "snip.", ...) come from the method registry
DENSE = dense_methods()  # a tuple: test membership (`in`), never equality
METHOD_SECTIONS = tuple(f"{s}." for s in method_sections())
IDENTITY_KEYS = ("method", "model.name", "data.name", "prune.target_sparsity")  # shown in own columns
SPARSITY_DECIMALS = 4   # target sparsities equal to 4 decimals count as the same sparsity
DEFAULT_PUBLISHED = Path(__file__).resolve().parent.parent / "configs" / "published.yaml"
FORMATS = ("markdown", "latex", "csv", "json")
_ROUND_DIR = re.compile(r"round_(\d+)$")


# --- reading run folders ------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """One finished result: a run's own result.json, or one round of an LTH chain."""
    path: Path                 # folder holding the result.json
    method: str
    model: str
    dataset: str
    seed: int
    experiment: str            # hash of the science settings (seed excluded)
    science: dict              # science settings that differ from the defaults, dotted keys
    target_sparsity: float
    achieved_sparsity: float
    final_accuracy: float      # percent
    best_accuracy: float       # percent, best epoch at the final sparsity; NaN when absent
    params_remaining: float
    params_total: float
    layer_sparsity: dict
    round: int | None          # LTH round of round_<r>/result.json; None for a run's own result
    rounds: int                # rounds the whole run trained (LTH: levels + 1)
    result_round: int | None   # the "round" field of the file: the final round for a run's own result
    epochs_trained: float = stats.NAN       # total_epochs_trained: every round up to this one (LTH: cumulative)
    train_flops_x_dense: float = stats.NAN  # training FLOPs over a dense run's, when the trainer records them
    wall_time_s: float = stats.NAN          # the run's own recorded duration (up to this round)
    records: tuple | None = None            # epoch records carried by an export; None: read metrics.jsonl
    layer_sizes: dict | None = None         # weights per prunable layer, carried by an export; None: read the mask
    code: str | None = None    # the code that trained it: commit[+dirty diff hash], None if unrecorded


@dataclass(frozen=True)
class Skipped:
    """A run folder that is not in the tables, and why."""
    path: str
    status: str                # failed | unfinished | unreadable | duplicate
    method: str
    seed: Any
    reason: str


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else stats.NAN


def _parse_result(path: Path, data: Any, round_index: int | None) -> Run:
    """A Run from a parsed result.json; raises ValueError naming what is missing."""
    check_result(data)  # the run folder's own rules (suite.results): one definition of "finished"
    science = data.get("science") or {}
    return Run(
        path=path.parent, method=str(data["method"]), model=str(data["model"]), dataset=str(data["dataset"]),
        seed=int(data["seed"]), experiment=str(data["experiment"]), science=dict(science),
        target_sparsity=float(data["target_sparsity"]), achieved_sparsity=float(data["achieved_sparsity"]),
        final_accuracy=float(data["final_test_accuracy"]), best_accuracy=_number(data.get("best_test_accuracy")),
        params_remaining=_number(data.get("params_remaining")), params_total=_number(data.get("params_total")),
        layer_sparsity=dict(data.get("layer_sparsity") or {}), round=round_index,
        rounds=int(data.get("rounds") or 1),
        result_round=data["round"] if isinstance(data.get("round"), int) else None,
        epochs_trained=_number(data.get("total_epochs_trained")),
        train_flops_x_dense=_number(data.get("train_flops_x_dense")), wall_time_s=_number(data.get("wall_time_s")),
        code=_code_text(data.get("code")),
    )


def _code_text(code: Any) -> str | None:
    """`<commit[:12]>` or `<commit[:12]>+dirty:<diff hash[:8]>` from result.json's code field."""
    if not isinstance(code, dict) or not code.get("commit"):
        return None
    text = str(code["commit"])[:12]
    return f"{text}+dirty:{str(code.get('diff_sha256') or '?')[:8]}" if code.get("dirty") else text


def code_warnings(groups: Sequence[Group]) -> list[str]:
    """One warning per experiment whose seeds were trained by different code (commit or dirty diff)."""
    lines = []
    for g in groups:
        versions = sorted({r.code for r in g.runs if r.code is not None})
        if len(versions) > 1:
            where = g.runs[0].path.parent.name
            lines.append(f"warning: the seeds of {where} come from different code ({', '.join(versions)}); "
                         f"their spread mixes code changes with seed noise")
    return lines


def _describe_unfinished(folder: Path, root: Path) -> Skipped:
    config: dict = {}
    if (folder / "config.json").is_file():
        try:
            config = _read_json(folder / "config.json")
        except (OSError, ValueError):
            config = {}
    method, seed = str(config.get("method", "?")), config.get("seed", "?")
    rel = folder.relative_to(root).as_posix()
    failed = folder / "failed.json"
    if failed.is_file():
        try:
            reason = str(_read_json(failed).get("reason", "no reason given"))
        except (OSError, ValueError, AttributeError):
            reason = "failed.json is unreadable"
        return Skipped(rel, "failed", method, seed, reason)
    parts = ["no result.json"]
    if (folder / "checkpoint.pt").is_file():
        parts.append("checkpoint.pt present: interrupted or still running (the same command resumes)")
    else:
        parts.append("no checkpoint: never got past the start, or still starting")
    return Skipped(rel, "unfinished", method, seed, "; ".join(parts))


def scan_runs(root: Path) -> tuple[list[Run], list[Skipped]]:
    """Every finished result under root (LTH rounds included) and every run folder left out."""
    runs: list[Run] = []
    skipped: list[Skipped] = []
    for dirpath, dirnames, filenames in os.walk(root):
        # wandb/ holds tracker files, never runs; a run --force moved aside is history, not a result;
        # sorting keeps the output deterministic.
        dirnames[:] = sorted(d for d in dirnames if d != "wandb" and not moved_aside(d))
        folder = Path(dirpath)
        if _ROUND_DIR.match(folder.name) and ({"config.json", "result.json"} & set(os.listdir(folder.parent))):
            continue  # a round of a chain: read together with its run folder below
        names = set(filenames)
        if "result.json" in names:
            try:
                top = _parse_result(folder / "result.json", read_result(folder / "result.json"), None)
            except (OSError, ValueError) as e:  # InvalidResult: unparseable, a field missing, NaN accuracy
                skipped.append(_invalid(folder / "result.json", root, e))
                continue
            runs.append(top)
            runs.extend(_round_results(folder, root, top, skipped))
        elif names & {"config.json", "checkpoint.pt", "failed.json"}:
            skipped.append(_describe_unfinished(folder, root))
            runs.extend(_round_results(folder, root, None, skipped))
    return runs, skipped


def _invalid(path: Path, root: Path, error: Exception) -> Skipped:
    """A result.json that is not a valid finished result: listed as invalid, with its path."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data = data if isinstance(data, dict) else {}
    return Skipped(path.parent.relative_to(root).as_posix(), "invalid", str(data.get("method", "?")),
                   data.get("seed", "?"), f"{path.relative_to(root).as_posix()}: {error}")


def _round_results(folder: Path, root: Path, top: Run | None, skipped: list[Skipped]) -> list[Run]:
    """Round results of an LTH chain, minus the final round when it repeats the run's own result."""
    found: list[Run] = []
    for sub in folder.iterdir():
        m = _ROUND_DIR.match(sub.name)
        if not (m and (sub / "result.json").is_file()):
            continue
        try:
            found.append(_parse_result(sub / "result.json", read_result(sub / "result.json"), int(m.group(1))))
        except (OSError, ValueError) as e:
            skipped.append(_invalid(sub / "result.json", root, e))
    found.sort(key=lambda r: r.round)
    if top is None or not found:
        return found
    # The final round is the run's own result.json: count it once. The trainer names it in the
    # result's "round" field; files without that field are matched by their numbers.
    if top.result_round is not None:
        return [r for r in found if r.round != top.result_round]
    last = found[-1]
    if (last.seed, last.achieved_sparsity, last.final_accuracy) == (top.seed, top.achieved_sparsity,
                                                                     top.final_accuracy):
        found.pop()
    return found


# --- groups -------------------------------------------------------------------------------------

def _value_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else str(value)


def budget_key(science: dict) -> tuple:
    """Science settings that must match for a fair comparison across methods: everything except
    the method, model, data name and the method-specific sections (the sparsity is matched apart)."""
    return tuple(sorted((k, _value_text(v)) for k, v in science.items()
                        if k not in IDENTITY_KEYS and not k.startswith(METHOD_SECTIONS)))


@dataclass
class Group:
    """The seeds of one experiment (one LTH round counts as its own experiment)."""
    experiment: str
    round: int | None
    runs: list[Run] = field(default_factory=list)

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def id(self) -> str:
        return self.experiment if self.round is None else f"{self.experiment}/round_{self.round}"

    @property
    def method(self) -> str:
        return self.first.method

    @property
    def model(self) -> str:
        return self.first.model

    @property
    def dataset(self) -> str:
        return self.first.dataset

    @property
    def target_sparsity(self) -> float:
        return self.first.target_sparsity

    @property
    def sparsity_key(self) -> float:
        return round(self.target_sparsity, SPARSITY_DECIMALS)

    @property
    def budget(self) -> tuple:
        return budget_key(self.first.science)

    @property
    def variant(self) -> tuple:
        """The method with its own settings (sparsity apart): one line in a trade-off plot."""
        return (self.method, tuple((k, _value_text(v)) for k, v in sorted(self.first.science.items())
                                   if k.startswith(METHOD_SECTIONS) and k != "prune.target_sparsity"))

    @property
    def match_key(self) -> tuple:
        """Same data, model and training budget: what a fair comparison holds fixed."""
        return (self.dataset, self.model, self.budget)

    @property
    def settings(self) -> dict:
        return {k: v for k, v in sorted(self.first.science.items()) if k not in IDENTITY_KEYS}

    @property
    def settings_text(self) -> str:
        return ", ".join(f"{k}={_value_text(v)}" for k, v in self.settings.items())

    @property
    def round_label(self) -> str:
        if self.round is not None:
            return f"round {self.round}"
        return "final" if self.first.rounds > 1 else ""

    @property
    def method_label(self) -> str:
        return self.method if self.round is None else f"{self.method} (round {self.round})"

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    @property
    def accuracies(self) -> list[float]:
        return [r.final_accuracy for r in self.runs]

    @property
    def epochs(self) -> float:
        """Epochs trained, mean over seeds: every round of a chain up to this one counts."""
        return _mean([r.epochs_trained for r in self.runs])

    @property
    def flops_x_dense(self) -> float:
        return _mean([r.train_flops_x_dense for r in self.runs])

    def sort_key(self) -> tuple:
        return (self.dataset, self.model, self.budget, self.sparsity_key, self.method,
                -1 if self.round is None else self.round, self.settings_text)


def group_runs(runs: Sequence[Run], skipped: list[Skipped], root: Path) -> list[Group]:
    """Runs grouped by (experiment, round), seeds sorted; a repeated seed is kept once and listed."""
    groups: dict[tuple, Group] = {}
    for run in sorted(runs, key=lambda r: (r.experiment, -1 if r.round is None else r.round, r.seed, str(r.path))):
        key = (run.experiment, run.round)
        group = groups.setdefault(key, Group(run.experiment, run.round))
        twin = next((r for r in group.runs if r.seed == run.seed), None)
        if twin is not None:
            first = twin.path.relative_to(root).as_posix()
            skipped.append(Skipped(run.path.relative_to(root).as_posix(), "duplicate", run.method, run.seed,
                                   f"same experiment and seed as {first}; counted once"))
            continue
        group.runs.append(run)
    return sorted(groups.values(), key=Group.sort_key)


# --- tables -------------------------------------------------------------------------------------

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


MISSING = "–"


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt(v: Any, digits: int = 2, signed: bool = False) -> str:
    if _is_missing(v):
        return MISSING
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def fmt_p(p: Any) -> str:
    if _is_missing(p):
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_ci(lo: Any, hi: Any, digits: int = 2) -> str:
    if _is_missing(lo) or _is_missing(hi):
        return MISSING
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def fmt_sparsity(s: Any) -> str:
    return MISSING if _is_missing(s) else f"{s:.4f}"


def _mean(values: Sequence[float]) -> float:
    x = np.asarray(values, dtype=float)
    return float(x.mean()) if x.size and not np.isnan(x).any() else stats.NAN


def _group_fields(g: Group) -> dict:
    return {"group": g.id, "dataset": g.dataset, "model": g.model, "method": g.method, "round": g.round_label,
            "target_sparsity": g.target_sparsity, "settings": g.settings, "epochs_trained": g.epochs,
            "train_flops_x_dense": g.flops_x_dense}


def fmt_epochs(e: Any) -> str:
    return MISSING if _is_missing(e) else f"{e:g}"


def fmt_flops(x: Any) -> str:
    return MISSING if _is_missing(x) else f"{x:.3g}x"


def _budget_columns(rows: list[dict], suffix: str = "") -> list[Column]:
    """Epochs trained (and training FLOPs over dense, once the trainer records them) per row; with a
    suffix ('_reference') the row's value is shown against the reference's."""
    def pair(key: str, show: Callable[[Any], str]) -> Callable[[dict], str]:
        if not suffix:
            return lambda r: show(r[key])
        return lambda r: f"{show(r[key])} vs {show(r[key + suffix])}"
    columns = [Column("Epochs", pair("epochs_trained", fmt_epochs))]
    if any(not _is_missing(r.get("train_flops_x_dense")) for r in rows):
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
        dense_mean = _mean(dense.accuracies) if dense else stats.NAN
        rows.append({
            **_group_fields(g), "n": s.n, "seeds": g.seeds,
            "mean": s.mean, "sd": s.sd, "ci_low": s.ci_low, "ci_high": s.ci_high, "min": s.min, "max": s.max,
            "best_mean": _mean([r.best_accuracy for r in g.runs]),
            "achieved_sparsity": _mean([r.achieved_sparsity for r in g.runs]),
            "params_remaining": _mean([r.params_remaining for r in g.runs]),
            "params_total": _mean([r.params_total for r in g.runs]),
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
        Column("Params left", lambda r: MISSING if _is_missing(r["params_remaining"])
               else f"{r['params_remaining']:,.0f}", paper="no"),
        *_budget_columns(rows),
        Column("Δ dense", lambda r: fmt(r["diff_dense"], signed=True)),
    ]
    if not any(r["round"] for r in rows):
        columns = [c for c in columns if c.header != "Round"]
    if any(r["settings"] for r in rows):
        at = next(i for i, c in enumerate(columns) if c.header == "Target s") + 1
        columns.insert(at, Column("Settings", lambda r: ", ".join(
            f"{k}={_value_text(v)}" for k, v in r["settings"].items()), "left", "no"))
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
                **_group_fields(g), "reference": reference, "reference_group": ref.id,
                "n": len(a), "n_reference": len(b), "mean": _mean(a), "mean_reference": _mean(b),
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
        Column("Holm p", lambda r: fmt_p(r["primary_p_holm"]) + ("" if _is_missing(r["primary_p_holm"]) else
                                                                  (" (paired)" if r["paired"] else " (Welch)"))),
        Column("Verdict", lambda r: r["verdict"], "left"),
        *_budget_columns(rows, "_reference"),
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
        rows.append({**_group_fields(g), "dense_group": dense.id, "n": len(g.runs), "n_dense": len(dense.runs),
                     "mean": _mean(g.accuracies), "dense_mean": _mean(dense.accuracies), "diff": t.diff,
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
        *_budget_columns(rows),
    ]
    caption = (f"'No accuracy drop' checked as equivalence: TOST (two one-sided Welch t-tests) of each pruned "
               f"group against the dense baseline of the same data, model and budget, margin ±{margin:g} "
               f"accuracy points, alpha = {alpha:g}. Equivalence is shown when both one-sided tests reject, i.e. "
               f"the {100 * (1 - 2 * alpha):g}% CI of the difference lies inside the margin. With few seeds the "
               "CI is wide and 'not shown' is the expected, honest outcome: it means the data cannot rule out a "
               "drop larger than the margin, not that a drop was found.")
    return Table("equivalence", f"Equivalence to dense (TOST, margin ±{margin:g})", caption, rows, columns,
                 "no pruned group has a dense baseline with the same data, model and budget")


# --- published references -----------------------------------------------------------------------

@dataclass(frozen=True)
class Published:
    """One number from the literature, compared against but never re-run here."""
    method: str
    model: str
    dataset: str
    target_sparsity: float
    accuracy: float            # percent
    spread: float              # the paper's +- value when it gives one, else NaN
    source: str
    approximate: bool
    note: str
    checked: str               # how far the number was verified against its source
    sparsity_tolerance: float  # |ours - published| within this counts as the same sparsity


def load_published(path: Path) -> list[Published]:
    """Parse configs/published.yaml; each problem is one ConfigError line naming the entry."""
    tree = read_yaml(path, "published references file")
    entries = (tree or {}).get("references") if isinstance(tree, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a top-level 'references:' list")
    allowed = {f.name for f in dataclasses.fields(Published)}
    out = []
    for i, e in enumerate(entries):
        where = f"{path}: references[{i}]"
        if not isinstance(e, dict):
            raise ConfigError(f"{where}: expected a mapping")
        unknown = sorted(set(e) - allowed)
        if unknown:
            raise ConfigError(f"{where}: unknown key '{unknown[0]}' (valid: {', '.join(sorted(allowed))})")
        for key in ("method", "model", "dataset", "target_sparsity", "accuracy", "source"):
            if e.get(key) is None:
                raise ConfigError(f"{where}: missing '{key}'")
        s, acc = e["target_sparsity"], e["accuracy"]
        if not isinstance(s, (int, float)) or not 0 <= s < 1:
            raise ConfigError(f"{where}: target_sparsity must be a fraction in [0, 1), got {s!r}")
        if not isinstance(acc, (int, float)) or not 0 <= acc <= 100:
            raise ConfigError(f"{where}: accuracy must be in percent (0-100), got {acc!r}")
        spread = e.get("spread")
        out.append(Published(str(e["method"]), str(e["model"]), str(e["dataset"]), float(s), float(acc),
                             float(spread) if spread is not None else stats.NAN, str(e["source"]),
                             bool(e.get("approximate", False)), str(e.get("note", "")),
                             str(e.get("checked", "")), float(e.get("sparsity_tolerance", 0.0005))))
    return out


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
                         "mean": _mean(g.accuracies), "diff": _mean(g.accuracies) - pub.accuracy,
                         "ci_low": t.ci_low, "ci_high": t.ci_high, "t": t.statistic, "df": t.df, "p": t.p,
                         "note": NO_TESTS if len(g.runs) < 2 else ""})
        if not matches:
            rows[-1]["note"] = (rows[-1]["note"] + " " if rows[-1]["note"] else "") + "(no matching runs here)"

    def published_text(r: dict) -> str:
        if r["kind"] != "published, not re-run":
            return ""
        spread = "" if _is_missing(r["published_spread"]) else f" ± {r['published_spread']:.2f}"
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
        *_budget_columns(rows),
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
        rows.append({**_group_fields(g), "n": s.n, "sd": s.sd, "alpha": alpha, "power": power,
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
        *_budget_columns(rows),
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


# --- the report ---------------------------------------------------------------------------------

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
    tables = [summary_table(groups, alpha), head_to_head_table(groups, reference, alpha),
              equivalence_table(groups, margin, alpha), published_table(groups, published, reference),
              power_table(groups, alpha), skipped_table(skipped)]
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
        if _is_missing(p):
            test = "no test (n < 2 or no spread)"
        else:
            test = ("significant" if p < alpha else "not significant") + f" after Holm (p = {fmt_p(p)})"
        e, e_ref = r["epochs_trained"], r["epochs_trained_reference"]
        if _is_missing(e) or _is_missing(e_ref) or e_ref == 0:
            budget = "epochs trained not recorded"
        elif e == e_ref:
            budget = f"same epochs ({e:g})"
        else:
            budget = f"{r['method']} trained {e / e_ref:.3g}x the epochs ({e:g} vs {e_ref:g})"
        f, f_ref = r["train_flops_x_dense"], r["train_flops_x_dense_reference"]
        if not (_is_missing(f) or _is_missing(f_ref)):
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


# --- rendering ----------------------------------------------------------------------------------

def _display(table: Table) -> tuple[list[str], list[list[str]], list[str]]:
    headers = [c.header for c in table.columns]
    body = [[c.show(r) for c in table.columns] for r in table.rows]
    return headers, body, [c.align for c in table.columns]


def render_markdown(report: Report) -> str:
    m = report.meta
    out = [f"# Pruning report: {m['runs_dir']}", ""]
    if m.get("headline"):
        out += [f"- {line}" for line in m["headline"]] + [""]
    out += [f"{results_sentence(m)}; reference method "
            f"'{m['reference']}'; alpha = {m['alpha']:g}; equivalence margin ±{m['margin']:g} points; "
            f"multiple comparisons: {m['correction']}.", ""]
    out += render_tables_markdown(report)
    if m.get("plots"):
        out += ["## Plots", ""] + [f"- {p}" for p in m["plots"]] + [""]
    return "\n".join(out)


def render_tables_markdown(report: Report, level: str = "##") -> list[str]:
    out: list[str] = []
    for i, table in enumerate(report.tables, 1):
        out += [f"{level} {i}. {table.title}", "", f"*{table.caption}*", ""]
        if not table.rows:
            out += [f"({table.empty})", ""]
        elif table.line is not None:
            out += [f"- {table.line(r)}" for r in table.rows] + [""]
        else:
            headers, body, align = _display(table)
            out += [tabulate(body, headers, tablefmt="github", disable_numparse=True, colalign=align), ""]
    return out


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"$<$", ">": r"$>$"}  # text-mode < and > print as inverted marks in OT1
_LATEX_UNICODE = {"–": "--", "—": "---", "±": r"$\pm$", "Δ": r"$\Delta$", "≈": r"$\approx$", "−": "$-$",
                  "→": r"$\to$", "·": r"$\cdot$", "≥": r"$\geq$", "’": "'"}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials, then spell the few unicode signs the report uses in LaTeX."""
    text = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    for uni, tex in _LATEX_UNICODE.items():
        text = text.replace(uni, tex)
    return text


def _paper_columns(table: Table) -> Table:
    """The columns a paper prints: 'no' columns left out (they stay in CSV/JSON), 'varies' ones only
    when the rows differ in them (one data set and model go in the caption instead)."""
    keep = []
    for c in table.columns:
        if c.paper == "no":
            continue
        if c.paper == "varies" and len({c.show(r) for r in table.rows}) < 2:
            continue
        keep.append(c)
    constant = [c for c in table.columns if c.paper == "varies" and c not in keep and table.rows]
    extra = "; ".join(f"{c.header}: {c.show(table.rows[0])}" for c in constant)
    return dataclasses.replace(table, columns=keep, caption=table.caption + (f" ({extra}.)" if extra else ""))


def render_latex(report: Report) -> str:
    m = report.meta
    out = [f"% Pruning report: {latex_escape(m['runs_dir'])} (generated by python -m suite.report)",
           r"% Needs \usepackage{booktabs} in the preamble. Every column of a table is in --format csv/json.", ""]
    for table in report.tables:
        if not table.rows:
            out += [f"% {table.title}: {latex_escape(table.empty)}", ""]
            continue
        headers, body, align = _display(_paper_columns(table))
        # tabulate escapes the LaTeX specials; the unicode signs are spelt out after it.
        tab = tabulate(body, headers, tablefmt="latex_booktabs", disable_numparse=True, colalign=align)
        for uni, tex in _LATEX_UNICODE.items():
            tab = tab.replace(uni, tex)
        out += [r"\begin{table}[htbp]", r"\centering", r"\small",
                rf"\caption{{{latex_escape(table.title)}. {latex_escape(_paper_columns(table).caption)}}}",
                rf"\label{{tab:pp-{table.name.replace('_', '-')}}}", tab, r"\end{table}", ""]
    return "\n".join(out)


def _plain(value: Any) -> Any:
    """A JSON-safe value: NaN becomes null, numpy scalars become Python numbers."""
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def render_json(report: Report) -> str:
    meta = {k: v for k, v in report.meta.items() if k != "recorded"}
    tree: dict = {"meta": _plain({**meta, "captions": {t.name: t.caption for t in report.tables}})}
    for table in report.tables:
        tree[table.name] = _plain(table.rows)
    return json.dumps(tree, indent=2, allow_nan=False) + "\n"


def _csv_cell(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_value_text(v)}" for k, v in value.items())
    return repr(value) if isinstance(value, float) else str(value)


def table_csv(table: Table) -> str:
    """One table as CSV: its own columns only, raw numbers (floats as repr, so they round-trip)."""
    columns: list[str] = []
    for row in table.rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in table.rows:
        writer.writerow([_csv_cell(row[k]) if k in row else "" for k in columns])
    return buf.getvalue()


def render_csv(report: Report) -> str:
    """Every table as its own CSV section: a '# table: NAME' line, the CSV, a blank line. With
    --out FOLDER/ each table is its own file FOLDER/NAME.csv instead."""
    return "\n".join(f"# table: {t.name}\n{table_csv(t)}" for t in report.tables)


def split_csv(text: str) -> dict[str, list[dict]]:
    """The tables of render_csv's output, by name: rows as dicts of strings."""
    out: dict[str, list[dict]] = {}
    for section in text.split("# table: ")[1:]:
        name, _, body = section.partition("\n")
        out[name] = list(csv.DictReader(io.StringIO(body.strip("\n") + "\n"))) if body.strip() else []
    return out


RENDERERS = {"markdown": render_markdown, "latex": render_latex, "csv": render_csv, "json": render_json}


# --- W&B ----------------------------------------------------------------------------------------

def _wandb_columns(rows: list[dict]) -> tuple[list[str], list[list[Any]]]:
    """Columns and data for a wandb.Table: a column keeps numbers only when all its cells are
    numbers (or empty); anything mixed becomes text, since W&B rejects mixed column types."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    data = [[_plain(row.get(k)) for k in keys] for row in rows]
    for j in range(len(keys)):
        cells = [r[j] for r in data]
        numeric = all(c is None or (isinstance(c, (int, float)) and not isinstance(c, bool)) for c in cells)
        if not numeric:
            for r in data:
                r[j] = None if r[j] is None else _csv_cell(r[j])
    return keys, data


def training_group(g: Group) -> str:
    """The W&B group of a training run (suite.trainer.wandb_init_kwargs): method-model-data-experiment."""
    return f"{g.method}-{g.model}-{g.dataset}-{g.experiment}"


def wandb_identity(report: Report) -> tuple[str, str, list[str]]:
    """Name, group and tags of the report's W&B run: grouped under the sweep whose runs it reads and
    tagged with the sweep's name, the tag every training run of that sweep carries."""
    sweeps = [s["name"] for s in report.meta.get("sweeps") or []]
    label = Path(report.meta["runs_dir"]).name or "runs"
    group = sweeps[0] if len(sweeps) == 1 else label
    return f"report-{label}", group, ["report", *sweeps]


def push_to_wandb(report: Report, plot_files: Sequence[Path], project: str, entity: str | None,
                  directory: str | None, mode: str) -> str:
    """Mirror the tables (wandb.Table) and PNG plots (wandb.Image) to one W&B run of job_type 'report';
    WANDB_MODE, when set, wins over `mode`. Returns what happened, for the log line."""
    mode = os.environ.get("WANDB_MODE", mode)
    if mode == "disabled":
        return "W&B disabled: nothing pushed"
    import wandb

    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
    name, group, tags = wandb_identity(report)
    config = {k: v for k, v in report.meta.items() if k not in ("plots", "recorded")}
    config["training_groups"] = sorted({training_group(g) for g in report.groups if g.round is None})
    run = wandb.init(project=project, entity=entity or None, job_type="report", dir=directory, mode=mode,
                     name=name, group=group, tags=tags, config=config)
    try:
        payload: dict[str, Any] = {}
        for table in report.tables:
            if table.rows:
                columns, data = _wandb_columns(table.rows)
                payload[f"report/{table.name}"] = wandb.Table(columns=columns, data=data)
        for png in plot_files:
            if png.suffix == ".png":
                payload[f"plots/{png.stem}"] = wandb.Image(str(png))
        run.log(payload)
        return f"W&B run ({mode}) written to {Path(run.dir).parent}"
    finally:
        run.finish()


# --- command line -------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m suite.report", description=__doc__.splitlines()[0])
    p.add_argument("runs_dir", metavar="RUNS_DIR", help="folder searched recursively for run folders")
    p.add_argument("--format", choices=FORMATS, default="markdown")
    p.add_argument("--out", help="write the report here instead of stdout")
    p.add_argument("--plots", metavar="DIR", help="write PNG and PDF figures and the two GIF animations to this folder")
    p.add_argument("--log-x", action="store_true",
                   help="trade-off figure against the fraction of weights remaining, on a log axis")
    p.add_argument("--export", metavar="JSON", help="write the run summaries (results, epoch records, sweep wall "
                   "time, machine) to this file, then build everything else from it; RUNS_DIR may be such a file")
    p.add_argument("--doc", metavar="MD", help="write the results document (command, machine, wall time, "
                   "headline, tables, figures of --plots, what the published claims come to)")
    p.add_argument("--readme", metavar="MD", help="put the headline table between its markers in this README")
    p.add_argument("--reference", default="progressive", help="method every other method is compared with")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of every test")
    p.add_argument("--margin", type=float, default=0.1, help="TOST equivalence margin, accuracy points")
    p.add_argument("--published", default=None,
                   help="YAML of published numbers (default: the repo's configs/published.yaml; "
                        "'none' to leave them out)")
    p.add_argument("--wandb", action="store_true", help="also push tables and plots to a W&B run")
    p.add_argument("--wandb-project", default="progressive-pruning")
    p.add_argument("--wandb-entity", default=None)
    p.add_argument("--wandb-dir", default=None, help="where W&B writes its run folder (default: W&B's own)")
    p.add_argument("--wandb-mode", default="offline", choices=("online", "offline", "disabled"),
                   help="used when WANDB_MODE is not set")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an unexpected error on stderr too (default: off; it is always "
                        "written to RUNS_DIR/error.log)")
    return p.parse_args(argv)


def _published_from(arg: str | None) -> list[Published]:
    if arg is None:
        return load_published(DEFAULT_PUBLISHED) if DEFAULT_PUBLISHED.is_file() else []
    if arg.lower() == "none":
        return []
    return load_published(Path(arg))


def study_name(doc: Path) -> str:
    return doc.stem


def write_study_files(report: Report, doc: Path | None, readme: Path | None, figures_dir: str | None,
                      doc_link: str | None = None) -> list[Path]:
    """The results document and the README's headline block, from a report (built from an export);
    figures_dir is the --plots folder relative to the document's folder; the README links the document
    at doc_link (default: its path relative to the README)."""
    from suite import study

    written = []
    if doc is not None:
        from suite import plots  # late: matplotlib only when figures are asked for

        names = plots.planned(report.groups, report.meta["reference"]) if figures_dir is not None else []
        links = [f"{figures_dir}/{n}" for n in names if n.endswith((".png", ".gif"))]
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(study.render_document(report, report.published, report.meta["recorded"], links,
                                             study_name(doc)))
        written.append(doc)
    if readme is not None:
        if not readme.is_file():
            raise ConfigError(f"--readme: file not found: {readme}")
        link = doc_link or (os.path.relpath(doc, readme.parent) if doc is not None else "docs/results")
        block = study.readme_block(report, study_name(doc) if doc is not None else "results", link)
        readme.write_text(study.replace_readme_block(readme.read_text(), block,
                                                     study_name(doc) if doc is not None else "results"))
        written.append(readme)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(given)
    try:
        return _main(args, given)
    except Exception as e:  # one line, never a traceback wall; the details go to a log
        from suite.results import crash_line
        folder = Path(args.runs_dir) if Path(args.runs_dir).is_dir() else None
        print(crash_line(e, folder, getattr(args, "debug", False)), file=sys.stderr, flush=True)
        return 1


def _main(args: argparse.Namespace, given: list[str]) -> int:
    import shlex

    try:
        if args.doc and args.plots is None and args.export:
            raise ConfigError("--doc with --export needs --plots (the document links the figures)")
        published = _published_from(args.published)
        report = build_report(Path(args.runs_dir), args.reference, args.alpha, args.margin, published)
        for line in report.meta["warnings"]:
            print(line, file=sys.stderr)
        figures_rel = (os.path.relpath(args.plots, Path(args.doc).parent) if args.plots and args.doc
                       else report.meta["recorded"].get("figures"))
        if args.export:
            from suite import study

            command = "python -m suite.report " + shlex.join(given)
            study.write_export(study.export_tree(report, Path(args.runs_dir), command, figures_rel),
                               Path(args.export))
            report = build_report(Path(args.export), args.reference, args.alpha, args.margin, published)
        plot_files: list[Path] = []
        if args.plots:
            from suite import plots  # late: matplotlib only when figures are asked for

            plot_files = plots.write_all(report.groups, Path(args.plots), log_x=args.log_x, reference=args.reference)
            report.meta["plots"] = [p.name for p in plot_files]
        written = write_study_files(report, Path(args.doc) if args.doc else None,
                                    Path(args.readme) if args.readme else None, figures_rel)
        text = RENDERERS[args.format](report)
        if args.format == "csv" and args.out and (args.out.endswith("/") or Path(args.out).is_dir()):
            Path(args.out).mkdir(parents=True, exist_ok=True)
            for table in report.tables:
                (Path(args.out) / f"{table.name}.csv").write_text(table_csv(table))
        elif args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text)
        elif args.export or written:
            for path in [*([Path(args.export)] if args.export else []), *written]:
                print(f"wrote {path}", file=sys.stderr)
        else:
            sys.stdout.write(text)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
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


if __name__ == "__main__":
    sys.exit(main())
