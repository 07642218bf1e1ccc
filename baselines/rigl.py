"""RigL, "Rigging the Lottery" (Evci, Gale, Menick, Castro & Elsen, ICML 2020): dynamic sparse
training at a fixed sparsity. Start from a random mask at the target (per-layer densities from
`prune.distribution`, ERK by default); every `rigl.update_every` optimizer steps until
`rigl.t_end` of training, in each layer drop the k = floor(alpha_t * n) live weights of smallest
|w| and grow the k dead ones of largest |dense gradient|, alpha_t = (alpha / 2)(1 + cos(pi t / t_end)).
Grown weights start at exactly 0 with zeroed optimizer state (the trainer zeroes every position
whose mask changed); the sparsity never changes, only which weights live.

The reference is the official code (google-research/rigl: rigl/sparse_optimizers.py
`SparseRigLOptimizer`, `SparseSETOptimizer._get_update_op`). Differences:
- On an update step the official optimizer updates the mask instead of the weights (the gradient
  step is skipped); here the step is taken under the old mask and the new one is installed right
  after it (grown weights then start at exactly 0 with zero momentum, as in the official code).
- It adds N(0, 1e-5^2) noise to the drop scores |w| to break ties at random; here ties are broken
  by position (the earliest positions survive and are grown first), so the mask is a pure function
  of weights and gradients, the same on every rank without a shared random stream.
- Its cosine decay is evaluated at the global step over (end_step - begin_step) steps; here at
  the fraction t of training over t_end, updates starting at step `rigl.update_every` (so the two
  agree for begin_step 0).
- Its drop scores cover the dead positions too (|0| + noise), so a dead position whose noise exceeds
  a live weight's magnitude can take that weight's place among the survivors; here only live
  weights are ranked for dropping.
- Its ImageNet script leaves the first layer dense by default (`first_layer_sparsity` 0: "not
  pruned or masked"); here `prune.keep_first_dense` decides (default False).
- `initial_acc_scale` (momentum of grown weights set to a multiple of their gradient) is 0 in the
  paper's runs; here it is always 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from baselines.random import random_scores
from suite.errors import ConfigError
from suite.masks import Mask, Scores, keep_top, nm_layers, rows_of, top_n_per_group
from suite.methods import Context, Prune, PruningMethod


def drop_count(n_alive: int, drop_fraction: float) -> int:
    """k = floor(drop_fraction * n_alive), as the official int() cast."""
    return math.floor(drop_fraction * n_alive)


def drop_and_grow(weights: dict[str, Tensor], grow_scores: dict[str, Tensor], mask: Mask,
                  drop_fraction: float, nm: tuple[int, int] | None = None) -> Mask:
    """Per layer with n live weights: keep the n - k live ones of largest |w| and add the k
    positions of highest `grow_scores` among all the others (the dead and the just dropped), with
    k = floor(drop_fraction * n). Each layer keeps its live count exactly. Ties by position: among
    equal |w| the earliest survive, among equal grow scores the earliest grow (`keep_top`'s rule).
    NaN grow scores rank lowest among the candidates. On the mask's device; `mask` is not edited.

    `nm` = (N, M), for an N:M mask (`prune.structure: nm`): in the layers with the pattern
    (`suite.masks.nm_layers`) the drop is the same, and each group of M grows back exactly what it
    lost, its highest grow scores among its other positions, so every group keeps exactly N alive
    (and the layer its count)."""
    if not 0 <= drop_fraction <= 1:
        raise ValueError(f"drop_fraction: must be in [0, 1], got {drop_fraction}")
    out: Mask = {}
    for name, alive in mask.items():
        alive = alive.bool()
        n = int(torch.count_nonzero(alive))
        k = drop_count(n, drop_fraction)
        if k == 0:
            out[name] = alive.clone()
            continue
        magnitude = weights[name].detach().abs().to(alive.device)
        survivors = keep_top({name: magnitude}, n - k, alive={name: alive})[name] & alive
        grow = grow_scores[name].detach().to(alive.device).float()
        grow = grow.nan_to_num(nan=torch.finfo(torch.float32).min)  # below every real score, above the -inf of a survivor
        if nm is not None and name in nm_layers({name: alive.shape}, nm[1]):
            ranked = rows_of(grow.masked_fill(survivors, torch.inf))  # survivors first, then the best to grow
            kept = top_n_per_group(ranked.reshape(ranked.shape[0], -1, nm[1]), nm[0], nm[1])
            out[name] = kept.reshape(alive.shape)
            continue
        grown = keep_top({name: grow}, k, alive={name: ~survivors})[name] & ~survivors
        out[name] = survivors | grown
    return out


def rigl_update(weights: dict[str, Tensor], grads: dict[str, Tensor], mask: Mask, drop_fraction: float,
                nm: tuple[int, int] | None = None) -> Mask:
    """One RigL mask update: per layer drop floor(drop_fraction * n_live) live weights of smallest
    |w| and grow as many of the others with the largest |dense gradient| (`drop_and_grow`).

    `grads` are the dense gradients (not masked: the pruned weights' too), averaged over ranks
    as DDP leaves them, so every rank computes the same mask."""
    return drop_and_grow(weights, {n: g.abs() for n, g in grads.items()}, mask, drop_fraction, nm)


def regrowth_groups(prune) -> tuple[int, int] | None:
    """The [N, M] groups a drop-and-grow update must keep (prune.structure nm), else None."""
    return tuple(prune.nm) if prune.structure == "nm" else None


def cosine_drop_fraction(alpha: float, t: float, t_end: float) -> float:
    """alpha_t = (alpha / 2)(1 + cos(pi t / t_end)) for t in [0, t_end], 0 after (fractions of training)."""
    if t > t_end or t_end <= 0:
        return 0.0
    return alpha / 2 * (1 + math.cos(math.pi * t / t_end))


def start_scores(cfg, ctx: Context) -> Scores:
    """The `random` method's scores: where RigL and SET start (their `Prune` at the target, under
    `prune.distribution`, before the first round)."""
    return random_scores({n: w.shape for n, w in ctx.weights.items()}, cfg.seed)


@dataclass(frozen=True)
class RiglSettings:
    update_every: int = 100       # optimizer steps between mask updates (paper: 100)
    t_end: float = 0.75           # fraction of training after which the mask stays fixed (paper: 0.75)
    drop_fraction: float = 0.3    # alpha: fraction of each layer's live weights exchanged, cosine-decayed

    def validate(self, cfg) -> None:
        if self.update_every < 1:
            raise ConfigError(f"rigl.update_every: must be at least 1, got {self.update_every}")
        if not 0 < self.t_end <= 1:
            raise ConfigError(f"rigl.t_end: must be a fraction of training in (0, 1], got {self.t_end}")
        if not 0 < self.drop_fraction < 1:
            raise ConfigError(f"rigl.drop_fraction: must be in (0, 1), got {self.drop_fraction}")


class RigL(PruningMethod):
    """Dynamic sparse training: magnitude drop, dense-gradient growth, at a fixed sparsity."""
    name = "rigl"
    settings = RiglSettings
    config_keys = ("prune.target_sparsity", "prune.keep_", "prune.distribution")
    defaults = {"prune.distribution": "erk"}
    regrows = True
    dense_grads = True
    # N:M: drop and grow within each group (`drop_and_grow`); whole channels are not implemented
    structures = ("unstructured", "nm")

    def step_interval(self) -> int:
        return self.cfg.rigl.update_every

    def check_budget(self) -> None:
        r, steps = self.cfg.rigl, self.budget.steps
        if r.update_every >= r.t_end * steps:  # updates at k * update_every, while before t_end
            raise ConfigError(f"rigl.update_every: {r.update_every} steps leaves no mask update before rigl.t_end "
                              f"(step {r.t_end * steps:g} of the {steps}-step budget): RigL would train its random "
                              f"start mask unchanged; set it below {r.t_end * steps:g}")

    def start_round(self, round_index: int, ctx: Context, mask: Mask) -> Prune:
        return Prune(self.cfg.prune.target_sparsity)

    def scores(self, ctx: Context, mask: Mask) -> Scores:
        return start_scores(self.cfg, ctx)

    def after_backward(self, round_index: int, t_epochs: float, ctx: Context, mask: Mask,
                       grads: dict[str, Tensor]) -> Mask | None:
        alpha = cosine_drop_fraction(self.cfg.rigl.drop_fraction, t_epochs / self.budget.epochs,
                                     self.cfg.rigl.t_end)
        if alpha <= 0:
            return None  # past t_end: the mask stays as it is
        return rigl_update(ctx.weights, grads, mask, alpha, regrowth_groups(self.cfg.prune))
