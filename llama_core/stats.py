"""Honest error bars for small samples: one seed is not an experiment.

Means with Student-t 95% confidence intervals, and paired differences (variant minus
baseline on the same seed, hence the same batches and the same initial shared weights),
which cancel most of the seed-to-seed noise that unpaired comparisons suffer from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

# Two-sided 95% Student-t critical values t(0.975, df) for df = 1 .. 30.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t_critical(df: int) -> float:
    """t(0.975, df): the half-width multiplier of a 95% interval from df degrees of
    freedom (the normal 1.96 beyond the table, where the two differ by under 2%)."""
    if df < 1:
        raise ValueError("a confidence interval needs at least two values")
    if df <= len(_T975):
        return _T975[df - 1]
    if df <= 60:
        return 2.000 + (2.042 - 2.000) * (60 - df) / 30
    if df <= 120:
        return 1.980 + (2.000 - 1.980) * (120 - df) / 60
    return 1.960


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% confidence half-width (None for a single value)."""

    mean: float
    half_width: float | None
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def __str__(self) -> str:
        if self.half_width is None:
            return f"{self.mean:.4f} (n=1)"
        return f"{self.mean:.4f} ± {self.half_width:.4f}"


def mean_ci(values: Sequence[float]) -> Interval:
    """Sample mean and 95% t-interval half-width ``t * s / sqrt(n)``."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not xs:
        raise ValueError("no finite values")
    n = len(xs)
    mean = sum(xs) / n
    if n == 1:
        return Interval(mean, None, 1)
    var = sum((x - mean) ** 2 for x in xs) / (n - 1)
    return Interval(mean, t_critical(n - 1) * math.sqrt(var / n), n)


def paired_difference(variant: dict[int, float], baseline: dict[int, float]) -> Interval | None:
    """Mean of (variant - baseline) over the seeds both have, with its 95% interval."""
    seeds = sorted(set(variant) & set(baseline))
    diffs = [variant[s] - baseline[s] for s in seeds
             if variant[s] is not None and baseline[s] is not None]
    return mean_ci(diffs) if diffs else None


def verdict(diff: Interval | None, lower_is_better: bool = True) -> str:
    """Plain words for a paired difference: better, worse, or within seed noise."""
    if diff is None:
        return "no paired runs"
    if diff.half_width is None:
        return "one seed: no error bar"
    if diff.low <= 0 <= diff.high:
        return "within seed noise"
    improved = diff.high < 0 if lower_is_better else diff.low > 0
    return "better" if improved else "worse"
