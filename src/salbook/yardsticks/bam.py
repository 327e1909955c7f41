"""BAM's relative-importance metrics (Yang & Kim 2019): model contrast and input dependence.

BAM has no ground-truth map; it has pairs whose *relative* importance is known. A pasted object
matters more to a model trained to name the object than to a model trained to name the scene, and
more to the object model than the scene pixels it covers would. Three metrics follow:

* **model contrast score (MCS)**: the attribution of the object region under the object model minus
  under the scene model, on the same image, averaged over images;
* **input dependence rate (IDR)**: for the scene model, the share of images where the object region
  is attributed *less* with the object pasted than the same region of the scene alone;
* **input independence rate (IIR)**: the share of images where a functionally insignificant patch
  (one that leaves the model's output unchanged) changes the region's attribution by less than
  ``threshold`` (10 %) of it.

How a map becomes "the attribution of a region" is BAM's, from the authors' code release
(``bam/attributions.py``: ``visualize_pos_attr`` and ``single_attr``), and is the same in every
function here:

1. keep the positive part of the map and sum it over colour channels;
2. rescale each map on its own to [0, 1]: subtract its minimum, divide by its 99th percentile minus
   its minimum, clip to [0, 1] (a constant map becomes all zeros: it ranks nothing);
3. average the rescaled map over the region's pixels.

So each region score lies in [0, 1], MCS in [-1, 1], and a map's overall scale never matters.
Following BAM, only images that every model involved classifies correctly count (the maps then
explain the true class); pass ``None`` for a model to skip that filter (e.g. for hand-built maps).

Every function takes models, inputs, targets, maps and masks, like Quantus metrics, and returns a
:class:`BamScore` with the per-image values, which images counted, and the aggregate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..checks import check_maps


@dataclass(frozen=True)
class BamScore:
    """Per-image values (NaN where an image did not count), the counted images and their mean."""

    per_image: np.ndarray
    used: np.ndarray
    value: float | None

    @property
    def n(self) -> int:
        return int(self.used.sum())


def normalise(maps: torch.Tensor | np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """BAM's rescaling: maps ``(N, C, H, W)`` (or ``(N, H, W)``) → ``(N, H, W)`` in [0, 1].

    Positive part summed over channels, minus its minimum, divided by (99th percentile − minimum),
    clipped to [0, 1]; a map whose 99th percentile equals its minimum becomes zeros. NaN or infinite
    maps are refused (:func:`salbook.checks.check_maps`): clipping would silently turn them into zeros.
    """
    check_maps(maps)
    m = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    m = np.clip(m.astype(np.float64), 0, None)
    if m.ndim == 4:
        m = m.sum(1)
    if m.ndim != 3:
        raise ValueError(f"expected maps shaped (N, C, H, W) or (N, H, W), got {m.shape}")
    flat = m.reshape(len(m), -1)
    lo = flat.min(1)[:, None, None]
    hi = np.percentile(flat, percentile, axis=1)[:, None, None]
    span = hi - lo
    scaled = np.divide(m - lo, span, out=np.zeros_like(m), where=span > 0)
    return np.clip(scaled, 0, 1)


def region_attribution(maps, masks, percentile: float = 99.0) -> np.ndarray:
    """Mean of the BAM-normalised map over each region: ``(N,)`` in [0, 1] (NaN for an empty region)."""
    masks = _masks(masks)
    norm = normalise(maps, percentile)
    if norm.shape != masks.shape:
        raise ValueError(f"maps {norm.shape} and masks {masks.shape} cover different pixels")
    area = masks.sum((1, 2))
    total = (norm * masks).sum((1, 2))
    return np.divide(total, area, out=np.full(len(area), np.nan), where=area > 0)


@torch.no_grad()
def correct(model: torch.nn.Module | None, inputs: torch.Tensor, targets, batch_size: int = 256) -> np.ndarray:
    """Boolean ``(N,)``: does ``model`` predict ``targets`` on ``inputs``? All true for ``model=None``."""
    targets = torch.as_tensor(targets).reshape(-1).cpu()
    if model is None:
        return np.ones(len(targets), bool)
    device = next(model.parameters()).device
    pred = torch.cat([model(inputs[k:k + batch_size].to(device)).argmax(1).cpu()
                      for k in range(0, len(inputs), batch_size)])
    return (pred == targets).numpy()


def model_contrast_score(object_model, scene_model, inputs, object_targets, scene_targets,
                         object_maps, scene_maps, masks, percentile: float = 99.0) -> BamScore:
    """MCS: region attribution of the object under the object model minus under the scene model.

    ``object_maps`` explain ``object_targets`` (the pasted object's class) for ``object_model`` and
    ``scene_maps`` explain ``scene_targets`` for ``scene_model``, both on the same ``inputs``;
    ``masks`` ``(N, H, W)`` are the object's pixels. Counted: images both models classify correctly.
    A method that follows the models puts more of its (normalised) map on the object for the object
    model: MCS near 1 at best, 0 when the two maps are alike.
    """
    used = correct(object_model, inputs, object_targets) & correct(scene_model, inputs, scene_targets)
    diff = region_attribution(object_maps, masks, percentile) - region_attribution(scene_maps, masks, percentile)
    return _score(diff, used)


def input_dependence_rate(scene_model, inputs, scene_only_inputs, targets, maps, scene_only_maps, masks,
                          percentile: float = 99.0) -> BamScore:
    """IDR: share of images where pasting the object *lowers* the region's attribution for the scene model.

    ``maps`` explain ``targets`` (scene classes) for ``inputs`` (scenes with the object),
    ``scene_only_maps`` for ``scene_only_inputs`` (the same scenes without it); ``masks`` the
    object's pixels, scored on both. Counted: images classified correctly with and without the
    object. Per image 1.0 when the scene-only region scores strictly higher, else 0.0; 1 − IDR is
    BAM's false-positive rate (the irrelevant object is attributed more than the scene it covers).
    """
    used = correct(scene_model, inputs, targets) & correct(scene_model, scene_only_inputs, targets)
    lower = region_attribution(scene_only_maps, masks, percentile) > region_attribution(maps, masks, percentile)
    return _score(lower.astype(np.float64), used)


def input_independence_rate(model, inputs, patched_inputs, targets, maps, patched_maps, masks,
                            threshold: float = 0.1, percentile: float = 99.0) -> BamScore:
    """IIR: share of images where a functionally insignificant patch leaves the region's attribution
    within ``threshold`` (relative) of the unpatched one: ``|a_patched − a| < threshold · a``.

    ``patched_inputs`` carry a patch in ``masks`` chosen so that ``model``'s output barely changes
    (BAM optimises it); counted: images classified correctly with and without the patch.
    """
    used = correct(model, inputs, targets) & correct(model, patched_inputs, targets)
    a = region_attribution(maps, masks, percentile)
    a_patch = region_attribution(patched_maps, masks, percentile)
    return _score((np.abs(a_patch - a) < threshold * a).astype(np.float64), used)


def _masks(masks) -> np.ndarray:
    m = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if m.ndim == 4:  # (N, 1, H, W) or (N, C, H, W): a pixel is in the region if any channel is
        m = m.any(1)
    return m.astype(bool)


def _score(per_image: np.ndarray, used: np.ndarray) -> BamScore:
    used = used & ~np.isnan(per_image)
    values = np.where(used, per_image, np.nan)
    return BamScore(values, used, float(per_image[used].mean()) if used.any() else None)
