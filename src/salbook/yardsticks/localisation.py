"""Is a pixel on the object or in the background? A segmentation-free answer for CIFAR-10.

CIFAR-10 has no object masks. To test claims such as "the critical pixels are not within the
subject" (MPE paper §4.2–4.3) we estimate the object with GrabCut (Rother et al. 2004, OpenCV's
``grabCut``), initialised with a rectangle ``margin`` pixels inside the image border: the border is
taken as background and the inside is split into object and background by colour models. This is a
proxy, stated as such: a claim about "outside the object" is always compared with the share of the
image that GrabCut calls background, i.e. with where uniformly random pixels would fall.
"""
from __future__ import annotations

import numpy as np

from ..verdicts import Interval

# Margin of the MPE chapters' "pixels lie outside the object" verdicts (rule: verdicts.exceeds on
# outside_excess): pixels must fall outside the object at least 5 points more often than uniformly
# random pixels would; a smaller excess, on a GrabCut proxy of the object, is not a tendency worth a claim.
CHANCE_MARGIN = 0.05


def grabcut_foreground(images: np.ndarray, margin: int = 2, scale: int = 4, iterations: int = 5,
                       seed: int = 0) -> np.ndarray:
    """Boolean object masks ``(N, H, W)`` for uint8 RGB images ``(N, H, W, 3)``.

    Each image is upsampled ``scale`` times (GrabCut's colour models need more than 32×32 pixels),
    segmented with a rectangle ``margin`` original pixels inside the border, and the mask is brought
    back to the original grid by area averaging (a pixel is object if most of it is). GrabCut finds
    no object in some images (an empty mask); callers should skip those. GrabCut's random generator
    is reseeded with ``seed`` before each image, so an image's mask does not depend on the others.
    """
    import cv2

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB images (N, H, W, 3), got {images.dtype} {images.shape}")
    n, h, w, _ = images.shape
    if not 0 < margin < min(h, w) // 2:
        raise ValueError(f"margin must lie in 1..{min(h, w) // 2 - 1}, got {margin}")
    masks = np.zeros((n, h, w), bool)
    m = margin * scale
    rect = (m, m, w * scale - 2 * m, h * scale - 2 * m)
    for k in range(n):
        big = cv2.resize(images[k], None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)[..., ::-1].copy()
        mask = np.zeros(big.shape[:2], np.uint8)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(seed)
        cv2.grabCut(big, mask, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
        fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.float32)
        masks[k] = cv2.resize(fg, (w, h), interpolation=cv2.INTER_AREA) > 0.5
    return masks


def outside_share(pixels: list[np.ndarray], masks: np.ndarray) -> dict:
    """Share of the given pixels that fall outside the object, against the background's share of area.

    ``pixels[k]`` are flat pixel indices (row * W + col) of image k; ``masks`` its object masks.
    Images with no pixels or with an empty mask (no object found) are skipped.
    Returns ``outside`` (pooled over all pixels), ``background_area`` (mean share of background per
    image, weighted like the pixels: the rate expected if the pixels fell uniformly at random) and
    ``n_pixels``.
    """
    flat = masks.reshape(len(masks), int(np.prod(masks.shape[1:])))
    used = [k for k, p in enumerate(pixels) if len(p) and flat[k].any()]
    if not used:
        return {"outside": None, "background_area": None, "n_pixels": 0, "n_images": 0}
    hits = np.concatenate([~flat[k][np.asarray(pixels[k], dtype=int)] for k in used])
    weights = [len(pixels[k]) for k in used]
    return {
        "outside": float(hits.mean()),
        "background_area": float(np.average([1 - flat[k].mean() for k in used], weights=weights)),
        "n_pixels": int(sum(weights)),
        "n_images": len(used),
    }


def outside_excess(pixels: list[np.ndarray], masks: np.ndarray, level: float = 0.95, n_boot: int = 2000,
                   seed: int = 0) -> Interval:
    """How much more often the given pixels fall outside the object than uniformly random pixels
    would: ``outside − background_area`` of :func:`outside_share` (pooled over pixels, so between
    −1 and 1; 0 is chance), with a seeded percentile-bootstrap interval that resamples **images**
    (the pixels of one image are not independent of one another). Images with no pixels or an empty
    mask are skipped, as in :func:`outside_share`; with none left there is nothing to judge and a
    ValueError says so."""
    flat = masks.reshape(len(masks), int(np.prod(masks.shape[1:])))
    used = [k for k, p in enumerate(pixels) if len(p) and flat[k].any()]
    if not used:
        raise ValueError("no image has both pixels and an object mask: nothing to compare with chance")
    n = np.array([len(pixels[k]) for k in used], dtype=np.float64)
    out = np.array([(~flat[k][np.asarray(pixels[k], dtype=int)]).sum() for k in used], dtype=np.float64)
    expected = np.array([len(pixels[k]) * (1 - flat[k].mean()) for k in used])  # uniform chance, per image
    return Interval.bootstrap(lambda i: (out[i] - expected[i]).sum() / n[i].sum(), len(used),
                              f"{int(n.sum())} pixels of {len(used)} images, {level:.0%} bootstrap over images",
                              level, seed, n_boot, ".1%")
