"""Small statistics for the evaluator and the leaderboard: bootstrap intervals, intervals over seeds, and paired
tests on the same test examples.

All functions are pure and seeded. The exact tests and the t quantile are scipy's (`scipy.stats`); the bootstraps
share one resampling (`bootstrap_means`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom."""
    if df < 1:
        raise ValueError("df must be >= 1")
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95% t interval of the mean of independent runs (e.g. seeds); one value gives
    (value, nan, nan)."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    m = float(x.mean())
    if len(x) == 1:
        return (m, math.nan, math.nan)
    half = t975(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return (m, m - half, m + half)


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n fair coin flips (`scipy.stats.binomtest`); n = 0 gives 1."""
    if n == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(k, n, 0.5).pvalue)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact McNemar test: the binomial test of the discordant pairs, b examples only the first system got right,
    c only the second."""
    return binomial_two_sided(b, b + c)


def sign_test(differences: Sequence[float]) -> float:
    """Exact sign test of paired differences (ties dropped). On 0/1 correctness this is exact McNemar."""
    d = np.asarray(differences, dtype=float)
    pos, neg = int((d > 0).sum()), int((d < 0).sum())
    return binomial_two_sided(pos, pos + neg)


def bootstrap_means(x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The means of `resamples` resamples of `x` with replacement (the one resampling of every bootstrap here)."""
    return x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)


def bootstrap_ci(values: Sequence[float], *, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of a mean (e.g. of 0/1 outcomes; seeded: the same data, the same
    interval). The one-group case of `stratified_bootstrap_ci`."""
    return stratified_bootstrap_ci([values], resamples=resamples, seed=seed)


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], *, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, float, float]:
    """Paired bootstrap over examples of mean(a) - mean(b): (delta, 95% low, 95% high, two-sided p).

    The p-value is twice the share of resampled differences on the other side of zero (at most 1); with
    identical systems it is 1.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError("paired samples must have the same length")
    if len(x) == 0:
        return (math.nan, math.nan, math.nan, math.nan)
    d = x - y
    delta = float(d.mean())
    means = bootstrap_means(d, resamples, np.random.default_rng(seed))
    lo, hi = np.percentile(means, [2.5, 97.5])
    if delta == 0 and not d.any():
        return (0.0, float(lo), float(hi), 1.0)
    other = (means <= 0).mean() if delta > 0 else (means >= 0).mean()
    return (delta, float(lo), float(hi), float(min(1.0, 2 * other)))


def stratified_bootstrap_ci(
    groups: Sequence[Sequence[float]], *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% interval of the mean over groups (tasks) of each group's mean, resampling within each group."""
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.mean([bootstrap_means(g, resamples, rng) for g in groups], axis=0)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)
