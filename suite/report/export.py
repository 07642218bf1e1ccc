"""A finished study as one JSON file: every counted result.json (less its config), the epoch records the
figures draw, the runs left out, the sweeps' wall time and the machine; and reading it back."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import re
import time
from pathlib import Path
from typing import Any, Sequence

from suite.errors import ConfigError
from suite.provenance import cpu_name
from suite.report.load import (Group, Run, Skipped, correct_bits, layer_sizes, parse_result, read_cost,
                               read_metrics)
from suite.results import atomic_write_text

EXPORT_FORMAT = "progressive-pruning results export v1"
METRIC_KEYS = ("round", "epoch", "test_accuracy", "val_accuracy", "sparsity")  # what the figures draw (plus the
# result's own metric, e.g. test_loss and val_loss, where it is not accuracy)
FIELD_MEANINGS = {  # what the cost fields of each result mean, written into the export beside them
    "train_flops": "training FLOPs, counted as if sparse kernels skipped every pruned weight (3 x forward per "
                   "example), mask-scoring passes and every round included",
    "scoring_flops": "the part of train_flops spent scoring masks outside training steps (SNIP, GraSP, SynFlow)",
    "dense_cycle_flops": "FLOPs of ONE dense training cycle of the same settings",
    "train_cost_x_dense_cycle": "train_flops / dense_cycle_flops (older results: train_flops_x_dense x cycles)",
    "core_hours": "measured wall time x threads x processes / 3600 of dense-masked training (the masks zero "
                  "weights, the kernels stay dense) on the machine named in 'device'",
    "test_correct": "beside a result (not in it): '<first 16 hex of the test labels' SHA-256>:<n>:<base64 of the "
                    "n bits, packed 8 to a byte, of prediction == label per test example, in the test set's "
                    "order>', from the run's predictions.npy",
}
DROPPED_RESULT_KEYS = ("config",)  # the full config is in the run folder; `science` is what identifies it
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.*)$")


# --- the sweep logs: wall time of the study ----------------------------------------------------

def sweep_records(root: Path) -> list[dict]:
    """Each sweep that wrote under root (<root>/sweeps/<name>/sweep.log): its passes and their wall time,
    from the log's own time stamps (a pass runs from 'sweep ... backend' to the 'sweep <name>:' summary)."""
    out = []
    for log in sorted(root.glob("sweeps/*/sweep.log")):
        name = log.parent.name
        passes, seconds, first, last, began = 0, 0.0, None, None, None
        for line in log.read_text(errors="replace").splitlines():
            m = _STAMP.match(line)
            if not m:
                continue
            stamp = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
            text = m.group(2)
            if text.startswith("sweep ") and " backend " in text:
                began = stamp
                first = first or m.group(1)
            elif text.startswith(f"sweep {name}:") and began is not None:
                passes, seconds, last, began = passes + 1, seconds + stamp - began, m.group(1), None
        if passes:
            out.append({"name": name, "passes": passes, "wall_time_s": seconds, "started": first, "finished": last})
    return out


def machine() -> dict:
    """The machine writing the export (the study's machine when run where the study ran)."""
    cpu = cpu_name()
    return {"cpu": cpu, "cores": os.cpu_count(), "system": f"{platform.system()} {platform.machine()}"}


# --- the export --------------------------------------------------------------------------------

def _short(value: Any) -> Any:
    """Metric values to 6 significant digits: the figures need no more, the export stays small."""
    return float(f"{value:.6g}") if isinstance(value, float) and math.isfinite(value) else value


def epoch_records(metrics: Any) -> list[dict] | None:
    """An export entry's epoch records as one dict per epoch: the export stores one list per key (each key
    written once, not once per epoch); an export written before that holds the list of dicts itself."""
    if isinstance(metrics, dict):
        return [dict(zip(metrics, values)) for values in zip(*metrics.values())]
    return metrics


def export_tree(groups: Sequence[Group], skipped: Sequence[Skipped], sweeps: list, runs_dir: str, root: Path,
                command: str, figures: str | None) -> dict:
    """The study as one JSON tree: every counted result.json (less its config), the epoch records the
    figures draw (a chain's final round only), the runs left out, the sweeps' wall time, the machine."""
    entries = []
    for g in groups:
        for run in g.runs:
            raw = json.loads((run.path / "result.json").read_text())
            entry: dict = {"path": run.path.relative_to(root).as_posix(), "round": run.round,
                           "result": {k: v for k, v in raw.items() if k not in DROPPED_RESULT_KEYS}}
            if run.round is None:
                records = read_metrics(run.path)
                if run.rounds > 1 and run.result_round is not None:
                    records = [r for r in records if int(r.get("round") or 0) == run.result_round]
                keys = METRIC_KEYS + tuple(k for k in (run.metric.name, run.metric.name.replace("test_", "val_", 1))
                                           if k not in METRIC_KEYS)  # a loss metric's curve too
                entry["metrics"] = {k: [_short(r.get(k)) for r in records] for k in keys}  # one list per key
                entry["layer_sizes"] = layer_sizes(run.path)
                cost = read_cost(run.path)
                if cost is not None:
                    entry["cost"] = cost  # the measured deployment cost (python -m suite.cost), when taken
            if run.test_correct is not None:
                entry["test_correct"] = run.test_correct  # the paired test over test examples reads it
            entries.append(entry)
    return {"format": EXPORT_FORMAT, "runs_dir": runs_dir, "command": command,
            "figures": figures, "machine": machine(), "sweeps": sweeps,
            "results": entries, "skipped": [dataclasses.asdict(s) for s in skipped],
            "field_meanings": FIELD_MEANINGS}


def write_export(tree: dict, path: Path) -> None:
    text = json.dumps(tree, indent=None, separators=(",", ":"), sort_keys=True, allow_nan=False)
    atomic_write_text(path, text + "\n")


def read_tree(path: Path) -> dict:
    """An export's JSON tree, its format checked (ConfigError: one line naming the file)."""
    try:
        tree = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable results export ({e})") from None
    if not isinstance(tree, dict) or tree.get("format") != EXPORT_FORMAT:
        raise ConfigError(f"{path}: not a results export (expected format '{EXPORT_FORMAT}')")
    entries = tree.get("results")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: a results export without results (its 'results' is not a non-empty list)")
    for i, e in enumerate(entries):
        if not (isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("result"), dict)
                and (e.get("round") is None or isinstance(e.get("round"), int))):
            raise ConfigError(f"{path}: results[{i}] is not {{path, round, result}} as an export writes it")
    for key, fields in (("skipped", ("path", "status", "method", "seed", "reason")),
                        ("sweeps", ("name", "passes", "wall_time_s", "started", "finished"))):
        value = tree.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) and set(fields) <= set(v) for v in value):
            raise ConfigError(f"{path}: its '{key}' is not a list of {{{', '.join(fields)}}} as an export writes it")
    return tree


def load_export(path: Path) -> tuple[list[Run], list[Skipped], dict]:
    """Runs, skipped folders and the recorded study facts of an export written by write_export."""
    tree = read_tree(path)
    root = Path(tree["runs_dir"])
    runs = []
    for i, entry in enumerate(tree["results"]):
        folder = root / entry["path"]
        try:
            run = parse_result(folder / "result.json", entry["result"], entry["round"], beside=False)
        except ValueError as e:
            raise ConfigError(f"{path}: results[{i}] ({entry['path']}): {e}") from None
        correct = entry.get("test_correct")
        if correct is not None:
            try:
                correct_bits(correct)
            except (TypeError, ValueError, AttributeError) as e:  # binascii.Error is a ValueError
                raise ConfigError(f"{path}: results[{i}] ({entry['path']}): test_correct is not "
                                  f"'<labels key>:<n>:<base64 bits>' ({e})") from None
        metrics = epoch_records(entry.get("metrics"))
        runs.append(dataclasses.replace(run, records=tuple(metrics) if metrics is not None else None,
                                        layer_sizes=entry.get("layer_sizes"),
                                        test_correct=entry.get("test_correct")))
    skipped = [Skipped(**s) for s in tree.get("skipped", [])]
    recorded = {k: tree.get(k) for k in ("runs_dir", "command", "figures", "machine", "sweeps")}
    recorded["costs"] = [e["cost"] for e in tree["results"] if isinstance(e.get("cost"), dict)]
    # what produced the results, as the results themselves record it (distinct values, sorted)
    recorded["versions"] = sorted({json.dumps(e["result"].get("versions"), sort_keys=True) for e in tree["results"]
                                   if e["result"].get("versions")})
    recorded["code"] = sorted({json.dumps(e["result"].get("code"), sort_keys=True) for e in tree["results"]
                               if e["result"].get("code")})
    return runs, skipped, recorded


def exported_runs(path: Path) -> dict[str, float]:
    """Each whole run an export holds (its path under the runs folder; an LTH chain once, not per round) and
    its recorded wall time (NaN where none): a sweep given the export (--done) counts them as done."""
    runs, _, recorded = load_export(path)
    root = Path(recorded["runs_dir"])
    return {r.path.relative_to(root).as_posix(): r.wall_time_s for r in runs if r.round is None}


# --- a study across machines: exports merged ---------------------------------------------------

OUTCOME_PREFIX = "final_"  # the result fields that say what a run came to: two copies that differ there are listed


def _per_key(metrics: Any) -> Any:
    """Epoch records in the export's one-list-per-key shape (an older export's list of dicts converted)."""
    if not isinstance(metrics, list):
        return metrics
    keys = list(dict.fromkeys(k for record in metrics for k in record))
    return {k: [record.get(k) for record in metrics] for k in keys}


def _outcome(entry: dict) -> dict:
    return {k: v for k, v in entry["result"].items() if k.startswith(OUTCOME_PREFIX)}


def merge_exports(tree: dict, earlier: Sequence[tuple[Path, dict]]) -> dict:
    """`tree` (this runs folder's export) with the results of `earlier` exports added: a study that goes on on
    another machine, or after its runs folder was lost, keeps what it exported. A run in both counts once, by one
    rule fixed before any number is seen: this folder's copy (the one whose files, such as the mask an ablation
    reads, are here); where the earlier copy came to other final numbers (trained again, on another machine or
    by other code) it is listed as a duplicate left out, with its numbers. The first of several earlier exports
    holding a run wins the same way. Each sweep record keeps the machine it ran on, and a sweep log exported
    before (same sweep, start and machine) counts once, as read now; a run left out earlier and finished since is
    no longer listed as left out."""
    merged = dict(tree)
    results = [dict(e) for e in tree["results"]]
    where = {(e["path"], e["round"]): e for e in results}
    sweeps = [{**s, "machine": s.get("machine") or tree["machine"]} for s in tree["sweeps"]]
    skipped = list(tree["skipped"])
    for path, other in earlier:
        for entry in other["results"]:
            key = (entry["path"], entry["round"])
            here = where.get(key)
            if here is None:
                entry = dict(entry, **({"metrics": _per_key(entry["metrics"])} if "metrics" in entry else {}))
                results.append(entry)
                where[key] = entry
            elif _outcome(here) != _outcome(entry) and entry["round"] is None:
                numbers = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in _outcome(entry).items())
                skipped.append({"path": entry["path"], "status": "duplicate", "method": entry["result"].get("method"),
                                "seed": entry["result"].get("seed"),
                                "reason": f"also in {path.name}, with other final numbers there ({numbers}): "
                                          f"counted once, as the copy read first (the runs folder, then each "
                                          f"--merge in order)"})
        sweeps += [{**s, "machine": s.get("machine") or other.get("machine")} for s in other.get("sweeps") or []]
        skipped += other.get("skipped") or []
    finished = {e["path"] for e in results}
    seen: set = set()
    merged["skipped"] = [s for s in skipped if (s["status"] == "duplicate" or s["path"] not in finished)
                         and (s["path"], s["reason"]) not in seen and not seen.add((s["path"], s["reason"]))]
    merged["results"] = sorted(results, key=lambda e: (e["path"], -1 if e["round"] is None else e["round"]))
    # a sweep log read again (an export of this runs folder merged earlier): its newest read, the first, stands
    once: dict = {}
    for s in sweeps:
        once.setdefault((s["name"], s.get("started"), json.dumps(s.get("machine"), sort_keys=True)), s)
    merged["sweeps"] = sorted(once.values(), key=lambda s: (s.get("started") or "", s["name"]))
    return merged
