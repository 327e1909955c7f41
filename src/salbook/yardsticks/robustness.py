"""Robust accuracy under ℓ2 PGD: the share of images a model still classifies correctly after the
attack, the number MadryLab's ``robustness`` library reports for its CIFAR-10 models (20 steps of
2.5·ε/20, no random start; REFERENCE_NOTES §5(c)). ε is in [0, 1] pixel units.
"""
from __future__ import annotations

import torch

from ..checks import as_targets, check_inputs
from ..attacks import check_classes, pgd_l2


def robust_correct(model, inputs: torch.Tensor, labels, eps: float, steps: int = 20, step_size: float | None = None,
                   random_start: bool = False, batch_size: int = 256, seed: int = 0) -> torch.Tensor:
    """Per image (on the CPU): is the label still predicted after :func:`~salbook.attacks.pgd_l2`
    at radius ``eps``? ``eps = 0`` gives plain correctness. The mean is the robust accuracy;
    ``stats.proportion(k, n)`` gives its interval. ``step_size`` defaults to 2.5·ε/steps. Labels outside the
    model's classes are refused (they would count as silent mistakes)."""
    check_inputs(inputs)
    if eps < 0:
        raise ValueError(f"eps must be ≥ 0, got {eps}")
    y = as_targets(labels, len(inputs))
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    out = []
    for x, t in zip(inputs.split(batch_size), y.split(batch_size)):
        x, t = x.to(device), t.to(device)
        if eps > 0:
            x = pgd_l2(model, x, t, eps, steps, 2.5 * eps / steps if step_size is None else step_size, random_start, gen)
        with torch.no_grad():
            logits = model(x)
        check_classes(t, logits.shape[1])
        out.append((logits.argmax(1) == t).cpu())
    return torch.cat(out)
