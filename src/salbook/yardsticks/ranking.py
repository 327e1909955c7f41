"""Ranks of methods under a yardstick, with intervals, and how far yardsticks agree (the leaderboard).

Every method is graded on the same images, so the uncertainty of a rank comes from which images were
drawn: :func:`rank_table` resamples the images (the same draw for every method, a paired bootstrap)
and ranks the methods' means in each resample; a rank's interval is the percentile interval of those
ranks. Rank 1 is the best under the yardstick's own direction. :func:`rank_correlation` is Spearman's
ρ between two yardsticks' method means (both oriented so that higher = better): +1 when they order
the methods alike, −1 when one reverses the other (LATEC, Klein et al. 2024, asks the same of its 20
metrics).
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import rankdata, spearmanr


def _means(values: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
    """Mean per method (rows) over images (columns), ignoring NaN; NaN for a method with none."""
    v = values if index is None else values[:, index]
    count = np.isfinite(v).sum(1)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, np.nansum(v, 1) / np.maximum(count, 1), np.nan)


def _ranks(means: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Rank 1 = best, ties share their average rank, NaN for methods without a mean."""
    out = np.full(len(means), np.nan)
    ok = np.isfinite(means)
    out[ok] = rankdata(-means[ok] if higher_is_better else means[ok])
    return out


def rank_table(per_image: dict[str, np.ndarray], higher_is_better: bool, level: float = 0.95,
               n_boot: int = 2000, seed: int = 0) -> dict[str, dict]:
    """Per method: ``mean``, its percentile bootstrap interval ``lo``/``hi``, ``rank`` of the mean and
    its interval ``rank_lo``/``rank_hi``, and ``n`` images with a value.

    ``per_image``: method → values on the same images ``(N,)`` (NaN where undefined). A method with no
    value at all gets NaN everywhere (it is not ranked).
    """
    if not per_image:
        raise ValueError("no methods to rank")
    names = list(per_image)
    values = np.stack([np.asarray(per_image[m], dtype=float) for m in names])
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"every method needs one value per image on the same images, got shape {values.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    means, n = _means(values), values.shape[1]
    rng = np.random.default_rng(seed)
    boot_means = np.stack([_means(values, rng.integers(0, n, n)) for _ in range(n_boot)])  # (B, methods)
    boot_ranks = np.stack([_ranks(m, higher_is_better) for m in boot_means])
    tail = 100 * (1 - level) / 2
    with warnings.catch_warnings():  # a method without values stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(boot_means, [tail, 100 - tail], axis=0)
        rank_lo, rank_hi = np.nanpercentile(boot_ranks, [tail, 100 - tail], axis=0)
    rank = _ranks(means, higher_is_better)
    return {m: {"mean": means[i], "lo": lo[i], "hi": hi[i], "rank": rank[i], "rank_lo": rank_lo[i],
                "rank_hi": rank_hi[i], "n": int(np.isfinite(values[i]).sum())} for i, m in enumerate(names)}


def rank_correlation(oriented_means: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Spearman's ρ between every two yardsticks over the methods both rank.

    ``oriented_means``: yardstick → {method → mean}, each oriented so that higher = better (multiply a
    lower-is-better yardstick's means by −1). NaN where fewer than three methods are shared or one
    yardstick gives them all the same mean.
    """
    names = list(oriented_means)
    out = {a: {} for a in names}
    for a in names:
        for b in names:
            shared = [m for m in oriented_means[a] if m in oriented_means[b]
                      and np.isfinite(oriented_means[a][m]) and np.isfinite(oriented_means[b][m])]
            x = [oriented_means[a][m] for m in shared]
            y = [oriented_means[b][m] for m in shared]
            if len(shared) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:  # undefined: too few, or a constant
                out[a][b] = float("nan")
                continue
            out[a][b] = 1.0 if a == b else float(spearmanr(x, y).statistic)
    return out
