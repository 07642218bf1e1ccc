import math

import pytest

from suite.experiment import load_config
from suite.schedules import Budget, budget, cubic_sparsity, learning_rate, linear_sparsity, lr_factor, warmup_cosine_lr


def test_linear_schedule_hand_values():
    # s(t) = 0.1 + (0.9 - 0.1) * (t - 2) / (10 - 2)
    assert linear_sparsity(2, 0.1, 0.9, 2, 10) == 0.1
    assert linear_sparsity(6, 0.1, 0.9, 2, 10) == pytest.approx(0.5, abs=1e-15)
    assert linear_sparsity(10, 0.1, 0.9, 2, 10) == 0.9
    assert linear_sparsity(0, 0.1, 0.9, 2, 10) == 0.1   # clamped before t_start
    assert linear_sparsity(50, 0.1, 0.9, 2, 10) == 0.9  # clamped after t_end


def test_linear_schedule_instant_when_start_equals_end():
    assert linear_sparsity(4.999, 0.0, 0.8, 5, 5) == 0.0
    assert linear_sparsity(5, 0.0, 0.8, 5, 5) == 0.8


def test_cubic_schedule_zhu_gupta_hand_values():
    # s_f + (s_i - s_f) (1 - (t - t0) / n)^3 with s_i=0, s_f=0.8, t0=0, n=10
    assert cubic_sparsity(5, 0.0, 0.8, 0, 10) == pytest.approx(0.8 - 0.8 * 0.125, abs=1e-15)
    assert cubic_sparsity(0, 0.0, 0.8, 0, 10) == 0.0
    assert cubic_sparsity(10, 0.0, 0.8, 0, 10) == 0.8
    # cubic prunes faster early than linear
    assert cubic_sparsity(2, 0.0, 0.8, 0, 10) > linear_sparsity(2, 0.0, 0.8, 0, 10)


def test_lr_factors():
    assert lr_factor(0, 200, "cosine") == 1.0
    assert lr_factor(100, 200, "cosine") == pytest.approx(0.5, abs=1e-15)
    assert lr_factor(50, 200, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)), abs=1e-15)
    assert lr_factor(79, 160, "step", (80, 120), 0.1) == 1.0
    assert lr_factor(80, 160, "step", (80, 120), 0.1) == pytest.approx(0.1)
    assert lr_factor(120, 160, "step", (80, 120), 0.1) == pytest.approx(0.01)
    assert lr_factor(7, 10, "constant") == 1.0


def test_warmup_cosine_hand_values():
    # 4 warm-up steps to lr 1.0, then a cosine over the other 8 steps to 0.1
    lr = [warmup_cosine_lr(s, 12, 1.0, 4, 0.1) for s in range(12)]
    assert lr[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lr[4] == 1.0                                  # the cosine starts at the top
    assert lr[6] == 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 2 / 8))
    assert lr[8] == pytest.approx(0.55, abs=1e-15)       # halfway: the mean of lr and min_lr
    assert lr[11] == 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 7 / 8))
    assert warmup_cosine_lr(0, 10, 0.5, 0, 0.0) == 0.5   # no warm-up


def test_per_epoch_schedules_in_steps_are_the_epoch_values():
    cfg = load_config(None, ["train.epochs=4", "train.lr=0.1"]).train  # cosine, once per epoch
    values = [learning_rate(cfg, step, 4 * 3, 3) for step in range(12)]  # 3 steps per epoch
    assert values == [0.1 * lr_factor(step // 3, 4, "cosine") for step in range(12)]
    assert values[3] == values[5] == 0.1 * 0.5 * (1 + math.cos(math.pi / 4))
    step = load_config(None, ["train.epochs=4", "train.lr_schedule=step", "train.milestones=[2]"]).train
    assert [learning_rate(step, s, 12, 3) for s in (5, 6)] == [0.1, 0.1 * 0.1]


def test_a_budget_in_steps_ends_inside_an_epoch():
    b = Budget(20, 8)
    assert (b.epochs, b.epochs_started) == (2.5, 3)
    assert [b.epoch_steps(e) for e in range(3)] == [range(0, 8), range(8, 16), range(16, 20)]
    assert b.epoch_steps(0, first=5) == range(5, 8) and b.epoch_steps(1, first=5) == range(8, 16)
    assert [b.end_of(e) for e in (1, 2, 3)] == [1, 2, 2.5]
    assert (b.step_at(0.5), b.step_at(0.33)) == (10, 7)
    assert Budget(24, 8).epochs == 3 and isinstance(Budget(24, 8).epochs, int)  # whole epochs stay integers
    assert budget(load_config(None, ["train.epochs=3"]).train, 8) == Budget(24, 8)
    assert budget(load_config(None, ["train.steps=20"]).train, 8) == Budget(20, 8)


def test_exponential_schedule_hand_values():
    # density 1 - s decays geometrically from 1 - s_i to 1 - s_f: s_i=0, s_f=0.99, halfway density 0.01^0.5 = 0.1
    from suite.schedules import exponential_sparsity
    assert exponential_sparsity(5, 0.0, 0.99, 0, 10) == pytest.approx(0.9, abs=1e-15)
    assert exponential_sparsity(0, 0.0, 0.99, 0, 10) == 0.0
    assert exponential_sparsity(10, 0.0, 0.99, 0, 10) == 0.99
    assert exponential_sparsity(-3, 0.0, 0.99, 0, 10) == 0.0   # clamped before t_start
    assert exponential_sparsity(12, 0.0, 0.99, 0, 10) == 0.99  # clamped after t_end
    # s_i = 0.5, s_f = 0.98, a quarter of the way from t=2 to t=10: 1 - 0.5 * 0.04^0.25 = 1 - 0.5 * sqrt(0.2)
    assert exponential_sparsity(4, 0.5, 0.98, 2, 10) == pytest.approx(1 - 0.5 * math.sqrt(0.2), abs=1e-15)
    # the same fraction of the survivors goes in each equal stretch: density ratios over [0,2] and [8,10] agree
    d = [1 - exponential_sparsity(t, 0.0, 0.98, 0, 10) for t in (0, 2, 8, 10)]
    assert d[1] / d[0] == pytest.approx(d[3] / d[2], rel=1e-12) == pytest.approx(0.02 ** 0.2, rel=1e-12)
    assert exponential_sparsity(4.999, 0.0, 0.8, 5, 5) == 0.0 and exponential_sparsity(5, 0.0, 0.8, 5, 5) == 0.8


def test_every_schedule_is_a_valid_config_choice():
    from suite import experiment as E
    from suite.errors import ConfigError
    assert E.load_config(None, ["prune.schedule=exponential"], "progressive").prune.schedule == "exponential"
    with pytest.raises(ConfigError, match="prune.schedule: 'quadratic' is not one of linear, cubic, exponential"):
        E.load_config(None, ["prune.schedule=quadratic"], "progressive")
