"""Small statistics for the leaderboard: intervals over seeds, and paired tests on the same test examples.

All functions are pure and seeded. Exact tests use integer arithmetic (checked against scipy in the tests);
the t quantile comes from scipy.
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
    """Exact two-sided p-value of k successes in n fair coin flips: min(1, 2 P(X <= min(k, n-k)))."""
    if n == 0:
        return 1.0
    low = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(low + 1))
    return min(1.0, 2 * tail / 2**n)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact McNemar test: b examples only the first system got right, c only the second."""
    return binomial_two_sided(b, b + c)


def sign_test(differences: Sequence[float]) -> float:
    """Exact sign test of paired differences (ties dropped). On 0/1 correctness this is exact McNemar."""
    d = np.asarray(differences, dtype=float)
    pos, neg = int((d > 0).sum()), int((d < 0).sum())
    return binomial_two_sided(pos, pos + neg)


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
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
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
    per_group = [g[rng.integers(0, len(g), size=(resamples, len(g)))].mean(axis=1) for g in groups]
    means = np.mean(per_group, axis=0)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)
