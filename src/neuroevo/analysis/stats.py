"""Pure statistics over per-seed final scores, following the paper's analysis scripts.

Garbus & Pollack (2025) compare conditions at the last generation with a Kruskal–Wallis test over
(dense, factorized, small), pairwise Wilcoxon rank-sum tests (`scipy.stats.ranksums`) and Glass's Δ
with the control's population standard deviation (ddof 0); their curves show mean ± 1.96·SEM over
seeds (the authors' plotting scripts in Jevo.jl's experiments/). We add the Mann–Whitney U test
(exact for small samples, ties included, where the rank-sum's normal approximation is poor), the
Vargha–Delaney A as a bounded effect size beside Glass's Δ, and a Student-t interval for the
tables.
Functions take plain sequences and return floats; NaN stands for "undefined for these samples".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

Z_95 = 1.96  # the paper's band multiplier (normal approximation, whatever the number of seeds)
MIN_SEEDS = 2  # a group's fewest scores for a test: one seed a group gives a p of nothing
EXACT_SPLITS = 20_000  # exact Mann–Whitney up to this many splits (8 + 8 seeds: 12,870)


@dataclass(frozen=True)
class Interval:
    """A mean with its lower and upper bound."""

    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class TestResult:
    """A test statistic and its two-sided p-value."""

    statistic: float
    p_value: float


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Student-t confidence interval of the mean over seeds; bounds are NaN below two values."""
    x = _array(values)
    mean = float(x.mean()) if x.size else math.nan
    if x.size < 2:
        return Interval(mean, math.nan, math.nan)
    sem = float(sps.sem(x))
    if sem == 0.0:
        return Interval(mean, mean, mean)
    low, high = sps.t.interval(confidence, df=x.size - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high))


def normal_band(values: Sequence[float]) -> Interval:
    """The paper's plotted band, mean ± 1.96·SEM (SEM with ddof 1); bounds are NaN below two values."""
    x = _array(values)
    mean = float(x.mean()) if x.size else math.nan
    if x.size < 2:
        return Interval(mean, math.nan, math.nan)
    half = Z_95 * float(sps.sem(x))
    return Interval(mean, mean - half, mean + half)


def kruskal(groups: Sequence[Sequence[float]]) -> TestResult:
    """Kruskal–Wallis H test across groups; NaN when fewer than two groups, a group of fewer
    than MIN_SEEDS scores, or all values tie."""
    arrays = [_array(g) for g in groups]
    if len(arrays) < 2 or any(a.size < MIN_SEEDS for a in arrays) or _all_tied(arrays):
        return TestResult(math.nan, math.nan)
    result = sps.kruskal(*arrays)
    return TestResult(float(result.statistic), float(result.pvalue))


def ranksums(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Wilcoxon rank-sum test (normal approximation, z statistic), exactly as the paper's scripts."""
    x, y = _array(a), _array(b)
    if min(x.size, y.size) < MIN_SEEDS:
        return TestResult(math.nan, math.nan)
    result = sps.ranksums(x, y)
    return TestResult(float(result.statistic), float(result.pvalue))


def mannwhitney(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Two-sided Mann–Whitney U test, exact for small samples, ties included: up to
    EXACT_SPLITS ways of splitting the pooled scores, every split's U (of midranks) is
    enumerated. scipy's default is exact only without ties and otherwise falls back to the
    normal approximation, which at 3 seeds a group halved Atari's p-values (its scores tie on
    plateaus); without ties the two agree. Larger samples: scipy's default."""
    x, y = _array(a), _array(b)
    if min(x.size, y.size) < MIN_SEEDS:
        return TestResult(math.nan, math.nan)
    result = sps.mannwhitneyu(x, y, alternative="two-sided")
    if math.comb(x.size + y.size, x.size) > EXACT_SPLITS:
        return TestResult(float(result.statistic), float(result.pvalue))
    exact = sps.permutation_test(
        (x, y), lambda s, t: sps.mannwhitneyu(s, t).statistic, permutation_type="independent",
        alternative="two-sided", n_resamples=math.inf, vectorized=False)
    return TestResult(float(result.statistic), float(exact.pvalue))


def glass_delta(treatment: Sequence[float], control: Sequence[float]) -> float:
    """Glass's Δ = (mean(treatment) − mean(control)) / std(control, ddof=0); NaN if the control has no spread."""
    x, y = _array(treatment), _array(control)
    if x.size == 0 or y.size == 0:
        return math.nan
    spread = float(y.std(ddof=0))
    if spread == 0.0:
        return math.nan
    return (float(x.mean()) - float(y.mean())) / spread


def vargha_delaney_a(treatment: Sequence[float], control: Sequence[float]) -> float:
    """Vargha–Delaney A = P(treatment run > control run) + ½·P(tie) over all pairs of runs,
    = U / (n_t·n_c) with U the treatment's Mann–Whitney U; NaN if a group has fewer than
    MIN_SEEDS scores (one run a group is a single comparison, as the tests beside it say).

    Glass's Δ, the paper's effect size, divides by the control's spread: with a few seeds whose
    scores sit on one plateau (Frostbite's 250, 270, 250) that spread is tiny and Δ explodes
    (71). A is bounded in [0, 1] (0.5 = no effect, 1 = every treatment run beats every control
    run), depends on the order of the scores alone and so reads with the rank tests beside it.
    """
    x, y = _array(treatment), _array(control)
    if min(x.size, y.size) < MIN_SEEDS:
        return math.nan
    wins = np.sign(x[:, None] - y[None, :])  # (n_t, n_c): +1 treatment higher, 0 tie, −1 lower
    return float((wins.mean() + 1.0) / 2.0)


def finite_mean(values: Sequence[float]) -> float:
    """The mean of the finite values, as every test here sees the group; NaN if none."""
    x = _array(values)
    return float(x.mean()) if x.size else math.nan


def finite_count(values: Sequence[float]) -> int:
    """How many values the tests use (non-finite ones are dropped)."""
    return int(_array(values).size)


def _array(values: Sequence[float]) -> np.ndarray:
    """Finite float values only: a run that diverged to NaN must not poison the group."""
    x = np.asarray(values, dtype=float)
    return x[np.isfinite(x)]


def _all_tied(arrays: list[np.ndarray]) -> bool:
    """Kruskal–Wallis is undefined when every value is equal (scipy returns NaN with a warning)."""
    pooled = np.concatenate(arrays)
    return bool(np.all(pooled == pooled[0]))
