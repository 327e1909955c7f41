"""The gradient, Integrated Gradients and SmoothGrad, once, differentiable: the maps the baselines
score (:mod:`salbook.methods.baselines`) and the maps the saliency attacks differentiate
(:mod:`salbook.yardsticks.saliency_attacks`) are these functions.

Every function returns the signed raw map ``(N, C, H, W)`` of class ``target`` (an int or one class per
image) on the inputs' device. ``create_graph=True`` keeps the graph of the map, so that the map itself
can be differentiated with respect to ``x`` (an attack's second-order gradient; for a ReLU network that
derivative is zero almost everywhere, so attacks differentiate a smooth copy). Many points per image
(IG's path, SmoothGrad's noisy copies) run in forward passes of about ``rows`` rows, whole images at a
time: a pass of thousands of rows runs several times slower on a CPU than the same work in chunks.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..checks import as_targets

REDUCTIONS = ("mean", "square", "var")


def gradient(model: nn.Module, x: torch.Tensor, target, create_graph: bool = False) -> torch.Tensor:
    """The gradient map (Simonyan, Vedaldi & Zisserman 2013, eq. 2): w = ∂S_c/∂x at x, with S_c the
    class score (the logit ``target``)."""
    t = as_targets(target, len(x)).to(x.device)
    return _gradient(model, x, t, create_graph)


def integrated_gradients(model: nn.Module, x: torch.Tensor, target, n_steps: int = 50, baseline=0.0,
                         create_graph: bool = False, rows: int = 256) -> torch.Tensor:
    """Integrated Gradients (Sundararajan, Taly & Yan 2017, eq. 1) from ``baseline`` x' (default 0, the
    black image), by Gauss–Legendre quadrature on [0, 1] (Captum's default ``"gausslegendre"``, so the
    maps equal Captum's up to float rounding; the paper's eq. 3 is the Riemann sum of the same integral):

        IG_i(x) = (x_i − x'_i) · ∫₀¹ ∂F(x' + α(x − x'))/∂x_i dα ≈ (x_i − x'_i) · Σ_k w_k ∂F(x' + α_k(x − x'))/∂x_i

    with α_k = (1 + t_k)/2 and w_k = u_k/2 for the ``n_steps`` Legendre nodes t_k and weights u_k on
    [−1, 1]. The rule is exact for polynomials in α of degree < 2·n_steps; completeness,
    Σ_i IG_i = F(x) − F(x'), holds up to that quadrature error.
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be ≥ 1, got {n_steps}")
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    alphas = torch.as_tensor(0.5 * (1 + nodes), dtype=x.dtype, device=x.device).view(-1, 1, 1, 1, 1)
    w = torch.as_tensor(0.5 * weights, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1, 1)
    t = as_targets(target, len(x)).to(x.device)
    reference = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
    maps = [(xs - b) * (w * _gradients_at(model, b + alphas * (xs - b), ts, create_graph)).sum(0)
            for xs, b, ts in _chunks(x, reference, t, rows=rows, points=n_steps)]
    return torch.cat(maps)


def smoothgrad(model: nn.Module, x: torch.Tensor, target, samples: int = 15, noise: float = 0.15, seed: int = 0,
               create_graph: bool = False, reduce: str = "mean", rows: int = 256) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017, eq. 2) and its two variants, over ``samples`` noisy copies
    x + ε_s, ε_s ~ N(0, σ²I), σ = ``noise`` × the input range (images lie in [0, 1], so σ = ``noise``):

    * ``reduce="mean"``: M̂_c(x) = (1/n) Σ_s ∂S_c(x + ε_s)/∂x (SmoothGrad);
    * ``"square"``: (1/n) Σ_s (∂S_c(x + ε_s)/∂x)², SmoothGrad-squared (SG-SQ, Hooker et al. 2019);
    * ``"var"``: the variance over s of ∂S_c(x + ε_s)/∂x (population variance, as Captum's
      ``NoiseTunnel``), VarGrad (Adebayo et al. 2018).

    The noise is drawn on the CPU from a generator seeded with ``seed`` at every call (the caller's
    random state is left as it was; the same maps on a CPU and a GPU), and the same ε_s serve every
    image of the call: common random numbers, so an image's map depends neither on the others in its
    batch nor on how the call is chunked, and the maps of an image and of a perturbed copy differ by
    the perturbation, not by the noise (what an attack and a decoy range compare).
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown reduce {reduce!r}: choose one of {', '.join(REDUCTIONS)}")
    maps = [grads.var(0, correction=0) if reduce == "var" else (grads.square() if reduce == "square" else grads).mean(0)
            for grads in _noisy_chunks(model, x, target, samples, noise, seed, create_graph, rows)]
    return torch.cat(maps)


def noisy_gradients(model: nn.Module, x: torch.Tensor, target, samples: int = 15, noise: float = 0.15, seed: int = 0,
                    create_graph: bool = False, rows: int = 256) -> torch.Tensor:
    """SmoothGrad's samples, before :func:`smoothgrad` reduces them: ∂S_c(x + ε_s)/∂x for s = 1 … ``samples``,
    shaped ``(N, samples, C, H, W)``, with :func:`smoothgrad`'s noise (the same ``seed``, the same ε_s for
    every image). Their mean over axis 1 is ``smoothgrad(..., reduce="mean")``, the mean of their squares
    ``reduce="square"``, their population variance ``reduce="var"``; one draw serves all three, and the
    mean of the first n is SmoothGrad over the first n of the draw's noisy copies."""
    return torch.cat([grads.transpose(0, 1)
                      for grads in _noisy_chunks(model, x, target, samples, noise, seed, create_graph, rows)])


def _noisy_chunks(model, x, target, samples, noise, seed, create_graph, rows):
    """The gradients at the noisy copies x + ε_s of each group of images (:func:`_chunks`), one
    ``(samples, n, C, H, W)`` tensor per group; ε drawn once, on the CPU, from ``seed``."""
    if samples < 1 or not noise >= 0:
        raise ValueError(f"need samples ≥ 1 and noise ≥ 0, got samples={samples}, noise={noise}")
    gen = torch.Generator().manual_seed(seed)
    eps = (noise * torch.randn((samples, 1, *x.shape[1:]), generator=gen)).to(x.device, x.dtype)
    t = as_targets(target, len(x)).to(x.device)
    return (_gradients_at(model, xs + eps, ts, create_graph) for xs, ts in _chunks(x, t, rows=rows, points=samples))


def _gradient(model, x, t, create_graph):
    """∂ Σ_n f(x)_{n, t_n} / ∂x: one backward pass for the whole batch (each image's score depends on
    its own input only: the model is in eval mode)."""
    x = x if x.requires_grad else x.detach().requires_grad_()
    score = model(x).gather(1, t[:, None]).sum()
    return torch.autograd.grad(score, x, create_graph=create_graph)[0]


def _gradients_at(model, points, t, create_graph):
    """Gradients at points ``(K, n, C, H, W)`` (K points per image) of each image's class ``t`` ``(n,)``,
    in one pass, shaped like ``points``."""
    k = points.shape[0]
    return _gradient(model, points.flatten(0, 1), t.repeat(k), create_graph).view_as(points)


def _chunks(*tensors, rows: int, points: int):
    """The tensors (one row per image) cut into groups of about ``rows // points`` images (≥ 1)."""
    if rows < 1:
        raise ValueError(f"rows must be ≥ 1, got {rows}")
    size = max(1, rows // points)
    return zip(*(t.split(size) for t in tensors))
