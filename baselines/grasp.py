"""GraSP (Wang et al., ICLR 2020): at init, remove the weights whose removal least reduces the
gradient flow, scored by S = -w * Hg with g = dL/dw and H the Hessian of the loss.

The procedure follows the official pruner/GraSP.py (alecwangcq/GraSP): logits divided by T = 200;
pass 1 accumulates the first-order g = dL/dw over the scoring batches without a graph; pass 2, batch
by batch, differentiates z = stop(g) . dL/dw once more (double backprop, gradients only for the
Conv/Linear weights) and accumulates Hg; the score is -w * Hg and the largest scores are removed.
Differences (only the first two can change which weights are kept):
- The official code re-initialises the Linear layers of its scoring copy with xavier_normal
  (`reinit=True`, the default its main script keeps), so its Linear scores belong to weights that
  are not the ones trained. Here the model's own weights are scored.
- It removes int(ratio * N) weights and keeps every weight tied at the threshold; here exactly
  round(s * N) are removed, ties broken by position (the suite's rule for every method).
- It sums the gradients of the mean losses of its two forward passes; here g and Hg are those of
  the mean loss over all examples (batch gradients weighted by batch size, summed over batches and
  ranks, divided by the count). For its equal halves that is a positive multiple of the official g
  and Hg: the same ranking. The forward passes themselves are the official ones (`Grasp` below):
  the class-ordered draw split into a first and a second half (for CIFAR-10 classes 0-4, then
  5-9), which matters with BatchNorm in train mode, where each pass is normalised by its own
  statistics; under DDP each rank forwards its shard of each half, as in training.
- It draws its examples from the shuffled, augmented training loader; the suite uses a seeded
  class-balanced draw without augmentation (`Data.class_balanced`).
- It divides the scores by |sum of scores| (a positive factor: the same ranking) and returns
  -w * Hg with "largest removed"; `grasp_scores` returns w * Hg with "largest kept" (the suite's
  one convention), the same mask.
- On a text dataset there is no class-balanced draw (every window predicts many next characters):
  `Data.class_balanced` gives samples_per_class x vocabulary windows at seeded offsets instead
  (suite/datasets/text.py); the Hessian-vector product runs attention through SDPA's math kernel,
  the only one with a double backward.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from baselines.scoring import (AllReduce, Batches, batch_count, device_of, grads_of, reduce_mean,
                               resolve_weights, scoring_mode, zeros_for)
from suite.masks import Mask, Scores
from suite.config import check_choice
from suite.errors import ConfigError
from suite.methods import Context, Prune, PruningMethod

if TYPE_CHECKING:
    from suite.experiment import Config


def grasp_scores(model: nn.Module, batches: Batches,
                 loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
                 temperature: float = 200.0, *, weights: dict[str, Tensor] | None = None,
                 bn_mode: str = "train", all_reduce: AllReduce | None = None) -> Scores:
    """GraSP importance w * Hg of every prunable weight (the negative of the paper's S = -w * Hg);
    higher = kept first, so the weights with the largest S are removed.

    L is the mean of `loss_fn(model(x) / temperature, y)` over every example of `batches` (and of
    every rank, with `all_reduce`); `loss_fn` must return a batch mean (the PyTorch default).
    g = dL/dw is formed (and summed over ranks) before Hg = d(stop(g) . dL/dw)/dw, which is then
    summed over ranks: a 2-rank DDP call equals a 1-process call on the union of the ranks' batches.
    The batches are read twice (they are listed first).

    `weights`: the weights to score (default `suite.masks.prunable_weights(model)`); `bn_mode`:
    BatchNorm in "train" (the official code) or "eval" mode while scoring, every other module in
    eval mode; `all_reduce`: sums a list of tensors over ranks in place (e.g.
    `Context.all_reduce_sum`), every rank must call it. Pass the unwrapped model (DDP cannot
    double-backward). The model is left as it was: weights, buffers (BatchNorm statistics),
    train/eval flags and `.grad`.
    """
    if not temperature > 0:
        raise ValueError(f"temperature: must be positive, got {temperature}")
    weights = resolve_weights(model, weights)
    params = list(weights.values())
    device = device_of(weights)
    batches = [(x.to(device), y.to(device)) for x, y in batches if batch_count(y) > 0]

    def loss_of(inputs: Tensor, targets: Tensor) -> Tensor:
        return loss_fn(model(inputs) / temperature, targets)

    with scoring_mode(model, bn_mode, weights):
        sums, count = zeros_for(params), 0
        for inputs, targets in batches:
            n = batch_count(targets)
            for s, g in zip(sums, grads_of(loss_of(inputs, targets), params)):
                s.add_(g, alpha=n)  # batch mean * batch size = the batch's sum over examples
            count += n
        # g must be the whole data's (all ranks') before it enters the Hessian-vector product
        g = [gi.to(p.dtype) for gi, p in zip(reduce_mean(sums, count, all_reduce, "grasp_scores"), params)]

        sums = zeros_for(params)
        for inputs, targets in batches:
            # the Hessian-vector product differentiates the gradient again: of SDPA's kernels only
            # the math one has a double backward (an attention model's fused CPU kernel has none)
            with sdpa_kernel(SDPBackend.MATH):
                grad_f = grads_of(loss_of(inputs, targets), params, create_graph=True)
            z = sum((gi * fi).sum() for gi, fi in zip(g, grad_f))  # g is a constant: no graph
            for s, hg in zip(sums, grads_of(z, params)):
                s.add_(hg, alpha=batch_count(targets))
        hg = reduce_mean(sums, count, all_reduce, "grasp_scores")
    return {name: w.detach() * h for (name, w), h in zip(weights.items(), hg)}


def official_halves(batches: Batches, rank: int, world_size: int, total: int) -> list[tuple[Tensor, Tensor]]:
    """This rank's shards of the official code's two forward passes over the class-ordered draw,
    inputs[:N // 2] and inputs[N // 2:], given this rank's share: draw positions rank::world_size
    (`Data.class_balanced`)."""
    batches = list(batches)
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    if len(y) != len(range(rank, total, world_size)):
        raise RuntimeError(f"GraSP: rank {rank} of {world_size} holds {len(y)} of the {total} scoring examples; "
                           "expected the positions rank::world_size of the class-ordered draw")
    half = total // 2
    first = max(0, -(-(half - rank) // world_size))  # how many of rank, rank + w, ... are below N // 2
    return [(x[:first], y[:first]), (x[first:], y[first:])]


@dataclass(frozen=True)
class GraspConfig:
    samples_per_class: int = 10   # scoring data: this many training samples of each class
    temperature: float = 200.0    # logits are divided by T before the loss
    bn_mode: str = "train"        # BatchNorm mode while scoring: eval | train

    def validate(self, cfg: Config) -> None:
        if self.samples_per_class < 1:
            raise ConfigError(f"grasp.samples_per_class: must be at least 1, got {self.samples_per_class}")
        if self.temperature <= 0:
            raise ConfigError(f"grasp.temperature: must be positive, got {self.temperature}")
        check_choice("grasp.bn_mode", self.bn_mode, ("eval", "train"))


class Grasp(PruningMethod):
    """Prune once before training, removing the largest S = -w * Hg (one global top-k)."""
    name = "grasp"
    settings = GraspConfig
    config_keys = ("prune.target_sparsity", "prune.keep_", "prune.distribution")

    def start_round(self, round_index: int, ctx: Context, mask: Mask) -> Prune:
        return Prune(self.cfg.prune.target_sparsity)  # at init (a pruned mask, e.g. resumed, is left as it is)

    def scores(self, ctx: Context, mask: Mask) -> Scores:
        return self.init_scores(ctx)

    def init_scores(self, ctx: Context) -> Scores:
        g = self.cfg.grasp
        total = g.samples_per_class * ctx.data.spec.num_classes
        batches = official_halves(ctx.data.class_balanced(g.samples_per_class), ctx.rank, ctx.world_size, total)
        return grasp_scores(ctx.model, batches, ctx.loss_fn, g.temperature, weights=ctx.weights,
                            bn_mode=g.bn_mode, all_reduce=ctx.all_reduce_sum)
