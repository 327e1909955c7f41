"""Sanity checks for saliency maps (Adebayo et al. 2018): does the map depend on the model?

**Cascading model-parameter randomisation** re-initialises the network's weighted layers from the
top (logits) downwards, one more layer at each stage and cumulatively, and compares each stage's
maps with the trained model's. A map that stays similar while the layers it should explain are
destroyed does not explain the model: passing means *low* similarity. Re-initialisation: truncated
normal with std 0.01 (the paper's CNN setting), for weights and biases.

**Data randomisation** compares the maps of a model trained on permuted labels (to high
*training* accuracy) with the maps of the model trained on true labels; the caller trains both
(see the zoo) and uses :func:`similarity` directly.

Similarities (the paper's): Spearman rank correlation of the absolute maps and of the signed maps,
and SSIM of the absolute maps scaled to [0, 1] per image, each averaged over images.
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn

from ..checks import check_maps


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The convolution and linear layers of ``model``, from the top (output) down."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))][::-1]


def similarity(a: torch.Tensor, b: torch.Tensor, per_image: bool = False) -> dict:
    """Mean over images of Spearman (|·| and signed) and SSIM (|·| scaled to [0, 1]) between two map batches.

    Maps are ``(N, H, W)`` or ``(N, C, H, W)`` (summed over channels first). ``per_image=True`` adds
    ``"per_image"``: the three values of every image (NaN where a map is constant), for intervals.
    """
    check_maps(a, name="the first maps")
    check_maps(b, name="the second maps")
    if a.shape != b.shape:
        raise ValueError(f"map batches differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    a, b = (m.sum(1) if m.dim() == 4 else m for m in (a, b))
    rows = []
    for x, y in zip(a.double().numpy(), b.double().numpy()):
        ax, ay = np.abs(x), np.abs(y)
        rows.append((_spearman(ax, ay), _spearman(x, y), structural_similarity(_unit(ax), _unit(ay), data_range=1.0)))
    values = np.array(rows)
    spearman_abs, spearman, ssim = np.nanmean(values, 0)
    out = {"spearman_abs": spearman_abs, "spearman": spearman, "ssim": ssim}
    if per_image:
        out["per_image"] = dict(zip(("spearman_abs", "spearman", "ssim"), values.T))
    return out


def cascading_randomisation(model: nn.Module, inputs: torch.Tensor, targets,
                            explain: Callable[[nn.Module, torch.Tensor, object], torch.Tensor],
                            std: float = 0.01, seed: int = 0, original: torch.Tensor | None = None,
                            per_image: bool = False) -> list[dict]:
    """Similarity of ``explain(model', inputs, targets)`` to the trained model's maps, per stage.

    ``explain`` builds and runs a method on the given model (e.g.
    ``lambda m, x, t: baselines.make("gradient", m).attribute(x, target=t)``); ``original``, if
    given, holds the trained model's maps already computed. Returns one row per stage:
    ``{"randomised": <layer name down to which weights are random>, **similarity}``, the first row
    (``"none"``) comparing the trained model with itself; ``per_image`` as :func:`similarity`.
    """
    if original is None:
        original = explain(model, inputs, targets)
    check_maps(original, tuple(inputs.shape), name="the trained model's maps")
    rows = [{"randomised": "none", **similarity(original, original, per_image)}]
    randomised = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    for name, layer in weighted_layers(randomised):
        _reinitialise(layer, std, gen)
        maps = explain(randomised, inputs, targets)
        check_maps(maps, tuple(inputs.shape), name=f"the maps with the layers down to {name} random")
        rows.append({"randomised": name, **similarity(original, maps, per_image)})
    return rows


def randomised_model(model: nn.Module, std: float = 0.01, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every weighted layer re-initialised: the last stage of the cascade,
    drawn from the same seeded generator in the same order as :func:`cascading_randomisation`."""
    randomised = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    for _, layer in weighted_layers(randomised):
        _reinitialise(layer, std, gen)
    return randomised


@torch.no_grad()
def _reinitialise(layer: nn.Module, std: float, gen: torch.Generator) -> None:
    for p in (layer.weight, layer.bias):
        if p is not None:
            p.copy_(_truncated_normal(p.shape, std, gen).to(p.device))


def _truncated_normal(shape, std: float, gen: torch.Generator) -> torch.Tensor:
    """Normal(0, std²) truncated at ±2 std (TensorFlow's truncated_normal), by resampling."""
    out = torch.randn(shape, generator=gen)
    while (bad := out.abs() > 2).any():
        out[bad] = torch.randn(int(bad.sum()), generator=gen)
    return out * std


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")  # undefined for a constant map
    return float(spearmanr(x.ravel(), y.ravel()).statistic)


def _unit(x: np.ndarray) -> np.ndarray:
    span = np.ptp(x)
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)
