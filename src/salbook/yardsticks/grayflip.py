"""The gray-flipping curve (Ikeno & Hara 2018, §4.2).

For each threshold τ, the pixels of each image scoring below its τ-quantile are set to a fill colour
(gray 0.5 in the paper; black 0 and white 1 in its footnote), and the curve reports the share of
images whose decision changes. A good map keeps the relevant pixels (high scores) and so keeps the
decision for large τ: **lower is better**.

"Below the τ-quantile" is implemented by rank: the ⌊τ/100 · H·W⌋ lowest-scoring pixels are filled,
ties broken at random (seeded), so maps with many equal scores (a clipped PertMap box, a saturated
gradient) are not favoured or punished by the tie order.
"""
from __future__ import annotations

import numpy as np
import torch

from ..checks import check_inputs


@torch.no_grad()
def grayflip_curve(model, inputs: torch.Tensor, scores: torch.Tensor, taus=tuple(range(0, 101, 5)),
                   fill: float = 0.5, seed: int = 0, batch_size: int = 512) -> np.ndarray:
    """Share of images whose prediction changes when their lowest-scoring pixels are filled.

    Args:
        model: classifier returning logits for inputs in [0, 1].
        inputs: ``(N, C, H, W)`` images in [0, 1].
        scores: ``(N, H, W)`` per-pixel scores (higher = more relevant); reduce channels beforehand.
        taus: thresholds in percent, 0 (nothing filled) to 100 (everything filled).
        fill: the replacement value in [0, 1] (0.5 gray, 0 black, 1 white).
    Returns the curve as an array, one value per τ.
    """
    check_inputs(inputs)
    n, c, h, w = inputs.shape
    if tuple(scores.shape) != (n, h, w):
        raise ValueError(f"scores must be per-pixel, shaped (N, H, W) = {(n, h, w)}; got {tuple(scores.shape)}")
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    if not 0 <= fill <= 1 or any(not 0 <= t <= 100 for t in taus):
        raise ValueError("fill must lie in [0, 1] and every tau in [0, 100]")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    tiebreak = torch.rand((n, h * w), generator=gen)
    # rank of each pixel: lexicographic (score, random) order, lowest first
    order = torch.from_numpy(np.lexsort((tiebreak.numpy(), scores.flatten(1).double().numpy()), axis=1))
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(h * w).expand(n, -1))
    base = _predict(model, inputs, device, batch_size)
    curve = []
    for tau in taus:
        k = int(np.floor(tau / 100 * h * w))
        filled = (rank < k).view(n, 1, h, w)
        flipped = torch.where(filled, torch.full_like(inputs, fill), inputs)
        curve.append((_predict(model, flipped, device, batch_size) != base).float().mean().item())
    return np.array(curve)


def _predict(model, x: torch.Tensor, device, batch_size: int) -> torch.Tensor:
    return torch.cat([model(b.to(device)).argmax(1).cpu() for b in x.split(batch_size)])
