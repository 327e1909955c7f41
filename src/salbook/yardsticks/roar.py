"""ROAR and KAR (Hooker et al. 2019): remove or keep the top-ranked inputs, retrain, test.

ROAR ("RemOve And Retrain") replaces the fraction t of input entries a map ranks highest by an
uninformative value in the training *and* test images, trains a fresh network on the modified
training set and reports its test accuracy: the faster the accuracy falls with t, the better the
map found what the task needs. KAR ("Keep And Retrain") keeps those entries and replaces the rest:
the slower it falls, the better.

Choices the papers leave open are arguments here, so the book can show their effect:

* ``per``: rank every scalar entry (``"channel"``, Hooker et al.'s released code) or whole pixels
  with all channels together (``"pixel"``, the paper's prose). They coincide on MNIST.
* ``transform`` of the raw scores before ranking: ``"square"`` (the released code's default),
  ``"abs"`` or ``"signed"``.
* the fill: the training set's per-channel mean (Hooker et al.; the thesis replaces "by the mean").
* the random baseline: the registry's ``"random"`` method (:mod:`salbook.methods.registry`), a map
  of independent uniform scores, ranked like any other map: exactly ⌊t·size⌋ entries uniformly at
  random per image, fixed, or drawn again every epoch (the released code resamples, which acts like
  dropout augmentation: :func:`salbook.grids.roar.retrain`'s ``random_mask``).

Ties are broken in a seeded random order, so a map with many equal scores is not favoured by the
order of its entries. A map's ranking (:func:`ranks`) does not depend on t, so a grid computes it
once and thresholds it for every fraction (:func:`mask_from_ranks`, :func:`replace`). Scores with a
NaN or an infinite entry are refused (:func:`salbook.checks.check_maps`), never ranked.

Judging a claim on retrainings: :func:`accuracy_gap` gives the difference in test accuracy of two
arms (several seeds each, the same test images) with an interval that covers both the seed-to-seed
spread of the retrainings and the sampling of the test images; :func:`salbook.verdicts.all_of`
combines the verdicts of one claim at several t (reproduced only if reproduced at every t).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats as scipy_stats

from ..checks import check_maps
from ..verdicts import Interval

TRANSFORMS = ("square", "abs", "signed")
GRANULARITY = ("channel", "pixel")


def ranking_scores(scores: torch.Tensor, transform: str = "square", per: str = "channel") -> torch.Tensor:
    """Scores used for ranking: ``transform`` applied, then summed over channels if ``per="pixel"``."""
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}: choose one of {TRANSFORMS}")
    if per not in GRANULARITY:
        raise ValueError(f"unknown granularity {per!r}: choose one of {GRANULARITY}")
    if scores.dim() != 4:
        raise ValueError(f"scores must be shaped (N, C, H, W) like the inputs; got {tuple(scores.shape)}")
    check_maps(scores, name="scores")
    e = {"square": scores.square(), "abs": scores.abs(), "signed": scores}[transform]
    return e.sum(1, keepdim=True) if per == "pixel" else e


def ranks(scores: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Rank of every entry of ``scores`` within its image (0 = highest), shaped like ``scores``, as int32.

    Ties are broken in a seeded random order per image, so a map with many equal scores (Integrated
    Gradients on a black background) is not favoured by the order of its entries. A ranking does not
    depend on t: compute it once per map and threshold it (:func:`mask_from_ranks`) for every fraction.
    """
    check_maps(scores, name="scores")
    flat = scores.flatten(1)
    n, size = flat.shape
    gen = torch.Generator().manual_seed(seed)
    perm = torch.rand((n, size), generator=gen).argsort(1).to(flat.device)  # a random order per image
    order = perm.gather(1, flat.gather(1, perm).argsort(dim=1, descending=True, stable=True))
    rank = torch.empty((n, size), dtype=torch.int32, device=flat.device)
    rank.scatter_(1, order, torch.arange(size, dtype=torch.int32, device=flat.device).expand(n, -1))
    return rank.view(scores.shape)


def mask_from_ranks(rank: torch.Tensor, fraction: float) -> torch.Tensor:
    """Boolean mask of the ⌊fraction · size⌋ top-ranked entries of each image (``rank`` from :func:`ranks`)."""
    return rank < _count(fraction, rank[0].numel())


def top_mask(scores: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Boolean mask of the ⌊fraction · size⌋ highest entries of each image's ``scores`` (ties seeded-random)."""
    _count(fraction, 1)
    return mask_from_ranks(ranks(scores, seed), fraction)


def replace(inputs: torch.Tensor, top: torch.Tensor, keep: bool = False, fill: torch.Tensor | None = None) -> torch.Tensor:
    """ROAR (``keep=False``: the ``top`` entries get ``fill``) or KAR (``keep=True``: all others do).

    Args:
        inputs: ``(N, C, H, W)`` images in [0, 1].
        top: boolean mask ``(N, C, H, W)`` per channel or ``(N, 1, H, W)`` per pixel.
        fill: per-channel replacement values ``(C,)``; default the batch's per-channel mean.
    """
    if inputs.dim() != 4 or top.dim() != 4 or top.shape[0] != inputs.shape[0] or top.shape[2:] != inputs.shape[2:] \
            or top.shape[1] not in (1, inputs.shape[1]):
        raise ValueError(f"scores or mask {tuple(top.shape)} do not fit inputs {tuple(inputs.shape)}: "
                         "use (N, C, H, W) per channel or (N, 1, H, W) per pixel")
    fill = inputs.mean((0, 2, 3)) if fill is None else torch.as_tensor(fill, dtype=inputs.dtype, device=inputs.device)
    gone = (~top if keep else top).to(inputs.device).expand_as(inputs)
    return torch.where(gone, fill.view(1, -1, 1, 1).expand_as(inputs), inputs)


def modify(inputs: torch.Tensor, scores: torch.Tensor, fraction: float, keep: bool = False,
           fill: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """ROAR (``keep=False``) or KAR (``keep=True``) modification of a batch.

    Args:
        inputs: ``(N, C, H, W)`` images in [0, 1].
        scores: ranking scores from :func:`ranking_scores`, ``(N, C, H, W)`` or ``(N, 1, H, W)``.
        fraction: t, the share of entries ranked highest (ROAR: replaced; KAR: kept).
        fill: per-channel replacement values ``(C,)``; default the batch's per-channel mean.
        seed: the order of tied scores.

    Raises:
        ValueError: if ``scores`` hold a NaN or an infinite value, or do not have one map per input.
    """
    check_maps(scores, tuple(inputs.shape), name="scores")
    return replace(inputs, top_mask(scores, fraction, seed), keep, fill)


def _count(fraction: float, size: int) -> int:
    """k = ⌊fraction · size⌋, the number of entries a fraction of an image selects."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1]; got {fraction}")
    return int(fraction * size + 1e-9)


def accuracy_gap(correct_a, correct_b, level: float = 0.95, fmt: str = ".1%", what: str = "A − B") -> Interval:
    """Test accuracy of arm A minus arm B, with a ``level`` confidence interval, from each retraining's
    per-image correctness: ``correct_a`` is ``(seeds of A, images)`` of 0/1 (or a list of such rows),
    ``correct_b`` likewise, on the same test images in the same order.

    The estimate is the difference of the two arms' mean accuracies over their seeds. Its variance is
    that of a crossed design (seeds × test images, the images shared by both arms), so that the
    interval speaks for other seeds *and* other test images: the sampling of test images (the
    variance over images of the per-image difference of seed-averaged correctness, over the number of
    images) plus each arm's seed-to-seed spread of accuracy, ``s²/n``, less the part of that spread
    which is seed × image noise already in the first term (the two-way residual mean square over the
    number of images; a negative remainder counts as zero). The interval is Student's t with
    ``n_a + n_b − 2`` degrees of freedom, which needs at least two seeds in each arm (one seed gives
    no seed-to-seed spread: refused).
    """
    a, b = (np.atleast_2d(np.asarray(c, dtype=np.float64)) for c in (correct_a, correct_b))
    if a.shape[1] != b.shape[1] or a.shape[1] < 2:
        raise ValueError(f"both arms need the same test images (at least two): got {a.shape[1]} and {b.shape[1]}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()) or ((a != 0) & (a != 1)).any() or ((b != 0) & (b != 1)).any():
        raise ValueError("correct_a and correct_b must hold 0/1 per test image")
    n_a, n_b = len(a), len(b)
    if min(n_a, n_b) < 2:
        raise ValueError(f"an accuracy gap needs at least two seeds per arm for its seed-to-seed spread; got {n_a} and "
                         f"{n_b}: run more seeds")
    n_images = a.shape[1]
    per_image = a.mean(0) - b.mean(0)
    var = per_image.var(ddof=1) / n_images + _seed_part(a) + _seed_part(b)
    df = n_a + n_b - 2
    half = float(scipy_stats.t.ppf(0.5 + level / 2, df) * math.sqrt(var))
    estimate = float(a.mean() - b.mean())
    return Interval(estimate, estimate - half, estimate + half,
                    f"{what}: {n_a} vs {n_b} seeds, {n_images} test images, {level:.0%} t ({df} df), "
                    "seeds and images", fmt)


def _seed_part(correct: np.ndarray) -> float:
    """Variance of an arm's mean accuracy from its seeds alone: the seeds' accuracy variance less the
    seed × image residual it carries (two-way mean square over the images), over the seeds."""
    n_seeds, n_images = correct.shape
    residual = correct - correct.mean(1, keepdims=True) - correct.mean(0, keepdims=True) + correct.mean()
    interaction = float((residual ** 2).sum()) / ((n_seeds - 1) * (n_images - 1))
    return max(float(correct.mean(1).var(ddof=1)) - interaction / n_images, 0.0) / n_seeds
