"""Insertion and deletion curves (Petsiuk et al. 2018, RISE), as the reference ``evaluation.py`` does.

Pixels are ordered by decreasing saliency (one score per pixel; all channels of a pixel change
together). **Deletion** starts from the image and replaces ``step`` pixels at a time by the
substrate (RISE: zeros of the *normalised* tensor, i.e. the dataset's mean colour); **insertion**
starts from a blurred copy (Gaussian, kernel 11, σ = 5) and puts the original pixels back. The
score is the softmax probability of the class given as target (RISE: the class predicted on the
original image). The area under the curve is the trapezoid on [0, 1],
``AUC = (Σ_k s_k − s_0/2 − s_n/2) / n`` over the n steps. Deletion: lower is better; insertion:
higher is better.

Call shape as Quantus: ``metric(model, inputs, targets, attributions)``, one value per image.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import as_targets, check_inputs, check_maps


def gaussian_blur(inputs: torch.Tensor, kernel: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's insertion start: per-channel Gaussian blur with zero padding (``klen`` 11, σ 5)."""
    half = kernel // 2
    g = torch.exp(-((torch.arange(kernel, dtype=inputs.dtype) - half) ** 2) / (2 * sigma ** 2))
    g = (g / g.sum()).to(inputs.device)
    c = inputs.shape[1]
    x = F.conv2d(inputs, g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, half), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(half, 0), groups=c)


@torch.no_grad()
def curve(model, inputs: torch.Tensor, targets, attributions: torch.Tensor, mode: str = "deletion",
          step: int | None = None, substrate: torch.Tensor | None = None, batch_size: int = 64) -> np.ndarray:
    """Probability of the target after each step, shaped (N, n_steps + 1).

    Args:
        attributions: ``(N, H, W)`` per-pixel scores, or ``(N, C, H, W)`` (summed over channels).
        step: pixels changed per step (default ⌈H·W / 28⌉: RISE's batch evaluation changes 224·8 of
            224² pixels per step, 28 steps).
        substrate: what deleted pixels become: ``(C,)`` per channel, or an image batch. Default: the
            per-channel mean of ``inputs`` (RISE's zeros of the normalised tensor are the data's
            mean colour; our models normalise inside). Insertion always starts from
            :func:`gaussian_blur`.
        batch_size: images per forward (a few dozen run fastest on a CPU).
    """
    check_inputs(inputs)
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"unknown mode {mode!r}: choose 'deletion' or 'insertion'")
    n, c, h, w = inputs.shape
    check_maps(attributions, tuple(inputs.shape), name="attributions")
    scores = attributions.sum(1) if attributions.dim() == 4 else attributions
    if tuple(scores.shape) != (n, h, w):
        raise ValueError(f"attributions must be (N, H, W) or (N, C, H, W) for inputs {tuple(inputs.shape)}")
    step = step or math.ceil(h * w / 28)
    n_steps = math.ceil(h * w / step)
    device = next(model.parameters()).device
    x = inputs.to(device)
    targets = as_targets(targets, n).to(device)
    if mode == "deletion":
        fill = x.mean((0, 2, 3)) if substrate is None else torch.as_tensor(substrate, device=device, dtype=x.dtype)
        start, finish = x, (fill.view(1, c, 1, 1).expand_as(x) if fill.dim() == 1 else fill)
    else:
        start, finish = gaussian_blur(x), x
    order = scores.flatten(1).to(device).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(h * w, device=device).expand(n, -1))
    out = torch.empty(n, n_steps + 1)
    for k in range(n_steps + 1):
        changed = (rank < k * step).view(n, 1, h, w)
        probe = torch.where(changed, finish, start)
        for b in range(0, n, batch_size):
            p = F.softmax(model(probe[b:b + batch_size]), 1)
            out[b:b + batch_size, k] = p.gather(1, targets[b:b + batch_size, None])[:, 0].cpu()
    return out.numpy()


def auc(values: np.ndarray) -> np.ndarray:
    """RISE's area under each curve: ``(Σ s_k − s_0/2 − s_n/2) / n``."""
    n = values.shape[1] - 1
    return (values.sum(1) - values[:, 0] / 2 - values[:, -1] / 2) / n


def deletion_auc(model, inputs, targets, attributions, **options) -> np.ndarray:
    """Area under the deletion curve per image (lower is better)."""
    return auc(curve(model, inputs, targets, attributions, "deletion", **options))


def insertion_auc(model, inputs, targets, attributions, **options) -> np.ndarray:
    """Area under the insertion curve per image (higher is better)."""
    return auc(curve(model, inputs, targets, attributions, "insertion", **options))
