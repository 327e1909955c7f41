"""Salt-and-pepper pixel attack guided by a map (MPE paper, §4.3).

Pixels are overwritten one at a time, in descending order of a per-pixel score, with salt (white) or
pepper (black) noise, until the predicted label changes or ``budget`` pixels are changed. The MPE
paper scores each pixel by its highest MPE for the predicted class over the colour channels; a
random order with random salt/pepper gives the baseline at the same budget.

Because a map computed on the original image fixes the whole order, every prefix of the order is
known in advance: all ``budget`` prefixes of an image are evaluated in batched forward passes, and
the attack's result is the first prefix whose prediction differs from the original label.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..checks import as_targets, check_inputs


@dataclass
class AttackResult:
    """Per image: ``success`` (label changed within the budget), ``n_changed`` (pixels changed at
    success, else the budget), ``probs`` ``(N, budget + 1, c)`` class probabilities after 0..budget
    changes, ``pixels`` ``(N, budget)`` flat pixel indices in the order they were changed, and the
    ``adversarial`` images at success (the original image where the attack failed)."""

    success: np.ndarray
    n_changed: np.ndarray
    probs: torch.Tensor
    pixels: torch.Tensor
    adversarial: torch.Tensor

    @property
    def rate(self) -> float:
        return float(self.success.mean()) if len(self.success) else float("nan")


@torch.no_grad()
def salt_and_pepper_attack(model, inputs: torch.Tensor, label, pixel_scores: torch.Tensor,
                           salt: torch.Tensor, budget: int = 60, batch_size: int = 2048,
                           progress: bool = True) -> AttackResult:
    """Change pixels in descending ``pixel_scores`` order to white (``salt``) or black until the
    prediction leaves ``label`` or ``budget`` pixels are changed.

    Args:
        model: classifier returning logits for inputs in [0, 1].
        inputs: ``(N, C, H, W)`` images in [0, 1].
        label: the label to move away from (the prediction on the clean image), int or one per image.
        pixel_scores: ``(N, H, W)``; highest first.
        salt: ``(N, H, W)`` booleans; True paints the pixel white (1 on every channel), False black.
        budget: most pixels changed (the paper: 60).
    """
    check_inputs(inputs)
    n, c, h, w = inputs.shape
    if tuple(pixel_scores.shape) != (n, h, w) or tuple(salt.shape) != (n, h, w):
        raise ValueError(f"pixel_scores and salt must be shaped (N, H, W) = {(n, h, w)}")
    if not 1 <= budget <= h * w:
        raise ValueError(f"budget must lie in 1..{h * w}, got {budget}")
    labels = as_targets(label, n)
    device = next(model.parameters()).device
    pixels = pixel_scores.flatten(1).float().nan_to_num(nan=-torch.inf).argsort(dim=1, descending=True, stable=True)[:, :budget]
    # rank[k, p] = when pixel p is changed (budget = never); prefix j changes the pixels of rank < j
    rank = torch.full((n, h * w), budget).scatter_(1, pixels, torch.arange(budget).expand(n, -1))
    paint = salt.flatten(1).to(inputs.dtype)[:, None, :]  # (N, 1, H*W): 1 white, 0 black
    flat = inputs.detach().flatten(2)  # (N, C, H*W)
    chunk = max(1, batch_size // (budget + 1))
    probs = []
    for start in tqdm(range(0, n, chunk), desc="salt-and-pepper attack", disable=not progress):
        sl = slice(start, start + chunk)
        changed = rank[sl, None, :] < torch.arange(budget + 1)[None, :, None]  # (n', budget + 1, H*W)
        prefixes = torch.where(changed[:, :, None, :], paint[sl, :, None, :], flat[sl, None])  # (n', budget + 1, C, H*W)
        logits = model(prefixes.view(-1, c, h, w).to(device))
        probs.append(F.softmax(logits, 1).cpu().view(-1, budget + 1, logits.shape[1]))
    probs = torch.cat(probs)  # (N, budget + 1, classes)
    flipped = probs.argmax(2) != labels[:, None]
    success = flipped.any(1)
    n_changed = torch.where(success, flipped.float().argmax(1), torch.full((n,), budget))
    adversarial = inputs.clone()
    for k in success.nonzero().flatten().tolist():
        cols = pixels[k, : n_changed[k]]
        adversarial[k].view(c, -1)[:, cols] = paint[k, :, cols]
    return AttackResult(success.numpy(), n_changed.numpy(), probs, pixels, adversarial)
