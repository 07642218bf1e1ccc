"""One short human name per group, used by every table, headline line, figure and export of a study.

A label is the method plus what differs from the study's common protocol, in brackets: `progressive [2:4]`,
`lth [rate 0.43]`, `rigl [erk]`, `snip [pytorch init, 160 ep]`, `shuffle of lth [round 7]`. The common
protocol is what most results of the same data and model ran (most seeds win; ties go to the first in sorted
order): the structure, layer distribution, layers kept dense, init, epochs per cycle and any other setting;
a method's own settings (lth.rate, prune.t_end, ...) are compared with the most common among that method's
groups of the same budget. Labels are unique at one sparsity of one data set and model (`duplicates` finds
any that are not, and a test fails on them).
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

from suite.config import dotted_value
from suite.method_facts import default_tree
from suite.report.fmt import value_text
from suite.report.load import DENSE, IDENTITY_KEYS, METHOD_SECTIONS, Group

ABLATION_PREFIX = "ablate."
# settings that the protocol features below already say in words, or that identify the row elsewhere
_SHOWN_APART = ("prune.structure", "prune.nm", "prune.distribution", "prune.keep_first_dense",
                "prune.keep_last_dense", "model.init", "train.epochs")


def _structure(g: Group) -> str | None:
    science = g.first.science
    kind = science.get("prune.structure")
    if kind is None or kind == "unstructured":
        return None
    return ":".join(map(str, science.get("prune.nm", [2, 4]))) if kind == "nm" else str(kind)


def _dense(g: Group) -> str | None:
    layers = g.protocol("dense_layers")
    if not layers:
        return None
    return ", ".join(name.removesuffix(".weight") for name in layers) + " kept dense"


def _short_key(key: str) -> str:
    return key.split(".", 1)[1].replace("_", " ") if "." in key else key


def _protocol(g: Group) -> dict[str, str | None]:
    """The study-wide protocol features of a group, in the order a label names them."""
    pruned = g.method not in DENSE
    epochs = g.first.science.get("train.epochs")
    return {"structure": _structure(g) if pruned else None,
            "distribution": g.protocol("distribution") if pruned else None,
            "dense": _dense(g) if pruned else None,
            "init": g.protocol("init"),
            "epochs": None if epochs is None else f"{value_text(epochs)} ep"}


def protocol_words(g: Group, base: Group) -> list[str]:
    """g's structure, layer distribution and layers kept dense in words, each where it differs from base's:
    what sets a family of the headline apart beyond its budget and init ('fc3 kept dense')."""
    mine, other = _protocol(g), _protocol(base)
    return [str(mine[n]) for n in ("structure", "distribution", "dense") if mine[n] is not None and mine[n] != other[n]]


def _other(g: Group) -> dict[str, str]:
    """Settings other than the protocol features and the method's own: train.lr, data.val_size, ..."""
    return {k: value_text(v) for k, v in g.first.science.items()
            if k not in IDENTITY_KEYS and k not in _SHOWN_APART and not k.startswith(METHOD_SECTIONS)
            and not k.startswith(ABLATION_PREFIX)}


def _own(g: Group) -> dict[str, str]:
    """The method's own settings (its registry sections), the protocol features apart."""
    return {k: value_text(v) for k, v in g.first.science.items()
            if k.startswith(METHOD_SECTIONS) and k not in _SHOWN_APART and k != "prune.target_sparsity"}


def _mode(values: Sequence[tuple[object, int]]) -> object:
    """The value with most seeds; of equals, the setting's default (None: not set), then the first in order."""
    counts: Counter = Counter()
    for value, weight in values:
        counts[value] += weight
    order = sorted(map(str, counts))
    return max(counts, key=lambda v: (counts[v], v is None, -order.index(str(v)))) if counts else None


def common_protocol(groups: Sequence[Group]) -> dict[str, object]:
    """The most common value of each protocol feature and other setting over these groups (by seeds)."""
    runs = [g for g in groups if g.round is None]
    out: dict[str, object] = {}
    for name in ("structure", "distribution", "dense", "init", "epochs"):
        at = [g for g in runs if g.method not in DENSE] if name in ("structure", "distribution", "dense") else runs
        out[name] = _mode([(_protocol(g)[name], len(g.runs)) for g in at])
    keys = sorted({k for g in runs for k in _other(g)})
    for key in keys:
        out[key] = _mode([(_other(g).get(key), len(g.runs)) for g in runs])
    return out


def _words(name: str, value: object) -> str:
    if name == "init":
        return f"{value} init"
    return str(value)


def study_labels(groups: Sequence[Group]) -> dict[str, str]:
    """The label of every group (by group id): method plus what differs from the common protocol."""
    by_study: dict[tuple, list[Group]] = {}
    for g in groups:
        by_study.setdefault((g.dataset, g.model), []).append(g)
    labels: dict[str, str] = {}
    for members in by_study.values():
        common = common_protocol(members)
        own_common: dict[tuple, dict[str, object]] = {}
        for g in members:
            key = (g.method, g.first.science.get("train.epochs"))
            if key not in own_common:
                same = [h for h in members if h.round is None and (h.method, h.first.science.get("train.epochs")) == key]
                names = sorted({k for h in same for k in _own(h)})
                own_common[key] = {k: _mode([(_own(h).get(k), len(h.runs)) for h in same]) for k in names}
        base: dict[str, str] = {}
        for g in members:
            if g.first.science.get("ablate.source_experiment") is not None:
                continue
            parts = [_words(name, value) for name, value in _protocol(g).items()
                     if value is not None and value != common.get(name)]
            parts += [f"{_short_key(k)} {v}" for k, v in _other(g).items() if v != common.get(k)]
            mine = _own(g)
            for k, v in own_common[(g.method, g.first.science.get("train.epochs"))].items():
                if mine.get(k) != v:  # a setting left at its default is not in the results: say the default
                    parts.append(f"{_short_key(k)} {mine[k] if k in mine else _default_text(k)}")
            base[g.id] = _join(g.method, parts)
        for g in members:
            if g.id in base:
                labels[g.id] = _join(g.method, _inside(base[g.id]) + ([f"round {g.round}"] if g.round is not None else []))
        for g in members:
            if g.id not in base:
                labels[g.id] = _ablation_label(g, members, labels)
        _disambiguate(members, labels)
    return labels


def _inside(label: str) -> list[str]:
    return label[label.index("[") + 1:-1].split(", ") if label.endswith("]") else []


def _join(method: str, parts: Sequence[str]) -> str:
    return f"{method} [{', '.join(parts)}]" if parts else method


def _default_text(key: str) -> str:
    """A setting's default as a label says it (a setting at its default is not in a result's science)."""
    try:
        value = dotted_value(default_tree(), key)
    except KeyError:
        return "default"
    return "default" if value is None else value_text(value)


def _ablation_label(g: Group, members: Sequence[Group], labels: dict[str, str]) -> str:
    """'shuffle of lth [round 7]': the ablation kind and its source's label."""
    science = g.first.science
    experiment, at = science["ablate.source_experiment"], science.get("ablate.source_round")
    for s in members:
        if s.experiment == experiment and s.id in labels:
            chain_end = s.first.result_round if s.round is None else s.round
            if at is None or int(at) == (chain_end or 0):
                return f"{g.method} of {labels[s.id]}"
    method = science.get("ablate.source_method", "?")
    return f"{g.method} of {method}" + (f" [round {at}]" if at is not None else "")


def _disambiguate(members: Sequence[Group], labels: dict[str, str]) -> None:
    """Labels shared at one sparsity get the settings that tell their groups apart (an LTH chain's own
    target for its rounds, then any differing setting, then the experiment hash): never two rows alike."""
    for clash in duplicates(members, labels).values():
        science = [dict(g.first.science) for g in clash]
        keys = sorted({k for s in science for k in s if len({value_text(t.get(k)) for t in science}) > 1})
        for g, s in zip(clash, science):
            extra = [f"{_short_key(k)} {value_text(s.get(k))}" for k in keys] or [g.experiment[:7]]
            if g.round is not None and "prune.target_sparsity" in keys:
                extra = [f"chain to {s['prune.target_sparsity']:g}"]
            labels[g.id] = _join(g.method, _inside(labels[g.id]) + extra) if not labels[g.id].startswith(
                tuple(f"{k} of " for k in ("shuffle", "reinit", "invert"))) else f"{labels[g.id]} ({', '.join(extra)})"


def duplicates(groups: Sequence[Group], labels: dict[str, str]) -> dict[tuple, list[Group]]:
    """Groups sharing a label at one data set, model and sparsity: (data, model, sparsity, label) -> groups."""
    seen: dict[tuple, list[Group]] = {}
    for g in groups:
        seen.setdefault((g.dataset, g.model, g.sparsity_key, labels[g.id]), []).append(g)
    return {k: v for k, v in seen.items() if len(v) > 1}


def family_text(budget: str | None, init: object, sparsity: float | None = None) -> str:
    """The family a headline line or figure belongs to, in words: '98%, 20 ep/cycle, kaiming_normal init'
    (budget: a group's budget_label)."""
    parts = [] if sparsity is None else [f"{100 * sparsity:g}%"]
    parts += [budget if budget and budget != "–" else "budget unknown"]
    parts += [f"{init} init" if init is not None else "init not recorded"]
    return ", ".join(parts)
