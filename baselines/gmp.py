"""GMP, gradual magnitude pruning as Zhu & Gupta run it ("To prune, or not to prune", arXiv:1710.01878,
2017; tensorflow/contrib/model_pruning): `progressive` with their settings as defaults. Every
`prune.update_every_steps` optimizer steps each layer is cut to the sparsity of the cubic schedule
s_t = s_f + (s_i - s_f)(1 - (t - t_0) / (t_end - t_0))^3 by its own magnitude threshold
(`prune.distribution: uniform`, every layer at the same sparsity).

What differs from `progressive` (the suite's method): progressive raises the sparsity linearly, once
per epoch by default, with one global magnitude threshold over all layers, so layers end at different
sparsities (the wide ones more pruned); GMP raises it on the cubic curve (fast at first, slowly near
the target), every 100 steps, each layer to the same sparsity. Every key can still be set: `gmp` with
`prune.schedule=linear prune.distribution=global prune.update_every_steps=0` is `progressive`.

Differences from the TensorFlow implementation: it estimates each layer's threshold from a 256-bin
histogram and smooths it over updates (`threshold_decay` 0.9), so a layer's sparsity only approaches
the schedule's, and it recomputes the mask from the raw weights, whose pruned values it keeps (they
get no gradient); here each layer has exactly the schedule's zero count at each update, pruned
weights are exactly 0 and masks only lose weights. Its `pruning_frequency` default is 10 steps; 100
here is the order of the paper's update intervals (recalled, not re-checked against the paper).
"""
from __future__ import annotations

from suite.progressive import Progressive


class GradualMagnitude(Progressive):
    """`progressive` with Zhu & Gupta's cubic schedule, per-layer sparsity and step-wise updates."""
    name = "gmp"
    defaults = {"prune.schedule": "cubic", "prune.distribution": "uniform", "prune.update_every_steps": 100}
