"""Small statistics shared by the chapters: proportions, means and medians with confidence intervals."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.stats import binomtest


def proportion(k: int, n: int, level: float = 0.95) -> dict:
    """``k`` successes of ``n`` as a rate with its Wilson score interval (good for small n)."""
    k, n = int(k), int(n)
    if n == 0:
        return {"k": 0, "n": 0, "rate": None, "ci_low": None, "ci_high": None}
    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return {"k": k, "n": n, "rate": k / n, "ci_low": float(ci.low), "ci_high": float(ci.high)}


def wilson_size(half_width: float, level: float = 0.95) -> int:
    """The smallest number of images whose worst-case (p = 0.5, normal approximation) interval for a
    rate is at most ± ``half_width``: ⌈z² / (4 h²)⌉, e.g. 151 for ± 8 points. The Wilson interval
    the chapters report is never wider than this at that size."""
    if not 0 < half_width < 0.5:
        raise ValueError(f"half_width must lie in (0, 0.5), got {half_width}")
    z = stats.norm.ppf(0.5 + level / 2)
    return int(np.ceil(z * z / (4 * half_width * half_width)))


def bootstrap_ci(values, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean of ``values`` (NaNs dropped) with a seeded percentile-bootstrap interval.

    For a paired comparison of two methods on the same images, pass the per-image differences.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return {"mean": float(v.mean()), "ci_low": float(lo), "ci_high": float(hi), "n": int(len(v))}


def resample_interval(statistic, n: int, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Seeded percentile-bootstrap interval of ``statistic(idx)``, where ``idx`` is one resample (with
    replacement) of the indices ``0..n-1`` of the units (images) the data are made of; use it for a
    statistic of several arrays over the same units (a maximum over methods, a ratio of sums, a
    rank correlation of per-unit means), resampling the units jointly."""
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    boot = np.array([statistic(i) for i in idx], dtype=np.float64)
    boot = boot[np.isfinite(boot)]
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    return float(lo), float(hi)


def mean_interval(differences, level: float = 0.95) -> dict:
    """Mean of paired per-image differences (NaNs dropped) and its Student-t interval at ``level``:
    ``{"mean difference", "ci_low", "ci_high", "n"}`` (the interval is NaN for fewer than 2 values)."""
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return {"mean difference": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else math.nan
    return {"mean difference": float(d.mean()), "ci_low": float(d.mean() - half), "ci_high": float(d.mean() + half),
            "n": int(len(d))}


def median_interval(differences, level: float = 0.95, seed: int = 0) -> dict:
    """Median of paired per-image differences (NaNs dropped) and its bootstrap percentile interval at
    ``level`` (2,000 seeded resamples): ``{"median difference", "ci_low", "ci_high", "n"}``."""
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return {"median difference": float(np.median(d)) if len(d) else math.nan, "ci_low": math.nan,
                "ci_high": math.nan, "n": int(len(d))}
    ci = stats.bootstrap((d,), np.median, confidence_level=level, n_resamples=2000, method="percentile",
                         random_state=np.random.default_rng(seed)).confidence_interval
    return {"median difference": float(np.median(d)), "ci_low": float(ci.low), "ci_high": float(ci.high), "n": int(len(d))}
