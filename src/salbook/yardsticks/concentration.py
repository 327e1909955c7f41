"""How concentrated a map is: the Gini index (Chalasani et al. 2020; Quantus' ``Sparseness``).

A sparse, localised explanation (the ℓ1-q counterfactuals' selling point) puts its relevance on few
pixels. The Gini index of the non-negative relevances r₁ ≤ … ≤ r_d of one map,
G = Σ_k (2k − d − 1)·r_k / (d·Σ_k r_k), is 0 when every pixel has the same relevance and tends to 1
when one pixel has it all. Higher = more concentrated.
"""
from __future__ import annotations

import numpy as np
import torch

from ..checks import check_maps


def gini(relevance: torch.Tensor) -> np.ndarray:
    """Gini index per map of non-negative ``relevance`` ``(N, ...)``; NaN for an all-zero map."""
    check_maps(relevance, name="relevance")
    r = relevance.detach().flatten(1).double().sort(dim=1).values
    if (r < 0).any():
        raise ValueError("relevance must be non-negative: take |map| or shift it first (contract.relevance)")
    d = r.shape[1]
    k = torch.arange(1, d + 1, dtype=r.dtype)
    total = r.sum(1)
    g = ((2 * k - d - 1) * r).sum(1) / (d * total.clamp(min=torch.finfo(r.dtype).tiny))
    return torch.where(total > 0, g, torch.nan).numpy()
