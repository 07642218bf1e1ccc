"""One-shot magnitude pruning after training, then fine-tuning (Han, Pool, Tran & Dally, NeurIPS
2015, "Learning both Weights and Connections", with one prune-retrain cycle): train dense for
`oneshot.dense_epochs` epochs (or `oneshot.dense_frac` of the budget's optimizer steps), remove the smallest-magnitude weights down to the target in one step
(one global threshold, or per layer with `prune.distribution`), and fine-tune the survivors for the
rest of the budget.

`oneshot.lr` says what the learning rate does. `restart` (the default): the dense phase is a whole
training of its own (the `train.lr_schedule` over `dense_epochs`), and the fine-tuning starts the
schedule again from `train.lr` over the remaining epochs, so the network is pruned once trained, as
Han et al. prune a trained network and then retrain it. `continue`: one schedule over all
`train.epochs`, so the cut falls mid-schedule and the fine-tuning runs at the schedule's tail.

Differences from Han et al.: they prune each layer at a threshold of a quality parameter times the
layer's weight standard deviation (so the sparsity is an outcome, not a target) and repeat prune +
retrain several times with L2 regularisation, dropout adjusted to the pruned width; here one exact
magnitude cut to round(s * N) zeros, then fine-tuning with the run's own optimizer, whose momentum of
the pruned weights is zeroed.
"""
from __future__ import annotations

from dataclasses import dataclass

from suite.config import check_choice
from suite.errors import ConfigError
from suite.masks import Mask, Scores, magnitude_scores
from suite.methods import Context, Prune, PruningMethod


@dataclass(frozen=True)
class OneshotSettings:
    dense_epochs: int | None = None  # epochs of dense training before the one pruning step; None = half the budget
    dense_frac: float | None = None  # or this fraction of the budget (in optimizer steps), instead of dense_epochs
    lr: str = "restart"              # restart: each phase its own lr schedule | continue: one schedule over all epochs

    def validate(self, cfg) -> None:
        if self.dense_epochs is not None and not 1 <= self.dense_epochs < cfg.train.epochs:
            raise ConfigError(f"oneshot.dense_epochs: must be in [1, {cfg.train.epochs - 1}] (train.epochs is "
                              f"{cfg.train.epochs}), got {self.dense_epochs}")
        if self.dense_frac is not None and not 0 < self.dense_frac < 1:
            raise ConfigError(f"oneshot.dense_frac: must be a fraction of the budget in (0, 1), got {self.dense_frac}")
        if self.dense_frac is not None and self.dense_epochs is not None:
            raise ConfigError("oneshot.dense_frac: give oneshot.dense_epochs or oneshot.dense_frac, not both")
        if cfg.train.steps and self.dense_epochs is not None:
            raise ConfigError("oneshot.dense_epochs: under train.steps give the pruning point as a fraction of "
                              "the budget (oneshot.dense_frac)")
        check_choice("oneshot.lr", self.lr, ("restart", "continue"))


def cut_step(cfg, budget) -> int:
    """The pruning step (optimizer steps into the round): after `oneshot.dense_epochs` epochs, at
    `oneshot.dense_frac` of the budget, or by default after half the epochs (at least 1) of an epoch
    budget, half the steps of a step budget (at least 1, at most the budget's last step)."""
    o = cfg.oneshot
    if o.dense_epochs is not None:
        return o.dense_epochs * budget.steps_per_epoch
    if o.dense_frac is None and not cfg.train.steps:
        return max(1, cfg.train.epochs // 2) * budget.steps_per_epoch
    return min(max(1, budget.step_at(0.5 if o.dense_frac is None else o.dense_frac)), budget.steps - 1)


class OneShot(PruningMethod):
    """Train dense, prune once by magnitude to the target, fine-tune the rest of the budget."""
    name = "oneshot"
    settings = OneshotSettings
    config_keys = ("prune.target_sparsity", "prune.keep_", "prune.distribution")

    def step_interval(self) -> int:
        return cut_step(self.cfg, self.budget)  # the hook's first call is the cut; later ones find the mask there

    def lr_at(self, round_index: int, step: int) -> tuple[int, int]:
        if self.cfg.oneshot.lr == "continue":
            return step, self.budget.steps
        cut = cut_step(self.cfg, self.budget)
        return (step, cut) if step < cut else (step - cut, self.budget.steps - cut)

    def target_at(self, round_index: int, t_epochs: float) -> float:
        cut = cut_step(self.cfg, self.budget) / self.budget.steps_per_epoch
        return self.cfg.prune.target_sparsity if t_epochs >= cut else 0.0

    def scores(self, ctx: Context, mask: Mask) -> Scores:
        return magnitude_scores(ctx.weights)

    def after_step(self, round_index: int, t_epochs: float, ctx: Context, mask: Mask) -> Prune:
        return Prune(self.cfg.prune.target_sparsity)  # at the cut; later calls find the mask there already
