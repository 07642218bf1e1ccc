"""Lottery tickets by iterative magnitude pruning (Frankle & Carbin, ICLR 2019), with late rewinding
(Frankle et al., ICML 2020): train, remove a fraction p of the remaining weights by one global
magnitude threshold, rewind the survivors to their values after epoch k (or step k) of the first
cycle, retrain from there for the rest of the cycle.

The runner owns the rounds, the rewinding (weights and BatchNorm state, saved during round 0), the
fresh optimizer (Frankle et al. rewind the weights only) and the LR schedule restarted at step k, and
keeps the rewinding weights in the run folder (rewind.safetensors); this class only says how many rounds,
which epoch to rewind to and which weights survive each round.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from suite.masks import Mask, Scores, magnitude_scores
from suite.errors import ConfigError
from suite.methods import Context, Prune, PruningMethod

if TYPE_CHECKING:
    from suite.experiment import Config


def _exact(x: float) -> Fraction:
    """The decimal the user wrote (0.2 -> 1/5), not the binary float nearest to it: 1 - 0.8**3
    is 0.4879999999999999 in floats, which would add a round to a 0.488 target."""
    return Fraction(repr(x))


def lth_levels(rate: float, target: float) -> int:
    """Pruning steps needed: the smallest L with 1 - (1 - rate)^L >= target, in exact arithmetic."""
    if not 0 < rate < 1:
        raise ValueError(f"rate: must be in (0, 1), got {rate}")
    if not 0 <= target < 1:
        raise ValueError(f"target: must be in [0, 1), got {target}")
    remaining, goal, levels = Fraction(1), 1 - _exact(target), 0
    while remaining > goal:  # the fraction of weights alive after `levels` steps
        remaining *= 1 - _exact(rate)
        levels += 1
    return levels


def lth_sparsity(rate: float, target: float, round_index: int) -> float:
    """Sparsity of round r's mask: 1 - (1 - rate)^r before the last level, the target from it on."""
    if round_index >= lth_levels(rate, target):
        return target
    return float(1 - (1 - _exact(rate)) ** round_index)


@dataclass(frozen=True)
class LthConfig:
    rate: float = 0.2             # fraction of the remaining weights removed per round
    rewind_epoch: int = 0         # k: rewind to the weights after epoch k (0 = init)
    rewind_step: int = 0          # or after this many optimizer steps of round 0 (0 = rewind_epoch decides)

    def validate(self, cfg: Config) -> None:
        if not 0 < self.rate < 1:
            raise ConfigError(f"lth.rate: must be in (0, 1), got {self.rate}")
        if not 0 <= self.rewind_epoch < cfg.train.epochs:
            raise ConfigError(f"lth.rewind_epoch: must be in [0, {cfg.train.epochs - 1}], got {self.rewind_epoch}")
        if self.rewind_step < 0:
            raise ConfigError(f"lth.rewind_step: must be non-negative, got {self.rewind_step}")
        if self.rewind_step and self.rewind_epoch:
            raise ConfigError("lth.rewind_step: give lth.rewind_epoch or lth.rewind_step, not both")
        if cfg.train.steps and self.rewind_epoch:
            raise ConfigError("lth.rewind_epoch: under train.steps give the rewinding point in steps (lth.rewind_step)")
        if cfg.train.steps and self.rewind_step >= cfg.train.steps:
            raise ConfigError(f"lth.rewind_step: must be below train.steps ({cfg.train.steps}), got {self.rewind_step}")


class LotteryTicket(PruningMethod):
    """Iterative magnitude pruning with rewinding to `lth.rewind_epoch` or `lth.rewind_step` (0 = init)."""
    name = "lth"
    settings = LthConfig
    config_keys = ("prune.target_sparsity", "prune.keep_", "prune.distribution")

    def rounds(self) -> int:
        return lth_levels(self.cfg.lth.rate, self.cfg.prune.target_sparsity) + 1  # round 0 is dense

    def rewind_step(self) -> int:
        return self.cfg.lth.rewind_step or self.cfg.lth.rewind_epoch * self.budget.steps_per_epoch

    def check_budget(self) -> None:
        if self.rewind_step() >= self.budget.steps:
            raise ConfigError(f"lth.rewind_step: {self.rewind_step()} is not inside the {self.budget.steps}-step "
                              f"round; set it below {self.budget.steps}")

    def target_at(self, round_index: int, t_epochs: float) -> float:
        return lth_sparsity(self.cfg.lth.rate, self.cfg.prune.target_sparsity, round_index)

    def scores(self, ctx: Context, mask: Mask) -> Scores:
        return magnitude_scores(ctx.weights)  # this round's trained weights (the dead ones are never kept)

    def end_round(self, round_index: int, ctx: Context, mask: Mask) -> Prune | None:
        if round_index + 1 >= self.rounds():
            return None  # the last round trained the ticket at the target sparsity
        return Prune(self.target_at(round_index + 1, 0.0))
