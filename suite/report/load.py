"""Finished results into groups: every result.json under a runs folder (LTH rounds as results of their own),
the run folders left out and why, and the seeds of one experiment as a Group."""
from __future__ import annotations

import json
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from suite import stats
from suite.method_facts import dense_methods, method_sections
from suite.report.fmt import mean, value_text
from suite.results import RunFolder, check_result, moved_aside, read_result

# the dense controls (methods with prunes = False) and the method-specific science settings
# ("prune.", "snip.", ...) come from the method registry
DENSE = dense_methods()  # a tuple: test membership (`in`), never equality
METHOD_SECTIONS = tuple(f"{s}." for s in method_sections())
IDENTITY_KEYS = ("method", "model.name", "data.name", "prune.target_sparsity")  # shown in own columns
SPARSITY_DECIMALS = 4   # target sparsities equal to 4 decimals count as the same sparsity
_ROUND_DIR = re.compile(r"round_(\d+)$")


# --- the primary metric ------------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    """The primary metric of a result: its name (the epoch records' key; result.json holds final_<name>), how
    people read it, and its direction; results without a "metric" key are test accuracy, higher is better."""
    name: str = "test_accuracy"
    label: str = "test accuracy (%)"
    higher_is_better: bool = True

    @property
    def final_key(self) -> str:
        return f"final_{self.name}"

    @property
    def unit(self) -> str:
        """What a difference is counted in: 'points' for accuracy, else the unit in the label's brackets."""
        if self.name.endswith("accuracy"):
            return "points"
        m = re.search(r"\(([^()]*)\)\s*$", self.label)
        return m.group(1) if m else "units"

    @property
    def short(self) -> str:
        """The label without its unit: 'test accuracy', 'held-out loss'."""
        return re.sub(r"\s*\([^()]*\)\s*$", "", self.label)

    @property
    def is_loss(self) -> bool:
        """A loss in nats (a cross-entropy): bits and perplexity are shown beside it."""
        return self.name.endswith("loss")

    @property
    def better(self) -> str:
        return "higher" if self.higher_is_better else "lower"

    def is_better(self, diff: float) -> bool:
        """Whether a difference a - b says a is better than b."""
        return diff > 0 if self.higher_is_better else diff < 0

    @property
    def digits(self) -> int:
        """Decimals a table shows: 2 for accuracy in percent, 3 for a loss."""
        return 2 if self.name.endswith("accuracy") else 3

    @property
    def margin(self) -> float:
        """The default equivalence margin: 0.1 accuracy points, 0.01 nats of a loss."""
        return 0.1 if self.higher_is_better and self.name.endswith("accuracy") else 0.01

    @property
    def claim_margin(self) -> float:
        """How close 'consistent with a published number' must be shown to be: 1 accuracy point, 0.02 nats."""
        return 1.0 if self.name.endswith("accuracy") else 0.02


ACCURACY = Metric()


def units(metric: Metric) -> str:
    """What a difference of the metric is counted in, in words: 'accuracy points', 'nats/char of held-out loss'."""
    return "accuracy points" if metric.unit == "points" else f"{metric.unit} of {metric.short}"


def direction_note(metric: Metric) -> str:
    """The sentence a caption adds for a metric where lower is better (none for accuracy)."""
    if metric.higher_is_better:
        return ""
    extra = " (bits = nats / ln 2, perplexity = e^nats)" if metric.is_loss else ""
    return (f" The metric is {metric.label}{extra}: lower is better, so 'better' means a lower value and a "
            "negative Δ favours the first-named side.")


def study_metric(groups: Sequence["Group"]) -> Metric:
    """The primary metric of most of these groups' results (one study has one)."""
    counts: dict[Metric, int] = {}
    for g in groups:
        counts[g.metric] = counts.get(g.metric, 0) + len(g.runs)
    return max(counts, key=counts.get) if counts else ACCURACY


def parse_metric(value: Any) -> Metric:
    """The result's "metric" entry as a Metric (absent: accuracy); raises ValueError naming what is wrong."""
    if value is None:
        return ACCURACY
    if not (isinstance(value, dict) and isinstance(value.get("name"), str) and value["name"]
            and isinstance(value.get("higher_is_better", True), bool)):
        raise ValueError(f"metric {value!r} is not {{name, label, higher_is_better}}")
    return Metric(value["name"], str(value.get("label") or value["name"]), value.get("higher_is_better", True))


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
    params_remaining: float
    params_total: float
    layer_sparsity: dict
    round: int | None          # LTH round of round_<r>/result.json; None for a run's own result
    rounds: int                # rounds the whole run trained (LTH: levels + 1)
    result_round: int | None   # the "round" field of the file: the final round for a run's own result
    epochs_trained: float = stats.NAN       # total_epochs_trained: every round up to this one (LTH: cumulative)
    wall_time_s: float = stats.NAN          # the run's own recorded duration (up to this round)
    records: tuple | None = None            # epoch records carried by an export; None: read metrics.jsonl
    layer_sizes: dict | None = None         # weights per prunable layer, carried by an export; None: read the mask
    code: str | None = None    # the code that trained it: commit[+dirty diff hash], None if unrecorded
    epochs_per_cycle: float = stats.NAN     # train.epochs: one training cycle (the budget axis)
    steps_per_cycle: float = stats.NAN      # train.steps where the budget is in optimizer steps, else NaN
    cycles: float = stats.NAN               # training cycles this result cost (LTH round r: r + 1)
    cost_x_dense_cycle: float = stats.NAN   # training FLOPs over ONE dense cycle of the same settings
    cost_derived: bool = False              # cost from an older result's train_flops_x_dense (no scoring passes)
    train_flops: float = stats.NAN          # absolute, counted as if sparse kernels skipped every pruned weight
    scoring_flops: float = stats.NAN        # the part of train_flops spent scoring masks outside training steps
    core_hours: float = stats.NAN           # wall time x threads x processes / 3600, dense-masked training
    device: str | None = None               # the machine the time was measured on
    init: str | None = None                 # model.init as resolved; None: not recorded (older results)
    distribution: str | None = None         # effective prune.distribution: global | uniform | erk
    dense_layers: tuple | None = None       # layers kept dense (unpruned); None: not recorded
    val_size: int | None = None             # training examples held out for validation (0: no split)
    test_at_best_val: float = stats.NAN     # test accuracy at the epoch validation chose; NaN without a split
    metric: Metric = ACCURACY               # the primary metric, from result.json's "metric" (default: accuracy)
    value: float = stats.NAN                # the primary metric's final value (final_<metric name>)
    live_per_class: tuple | None = None     # the output layer's live weights per class; None: not recorded
    test_correct: str | None = None         # per test example, right or wrong (correct_text); None: no predictions


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


def parse_result(path: Path, data: Any, round_index: int | None, beside: bool = True) -> Run:
    """A Run from a parsed result.json; raises ValueError naming what is missing. `beside`: read the predictions
    file next to it too (an export carries its own: the folder it names may hold other runs now)."""
    check_result(data)  # the run folder's own rules (suite.results): one definition of "finished"
    science = data.get("science") or {}
    metric = parse_metric(data.get("metric"))
    value = _number(data.get(metric.final_key))
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{metric.final_key} is {data.get(metric.final_key)!r}, not a finite number "
                         f"(the result's primary metric is {metric.name})")
    return Run(
        path=path.parent, method=str(data["method"]), model=str(data["model"]), dataset=str(data["dataset"]),
        seed=int(data["seed"]), experiment=str(data["experiment"]), science=dict(science),
        target_sparsity=float(data["target_sparsity"]), achieved_sparsity=float(data["achieved_sparsity"]),
        final_accuracy=float(data["final_test_accuracy"]),
        params_remaining=_number(data.get("params_remaining")), params_total=_number(data.get("params_total")),
        layer_sparsity=dict(data.get("layer_sparsity") or {}), round=round_index,
        rounds=int(data.get("rounds") or 1),
        result_round=data["round"] if isinstance(data.get("round"), int) else None,
        epochs_trained=_number(data.get("total_epochs_trained")),
        wall_time_s=_number(data.get("wall_time_s")),
        code=_code_text(data.get("code")), metric=metric, value=value, **_cost_and_protocol(data),
        live_per_class=tuple(int(v) for v in data["live_per_class"]) if isinstance(data.get("live_per_class"), list)
        else None,
        test_correct=_read_correct(path.parent, data.get("predictions_file")) if beside else None,
    )


# --- per test example: right or wrong, for a paired test over the test set --------------------------

def correct_text(predicted, labels) -> str:
    """'<labels key>:<n>:<base64 bits>': which of the n test examples a run got right (prediction == label),
    packed 8 to a byte, with the first 16 hex digits of the labels' SHA-256 so that two runs pair only on the
    same test set. About 1.7 kB for MNIST's 10,000 examples: the form an export carries."""
    import base64
    import hashlib

    import numpy as np
    predicted, labels = np.asarray(predicted, np.uint8), np.asarray(labels, np.uint8)
    key = hashlib.sha256(labels.tobytes()).hexdigest()[:16]
    return f"{key}:{labels.size}:{base64.b64encode(np.packbits(predicted == labels)).decode()}"


def correct_bits(text: str) -> tuple[str, Any]:
    """(labels key, bool array of the n examples) from correct_text's string."""
    import base64

    import numpy as np
    key, n, bits = text.split(":", 2)
    packed = np.frombuffer(base64.b64decode(bits, validate=True), np.uint8)
    if int(n) < 0 or packed.size != (int(n) + 7) // 8:
        raise ValueError(f"{packed.size} bytes hold {8 * packed.size} bits, not the {n} it names")
    return key, np.unpackbits(packed, count=int(n)).astype(bool)


def _read_correct(folder: Path, name: Any) -> str | None:
    """correct_text of the predictions file a result names beside it (predictions_file), None without one."""
    if not isinstance(name, str) or not (folder / name).is_file():
        return None
    from suite.results import read_predictions
    try:
        return correct_text(*read_predictions(folder / name))
    except (OSError, ValueError, IndexError):
        return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _dense_layers(data: dict) -> tuple | None:
    """Layers kept dense: the result's own list, else what keep_first/last_dense say, else unknown."""
    if isinstance(data.get("dense_layers"), list):
        return tuple(str(x) for x in data["dense_layers"])
    first, last = data.get("keep_first_dense"), data.get("keep_last_dense")
    if isinstance(first, bool) and isinstance(last, bool):
        return tuple(name for name, kept in (("first", first), ("last", last)) if kept)
    return None


def _cost_and_protocol(data: dict) -> dict:
    """The cost and protocol fields of a result.json; older results lack them: the cost relative to one
    dense cycle then comes from train_flops_x_dense (which divided by a dense run of the same epochs per
    cycle) times the cycles trained, exact except for scoring passes; anything else stays unknown."""
    epochs = _number(data.get("epochs"))
    if math.isnan(epochs):
        epochs = _number((data.get("science") or {}).get("train.epochs"))
    total = _number(data.get("total_epochs_trained"))
    cycles = _number(data.get("cycles"))
    if math.isnan(cycles) and epochs > 0:
        cycles = total / epochs
    cost, derived = _number(data.get("train_cost_x_dense_cycle")), False
    if math.isnan(cost) and epochs > 0:
        cost, derived = _number(data.get("train_flops_x_dense")) * cycles, True
        derived = not math.isnan(cost)
    val_size = data.get("val_size")
    distribution = _text(data.get("distribution"))
    science = data.get("science")
    if distribution is None and isinstance(science, dict):  # older results: their science settings list
        distribution = _text(science.get("prune.distribution", "global"))  # every non-default, so absent = global
    steps = _number(science.get("train.steps")) if isinstance(science, dict) else stats.NAN
    return {"epochs_per_cycle": epochs, "steps_per_cycle": steps, "cycles": cycles, "cost_x_dense_cycle": cost,
            "cost_derived": derived,
            "train_flops": _number(data.get("train_flops")), "scoring_flops": _number(data.get("scoring_flops")),
            "core_hours": _number(data.get("core_hours")), "device": _text(data.get("device")),
            "init": _text(data.get("init")), "distribution": distribution,
            "dense_layers": _dense_layers(data), "val_size": val_size if isinstance(val_size, int) else None,
            "test_at_best_val": _number(data.get("test_accuracy_at_best_val"))}


def _code_text(code: Any) -> str | None:
    """`<commit[:12]>` or `<commit[:12]>+dirty:<diff hash[:8]>` from result.json's code field."""
    if not isinstance(code, dict) or not code.get("commit"):
        return None
    text = str(code["commit"])[:12]
    return f"{text}+dirty:{str(code.get('diff_sha256') or '?')[:8]}" if code.get("dirty") else text


def code_warnings(groups: Sequence[Group]) -> list[str]:
    """One warning per experiment folder whose seeds were trained by different code (commit or dirty diff):
    an LTH chain's round groups (their results sit in seed_<s>/round_<r>/) share their chain's one line."""
    found: dict[str, tuple[list[str], list[str]]] = {}
    for g in groups:
        versions = sorted({r.code for r in g.runs if r.code is not None})
        if len(versions) > 1:
            first = g.runs[0]
            folder = (first.path.parent.parent if first.round is not None else first.path.parent).name
            labels, _ = found.setdefault(folder, ([], versions))
            labels.append(g.label)
    lines = []
    for folder, (labels, versions) in found.items():
        what = labels[0] if len(labels) == 1 else f"{len(labels)} groups: its chain's rounds"
        lines.append(f"warning: the seeds of {folder} ({what}) come from different code ({', '.join(versions)}); "
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
    seen: set[str] = set()  # real paths walked: links are followed (as the sweep does), loops are not
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link to a folder already read: listed, never counted twice
            dirnames[:] = []
            skipped.append(Skipped(Path(dirpath).relative_to(root).as_posix(), "duplicate", "?", "?",
                                   f"a link to {real}, which is already read"))
            continue
        seen.add(real)
        # wandb/ holds tracker files, never runs; a run --force moved aside is history, not a result;
        # sorting keeps the output deterministic.
        dirnames[:] = sorted(d for d in dirnames if d != "wandb" and not moved_aside(d))
        folder = Path(dirpath)
        if _ROUND_DIR.match(folder.name) and ({"config.json", "result.json"} & set(os.listdir(folder.parent))):
            continue  # a round of a chain: read together with its run folder below
        names = set(filenames)
        if "result.json" in names:
            try:
                top = parse_result(folder / "result.json", read_result(folder / "result.json"), None)
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
            found.append(parse_result(sub / "result.json", read_result(sub / "result.json"), int(m.group(1))))
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

BUDGET_KEYS = ("train.epochs", "train.steps")  # the budget axis: epochs (or optimizer steps) per training cycle


def budget_text(epochs: float, steps: float = stats.NAN) -> str:
    """One training cycle in words: '20 ep/cycle', or '1000 steps/cycle' where the budget is in steps."""
    if not math.isnan(steps):
        return f"{steps:g} steps/cycle"
    return "–" if math.isnan(epochs) else f"{epochs:g} ep/cycle"


def unit_text(unit_epochs: float, unit_steps: float = stats.NAN) -> str:
    """The one cost unit in words: '20-epoch dense cycles', '1000-step dense cycles' ('dense cycles' of each
    group's own without a unit)."""
    if not math.isnan(unit_steps):
        return f"{unit_steps:g}-step dense cycles"
    return "dense cycles" if math.isnan(unit_epochs) else f"{unit_epochs:g}-epoch dense cycles"


def budget_key(science: dict, ignore: tuple = ()) -> tuple:
    """Science settings that must match for a fair comparison across methods: everything except
    the method, model, data name and the method-specific sections (the sparsity is matched apart),
    and any named in ignore."""
    return tuple(sorted((k, value_text(v)) for k, v in science.items()
                        if k not in IDENTITY_KEYS and k not in ignore and not k.startswith(METHOD_SECTIONS)))


@dataclass
class Group:
    """The seeds of one experiment (one LTH round counts as its own experiment)."""
    experiment: str
    round: int | None
    runs: list[Run] = field(default_factory=list)
    # the cost unit: one dense cycle of this many epochs, the study's base cycle for this model and data (the
    # shortest epochs per cycle run for them; group_runs sets it), so that every cost of a table is in ONE unit
    unit_epochs: float = stats.NAN
    unit_steps: float = stats.NAN  # a study budgeted in optimizer steps: the unit is a dense cycle of this many steps
    name: str = ""             # the study's label for it (suite.report.labels), set when a report is built

    @property
    def label(self) -> str:
        """The group's name in every table and figure: the study's label, else the method (and round)."""
        return self.name or self.method_label

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
        return (self.method, tuple((k, value_text(v)) for k, v in sorted(self.first.science.items())
                                   if k.startswith(METHOD_SECTIONS) and k != "prune.target_sparsity"))

    @property
    def match_key(self) -> tuple:
        """Same data, model and training budget: what a fair comparison holds fixed."""
        return (self.dataset, self.model, self.budget)

    @property
    def reference_family(self) -> tuple:
        """As a head-to-head reference: its rows' Holm family at one sparsity, headline table and forest plot
        (same data, model and budget, and the reference's own protocol: its classifier kept dense or not)."""
        return (self.match_key, self.variant)

    @property
    def settings(self) -> dict:
        return {k: v for k, v in sorted(self.first.science.items()) if k not in IDENTITY_KEYS}

    @property
    def settings_text(self) -> str:
        return ", ".join(f"{k}={value_text(v)}" for k, v in self.settings.items())

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
    def values(self) -> list[float]:
        """The primary metric's final value per seed (test accuracy unless the results name another)."""
        return [r.value for r in self.runs]

    @property
    def metric(self) -> Metric:
        return self.first.metric

    @property
    def epochs(self) -> float:
        """Epochs trained, mean over seeds: every round of a chain up to this one counts."""
        return mean([r.epochs_trained for r in self.runs])

    @property
    def cost(self) -> float:
        """Training FLOPs in dense cycles of `unit_epochs` epochs (the study's base cycle), mean over seeds: each
        result's cost over one dense cycle of its own epochs, times its epochs per cycle, over unit_epochs (a
        dense cycle's FLOPs grow linearly with its epochs); without a unit, relative to its own cycle."""
        if not math.isnan(self.unit_steps):  # a dense cycle's FLOPs grow linearly with its steps too
            return mean([r.cost_x_dense_cycle * r.steps_per_cycle / self.unit_steps for r in self.runs])
        if math.isnan(self.unit_epochs):
            return mean([r.cost_x_dense_cycle for r in self.runs])
        return mean([r.cost_x_dense_cycle * r.epochs_per_cycle / self.unit_epochs for r in self.runs])

    @property
    def cost_unit(self) -> str:
        """The cost unit in words: '20-epoch dense cycles', '1000-step dense cycles' (or 'dense cycles' of each
        group's own)."""
        return unit_text(self.unit_epochs, self.unit_steps)

    @property
    def cycles(self) -> float:
        return mean([r.cycles for r in self.runs])

    @property
    def epochs_per_cycle(self) -> float:
        return mean([r.epochs_per_cycle for r in self.runs])

    @property
    def steps_per_cycle(self) -> float:
        return mean([r.steps_per_cycle for r in self.runs])

    @property
    def steps_trained(self) -> float:
        """Optimizer steps trained where the budget is in steps (every round of a chain up to this one, a rewound
        round counting the steps it ran: LTH's 9 rounds of 1,000 rewound to step 100 are 8,200); NaN otherwise."""
        return self.steps_per_cycle * self.cycles

    @property
    def trained(self) -> tuple[float, str]:
        """What the group trained, in its budget's unit: (8200, 'steps') or (160, 'epochs')."""
        return (self.epochs, "epochs") if math.isnan(self.steps_per_cycle) else (self.steps_trained, "steps")

    @property
    def budget_label(self) -> str:
        """The budget axis: epochs (or optimizer steps) per training cycle ('20 ep/cycle', '1000 steps/cycle')."""
        return budget_text(self.epochs_per_cycle, self.steps_per_cycle)

    @property
    def protocol_key(self) -> tuple:
        """Same data, model and settings but for the budget (epochs or steps per cycle): groups on one cost axis."""
        return (self.dataset, self.model, budget_key(self.first.science, BUDGET_KEYS))

    def protocol(self, name: str) -> str | None:
        """One protocol field (init, distribution, dense_layers, val_size) when all seeds agree, else None."""
        values = {getattr(r, name) for r in self.runs}
        return values.pop() if len(values) == 1 else None

    def sort_key(self) -> tuple:
        return (self.dataset, self.model, self.budget, self.sparsity_key, self.method,
                -1 if self.round is None else self.round, self.settings_text)


# --- the collapse diagnostic ----------------------------------------------------------------------------

CHANCE_POINTS = 5.0   # a seed within this many accuracy points of chance (100 / classes) has collapsed
BROKEN_DROP = 10.0    # so has a seed this many points under its group's median (one failed draw)


def live_per_class(run: Run) -> list[int] | None:
    """The output layer's live weights per class of one result (result.json `live_per_class`), or None."""
    return list(run.live_per_class) if run.live_per_class else None


def collapsed_seeds(g: Group, chance_points: float = CHANCE_POINTS,
                    broken_drop: float = BROKEN_DROP) -> dict[int, str]:
    """Seed -> why it collapsed: a class with no live output weight, an accuracy within chance_points of
    chance (100 / classes), or broken_drop points under the group's median (one seed's draw failed). Such a
    group's spread is not seed noise, so no t-test reads it."""
    median = statistics.median(g.accuracies)
    out = {}
    for r in g.runs:
        live = live_per_class(r)
        classes = len(live) if live else 10
        if live is not None and min(live) == 0:
            out[r.seed] = f"a class with no live output weight ({live.index(0)})"
        elif r.final_accuracy <= 100.0 / classes + chance_points:
            out[r.seed] = f"at chance ({r.final_accuracy:.1f}%)"
        elif r.final_accuracy < median - broken_drop:
            out[r.seed] = f"{median - r.final_accuracy:.1f} points under the group's median"
    return out


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
    units: dict[tuple, float] = {}  # (dataset, model) -> the shortest epochs per cycle: the base cycle
    steps: dict[tuple, list[float]] = {}  # (dataset, model) -> steps per cycle of each group (NaN: epochs)
    for g in groups.values():
        e = g.epochs_per_cycle
        if not math.isnan(e):
            units[(g.dataset, g.model)] = min(e, units.get((g.dataset, g.model), e))
        steps.setdefault((g.dataset, g.model), []).append(g.steps_per_cycle)
    for g in groups.values():
        g.unit_epochs = units.get((g.dataset, g.model), stats.NAN)
        budgets = steps[(g.dataset, g.model)]  # budgeted in steps throughout: the unit is the shortest step cycle
        g.unit_steps = stats.NAN if any(math.isnan(b) for b in budgets) else min(budgets)
    return sorted(groups.values(), key=Group.sort_key)



# --- what the figures and the export read beside result.json ----------------------------------

def read_metrics(run_folder: Path) -> list[dict]:
    """Epoch records of metrics.jsonl in training order, one per (round, epoch), last write wins
    (a resumed run may repeat an epoch); unreadable lines are skipped (suite.results.read_metrics)."""
    return RunFolder(run_folder).read_metrics()


def run_records(run: Run) -> list[dict]:
    """The epoch records a figure draws for one run: the export's, or metrics.jsonl; a chain's final
    round only, so that every method is drawn over its own cycle."""
    records = list(run.records) if run.records is not None else read_metrics(run.path)
    if run.round is None and run.rounds > 1 and run.result_round is not None:
        records = [r for r in records if int(r.get("round") or 0) == run.result_round]
    return records


def layer_sizes(run_folder: Path) -> dict | None:
    """Weights per prunable layer, from the shapes in mask.safetensors' header (the tensors are not read)."""
    path = run_folder / "mask.safetensors"
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
    except (OSError, ValueError):
        return None
    return {name: math.prod(info["shape"]) for name, info in header.items() if name != "__metadata__"}


def read_cost(folder: Path) -> dict | None:
    """A run's cost.json (written by python -m suite.cost) as a dict, or None when there is none or it
    is not a readable cost record (then the measured-cost table simply has no row for it)."""
    try:
        data = json.loads((folder / "cost.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("formats"), dict) else None
