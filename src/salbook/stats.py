"""Small statistics shared by the chapters: proportions with confidence intervals."""
from __future__ import annotations

from scipy.stats import binomtest


def proportion(k: int, n: int, level: float = 0.95) -> dict:
    """``k`` successes of ``n`` as a rate with its Wilson score interval (good for small n)."""
    k, n = int(k), int(n)
    if n == 0:
        return {"k": 0, "n": 0, "rate": None, "ci_low": None, "ci_high": None}
    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return {"k": k, "n": n, "rate": k / n, "ci_low": float(ci.low), "ci_high": float(ci.high)}
