"""Is a perturbation box really invariant? (PertMap, Problem 2.1.)

A box explanation claims c = argmax_j f_j(x + r) for every r in R = [−lower, upper]. We test the
claim by sampling r uniformly in the box (and at its corners, where a linear model is worst) and
reporting the share of samples that change the decision.
"""
from __future__ import annotations

import torch

from ..checks import check_inputs


@torch.no_grad()
def box_violation_rate(model, inputs: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                       samples: int = 256, corners: bool = False, seed: int = 0, batch_size: int = 1024) -> torch.Tensor:
    """Share of r ~ U([−lower, upper]) (or, with ``corners``, r uniform on the box's corners) for which
    the prediction on ``inputs + r`` differs from the prediction on ``inputs``; one value per image."""
    check_inputs(inputs)
    if lower.shape != inputs.shape or upper.shape != inputs.shape:
        raise ValueError(f"lower and upper must be shaped like inputs {tuple(inputs.shape)}")
    if (lower < 0).any() or (upper < 0).any():
        raise ValueError("box half-widths must be non-negative")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    rates = []
    for k in range(len(inputs)):
        u = torch.rand((samples, *inputs.shape[1:]), generator=gen)
        if corners:
            u = (u > 0.5).float()
        r = -lower[k] + u * (lower[k] + upper[k])
        x = inputs[k:k + 1].to(device)
        c = model(x).argmax(1).cpu()
        preds = torch.cat([model((x + b.to(device))).argmax(1).cpu() for b in r.split(batch_size)])
        rates.append((preds != c).float().mean())
    return torch.stack(rates)
