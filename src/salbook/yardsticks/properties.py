"""Measurable properties of saliency maps: the claims papers make about a method's *look*, as numbers.

The ROAR thesis (chapter 3) lists advantages and disadvantages of the classic methods in words:
gradients are noisy, SmoothGrad removes the noise, Grad-CAM is coarse, guided Grad-CAM localises
better, excitation backprop is well normalised, ReLUs and max-pooling lose information on the way
back. Each function here turns one of those words into a number with a known answer on tiny inputs
(``tests/test_properties.py``):

* :func:`roughness`: how noisy a map is: total variation over ``4 ×`` its L1 mass, in ``[0, 1]``
  (0: constant map; ``(n-1)/n``: an ``n × n`` ±1 checkerboard; an isolated pixel in the interior: 1);
* :func:`autocorrelation` and :func:`correlation_length`: how coarse a map is: the shift (in pixels)
  at which a map's correlation with its shifted self falls to one half;
* :func:`map_correlation`: how alike two maps are (e.g. the maps for two classes of one image:
  class sensitivity), Pearson's r per image;
* :func:`negative_share`: the share of a map's mass that is negative;
* :func:`backward_signal`: how much of the backward signal the ReLUs and max-pools of a sequential
  network silence, under the gradient, DeconvNet or guided-backprop rule.

Maps are ``(N, C, H, W)`` or ``(N, H, W)``; :func:`pixel_map` reduces the former to the latter
(``|Σ_c m|``, the reduction the book's yardsticks use). All per-image results are tensors ``(N,)``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..checks import check_maps


def pixel_map(maps: torch.Tensor, absolute: bool = True) -> torch.Tensor:
    """``(N, H, W)`` maps: the sum over channels of ``(N, C, H, W)`` maps, its absolute value if ``absolute``."""
    check_maps(maps)
    if maps.dim() not in (3, 4):
        raise ValueError(f"maps must be (N, H, W) or (N, C, H, W), got {tuple(maps.shape)}")
    m = (maps.sum(1) if maps.dim() == 4 else maps).double()
    return m.abs() if absolute else m


def roughness(maps: torch.Tensor) -> torch.Tensor:
    """Total variation of each pixel map over ``4 ×`` its L1 mass, in ``[0, 1]``; NaN for an all-zero map.

    TV is anisotropic (sum of absolute differences between horizontal and vertical neighbours).
    Every pixel has at most four neighbours, so TV ≤ 4 · Σ|m|: 1 is the roughest map possible (values
    that alternate in sign from pixel to pixel, or isolated spikes), 0 a constant map. The ratio does
    not depend on the map's scale, so methods with different units compare.
    """
    m = pixel_map(maps)
    tv = (m[:, 1:, :] - m[:, :-1, :]).abs().sum((1, 2)) + (m[:, :, 1:] - m[:, :, :-1]).abs().sum((1, 2))
    mass = m.abs().sum((1, 2))
    return torch.where(mass > 0, tv / (4 * mass), torch.full_like(mass, math.nan))


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson's r between rows of ``a`` and ``b`` ``(N, D)``; NaN where either row is constant."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    denom = (a.square().sum(1) * b.square().sum(1)).sqrt()
    return torch.where(denom > 0, (a * b).sum(1) / denom.clamp(min=1e-300), torch.full_like(denom, math.nan))


def autocorrelation(maps: torch.Tensor, lag: int) -> torch.Tensor:
    """Pearson correlation of each pixel map with itself shifted by ``lag`` pixels, the mean of the
    horizontal and the vertical shift. 1 at lag 0; −1 at lag 1 for a checkerboard."""
    if lag < 0:
        raise ValueError(f"lag must be ≥ 0, got {lag}")
    m = pixel_map(maps)
    if lag == 0:
        return torch.ones(len(m), dtype=m.dtype)
    if lag >= min(m.shape[1:]):
        raise ValueError(f"lag {lag} does not fit maps of size {tuple(m.shape[1:])}")
    n = len(m)
    horizontal = _pearson(m[:, :, :-lag].reshape(n, -1), m[:, :, lag:].reshape(n, -1))
    vertical = _pearson(m[:, :-lag, :].reshape(n, -1), m[:, lag:, :].reshape(n, -1))
    return (horizontal + vertical) / 2


def correlation_length(maps: torch.Tensor, level: float = 0.5, max_lag: int | None = None) -> torch.Tensor:
    """The shift (pixels) at which each map's :func:`autocorrelation` first falls below ``level``,
    interpolated linearly between integer lags; ``inf`` if it never does up to ``max_lag`` (default:
    half the map's smaller side); NaN for a constant map. About 0.25 for pixel noise, the block size's order for a map made
    of blocks (an upsampled coarse map), the blur's width for a smooth one."""
    m = pixel_map(maps)
    max_lag = max_lag or min(m.shape[1:]) // 2
    out = torch.full((len(m),), math.inf, dtype=m.dtype)
    previous = torch.ones(len(m), dtype=m.dtype)
    for lag in range(1, max_lag + 1):
        current = autocorrelation(m, lag)
        out[out.isinf() & current.isnan()] = math.nan  # a constant (e.g. all-zero) map has no correlation
        crossed = out.isinf() & (current < level)
        out[crossed] = lag - 1 + (previous[crossed] - level) / (previous[crossed] - current[crossed])
        previous = current
    return out


def map_correlation(a: torch.Tensor, b: torch.Tensor, absolute: bool = True) -> torch.Tensor:
    """Pearson's r between the pixel maps of ``a`` and ``b`` (``|Σ_c|`` if ``absolute``), per image.

    With ``a`` and ``b`` the maps of one image for two classes it measures class *in*sensitivity:
    near 1, the method draws the same map whichever class it is asked about."""
    if a.shape != b.shape:
        raise ValueError(f"map batches differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    pa, pb = pixel_map(a, absolute), pixel_map(b, absolute)
    return _pearson(pa.flatten(1), pb.flatten(1))


def negative_share(maps: torch.Tensor) -> torch.Tensor:
    """Share of each map's L1 mass (over all channels and pixels) that is negative, in ``[0, 1]``."""
    check_maps(maps)
    m = maps.flatten(1).double()
    mass = m.abs().sum(1)
    return torch.where(mass > 0, m.clamp(max=0).abs().sum(1) / mass, torch.full_like(mass, math.nan))


RULES = ("gradient", "deconvnet", "guided_backprop")


def backward_signal(model: nn.Sequential, inputs: torch.Tensor, targets, rule: str = "gradient"):
    """Backpropagate ``e_target`` through a sequential ``model`` one module at a time and measure what
    each ReLU and max-pool does to the signal.

    ``rule`` says what a ReLU does on the way back: ``"gradient"`` multiplies by the forward mask
    (unit on), ``"deconvnet"`` applies ReLU to the signal (Zeiler & Fergus), ``"guided_backprop"``
    does both (Springenberg et al.). Every other module passes the plain vector-Jacobian product;
    max-pooling sends the signal to the unit that won the forward pass (DeconvNet's "switches").

    Returns ``(input_map, layers)``: the map at the input (equal to Captum's ``Saliency`` with
    ``abs=False``, ``Deconvolution`` and ``GuidedBackprop``) and one dict per ReLU and max-pool, from
    the top down: ``index`` (position in ``model``), ``kind`` (``"relu"``/``"maxpool"``), ``silenced``
    (share of the units that received a non-zero signal from above and pass zero below; for a
    max-pool, the share of its input units, in windows whose output received a signal, that get
    nothing: 3/4 for 2 × 2 pooling without ties), ``silenced_per_image`` (the same share per image,
    a ``(N,)`` tensor, NaN for an image whose units received no signal there) and ``negative`` (share of
    the units passing a negative signal below).
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}: choose one of {', '.join(RULES)}")
    if not isinstance(model, nn.Sequential):
        raise TypeError("backward_signal walks an nn.Sequential module by module")
    device = next(model.parameters()).device
    x = inputs.detach().to(device)
    activations = []
    with torch.no_grad():
        for module in model:
            activations.append(x)
            x = module(x)
    targets = torch.as_tensor(targets).long().expand(len(inputs)).to(device)
    signal = torch.nn.functional.one_hot(targets, x.shape[1]).to(x.dtype)
    layers = []
    for index in reversed(range(len(model))):
        module, a = model[index], activations[index]
        if isinstance(module, nn.ReLU):
            below = signal
            if rule in ("gradient", "guided_backprop"):
                below = below * (a > 0)
            if rule in ("deconvnet", "guided_backprop"):
                below = below.clamp(min=0)
            received = signal != 0
            layers.append({"index": index, "kind": "relu",
                           "silenced": float(((below == 0) & received).sum() / received.sum().clamp(min=1)),
                           "silenced_per_image": _per_image_share((below == 0) & received, received),
                           "negative": float((below < 0).double().mean())})
        else:
            a = a.clone().requires_grad_(True)
            with torch.enable_grad():
                below, = torch.autograd.grad(module(a), a, grad_outputs=signal)
            if isinstance(module, nn.MaxPool2d):
                received = _in_windows(module, a, signal != 0)
                layers.append({"index": index, "kind": "maxpool",
                               "silenced": float(((below == 0) & received).sum() / received.sum().clamp(min=1)),
                               "silenced_per_image": _per_image_share((below == 0) & received, received),
                               "negative": float((below < 0).double().mean())})
        signal = below
    return signal.cpu(), layers


def _per_image_share(hit: torch.Tensor, of: torch.Tensor) -> torch.Tensor:
    """Per image: the share of the units in ``of`` that are in ``hit``; NaN where ``of`` is empty."""
    k, n = hit.flatten(1).sum(1).double().cpu(), of.flatten(1).sum(1).double().cpu()
    return torch.where(n > 0, k / n.clamp(min=1), torch.full_like(n, math.nan))


def _in_windows(pool: nn.MaxPool2d, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Input units of ``pool`` that lie in a window whose output is in ``mask``."""
    a = torch.zeros_like(inputs, requires_grad=True)
    with torch.enable_grad():
        out = nn.functional.avg_pool2d(a, pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode)
        spread, = torch.autograd.grad(out, a, grad_outputs=mask.to(out.dtype))
    return spread > 0
