"""The gray-flipping curve (Ikeno & Hara 2018, §4.2).

For each threshold τ, the pixels of each image scoring below its τ-quantile are set to a fill colour
(gray 0.5 in the paper; black 0 and white 1 in its footnote), and the curve reports the share of
images whose decision changes. A good map keeps the relevant pixels (high scores) and so keeps the
decision for large τ: **lower is better**.

"Below the τ-quantile" has three readings, chosen by ``ties``:

* ``"random"`` (the default): by rank, the ⌊τ/100 · H·W⌋ lowest-scoring pixels are filled, ties broken
  at random (seeded), so maps with many equal scores (a clipped PertMap box, a saturated gradient)
  are neither favoured nor punished by the tie order, and every map fills the same number of pixels;
* ``"<"``: the paper's words read strictly, pixels with score < q_τ (q_τ the τ-quantile of the
  image's scores, NumPy's default linear interpolation) — a tied block at q_τ is kept whole;
* ``"<="``: pixels with score ≤ q_τ — a tied block at q_τ is filled whole.

The two quantile readings agree with ``"random"`` for maps without ties (up to the pixel at q_τ) and
differ most for flat maps: :func:`tied_share` measures how much of a map is tied.

:func:`grayflip_changes` returns, per map, whether each image's decision changed at each τ (an
``(N, len(taus))`` array), so that curves (its mean over images), areas and their intervals over
images come from one run. The clean images are predicted once for all maps; τ with nothing filled
needs no prediction, and τ with everything filled one (every image becomes the same fill image).
"""
from __future__ import annotations

import numpy as np
import torch

from ..checks import check_inputs, check_maps

TIES = ("random", "<", "<=")


@torch.no_grad()
def grayflip_changes(model, inputs: torch.Tensor, maps: dict, taus=tuple(range(0, 101, 5)), fill: float = 0.5,
                     seed: int = 0, batch_size: int | None = None, ties: str = "random") -> dict:
    """Per map, whether each image's prediction changes when its lowest-scoring pixels are filled.

    Args:
        model: classifier returning logits for inputs in [0, 1].
        inputs: ``(N, C, H, W)`` images in [0, 1].
        maps: ``{name: scores}``, each ``(N, H, W)`` per-pixel scores (higher = more relevant);
            reduce channels beforehand.
        taus: thresholds in percent, 0 (nothing filled) to 100 (everything filled).
        fill: the replacement value in [0, 1] (0.5 gray, 0 black, 1 white).
        seed: seeds the tie-breaking order (the same for every map).
        ties: ``"random"`` (rank with seeded random tie-breaking), ``"<"`` or ``"<="`` (module docstring).
        batch_size: about how many images enter one forward pass; None: 64 on a CPU (small passes
            keep the activations in cache) and 2048 on a GPU.
    Returns ``{name: changed}``, ``changed`` a boolean array ``(N, len(taus))``; its mean over axis 0
    is the flipping curve.
    """
    check_inputs(inputs)
    if not 0 <= fill <= 1 or any(not 0 <= t <= 100 for t in taus):
        raise ValueError("fill must lie in [0, 1] and every tau in [0, 100]")
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    n, _, h, w = inputs.shape
    for name, scores in maps.items():
        check_maps(scores, tuple(inputs.shape), name=f"scores of {name!r}")
        if tuple(scores.shape) != (n, h, w):
            raise ValueError(f"scores of {name!r} must be per-pixel, shaped (N, H, W) = {(n, h, w)}; got {tuple(scores.shape)}")
    device = next(model.parameters()).device
    batch_size = batch_size or (64 if device.type == "cpu" else 2048)
    base = _predict(model, inputs, device, batch_size)
    all_filled = _predict(model, torch.full_like(inputs[:1], fill), device, batch_size) != base
    return {name: _changes(model, inputs, _filled(scores, taus, ties, seed), len(taus), fill, base, all_filled, device, batch_size)
            for name, scores in maps.items()}


def _filled(scores: torch.Tensor, taus, ties: str, seed: int):
    """A function τ index → the ``(N, H·W)`` mask of pixels filled at ``taus[i]`` under ``ties``."""
    n, hw = len(scores), scores[0].numel()
    if ties == "random":
        rank = flip_ranks(scores, seed)
        ks = [int(np.floor(t / 100 * hw)) for t in taus]
        return lambda i: rank < ks[i]
    flat = scores.flatten(1).double().cpu()
    q = torch.from_numpy(np.quantile(flat.numpy(), [t / 100 for t in taus], axis=1))  # (len(taus), N)
    return (lambda i: flat < q[i][:, None]) if ties == "<" else (lambda i: flat <= q[i][:, None])


def tied_share(scores: torch.Tensor) -> np.ndarray:
    """Per map, the share of its pixels whose score equals that of at least one other pixel of the
    same map (0 for a map with distinct scores, 1 for a constant map); ``scores`` ``(N, H, W)``."""
    check_maps(scores, name="scores")
    out = []
    for m in scores.flatten(1).double().cpu().numpy():
        _, inverse, counts = np.unique(m, return_inverse=True, return_counts=True)
        out.append(float((counts[inverse] > 1).mean()))
    return np.array(out)


def curve_areas(changed: np.ndarray, taus) -> np.ndarray:
    """Per image, the area under its own flipping curve (τ in percent, the area in [0, 1]): the
    mean over images is the area under the curve."""
    return np.trapezoid(np.asarray(changed, dtype=float), np.asarray(taus, dtype=float), axis=1) / 100


def best_and_runner_up(areas: dict, seed: int = 0, level: float = 0.95):
    """The method with the lowest mean area and the runner-up, with the bootstrap interval over images
    of the paired difference runner-up − best (per-image areas of the same images): returns
    ``(best, runner_up, Interval)``. The best is *separated* when this interval lies above 0."""
    from ..verdicts import Interval

    if len(areas) < 2:
        raise ValueError("a best method needs at least two methods")
    order = sorted(areas, key=lambda k: float(np.mean(areas[k])))
    best, second = order[0], order[1]
    diff = np.asarray(areas[second], dtype=float) - np.asarray(areas[best], dtype=float)
    return best, second, Interval.mean(diff, level=level, seed=seed, what="images (paired)")


def max_abs_mean_difference(differences: dict, seed: int = 0, level: float = 0.95, n_boot: int = 2000):
    """The largest |mean| of several paired per-image differences (e.g. each method's area with
    black fill minus with gray), with a percentile-bootstrap interval that resamples the *images*
    (the same resample for every difference), so the interval covers the maximum as a whole."""
    from ..verdicts import Interval

    names = list(differences)
    d = np.stack([np.asarray(differences[k], dtype=float) for k in names], 1)  # (images, pairs)
    if not np.isfinite(d).all():
        raise ValueError("differences must be finite")
    which = names[int(np.abs(d.mean(0)).argmax())]
    return which, Interval.bootstrap(lambda i: np.abs(d[i].mean(0)).max(), len(d),
                                     f"max over {len(names)} paired differences of {len(d)} images, {level:.0%} bootstrap",
                                     level, seed, n_boot)


def flip_ranks(scores: torch.Tensor, seed: int) -> torch.Tensor:
    """Rank of each pixel, ``(N, H·W)``: lexicographic (score, seeded random) order, lowest first: the
    order in which the curve turns pixels gray (ties broken by a seeded draw)."""
    n = len(scores)
    tiebreak = torch.rand((n, scores[0].numel()), generator=torch.Generator().manual_seed(seed))
    order = torch.from_numpy(np.lexsort((tiebreak.numpy(), scores.flatten(1).double().cpu().numpy()), axis=1))
    return torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1]).expand(n, -1))


def _changes(model, inputs, filled_at, n_taus, fill, base, all_filled, device, batch_size) -> np.ndarray:
    n, _, h, w = inputs.shape
    columns, todo = {}, []
    for i in range(n_taus):
        mask = filled_at(i)
        if mask.all():  # every image fully filled: the one prediction of the fill image
            columns[i] = all_filled.expand(n).clone()
        elif not mask.any():  # nothing filled: nothing changes
            columns[i] = torch.zeros(n, dtype=torch.bool)
        else:
            todo.append((i, mask))
    per_chunk = max(1, batch_size // n)
    for start in range(0, len(todo), per_chunk):
        chunk = todo[start:start + per_chunk]
        filled = torch.stack([m for _, m in chunk]).view(len(chunk), n, 1, h, w)
        flipped = torch.where(filled, torch.tensor(fill, dtype=inputs.dtype), inputs.cpu()[None]).flatten(0, 1)
        pred = _predict(model, flipped, device, batch_size).view(len(chunk), n) != base
        for (k, _), row in zip(chunk, pred):
            columns[k] = row
    return torch.stack([columns[k] for k in range(n_taus)], 1).numpy()


def _predict(model, x: torch.Tensor, device, batch_size: int) -> torch.Tensor:
    return torch.cat([model(b.to(device).contiguous(memory_format=torch.channels_last)).argmax(1).cpu()
                      for b in x.split(batch_size)])
