"""Salt-and-pepper pixel attack guided by a map (MPE paper, §4.3).

Pixels are overwritten one at a time, in descending order of a per-pixel score, with salt (white) or
pepper (black) noise, until the predicted label changes or ``budget`` pixels are changed. The MPE
paper scores each pixel by its highest MPE for the predicted class over the colour channels; a
random order with random salt/pepper gives the baseline at the same budget.

Because a map computed on the original image fixes the whole order, every prefix of the order is
known in advance: the prefixes of an image are evaluated in blocks of ``block`` consecutive prefixes,
all images' blocks in batched forward passes, and the attack's result is the first prefix whose
prediction differs from the original label. An image whose label has changed needs no further
block, so a success after k pixels costs about k forward passes, not ``budget``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..checks import as_targets, check_inputs, check_maps


@dataclass
class AttackResult:
    """Per image: ``success`` (label changed within the budget), ``n_changed`` (pixels changed at
    success, else the budget), ``probs`` ``(N, budget + 1, c)`` class probabilities after 0..budget
    changes (NaN for the prefixes not evaluated because the label had already changed),
    ``pixels`` ``(N, budget)`` flat pixel indices in the order they were changed, and the
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
                           salt: torch.Tensor, budget: int = 60, until_success: bool = True, block: int = 8,
                           batch_size: int = 128, progress: bool = True) -> AttackResult:
    """Change pixels in descending ``pixel_scores`` order to white (``salt``) or black until the
    prediction leaves ``label`` or ``budget`` pixels are changed.

    Args:
        model: classifier returning logits for inputs in [0, 1].
        inputs: ``(N, C, H, W)`` images in [0, 1].
        label: the label to move away from (the prediction on the clean image), int or one per image.
        pixel_scores: ``(N, H, W)``; highest first. NaN is refused; -inf marks pixels to change last.
        salt: ``(N, H, W)`` booleans; True paints the pixel white (1 on every channel), False black.
        budget: most pixels changed (the paper: 60).
        until_success: stop evaluating an image's prefixes once its label changed (False: all
            ``budget + 1`` prefixes, for a whole probability curve). Success and ``n_changed`` are the same.
        block: consecutive prefixes of an image evaluated per round (speed only).
        batch_size: most images per forward pass.
    """
    check_inputs(inputs)
    n, c, h, w = inputs.shape
    if tuple(pixel_scores.shape) != (n, h, w) or tuple(salt.shape) != (n, h, w):
        raise ValueError(f"pixel_scores and salt must be shaped (N, H, W) = {(n, h, w)}")
    # -inf is allowed (a pixel to attack last, e.g. one whose values MPE never saw); NaN and +inf are refused
    check_maps(pixel_scores.masked_fill(pixel_scores == -torch.inf, 0.0), tuple(inputs.shape), "pixel_scores")
    if not 1 <= budget <= h * w:
        raise ValueError(f"budget must lie in 1..{h * w}, got {budget}")
    if block < 1:
        raise ValueError(f"block must be a positive integer, got {block}")
    labels = as_targets(label, n)
    device = next(model.parameters()).device
    pixels = pixel_scores.flatten(1).float().argsort(dim=1, descending=True, stable=True)[:, :budget]
    # rank[k, p] = when pixel p is changed (budget = never); prefix j changes the pixels of rank < j
    rank = torch.full((n, h * w), budget).scatter_(1, pixels, torch.arange(budget).expand(n, -1))
    paint = salt.flatten(1).to(inputs.dtype)[:, None, :]  # (N, 1, H*W): 1 white, 0 black
    flat = inputs.detach().flatten(2)  # (N, C, H*W)
    probs = None
    flipped = torch.zeros(n, dtype=torch.bool)
    starts = range(0, budget + 1, block)
    for start in tqdm(starts, desc="salt-and-pepper attack", disable=not progress):
        todo = (~flipped).nonzero().flatten() if until_success else torch.arange(n)
        if len(todo) == 0:
            break
        prefix = torch.arange(start, min(start + block, budget + 1))
        out = []
        for sl in torch.split(todo, max(1, batch_size // len(prefix))):
            changed = rank[sl, None, :] < prefix[None, :, None]  # (n', block, H*W)
            images = torch.where(changed[:, :, None, :], paint[sl, :, None, :], flat[sl, None])  # (n', block, C, H*W)
            batch = images.view(-1, c, h, w).to(device).contiguous(memory_format=torch.channels_last)
            out.append(F.softmax(model(batch), 1).cpu().view(len(sl), len(prefix), -1))
        p = torch.cat(out)
        if probs is None:
            probs = torch.full((n, budget + 1, p.shape[2]), torch.nan)
        probs[todo[:, None], prefix[None, :]] = p
        flipped[todo] |= (p.argmax(2) != labels[todo, None]).any(1)
    evaluated = ~probs[:, :, 0].isnan()
    changed_label = (probs.argmax(2) != labels[:, None]) & evaluated
    success = changed_label.any(1)
    n_changed = torch.where(success, changed_label.float().argmax(1), torch.full((n,), budget))
    adversarial = inputs.clone()
    for k in success.nonzero().flatten().tolist():
        cols = pixels[k, : n_changed[k]]
        adversarial[k].view(c, -1)[:, cols] = paint[k, :, cols]
    return AttackResult(success.numpy(), n_changed.numpy(), probs, pixels, adversarial)
