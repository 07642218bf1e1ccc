"""Progressive magnitude pruning in one training cycle: one global magnitude threshold over the live
weights (or one per layer, with `prune.distribution` uniform or erk), raised along a sparsity
schedule; masks only ever lose weights."""
from __future__ import annotations

from suite.masks import Mask, already_at, layout, magnitude_scores, mask_at_sparsity
from suite.methods import Context, PruningMethod
from suite.schedules import SPARSITY_SCHEDULES


class Progressive(PruningMethod):
    name = "progressive"
    config_keys = ("prune.",)

    def step_interval(self) -> int:
        return self.cfg.prune.update_every_steps

    def target_at(self, round_index: int, t_epochs: float) -> float:
        p = self.cfg.prune
        return SPARSITY_SCHEDULES[p.schedule](t_epochs, p.initial_sparsity, p.target_sparsity, p.t_start, p.t_end)

    def _prune_to(self, t_epochs: float, ctx: Context, mask: Mask) -> Mask | None:
        target = self.target_at(0, t_epochs)
        if already_at(mask, target):
            return None  # the schedule asks for no more zeros than the mask has: nothing to do
        return mask_at_sparsity(magnitude_scores(ctx.weights), target, alive=mask,
                                **layout(self.cfg.prune))

    def start_round(self, round_index: int, ctx: Context, mask: Mask) -> Mask | None:
        return self._prune_to(0.0, ctx, mask)  # s(0) = initial sparsity, usually 0

    def after_step(self, round_index: int, t_epochs: float, ctx: Context, mask: Mask) -> Mask | None:
        return self._prune_to(t_epochs, ctx, mask)

    def end_epoch(self, round_index: int, epoch: int, ctx: Context, mask: Mask) -> Mask | None:
        return self._prune_to(float(epoch), ctx, mask)
