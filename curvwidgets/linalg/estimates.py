"""A number estimated from random samples, with its standard error, and how such numbers are printed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Tuple

import numpy as np
import scipy.stats

from .._validate import unit_interval

__all__ = ["Estimate", "format_with_error", "confidence_interval"]


@dataclass(frozen=True)
class Estimate:
    """The mean of independent samples and its standard error ``std(samples) / sqrt(n)``.

    Attributes
    ----------
    value : float
    standard_error : float
        NaN with a single sample: one sample says nothing about its spread.
    samples : ndarray, shape (n,)
    """

    value: float
    standard_error: float
    samples: np.ndarray = field(repr=False)

    @classmethod
    def of(cls, samples: np.ndarray) -> "Estimate":
        """The estimate of ``samples`` (finite numbers, at least one)."""
        samples = np.asarray(samples, dtype=np.float64)
        error = float(samples.std(ddof=1) / math.sqrt(len(samples))) if len(samples) > 1 else math.nan
        return cls(float(samples.mean()), error, samples)

    @property
    def count(self) -> int:
        """How many samples it rests on."""
        return len(self.samples)

    def interval(self, level: float = 0.95) -> Tuple[float, float]:
        """A ``level`` confidence interval (see :func:`confidence_interval`)."""
        return confidence_interval(self.value, self.standard_error, self.count, level)

    def __str__(self) -> str:
        return format_with_error(self.value, self.standard_error)


def confidence_interval(value: float, error: float, count: int, level: float = 0.95) -> Tuple[float, float]:
    """``value -+ q error``, ``q`` the Student quantile of ``level`` on ``count - 1`` degrees; NaN for one sample."""
    level = unit_interval("level", level)
    if count < 2 or not math.isfinite(error):
        return (math.nan, math.nan)
    spread = float(scipy.stats.t.ppf(0.5 + level / 2, count - 1)) * error
    return (value - spread, value + spread)


def format_with_error(value: float, error: float) -> str:
    """``"13.73 ± 0.05"``: the value to the digits its standard error leaves, the error to two significant ones.

    ``"13.7257 (one sample: no error bar)"`` when the error is NaN.
    """
    if not math.isfinite(error):
        return f"{value:.6g} (one sample: no error bar)"
    if error == 0 or not math.isfinite(value):
        return f"{value:.6g} ± {error:.2g}"
    digits = 1 - math.floor(math.log10(error))
    if digits <= 0:
        return f"{value:.0f} ± {error:.0f}"
    return f"{value:.{digits}f} ± {error:.{digits}f}"
