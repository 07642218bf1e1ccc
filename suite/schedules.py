"""Sparsity and learning-rate schedules and the training budget: pure functions of the step or epoch (so a resumed run needs no state)."""
from __future__ import annotations

import math
from dataclasses import dataclass


def linear_sparsity(t: float, s_initial: float, s_target: float, t_start: float, t_end: float) -> float:
    """s(t) = s_i + (s_f - s_i) * (t - t_start) / (t_end - t_start), clamped outside [t_start, t_end]."""
    if t >= t_end:  # first, so that t_start == t_end means one-shot pruning at t_end
        return s_target
    if t <= t_start:
        return s_initial
    return s_initial + (s_target - s_initial) * (t - t_start) / (t_end - t_start)


def cubic_sparsity(t: float, s_initial: float, s_target: float, t_start: float, t_end: float) -> float:
    """Zhu & Gupta (2017): s(t) = s_f + (s_i - s_f) * (1 - (t - t_start) / (t_end - t_start))^3, clamped."""
    if t >= t_end:  # first, so that t_start == t_end means one-shot pruning at t_end
        return s_target
    if t <= t_start:
        return s_initial
    return s_target + (s_initial - s_target) * (1.0 - (t - t_start) / (t_end - t_start)) ** 3


def exponential_sparsity(t: float, s_initial: float, s_target: float, t_start: float, t_end: float) -> float:
    """Density decays geometrically: 1 - s(t) = (1 - s_i) * ((1 - s_f) / (1 - s_i))^((t - t_start) / (t_end - t_start)),
    clamped: the same fraction of the surviving weights goes in every equal stretch of time (LTH's
    constant rate per round, spread over the schedule), so the last steps remove as many of the
    survivors as the first instead of linear's last-step 83% at 98%."""
    if t >= t_end:  # first, so that t_start == t_end means one-shot pruning at t_end
        return s_target
    if t <= t_start:
        return s_initial
    fraction = (t - t_start) / (t_end - t_start)
    return 1.0 - (1.0 - s_initial) * ((1.0 - s_target) / (1.0 - s_initial)) ** fraction


SPARSITY_SCHEDULES = {"linear": linear_sparsity, "cubic": cubic_sparsity, "exponential": exponential_sparsity}


def lr_factor(epoch: int, epochs: int, kind: str, milestones: tuple[int, ...] = (), gamma: float = 0.1) -> float:
    """Multiplier of the base learning rate during epoch `epoch` (0-based), stepped once per epoch.

    cosine: 0.5 * (1 + cos(pi * epoch / epochs)), the per-epoch CosineAnnealingLR with eta_min 0;
    step: gamma ** (number of milestones <= epoch); constant: 1."""
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    if kind == "step":
        return gamma ** sum(1 for m in milestones if m <= epoch)
    if kind == "constant":
        return 1.0
    raise ValueError(f"unknown lr schedule '{kind}'")


def warmup_cosine_lr(step: int, steps: int, lr: float, warmup: int, min_lr: float) -> float:
    """The learning rate of optimizer step `step` (0-based) of `steps`: linear warm-up to `lr` over the
    first `warmup` steps ((step + 1) / warmup of it), then a cosine from `lr` to `min_lr` over the rest,
    min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * (step - warmup) / (steps - warmup)))."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def learning_rate(train, step: int, steps: int, steps_per_epoch: int) -> float:
    """The learning rate of optimizer step `step` (0-based) of a schedule `steps` long (`train` is the
    TrainConfig): warmup_cosine changes it every step; the others once per epoch, at the epoch the
    step falls in, exactly as `lr_factor` over the schedule's epochs."""
    if train.lr_schedule == "warmup_cosine":
        return warmup_cosine_lr(step, steps, train.lr, train.warmup_steps, train.min_lr)
    epochs = steps // steps_per_epoch if steps % steps_per_epoch == 0 else steps / steps_per_epoch
    return train.lr * lr_factor(step // steps_per_epoch, epochs, train.lr_schedule, train.milestones, train.gamma)


@dataclass(frozen=True)
class Budget:
    """One training cycle (round): `steps` optimizer steps, `steps_per_epoch` of them per pass over
    the data; the last epoch is partial when a step budget ends inside it."""
    steps: int
    steps_per_epoch: int

    @property
    def epochs(self) -> float:
        """The cycle's length in epochs (a fraction under a step budget that ends inside an epoch)."""
        return self.steps // self.steps_per_epoch if self.steps % self.steps_per_epoch == 0 \
            else self.steps / self.steps_per_epoch

    @property
    def epochs_started(self) -> int:
        """Epochs the cycle runs, its partial last one included."""
        return -(-self.steps // self.steps_per_epoch)

    def epoch_steps(self, epoch: int, first: int = 0) -> range:
        """The cycle's steps (0-based) in epoch `epoch` (0-based), from step `first` on."""
        return range(max(first, epoch * self.steps_per_epoch), min(self.steps, (epoch + 1) * self.steps_per_epoch))

    def end_of(self, epoch: int) -> float:
        """The time in epochs at the end of epoch `epoch` (1-based): `epoch`, or the budget's end."""
        return min(epoch, self.epochs)

    def step_at(self, fraction: float) -> int:
        """The optimizer step at this fraction of the cycle, rounded to the nearest."""
        return round(fraction * self.steps)


def budget(train, steps_per_epoch: int) -> Budget:
    """The cycle of a TrainConfig: `train.steps` steps, or `train.epochs` whole epochs."""
    return Budget(train.steps or train.epochs * steps_per_epoch, steps_per_epoch)
