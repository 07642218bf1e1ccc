"""The one step that turns a method's scores into a mask, shared by every method (jaxpruner's split): a
hook says when to prune (it returns `Prune`), the method's `scores` say what it ranks, and this step
selects under the run's `prune.distribution` and `prune.structure` (suite.masks.mask_at_sparsity)
among the prunable weights (the layers kept dense by `prune.keep_first_dense` / `keep_last_dense`
are never in a mask). A new structure is one entry in suite.masks, and every method that prunes gets it."""
from __future__ import annotations

from suite.masks import Mask, already_at, layout, mask_at_sparsity
from suite.methods import Context, Prune, PruningMethod


def select(method: PruningMethod, ctx: Context, mask: Mask, change: Mask | Prune | None) -> Mask | None:
    """The mask a hook's answer stands for: a `Prune` selected from `method.scores` (None when `mask`
    already has its zeros: nothing to remove, and trained weights are never scored after a resume),
    a mask or None as they are."""
    if not isinstance(change, Prune):
        return change
    if already_at(mask, change.sparsity):
        return None
    pattern = layout(method.cfg.prune)
    for sparsity in (*change.steps, change.sparsity):
        mask = mask_at_sparsity(method.scores(ctx, mask), sparsity, alive=mask, **pattern)
    return mask
