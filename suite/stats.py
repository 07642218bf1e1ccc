"""Statistics for the report: pure functions over lists of numbers; every test comes from scipy.

Conventions: accuracies are in percent, so every difference is in percentage points. A
two-sample difference is always `mean(a) - mean(b)`. Results that cannot be computed (fewer
than two values a side, no spread at all) are NaN rather than an exception, so one
degenerate group never stops a report.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import optimize, special, stats

NAN = float("nan")


def _array(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"expected a flat list of numbers, got shape {x.shape}")
    return x


ROUNDING = 1e-9  # relative: a spread below this fraction of the values' size is float rounding, not data


def no_spread(values: np.ndarray, *operands: np.ndarray) -> bool:
    """Whether `values` have no spread in their own resolution: a standard deviation of at most
    ROUNDING times the size of the numbers they were computed from (`operands`, else the values).
    Accuracies in percent are multiples of 100 / n_test, at least 1e-7 apart for any test set up to a
    billion examples; differences that are equal up to float rounding differ by 1e-14 of that."""
    scale = max([1.0] + [float(np.max(np.abs(o))) for o in (operands or (values,)) if o.size])
    return values.size < 2 or float(values.std(ddof=1)) <= ROUNDING * scale


def _quiet(fn, *args, **kwargs):
    """Call a scipy test with its precision warnings silenced (tiny samples trigger them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


# --- one sample ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Summary:
    """Descriptive statistics of one group of values."""
    n: int
    mean: float
    sd: float        # sample standard deviation (n - 1 in the denominator)
    sem: float       # standard error of the mean, sd / sqrt(n)
    ci_low: float    # Student-t confidence interval of the mean
    ci_high: float
    min: float
    max: float


def t_interval(mean: float, sem: float, df: float, confidence: float = 0.95) -> tuple[float, float]:
    """`mean -/+ t_{(1+confidence)/2, df} * sem`; a zero standard error gives a zero-width interval."""
    if not (df > 0) or math.isnan(sem):
        return NAN, NAN
    if sem == 0:
        return mean, mean
    low, high = stats.t.interval(confidence, df, loc=mean, scale=sem)
    return float(low), float(high)


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """n, mean, sd (n-1), standard error, Student-t CI of the mean, min and max."""
    x = _array(values)
    if x.size == 0:
        raise ValueError("summarize: no values")
    n, mean = int(x.size), float(x.mean())
    if n < 2:
        return Summary(n, mean, NAN, NAN, NAN, NAN, float(x.min()), float(x.max()))
    sd = float(x.std(ddof=1))
    sem = sd / math.sqrt(n)
    low, high = t_interval(mean, sem, n - 1, confidence)
    return Summary(n, mean, sd, sem, low, high, float(x.min()), float(x.max()))


@dataclass(frozen=True)
class TTest:
    """A t-test of a mean difference: the difference, its confidence interval and the test."""
    diff: float
    ci_low: float
    ci_high: float
    statistic: float
    df: float
    p: float


_UNTESTABLE = TTest(NAN, NAN, NAN, NAN, NAN, NAN)


def one_sample(values: Sequence[float], popmean: float, confidence: float = 0.95) -> TTest:
    """One-sample t-test of `mean(values) == popmean`; diff and CI are of `mean - popmean`."""
    x = _array(values)
    if x.size < 2:
        return _UNTESTABLE
    diff = float(x.mean()) - popmean
    if no_spread(x):  # no spread: t is +-inf (or rounding noise), a p-value would be meaningless
        return TTest(diff, NAN, NAN, NAN, float(x.size - 1), NAN)
    res = _quiet(stats.ttest_1samp, x, popmean)
    ci = res.confidence_interval(confidence)
    return TTest(diff, float(ci.low) - popmean, float(ci.high) - popmean,
                 float(res.statistic), float(res.df), float(res.pvalue))


# --- two samples --------------------------------------------------------------------------------

def welch(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> TTest:
    """Welch's unequal-variance t-test of `mean(a) - mean(b)`, with the Welch-Satterthwaite CI."""
    x, y = _array(a), _array(b)
    if x.size < 2 or y.size < 2:
        return _UNTESTABLE
    diff = float(x.mean() - y.mean())
    if no_spread(x) and no_spread(y):  # scipy would report p = 0 from t = inf (or from rounding noise)
        return TTest(diff, NAN, NAN, NAN, NAN, NAN)
    res = _quiet(stats.ttest_ind, x, y, equal_var=False)
    ci = res.confidence_interval(confidence)
    return TTest(diff, float(ci.low), float(ci.high), float(res.statistic), float(res.df), float(res.pvalue))


def paired(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> TTest:
    """Paired t-test of the per-pair differences `a[i] - b[i]` (pairs in the given order)."""
    x, y = _array(a), _array(b)
    if x.size != y.size:
        raise ValueError(f"paired: {x.size} values against {y.size}")
    if x.size < 2:
        return _UNTESTABLE
    d = x - y
    if no_spread(d, x, y):  # differences equal up to float rounding: t would be rounding noise
        return TTest(float(d.mean()), NAN, NAN, NAN, float(d.size - 1), NAN)
    res = _quiet(stats.ttest_rel, x, y)
    ci = res.confidence_interval(confidence)
    return TTest(float(d.mean()), float(ci.low), float(ci.high), float(res.statistic), float(res.df), float(res.pvalue))


def wilcoxon(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the paired differences (exact for small n).

    With 3 pairs the smallest possible p is 0.25, so this test can never reject at 0.05 there."""
    x, y = _array(a), _array(b)
    if x.size != y.size:
        raise ValueError(f"wilcoxon: {x.size} values against {y.size}")
    if x.size < 2:
        return NAN
    if np.all(np.abs(x - y) <= ROUNDING * max(1.0, float(np.max(np.abs(x))), float(np.max(np.abs(y))))):
        return 1.0  # no difference at all, up to float rounding
    return float(_quiet(stats.wilcoxon, x, y).pvalue)


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test: (U of `a`, p-value); exact for small samples without ties."""
    x, y = _array(a), _array(b)
    if x.size < 2 or y.size < 2:
        return NAN, NAN
    res = _quiet(stats.mannwhitneyu, x, y, alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def hedges_g(a: Sequence[float], b: Sequence[float]) -> float:
    """Hedges' g: Cohen's d with the pooled sd, times the exact small-sample correction
    J(df) = Gamma(df/2) / (sqrt(df/2) * Gamma((df-1)/2)), df = n_a + n_b - 2."""
    x, y = _array(a), _array(b)
    if x.size < 2 or y.size < 2:
        return NAN
    df = x.size + y.size - 2
    pooled = math.sqrt(((x.size - 1) * x.var(ddof=1) + (y.size - 1) * y.var(ddof=1)) / df)
    if no_spread(x) and no_spread(y):
        return NAN
    d = float(x.mean() - y.mean()) / pooled
    j = math.exp(special.gammaln(df / 2) - 0.5 * math.log(df / 2) - special.gammaln((df - 1) / 2))
    return j * d


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order; NaN entries are not part of the family.

    Sorted ascending, p_(i) becomes max_{j<=i} min(1, (m - j + 1) p_(j)), with m the number of
    real p-values."""
    p = [float(v) for v in pvalues]
    family = sorted((v, i) for i, v in enumerate(p) if not math.isnan(v))
    m = len(family)
    out = [NAN] * len(p)
    running = 0.0
    for rank, (value, index) in enumerate(family):
        running = max(running, min(1.0, (m - rank) * value))
        out[index] = running
    return out


@dataclass(frozen=True)
class Tost:
    """Two one-sided tests (Welch) for equivalence of `mean(a) - mean(b)` within +-margin."""
    diff: float
    ci_low: float     # (1 - 2 alpha) confidence interval of the difference
    ci_high: float
    p_lower: float    # H0: diff <= -margin
    p_upper: float    # H0: diff >= +margin
    p: float          # max of the two; equivalence is shown when p < alpha
    equivalent: bool


def tost(a: Sequence[float], b: Sequence[float], margin: float, alpha: float = 0.05) -> Tost:
    """TOST equivalence test with Welch's t: equivalent iff both one-sided tests reject at alpha,
    i.e. iff the (1 - 2 alpha) Welch CI of the difference lies inside (-margin, +margin)."""
    if margin <= 0:
        raise ValueError(f"tost: margin must be positive, got {margin}")
    x, y = _array(a), _array(b)
    w = welch(x, y, confidence=1 - 2 * alpha)
    if math.isnan(w.p):
        return Tost(w.diff, NAN, NAN, NAN, NAN, NAN, False)
    # Shifting a sample by the margin moves the null without touching the variances.
    lower = _quiet(stats.ttest_ind, x + margin, y, equal_var=False, alternative="greater")
    upper = _quiet(stats.ttest_ind, x - margin, y, equal_var=False, alternative="less")
    p = max(float(lower.pvalue), float(upper.pvalue))
    return Tost(w.diff, w.ci_low, w.ci_high, float(lower.pvalue), float(upper.pvalue), p, p < alpha)


# --- power --------------------------------------------------------------------------------------

def power_two_sample(effect: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided two-sample (pooled) t-test with n per group at standardized effect d:

    power = P(T' > t*) + P(T' < -t*), T' ~ noncentral t(df = 2n - 2, nc = d sqrt(n/2)),
    t* = t_{1 - alpha/2, 2n - 2}."""
    if n < 2:
        return NAN
    df = 2 * n - 2
    nc = abs(effect) * math.sqrt(n / 2)  # symmetric in the sign of the effect
    crit = stats.t.ppf(1 - alpha / 2, df)
    far_tail = stats.nct.cdf(-crit, df, nc)
    # scipy returns NaN when this tail underflows (large n or nc); it is then below 1e-15.
    return float(stats.nct.sf(crit, df, nc) + (0.0 if math.isnan(far_tail) else far_tail))


def min_detectable_effect(n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest standardized effect d (difference / sd) that the two-sided two-sample t-test with
    n per group detects with the given power: the root of power_two_sample(d, n, alpha) = power."""
    if n < 2:
        return NAN
    high = 1.0
    while power_two_sample(high, n, alpha) < power:  # n = 2 needs d near 5; grow until bracketed
        high *= 2
    return float(optimize.brentq(lambda d: power_two_sample(d, n, alpha) - power, 0.0, high, xtol=1e-12))


def min_detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimal detectable difference in the units of sd: min_detectable_effect(n) * sd, taking the
    observed sd as the common sd of both arms and n seeds per arm."""
    if n < 2 or math.isnan(sd):
        return NAN
    return min_detectable_effect(n, alpha, power) * sd


def verdict(diff: float, p: float, alpha: float, higher_is_better: bool = True) -> str:
    """'better' / 'worse' (for `a` against `b`, diff = a - b) when p < alpha, else 'no significant difference';
    for a metric where lower is better (a loss) a negative diff is 'better'."""
    if math.isnan(p):
        return "not tested"
    if p < alpha:
        return "better" if (diff > 0) == higher_is_better else "worse"
    return "no significant difference"


# --- one family of comparisons: Holm's verdicts with intervals that agree with them ---------------

def holm_alphas(pvalues: Sequence[float], alpha: float) -> list[float]:
    """Per p-value, the two-sided level its confidence interval uses so that the interval excludes 0
    exactly when Holm's step-down procedure rejects it (NaN entries are not in the family: NaN).

    Sorted ascending, Holm rejects p_(1..r) while p_(k) < alpha / (m - k + 1). A rejected p_(k) gets
    alpha / (m - k + 1), the level of its own step; every p it does not reject gets alpha / (m - r), the
    level of the step where it stopped (p_(k) >= p_(r+1) >= alpha / (m - r), so that interval holds 0)."""
    p = [float(v) for v in pvalues]
    family = sorted((v, i) for i, v in enumerate(p) if not math.isnan(v))
    m = len(family)
    out = [NAN] * len(p)
    rejected = 0
    for k, (value, _) in enumerate(family):
        if value < alpha / (m - k):
            rejected += 1
        else:
            break
    for k, (_, index) in enumerate(family):
        out[index] = alpha / (m - k) if k < rejected else alpha / (m - rejected)
    return out


def power_shift(shift: float, se: float, df: float, alpha: float = 0.05) -> float:
    """Power of a two-sided t-test at level alpha to detect a true difference `shift` whose estimate
    has standard error se and df degrees of freedom: P(T' > t*) + P(T' < -t*), T' ~ nct(df, shift / se)."""
    if not (df > 0) or not (se > 0):
        return NAN
    nc = abs(shift) / se
    crit = stats.t.ppf(1 - alpha / 2, df)
    far_tail = stats.nct.cdf(-crit, df, nc)
    return float(stats.nct.sf(crit, df, nc) + (0.0 if math.isnan(far_tail) else far_tail))


def min_detectable_shift(se: float, df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true difference (units of se's data) a two-sided t-test with this standard error and df
    detects with the given power at level alpha: the root of power_shift(x, se, df, alpha) = power."""
    if not (df > 0) or not (se > 0):
        return NAN
    high = se
    while power_shift(high, se, df, alpha) < power:
        high *= 2
    return float(optimize.brentq(lambda x: power_shift(x, se, df, alpha) - power, 0.0, high, xtol=1e-12 * se))


def paired_se(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(standard error, df) of the mean paired difference a[i] - b[i]."""
    x, y = _array(a), _array(b)
    d = x - y
    if d.size < 2:
        return NAN, NAN
    if no_spread(d, x, y):
        return 0.0, float(d.size - 1)
    return float(d.std(ddof=1)) / math.sqrt(d.size), float(d.size - 1)


def welch_se(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(standard error, Welch-Satterthwaite df) of mean(a) - mean(b)."""
    x, y = _array(a), _array(b)
    if x.size < 2 or y.size < 2:
        return NAN, NAN
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    if no_spread(x) and no_spread(y):
        return 0.0, NAN
    return float(math.sqrt(va + vb)), float((va + vb) ** 2 / (va ** 2 / (x.size - 1) + vb ** 2 / (y.size - 1)))


def wilcoxon_min_p(n: int) -> float:
    """Smallest two-sided p the exact Wilcoxon signed-rank test can give with n pairs: 2 / 2^n."""
    return 2.0 / 2 ** n if n >= 1 else NAN


def mann_whitney_min_p(n_a: int, n_b: int) -> float:
    """Smallest two-sided p the exact Mann-Whitney U test can give with these sizes: 2 / C(n_a + n_b, n_a)."""
    return 2.0 / math.comb(n_a + n_b, n_a) if n_a >= 1 and n_b >= 1 else NAN


def against_published(values: Sequence[float], published: float, spread: float = NAN, runs: int | None = None,
                      confidence: float = 0.95) -> TTest:
    """Our seeds against a published mean. Without a published spread: the one-sample t-test (the
    published value taken as exact). With one: a Welch t-test from summary statistics, the published
    side's variance spread^2 / runs; when the source does not say over how many runs, runs = 1 (its
    spread taken as the uncertainty of the published number itself: wider, never narrower) and the
    df are ours alone (n - 1)."""
    if math.isnan(spread):
        return one_sample(values, published, confidence)
    x = _array(values)
    if x.size < 2:
        return _UNTESTABLE
    diff = float(x.mean()) - published
    va, vb = float(x.var(ddof=1)) / x.size, spread ** 2 / (runs or 1)
    if va + vb == 0:
        return TTest(diff, NAN, NAN, NAN, NAN, NAN)
    se = math.sqrt(va + vb)
    if runs and runs >= 2:
        df = (va + vb) ** 2 / (va ** 2 / (x.size - 1) + vb ** 2 / (runs - 1))
    else:
        df = float(x.size - 1)
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * se
    return TTest(diff, diff - half, diff + half, t, df, p)


# --- paired equivalence and per-example tests ------------------------------------------------------

def paired_tost(a: Sequence[float], b: Sequence[float], margin: float, alpha: float = 0.05) -> Tost:
    """TOST on the paired differences a[i] - b[i] (pairs in the given order): equivalent iff the
    (1 - 2 alpha) paired t interval of the mean difference lies inside (-margin, +margin)."""
    if margin <= 0:
        raise ValueError(f"paired_tost: margin must be positive, got {margin}")
    x, y = _array(a), _array(b)
    d = x - y
    if d.size < 2:
        return Tost(NAN if d.size == 0 else float(d.mean()), NAN, NAN, NAN, NAN, NAN, False)
    diff = float(d.mean())
    se = float(d.std(ddof=1)) / math.sqrt(d.size)
    if no_spread(d, x, y):  # differences equal up to float rounding: no interval to speak of
        return Tost(diff, NAN, NAN, NAN, NAN, NAN, False)
    df = d.size - 1
    p_lower = float(stats.t.sf((diff + margin) / se, df))   # H0: diff <= -margin
    p_upper = float(stats.t.cdf((diff - margin) / se, df))  # H0: diff >= +margin
    half = float(stats.t.ppf(1 - alpha, df)) * se
    p = max(p_lower, p_upper)
    return Tost(diff, diff - half, diff + half, p_lower, p_upper, p, p < alpha)


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test over the same test examples: how often one model alone is right."""
    only_a: int      # examples `a` classifies correctly and `b` does not
    only_b: int      # examples `b` classifies correctly and `a` does not
    n: int           # examples compared
    diff: float      # accuracy(a) - accuracy(b), in percentage points: 100 (only_a - only_b) / n
    p: float         # two-sided exact binomial p of only_a against only_a + only_b at 1/2


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> McNemar:
    """Exact (binomial) McNemar test of two models' per-example correctness on one test set:
    p = min(1, 2 P(X <= min(only_a, only_b))), X ~ Binomial(only_a + only_b, 1/2); 1 with no discordant example."""
    x, y = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"mcnemar: {x.shape} examples against {y.shape}")
    only_a, only_b = int(np.sum(x & ~y)), int(np.sum(~x & y))
    n = int(x.size)
    if n == 0:
        return McNemar(0, 0, 0, NAN, NAN)
    k = only_a + only_b
    p = 1.0 if k == 0 else min(1.0, 2.0 * float(stats.binom.cdf(min(only_a, only_b), k, 0.5)))
    return McNemar(only_a, only_b, n, 100.0 * (only_a - only_b) / n, p)


def paired_examples(correct_a, correct_b, confidence: float = 0.95) -> TTest:
    """Paired t-test over test examples of two sides' seeds (each an (seeds, examples) array of right/wrong,
    seed s of one side paired with seed s of the other): d_i = 100 x the mean over seeds of a[s, i] - b[s, i],
    a one-sample t-test of the d_i against 0 (df = examples - 1). Its diff is the seed-level mean accuracy
    difference in points; its p asks whether that difference exceeds the test set's own sampling noise,
    conditional on the trained networks (with one seed, McNemar's question)."""
    x, y = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"paired_examples: {x.shape} against {y.shape}, expected two (seeds, examples) arrays")
    return one_sample(100.0 * (x.astype(np.float64) - y).mean(axis=0), 0.0, confidence)
