"""Shared plumbing of the scores at initialisation: scoring leaves the model as it was, and sums
gradients over batches and ranks so that scores mean the same thing however the data is split."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

from suite.masks import prunable_weights

AllReduce = Callable[[list[Tensor]], None]  # sums the tensors over ranks in place, e.g. Context.all_reduce_sum
Batches = Iterable[tuple[Tensor, Tensor]]

BN_MODES = ("eval", "train")


def resolve_weights(model: nn.Module, weights: dict[str, Tensor] | None) -> dict[str, Tensor]:
    """The weights to score: the given ones, or every prunable weight of the model."""
    weights = prunable_weights(model) if weights is None else dict(weights)
    if not weights:
        raise ValueError("no weights to score: the model has no Conv or Linear layers and none were given")
    return weights


@contextlib.contextmanager
def scoring_mode(model: nn.Module, bn_mode: str, weights: dict[str, Tensor]) -> Iterator[None]:
    """Score in inference mode except for BatchNorm (which follows `bn_mode`), and put back every
    module's train/eval flag, every buffer (BatchNorm running statistics and counters) and every
    requires_grad flag afterwards, also when scoring fails."""
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode: '{bn_mode}' is not one of {', '.join(BN_MODES)}")
    flags = {m: m.training for m in model.modules()}
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    needs_grad = {id(w): w.requires_grad for w in weights.values()}
    try:
        # Dropout and the like off: a score must not depend on a rank's random stream.
        model.eval()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train(bn_mode == "train")
        for w in weights.values():
            w.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for m, training in flags.items():
            m.training = training
        with torch.no_grad():
            for name, b in model.named_buffers():
                if name in buffers:
                    b.copy_(buffers[name])
        for w in weights.values():
            w.requires_grad_(needs_grad[id(w)])


def device_of(weights: dict[str, Tensor]) -> torch.device:
    return next(iter(weights.values())).device


def batch_count(targets: Tensor) -> int:
    """Examples in a batch (its first dimension)."""
    return int(targets.shape[0])


def zeros_for(params: list[Tensor]) -> list[Tensor]:
    """Accumulators in at least fp32, whatever the weights' precision."""
    return [torch.zeros_like(p, dtype=torch.promote_types(p.dtype, torch.float32)) for p in params]


def grads_of(loss: Tensor, params: list[Tensor], create_graph: bool = False) -> list[Tensor]:
    """d loss / d params without touching `.grad`; a weight the loss does not use gets zeros."""
    if not loss.requires_grad:  # e.g. a loss linear in the weights, differentiated twice
        return [torch.zeros_like(p) for p in params]
    return list(torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True,
                                    materialize_grads=True))


def reduce_mean(sums: list[Tensor], count: int, all_reduce: AllReduce | None, what: str) -> list[Tensor]:
    """Turn per-example-weighted sums into means over every example of every rank.

    The sums and the count travel in one flat buffer, so a DDP run costs one collective."""
    flat = torch.cat([s.reshape(-1) for s in sums] + [torch.tensor([float(count)], dtype=sums[0].dtype,
                                                                     device=sums[0].device)])
    if all_reduce is not None:
        all_reduce([flat])
    total = float(flat[-1])
    if total <= 0:
        raise ValueError(f"{what}: no scoring examples (empty batches on every rank)")
    out, start = [], 0
    for s in sums:
        out.append(flat[start:start + s.numel()].view_as(s) / total)
        start += s.numel()
    return out
