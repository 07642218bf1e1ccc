"""One-shot magnitude pruning after training, then fine-tuning (Han, Pool, Tran & Dally, NeurIPS
2015, "Learning both Weights and Connections", with one prune-retrain cycle): train dense for
`oneshot.dense_epochs` epochs, remove the smallest-magnitude weights down to the target in one step
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

from suite.config import ConfigError, check_choice
from suite.masks import Mask, Scores, magnitude_scores
from suite.methods import Context, Prune, PruningMethod


@dataclass(frozen=True)
class OneshotSettings:
    dense_epochs: int | None = None  # epochs of dense training before the one pruning step; None = half the epochs
    lr: str = "restart"              # restart: each phase its own lr schedule | continue: one schedule over all epochs

    def validate(self, cfg) -> None:
        if self.dense_epochs is not None and not 1 <= self.dense_epochs < cfg.train.epochs:
            raise ConfigError(f"oneshot.dense_epochs: must be in [1, {cfg.train.epochs - 1}] (train.epochs is "
                              f"{cfg.train.epochs}), got {self.dense_epochs}")
        check_choice("oneshot.lr", self.lr, ("restart", "continue"))


def dense_epochs(cfg) -> int:
    """The pruning epoch: `oneshot.dense_epochs`, or half the epochs (at least 1)."""
    e = cfg.oneshot.dense_epochs
    return e if e is not None else max(1, cfg.train.epochs // 2)


class OneShot(PruningMethod):
    """Train dense, prune once by magnitude to the target, fine-tune the rest of the budget."""
    name = "oneshot"
    settings = OneshotSettings
    config_keys = ("prune.target_sparsity", "prune.keep_", "prune.distribution")

    def lr_epoch(self, round_index: int, epoch: int) -> tuple[int, int]:
        if self.cfg.oneshot.lr == "continue":
            return epoch, self.cfg.train.epochs
        cut = dense_epochs(self.cfg)
        return (epoch, cut) if epoch < cut else (epoch - cut, self.cfg.train.epochs - cut)

    def target_at(self, round_index: int, t_epochs: float) -> float:
        return self.cfg.prune.target_sparsity if t_epochs >= dense_epochs(self.cfg) else 0.0

    def scores(self, ctx: Context, mask: Mask) -> Scores:
        return magnitude_scores(ctx.weights)

    def end_epoch(self, round_index: int, epoch: int, ctx: Context, mask: Mask) -> Prune | None:
        return Prune(self.cfg.prune.target_sparsity) if epoch == dense_epochs(self.cfg) else None
