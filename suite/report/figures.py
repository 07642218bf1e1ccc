"""Report figures (matplotlib, Agg backend): PNG + PDF figures (trade-off, training dynamics, per-layer
sparsity) and two GIF animations (training of the main experiment, every method at one sparsity)."""
from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display, works under SLURM
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from suite import stats  # noqa: E402
from suite.methods import METHODS, ablation_methods  # noqa: E402
from suite.report.fmt import fmt_p, is_missing, readable  # noqa: E402
from suite.report.load import DENSE, SPARSITY_DECIMALS, Group, layer_sizes, run_records  # noqa: E402
from suite.report.tables import ablation_source, stands_for  # noqa: E402

_PDF_META = {"CreationDate": None}  # no timestamp: the same runs give byte-identical PDFs
GIF_FRAMES = 40          # at most this many frames per animation: a few hundred kB, far under 5 MB
GIF_DPI = 112         # 8 inch wide figures: about 900 px, as legible as the research's
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "H", "d", "8", "1", "2")
# one colour per registry entry, in suite.methods.METHODS order: progressive red, dense black, snip blue,
# grasp green, lth purple, random grey, synflow cyan, rigl orange, set brown, gmp pink, oneshot olive, ...
_PALETTE = ("#d62728", "#000000", "#1f77b4", "#2ca02c", "#9467bd", "#7f7f7f", "#17becf", "#ff7f0e", "#8c564b",
            "#e377c2", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")


def _save(fig, stem: Path) -> list[Path]:
    # not with_suffix: "s0.5" would lose its ".5"
    paths = [stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(paths[1], bbox_inches="tight", metadata=_PDF_META)
    plt.close(fig)
    return paths


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-._" else "_" for ch in text)


def _figure_sets(groups: Sequence[Group]) -> dict[tuple, list[Group]]:
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


def method_style(method: str) -> tuple[str, str]:
    """(colour, marker) of a method, the same in every figure of every study: by its place in the method
    registry (suite.methods.METHODS), so a new method never repaints the others; unknown names after it."""
    names = list(METHODS)
    i = names.index(method) if method in names else len(names) + sum(map(ord, method)) % len(_PALETTE)
    return _PALETTE[i % len(_PALETTE)], _MARKERS[i % len(_MARKERS)]


def method_colors(groups: Sequence[Group]) -> dict[str, str]:
    """The colour of each method in these groups (method_style)."""
    return {g.method: method_style(g.method)[0] for g in groups}


def markers_for(methods) -> dict[str, str]:
    """The marker of each named method (method_style)."""
    return {m: method_style(m)[1] for m in methods}


_LINESTYLES = ("-", "--", ":", "-.")


def _variant_styles(groups: Sequence[Group]) -> dict[tuple, tuple[str, str]]:
    """(line style, label) per method variant: variants of one method differ by line style, and
    their labels carry their settings only when the method has more than one variant here."""
    variants = sorted({g.variant for g in groups})
    out = {}
    for v in variants:
        siblings = [w for w in variants if w[0] == v[0]]
        label = v[0] if len(siblings) == 1 else f"{v[0]} [{', '.join(f'{k}={x}' for k, x in v[1]) or 'defaults'}]"
        out[v] = (_LINESTYLES[siblings.index(v) % len(_LINESTYLES)], label)
    return out


def cycle_epochs(groups: Sequence[Group]) -> float:
    """Epochs of one training cycle here: what a one-cycle method trains (a chain trains it per round)."""
    one_cycle = [g.epochs for g in groups if g.round is None and g.first.rounds == 1 and not math.isnan(g.epochs)]
    if one_cycle:
        return max(one_cycle)
    chains = [g.epochs / g.first.rounds for g in groups if g.round is None and not math.isnan(g.epochs)]
    return max(chains) if chains else math.nan


def _title(groups: Sequence[Group], what: str) -> str:
    first = groups[0]
    e = cycle_epochs(groups)
    budget = "" if math.isnan(e) else f", {e:g} epochs per cycle"
    return f"{readable(first.model, first.dataset)}{budget}\n{what}"


def _epochs_text(groups: Sequence[Group]) -> str:
    values = sorted({g.epochs for g in groups if not math.isnan(g.epochs)})
    if not values:
        return ""
    return f"{values[0]:g} ep" if len(values) == 1 else f"{values[0]:g}-{values[-1]:g} ep"


def _cost_text(groups: Sequence[Group]) -> str:
    values = sorted({g.cost for g in groups if not math.isnan(g.cost)})
    if not values:
        return ""
    return f", {values[0]:.3g}x" if len(values) == 1 else f", {values[0]:.3g}-{values[-1]:.3g}x"


def tradeoff_x(sparsity: float, shift: float, log_x: bool) -> float:
    """Where a point sits on the trade-off's x axis: its sparsity (or % of weights remaining on the log
    axis), moved sideways by `shift` method slots so methods at one sparsity do not cover each other."""
    if log_x:
        return 100 * (1 - sparsity) * 10 ** (0.006 * shift)
    return sparsity + 0.0025 * shift


def plot_tradeoff(groups: Sequence[Group], stem: Path, colors: dict[str, str], log_x: bool = False) -> list[Path]:
    """Mean final accuracy with its 95% CI per method across target sparsities; dense as a band.
    Methods sharing a sparsity are offset sideways so their bars do not hide each other; log_x puts
    the fraction of weights remaining on a log axis (papers' way of showing extreme sparsity)."""
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    for g in (g for g in groups if g.method in DENSE and g.round is None):
        s = stats.summarize(g.accuracies)
        ax.axhline(s.mean, color="0.3", lw=1, label=f"dense mean, 95% CI band (n={s.n}, {_epochs_text([g])})")
        if s.n >= 2:
            ax.axhspan(s.ci_low, s.ci_high, color="0.6", alpha=0.3, lw=0)
    ablations = [g for g in groups if is_ablation(g)]
    pruned = [g for g in groups if g.method not in DENSE and not is_ablation(g)]
    styles = _variant_styles(pruned)
    markers = markers_for({g.method for g in pruned})
    points: dict[tuple, dict[float, Group]] = defaultdict(dict)
    # One point per variant and sparsity: LTH chains with different final targets repeat the same
    # early rounds; keep a run's own result over a round result, then the group with most seeds.
    for g in sorted(pruned, key=lambda g: (g.round is not None, -len(g.runs), g.sort_key())):
        points[g.variant].setdefault(g.sparsity_key, g)
    variants = sorted(points)
    intervals: list[tuple[float, float]] = []
    interval_labels: list[str] = []
    for i, variant in enumerate(variants):
        by_sparsity = points[variant]
        members = [by_sparsity[k] for k in sorted(by_sparsity)]
        shift = i - (len(variants) - 1) / 2  # centred offsets: the middle method sits on its sparsity
        xs, means, lo, hi = [], [], [], []
        for g in members:
            s = stats.summarize(g.accuracies)
            xs.append(tradeoff_x(g.target_sparsity, shift, log_x))
            means.append(s.mean)
            lo.append(0.0 if math.isnan(s.ci_low) else s.mean - s.ci_low)   # n = 1: no bar
            hi.append(0.0 if math.isnan(s.ci_high) else s.ci_high - s.mean)
            intervals.append(_interval(g)[1:])
            interval_labels.append(f"{g.method} at {g.target_sparsity:g}")
        ns = sorted({len(g.runs) for g in members})
        style, label = styles[variant]
        ax.errorbar(xs, means, yerr=[lo, hi], marker=markers[variant[0]], ms=4, capsize=3,
                    color=colors[variant[0]], ls=style,
                    label=f"{label} (n={'/'.join(map(str, ns))}, {_epochs_text(members)}{_cost_text(members)})")
        for g in members:  # this variant's ablations: hollow, beside their source's point
            for a in (a for a in ablations if ablation_source(a, groups) is g):
                m, lo_a, hi_a = _interval(a)
                x = tradeoff_x(g.target_sparsity, shift + 0.25 * (1 + ABLATION_KINDS.index(a.method)), log_x)
                _hollow(ax, x, m, lo_a, hi_a, a.method, colors[variant[0]])
                intervals.append((lo_a, hi_a))
                interval_labels.append(f"{a.method} of {g.method} at {g.target_sparsity:g}")
    ax.set_title(_title(groups, "final test accuracy, mean and 95% CI over seeds (points offset sideways)"),
                 fontsize=10)
    if log_x:
        ax.set_xscale("log")
        ax.invert_xaxis()  # sparsity grows to the right, as on the linear axis
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("weights remaining (% of prunable weights, log scale)")
    else:
        ax.set_xlabel("target sparsity (fraction of prunable weights at zero)")
    ax.set_ylabel("test accuracy (%)")
    notes = keep_scale(ax, intervals, interval_labels)  # one outlier group (random at 98%) sets no scale
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, 0.0), min(high, 100.0))  # a 2-seed CI can reach past what accuracy can be
    if notes:
        ax.set_title(ax.get_title() + "\n" + "; ".join(notes), fontsize=9)
    ax.grid(alpha=0.3)
    _ablation_legend(ax, ablations)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="method (seeds, epochs trained, cost in dense cycles)",
              title_fontsize=7)
    return _save(fig, stem)


ABLATION_KINDS = ablation_methods()  # hollow markers, in the order drawn beside a source (registry order)
_ABLATION_MARKERS = {"shuffle": "o", "reinit": "s", "invert": "v", "ticket": "D", "rewire": "^"}


def is_ablation(g: Group) -> bool:
    """A group that trains another result's mask (shuffle, reinit, invert): drawn hollow beside its source."""
    return "ablate.source_experiment" in g.first.science


def _hollow(ax, x: float, mean: float, lo: float, hi: float, kind: str, color: str) -> None:
    ax.errorbar([x], [mean], yerr=[[mean - lo], [hi - mean]], marker=_ABLATION_MARKERS.get(kind, "o"), ms=5,
                mfc="none", mec=color, color=color, capsize=2, ls="none", lw=0.8, alpha=0.9)


def _ablation_legend(ax, ablations: Sequence[Group]) -> None:
    """One legend entry per ablation kind drawn (hollow, black: each point takes its source's colour)."""
    for kind in (k for k in ABLATION_KINDS if any(a.method == k for a in ablations)):
        n = sorted({len(a.runs) for a in ablations if a.method == kind})
        ax.errorbar([], [], marker=_ABLATION_MARKERS[kind], mfc="none", mec="0.2", color="0.2", ls="none", ms=5,
                    label=f"{kind} of the method's mask (hollow, its colour; n={'/'.join(map(str, n))})")


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


def _dynamics_label(g: Group, label: str, n: int) -> str:
    if g.first.rounds > 1:
        return f"{label}: final round of {g.first.rounds} (n={n})"
    return f"{label} (n={n})"


def missing_records_note(groups: Sequence[Group]) -> str | None:
    """What a dynamics figure cannot draw: the groups none of whose runs has epoch records (an empty or
    missing metrics.jsonl), said on the figure instead of leaving empty axes."""
    missing = [g.method_label for g in groups if not any(run_records(r) for r in g.runs)]
    if not missing:
        return None
    return f"no epoch records (metrics.jsonl empty or missing) for: {', '.join(missing)}"


def plot_dynamics(groups: Sequence[Group], sparsity: float, stem: Path, colors: dict[str, str]) -> list[Path]:
    """Test accuracy and measured sparsity against epoch: mean over seeds with a +-1 SD band; each
    method over its own cycle (LTH: its final round, beside the one-cycle methods)."""
    fig, (ax_acc, ax_sp) = plt.subplots(1, 2, figsize=(11, 4.0))
    styles = _variant_styles(groups)
    markers = markers_for({g.method for g in groups})
    for k, g in enumerate(groups):
        style, label = styles[g.variant]
        records = [r for r in (run_records(r) for r in g.runs) if r]
        if not records:
            continue
        for ax, key in ((ax_acc, "test_accuracy"), (ax_sp, "sparsity")):
            x, mean, sd = _curve(records, key)
            ok = ~np.isnan(mean)  # epochs without evaluation are skipped, not drawn as zero
            # thinner lines for later methods and sparse markers: lines that coincide stay visible
            ax.plot(x[ok], mean[ok], color=colors[g.method], ls=style, lw=2.4 - 1.4 * k / max(len(groups), 1),
                    marker=markers[g.method], markevery=max(1, int(ok.sum()) // 8), ms=4, alpha=0.9,
                    label=_dynamics_label(g, label, len(records)))
            band = ok & ~np.isnan(sd)
            if band.any():
                ax.fill_between(x[band], (mean - sd)[band], (mean + sd)[band], color=colors[g.method], alpha=0.15,
                                lw=0)
    ax_acc.set_title(_title(groups, f"target sparsity {sparsity:g}: test accuracy"), fontsize=10)
    ax_acc.set_ylabel("test accuracy (%)")
    ax_sp.set_title("measured sparsity", fontsize=10)
    ax_sp.set_ylabel("sparsity (fraction of prunable weights at zero)")
    for ax in (ax_acc, ax_sp):
        ax.set_xlabel("epoch of the cycle (LTH: of its final round)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles: dict[str, object] = {}
    for ax in (ax_acc, ax_sp):  # every method drawn on either panel is in the legend, once
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    if handles:
        ax_sp.legend(list(handles.values()), list(handles), fontsize=7, title="mean ± 1 SD over seeds",
                     title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    note = missing_records_note(groups)
    if note is not None:
        if handles:
            fig.text(0.01, 0.005, note, fontsize=7, color="0.3", ha="left", va="bottom")
        else:  # nothing to draw: the figure says why instead of showing empty axes
            for ax in (ax_acc, ax_sp):
                ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=8, wrap=True)
    return _save(fig, stem)


def _layer_sizes(groups: Sequence[Group]) -> dict:
    for g in groups:
        for r in g.runs:
            sizes = r.layer_sizes if r.layer_sizes is not None else layer_sizes(r.path)
            if sizes:
                return sizes
    return {}


def kept_dense(groups: Sequence[Group], layers: Sequence[str]) -> set[str]:
    """Layers the results say were kept dense: named in dense_layers, or 'first' / 'last' of the model order."""
    out: set[str] = set()
    for g in groups:
        for r in g.runs:
            for name in r.dense_layers or ():
                if name == "first" and layers:
                    out.add(layers[0])
                elif name == "last" and layers:
                    out.add(layers[-1])
                else:
                    out.add(name)
    return {name for name in out if name in layers}


def plot_layers(groups: Sequence[Group], stem: Path, colors: dict[str, str]) -> list[Path]:
    """Per-layer sparsity of the final mask, mean over seeds, one bar per method; 1.0 = layer collapse."""
    layers: list[str] = []
    for g in groups:
        for r in g.runs:
            layers += [name for name in r.layer_sparsity if name not in layers]  # model order, as saved
    sizes = _layer_sizes(groups)
    dense_here = kept_dense(groups, layers)
    styles = _variant_styles(groups)
    width = 0.8 / max(len(groups), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(layers) + 3), 4.4))
    x = np.arange(len(layers))
    for i, g in enumerate(groups):
        means = [np.mean([r.layer_sparsity[name] for r in g.runs if name in r.layer_sparsity] or [np.nan])
                 for name in layers]
        hatch = {"-": None, "--": "//", ":": "..", "-.": "xx"}[styles[g.variant][0]]  # variants of one method
        ax.bar(x - 0.4 + (i + 0.5) * width, means, width, color=colors[g.method], hatch=hatch,
               label=f"{styles[g.variant][1]} (n={len(g.runs)})")
        for xi, name in zip(x, layers):
            if name in dense_here:
                ax.annotate("kept dense", (xi - 0.4 + (i + 0.5) * width, 0.02), rotation=90, fontsize=6,
                            ha="center", va="bottom", color="0.3")
        for xi, m in zip(x, means):
            if m >= 1.0:
                ax.annotate("collapsed", (xi - 0.4 + (i + 0.5) * width, 1.0), rotation=90, fontsize=6,
                            ha="center", va="bottom")
    ax.axhline(1.0, color="0.3", lw=0.8, ls="--", label="1.0: every weight of the layer pruned (collapse)")
    target = groups[0].target_sparsity
    ax.axhline(target, color="0.5", lw=0.8, ls=":", label=f"global target sparsity {target:g}")
    ticks = [(f"{name}\n{sizes[name]:,} weights" if name in sizes else name) + ("\n(kept dense)" if name in dense_here
                                                                                else "") for name in layers]
    ax.set_xticks(x, ticks, rotation=90 if len(layers) > 6 else 0, fontsize=7)
    ax.set_xlabel("prunable layer (weights in the layer)")
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("layer sparsity (fraction of the layer's weights at zero)")
    ax.set_title(_title(groups, f"target sparsity {target:g}: final mask per layer, mean over seeds"), fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, stem)


# --- animations ---------------------------------------------------------------------------------

def gif_frames(length: int) -> list[int]:
    """Epoch counts to draw, one per frame, at most GIF_FRAMES of them, always ending at the last epoch."""
    if length <= GIF_FRAMES:
        return list(range(1, length + 1))
    return sorted({int(round(v)) for v in np.linspace(1, length, GIF_FRAMES)})


def _save_gif(fig, update, frames: list[int], path: Path) -> list[Path]:
    anim = FuncAnimation(fig, update, frames=frames, blit=False)
    anim.save(str(path), writer=PillowWriter(fps=5), dpi=GIF_DPI)
    plt.close(fig)
    return [path]


def animate_training(g: Group, path: Path, colors: dict[str, str]) -> list[Path]:
    """The main experiment epoch by epoch: test accuracy (mean ± 1 SD over seeds) and sparsity."""
    records = [r for r in (run_records(r) for r in g.runs) if r]
    x, acc, sd = _curve(records, "test_accuracy")
    _, sparsity, _ = _curve(records, "sparsity")
    fig, (ax_acc, ax_sp) = plt.subplots(1, 2, figsize=(8.0, 3.4))  # x GIF_DPI: about 900 px wide
    ok = ~np.isnan(acc)
    lo, hi = np.nanmin((acc - np.nan_to_num(sd))[ok]), np.nanmax((acc + np.nan_to_num(sd))[ok])
    ax_acc.set_xlim(0.5, x[-1] + 0.5)
    ax_acc.set_ylim(lo - 0.5, hi + 0.5)
    ax_sp.set_xlim(0.5, x[-1] + 0.5)
    ax_sp.set_ylim(0, 1.0)
    color = colors[g.method]
    # markers: the first frame (one epoch, one point) is drawn, not blank axes
    line_acc, = ax_acc.plot([], [], color=color, lw=2, marker="o", ms=3,
                            label=f"{g.method_label}: mean (n={len(records)})")
    line_sp, = ax_sp.plot([], [], color=color, lw=2, marker="o", ms=3, label="measured sparsity")
    ax_sp.axhline(g.target_sparsity, color="0.4", ls=":", lw=1, label=f"target {g.target_sparsity:g}")
    ax_acc.fill_between([], [], [], color=color, alpha=0.2, label="± 1 SD over seeds")
    ax_acc.set_title(f"{readable(g.model, g.dataset)}, {g.method_label}, {x[-1]:g} epochs", fontsize=9)
    ax_sp.set_title("sparsity grows while it trains", fontsize=9)
    ax_acc.set_xlabel("epoch")
    ax_sp.set_xlabel("epoch")
    for ax in (ax_acc, ax_sp):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.set_ylabel("test accuracy (%)")
    ax_sp.set_ylabel("sparsity (fraction at zero)")
    ax_acc.legend(fontsize=7, loc="lower right")
    ax_sp.legend(fontsize=7, loc="lower right")
    for ax in (ax_acc, ax_sp):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    band = [None]

    def update(n: int):
        m = ok[:n]
        line_acc.set_data(x[:n][m], acc[:n][m])
        line_sp.set_data(x[:n], sparsity[:n])
        if band[0] is not None:
            band[0].remove()
        good = m & ~np.isnan(sd[:n])
        band[0] = ax_acc.fill_between(x[:n][good], (acc - sd)[:n][good], (acc + sd)[:n][good], color=color,
                                      alpha=0.2, lw=0)
        return line_acc, line_sp

    return _save_gif(fig, update, gif_frames(len(x)), path)


def animate_comparison(groups: Sequence[Group], sparsity: float, path: Path, colors: dict[str, str]) -> list[Path]:
    """Every method's test accuracy (mean over seeds) at one sparsity, drawn together epoch by epoch."""
    curves = []
    for g in groups:
        records = [r for r in (run_records(r) for r in g.runs) if r]
        if records:
            x, mean, _ = _curve(records, "test_accuracy")
            curves.append((g, x, mean))
    fig, ax = plt.subplots(figsize=(8.0, 3.8))  # x GIF_DPI: about 900 px wide
    length = max(len(x) for _, x, _ in curves)
    values = np.concatenate([m[~np.isnan(m)] for _, _, m in curves])
    ax.set_xlim(0.5, length + 0.5)
    ax.set_ylim(values.min() - 0.5, values.max() + 0.5)
    markers = markers_for({g.method for g in groups})
    lines = []
    for k, (g, x, mean) in enumerate(curves):
        label = _dynamics_label(g, g.method, len(g.runs))
        line, = ax.plot([], [], color=colors[g.method], lw=2.4 - 1.4 * k / max(len(curves), 1),
                        marker=markers[g.method], ms=3, label=label)
        lines.append(line)
    ax.set_title(_title(groups, f"target sparsity {sparsity:g}: test accuracy, mean over seeds"), fontsize=9)
    ax.set_xlabel("epoch of the cycle (LTH: of its final round)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()

    def update(n: int):
        for line, (_, x, mean) in zip(lines, curves):
            ok = ~np.isnan(mean[:n])
            line.set_data(x[:n][ok], mean[:n][ok])
        return lines

    return _save_gif(fig, update, gif_frames(length), path)


# --- what is drawn ------------------------------------------------------------------------------

def _main_set(sets: dict[tuple, list]) -> tuple | None:
    """The (data, model, budget) set with most results: the study the animations show."""
    if not sets:
        return None
    return max(sets, key=lambda k: (sum(len(g.runs) for g in sets[k]), k))


HIGH_SPARSITY = 0.9  # from here on a linear sparsity axis spends its width on the easy low sparsities


def high_sparsity(groups: Sequence[Group]) -> bool:
    """Whether the study reaches high sparsities: the trade-off then uses a log weights-remaining axis."""
    return any(g.target_sparsity >= HIGH_SPARSITY for g in groups)


class Figure(NamedTuple):
    """One figure write_all draws: its kind, file stem, the groups it shows, its sparsity (if one), and the
    head-to-head rows a forest plot draws."""
    kind: str
    stem: str
    groups: list
    sparsity: float | None
    rows: tuple = ()


def plan(groups: Sequence[Group], reference: str = "progressive", comparisons: Sequence[dict] = ()) -> list[Figure]:
    """Every figure write_all draws, in a fixed order; the animations show the reference method (the
    report's --reference) where it ran; comparisons are the head-to-head rows (one forest plot per sparsity)."""
    out: list[Figure] = []
    sets = _figure_sets(groups)
    for key, members in sets.items():
        base = _stem_base(key, list(sets))
        if any(g.method not in DENSE for g in members):
            out.append(Figure("tradeoff", f"tradeoff-{base}", members, None))
        dense = [g for g in members if g.method in DENSE and g.round is None]
        by_sparsity: dict[float, list] = defaultdict(list)
        for g in members:  # round groups are inside their chain's curves, ablations beside their source's point
            if g.method not in DENSE and g.round is None and not is_ablation(g):
                by_sparsity[g.sparsity_key].append(g)
        for sparsity, pruned in sorted(by_sparsity.items()):
            tag = f"{base}-s{sparsity:g}"
            out.append(Figure("dynamics", f"dynamics-{tag}", dense + pruned, sparsity))
            if any(r.layer_sparsity for g in pruned for r in g.runs):
                out.append(Figure("layers", f"layers-{tag}", pruned, sparsity))
        ids = {g.id for g in members}
        rows = [r for r in comparisons if r["group"] in ids]
        for sparsity in sorted({round(r["reference_sparsity"], SPARSITY_DECIMALS) for r in rows}):
            at = tuple(r for r in rows if round(r["reference_sparsity"], SPARSITY_DECIMALS) == sparsity)
            out.append(Figure("forest", f"forest-{base}-s{sparsity:g}", members, sparsity, at))
    protocols: dict[tuple, list] = defaultdict(list)
    for g in groups:
        protocols[g.protocol_key].append(g)
    for key, members in sorted(protocols.items()):
        base = _stem_base(key, list(protocols))
        for sparsity in sorted({g.sparsity_key for g in members
                                if g.method not in DENSE and g.round is None and not is_ablation(g)}):
            out.append(Figure("frontier", f"frontier-{base}-s{sparsity:g}", members, sparsity))
    main = _main_set(sets)
    if main is not None:
        members = sets[main]
        one_cycle = [g for g in members if g.round is None and g.method not in DENSE and not is_ablation(g)]
        if one_cycle:
            top = max(g.sparsity_key for g in one_cycle)
            at_top = [g for g in one_cycle if g.sparsity_key == top]
            # the main experiment: the reference at the highest sparsity, else the method with most seeds
            main_group = min(at_top, key=lambda g: (g.method != reference, -len(g.runs), g.sort_key()))
            if any(run_records(r) for r in main_group.runs):
                out.append(Figure("training_animation", "training_animation", [main_group], top))
                dense = [g for g in members if g.method in DENSE and g.round is None]
                out.append(Figure("comparison_animation", "comparison_animation", dense + at_top, top))
    return out


def planned(groups: Sequence[Group], reference: str = "progressive", comparisons: Sequence[dict] = ()) -> list[str]:
    """The file names write_all writes for these groups, without drawing anything."""
    names = []
    for f in plan(groups, reference, comparisons):
        names += [f"{f.stem}.gif"] if f.kind.endswith("animation") else [f"{f.stem}.png", f"{f.stem}.pdf"]
    return names


def write_all(groups: Sequence[Group], out_dir: Path, log_x: bool = False,
              reference: str = "progressive", comparisons: Sequence[dict] = ()) -> list[Path]:
    """Every figure for these groups (PNG and PDF) and the two animations (GIF) in out_dir; returns
    the written paths, sorted."""
    out_dir.mkdir(parents=True, exist_ok=True)
    colors = method_colors(groups)
    log_x = log_x or high_sparsity(groups)
    written: list[Path] = []
    for f in plan(groups, reference, comparisons):
        if f.kind == "tradeoff":
            written += plot_tradeoff(f.groups, out_dir / f.stem, colors, log_x=log_x)
        elif f.kind == "dynamics":
            written += plot_dynamics(f.groups, f.sparsity, out_dir / f.stem, colors)
        elif f.kind == "layers":
            written += plot_layers(f.groups, out_dir / f.stem, colors)
        elif f.kind == "frontier":
            written += plot_frontier(f.groups, f.sparsity, out_dir / f.stem, colors)
        elif f.kind == "forest":
            written += plot_forest(f.rows, f.groups, f.sparsity, out_dir / f.stem, colors)
        elif f.kind == "training_animation":
            written += animate_training(f.groups[0], out_dir / f"{f.stem}.gif", colors)
        else:
            written += animate_comparison(f.groups, f.sparsity, out_dir / f"{f.stem}.gif", colors)
    return sorted(written)


# --- the forest plot of the head-to-head comparisons ----------------------------------------------

def off_scale(intervals: Sequence[tuple[float, float]]) -> set[int]:
    """Indices of intervals that alone stretch the common axis more than 3-fold (random at 98% beside ten
    methods within 4 points): drawn as a note with their values instead of setting the scale."""
    ok = [(i, lo, hi) for i, (lo, hi) in enumerate(intervals) if not (math.isnan(lo) or math.isnan(hi))]
    if len(ok) < 3:
        return set()
    full = max(h for _, _, h in ok) - min(lo for _, lo, _ in ok)
    out = set()
    for i, _, _ in ok:
        rest = [(lo, hi) for j, lo, hi in ok if j != i]
        width = max(h for _, h in rest) - min(lo for lo, _ in rest)
        if full > 3 * max(width, 1e-9):
            out.add(i)
    return out if len(out) < len(ok) / 2 else set()


def plot_forest(rows: Sequence[dict], groups: Sequence[Group], sparsity: float, stem: Path,
                colors: dict[str, str]) -> list[Path]:
    """Each comparison's Δ = method − reference with its Holm-adjusted CI, at one sparsity; a row whose
    interval alone would stretch the axis is written as a note with its numbers instead."""
    rows = list(rows)
    reference = rows[0]["reference"]
    fig, ax = plt.subplots(figsize=(7.2, 0.45 * len(rows) + 1.8))
    far = off_scale([(r["diff_ci_low"], r["diff_ci_high"]) if not is_missing(r["diff_ci_low"])
                     else (r["diff"], r["diff"]) for r in rows])
    notes = []
    for y, r in enumerate(reversed(rows)):
        i = len(rows) - 1 - y
        label = r["method"] + (f" ({r['round']})" if r["round"] else "")
        level = "" if is_missing(r["ci_alpha"]) else f"{100 * (1 - r['ci_alpha']):.4g}% CI, "
        ax.annotate(f"  {r['verdict']} ({level}Holm p {fmt_p(r['primary_p_holm'])})", (1.0, y),
                    xycoords=("axes fraction", "data"), fontsize=7, va="center")
        if i in far:
            notes.append(f"{label}: Δ {r['diff']:+.2f}, CI [{r['diff_ci_low']:.2f}, {r['diff_ci_high']:.2f}] "
                         "(off scale)")
            ax.annotate(f"{label}: off scale (see note)", (0, y), ha="center", va="center", fontsize=7, color="0.3")
            continue
        lo, hi = r["diff_ci_low"], r["diff_ci_high"]
        err = None if is_missing(lo) else [[r["diff"] - lo], [hi - r["diff"]]]
        ax.errorbar([r["diff"]], [y], xerr=err, fmt=markers_for([r["method"]])[r["method"]], capsize=3,
                    color=colors.get(r["method"], "0.2"), ms=5)
    ax.axvline(0.0, color="0.3", lw=1)
    ax.set_yticks(range(len(rows)), [r["method"] + (f" ({r['round']})" if r["round"] else "")
                                     for r in reversed(rows)], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(f"Δ accuracy = method − {reference} (points), Holm-adjusted CI")
    title = _title(groups, f"target sparsity {sparsity:g}: each method against {reference} "
                           f"({rows[0]['primary_test']}, Holm within the sparsity, m={rows[0]['family_size']})")
    if notes:
        title += "\n" + "; ".join(notes)
    ax.set_title(title, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, stem)


# --- the accuracy-cost frontier ----------------------------------------------------------------------

def _cost_axis(ax) -> None:
    """A log axis of training cost whose ticks say their values ('0.1x', '1x', '4x')."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def keep_scale(ax, intervals: Sequence[tuple[float, float]], labels: Sequence[str]) -> list[str]:
    """Set the y limits from the intervals that do not alone stretch the axis (off_scale); returns a note per
    interval left out, with its values, for the title."""
    far = off_scale(intervals)
    kept = [iv for i, iv in enumerate(intervals) if i not in far and not math.isnan(iv[0])]
    if far and kept:
        low, high = min(lo for lo, _ in kept), max(hi for _, hi in kept)
        pad = 0.08 * max(high - low, 0.2)
        ax.set_ylim(low - pad, high + pad)
    return [f"{labels[i]}: {(intervals[i][0] + intervals[i][1]) / 2:.2f} [{intervals[i][0]:.2f}, "
            f"{intervals[i][1]:.2f}] off scale" for i in sorted(far)]


def _interval(g: Group) -> tuple[float, float, float]:
    s = stats.summarize(g.accuracies)
    lo = s.mean if math.isnan(s.ci_low) else s.ci_low
    hi = s.mean if math.isnan(s.ci_high) else s.ci_high
    return s.mean, lo, hi


def plot_frontier(groups: Sequence[Group], sparsity: float, stem: Path, colors: dict[str, str]) -> list[Path]:
    """Accuracy (mean, 95% CI) against training cost relative to one dense cycle (log axis) at one
    sparsity: each method a line over its budgets (epochs per cycle); an LTH chain's rounds up to this
    sparsity as its curve (sparsity grows along it); dense as grey points at its cost."""
    fig, ax = plt.subplots(figsize=(7.6, 4.6))
    drawn: list[tuple[float, float]] = []
    labels: list[str] = []
    at = [g for g in groups if g.method not in DENSE and not is_ablation(g) and stands_for(g, sparsity, groups)]
    by_variant: dict[tuple, list[Group]] = defaultdict(list)  # a method's variants (structure, ...) apart
    for g in at:
        by_variant[g.variant].append(g)
    styles = _variant_styles(at)
    for variant in sorted(by_variant):
        members = sorted((g for g in by_variant[variant] if not math.isnan(g.cost)), key=lambda g: g.cost)
        if not members:
            continue
        pts = [_interval(g) for g in members]
        color, marker = method_style(variant[0])
        style, label = styles[variant]
        ax.errorbar([g.cost for g in members], [m for m, _, _ in pts],
                    yerr=[[m - lo for m, lo, _ in pts], [hi - m for m, _, hi in pts]], color=color, marker=marker,
                    ms=5, capsize=3, lw=1.4, ls=style,
                    label=f"{label} ({', '.join(g.budget_label for g in members)})")
        drawn += [(lo, hi) for _, lo, hi in pts]
        labels += [variant[0]] * len(pts)
    chains = [g for g in groups if g.round is None and g.first.rounds > 1 and g.method not in DENSE]
    for chain in chains:
        rounds = sorted((h for h in groups if h.experiment == chain.experiment and h.round is not None
                         and h.target_sparsity <= sparsity + 0.002 and not math.isnan(h.cost)),
                        key=lambda h: h.cost)
        if chain.target_sparsity <= sparsity + 0.002 and not math.isnan(chain.cost):
            rounds.append(chain)
        if len(rounds) < 2:
            continue
        color, _ = method_style(chain.method)
        means = [_interval(h)[0] for h in rounds]
        drawn += [(m, m) for m in means]
        labels += [f"{chain.method} round {h.round}" for h in rounds]
        ax.plot([h.cost for h in rounds], means, color=color, ls=":", lw=1, alpha=0.8,
                label=f"{chain.method} rounds, {chain.budget_label} (sparsity grows along the line)")
    for d in (g for g in groups if g.method in DENSE and g.round is None and not math.isnan(g.cost)):
        m, lo, hi = _interval(d)
        drawn.append((lo, hi))
        labels.append(d.method)
        color, marker = method_style(d.method)
        ax.errorbar([d.cost], [m], yerr=[[m - lo], [hi - m]], color=color, marker=marker, ms=5, capsize=3, ls="none",
                    label=f"{d.method} (no pruning, {d.budget_label})")
    ablations = [a for a in groups if is_ablation(a) and ablation_source(a, groups) in at and not math.isnan(a.cost)]
    for a in ablations:  # at their own cost (one cycle of the source's mask), in the source's colour
        m, lo, hi = _interval(a)
        _hollow(ax, a.cost, m, lo, hi, a.method, method_style(ablation_source(a, groups).method)[0])
        drawn.append((lo, hi))
        labels.append(f"{a.method} of {ablation_source(a, groups).method}")
    _ablation_legend(ax, ablations)
    notes = keep_scale(ax, drawn, labels)
    _cost_axis(ax)
    ax.set_xlabel("training cost (FLOPs over one dense training cycle, log scale; sparse kernels assumed)")
    ax.set_ylabel("final test accuracy (%)")
    title = _title(groups, f"target sparsity {sparsity:g}: accuracy (mean, 95% CI) against training cost")
    ax.set_title(title + ("\n" + "; ".join(notes) if notes else ""), fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="method (budget per cycle)",
              title_fontsize=7)
    return _save(fig, stem)
