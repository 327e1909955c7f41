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
                       samples: int = 256, corners: bool = False, seed: int = 0, batch_size: int | None = None) -> torch.Tensor:
    """Share of r ~ U([−lower, upper]) (or, with ``corners``, r uniform on the box's corners) for which
    the prediction on ``inputs + r`` differs from the prediction on ``inputs``; one value per image.

    Images are processed in groups of about ``batch_size`` perturbed copies (None: 64 on a CPU, where
    small passes keep the activations in cache, and 2048 on a GPU); the draws (image after image,
    ``samples`` each, from one generator seeded with ``seed``) do not depend on the grouping.
    """
    check_inputs(inputs)
    if lower.shape != inputs.shape or upper.shape != inputs.shape:
        raise ValueError(f"lower and upper must be shaped like inputs {tuple(inputs.shape)}")
    if (lower < 0).any() or (upper < 0).any():
        raise ValueError("box half-widths must be non-negative")
    if samples < 1:
        raise ValueError("samples must be ≥ 1")
    device = next(model.parameters()).device
    batch_size = batch_size or (64 if device.type == "cpu" else 2048)
    gen = torch.Generator().manual_seed(seed)
    per_group = max(1, batch_size // samples)
    rates = []
    for x, lo, up in zip(inputs.split(per_group), lower.split(per_group), upper.split(per_group)):
        u = torch.rand((len(x), samples, *x.shape[1:]), generator=gen)
        if corners:
            u = (u > 0.5).float()
        perturbed = (x[:, None] + (-lo[:, None] + u * (lo + up)[:, None])).flatten(0, 1)
        c = _predict(model, x, device)
        preds = torch.cat([_predict(model, b, device) for b in perturbed.split(batch_size)]).view(len(x), samples)
        rates.append((preds != c[:, None]).float().mean(1))
    return torch.cat(rates)


def _predict(model, x: torch.Tensor, device) -> torch.Tensor:
    return model(x.to(device).contiguous(memory_format=torch.channels_last)).argmax(1).cpu()
