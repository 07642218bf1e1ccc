"""SET, Sparse Evolutionary Training (Mocanu, Mocanu, Stone, Nguyen, Gibescu & Liotta, Nature
Communications 2018): dynamic sparse training at a fixed sparsity. Start from a random mask at the
target (per-layer densities from `prune.distribution`, ERK by default, which for Linear layers is
the paper's Erdos-Renyi density epsilon (n_in + n_out) / (n_in n_out)); at the end of every epoch
but the last (or, with `set.update_every` N, which a step budget needs, every N optimizer steps but
after the last), in each layer drop the k = floor(zeta * n) live weights of smallest |w| and regrow k
of the others uniformly at random, zeta = `set.drop_fraction` (0.3, the paper's value).

The random stream of each regrowth is a generator seeded from (run seed, round, epoch): the same on
every rank, and a resumed run draws exactly what the uninterrupted one drew, with nothing to
checkpoint.

The reference is the authors' code (dcmocanu/sparse-evolutionary-artificial-neural-networks,
`rewireMask` in SET-MLP-Keras-Weights-Mask/set_mlp_keras_cifar10.py) and the SET baseline of
google-research/rigl (`SparseSETOptimizer`). Differences:
- The authors' code removes the fraction zeta of the negative weights closest to zero and, apart,
  of the positive ones (two quantiles of the sorted weights); here the floor(zeta * n) live weights
  of smallest |w| (as the RigL code's SET), so the count is exact and the same rule as RigL's drop.
- Its initial mask draws each connection independently (Bernoulli at the Erdos-Renyi density), so
  the layer's count varies; here the count is exact (`prune.distribution`, largest remainder).
- It regrows by rejection sampling with numpy's global stream; here a top-k of seeded uniform
  scores over the candidates: the same distribution (a uniformly random subset), reproducible.
  In both a just-dropped weight may be regrown.
- Its new weights start at 0 (the Keras version multiplies the weights by the kept mask) and it
  rebuilds the optimizer every epoch (all momentum lost); here grown and dropped weights start at 0
  with their own optimizer state zeroed, the other weights keep theirs.
- It rewires after every epoch, the last one included; here not after the last, so that every live
  weight of the final model has been trained.
- Its output layer is dense by construction; here `prune.keep_last_dense` decides.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor

from baselines.rigl import drop_and_grow, regrowth_groups, start_scores
from suite.errors import ConfigError
from suite.masks import Mask, Scores
from suite.methods import Context, Prune, PruningMethod


def regrowth_seed(seed: int, round_index: int, epoch: int | str) -> int:
    """The seed of the regrowth after `epoch` of `round_index` (or "step-<n>" under set.update_every):
    a pure function of the run's seed,
    so every rank and every resume draws the same stream (and not the init's stream)."""
    return int.from_bytes(hashlib.sha256(f"set-regrowth/{seed}/{round_index}/{epoch}".encode()).digest()[:8], "little")


def set_update(weights: dict[str, Tensor], mask: Mask, drop_fraction: float, generator: torch.Generator,
               nm: tuple[int, int] | None = None) -> Mask:
    """One SET rewiring: per layer drop floor(drop_fraction * n_live) live weights of smallest |w|
    and regrow as many of the others uniformly at random (a just-dropped one may come back).

    The random scores are drawn on the CPU from `generator`, one tensor per layer in the mask's
    order, so the result depends only on the generator's state, not on the device."""
    scores = {name: torch.rand(m.shape, generator=generator) for name, m in mask.items()}
    return drop_and_grow(weights, scores, mask, drop_fraction, nm)


@dataclass(frozen=True)
class SetSettings:
    drop_fraction: float = 0.3    # zeta: fraction of each layer's live weights rewired per update (paper: 0.3)
    update_every: int = 0         # 0: rewire at each epoch end (paper); N: every N optimizer steps (needed under train.steps)

    def validate(self, cfg) -> None:
        if not 0 < self.drop_fraction < 1:
            raise ConfigError(f"set.drop_fraction: must be in (0, 1), got {self.drop_fraction}")
        if self.update_every < 0:
            raise ConfigError(f"set.update_every: must be non-negative, got {self.update_every}")


class SparseEvolutionary(PruningMethod):
    """Dynamic sparse training: magnitude drop, uniformly random regrowth, at each epoch's end."""
    name = "set"
    settings = SetSettings
    config_keys = ("prune.target_sparsity", "prune.keep_", "prune.distribution")
    defaults = {"prune.distribution": "erk"}
    regrows = True
    # N:M: drop and regrow within each group (`drop_and_grow`); whole channels are not implemented
    structures = ("unstructured", "nm")

    def start_round(self, round_index: int, ctx: Context, mask: Mask) -> Prune:
        return Prune(self.cfg.prune.target_sparsity)

    def scores(self, ctx: Context, mask: Mask) -> Scores:
        return start_scores(self.cfg, ctx)

    def step_interval(self) -> int:
        return self.cfg.set.update_every

    def check_budget(self) -> None:
        every, steps = self.cfg.set.update_every, self.budget.steps
        if self.cfg.train.steps and not every:
            # a step budget may hold fewer epoch ends than the rewirings SET needs (or none at all)
            raise ConfigError(f"set.update_every: under train.steps SET rewires every N optimizer steps; set "
                              f"set.update_every (e.g. {self.budget.steps_per_epoch}, the steps of one epoch)")
        if every >= steps:  # rewirings at k * update_every, before the last step
            raise ConfigError(f"set.update_every: {every} steps leaves no rewiring before the last of the {steps} "
                              f"steps: SET would train its random start mask unchanged; set it below {steps}")
        if not every and self.budget.epochs_started < 2:  # at each epoch end but the last
            raise ConfigError(f"train.epochs: SET rewires at each epoch end but the last, so "
                              f"{self.budget.epochs_started} epoch holds no rewiring and SET would train its "
                              f"random start mask unchanged; train 2 or more, or set set.update_every (steps)")

    def _rewire(self, round_index: int, seed: int, ctx: Context, mask: Mask) -> Mask:
        generator = torch.Generator().manual_seed(seed)
        return set_update(ctx.weights, mask, self.cfg.set.drop_fraction, generator, regrowth_groups(self.cfg.prune))

    def end_epoch(self, round_index: int, epoch: int, ctx: Context, mask: Mask) -> Mask | None:
        if self.cfg.set.update_every or epoch >= ctx.epochs:
            return None  # not after the last epoch: every live weight of the final model is trained
        return self._rewire(round_index, regrowth_seed(self.cfg.seed, round_index, epoch), ctx, mask)

    def after_step(self, round_index: int, t_epochs: float, ctx: Context, mask: Mask) -> Mask | None:
        step = round(t_epochs * self.budget.steps_per_epoch)  # the round's optimizer steps so far
        if step >= self.budget.steps:
            return None  # not after the last step
        return self._rewire(round_index, regrowth_seed(self.cfg.seed, round_index, f"step-{step}"), ctx, mask)
