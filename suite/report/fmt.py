"""How the report writes values for people: numbers, p-values, intervals, sparsities, names.

The bottom of the report package: imports nothing from it.
"""
from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np

from suite import stats

MISSING = "–"


def duration_text(seconds: float) -> str:
    """`2 h 05 min 09 s`, or `5 min 09 s` under an hour."""
    minutes, s = divmod(int(round(seconds)), 60)
    h, m = divmod(minutes, 60)
    return f"{h} h {m:02d} min {s:02d} s" if h else f"{m} min {s:02d} s"


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt(v: Any, digits: int = 2, signed: bool = False) -> str:
    if is_missing(v):
        return MISSING
    text = f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"
    return f"{0.0:.{digits}f}" if float(text) == 0 else text  # never '-0.00' (nor '+0.00': no sign to show)


def fmt_p(p: Any) -> str:
    if is_missing(p):
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_is(p: Any) -> str:
    """'= 0.012' or '< 0.001': a p-value after its name in a sentence ('Holm p < 0.001', never 'p = <0.001')."""
    text = fmt_p(p)
    return f"< {text[1:]}" if text.startswith("<") else f"= {text}"


def fmt_ci(lo: Any, hi: Any, digits: int = 2) -> str:
    if is_missing(lo) or is_missing(hi):
        return MISSING
    return f"[{fmt(lo, digits)}, {fmt(hi, digits)}]"


def fmt_sparsity(s: Any) -> str:
    return MISSING if is_missing(s) else f"{s:.4f}"


def mean(values: Sequence[float]) -> float:
    """The mean, NaN when there are no values or any is NaN (a field some results lack)."""
    x = np.asarray(values, dtype=float)
    return float(x.mean()) if x.size and not np.isnan(x).any() else stats.NAN


def fmt_epochs(e: Any) -> str:
    return MISSING if is_missing(e) else f"{e:g}"


def fmt_flops(x: Any) -> str:
    return MISSING if is_missing(x) else f"{x:.3g}x"


def value_text(value: Any) -> str:
    """A setting's value as text: lists and mappings as sorted JSON, anything else as str()."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else str(value)


MODEL_NAMES = {"lenet300": "LeNet-300-100", "resnet18": "ResNet-18", "vgg_like": "VGG-like", "vgg19": "VGG-19",
               "tiny_mlp": "tiny MLP", "tiny_cnn": "tiny CNN", "gpt_char": "character GPT"}
DATA_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "mnist1d": "MNIST-1D", "synthetic": "synthetic data",
              "shakespeare_char": "Tiny Shakespeare", "synthetic_text": "synthetic text"}


def readable(model: str, dataset: str) -> str:
    """'LeNet-300-100 on MNIST' for ('lenet300', 'mnist'); unknown names as they are."""
    return f"{MODEL_NAMES.get(model, model)} on {DATA_NAMES.get(dataset, dataset)}"

