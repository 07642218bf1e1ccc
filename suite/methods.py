"""What a pruning method is (it only decides which weights live), and the registry of methods."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from suite.config import Config, ConfigError
from suite.masks import Mask


@dataclass
class Context:
    """What a method may look at when it decides: never the optimizer, the loop or the disk."""
    cfg: Config
    model: nn.Module                      # the unwrapped model (DDP cannot double-backward)
    weights: dict[str, nn.Parameter]      # the prunable weights of `model`, in layer order
    data: Any                             # suite.data.Data: scoring_batches(n), class_balanced(k), ...
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    device: torch.device
    epochs: int                           # epochs per round
    steps_per_epoch: int
    rank: int = 0
    world_size: int = 1

    def all_reduce_sum(self, tensors: list[Tensor]) -> None:
        """Sum tensors over ranks in place (a no-op in one process): scores see the union of data."""
        if self.world_size > 1 and dist.is_initialized():
            for t in tensors:
                dist.all_reduce(t, op=dist.ReduceOp.SUM)


class PruningMethod:
    """A method returns a new mask (or None for no change) at the points it cares about; it never
    edits the mask it was given, and keeps no state the runner does not checkpoint (the mask, the
    round and the epoch are the whole state)."""

    name: ClassVar[str] = ""
    config_keys: ClassVar[tuple[str, ...]] = ()  # config prefixes it reads, e.g. ("prune.", "snip.")
    prunes: ClassVar[bool] = True                # False: the dense control (target sparsity 0)

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def rounds(self) -> int:
        """Training cycles: 1 for one-shot and progressive methods, levels + 1 for LTH."""
        return 1

    def rewind_epoch(self) -> int:
        """Between rounds the runner rewinds the weights to their values after this epoch of round 0."""
        return 0

    def step_interval(self) -> int:
        """Call `after_step` every this many optimizer steps (0: never)."""
        return 0

    def target_at(self, round_index: int, t_epochs: float) -> float:
        """The sparsity this method aims for at time t (in epochs) of a round, for the log."""
        return self.cfg.prune.target_sparsity

    def start_round(self, round_index: int, ctx: Context, mask: Mask) -> Mask | None:
        return None

    def after_step(self, round_index: int, t_epochs: float, ctx: Context, mask: Mask) -> Mask | None:
        return None

    def end_epoch(self, round_index: int, epoch: int, ctx: Context, mask: Mask) -> Mask | None:
        return None

    def end_round(self, round_index: int, ctx: Context, mask: Mask) -> Mask | None:
        return None


class Dense(PruningMethod):
    """No pruning: the reference every table needs."""
    name = "dense"
    prunes = False


# name -> "module:Class", imported on first use so that a broken baseline cannot break the others
METHODS: dict[str, str] = {
    "progressive": "suite.progressive:Progressive",
    "dense": "suite.methods:Dense",
    "snip": "baselines.snip:Snip",
    "grasp": "baselines.grasp:Grasp",
    "lth": "baselines.lth:LotteryTicket",
    "random": "baselines.random:RandomPruning",
}


def method_class(name: str) -> type[PruningMethod]:
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}' (valid: {', '.join(sorted(METHODS))})")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_method(cfg: Config) -> PruningMethod:
    return method_class(cfg.method)(cfg)
