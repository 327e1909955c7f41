"""Adversarial attacks that the zoo trains with and the yardsticks evaluate with: below the methods and
the zoo (``data → attacks → zoo → methods → yardsticks``), so training a robust model imports no
attribution method.

:func:`pgd_l2` is untargeted ℓ2 PGD (Madry et al. 2018). :func:`loss_gradient` is the one gradient of the
cross-entropy that the attacks here and the perturbation methods (``methods.frank_wolfe``) step along.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import as_targets, check_inputs

_TINY = torch.finfo(torch.float32).tiny  # keeps an all-zero gradient from dividing by zero


def pgd_l2(model, inputs: torch.Tensor, labels, eps: float, steps: int, step_size: float, random_start: bool = True,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Untargeted ℓ2 PGD (Madry et al. 2018) in [0, 1] pixel space; returns the adversarial images.

    Each step adds ``step_size``·g/‖g‖₂ (g: the gradient of the cross-entropy of ``labels``), rescales δ
    into the ε-ball and clamps x + δ to [0, 1]; the last iterate is returned. The random start is a
    Gaussian direction at radius ε·U(0, 1) (Rice et al. 2020; torchattacks' ``PGDL2``, whose steps
    these are), drawn from ``generator`` (on the CPU). The model is used in whatever mode it is in:
    ``zoo.fit`` calls this in train mode, as Madry's ``robustness`` library trains.
    """
    if not (eps > 0 and steps >= 1 and step_size > 0):
        raise ValueError(f"pgd_l2 needs eps > 0, steps ≥ 1 and step_size > 0, got {eps}, {steps}, {step_size}")
    check_inputs(inputs)
    x = inputs.detach()
    y = as_targets(labels, len(x)).to(x.device)
    delta = torch.zeros_like(x)
    if random_start:
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        radius = eps * torch.rand(len(x), generator=generator).to(x.device)
        delta = (x + per_image(radius) * noise / l2_norms(noise)).clamp(0, 1) - x
    for k in range(steps):
        g = loss_gradient(model, x + delta, y, targeted=False, check=k == 0)  # ∇(−CE): ascend CE along −g
        delta = delta - step_size * g / l2_norms(g)
        delta = delta * (eps / l2_norms(delta)).clamp(max=1)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def loss_gradient(model, images: torch.Tensor, classes: torch.Tensor, targeted: bool,
                  check: bool = False) -> torch.Tensor:
    """∇ of the loss to minimise: Σ CE toward ``classes`` (targeted) or −Σ CE (untargeted). With ``check``,
    ``classes`` are first checked against the number of logits (cross-entropy would silently ignore −100)."""
    images = images.detach().requires_grad_(True)
    logits = model(images)
    if check:
        check_classes(classes, logits.shape[1])
    loss = F.cross_entropy(logits, classes, reduction="sum")
    (grad,) = torch.autograd.grad(loss if targeted else -loss, images)
    return grad


def check_classes(classes: torch.Tensor, n_classes: int) -> None:
    """Class indices must lie in 0..n_classes − 1 (a label of another dataset, or −1 for "none", fails here)."""
    if len(classes) and (int(classes.min()) < 0 or int(classes.max()) >= n_classes):
        raise ValueError(f"target classes must lie in 0..{n_classes - 1} (the model has {n_classes} outputs), "
                         f"got {int(classes.min())}..{int(classes.max())}")


def l2_norms(t: torch.Tensor) -> torch.Tensor:
    """Each image's ℓ2 norm, shaped to broadcast over it (never 0)."""
    return per_image(t.flatten(1).norm(dim=1).clamp_min(_TINY))


def per_image(v: torch.Tensor) -> torch.Tensor:
    """A per-image vector shaped to broadcast over (N, C, H, W)."""
    return v.view(-1, 1, 1, 1)
