"""Report figures (matplotlib, Agg backend, PNG + PDF): trade-off, training dynamics, per-layer sparsity."""
from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display, works under SLURM
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from suite import stats  # noqa: E402
from suite.methods import dense_methods  # noqa: E402

if TYPE_CHECKING:
    from suite.report import Group

DENSE = dense_methods()  # the dense controls (prunes = False), from the method registry; test with `in`
_PDF_META = {"CreationDate": None}  # no timestamp: the same runs give byte-identical PDFs


def _save(fig, stem: Path) -> list[Path]:
    # not with_suffix: "s0.5" would lose its ".5"
    paths = [stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(paths[1], bbox_inches="tight", metadata=_PDF_META)
    plt.close(fig)
    return paths


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-._" else "_" for ch in text)


def _figure_sets(groups: Sequence["Group"]) -> dict[tuple, list["Group"]]:
    """Groups by (dataset, model, budget): only those are drawn in one figure."""
    sets: dict[tuple, list] = defaultdict(list)
    for g in groups:
        sets[g.match_key].append(g)
    return dict(sorted(sets.items()))


def _stem_base(key: tuple, all_keys: Sequence[tuple]) -> str:
    """`<dataset>-<model>`, plus a short hash of the budget when one model/data pair has several."""
    dataset, model, budget = key
    base = f"{_safe(dataset)}-{_safe(model)}"
    if sum(1 for k in all_keys if k[:2] == key[:2]) > 1:
        base += "-b" + hashlib.sha256(json.dumps(budget).encode()).hexdigest()[:6]
    return base


def _method_colors(groups: Sequence["Group"]) -> dict[str, str]:
    methods = sorted({g.method for g in groups})
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {m: cycle[i % len(cycle)] for i, m in enumerate(methods)}


_LINESTYLES = ("-", "--", ":", "-.")


def _variant_styles(groups: Sequence["Group"]) -> dict[tuple, tuple[str, str]]:
    """(line style, label) per method variant: variants of one method differ by line style, and
    their labels carry their settings only when the method has more than one variant here."""
    variants = sorted({g.variant for g in groups})
    out = {}
    for v in variants:
        siblings = [w for w in variants if w[0] == v[0]]
        label = v[0] if len(siblings) == 1 else f"{v[0]} [{', '.join(f'{k}={x}' for k, x in v[1]) or 'defaults'}]"
        out[v] = (_LINESTYLES[siblings.index(v) % len(_LINESTYLES)], label)
    return out


def plot_tradeoff(groups: Sequence["Group"], stem: Path, colors: dict[str, str]) -> list[Path]:
    """Mean final accuracy with its 95% CI per method across target sparsities; dense as a band."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for g in (g for g in groups if g.method in DENSE and g.round is None):
        s = stats.summarize(g.accuracies)
        ax.axhline(s.mean, color="0.3", lw=1, label=f"dense mean, 95% CI band (n={s.n})")
        if s.n >= 2:
            ax.axhspan(s.ci_low, s.ci_high, color="0.6", alpha=0.3, lw=0)
    pruned = [g for g in groups if g.method not in DENSE]
    styles = _variant_styles(pruned)
    points: dict[tuple, dict[float, "Group"]] = defaultdict(dict)
    # One point per variant and sparsity: LTH chains with different final targets repeat the same
    # early rounds; keep a run's own result over a round result, then the group with most seeds.
    for g in sorted(pruned, key=lambda g: (g.round is not None, -len(g.runs), g.sort_key())):
        points[g.variant].setdefault(g.sparsity_key, g)
    for variant, by_sparsity in sorted(points.items()):
        members = [by_sparsity[k] for k in sorted(by_sparsity)]
        xs, means, lo, hi = [], [], [], []
        for g in members:
            s = stats.summarize(g.accuracies)
            xs.append(g.target_sparsity)
            means.append(s.mean)
            lo.append(0.0 if math.isnan(s.ci_low) else s.mean - s.ci_low)   # n = 1: no bar
            hi.append(0.0 if math.isnan(s.ci_high) else s.ci_high - s.mean)
        ns = sorted({len(g.runs) for g in members})
        style, label = styles[variant]
        ax.errorbar(xs, means, yerr=[lo, hi], marker="o", ms=4, capsize=3, color=colors[variant[0]], ls=style,
                    label=f"{label} (n={'/'.join(map(str, ns))})")
    first = groups[0]
    ax.set_title(f"{first.model} on {first.dataset}: final test accuracy, mean and 95% CI")
    ax.set_xlabel("target sparsity (fraction of prunable weights at zero)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, stem)


def read_metrics(run_folder: Path) -> list[dict]:
    """Epoch records of metrics.jsonl in training order, one per (round, epoch), last write wins
    (a resumed run may repeat an epoch); unreadable lines are skipped."""
    path = run_folder / "metrics.jsonl"
    if not path.is_file():
        return []
    records: dict[tuple, dict] = {}
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a torn last line of an interrupted write
        if isinstance(rec, dict) and "epoch" in rec:
            records[(int(rec.get("round") or 0), int(rec["epoch"]))] = rec
    return [records[k] for k in sorted(records)]


def _curve(runs_records: list[list[dict]], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (cumulative epoch, 1-based over all rounds), mean and sd over seeds of `key` (NaN where absent)."""
    length = max(len(r) for r in runs_records)
    values = np.full((len(runs_records), length), np.nan)
    for i, records in enumerate(runs_records):
        for j, rec in enumerate(records):
            v = rec.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                values[i, j] = v
    counts = np.sum(~np.isnan(values), axis=0)
    with np.errstate(invalid="ignore"):
        mean = np.where(counts > 0, np.nansum(values, axis=0) / np.maximum(counts, 1), np.nan)
        centred = np.where(np.isnan(values), 0.0, values - mean)
        sd = np.where(counts > 1, np.sqrt(np.sum(centred ** 2, axis=0) / np.maximum(counts - 1, 1)), np.nan)
    return np.arange(1, length + 1), mean, sd


def plot_dynamics(groups: Sequence["Group"], sparsity: float, stem: Path, colors: dict[str, str]) -> list[Path]:
    """Test accuracy and measured sparsity against epoch: mean over seeds with a +-1 SD band."""
    fig, (ax_acc, ax_sp) = plt.subplots(1, 2, figsize=(10, 3.8))
    styles = _variant_styles(groups)
    for g in groups:
        style, label = styles[g.variant]
        records = [read_metrics(r.path) for r in g.runs]
        records = [r for r in records if r]
        if not records:
            continue
        for ax, key in ((ax_acc, "test_accuracy"), (ax_sp, "sparsity")):
            x, mean, sd = _curve(records, key)
            ok = ~np.isnan(mean)  # epochs without evaluation are skipped, not drawn as zero
            ax.plot(x[ok], mean[ok], color=colors[g.method], ls=style, lw=1.5, marker="." if ok.sum() < 30 else None,
                    label=f"{label} (n={len(records)})")
            band = ok & ~np.isnan(sd)
            if band.any():
                ax.fill_between(x[band], (mean - sd)[band], (mean + sd)[band], color=colors[g.method], alpha=0.2, lw=0)
    first = groups[0]
    ax_acc.set_title(f"{first.model} on {first.dataset}, target s={sparsity:g}: test accuracy")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_sp.set_title("measured sparsity")
    ax_sp.set_ylabel("sparsity (fraction at zero)")
    for ax in (ax_acc, ax_sp):
        ax.set_xlabel("epoch (cumulative over rounds)")
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=8, title="mean ± 1 SD over seeds", title_fontsize=8)
    return _save(fig, stem)


def plot_layers(groups: Sequence["Group"], stem: Path, colors: dict[str, str]) -> list[Path]:
    """Per-layer sparsity of the final mask, mean over seeds, one bar per method; 1.0 = layer collapse."""
    layers: list[str] = []
    for g in groups:
        for r in g.runs:
            layers += [name for name in r.layer_sparsity if name not in layers]  # model order, as saved
    styles = _variant_styles(groups)
    width = 0.8 / max(len(groups), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(layers) + 2), 4.2))
    x = np.arange(len(layers))
    for i, g in enumerate(groups):
        means = [np.mean([r.layer_sparsity[name] for r in g.runs if name in r.layer_sparsity] or [np.nan])
                 for name in layers]
        hatch = {"-": None, "--": "//", ":": "..", "-.": "xx"}[styles[g.variant][0]]  # variants of one method
        ax.bar(x - 0.4 + (i + 0.5) * width, means, width, color=colors[g.method], hatch=hatch,
               label=f"{styles[g.variant][1]} (n={len(g.runs)})")
        for xi, m in zip(x, means):
            if m >= 1.0:
                ax.annotate("collapsed", (xi - 0.4 + (i + 0.5) * width, 1.0), rotation=90, fontsize=6,
                            ha="center", va="bottom")
    ax.axhline(1.0, color="0.3", lw=0.8, ls="--")
    ax.set_xticks(x, layers, rotation=90, fontsize=7)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("layer sparsity (fraction at zero)")
    first = groups[0]
    ax.set_title(f"{first.model} on {first.dataset}, target s={first.target_sparsity:g}: final mask per layer")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, stem)


def write_all(groups: Sequence["Group"], out_dir: Path) -> list[Path]:
    """Every figure for these groups, PNG and PDF, in out_dir; returns the written paths, sorted."""
    out_dir.mkdir(parents=True, exist_ok=True)
    colors = _method_colors(groups)
    written: list[Path] = []
    sets = _figure_sets(groups)
    for key, members in sets.items():
        base = _stem_base(key, list(sets))
        if any(g.method not in DENSE for g in members):
            written += plot_tradeoff(members, out_dir / f"tradeoff-{base}", colors)
        dense = [g for g in members if g.method in DENSE and g.round is None]
        by_sparsity: dict[float, list] = defaultdict(list)
        for g in members:
            if g.method not in DENSE and g.round is None:  # round groups are inside their chain's curves
                by_sparsity[g.sparsity_key].append(g)
        for sparsity, pruned in sorted(by_sparsity.items()):
            tag = f"{base}-s{sparsity:g}"
            written += plot_dynamics(dense + pruned, sparsity, out_dir / f"dynamics-{tag}", colors)
            if any(r.layer_sparsity for g in pruned for r in g.runs):
                written += plot_layers(pruned, out_dir / f"layers-{tag}", colors)
    return sorted(written)
