"""SNIP (Lee et al., ICLR 2019): keep the connections whose removal changes the loss most at init.

Differences from the official code (namhoonlee/snip-public, TensorFlow), none of which changes which
weights a one-batch SNIP keeps except the first:
- The official code also scores and prunes biases; here, as for every method of the suite, only the
  Conv/Linear weights are prunable (`suite.masks.prunable_weights`).
- It differentiates w.r.t. a mask c at c = 1 (dL/dc = w * dL/dw, the same number) and divides the
  scores by their sum (a positive factor: the same ranking).
- It keeps round((1 - s) * N) weights; here exactly round(s * N) are removed (the suite's rule),
  which can differ by one weight when s * N ends in .5.
- Its scoring batch is the next training batch (augmented where augmentation is on); here it is
  `Data.scoring_batches`, without augmentation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch.nn.functional as F
from torch import Tensor, nn

from baselines.scoring import (AllReduce, Batches, batch_count, device_of, grads_of, reduce_mean,
                               resolve_weights, scoring_mode, zeros_for)
from suite.masks import Mask, Scores
from suite.config import check_choice
from suite.errors import ConfigError
from suite.methods import Context, Prune, PruningMethod

if TYPE_CHECKING:
    from suite.experiment import Config


def snip_scores(model: nn.Module, batches: Batches,
                loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy, *,
                weights: dict[str, Tensor] | None = None, bn_mode: str = "eval",
                all_reduce: AllReduce | None = None) -> Scores:
    """Connection sensitivity |w * dL/dw| of every prunable weight; higher = kept first.

    L is the mean loss over every example of `batches` (and of every rank, with `all_reduce`):
    `loss_fn` must return a batch mean (the PyTorch default); each batch's gradient is weighted by
    its size, the weighted gradients are summed over batches (then over ranks) and divided by the
    example count, before the absolute value. So the scores do not depend on how the examples are
    split into batches or ranks (with BatchNorm in eval mode; in train mode each batch is normalised
    by its own statistics), and a 2-rank DDP call equals a 1-process call on the union of the
    ranks' batches. With one batch this is exactly the paper's single-batch score.

    `weights`: the weights to score (default `suite.masks.prunable_weights(model)`); `bn_mode`:
    BatchNorm in "eval" (the official code) or "train" mode while scoring, every other module in
    eval mode; `all_reduce`: sums a list of tensors over ranks in place (e.g.
    `Context.all_reduce_sum`), every rank must call it. Pass the unwrapped model, not DDP. The model
    is left as it was: weights, buffers (BatchNorm statistics), train/eval flags and `.grad`.
    """
    weights = resolve_weights(model, weights)
    params = list(weights.values())
    device = device_of(weights)
    with scoring_mode(model, bn_mode, weights):
        sums, count = zeros_for(params), 0
        for inputs, targets in batches:
            inputs, targets = inputs.to(device), targets.to(device)
            n = batch_count(targets)
            if n == 0:
                continue
            for s, g in zip(sums, grads_of(loss_fn(model(inputs), targets), params)):
                s.add_(g, alpha=n)  # batch mean * batch size = the batch's sum over examples
            count += n
        grad = reduce_mean(sums, count, all_reduce, "snip_scores")
    return {name: (w.detach() * g).abs() for (name, w), g in zip(weights.items(), grad)}


@dataclass(frozen=True)
class SnipConfig:
    batches: int = 1              # scoring batches (gradients summed over them), paper: 1
    bn_mode: str = "eval"         # BatchNorm mode while scoring: eval | train

    def validate(self, cfg: Config) -> None:
        if self.batches < 1:
            raise ConfigError(f"snip.batches: must be at least 1, got {self.batches}")
        check_choice("snip.bn_mode", self.bn_mode, ("eval", "train"))


class Snip(PruningMethod):
    """Prune once before training, keeping the highest connection sensitivity (one global top-k)."""
    name = "snip"
    settings = SnipConfig
    config_keys = ("prune.target_sparsity", "prune.keep_", "prune.distribution")

    def start_round(self, round_index: int, ctx: Context, mask: Mask) -> Prune:
        return Prune(self.cfg.prune.target_sparsity)  # at init (a pruned mask, e.g. resumed, is left as it is)

    def scores(self, ctx: Context, mask: Mask) -> Scores:
        return self.init_scores(ctx)

    def init_scores(self, ctx: Context) -> Scores:
        return snip_scores(ctx.model, ctx.data.scoring_batches(self.cfg.snip.batches), ctx.loss_fn,
                           weights=ctx.weights, bn_mode=self.cfg.snip.bn_mode, all_reduce=ctx.all_reduce_sum)
