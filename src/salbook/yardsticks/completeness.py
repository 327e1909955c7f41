"""Completeness and soundness of saliency maps (Gupta et al. 2022), as the thesis §4.2 defines them.

The **insertion game** of the thesis (§4.2, after RISE): for ``s = 1 … dim(x)`` keep the top ``s``
pixels of the map ``m`` for label ``a``, give every other pixel a default ("uninformative") value,
and read the model's probability of ``a``; ``g_AUC(x, a, m)`` is the area under that curve. With
``f(x, a)`` the model's probability of ``a`` on the untouched image, the thesis defines (§4.2)

* α-complete on f, x, a:  ``g_AUC(x, a, m) ≥ α f(x, a)``, scored by
  ``α(x, a) = min(max(g_AUC(x, a, m), ε₁) / f(x, a), 1)``  and  ``α(m) = E_x[min_a α(x, a)]``;
* β-sound on f, x, a:  ``g_AUC(x, a, m) ≤ f(x, a) / β``, scored by
  ``β(x, a) = min(max(f(x, a), ε₂) / g_AUC(x, a, m), 1)``  and  ``β(m) = E_x[min_a β(x, a)]``.

α near 1: the kept pixels still give the label (the mask is *complete*); β near 1: the kept pixels
do not make the model *more* confident in a label than the image does, for any label, the wrong
ones included (the mask is *sound*: it does not "prove" a label the network does not give).

Readings where the thesis text is ambiguous, chosen here and stated once:

1. The thesis writes the soundness inequality as ``g_AUC ≤ (1/β) α f(x, a)`` and labels both
   per-label scores ``α(x, a)``; the stray α and the second label are typos: the score the thesis
   aggregates into ``β(m)`` is ``min(max(f, ε₂)/g_AUC, 1)``, which is exactly ``g_AUC ≤ f/β``. Its
   ``g_AUC(x, a, n)`` is ``g_AUC(x, a, m)``.
2. ``min_a`` runs over the labels given as ``targets`` — by default (:func:`all_labels`) every
   class, each with **its own map** (the map explaining label ``a``). With one label per image the
   minimum is over that label only.
3. Pixels, not channels: one score per pixel (channels summed), all channels of a pixel kept
   together, as RISE (and :mod:`.curves`) do; ``dim(x) = H·W``.
4. The curve is sampled at ``s = 0, step, 2·step, …, H·W`` (``step = 1`` is the thesis' every
   ``s``; the default ``⌈H·W/28⌉`` is RISE's 28 steps) and ``g_AUC`` is the trapezoid on the
   kept fraction ``s/(H·W) ∈ [0, 1]`` (:func:`.curves.auc`), so that it is a probability-sized
   number comparable with ``f``. The thesis starts at ``s = 1``; the point ``s = 0`` (the all-fill
   image) is needed to have an area from 0 and weighs ``1/(2n)``.
5. The "default value" is ``fill``: ``"mean"`` (per-channel mean of ``inputs``; RISE's zero of the
   normalised image), ``"zero"`` (black), ``"blur"`` (Gaussian blur, kernel 11, σ 5, RISE's
   insertion start) or a tensor. The thesis names none; its criticism (§4.2, last paragraph) is
   precisely that the masked images are off the training distribution, so the notebook compares fills.
6. ε₁, ε₂: the thesis only says "term if x is very small". Default ``eps = 0.01`` for both: a
   probability under 1 % counts as "no opinion", so a label the model all but excludes can neither
   fail completeness (α = 1 once f ≤ ε₁) nor fail soundness by a mask that stays below 1 %.

Call shape as Quantus: ``metric(model, inputs, targets, attributions)``, one value per image.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import check_inputs, check_maps
from ..stats import resample_interval
from .curves import auc, gaussian_blur

FILLS = ("mean", "zero", "blur")


def all_labels(n: int, n_classes: int) -> torch.Tensor:
    """Targets ``(n, n_classes)``: every class for every image (the thesis' ``min_a`` over all labels)."""
    return torch.arange(n_classes).expand(n, -1).clone()


def maps_for_labels(explain: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], inputs: torch.Tensor,
                    labels: torch.Tensor) -> torch.Tensor:
    """One map per (image, label): ``(N, K, ...)`` for labels ``(N, K)``, in one batched call.

    ``explain(inputs, targets)`` is any method's ``attribute`` (e.g.
    ``lambda x, t: baselines.make("gradient", model).attribute(x, target=t)``); it is called once on
    the images repeated K times.
    """
    labels = torch.as_tensor(labels)
    if labels.ndim != 2 or labels.shape[0] != len(inputs):
        raise ValueError(f"labels must be (N, K) with N = {len(inputs)} images, got {tuple(labels.shape)}")
    k = labels.shape[1]
    maps = explain(inputs.repeat_interleave(k, 0), labels.reshape(-1))
    check_maps(maps, (len(inputs) * k,), name="the maps explain() returned")
    return maps.reshape(len(inputs), k, *maps.shape[1:])


def fill_image(inputs: torch.Tensor, fill="mean") -> torch.Tensor:
    """The "uninformative" image the insertion game starts from, shaped like ``inputs``."""
    n, c, h, w = inputs.shape
    if isinstance(fill, str):
        if fill == "mean":
            return inputs.mean((0, 2, 3)).view(1, c, 1, 1).expand_as(inputs)
        if fill == "zero":
            return torch.zeros_like(inputs)
        if fill == "blur":
            return gaussian_blur(inputs)
        raise ValueError(f"unknown fill {fill!r}: choose one of {', '.join(FILLS)} or pass a tensor")
    value = torch.as_tensor(fill, dtype=inputs.dtype, device=inputs.device)
    if value.ndim == 0 or tuple(value.shape) == (c,):
        return value.reshape(1, -1, 1, 1).expand_as(inputs)
    if tuple(value.shape) == tuple(inputs.shape):
        return value
    raise ValueError(f"fill tensor must be a scalar, (C,) = ({c},) or shaped like the inputs "
                     f"{tuple(inputs.shape)}, got {tuple(value.shape)}")


def keep_top(inputs: torch.Tensor, attributions: torch.Tensor, keep: int, fill="mean") -> torch.Tensor:
    """One point of the game as images: the ``keep`` top pixels of each map, :func:`fill_image` elsewhere.

    For figures; :func:`game_curve` builds the same images for every ``s`` without returning them.
    """
    check_inputs(inputs)
    n, c, h, w = inputs.shape
    rank = _ranks(_pixel_scores(attributions, inputs.shape).to(inputs.device))
    if int(keep) != keep or not 0 <= keep <= h * w:
        raise ValueError(f"keep must be an integer in 0..{h * w} (pixels per image), got {keep}")
    return torch.where((rank < keep).view(n, 1, h, w), inputs, fill_image(inputs, fill))


@torch.no_grad()
def game_curve(model, inputs: torch.Tensor, targets, attributions: torch.Tensor, fill="mean",
               step: int | None = None, batch_size: int = 64) -> np.ndarray:
    """The thesis' insertion game: probability of ``targets`` keeping the top ``s`` pixels, ``(N, n + 1)``.

    Column k keeps the ``min(k·step, H·W)`` highest-scoring pixels of each map (ties: the earlier
    pixel first) and gives the rest the value of :func:`fill_image`; column 0 is the fill image,
    the last column the untouched image. Probabilities are float64.

    Args:
        targets: an int or one class per image.
        attributions: ``(N, H, W)`` per-pixel scores, or ``(N, C, H, W)`` (summed over channels).
        fill: ``"mean"``, ``"zero"``, ``"blur"``, or a tensor (scalar, ``(C,)`` or like ``inputs``).
        step: pixels added per column (default ``⌈H·W / 28⌉``).
        batch_size: images per forward (a few dozen run fastest on a CPU).
    """
    check_inputs(inputs)
    t = _flat_targets(targets, len(inputs))
    probs = game_probabilities(model, inputs, attributions, fill, step, batch_size)
    return probs.gather(2, t.view(-1, 1, 1).expand(-1, probs.shape[1], 1))[:, :, 0].numpy()


@torch.no_grad()
def game_probabilities(model, inputs: torch.Tensor, attributions: torch.Tensor, fill="mean",
                       step: int | None = None, batch_size: int = 64) -> torch.Tensor:
    """Every class's probability at every point of the game, ``(N, n + 1, classes)`` float64: the
    game of :func:`game_curve` for all labels at once, when one map serves all of them."""
    check_inputs(inputs)
    n, c, h, w = inputs.shape
    scores = _pixel_scores(attributions, inputs.shape)
    step = _check_step(step, h * w)
    n_steps = math.ceil(h * w / step)
    device = next(model.parameters()).device
    x = inputs.to(device)
    background = fill_image(x, fill)
    rank = _ranks(scores.to(device))
    out = []
    for k in range(n_steps + 1):  # one batched forward per curve point, never per pixel
        probe = torch.where((rank < k * step).view(n, 1, h, w), x, background)
        out.append(torch.cat([F.softmax(model(probe[b:b + batch_size]).double(), 1).cpu()
                              for b in range(0, n, batch_size)]))
    return torch.stack(out, 1)


def scores(model, inputs: torch.Tensor, targets, attributions: torch.Tensor, fill="mean", eps=0.01,
           step: int | None = None, batch_size: int = 64, per_label: bool = True) -> dict:
    """Everything §4.2 computes, per (image, label): ``f``, ``g_auc``, ``alpha``, ``beta``, ``curve``.

    Args:
        targets: one label per image ``(N,)`` (or an int), or several ``(N, K)`` — e.g.
            :func:`all_labels` — for the thesis' ``min_a``.
        attributions: for ``(N,)`` targets ``(N, H, W)`` or ``(N, C, H, W)``; for ``(N, K)``
            targets one map per label, ``(N, K, H, W)`` or ``(N, K, C, H, W)`` (:func:`maps_for_labels`),
            or, with ``per_label=False``, one map per image shared by all its labels ``(N, H, W)`` or
            ``(N, C, H, W)`` (a random mask, say): the game is then played once per image and every
            label's probability read from the same forward passes.
        fill, step, batch_size: as :func:`game_curve`.
        eps: ε₁ = ε₂, or a pair ``(ε₁, ε₂)``, each in (0, 1].

    Returns arrays shaped like ``targets`` (``curve`` with one more axis): ``f`` = f(x, a),
    ``g_auc`` = g_AUC(x, a, m), ``alpha`` = α(x, a), ``beta`` = β(x, a).
    """
    check_inputs(inputs)
    eps1, eps2 = _check_eps(eps)
    n, c, h, w = inputs.shape
    labels = given = torch.as_tensor(targets)
    if labels.is_floating_point():
        raise TypeError(f"targets must hold integer class indices, got {labels.dtype}")
    single = labels.ndim < 2
    labels = (labels.expand(n) if labels.ndim == 0 else labels).long().cpu()
    labels = labels[:, None] if single else labels
    if labels.ndim != 2 or labels.shape[0] != n or labels.shape[1] == 0:
        raise ValueError(f"targets must be an int, (N,) or (N, K) with N = {n} images, got {tuple(given.shape)}")
    k = labels.shape[1]
    check_maps(attributions, tuple(inputs.shape), name="attributions")
    maps = torch.as_tensor(attributions)
    if single or not per_label:
        maps = maps.unsqueeze(1)
    if maps.ndim not in (4, 5) or tuple(maps.shape[:2]) != (n, 1 if not per_label else k) \
            or tuple(maps.shape[-2:]) != (h, w) or (maps.ndim == 5 and maps.shape[2] != c):
        want = ("(N, H, W) or (N, C, H, W)" if single or not per_label else "(N, K, H, W) or (N, K, C, H, W)")
        raise ValueError(f"attributions must be {want} for inputs {tuple(inputs.shape)} and targets "
                         f"{tuple(given.shape)}, got {tuple(attributions.shape)}")
    device = next(model.parameters()).device
    with torch.no_grad():
        probs = torch.cat([F.softmax(model(inputs[b:b + batch_size].to(device)).double(), 1).cpu()
                           for b in range(0, n, batch_size)])
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(f"target classes must lie in 0..{probs.shape[1] - 1}, "
                         f"got {labels.min().item()}..{labels.max().item()}")
    f = probs.gather(1, labels).numpy()
    if per_label:
        background = fill_image(inputs, fill).repeat_interleave(k, 0)
        curve = game_curve(model, inputs.repeat_interleave(k, 0), labels.reshape(-1), maps.flatten(0, 1),
                           fill=background, step=step, batch_size=batch_size).reshape(n, k, -1)
    else:
        every = game_probabilities(model, inputs, maps[:, 0], fill, step, batch_size)  # (N, points, classes)
        curve = every.gather(2, labels[:, None, :].expand(-1, every.shape[1], -1)).permute(0, 2, 1).numpy()
    g = auc(curve.reshape(n * k, -1)).reshape(n, k)
    with np.errstate(divide="ignore"):  # f or g_AUC can underflow to 0: the ratio is then +inf, clipped to 1
        alpha = np.minimum(np.maximum(g, eps1) / f, 1.0)
        beta = np.minimum(np.maximum(f, eps2) / g, 1.0)
    out = {"f": f, "g_auc": g, "alpha": alpha, "beta": beta, "curve": curve}
    return {key: v[:, 0] for key, v in out.items()} if single else out


def completeness(model, inputs, targets, attributions, **options) -> np.ndarray:
    """``min_a α(x, a)`` per image (thesis §4.2); its mean over images is α(m). Higher is better.

    Arguments as :func:`scores`; pass ``(N, K)`` targets (e.g. :func:`all_labels`) with one map per label.
    """
    alpha = scores(model, inputs, targets, attributions, **options)["alpha"]
    return alpha.min(1) if alpha.ndim == 2 else alpha


def soundness(model, inputs, targets, attributions, **options) -> np.ndarray:
    """``min_a β(x, a)`` per image (thesis §4.2); its mean over images is β(m). Higher is better.

    Arguments as :func:`scores`; soundness is only informative over several labels (the wrong ones
    are where a mask can "prove" what the network does not say), so pass ``(N, K)`` targets.
    """
    beta = scores(model, inputs, targets, attributions, **options)["beta"]
    return beta.min(1) if beta.ndim == 2 else beta


def fill_spread(per_image: dict, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """How far a score's mean moves between fills: ``max − min`` over fills of the mean over images,
    with a seeded percentile-bootstrap interval (images resampled, the same images for every fill).

    ``per_image`` maps each fill to its per-image values (e.g. ``min_a α(x, a)``), all over the same images.
    """
    values = np.stack([np.asarray(v, dtype=np.float64) for v in per_image.values()])  # (fills, images)
    if values.ndim != 2 or len(values) < 2:
        raise ValueError(f"need per-image values of at least two fills over the same images, got shape {values.shape}")
    spread = lambda v: v.mean(-1).max(0) - v.mean(-1).min(0)  # noqa: E731  (fills on axis 0, images last)
    lo, hi = resample_interval(lambda i: spread(values[:, i]), values.shape[1], n_boot, level, seed)
    return {"spread": float(spread(values)), "ci_low": float(lo), "ci_high": float(hi), "n": int(values.shape[1])}


def _pixel_scores(attributions: torch.Tensor, shape) -> torch.Tensor:
    n, c, h, w = shape
    check_maps(attributions, tuple(shape), name="attributions")
    a = torch.as_tensor(attributions)
    a = a.sum(1) if a.ndim == 4 and a.shape[1] == c else a
    if tuple(a.shape) != (n, h, w):
        raise ValueError(f"attributions must be (N, H, W) or (N, C, H, W) for inputs {tuple(shape)}, "
                         f"got {tuple(torch.as_tensor(attributions).shape)}")
    return a


def _ranks(scores: torch.Tensor) -> torch.Tensor:
    """Rank of each pixel in its map, 0 = highest score; ties go to the earlier pixel."""
    order = scores.flatten(1).argsort(dim=1, descending=True, stable=True)
    return torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))


def _flat_targets(targets, n: int) -> torch.Tensor:
    t = torch.as_tensor(targets)
    if t.is_floating_point():
        raise TypeError(f"targets must hold integer class indices, got {t.dtype}")
    t = t.long().cpu()
    t = t.expand(n) if t.ndim == 0 else t
    if t.shape != (n,):
        raise ValueError(f"targets must be an int or hold one class per input ({n}), got shape {tuple(t.shape)}")
    return t


def _check_step(step, n_pixels: int) -> int:
    if step is None:
        return math.ceil(n_pixels / 28)
    if int(step) != step or not 1 <= step <= n_pixels:
        raise ValueError(f"step must be an integer in 1..{n_pixels} (pixels per image), got {step}")
    return int(step)


def _check_eps(eps) -> tuple[float, float]:
    pair = (eps, eps) if np.isscalar(eps) else tuple(eps)
    if len(pair) != 2 or not all(0 < float(e) <= 1 for e in pair):
        raise ValueError(f"eps must be a number in (0, 1] or a pair of them (ε₁, ε₂), got {eps!r}")
    return float(pair[0]), float(pair[1])
