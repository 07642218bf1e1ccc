"""Sparsity and learning-rate schedules: pure functions of the epoch (so a resumed run needs no state)."""
from __future__ import annotations

import math


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
