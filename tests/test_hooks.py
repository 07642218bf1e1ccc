"""The trainer's side of the method API: regrowing masks, the dense-gradient hook and its schedule."""
import pytest
import torch
from accelerate import Accelerator

from helpers import TINY
from suite import experiment as E
from suite.methods import PruningMethod
from suite.trainer import Runner, RunFailed


def _runner(tmp_path, method_cls):
    cfg = E.load_config(None, [*TINY, "wandb.mode=disabled"], method="dense")
    runner = Runner(cfg, tmp_path, Accelerator(cpu=True))
    runner.method = method_cls(cfg)
    runner.new_optimizer()
    return runner


def _half(w):
    m = torch.zeros_like(w, dtype=torch.bool)
    m.view(-1)[::2] = True
    return m


class Flip(PruningMethod):
    """At its first hook it swaps fc1's live and dead weights; it records what each hook saw."""
    regrows, dense_grads = True, True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.calls, self.seen = [], []

    def step_interval(self):
        return 3

    def after_backward(self, round_index, t, ctx, mask, grads):
        self.calls.append(("backward", t))
        g = grads["fc1.weight"]
        self.seen.append(int(torch.count_nonzero(g[~mask["fc1.weight"]])))  # gradients of dead weights
        if len(self.calls) > 1:
            return None
        return {**{n: m.clone() for n, m in mask.items()}, "fc1.weight": ~mask["fc1.weight"]}

    def after_step(self, round_index, t, ctx, mask):
        self.calls.append(("step", t))
        if len(self.calls) == 2:  # right after the flipped mask was installed
            w = ctx.weights["fc1.weight"]
            momentum = self.optimizer.optimizer.state[w]["momentum_buffer"]
            self.grown = (w[mask["fc1.weight"]].abs().max().item(), momentum[mask["fc1.weight"]].abs().max().item(),
                          w[~mask["fc1.weight"]].abs().max().item(), momentum[~mask["fc1.weight"]].abs().max().item())
        return None


def test_regrown_weights_start_at_zero_with_zero_momentum_and_hooks_count_steps_over_the_round(tmp_path):
    runner = _runner(tmp_path, Flip)
    runner.method.optimizer = runner.optimizer
    w = runner.weights["fc1.weight"]
    start = {n: _half(p) if n == "fc1.weight" else torch.ones_like(p, dtype=torch.bool)
             for n, p in runner.weights.items()}
    runner._install(start)
    assert runner.data.steps_per_epoch == 8
    runner.train_epoch(0, 0)
    runner.train_epoch(0, 1)
    # every 3 optimizer steps counted over the round: global steps 3, 6 | 9, 12, 15 = epoch 1 steps 1, 4, 7
    times = [t for kind, t in runner.method.calls if kind == "backward"]
    assert times == [3 / 8, 6 / 8, 1 + 1 / 8, 1 + 4 / 8, 1 + 7 / 8]
    assert [kind for kind, _ in runner.method.calls] == ["backward", "step"] * 5
    assert runner.method.seen[0] == w.numel() // 2  # dense: every dead weight has its gradient
    assert runner.method.grown == (0.0, 0.0, 0.0, 0.0)  # revived and dropped: weights and momentum exactly 0
    flipped = ~start["fc1.weight"]
    assert torch.equal(runner.masked.mask["fc1.weight"], flipped)
    assert (w[~flipped] == 0).all()
    assert int(torch.count_nonzero(w[flipped])) > int(flipped.sum()) // 2  # revived weights trained on from 0


class Revive(PruningMethod):
    """Declares no regrowth, then revives a weight."""

    def end_epoch(self, round_index, epoch, ctx, mask):
        return {n: torch.ones_like(m) for n, m in mask.items()}


def test_a_monotonic_method_that_revives_a_weight_stops_the_run(tmp_path):
    runner = _runner(tmp_path, Revive)
    mask = {n: torch.ones_like(p, dtype=torch.bool) for n, p in runner.weights.items()}
    mask["fc1.weight"].view(-1)[:5] = False
    runner._install(mask)
    with pytest.raises(RunFailed, match="declares regrows = False but its new mask revives 5 pruned weights"):
        runner._install(runner.method.end_epoch(0, 1, runner.ctx, runner.masked.mask))
    Revive.regrows = True
    try:
        assert runner._install(runner.method.end_epoch(0, 1, runner.ctx, runner.masked.mask))
    finally:
        Revive.regrows = False
