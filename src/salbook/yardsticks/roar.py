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
* the random baseline: :func:`random_scores` gives a uniform random ranking (exactly ⌊t·size⌋
  entries replaced), fixed per image, or resampled every epoch through ``fit``'s ``transform``
  (the released code resamples, which acts like dropout augmentation).

Ties are broken in a seeded random order, so a map with many equal scores is not favoured by the
order of its entries.
"""
from __future__ import annotations

import torch

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
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    e = {"square": scores.square(), "abs": scores.abs(), "signed": scores}[transform]
    return e.sum(1, keepdim=True) if per == "pixel" else e


def top_mask(scores: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Boolean mask of the ⌊fraction · size⌋ highest entries of each image's ``scores`` (ties seeded-random)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1]; got {fraction}")
    flat = scores.flatten(1)
    n, size = flat.shape
    k = int(fraction * size + 1e-9)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.rand((n, size), generator=gen).argsort(1).to(flat.device)  # a random order per image
    order = perm.gather(1, flat.gather(1, perm).argsort(dim=1, descending=True, stable=True))
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], True)
    return mask.view(scores.shape)


def modify(inputs: torch.Tensor, scores: torch.Tensor, fraction: float, keep: bool = False,
           fill: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """ROAR (``keep=False``) or KAR (``keep=True``) modification of a batch.

    Args:
        inputs: ``(N, C, H, W)`` images in [0, 1].
        scores: ranking scores from :func:`ranking_scores`, ``(N, C, H, W)`` or ``(N, 1, H, W)``.
        fraction: t, the share of entries ranked highest (ROAR: replaced; KAR: kept).
        fill: per-channel replacement values ``(C,)``; default the batch's per-channel mean.
    """
    if inputs.dim() != 4 or scores.shape[0] != inputs.shape[0] or scores.shape[2:] != inputs.shape[2:] \
            or scores.shape[1] not in (1, inputs.shape[1]):
        raise ValueError(f"scores {tuple(scores.shape)} do not fit inputs {tuple(inputs.shape)}: "
                         "use (N, C, H, W) per channel or (N, 1, H, W) per pixel")
    fill = inputs.mean((0, 2, 3)) if fill is None else torch.as_tensor(fill, dtype=inputs.dtype, device=inputs.device)
    top = top_mask(scores, fraction, seed).to(inputs.device)
    replace = (~top if keep else top).expand_as(inputs)
    return torch.where(replace, fill.view(1, -1, 1, 1).expand_as(inputs), inputs)


def random_scores(shape: tuple, seed: int) -> torch.Tensor:
    """A uniform random ranking (Hooker et al.'s random baseline), seeded."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))
