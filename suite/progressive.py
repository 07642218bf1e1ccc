"""Progressive magnitude pruning in one training cycle: one global magnitude threshold over the live
weights (or one per layer, with `prune.distribution` uniform or erk), raised along a sparsity
schedule; masks only ever lose weights."""
from __future__ import annotations

from suite.errors import ConfigError
from suite.masks import Mask, Scores, magnitude_scores
from suite.methods import Context, Prune, PruningMethod
from suite.schedules import SPARSITY_SCHEDULES


class Progressive(PruningMethod):
    name = "progressive"
    config_keys = ("prune.",)

    def step_interval(self) -> int:
        return self.cfg.prune.update_every_steps

    def points(self) -> tuple[float, float]:
        """(t_start, t_end) in epochs: as configured, or the fractions of the budget in epochs."""
        p, epochs = self.cfg.prune, self.budget.epochs
        start = p.t_start if p.t_start_frac is None else p.t_start_frac * epochs
        return start, (p.t_end if p.t_end_frac is None else p.t_end_frac * epochs)

    def check_budget(self) -> None:
        start, end = self.points()
        if self.cfg.prune.update_every_steps == 0 and start < end < self.budget.end_of(1):
            raise ConfigError(f"prune.t_end: the schedule ends at epoch {end:g}, before the first epoch end, where "
                              f"the mask is updated (prune.update_every_steps=0): it would prune all at once; "
                              f"set prune.update_every_steps to a number of optimizer steps, or a longer budget")

    def target_at(self, round_index: int, t_epochs: float) -> float:
        p = self.cfg.prune
        return SPARSITY_SCHEDULES[p.schedule](t_epochs, p.initial_sparsity, p.target_sparsity, *self.points())

    def scores(self, ctx: Context, mask: Mask) -> Scores:
        return magnitude_scores(ctx.weights)

    # the schedule's sparsity at each hook; the selection does nothing while the mask already has it
    def start_round(self, round_index: int, ctx: Context, mask: Mask) -> Prune:
        return Prune(self.target_at(0, 0.0))  # s(0) = initial sparsity, usually 0

    def after_step(self, round_index: int, t_epochs: float, ctx: Context, mask: Mask) -> Prune:
        return Prune(self.target_at(0, t_epochs))

    def end_epoch(self, round_index: int, epoch: int, ctx: Context, mask: Mask) -> Prune:
        return Prune(self.target_at(0, float(self.budget.end_of(epoch))))
