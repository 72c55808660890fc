"""Intervals over seeds: plain functions of the values one claim gives on each seed.

Which interval fits which outcome (the report's rule, written once here):

- ``"t"``: an unbounded, roughly symmetric quantity, e.g. a paired difference of test errors:
  the mean and its Student t interval (``scipy.stats.t``).
- ``"bootstrap"``: a bounded, heavy-tailed or ratio quantity (an error rate, a norm ratio, a
  span): the mean and its percentile bootstrap interval (``scipy.stats.bootstrap``, a fixed
  generator: the same values give the same interval). A resampled mean never leaves the range
  of the values, so the interval respects the quantity's support where a t interval would not.
- ``"exact"``: a yes/no outcome per seed (reaches 5%, trains, diverges): k of n, and the
  Clopper-Pearson interval of the proportion (``scipy.stats.binomtest``).

Values that are all the same (one measurement repeated on every seed) get no interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

LEVEL = 0.95
METHODS = ("t", "bootstrap", "exact")
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0  # fixed: a report is a function of its runs


def t_quantile(p: float, df: int) -> float:
    """Student's t distribution's p-quantile with ``df`` degrees of freedom."""
    return float(sps.t.ppf(p, df))


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """The mean of independent values and its two-sided t interval; NaN for fewer than two
    values or any NaN among them."""
    v = np.asarray(values, dtype=float)
    if v.size < 2 or np.isnan(v).any():
        return math.nan, math.nan, math.nan
    half = t_quantile(0.5 + level / 2, v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    centre = float(v.mean())
    return centre, centre - half, centre + half


def bootstrap_interval(values: Sequence[float],
                       level: float = LEVEL) -> tuple[float, float, float]:
    """The mean and its percentile bootstrap interval; NaN for fewer than two values or any
    NaN among them; the mean itself, twice, when every value is the same."""
    v = np.asarray(values, dtype=float)
    if v.size < 2 or np.isnan(v).any():
        return math.nan, math.nan, math.nan
    centre = float(v.mean())
    if np.ptp(v) == 0:
        return centre, centre, centre
    result = sps.bootstrap((v,), np.mean, confidence_level=level, method="percentile",
                           n_resamples=BOOTSTRAP_RESAMPLES,
                           rng=np.random.default_rng(BOOTSTRAP_SEED))
    ci = result.confidence_interval
    return centre, float(ci.low), float(ci.high)


def exact_interval(successes: int, trials: int,
                   level: float = LEVEL) -> tuple[float, float, float]:
    """k of n: the proportion and its Clopper-Pearson interval; NaN for no trials."""
    if trials <= 0:
        return math.nan, math.nan, math.nan
    ci = sps.binomtest(successes, trials).proportion_ci(confidence_level=level, method="exact")
    return successes / trials, float(ci.low), float(ci.high)


def interval(values: Sequence[float], method: str,
             level: float = LEVEL) -> tuple[float, float, float]:
    """``values`` (one per seed, NaN-free) summarized by ``method`` (one of METHODS); an
    ``exact`` method reads each value as yes (1) or no (0)."""
    if method == "t":
        return t_interval(values, level)
    if method == "bootstrap":
        return bootstrap_interval(values, level)
    if method == "exact":
        if any(v not in (0.0, 1.0) for v in values):
            raise ValueError(f"an exact interval takes yes/no outcomes (1 or 0), got {values}")
        return exact_interval(int(sum(values)), len(values), level)
    raise ValueError(f"interval method must be one of {METHODS}, got {method!r}")
