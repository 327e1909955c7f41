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
VERDICT_COLORS = {"reproduced": "#4c9a4c", "partly": "#e0b040", "not reproduced": "#c0504d"}
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

    ``cmap``, ``vmin`` and ``vmax`` are one value for all images or a list with one per image.
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
        im = ax.imshow(images[k], cmap=_each(cmap, k) if np.ndim(images[k]) == 2 else None,
                       vmin=_each(vmin, k), vmax=_each(vmax, k))
        if titles is not None:
            ax.set_title(titles[k])
        outline(ax, marks[k] if marks else [])
    if colorbar:
        fig.colorbar(im, ax=axes, shrink=0.8)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def outline(ax, pixels) -> None:
    """Outline ``(row, col)`` pixels in red."""
    for r, c in pixels:
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.2))


def correction_figure(images, probs, changed, class_names, label: int, size: float = 1.6):
    """A closed-loop correction step by step: the images after each kept replacement (changed pixels
    outlined) and the class probabilities along the way, the true and the first predicted class in bold."""
    probs = np.asarray(probs)
    first = int(probs[0].argmax())
    titles = [f"{'original' if s == 0 else f'step {s}'}: {class_names[int(p.argmax())]} ({p.max():.2f})"
              for s, p in enumerate(probs)]
    fig = plt.figure(figsize=(size * len(images) + 3.2, size + 0.8), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[len(images), 2])
    for ax, img, title, marks in zip(np.atleast_1d(left.subplots(1, len(images))), images, titles, changed):
        ax.imshow(img, cmap="gray" if np.ndim(img) == 2 else None)
        ax.set_title(title)
        ax.set_axis_off()
        outline(ax, marks)
    ax = right.subplots()
    for j in range(probs.shape[1]):
        bold = j in (label, first)
        ax.plot(probs[:, j], "o-" if bold else "-", lw=2 if bold else 0.8, alpha=1 if bold else 0.4,
                label=class_names[j] if bold else None)
    ax.set_xlabel("replacements kept")
    ax.set_ylabel("probability")
    ax.legend(frameon=False, fontsize=8)
    return fig


def _each(value, k):
    return value[k] if isinstance(value, (list, tuple)) else value


def log_map(m, floor: float = -10.0) -> np.ndarray:
    """``log`` of a probability map clipped to ``[floor, 0]`` (the MPE paper's display, Fig. 1–2)."""
    m = np.asarray(m, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip(np.log(m), floor, 0.0)


def verdict_bars(counts: "dict[str, dict[str, int]]", ax=None):
    """One horizontal bar per part of the book, split into its claims' verdicts (``{part: {verdict: n}}``),
    coloured by :data:`VERDICT_COLORS`; returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.45 * len(counts) + 1))
    parts = list(counts)
    left = np.zeros(len(parts))
    for verdict, color in VERDICT_COLORS.items():
        n = np.array([counts[p].get(verdict, 0) for p in parts], dtype=float)
        ax.barh(parts, n, left=left, color=color, label=verdict)
        for y, (x0, k) in enumerate(zip(left, n)):
            if k:
                ax.text(x0 + k / 2, y, f"{k:.0f}", ha="center", va="center", color="white", fontsize=9)
        left += n
    ax.invert_yaxis()
    ax.set_xlabel("claims")
    ax.legend(ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return ax
