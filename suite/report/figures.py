"""Report figures (matplotlib, Agg backend): PNG + PDF figures (trade-off, training dynamics, per-layer
sparsity) and two GIF animations (training of the main experiment, every method at one sparsity)."""
from __future__ import annotations

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
from suite.method_facts import ablation_methods, method_names  # noqa: E402
from suite.report.fmt import fmt_p, is_missing, readable  # noqa: E402
from suite.report.labels import protocol_words  # noqa: E402
from suite.report.load import (DENSE, SPARSITY_DECIMALS, Group, Metric, layer_sizes, run_records,  # noqa: E402
                               study_metric)
from suite.report.tables import ablation_source, protocol_differences, stands_for, structure_text  # noqa: E402

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


def _values(groups: Sequence[Group], get) -> list:
    return sorted({v for g in groups for v in [get(g)] if v is not None}, key=str)


def _budgets(groups: Sequence[Group]) -> tuple[list, str]:
    """The budgets per cycle these groups ran and their unit: optimizer steps where any ran a step budget
    (train.steps), else epochs."""
    steps = _values(groups, lambda g: g.first.science.get("train.steps"))
    if steps:
        return steps, "steps"
    return _values(groups, lambda g: g.first.science.get("train.epochs")), "ep"


def _cost_unit(groups: Sequence[Group]) -> str:
    """The one cost unit of these groups in words ('20-epoch dense cycles'), or 'dense cycles' if they differ."""
    units = {g.cost_unit for g in groups}
    return units.pop() if len(units) == 1 else "dense cycles"


def _trained_words(groups: Sequence[Group]) -> str:
    return "steps" if _budgets(groups)[1] == "steps" else "epochs"


def family_words(groups: Sequence[Group]) -> str:
    """The budget and init of these groups in words: '20 ep/cycle, kaiming_normal init' ('1000 steps/cycle' for a
    budget in optimizer steps; a range or a list where they differ)."""
    budgets, unit = _budgets(groups)
    inits = _values(groups, lambda g: g.protocol("init"))
    ep = ("budget unknown" if not budgets else f"{budgets[0]:g} {unit}/cycle" if len(budgets) == 1
          else f"{min(budgets):g}-{max(budgets):g} {unit}/cycle")
    return f"{ep}, {' / '.join(map(str, inits)) or 'unrecorded'} init"


def _slug(groups: Sequence[Group], sparsity: float | None, with_epochs: bool = True) -> str:
    """A figure's family as a file name: '98-20ep-kaiming' (sparsity in percent, epochs per cycle, init;
    '1000steps' for a budget in steps)."""
    budgets, unit = _budgets(groups)
    inits = _values(groups, lambda g: g.protocol("init"))
    parts = [] if sparsity is None else [f"{100 * sparsity:.4g}".replace(".", "_")]
    if with_epochs:
        parts.append("-".join(f"{e:g}" for e in budgets) + unit if budgets else "ep-unknown")
    parts.append("-".join(str(i).split("_")[0] for i in inits) or "init-unknown")
    return "-".join(parts)


def method_style(method: str) -> tuple[str, str]:
    """(colour, marker) of a method, the same in every figure of every study: by its place in the method
    registry (suite.methods.METHODS), so a new method never repaints the others; unknown names after it."""
    names = list(method_names())
    i = names.index(method) if method in names else len(names) + sum(map(ord, method)) % len(_PALETTE)
    return _PALETTE[i % len(_PALETTE)], _MARKERS[i % len(_MARKERS)]


def method_colors(groups: Sequence[Group]) -> dict[str, str]:
    """The colour of each method in these groups (method_style)."""
    return {g.method: method_style(g.method)[0] for g in groups}


def markers_for(methods) -> dict[str, str]:
    """The marker of each named method (method_style)."""
    return {m: method_style(m)[1] for m in methods}


_LINESTYLES = ("-", "--", ":", "-.")


def variant_label(g: Group) -> str:
    """A group's label without its round and epochs per cycle: one legend entry per variant of a method
    (a chain's rounds and a method's budgets are points of one variant)."""
    label = g.label
    if not label.endswith("]") or "[" not in label:
        return label
    head, inside = label[:label.index("[")].rstrip(), label[label.index("[") + 1:-1]
    parts = [p for p in inside.split(", ") if not (p.startswith("round ") or (p.endswith(" ep") and p[:-3].isdigit()))]
    return head + (f" [{', '.join(parts)}]" if parts else "")


def _variant_key(g: Group) -> str:
    return variant_label(g)


def _variant_styles(groups: Sequence[Group]) -> dict[str, tuple[str, str, str]]:
    """(line style, marker, label) per variant (variant_label): one colour per method, and the variants of one
    method told apart by marker and line style."""
    variants = sorted({_variant_key(g) for g in groups}, key=lambda v: (" [" in v, v))
    out = {}
    for v in variants:
        method = v.split(" [")[0].split(" of ")[0]
        siblings = [w for w in variants if w.split(" [")[0].split(" of ")[0] == method]
        i = siblings.index(v)
        base = method_style(method)[1]
        marker = _MARKERS[(_MARKERS.index(base) + 2 * i) % len(_MARKERS)]
        out[v] = (_LINESTYLES[i % len(_LINESTYLES)], marker, v)
    return out


def _title(groups: Sequence[Group], what: str) -> str:
    """'LeNet-300-100 on MNIST, 20 ep/cycle, kaiming_normal init' over what the figure shows."""
    first = groups[0]
    return f"{readable(first.model, first.dataset)}, {family_words(groups)}\n{what}"


def _epochs_text(groups: Sequence[Group]) -> str:
    """What these groups trained: '20 ep', '160-380 ep', or '9000 steps' for a budget in optimizer steps."""
    steps = sorted({g.steps_trained for g in groups if not math.isnan(g.steps_trained)})
    values, unit = (steps, "steps") if steps else (sorted({g.epochs for g in groups if not math.isnan(g.epochs)}), "ep")
    if not values:
        return ""
    return f"{values[0]:g} {unit}" if len(values) == 1 else f"{values[0]:g}-{values[-1]:g} {unit}"


def _cost_text(groups: Sequence[Group]) -> str:
    values = sorted({g.cost for g in groups if not math.isnan(g.cost)})
    if not values:
        return ""
    return f", {values[0]:.3g}x" if len(values) == 1 else f", {values[0]:.3g}-{values[-1]:.3g}x"


def tradeoff_x(slot: int, shift: float) -> float:
    """Where a point sits on the trade-off's x axis: its sparsity's slot (one per measured sparsity, evenly
    spaced, so nothing is drawn between sparsities that were never run), moved sideways by `shift` variant
    places so variants at one sparsity do not cover each other."""
    return slot + 0.06 * shift


def collapsed(points: Sequence[tuple[float, float, float]], higher_is_better: bool = True,
              floor: float = 2.0) -> set[int]:
    """Indices of points (mean, lo, hi) whose mean lies far on the worse side of the others (a collapsed
    network or a broken configuration): worse than the best by more than 4 times the median distance of all
    points from the best, and by more than `floor`. They are written as a note instead of setting the axis."""
    means = [m for m, _, _ in points]
    if len(means) < 3:
        return set()
    best = max(means) if higher_is_better else min(means)
    gaps = [abs(best - m) for m in means]
    typical = float(np.median(gaps))
    return {i for i, d in enumerate(gaps) if d > max(4 * typical, floor)}


def axis_limits(points: Sequence[tuple[float, float, float]], off: set[int]) -> tuple[float, float] | None:
    """Axis limits from the points that did not collapse, their intervals included but never more than the
    spread of their means beyond them, halved (one wide interval does not flatten the rest; it runs off the
    axis)."""
    kept = [points[i] for i in range(len(points)) if i not in off]
    if not kept:
        return None
    means = [m for m, _, _ in kept]
    spread = max(max(means) - min(means), 0.2)
    low = max(min(lo for _, lo, _ in kept), min(means) - spread / 2)
    high = min(max(hi for _, _, hi in kept), max(means) + spread / 2)
    pad = 0.06 * max(high - low, 0.2)
    return low - pad, high + pad


def _collapse_floor(metric) -> float:
    return 2.0 if metric.name.endswith("accuracy") else 0.1


def _note_below(fig, ax, notes: Sequence[str], header: str) -> None:
    """Notes in a strip under the axes (never over them): one line per note."""
    if notes:
        fig.text(0.01, -0.02, header + "\n" + "\n".join(notes), fontsize=7, color="0.25", ha="left", va="top",
                 transform=fig.transFigure)


def plot_tradeoff(groups: Sequence[Group], stem: Path, colors: dict[str, str]) -> list[Path]:
    """Mean final metric with its 95% CI per variant at each measured target sparsity (one slot each, points
    only, no lines between sparsities); dense as a band; collapsed groups in a note under the axes."""
    metric = study_metric(groups)
    ablations = [g for g in groups if is_ablation(g)]
    pruned = [g for g in groups if g.method not in DENSE and not is_ablation(g)]
    styles = _variant_styles(pruned)
    points: dict[str, dict[float, Group]] = defaultdict(dict)
    # One point per variant and sparsity: LTH chains with different final targets repeat the same
    # early rounds; keep a run's own result over a round result, then the group with most seeds.
    # A chain's rounds stand for the sparsities the one-cycle groups ran (within ROUND_TOLERANCE); its
    # other rounds are points of the frontier, not slots of their own.
    sparsities = sorted({g.sparsity_key for g in pruned if g.round is None})
    for g in sorted(pruned, key=lambda g: (g.round is not None, -len(g.runs), g.sort_key())):
        for k in sparsities:
            if stands_for(g, k, groups):
                points[_variant_key(g)].setdefault(k, g)
    slot = {k: i for i, k in enumerate(sparsities)}
    fig, axes = plt.subplots(1, max(len(sparsities), 1), figsize=(2.6 * max(len(sparsities), 1) + 3.2, 4.6),
                             squeeze=False)
    axes = list(axes[0])
    ax = axes[-1]  # the legend's
    for panel in axes:  # one panel per sparsity, each on its own scale
        for g in (g for g in groups if g.method in DENSE and g.round is None):
            s = stats.summarize(g.values)
            panel.axhline(s.mean, color="0.3", lw=1,
                          label=f"{g.label}: mean, 95% CI band (n={s.n}, {_epochs_text([g])})")
            if s.n >= 2:
                panel.axhspan(s.ci_low, s.ci_high, color="0.6", alpha=0.3, lw=0)
    variants = sorted(points, key=lambda v: (v.split(" [")[0], " [" in v, v))
    drawn: list[tuple[str, float, float, float, float, str, str, str]] = []  # label, x, mean, lo, hi, colour, marker, kind
    for i, variant in enumerate(variants):
        shift = i - (len(variants) - 1) / 2  # centred offsets: the middle variant sits on its slot
        members = [points[variant][k] for k in sorted(points[variant])]
        style, marker, label = styles[variant]
        color = colors.get(members[0].method, method_style(members[0].method)[0])
        ns = sorted({len(g.runs) for g in members})
        ax.errorbar([], [], marker=marker, color=color, ls="none", ms=4, capsize=3,
                    label=f"{label} (n={'/'.join(map(str, ns))}, {_epochs_text(members)}{_cost_text(members)})")
        for g in members:
            k = next(k for k in sparsities if points[variant].get(k) is g)
            m, lo, hi = _interval(g)
            drawn.append((f"{g.label} at {100 * g.target_sparsity:g}%", tradeoff_x(slot[k], shift),
                          m, lo, hi, color, marker, "point"))
            for a in (a for a in ablations if ablation_source(a, groups) is g):
                m, lo, hi = _interval(a)
                x = tradeoff_x(slot[k], shift + 0.3 * (1 + ABLATION_KINDS.index(a.method)))
                drawn.append((f"{a.label} at {100 * g.target_sparsity:g}%", x, m, lo, hi, color, a.method, "ablation"))
    off: set[int] = set()
    for k in range(len(sparsities)):  # collapse is judged among the groups at one sparsity
        at_slot = [i for i, item in enumerate(drawn) if round(item[1]) == k]
        found = collapsed([drawn[i][2:5] for i in at_slot], metric.higher_is_better, _collapse_floor(metric))
        off |= {at_slot[j] for j in found}
    notes = []
    dense_means = [(stats.summarize(g.values).mean,) * 3 for g in groups if g.method in DENSE and g.round is None]
    for k, panel in enumerate(axes):
        at_slot = [i for i, item in enumerate(drawn) if round(item[1]) == k]
        for i in at_slot:
            label, x, m, lo, hi, color, marker, kind = drawn[i]
            if i in off:
                notes.append(f"{label}: {m:.{metric.digits}f} [{lo:.{metric.digits}f}, {hi:.{metric.digits}f}]")
            elif kind == "ablation":
                _hollow(panel, x - k, m, lo, hi, marker, color)
            else:
                panel.errorbar([x - k], [m], yerr=[[m - lo], [hi - m]], marker=marker, ms=4, capsize=3, color=color,
                               ls="none")
        limits = axis_limits([drawn[i][2:5] for i in at_slot] + dense_means, {j for j, i in enumerate(at_slot) if i in off})
        if limits:
            panel.set_ylim(*limits)
        sparsity = sparsities[k] if sparsities else 0.0
        panel.set_xticks([])
        panel.set_xlim(-0.6, 0.6)
        panel.set_xlabel(f"{100 * sparsity:g}% sparse\n({100 * (1 - sparsity):.3g}% of weights left)")
        panel.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel(metric.label)
    fig.suptitle(_title(groups, f"final {metric.short}, mean and 95% CI over seeds, one panel per sparsity run "
                                "(each on its own scale; points offset sideways)"), fontsize=10)
    _ablation_legend(ax, ablations)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              title=f"group (seeds, {_trained_words(groups)} trained, cost in {_cost_unit(groups)})", title_fontsize=7)
    _note_below(fig, ax, notes, "collapsed or broken, off the axis (mean [95% CI]):")
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


def plot_dynamics(groups: Sequence[Group], sparsity: float, stem: Path, colors: dict[str, str],
                  reference: Group | None = None) -> list[Path]:
    """The metric and measured sparsity against epoch: mean over seeds with a +-1 SD band; each group over
    its own cycle (LTH: its final round, beside the one-cycle methods); the reference group named in the title."""
    metric = study_metric(groups)
    fig, (ax_acc, ax_sp) = plt.subplots(1, 2, figsize=(11, 4.0))
    styles = _variant_styles(groups)
    for k, g in enumerate(groups):
        style, marker, _ = styles[_variant_key(g)]
        label = g.label
        records = [r for r in (run_records(r) for r in g.runs) if r]
        if not records:
            continue
        for ax, key in ((ax_acc, metric.name), (ax_sp, "sparsity")):
            x, mean, sd = _curve(records, key)
            ok = ~np.isnan(mean)  # epochs without evaluation are skipped, not drawn as zero
            # thinner lines for later methods and sparse markers: lines that coincide stay visible
            ax.plot(x[ok], mean[ok], color=colors[g.method], ls=style, lw=2.4 - 1.4 * k / max(len(groups), 1),
                    marker=marker, markevery=max(1, int(ok.sum()) // 8), ms=4, alpha=0.9,
                    label=_dynamics_label(g, label, len(records)))
            band = ok & ~np.isnan(sd)
            if band.any():
                ax.fill_between(x[band], (mean - sd)[band], (mean + sd)[band], color=colors[g.method], alpha=0.15,
                                lw=0)
    named = f"; reference: {reference.label}" if reference is not None else ""
    ax_acc.set_title(_title(groups, f"target sparsity {sparsity:g}: {metric.short}{named}"), fontsize=10)
    ax_acc.set_ylabel(metric.label)
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
    """Per-layer density (fraction of weights kept) of the final mask, mean over seeds, one bar per group; on
    a log axis at high sparsity, where a linear one hides a 3-fold difference in surviving weights; 'kept
    dense' only on the bars of groups that kept that layer, 'collapsed' where a layer lost every weight."""
    layers: list[str] = []
    for g in groups:
        for r in g.runs:
            layers += [name for name in r.layer_sparsity if name not in layers]  # model order, as saved
    sizes = _layer_sizes(groups)
    styles = _variant_styles(groups)
    target = groups[0].target_sparsity
    log = target >= HIGH_SPARSITY
    floor = 1e-4  # a collapsed layer (density 0) is drawn down to here on the log axis and labelled
    width = 0.8 / max(len(groups), 1)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.9 * len(layers) + 4), 4.6))
    x = np.arange(len(layers))
    for i, g in enumerate(groups):
        kept = kept_dense([g], layers)
        density = [1.0 if name in kept and not any(name in r.layer_sparsity for r in g.runs) else  # not pruned
                   1 - np.mean([r.layer_sparsity[name] for r in g.runs if name in r.layer_sparsity] or [np.nan])
                   for name in layers]
        style = styles[_variant_key(g)][0]
        hatch = {"-": None, "--": "//", ":": "..", "-.": "xx"}[style]  # variants of one method
        at = x - 0.4 + (i + 0.5) * width
        shown = [max(d, floor) if log and not np.isnan(d) else d for d in density]
        ax.bar(at, shown, width, color=colors[g.method], hatch=hatch, edgecolor="white", lw=0.3,
               label=f"{g.label} (n={len(g.runs)})")
        for xi, name, d in zip(at, layers, density):
            if name in kept:
                ax.annotate("kept dense", (xi, floor if log else 0.02), rotation=90, fontsize=6, ha="center",
                            va="bottom", color="white" if d > 0.5 else "0.2")
            elif d <= 0:
                ax.annotate("collapsed", (xi, floor if log else 0.0), rotation=90, fontsize=6, ha="center",
                            va="bottom")
    ax.axhline(1 - target, color="0.4", lw=0.9, ls=":", label=f"global target density {1 - target:.3g} "
               f"(sparsity {target:g})")
    ticks = [f"{name}\n{sizes[name]:,} weights" if name in sizes else name for name in layers]
    ax.set_xticks(x, ticks, rotation=90 if len(layers) > 6 else 0, fontsize=7)
    ax.set_xlabel("prunable layer (weights in the layer)")
    if log:
        ax.set_yscale("log")
        ax.set_ylim(floor, 1.5)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylabel("layer density (fraction of the layer's weights kept, log scale)")
    else:
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("layer density (fraction of the layer's weights kept)")
    ax.set_title(_title(groups, f"target sparsity {target:g}: final mask per layer, mean over seeds"), fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3, which="both" if log else "major")
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
    metric = g.metric
    x, acc, sd = _curve(records, metric.name)
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
                            label=f"{g.label}: mean (n={len(records)})")
    line_sp, = ax_sp.plot([], [], color=color, lw=2, marker="o", ms=3, label="measured sparsity")
    ax_sp.axhline(g.target_sparsity, color="0.4", ls=":", lw=1, label=f"target {g.target_sparsity:g}")
    ax_acc.fill_between([], [], [], color=color, alpha=0.2, label="± 1 SD over seeds")
    ax_acc.set_title(f"{readable(g.model, g.dataset)}, {family_words([g])}\nreference group {g.label} at "
                     f"{g.target_sparsity:g}, {x[-1]:g} epochs", fontsize=9)
    ax_sp.set_title("sparsity grows while it trains", fontsize=9)
    ax_acc.set_xlabel("epoch")
    ax_sp.set_xlabel("epoch")
    for ax in (ax_acc, ax_sp):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.set_ylabel(metric.label)
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
            x, mean, _ = _curve(records, g.metric.name)
            curves.append((g, x, mean))
    fig, ax = plt.subplots(figsize=(8.0, 3.8))  # x GIF_DPI: about 900 px wide
    length = max(len(x) for _, x, _ in curves)
    metric = study_metric(groups)
    off = collapsed([(_interval(g)[0],) * 3 for g, _, _ in curves], metric.higher_is_better, _collapse_floor(metric))
    kept = [m for i, (_, _, m) in enumerate(curves) if i not in off] or [m for _, _, m in curves]
    values = np.concatenate([m[len(m) // 4:][~np.isnan(m[len(m) // 4:])] for m in kept])  # past the first quarter
    ax.set_xlim(0.5, length + 0.5)
    ax.set_ylim(values.min() - 0.5, values.max() + 0.5)
    markers = markers_for({g.method for g in groups})
    lines = []
    for k, (g, x, mean) in enumerate(curves):
        label = _dynamics_label(g, g.label, len(g.runs)) + (" (collapsed: off the axis)" if k in off else "")
        line, = ax.plot([], [], color=colors[g.method], lw=2.4 - 1.4 * k / max(len(curves), 1),
                        marker=markers[g.method], ms=3, label=label)
        lines.append(line)
    metric = study_metric(groups)
    ax.set_title(_title(groups, f"target sparsity {sparsity:g}: {metric.short}, mean over seeds"), fontsize=9)
    ax.set_xlabel("epoch of the cycle (LTH: of its final round)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric.label)
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


HIGH_SPARSITY = 0.9  # from here on layer densities go on a log axis: a linear one hides a 3-fold difference


class Figure(NamedTuple):
    """One figure write_all draws: its kind, file stem, the groups it shows, its sparsity (if one), the
    head-to-head rows a forest plot draws, the reference group it names, and its one-sentence caption."""
    kind: str
    stem: str
    groups: list
    sparsity: float | None
    rows: tuple = ()
    reference: Group | None = None
    caption: str = ""


def reference_group(groups: Sequence[Group], reference: str, sparsity: float,
                    comparisons: Sequence[dict] = ()) -> Group | None:
    """The study's reference group at a sparsity, chosen by protocol, not by sort order: the reference
    method's one-cycle group that most head-to-head rows are compared with, then the one under the common
    protocol (its label is the bare method name), then the one with most seeds."""
    candidates = sorted((g for g in groups if g.method == reference and g.round is None and not is_ablation(g)
                         and g.sparsity_key == round(sparsity, SPARSITY_DECIMALS)), key=Group.sort_key)
    if not candidates:
        return None
    used: dict[str, int] = defaultdict(int)
    for r in comparisons:
        used[r["reference_group"]] += 1
    return max(candidates, key=lambda g: (used[g.id], g.label == reference, len(g.runs)))


def own_variants(ref: Group | None, pruned: Sequence[Group]) -> list[Group]:
    """The reference method's groups that differ from the reference group only in settings of its own (a
    schedule, an update rate): same structure and protocol, one cycle, not an ablation."""
    if ref is None:
        return []
    return [g for g in pruned if g.method == ref.method and g is not ref and g.round is None and not is_ablation(g)
            and g.variant != ref.variant and structure_text(g) == structure_text(ref)
            and not protocol_differences(g, ref)]


def _shown_with(ref: Group | None, pruned: Sequence[Group], reference: str) -> list[Group]:
    """The groups a dynamics figure or animation draws beside the reference group: every other method's, none
    of the reference method's other variants (their own tables compare them)."""
    return ([ref] if ref is not None else []) + [g for g in pruned if g.method != reference]


def _animations(sets: dict[tuple, list], reference: str, comparisons: Sequence[dict],
                metric: Metric) -> list[Figure]:
    """The training and comparison animations of the main set: its reference group at its highest sparsity."""
    figures: list[Figure] = []
    main = _main_set(sets)
    if main is None:
        return []
    members = sets[main]
    one_cycle = [g for g in members if g.round is None and g.method not in DENSE and not is_ablation(g)]
    if not one_cycle:
        return []
    top = max(g.sparsity_key for g in one_cycle)
    at_top = [g for g in one_cycle if g.sparsity_key == top]
    ref = reference_group(members, reference, top, comparisons)
    # the main experiment: the reference group at the highest sparsity, else the group with most seeds
    main_group = ref or min(at_top, key=lambda g: (-len(g.runs), g.sort_key()))
    if not any(run_records(r) for r in main_group.runs):
        return []
    words = family_words([main_group])
    figures.append(Figure("training_animation", "training_animation", [main_group], top, reference=ref,
                          caption=f"The reference group {main_group.label} training at {100 * top:g}% "
                                  f"({words}): {metric.short} and sparsity epoch by epoch."))
    dense = [g for g in members if g.method in DENSE and g.round is None]
    shown = _shown_with(ref, at_top, reference) if ref is not None else at_top
    figures.append(Figure("comparison_animation", "comparison_animation", dense + shown, top, reference=ref,
                          caption=f"Every method at {100 * top:g}% ({family_words(members)}) training epoch "
                                  f"by epoch, {metric.short} mean over seeds, beside {main_group.label}."))
    return figures


def _numbered(out: list[Figure]) -> list[Figure]:
    """The figures, a stem that two sets share in words (another learning rate) numbered from its second."""
    seen: dict[str, int] = defaultdict(int)
    for i, f in enumerate(out):  # two sets with one family in words (another learning rate): numbered
        seen[f.stem] += 1
        if seen[f.stem] > 1:
            out[i] = f._replace(stem=f"{f.stem}-{seen[f.stem]}")
    return out


def plan(groups: Sequence[Group], reference: str = "progressive", comparisons: Sequence[dict] = ()) -> list[Figure]:
    """Every figure write_all draws, in a fixed order, named by its family in words (sparsity, epochs per
    cycle, init); the dynamics figures and animations show the reference group chosen by protocol
    (reference_group); one forest plot per Holm family of the head-to-head rows."""
    out: list[Figure] = []
    sets = _figure_sets(groups)
    metric = study_metric(groups)
    several = len({(g.dataset, g.model) for g in groups}) > 1
    by_id = {g.id: g for g in groups}

    def stem(kind: str, members: Sequence[Group], sparsity: float | None, with_epochs: bool = True) -> str:
        first = members[0]
        return f"{kind}-" + (f"{_safe(first.model)}-" if several else "") + _slug(members, sparsity, with_epochs)

    # a budget's own figures (trade-off, dynamics, layers) where it holds the reference method: a budget run only
    # to match another's cost (equal training FLOPs, LTH's other allocations) is drawn on the frontier plot beside
    # the reference it is measured against (the plan's rows test it), not in three more figures of its own
    compared = {key: members for key, members in sets.items() if any(g.method == reference for g in members)}
    for key, members in (compared or sets).items():
        words = family_words(members)
        if any(g.method not in DENSE for g in members):
            out.append(Figure("tradeoff", stem("tradeoff", members, None), members, None, caption=(
                f"Final {metric.short} (mean and 95% CI over seeds) of every group at each sparsity run, {words}: "
                "points only where a group ran, the dense baseline as a grey band, collapsed groups listed under "
                "the axes.")))
        dense = [g for g in members if g.method in DENSE and g.round is None]
        by_sparsity: dict[float, list] = defaultdict(list)
        for g in members:  # round groups are inside their chain's curves, ablations beside their source's point
            if g.method not in DENSE and g.round is None and not is_ablation(g):
                by_sparsity[g.sparsity_key].append(g)
        for sparsity, pruned in sorted(by_sparsity.items()):
            ref = reference_group(members, reference, sparsity, comparisons)
            shown = _shown_with(ref, pruned, reference)
            named = f"the reference group {ref.label}, " if ref is not None else ""
            out.append(Figure("dynamics", stem("dynamics", members, sparsity), dense + shown, sparsity, reference=ref,
                              caption=f"{metric.short.capitalize()} and measured sparsity per epoch at "
                                      f"{100 * sparsity:g}% ({words}): {named}the dense baseline and every other "
                                      f"method, mean ± 1 SD over seeds."))
            variants = own_variants(ref, pruned)
            if variants:  # the reference under its own settings' variants (a schedule): what its curve owes them
                said = "; ".join(g.label for g in variants)
                out.append(Figure("dynamics", stem("dynamics", members, sparsity) + f"-{_safe(reference)}_variants",
                                  dense + [ref] + variants, sparsity, reference=ref, caption=(
                                      f"{metric.short.capitalize()} and measured sparsity per epoch at "
                                      f"{100 * sparsity:g}% ({words}): the reference group {ref.label} beside its "
                                      f"own variants under the same protocol ({said}) and the dense baseline, mean "
                                      f"± 1 SD over seeds.")))
            if any(r.layer_sparsity for g in pruned for r in g.runs):
                out.append(Figure("layers", stem("layers", members, sparsity), pruned, sparsity, caption=(
                    f"Fraction of each layer's weights kept by the final mask at {100 * sparsity:g}% ({words}), one "
                    "bar per group" + (" on a log axis" if sparsity >= HIGH_SPARSITY else "") + "; 'kept dense' "
                    "marks only the layers that group left unpruned.")))
    families: dict[tuple, list[dict]] = defaultdict(list)  # one forest plot per Holm family
    for r in comparisons:
        ref = by_id.get(r["reference_group"])
        if ref is not None:
            families[(ref.reference_family, round(r["reference_sparsity"], SPARSITY_DECIMALS))].append(r)
    ordered = sorted(families.items(), key=lambda kv: (str(kv[0][0][0]), kv[0][1], -len(kv[1]), str(kv[0][0][1])))
    first_of: dict[tuple, Group] = {}  # per (budget, sparsity): the reference of its largest family
    for ((key, _), sparsity), rows in ordered:
        ref = by_id[rows[0]["reference_group"]]
        base = first_of.setdefault((key, sparsity), ref)
        refs = sorted({by_id[r["reference_group"]].label for r in rows})
        members = [g for g in groups if g.match_key == key]
        tag = "".join(f"-{_safe(w)}" for w in protocol_words(ref, base))  # a reference protocol's own family
        out.append(Figure("forest", stem("forest", members, sparsity) + tag, members, sparsity, tuple(rows), caption=(
            f"Δ {metric.short} = group − {' / '.join(refs)} with Holm-adjusted CIs at {100 * sparsity:g}% "
            f"({family_words(members)}): one Holm family of {rows[0]['family_size']} tests, every row labelled, "
            "collapsed groups written beside their row instead of drawn.")))
    protocols: dict[tuple, list] = defaultdict(list)
    for g in groups:
        protocols[g.protocol_key].append(g)
    for key, members in sorted(protocols.items()):
        for sparsity in sorted({g.sparsity_key for g in members
                                if g.method not in DENSE and g.round is None and not is_ablation(g)}):
            out.append(Figure("frontier", stem("frontier", members, sparsity, with_epochs=False), members, sparsity,
                              caption=(f"Final {metric.short} against training cost at {100 * sparsity:g}% "
                                       f"({family_words(members)}): each point a measured group, an LTH chain's "
                                       "rounds joined by a dotted line, collapsed groups listed under the axes.")))
    out += _animations(sets, reference, comparisons, metric)
    return _numbered(out)


def planned(groups: Sequence[Group], reference: str = "progressive", comparisons: Sequence[dict] = ()) -> list[str]:
    """The file names write_all writes for these groups, without drawing anything."""
    names = []
    for f in plan(groups, reference, comparisons):
        names += [f"{f.stem}.gif"] if f.kind.endswith("animation") else [f"{f.stem}.png", f"{f.stem}.pdf"]
    return names


def captions(groups: Sequence[Group], reference: str = "progressive",
             comparisons: Sequence[dict] = ()) -> dict[str, str]:
    """The one-sentence caption of each figure file the document shows (PNG and GIF), by file name."""
    return {f"{f.stem}.{'gif' if f.kind.endswith('animation') else 'png'}": f.caption
            for f in plan(groups, reference, comparisons)}


def write_all(groups: Sequence[Group], out_dir: Path, reference: str = "progressive",
              comparisons: Sequence[dict] = ()) -> list[Path]:
    """Every figure for these groups (PNG and PDF) and the two animations (GIF) in out_dir; returns
    the written paths, sorted."""
    out_dir.mkdir(parents=True, exist_ok=True)
    colors = method_colors(groups)
    written: list[Path] = []
    for f in plan(groups, reference, comparisons):
        if f.kind == "tradeoff":
            written += plot_tradeoff(f.groups, out_dir / f.stem, colors)
        elif f.kind == "dynamics":
            written += plot_dynamics(f.groups, f.sparsity, out_dir / f.stem, colors, f.reference)
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

def plot_forest(rows: Sequence[dict], groups: Sequence[Group], sparsity: float, stem: Path,
                colors: dict[str, str]) -> list[Path]:
    """One Holm family's comparisons: each row's Δ = group − reference with its Holm-adjusted CI, every row
    labelled; a row far on the worse side (a collapsed group) is written beside its row instead of drawn, so
    it neither sets the scale nor prints over another row."""
    rows = list(rows)
    metric = study_metric(groups)
    references = " / ".join(sorted({r["label_reference"] for r in rows}))
    fig, ax = plt.subplots(figsize=(7.6, 0.42 * len(rows) + 1.9))
    points = [(r["diff"], r["diff"] if is_missing(r["diff_ci_low"]) else r["diff_ci_low"],
               r["diff"] if is_missing(r["diff_ci_high"]) else r["diff_ci_high"]) for r in rows]
    off = collapsed(points, metric.higher_is_better, _collapse_floor(metric))
    d = metric.digits
    for y, i in enumerate(reversed(range(len(rows)))):
        r = rows[i]
        level = "" if is_missing(r["ci_alpha"]) else f"{100 * (1 - r['ci_alpha']):.4g}% CI, "
        text = f"  {r['verdict']} ({level}Holm p {fmt_p(r['primary_p_holm'])})"
        if r.get("cycles") != r.get("cycles_reference") and not is_missing(r.get("cycles")):  # a chain: its budget
            text += (f"; {r['epochs_trained']:g} epochs in {r['cycles']:g} cycles vs {r['epochs_trained_reference']:g}"
                     f" in {r['cycles_reference']:g}")
        if i in off:
            m, lo, hi = points[i]
            text += f"; off the axis: Δ {m:+.{d}f} [{lo:.{d}f}, {hi:.{d}f}]"
        ax.annotate(text, (1.0, y), xycoords=("axes fraction", "data"), fontsize=7, va="center")
        if i in off:
            continue
        m, lo, hi = points[i]
        style = method_style(r["method"])
        ax.errorbar([m], [y], xerr=[[m - lo], [hi - m]], fmt=style[1], capsize=3,
                    color=colors.get(r["method"], style[0]), ms=5)
    ax.axvline(0.0, color="0.3", lw=1)
    limits = axis_limits(points + [(0.0, 0.0, 0.0)], off)
    if limits:
        ax.set_xlim(*limits)
        for y, i in enumerate(reversed(range(len(rows)))):  # an interval the axis cuts says so, with its ends
            m, lo, hi = points[i]
            if i not in off and (lo < limits[0] or hi > limits[1]):
                ax.annotate(f"CI [{lo:.{d}f}, {hi:.{d}f}] runs off the axis", (0.5, y + 0.28),
                            xycoords=("axes fraction", "data"), fontsize=6, ha="center", color="0.3")
    ax.set_yticks(range(len(rows)), [r["label"] for r in reversed(rows)], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    better = "right" if metric.higher_is_better else "left"
    ax.set_xlabel(f"Δ {metric.short} = group − {references} ({metric.unit}; better to the {better}), "
                  "Holm-adjusted CI")
    ax.set_title(_title([g for g in groups if g.id in {r["reference_group"] for r in rows}] or groups,
                        f"target sparsity {sparsity:g}: each group against {references}\n"
                        f"({rows[0]['primary_test']}, one Holm family, m={rows[0]['family_size']})"), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, stem)


# --- the accuracy-cost frontier ----------------------------------------------------------------------

def _cost_axis(ax) -> None:
    """A log axis of training cost whose ticks say their values ('0.1x', '1x', '4x')."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _interval(g: Group) -> tuple[float, float, float]:
    """(mean, CI low, CI high) of a group's final metric; the mean for both ends with fewer than 2 seeds."""
    s = stats.summarize(g.values)
    lo = s.mean if math.isnan(s.ci_low) else s.ci_low
    hi = s.mean if math.isnan(s.ci_high) else s.ci_high
    return s.mean, lo, hi


def plot_frontier(groups: Sequence[Group], sparsity: float, stem: Path, colors: dict[str, str]) -> list[Path]:
    """The final metric (mean, 95% CI) against training cost relative to one dense cycle (log axis) at one
    sparsity: one point per measured group (its epochs per cycle beside it; no line between budgets that were
    not run between), an LTH chain's rounds up to this sparsity joined by a dotted line (sparsity grows along
    it), dense at its cost; collapsed groups in a note under the axes."""
    metric = study_metric(groups)
    fig, ax = plt.subplots(figsize=(8.4, 4.8))
    at = [g for g in groups if g.method not in DENSE and not is_ablation(g) and stands_for(g, sparsity, groups)
          and not math.isnan(g.cost)]
    styles = _variant_styles(at)
    items: list[tuple[str, float, float, float, float, str, str, str]] = []  # label, x, mean, lo, hi, colour, marker, kind
    for g in sorted(at, key=lambda g: (_variant_key(g), g.cost)):
        m, lo, hi = _interval(g)
        _, marker, _ = styles[_variant_key(g)]
        items.append((g.label, g.cost, m, lo, hi, colors.get(g.method, method_style(g.method)[0]), marker, "point"))
    for d in (g for g in groups if g.method in DENSE and g.round is None and not math.isnan(g.cost)):
        m, lo, hi = _interval(d)
        color, marker = method_style(d.method)
        items.append((d.label, d.cost, m, lo, hi, color, marker, "dense"))
    ablations = [a for a in groups if is_ablation(a) and ablation_source(a, groups) in at and not math.isnan(a.cost)]
    for a in ablations:  # at their own cost (one cycle of the source's mask), in the source's colour
        m, lo, hi = _interval(a)
        items.append((a.label, a.cost, m, lo, hi, method_style(ablation_source(a, groups).method)[0], a.method,
                      "ablation"))
    off = collapsed([(m, lo, hi) for _, _, m, lo, hi, _, _, _ in items], metric.higher_is_better,
                    _collapse_floor(metric))
    notes = []
    for i, (label, x, m, lo, hi, color, marker, kind) in enumerate(items):
        if i in off:
            notes.append(f"{label}: {m:.{metric.digits}f} [{lo:.{metric.digits}f}, {hi:.{metric.digits}f}] at "
                         f"{x:.3g}x")
        elif kind == "ablation":
            _hollow(ax, x, m, lo, hi, marker, color)
        else:
            ax.errorbar([x], [m], yerr=[[m - lo], [hi - m]], color=color, marker=marker, ms=5, capsize=3, ls="none")
    for variant, (style, marker, label) in styles.items():
        members = [g for g in at if _variant_key(g) == variant]
        budgets = ", ".join(sorted({g.budget_label for g in members}))
        ax.errorbar([], [], color=colors.get(members[0].method, method_style(members[0].method)[0]), marker=marker,
                    ls="none", ms=5, label=f"{label} ({budgets})")
    for d in (g for g in groups if g.method in DENSE and g.round is None and not math.isnan(g.cost)):
        color, marker = method_style(d.method)
        ax.errorbar([], [], color=color, marker=marker, ls="none", ms=5, label=f"{d.label} (no pruning, {d.budget_label})")
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
        ax.plot([h.cost for h in rounds], means, color=color, ls=":", lw=1, alpha=0.8, marker=".", ms=3,
                label=f"{variant_label(chain)} rounds, {chain.budget_label} (sparsity grows along the line)")
    limits = axis_limits([(m, lo, hi) for _, _, m, lo, hi, _, _, _ in items], off)
    if limits:
        ax.set_ylim(*limits)
    _ablation_legend(ax, ablations)
    _cost_axis(ax)
    ax.set_xlabel(f"training cost in {_cost_unit(groups)} (training FLOPs, log scale; sparse kernels assumed)")
    ax.set_ylabel(f"final {metric.label}")
    ax.set_title(_title(groups, f"target sparsity {sparsity:g}: {metric.short} (mean, 95% CI) against training "
                                "cost, every budget run"), fontsize=9)
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:  # every group may be off the axis (collapsed, or no metrics)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="group (budget per cycle)",
                  title_fontsize=7)
    _note_below(fig, ax, notes, "collapsed or broken, off the axis (mean [95% CI] at cost):")
    return _save(fig, stem)
