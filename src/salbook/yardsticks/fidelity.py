"""Saliency fidelity (Dabkowski & Gal 2017, as the decoy-enhanced saliency paper uses it, Fig. 1B).

The decoy paper grades a map E by how well the image weighted by the map, E∘x, keeps the score of
the class c, F^c, "subtracting the mean saliency Ē to eliminate the influence of bias and exclude
trivial cases such as E = 1"; lower is better ("higher predicted class scores and lower metric
values"). Its extracted formula is garbled (numerator and denominator coincide), which leaves two
readings (REFERENCE_NOTES §2):

* ``"ratio"`` (default, the likely reading): SF = −log[F^c(E∘x) / F^c(Ē∘x)]. The image weighted by
  the map is compared with the image weighted uniformly by the map's mean, which has the same total
  weight: a constant map (E = 1 included) scores exactly 0, and a map scores below 0 when putting
  its weight where it does keeps the class better than spreading it evenly.
* ``"centred"``: SF = −log F^c((E − Ē)∘x). The weighted image has negative values (where E < Ē),
  outside the pixel range; it goes to the model unclipped. A constant map gives the black image.

Conventions: maps are the paper's post-processed maps in [0, 1] (``decoys.postprocess``), pixel
maps ``(N, H, W)`` applied to every channel, or ``(N, C, H, W)``; the product is taken in [0, 1]
pixel space (normalisation lives in the model), so weight 0 makes a pixel black; F^c is the softmax
probability, taken as a log-softmax so that the logarithm stays finite; c defaults to the class
predicted on x.
"""
from __future__ import annotations

import torch

from ..checks import as_targets, check_inputs, check_maps

READINGS = ("ratio", "centred")


@torch.no_grad()
def saliency_fidelity(model, inputs: torch.Tensor, maps: torch.Tensor, target=None, reading: str = "ratio",
                      batch_size: int = 256) -> torch.Tensor:
    """Saliency fidelity of each image's map, ``(N,)``; lower is better.

    Args:
        model: classifier returning logits for inputs in [0, 1].
        inputs: ``(N, C, H, W)`` images in [0, 1].
        maps: ``(N, H, W)`` or ``(N, C, H, W)`` saliency in [0, 1] (post-processed).
        target: class c, an int or one per image (default: the prediction on ``inputs``).
        reading: ``"ratio"`` (default) or ``"centred"`` (see the module's docstring).
        batch_size: images per forward pass.
    """
    check_inputs(inputs)
    check_maps(maps, tuple(inputs.shape))
    if reading not in READINGS:
        raise ValueError(f"unknown reading {reading!r}: choose ratio (−log F(E∘x)/F(Ē∘x)) or centred (−log F((E−Ē)∘x))")
    weights = _weights(maps, inputs.shape)
    device = next(model.parameters()).device
    x, weights = inputs.to(device), weights.to(device)
    mean = weights.mean((1, 2, 3), keepdim=True).expand_as(weights)
    c = _classes(model, x, target, batch_size)
    if reading == "centred":
        return -_log_prob(model, (weights - mean) * x, c, batch_size).cpu()
    return (_log_prob(model, mean * x, c, batch_size) - _log_prob(model, weights * x, c, batch_size)).cpu()


def _weights(maps: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    n, channels, h, w = shape
    if maps.dim() == 3:
        maps = maps[:, None]
    if maps.dim() != 4 or maps.shape[0] != n or tuple(maps.shape[2:]) != (h, w) or maps.shape[1] not in (1, channels):
        raise ValueError(f"maps must be (N, H, W) or (N, C, H, W) matching inputs {tuple(shape)}, "
                         f"got {tuple(maps.shape)}")
    if not torch.isfinite(maps).all() or maps.min() < 0 or maps.max() > 1:
        raise ValueError("maps must be finite and in [0, 1]: post-process them first (decoys.postprocess)")
    return maps.float().expand(shape)


def _classes(model, x, target, batch_size) -> torch.Tensor:
    if target is not None:
        return as_targets(target, len(x)).to(x.device)
    return torch.cat([model(b).argmax(1) for b in x.split(batch_size)])


def _log_prob(model, x, c, batch_size) -> torch.Tensor:
    logits = torch.cat([model(b) for b in x.split(batch_size)])
    return logits.log_softmax(1).gather(1, c[:, None])[:, 0]
