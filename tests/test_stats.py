"""suite.stats against independent computations: textbook formulas written out here, the t
distribution integrated by Simpson's rule, exact tests by enumeration, and G*Power's published
power values."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from suite import stats

A = [92.10, 92.45, 91.80, 92.30]          # accuracies (%), n = 4
B = [91.20, 91.65, 91.05]                 # n = 3


# --- independent reference implementations -------------------------------------------------------

def t_pdf(x: float, df: float) -> float:
    """Student t density: Gamma((v+1)/2) / (sqrt(v pi) Gamma(v/2)) (1 + x^2/v)^(-(v+1)/2)."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c) * (1 + x * x / df) ** (-(df + 1) / 2)


def t_cdf(x: float, df: float, steps: int = 4000) -> float:
    """1/2 + integral_0^x of the density, by composite Simpson's rule (error far below 1e-10 here)."""
    a = abs(x)
    h = a / steps
    total = t_pdf(0, df) + t_pdf(a, df) + sum((4 if i % 2 else 2) * t_pdf(i * h, df) for i in range(1, steps))
    return 0.5 + math.copysign(total * h / 3, x)


def t_two_sided_p(t: float, df: float) -> float:
    return 2 * (1 - t_cdf(abs(t), df))


def t_ppf(q: float, df: float) -> float:
    """Quantile by bisection on t_cdf (q > 1/2)."""
    lo, hi = 0.0, 100.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < q else (lo, mid)
    return (lo + hi) / 2


def mean(x):
    return sum(x) / len(x)


def var(x):
    m = mean(x)
    return sum((v - m) ** 2 for v in x) / (len(x) - 1)


def test_reference_t_matches_printed_tables():
    # t_{0.975, df} from any statistics table: 4.303 (2), 3.182 (3), 2.776 (4), 1.960 (infinity)
    assert t_ppf(0.975, 2) == pytest.approx(4.303, abs=5e-4)
    assert t_ppf(0.975, 3) == pytest.approx(3.182, abs=5e-4)
    assert t_ppf(0.975, 4) == pytest.approx(2.776, abs=5e-4)
    # df = 2 has a closed form: F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    assert t_cdf(1.7, 2) == pytest.approx(0.5 + 1.7 / (2 * math.sqrt(2 + 1.7 ** 2)), abs=1e-12)


# --- one sample ----------------------------------------------------------------------------------

def test_summarize_is_the_textbook_t_interval():
    s = stats.summarize(A)
    sd = math.sqrt(var(A))
    half = t_ppf(0.975, 3) * sd / math.sqrt(4)
    assert s.n == 4 and s.mean == pytest.approx(mean(A), abs=1e-12)
    assert s.sd == pytest.approx(sd, rel=1e-12) and s.sem == pytest.approx(sd / 2, rel=1e-12)
    assert s.ci_low == pytest.approx(mean(A) - half, rel=1e-10)
    assert s.ci_high == pytest.approx(mean(A) + half, rel=1e-10)
    assert (s.min, s.max) == (91.80, 92.45)


def test_summarize_one_value_has_no_spread_and_no_interval():
    s = stats.summarize([90.4])
    assert (s.n, s.mean, s.min, s.max) == (1, 90.4, 90.4, 90.4)
    assert all(math.isnan(v) for v in (s.sd, s.sem, s.ci_low, s.ci_high))
    with pytest.raises(ValueError, match="no values"):
        stats.summarize([])


def test_zero_spread_gives_a_zero_width_interval():
    s = stats.summarize([91.0, 91.0, 91.0])
    assert (s.sd, s.ci_low, s.ci_high) == (0.0, 91.0, 91.0)


def test_one_sample_t_test():
    r = stats.one_sample(A, 92.0)
    t = (mean(A) - 92.0) / (math.sqrt(var(A)) / 2)
    half = t_ppf(0.975, 3) * math.sqrt(var(A)) / 2
    assert r.statistic == pytest.approx(t, rel=1e-10) and r.df == 3
    assert r.p == pytest.approx(t_two_sided_p(t, 3), abs=1e-10)
    assert r.diff == pytest.approx(mean(A) - 92.0, abs=1e-12)
    assert r.ci_low == pytest.approx(r.diff - half, abs=1e-9) and r.ci_high == pytest.approx(r.diff + half, abs=1e-9)
    assert math.isnan(stats.one_sample([92.0], 91.0).p)


# --- two samples ---------------------------------------------------------------------------------

def test_welch_t_test_and_interval():
    r = stats.welch(A, B)
    va, vb = var(A) / 4, var(B) / 3
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 2)  # Welch-Satterthwaite
    diff = mean(A) - mean(B)
    assert r.diff == pytest.approx(diff, rel=1e-12)
    assert r.statistic == pytest.approx(diff / se, rel=1e-10) and r.df == pytest.approx(df, rel=1e-10)
    assert r.p == pytest.approx(t_two_sided_p(diff / se, df), abs=1e-10)
    half = t_ppf(0.975, df) * se
    assert r.ci_low == pytest.approx(diff - half, abs=1e-9) and r.ci_high == pytest.approx(diff + half, abs=1e-9)


def test_welch_needs_two_values_and_some_spread():
    assert math.isnan(stats.welch([92.0], B).p)
    degenerate = stats.welch([91.0, 91.0], [92.0, 92.0])
    assert degenerate.diff == -1.0 and math.isnan(degenerate.p)  # not scipy's p = 0 from t = -inf


X = [92.10, 92.45, 91.80, 92.30, 92.00]
Y = [91.20, 91.65, 91.05, 91.90, 91.85]   # per-seed partner of X


def test_paired_t_test():
    d = [x - y for x, y in zip(X, Y)]
    t = mean(d) / (math.sqrt(var(d)) / math.sqrt(5))
    r = stats.paired(X, Y)
    assert r.diff == pytest.approx(mean(d), rel=1e-12) and r.df == 4
    assert r.statistic == pytest.approx(t, rel=1e-10)
    assert r.p == pytest.approx(t_two_sided_p(t, 4), abs=1e-10)
    half = t_ppf(0.975, 4) * math.sqrt(var(d)) / math.sqrt(5)
    assert r.ci_low == pytest.approx(mean(d) - half, abs=1e-9)
    with pytest.raises(ValueError, match="5 values against 4"):
        stats.paired(X, Y[:4])
    assert math.isnan(stats.paired([1.0, 2.0], [0.0, 1.0]).p)  # identical differences: no spread


def wilcoxon_exact(d: list[float]) -> float:
    """Two-sided exact signed-rank p by enumerating all 2^n sign patterns (no ties, no zeros)."""
    ranks = {v: i + 1 for i, v in enumerate(sorted(abs(x) for x in d))}
    r_plus = sum(ranks[abs(x)] for x in d if x > 0)
    w = min(r_plus, len(d) * (len(d) + 1) // 2 - r_plus)
    n = len(d)
    count = sum(1 for signs in itertools.product((0, 1), repeat=n)
                if sum(r * s for r, s in zip(range(1, n + 1), signs)) <= w)
    return min(1.0, 2 * count / 2 ** n)


def test_wilcoxon_signed_rank_exact():
    assert stats.wilcoxon(X, Y) == pytest.approx(2 / 32)  # all five differences positive
    a = [92.9, 91.2, 92.75, 92.4, 91.85, 92.3]
    b = [92.0, 92.0, 92.0, 92.0, 92.0, 92.0]
    d = [x - y for x, y in zip(a, b)]
    assert stats.wilcoxon(a, b) == pytest.approx(wilcoxon_exact(d), abs=1e-12)
    assert stats.wilcoxon([1.0, 2.0, 3.0], [0.0, 1.0, 2.5]) == pytest.approx(0.25)  # 3 pairs: never below 0.25
    assert stats.wilcoxon([1.0, 2.0], [1.0, 2.0]) == 1.0


def test_mann_whitney_exact():
    a, b = A, [91.20, 92.35, 91.05]
    pooled = sorted(a + b)
    rank_sum = sum(pooled.index(v) + 1 for v in a)          # no ties
    u = rank_sum - len(a) * (len(a) + 1) / 2
    us = [sum(c) - 10 for c in itertools.combinations(range(1, 8), 4)]  # U under H0 for every rank split
    p = min(1.0, 2 * min(sum(x <= u for x in us), sum(x >= u for x in us)) / len(us))
    got_u, got_p = stats.mann_whitney(a, b)
    assert got_u == u == 9
    assert got_p == pytest.approx(p, abs=1e-12)
    assert all(math.isnan(v) for v in stats.mann_whitney([1.0], b))


def test_hedges_g():
    df = 4 + 3 - 2
    pooled = math.sqrt((3 * var(A) + 2 * var(B)) / df)
    j = math.gamma(df / 2) / (math.sqrt(df / 2) * math.gamma((df - 1) / 2))
    g = stats.hedges_g(A, B)
    assert g == pytest.approx(j * (mean(A) - mean(B)) / pooled, rel=1e-12)
    assert j == pytest.approx(1 - 3 / (4 * df - 1), abs=2e-3)  # the usual approximation
    assert stats.hedges_g(B, A) == pytest.approx(-g, rel=1e-12)
    assert math.isnan(stats.hedges_g([1.0, 1.0], [1.0, 1.0]))


def test_holm_hand_computed():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    out = stats.holm([0.02, float("nan"), 0.04])          # NaN is not part of the family (m = 2)
    assert out[0] == pytest.approx(0.04) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0]           # capped at 1, then monotone
    assert stats.holm([]) == []


# --- equivalence ---------------------------------------------------------------------------------

def tost_reference(a, b, margin):
    va, vb = var(a) / len(a), var(b) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    diff = mean(a) - mean(b)
    p_lower = 1 - t_cdf((diff + margin) / se, df)   # H0: diff <= -margin
    p_upper = t_cdf((diff - margin) / se, df)       # H0: diff >= +margin
    return diff, se, df, p_lower, p_upper


def test_tost_shows_equivalence_for_tight_groups():
    a, b = [92.00, 92.04, 92.02, 92.01], [92.02, 92.00, 92.03, 92.01]
    diff, se, df, p_lower, p_upper = tost_reference(a, b, 0.1)
    r = stats.tost(a, b, 0.1, 0.05)
    assert r.p_lower == pytest.approx(p_lower, abs=1e-10) and r.p_upper == pytest.approx(p_upper, abs=1e-10)
    assert r.p == pytest.approx(max(p_lower, p_upper), abs=1e-10) and r.equivalent is True
    half = t_ppf(0.95, df) * se                     # the 90% CI sits inside +-0.1
    assert r.ci_low == pytest.approx(diff - half, abs=1e-9) and r.ci_high == pytest.approx(diff + half, abs=1e-9)
    assert -0.1 < r.ci_low < r.ci_high < 0.1


def test_tost_with_three_noisy_seeds_does_not_show_equivalence():
    a, b = [92.10, 92.45, 91.80], [92.80, 92.65, 92.95]
    _, _, _, p_lower, p_upper = tost_reference(a, b, 0.1)
    r = stats.tost(a, b, 0.1, 0.05)
    assert r.p == pytest.approx(max(p_lower, p_upper), abs=1e-10) and r.equivalent is False
    assert math.isnan(stats.tost([92.0], b, 0.1).p) and stats.tost([92.0], b, 0.1).equivalent is False
    with pytest.raises(ValueError, match="margin must be positive"):
        stats.tost(a, b, 0.0)


# --- power ---------------------------------------------------------------------------------------

def test_power_matches_gpower():
    # G*Power 3, t-test for two independent means, two-tailed, alpha 0.05: d = 0.5 with 64 per group
    # gives actual power 0.8014596; d = 0.8 with 26 per group gives 0.8074866.
    assert stats.power_two_sample(0.5, 64) == pytest.approx(0.8014596, abs=1e-7)
    assert stats.power_two_sample(0.8, 26) == pytest.approx(0.8074866, abs=1e-7)
    assert stats.power_two_sample(0.0, 10) == pytest.approx(0.05, abs=1e-12)  # no effect: power = alpha


def test_min_detectable_effect_solves_the_power_equation():
    for n in (2, 3, 5, 20):
        d = stats.min_detectable_effect(n)
        assert stats.power_two_sample(d, n) == pytest.approx(0.8, abs=1e-9)
    # one seed more can only help; large n approaches the normal formula (z_0.975 + z_0.8) sqrt(2/n)
    assert stats.min_detectable_effect(3) < stats.min_detectable_effect(2)
    normal = (1.959963984540054 + 0.8416212335729143) * math.sqrt(2 / 200)
    assert normal < stats.min_detectable_effect(200) < normal * 1.005
    assert stats.min_detectable_difference(0.3, 3) == pytest.approx(0.3 * stats.min_detectable_effect(3), rel=1e-12)
    assert math.isnan(stats.min_detectable_difference(0.3, 1))
    assert math.isnan(stats.min_detectable_difference(float("nan"), 3))


def test_verdict_words():
    assert stats.verdict(0.5, 0.01, 0.05) == "better"
    assert stats.verdict(-0.5, 0.01, 0.05) == "worse"
    assert stats.verdict(-0.5, 0.05, 0.05) == "no significant difference"  # p must be below alpha
    assert stats.verdict(0.5, float("nan"), 0.05) == "not tested"


# --- Holm-consistent intervals, power of the test actually used, published spreads -------------------

def test_holm_alphas_give_each_step_its_level_and_the_stopped_rest_the_stopping_level():
    # m = 4 (NaN is not in the family): 0.001 < 0.05/4 and 0.01 < 0.05/3 reject; 0.03 >= 0.05/2 stops
    levels = stats.holm_alphas([0.03, 0.001, float("nan"), 0.01, 0.2], 0.05)
    assert levels[0] == 0.05 / 2 and levels[1] == 0.05 / 4 and levels[3] == 0.05 / 3 and levels[4] == 0.05 / 2
    assert math.isnan(levels[2])
    adjusted = stats.holm([0.03, 0.001, float("nan"), 0.01, 0.2])
    for p, level, p_adj in zip([0.03, 0.001, 0.01, 0.2], [levels[0], levels[1], levels[3], levels[4]],
                               [adjusted[0], adjusted[1], adjusted[3], adjusted[4]]):
        assert (p < level) == (p_adj < 0.05)  # the CI at `level` excludes 0 exactly when Holm rejects


def test_min_detectable_shift_is_the_root_of_the_noncentral_t_power():
    se, df, level = 0.2, 4.0, 0.0125
    x = stats.min_detectable_shift(se, df, level, 0.8)
    crit = sps.t.ppf(1 - level / 2, df)
    assert sps.nct.sf(crit, df, x / se) + sps.nct.cdf(-crit, df, x / se) == pytest.approx(0.8, abs=1e-9)
    # the two-sample pooled case is the old formula: se = sd sqrt(2/n), df = 2n - 2
    assert stats.min_detectable_shift(1.0 * math.sqrt(2 / 5), 8, 0.05) == pytest.approx(
        stats.min_detectable_difference(1.0, 5, 0.05), rel=1e-9)


def test_against_published_adds_the_published_variance():
    ours = [94.1, 94.5, 93.8, 94.0, 94.3]
    plain = stats.against_published(ours, 92.19)
    assert plain.p == pytest.approx(sps.ttest_1samp(ours, 92.19).pvalue, rel=1e-12)
    with_runs = stats.against_published(ours, 92.19, 0.12, runs=3)
    ref = sps.ttest_ind_from_stats(np.mean(ours), np.std(ours, ddof=1), 5, 92.19, 0.12, 3, equal_var=False)
    assert with_runs.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert with_runs.p == pytest.approx(ref.pvalue, rel=1e-10)
    one = stats.against_published(ours, 92.19, 0.12)  # runs unknown: the spread itself, our df
    se = math.sqrt(np.var(ours, ddof=1) / 5 + 0.12 ** 2)
    assert one.statistic == pytest.approx((np.mean(ours) - 92.19) / se, rel=1e-12) and one.df == 4
    assert one.ci_high - one.ci_low == pytest.approx(2 * sps.t.ppf(0.975, 4) * se, rel=1e-12)


def test_smallest_possible_p_of_the_rank_tests():
    assert stats.wilcoxon_min_p(5) == 0.0625 and stats.wilcoxon_min_p(3) == 0.25
    assert stats.mann_whitney_min_p(5, 5) == pytest.approx(2 / 252)
    assert stats.wilcoxon([1, 2, 3, 4, 5], [0, 0, 0, 0, 0]) == pytest.approx(0.0625)


def test_differences_equal_up_to_float_rounding_have_no_spread():
    """Issue 25, case 3: one test example (0.01 points of 10,000) below on every seed gives differences
    with sd 7.8e-15 from float rounding; scipy's t of 2.9e12 said "worse, p <0.001". No spread within the
    values' own resolution: not tested, as exact differences are."""
    ks = [9796, 9821, 9750, 9803, 9788]
    a = [100 * k / 10000 for k in ks]
    b = [100 * (k - 1) / 10000 for k in ks]
    d = np.array(a) - np.array(b)
    assert 0 < float(d.std(ddof=1)) < 1e-14  # rounding, not data
    t = stats.paired(a, b)
    assert math.isnan(t.p) and math.isnan(t.statistic) and t.df == 4
    assert t.diff == pytest.approx(0.01, abs=1e-12)
    assert stats.verdict(t.diff, t.p, 0.05) == "not tested"
    assert stats.paired_se(a, b) == (0.0, 4.0)
    assert stats.wilcoxon(a, [x + 1e-13 for x in a]) == 1.0  # no difference at all, up to rounding
    assert math.isnan(stats.welch([1.0] * 3, [1.0, 1.0, 1.0 + 2e-16]).p)  # both sides: no spread
    assert not math.isnan(stats.one_sample(a, 0.0).p)  # the accuracies themselves spread: tested
    real = stats.paired(a, [x - 0.01 * (i % 2 + 1) for i, x in enumerate(a)])  # 1 or 2 examples: spread
    assert not math.isnan(real.p)


def test_paired_tost_hand_computed():
    # differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, se 0.1 / sqrt(3), df 2
    a, b = [90.1, 90.2, 90.3], [90.0, 90.0, 90.0]
    se = 0.1 / math.sqrt(3)
    r = stats.paired_tost(a, b, margin=0.5, alpha=0.05)
    assert r.diff == pytest.approx(0.2, abs=1e-12)
    assert r.p_upper == pytest.approx(sps.t.cdf((0.2 - 0.5) / se, 2), rel=1e-9)  # t = -5.196
    assert r.p_lower == pytest.approx(sps.t.sf((0.2 + 0.5) / se, 2), rel=1e-9)   # t = 12.12
    assert (0.2 - 0.5) / se == pytest.approx(-3 * math.sqrt(3), rel=1e-12)
    half = math.sqrt(2 * 0.9 ** 2 / (1 - 0.9 ** 2)) * se  # t_{0.95, 2} = sqrt(2 q^2 / (1 - q^2)), q = 2 * 0.95 - 1
    assert (r.ci_low, r.ci_high) == (pytest.approx(0.2 - half, abs=1e-9), pytest.approx(0.2 + half, abs=1e-9))
    assert r.p == r.p_upper and r.equivalent is (r.p_upper < 0.05)
    # Student t with 2 df has cdf(t) = 1/2 + t / (2 sqrt(2 + t^2)): at t = -3 sqrt(3), 1/2 - 3 sqrt(3) / (2 sqrt(29))
    assert r.p_upper == pytest.approx(0.5 - 3 * math.sqrt(3) / (2 * math.sqrt(29)), rel=1e-12) and r.equivalent is True
    # margin 0.3: the 90% interval [0.031, 0.369] crosses +0.3, not shown
    assert stats.paired_tost(a, b, margin=0.3).equivalent is False
    assert math.isnan(stats.paired_tost([1.0], [0.0], 0.5).p)
    assert math.isnan(stats.paired_tost([1.0, 2.0], [0.0, 1.0], 0.5).p)  # no spread of the differences
    with pytest.raises(ValueError):
        stats.paired_tost(a, b, 0.0)


def test_paired_examples_hand_computed():
    # 2 seeds x 4 examples: a - b per seed [0, 1, 0, 0] and [1, 0, -1, 0]; per example, x 100, mean over seeds:
    # d = [50, 50, -50, 0], mean 12.5, sd = sqrt((37.5^2 * 2 + 62.5^2 + 12.5^2) / 3) = 47.87; t = 12.5 / (sd / 2)
    a = [[1, 1, 0, 1], [1, 0, 0, 1]]
    b = [[1, 0, 0, 1], [0, 0, 1, 1]]
    t = stats.paired_examples([[bool(v) for v in s] for s in a], [[bool(v) for v in s] for s in b])
    sd = math.sqrt((2 * 37.5 ** 2 + 62.5 ** 2 + 12.5 ** 2) / 3)
    assert t.diff == 12.5 and t.df == 3.0
    assert t.statistic == pytest.approx(12.5 / (sd / 2), rel=1e-12)
    assert t.p == pytest.approx(2 * sps.t.sf(12.5 / (sd / 2), 3), rel=1e-9)
    one = stats.paired_examples([[True] * 9 + [False]], [[True] * 5 + [False] * 5])  # one seed: McNemar's Δ
    assert one.diff == pytest.approx(stats.mcnemar([True] * 9 + [False], [True] * 5 + [False] * 5).diff) == 40.0
    with pytest.raises(ValueError):
        stats.paired_examples([[True, False]], [[True]])


def test_mcnemar_exact_hand_computed():
    # 10 examples: both right on 3, only a on 6, only b on 1: X ~ Bin(7, 1/2), P(X <= 1) = (1 + 7) / 128
    a = [1, 1, 1] + [1] * 6 + [0]
    b = [1, 1, 1] + [0] * 6 + [1]
    r = stats.mcnemar([bool(v) for v in a], [bool(v) for v in b])
    assert (r.only_a, r.only_b, r.n) == (6, 1, 10)
    assert r.diff == pytest.approx(50.0, abs=1e-12)   # 100 (6 - 1) / 10 points
    assert r.p == pytest.approx(16 / 128, abs=1e-15)
    same = stats.mcnemar([True, False], [True, False])
    assert (same.only_a, same.only_b, same.p, same.diff) == (0, 0, 1.0, 0.0)
    assert stats.mcnemar([True, False, True], [False, True, True]).p == 1.0  # 1 vs 1: 2 * P(X <= 1 | 2) = 1.5 -> 1
    with pytest.raises(ValueError):
        stats.mcnemar([True], [True, False])
