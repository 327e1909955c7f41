"""One figure style for the whole book.

Figures have a white background (legible in the theme's dark mode too), no axes on images, titles in
small type, and colour maps chosen once: ``gray`` for MNIST digits, ``viridis`` for probabilities and
saliency (dark = low, light = high, as in the MPE paper's figures).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

SALIENCY_CMAP = "viridis"
ARM_COLORS = dict(zip(("mpe+typical", "rand+typical", "mpe+rand", "rand+rand"), sns.color_palette("colorblind", 4)))


def set_style() -> None:
    """Apply the book's matplotlib style (call once per notebook)."""
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)
    plt.rcParams.update({
        "figure.facecolor": "white", "savefig.facecolor": "white", "figure.dpi": 110,
        "axes.titlesize": 9, "image.interpolation": "nearest",
    })


def image_grid(images, titles=None, ncols: int | None = None, cmap=None, vmin=None, vmax=None,
               size: float = 1.5, colorbar: bool = False, marks=None, suptitle: str | None = None):
    """Show images (uint8 ``(H, W[, 3])`` or float maps ``(H, W)``) in a grid; return the figure.

    ``marks[k]`` is a list of ``(row, col)`` pixels to outline in red on image k.
    """
    images = list(images)
    ncols = ncols or len(images)
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.3 if suptitle else 0)),
                             squeeze=False, layout="constrained")
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= len(images):
            continue
        im = ax.imshow(images[k], cmap=cmap if np.ndim(images[k]) == 2 else None, vmin=vmin, vmax=vmax)
        if titles is not None:
            ax.set_title(titles[k])
        for r, c in (marks[k] if marks else []):
            ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    if colorbar:
        fig.colorbar(im, ax=axes, shrink=0.8)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def log_map(m, floor: float = -10.0) -> np.ndarray:
    """``log`` of a probability map clipped to ``[floor, 0]`` (the MPE paper's display, Fig. 1–2)."""
    m = np.asarray(m, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip(np.log(m), floor, 0.0)
