import math

import pytest

from suite.schedules import cubic_sparsity, linear_sparsity, lr_factor


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
