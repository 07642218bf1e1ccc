"""SynFlow (Tanaka, Kunin, Yamins & Ganguli, NeurIPS 2020): data-free iterative pruning at init.

Score the weights by the synaptic flow R = 1^T (prod_l |W_l|) 1 of the network with every
parameter replaced by its absolute value and an all-ones input: score = |theta * dR/dtheta|. Prune
along the exponential schedule density_k = density^(k / n), k = 1..n, re-scoring the surviving
network each time, so that no layer is cut off before the others (the paper's "layer collapse").

The reference is the official code (ganguli-lab/Synaptic-Flow: Pruners/pruners.py `SynFlow`,
prune.py `prune_loop`). Differences, of which only the first three can change which weights are kept:
- It removes int((1 - density_k) * N) weights (a floor) and every weight tied at the threshold
  (`score <= threshold`); here exactly round((1 - density_k) * N) are removed at each step, ties
  broken by position (the suite's rule), and the last step is exactly the target's count.
- It scores in float32 (its `model.double()` is commented out); here the linearised network runs
  in float64, so R does not overflow in deep networks (float32 ends at 3.4e38) and small scores do
  not round to ties.
- Its prunable set leaves out the 1x1 shortcut convolutions of its ResNets (`prune_residual`
  False) as well as biases and BatchNorm; here every Conv/Linear weight is prunable
  (`suite.masks.prunable_weights`), shortcuts included.
- It takes the absolute value of the whole `state_dict` in place (parameters and buffers, so
  BatchNorm's running mean too) and multiplies the signs back afterwards, and zeroes the pruned
  weights of the model itself; here the same absolute values are fed to the model through
  `torch.func.functional_call`, so the model is never written to (a parameter that was exactly
  0 keeps no sign to lose, and `.grad` stays as it was).
- A token model has no all-ones input (tokens are integers): a model with `embedded_shape` (the
  GPT, suite/gpt.py) takes the ones at its embedding output, `forward(ones, embedded=True)`, where
  its LayerNorms act as affine maps (see that file); the embedding tables then carry no flow.
- It runs the whole loop with the model in eval mode; so does this code, and it puts every
  module's train/eval flag back afterwards.
- `prune.distribution: uniform | erk` ranks the scores inside each layer at the schedule's
  per-layer densities (the official `--mask-scope local` prunes each layer to the same density).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor, nn

from baselines.scoring import device_of, resolve_weights
from suite.errors import ConfigError
from suite.masks import Mask, Scores, mask_at_sparsity
from suite.methods import Context, Prune, PruningMethod


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode (BatchNorm on its running statistics, no dropout), flags put back."""
    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
        yield
    finally:
        for m, training in flags.items():
            m.training = training


def synflow_scores(model: nn.Module, input_shape: tuple[int, ...] | torch.Size, *,
                   weights: dict[str, Tensor] | None = None, mask: Mask | None = None) -> Scores:
    """Synaptic saliency |theta * dR/dtheta| of every prunable weight (float64); higher = kept first.

    R is the sum of the outputs of the linearised network: every floating parameter and buffer
    replaced by its absolute value (in float64), every module in eval mode, on one all-ones
    example of shape `input_shape` (one example, without the batch dimension). With `mask`, the
    pruned weights are 0 in that network (they carry no flow and score 0). The model itself is
    never written to: its weights keep their signs and dtype, and buffers, train/eval flags,
    `.grad` and `requires_grad` stay as they were.

    `weights`: the weights to score, parameters of `model` (default
    `suite.masks.prunable_weights(model)`). Pass the unwrapped model, not DDP. No data and no
    randomness: every rank computes the same scores without communicating.
    """
    weights = resolve_weights(model, weights)
    param_name = {id(p): n for n, p in model.named_parameters()}
    for key, w in weights.items():
        if id(w) not in param_name:
            raise ValueError(f"synflow_scores: weight '{key}' is not a parameter of the model")
    device = device_of(weights)
    # the linearised network: |theta| in float64 for parameters and buffers (integers such as
    # BatchNorm's num_batches_tracked are left as they are)
    state = {name: t.detach().abs().double() if t.is_floating_point() else t
             for name, t in [*model.named_parameters(), *model.named_buffers()]}
    leaves: dict[str, Tensor] = {}
    for key, w in weights.items():
        value = state[param_name[id(w)]]
        if mask is not None:
            value = value * mask[key].to(device=value.device, dtype=value.dtype)
        leaves[key] = state[param_name[id(w)]] = value.requires_grad_(True)
    # a token model (one with `embedded_shape`, e.g. suite/gpt.py) cannot take ones as token ids:
    # its all-ones input goes to the embedding output, through forward(x, embedded=True)
    embedded = getattr(model, "embedded_shape", None)
    shape, kwargs = (embedded(tuple(input_shape)), {"embedded": True}) if embedded else (input_shape, {})
    ones = torch.ones((1, *shape), dtype=torch.float64, device=device)
    with _eval_mode(model), torch.enable_grad():
        flow = torch.func.functional_call(model, state, (ones,), kwargs).sum()
        grads = torch.autograd.grad(flow, list(leaves.values()), allow_unused=True, materialize_grads=True)
    return {key: (leaf.detach() * g).abs() for (key, leaf), g in zip(leaves.items(), grads)}


def synflow_densities(density: float, iterations: int) -> list[float]:
    """The exponential schedule density^(k / n), k = 1..n (the last one is `density` itself)."""
    if iterations < 1:
        raise ValueError(f"iterations: must be at least 1, got {iterations}")
    return [density ** (k / iterations) for k in range(1, iterations)] + [density]


def synflow_sparsities(target: float, iterations: int) -> list[float]:
    """The sparsity after each step, 1 - density^(k / n): the last one exactly `target`."""
    densities = synflow_densities(1.0 - target, iterations)
    return [target if k == iterations else 1.0 - density for k, density in enumerate(densities, start=1)]


def synflow_step_scores(model: nn.Module, input_shape: tuple[int, ...] | torch.Size, *,
                        weights: dict[str, Tensor] | None = None, mask: Mask | None = None) -> Scores:
    """`synflow_scores` under `mask`, divided by the largest: what each step of the schedule ranks."""
    scores = synflow_scores(model, input_shape, weights=weights, mask=mask)
    # one positive factor: the same ranking, and the float32 top-k sees numbers near 1, not
    # near the float64 extremes a deep network's flow can reach
    top = max(float(s.max()) for s in scores.values())
    return {n: s / top for n, s in scores.items()} if top > 0 else scores


def synflow_steps(model: nn.Module, input_shape: tuple[int, ...] | torch.Size, target: float, iterations: int,
                  *, weights: dict[str, Tensor] | None = None, mask: Mask | None = None,
                  build=None) -> Iterator[Mask]:
    """The mask after each of the `iterations` score-and-prune steps towards `target` sparsity.

    Step k re-scores the network under the previous mask and keeps exactly the weights of the
    density (1 - target)^(k / n) (the last step exactly round(target * N) zeros); the masks only
    lose weights. `build(scores, sparsity, alive)` turns scores into a mask (default one global
    top-k, `suite.masks.mask_at_sparsity`; the method itself leaves it to the shared selection)."""
    build = build or mask_at_sparsity
    weights = resolve_weights(model, weights)
    current = mask
    for sparsity in synflow_sparsities(target, iterations):
        current = build(synflow_step_scores(model, input_shape, weights=weights, mask=current), sparsity, current)
        yield current


def synflow_mask(model: nn.Module, input_shape: tuple[int, ...] | torch.Size, target: float, iterations: int = 100,
                 *, weights: dict[str, Tensor] | None = None, mask: Mask | None = None, build=None) -> Mask:
    """The final mask of `synflow_steps`: exactly round(target * N) zeros, a subset of `mask`."""
    final = mask
    for final in synflow_steps(model, input_shape, target, iterations, weights=weights, mask=mask, build=build):
        pass
    return final


@dataclass(frozen=True)
class SynflowSettings:
    iterations: int = 100         # score-and-prune steps on the exponential schedule (paper: 100)

    def validate(self, cfg) -> None:
        if self.iterations < 1:
            raise ConfigError(f"synflow.iterations: must be at least 1, got {self.iterations}")


class SynFlow(PruningMethod):
    """Prune once before training by iterative synaptic flow, without data."""
    name = "synflow"
    settings = SynflowSettings
    config_keys = ("prune.target_sparsity", "prune.keep_", "prune.distribution")

    def start_round(self, round_index: int, ctx: Context, mask: Mask) -> Prune:
        # the exponential schedule, re-scored under the mask so far before each step (synflow_steps)
        *steps, target = synflow_sparsities(self.cfg.prune.target_sparsity, self.cfg.synflow.iterations)
        return Prune(target, steps=tuple(steps))

    def scores(self, ctx: Context, mask: Mask) -> Scores:
        return synflow_step_scores(ctx.model, ctx.data.spec.input_shape, weights=ctx.weights, mask=mask)

    def init_scores(self, ctx: Context) -> Scores:
        """The one-shot SynFlow score of the dense network at init (the iterative pruning re-scores
        after each step; an inverted mask keeps the lowest of the first scores)."""
        return synflow_scores(ctx.model, ctx.data.spec.input_shape, weights=ctx.weights)
