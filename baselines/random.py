"""Random pruning at init: the sanity check every pruning method must beat."""
from __future__ import annotations

import hashlib

import torch

from suite.masks import Mask, Scores
from suite.methods import Context, Prune, PruningMethod


def mask_seed(seed: int) -> int:
    """The mask's own seed, derived from the run's seed. Not the seed itself: the model is
    initialised from torch.manual_seed(seed), and uniform draws from that same stream would make
    the kept weights the largest (kaiming_uniform is an affine map of the same uniforms)."""
    return int.from_bytes(hashlib.sha256(f"random-mask/{seed}".encode()).digest()[:8], "little")


def random_scores(shapes: dict[str, torch.Size], seed: int) -> Scores:
    """I.i.d. uniform scores (on the CPU, so identical on every rank and device); a global top-k of
    them keeps a uniformly random subset of the weights."""
    generator = torch.Generator().manual_seed(mask_seed(seed))
    return {name: torch.rand(shape, generator=generator) for name, shape in shapes.items()}


class RandomPruning(PruningMethod):
    """A uniformly random mask with exactly the target's zero count, drawn once before training."""
    name = "random"
    config_keys = ("prune.target_sparsity", "prune.keep_", "prune.distribution")

    def start_round(self, round_index: int, ctx: Context, mask: Mask) -> Prune:
        return Prune(self.cfg.prune.target_sparsity)  # drawn once (a resumed run's mask is never re-drawn)

    def scores(self, ctx: Context, mask: Mask) -> Scores:
        return random_scores({n: w.shape for n, w in ctx.weights.items()}, self.cfg.seed)  # on the CPU: the runner moves the mask
