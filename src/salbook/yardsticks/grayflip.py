"""The gray-flipping curve (Ikeno & Hara 2018, §4.2).

For each threshold τ, the pixels of each image scoring below its τ-quantile are set to a fill colour
(gray 0.5 in the paper; black 0 and white 1 in its footnote), and the curve reports the share of
images whose decision changes. A good map keeps the relevant pixels (high scores) and so keeps the
decision for large τ: **lower is better**.

"Below the τ-quantile" is implemented by rank: the ⌊τ/100 · H·W⌋ lowest-scoring pixels are filled,
ties broken at random (seeded), so maps with many equal scores (a clipped PertMap box, a saturated
gradient) are not favoured or punished by the tie order.

:func:`grayflip_changes` returns, per map, whether each image's decision changed at each τ (an
``(N, len(taus))`` array), so that curves (its mean over images), areas and their intervals over
images come from one run. The clean images are predicted once for all maps; τ with nothing filled
needs no prediction, and τ with everything filled one (every image becomes the same fill image).
"""
from __future__ import annotations

import numpy as np
import torch

from ..checks import check_inputs


@torch.no_grad()
def grayflip_changes(model, inputs: torch.Tensor, maps: dict, taus=tuple(range(0, 101, 5)), fill: float = 0.5,
                     seed: int = 0, batch_size: int | None = None) -> dict:
    """Per map, whether each image's prediction changes when its lowest-scoring pixels are filled.

    Args:
        model: classifier returning logits for inputs in [0, 1].
        inputs: ``(N, C, H, W)`` images in [0, 1].
        maps: ``{name: scores}``, each ``(N, H, W)`` per-pixel scores (higher = more relevant);
            reduce channels beforehand.
        taus: thresholds in percent, 0 (nothing filled) to 100 (everything filled).
        fill: the replacement value in [0, 1] (0.5 gray, 0 black, 1 white).
        seed: seeds the tie-breaking order (the same for every map).
        batch_size: about how many images enter one forward pass; None: 64 on a CPU (small passes
            keep the activations in cache) and 2048 on a GPU.
    Returns ``{name: changed}``, ``changed`` a boolean array ``(N, len(taus))``; its mean over axis 0
    is the flipping curve.
    """
    check_inputs(inputs)
    if not 0 <= fill <= 1 or any(not 0 <= t <= 100 for t in taus):
        raise ValueError("fill must lie in [0, 1] and every tau in [0, 100]")
    n, _, h, w = inputs.shape
    for name, scores in maps.items():
        if tuple(scores.shape) != (n, h, w):
            raise ValueError(f"scores of {name!r} must be per-pixel, shaped (N, H, W) = {(n, h, w)}; got {tuple(scores.shape)}")
        if not torch.isfinite(scores).all():
            raise ValueError(f"scores of {name!r} contain NaN or infinite values")
    device = next(model.parameters()).device
    batch_size = batch_size or (64 if device.type == "cpu" else 2048)
    base = _predict(model, inputs, device, batch_size)
    ks = [int(np.floor(t / 100 * h * w)) for t in taus]
    all_filled = _predict(model, torch.full_like(inputs[:1], fill), device, batch_size) != base
    return {name: _changes(model, inputs, _ranks(scores, seed), ks, fill, base, all_filled, device, batch_size)
            for name, scores in maps.items()}


def _ranks(scores: torch.Tensor, seed: int) -> torch.Tensor:
    """Rank of each pixel, ``(N, H·W)``: lexicographic (score, seeded random) order, lowest first."""
    n = len(scores)
    tiebreak = torch.rand((n, scores[0].numel()), generator=torch.Generator().manual_seed(seed))
    order = torch.from_numpy(np.lexsort((tiebreak.numpy(), scores.flatten(1).double().cpu().numpy()), axis=1))
    return torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1]).expand(n, -1))


def _changes(model, inputs, rank, ks, fill, base, all_filled, device, batch_size) -> np.ndarray:
    n, _, h, w = inputs.shape
    changed = torch.zeros((n, len(ks)), dtype=torch.bool)
    changed[:, [i for i, k in enumerate(ks) if k >= h * w]] = all_filled[:, None]
    partial = [i for i, k in enumerate(ks) if 0 < k < h * w]
    per_chunk = max(1, batch_size // n)
    for start in range(0, len(partial), per_chunk):
        chunk = partial[start:start + per_chunk]
        filled = torch.stack([rank < ks[i] for i in chunk]).view(len(chunk), n, 1, h, w)
        flipped = torch.where(filled, torch.tensor(fill, dtype=inputs.dtype), inputs.cpu()[None]).flatten(0, 1)
        changed[:, chunk] = (_predict(model, flipped, device, batch_size).view(len(chunk), n) != base).T
    return changed.numpy()


def _predict(model, x: torch.Tensor, device, batch_size: int) -> torch.Tensor:
    return torch.cat([model(b.to(device).contiguous(memory_format=torch.channels_last)).argmax(1).cpu()
                      for b in x.split(batch_size)])
