"""Saliency attacks (Ghorbani, Abid & Zou, AAAI 2019) and the sensitivity metric, as the decoy-enhanced
saliency paper uses them (Fig. 3).

An attack looks for x̂ with ‖x̂ − x‖∞ ≤ ε (and x̂ in [0, 1]) that keeps the model's predicted label
but changes the map. Maps are compared as Ghorbani et al. do: the pixel saliency p = Σ_c |E_c|,
normalised to sum 1 (otherwise shrinking the whole map would count as an attack). Three objectives
D, each to be increased:

* ``"topk"``: D = −Σ_{i∈B} p(x̂)_i, B the k most salient pixels of x (the decoy paper: k = 5000 of a
  224×224 image; by default the same share, about 10 %, of ours);
* ``"targeted"``: D = Σ_{i∈A} p(x̂)_i, A the bottom-right corner square (the decoy paper: 4×4 of
  224×224; by default the same share of our side, at least one pixel);
* ``"mass_center"``: D = ‖C(x̂) − C(x)‖₂, C = Σ_i p_i·(row_i, col_i) the centre of mass of the map.

The iteration is Ghorbani et al.'s (reference code ``amiratag/InterpretationFragility``): x̂ ← x̂ +
α·sign(∇D), projected onto the ε-ball and [0, 1], for ``steps`` steps; every iterate is judged on
the real model, and the result is the iterate with the largest D among those that keep the label
(x itself if none does better). Reference defaults: 100 steps, α = 1/255, and ε = 8/255 as in
their figures. For a ReLU network the map's gradient ∇_x E(x) is zero almost everywhere (the
network is piecewise linear), so ∇D is taken through :func:`softplus_surrogate`, the same network
with every ReLU replaced by Softplus(β); D itself is always measured on the real network. Their code
uses Keras' plain softplus (β = 1); we default to β = 10, closer to the real network.

**The attacked map is the scored map.** The attack takes the method object the evaluation scores (the
gradient, Integrated Gradients, SmoothGrad, SG-SQ or VarGrad of :mod:`salbook.methods.baselines`, all
computed by :mod:`salbook.methods.gradients`) and differentiates its own ``saliency`` with the same
options (IG's nodes, SmoothGrad's samples, noise and seed) on the softplus copy; a method without a
differentiable map is refused (:func:`check_differentiable`).

**An attacker who knows the defence** (``decoy_offsets``). The decoy-enhanced map is the range of
the base map over decoys that eq. 2 solves afresh for every input; differentiating through that
solver is out of reach, so the adaptive attack uses a stated surrogate (:func:`decoy_range_saliency`):
the decoys' changes Δ_k = x̃ᵏ − x, solved once at x, are carried over to every iterate (x̂ + Δ_k,
clipped to [0, 1]), and the attacked map is the range of the base map over those m shifted decoys.
The attack differentiates and judges that surrogate; the scored decoy map at x̂ is then solved
afresh by the caller. A decoy set that does not depend on x̂ is the part the surrogate gets wrong.

:func:`sensitivity` is the metric the decoy paper reports (Alvarez-Melis & Jaakkola 2018):
SS = ‖E(x) − E(x̂)‖₂ / ‖x − x̂‖₂, lower is better. :func:`same_norm_noise` is its control: a random
perturbation with the attack's L2 norm, which says how much a map moves without any attack.
"""
from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from ..checks import as_targets, check_inputs, check_maps

TOPK_SHARE = 5000 / 224 ** 2  # the decoy paper's top-k: k = 5000 pixels of 224 × 224
CORNER_SHARE = 4 / 224  # its targeted attack: the bottom-right 4 × 4 pixels of 224 × 224


def softplus_surrogate(model: nn.Module, beta: float = 10.0) -> nn.Module:
    """A copy of ``model`` with every ``nn.ReLU`` module replaced by ``nn.Softplus(beta)``:
    twice differentiable, and close to the model for large β (softplus − ReLU ≤ log 2 / β)."""
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    surrogate = copy.deepcopy(model)
    for parent in list(surrogate.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(parent, name, nn.Softplus(beta))
    return surrogate


# --- the attacked map ----------------------------------------------------------------------------

def check_differentiable(method) -> None:
    """A saliency attack differentiates the method's map: it needs ``saliency(x, target, create_graph)``
    and ``with_model(model)`` (the same method on the smooth copy), as the gradient, Integrated
    Gradients and the SmoothGrad family of :mod:`salbook.methods.baselines` have."""
    missing = [name for name in ("saliency", "with_model") if not callable(getattr(method, name, None))]
    if missing:
        raise TypeError(f"a saliency attack needs a method with a differentiable map, {type(method).__name__} has "
                        f"no {' and no '.join(missing)}: attack the gradient, integrated_gradients, smoothgrad, "
                        "smoothgrad_sq or vargrad (registry.make(name, model, **options)), or give the method "
                        "saliency(x, target, create_graph=False) and with_model(model)")


def decoy_range_saliency(method, x, target, create_graph=False, *, offsets: torch.Tensor):
    """The adaptive attack's surrogate of the decoy-enhanced map (eq. 3): max − min over k of the map of
    ``method`` (its ``saliency``) at clip(x + Δ_k, 0, 1), with the decoy changes ``offsets`` Δ
    ``(N, m, C, H, W)`` held fixed; differentiable in x (through the base map, with ``create_graph``)."""
    if offsets.dim() != x.dim() + 1 or offsets.shape[0] != x.shape[0] or offsets.shape[2:] != x.shape[1:]:
        raise ValueError(f"offsets must be (N, m, C, H, W) for inputs {tuple(x.shape)}, got {tuple(offsets.shape)}")
    n, m = offsets.shape[:2]
    points = (x[:, None] + offsets.to(x.device)).clamp(0, 1).flatten(0, 1)
    maps = method.saliency(points, target.repeat_interleave(m), create_graph).view(n, m, *x.shape[1:])
    return maps.amax(1) - maps.amin(1)


def pixel_saliency(maps: torch.Tensor) -> torch.Tensor:
    """Ghorbani et al.'s map: Σ_c |E_c| normalised to sum 1 per image, ``(N, H, W)``."""
    p = maps.abs().sum(1)
    return p / p.sum((1, 2), keepdim=True).clamp(min=torch.finfo(p.dtype).tiny)


# --- the attack ---------------------------------------------------------------------------------

@dataclass
class SaliencyAttack:
    """``adversarial`` ``(N, C, H, W)``: the best label-keeping iterate (x where none beat it);
    ``objective`` and ``start`` ``(N,)``: D there and at x; ``history`` ``(steps + 1, N)``: D at
    every iterate, NaN where the label changed; ``label`` ``(N,)``: the predicted label kept."""

    adversarial: torch.Tensor
    objective: torch.Tensor
    start: torch.Tensor
    history: torch.Tensor
    label: torch.Tensor


def saliency_attack(method, inputs: torch.Tensor, kind: str = "topk", target=None, eps: float = 8 / 255,
                    step_size: float = 1 / 255, steps: int = 100, k: int | None = None, corner: int | None = None,
                    beta: float = 10.0, decoy_offsets: torch.Tensor | None = None,
                    progress: bool = True) -> SaliencyAttack:
    """Ghorbani et al.'s attack ``kind`` (``"topk"``, ``"targeted"`` or ``"mass_center"``) on the map of
    ``method`` for class ``target`` (default: the predicted label).

    Args:
        method: the scored method, e.g. ``registry.make("smoothgrad", model, samples=15)``: any object with
            a ``model`` (the classifier in eval mode, logits for inputs in [0, 1]), a differentiable map
            ``saliency(x, target, create_graph=False)`` and ``with_model(model)`` (:func:`check_differentiable`).
            D is judged on its map; ∇D is taken through ``method.with_model(softplus_surrogate(model, beta))``.
        inputs: ``(N, C, H, W)`` images in [0, 1].
        eps: the L∞ budget (pixel units); step_size: α; steps: iterations.
        k: top-k size (default: :data:`TOPK_SHARE` of the pixels).
        corner: side of the targeted square (default: :data:`CORNER_SHARE` of the side, ≥ 1).
        beta: the softplus surrogate's β.
        decoy_offsets: ``(N, m, C, H, W)`` decoy changes x̃ᵏ − x: attack the decoy-enhanced map of
            ``method`` through :func:`decoy_range_saliency` (an attacker who knows the defence);
            ``None`` (default): attack the method's map itself.
    """
    check_differentiable(method)
    check_inputs(inputs)
    if kind not in OBJECTIVES:
        raise ValueError(f"unknown attack {kind!r}: choose one of {', '.join(OBJECTIVES)}")
    if not eps > 0 or not step_size > 0 or steps < 1:
        raise ValueError(f"eps and step_size must be > 0 and steps ≥ 1, got {eps}, {step_size}, {steps}")
    model = method.model
    explain, smooth = (_attacked_map(m, decoy_offsets)
                       for m in (method, method.with_model(softplus_surrogate(model, beta))))
    x = inputs.detach().to(next(model.parameters()).device)
    with torch.no_grad():
        label = model(x).argmax(1)
    c = label if target is None else as_targets(target, len(x)).to(x.device)
    p0 = pixel_saliency(explain(x, c)).detach()
    objective = OBJECTIVES[kind](p0, k, corner)
    start = objective(p0)
    best, best_value, history, adv = x.clone(), start.clone(), [start], x.clone()
    for _ in tqdm(range(steps), desc=f"{kind} attack", disable=not progress):
        adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(objective(pixel_saliency(smooth(adv, c, True))).sum(), adv)
        adv = torch.clamp(adv.detach() + step_size * grad.sign(), x - eps, x + eps).clamp(0, 1)
        value = objective(pixel_saliency(explain(adv, c)).detach())
        with torch.no_grad():
            kept = model(adv).argmax(1) == label
        better = kept & (value > best_value)
        best[better], best_value[better] = adv[better], value[better]
        history.append(torch.where(kept, value, math.nan))
    return SaliencyAttack(best.cpu(), best_value.cpu(), start.cpu(), torch.stack(history).cpu(), label.cpu())


def _attacked_map(method, decoy_offsets):
    """``(x, target, create_graph) -> map``: the method's own, or its decoy range over ``decoy_offsets``."""
    if decoy_offsets is None:
        return method.saliency
    return functools.partial(decoy_range_saliency, method, offsets=decoy_offsets)


def _topk(p0, k, corner):
    n = p0[0].numel()
    k = max(1, round(TOPK_SHARE * n)) if k is None else k
    if not 1 <= k <= n:
        raise ValueError(f"k must lie in 1..{n} (the pixels of a map), got {k}")
    top = torch.zeros_like(p0).flatten(1).scatter_(1, p0.flatten(1).topk(k, 1).indices, 1.0).view_as(p0)
    return lambda p: -(p * top).sum((1, 2))


def _targeted(p0, k, corner):
    h, w = p0.shape[1:]
    side = max(1, round(CORNER_SHARE * min(h, w))) if corner is None else corner
    if not 1 <= side <= min(h, w):
        raise ValueError(f"corner must lie in 1..{min(h, w)}, got {side}")
    region = torch.zeros_like(p0[0])
    region[h - side:, w - side:] = 1
    return lambda p: (p * region).sum((1, 2))


def _mass_center(p0, k, corner):
    c0 = _centre(p0)
    return lambda p: (_centre(p) - c0).norm(dim=1)


def _centre(p: torch.Tensor) -> torch.Tensor:
    """Centre of mass (row, column) of maps ``(N, H, W)`` that sum to 1."""
    rows, cols = (torch.arange(s, dtype=p.dtype, device=p.device) for s in p.shape[1:])
    return torch.stack([(p.sum(2) * rows).sum(1), (p.sum(1) * cols).sum(1)], 1)


OBJECTIVES = {"topk": _topk, "targeted": _targeted, "mass_center": _mass_center}


# --- the metric -----------------------------------------------------------------------------------

def sensitivity(maps: torch.Tensor, maps_adversarial: torch.Tensor, inputs: torch.Tensor,
                adversarial: torch.Tensor) -> torch.Tensor:
    """SS = ‖E(x) − E(x̂)‖₂ / ‖x − x̂‖₂ per image, ``(N,)`` (NaN where x̂ = x). Give it the maps the
    evaluation uses (the decoy paper: post-processed, ``decoys.postprocess``)."""
    if maps.shape != maps_adversarial.shape or inputs.shape != adversarial.shape or len(maps) != len(inputs):
        raise ValueError("maps must match each other, images must match each other, with one map per image")
    check_maps(maps, tuple(inputs.shape), name="the maps at x")
    check_maps(maps_adversarial, tuple(adversarial.shape), name="the maps at x̂")
    num = (maps - maps_adversarial).flatten(1).double().norm(dim=1)
    den = (inputs - adversarial).flatten(1).double().norm(dim=1)
    return torch.where(den > 0, num / den, math.nan)


def same_norm_noise(inputs: torch.Tensor, adversarial: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The control of an attack: x + r with r a random sign pattern scaled to the L2 norm of x̂ − x,
    per image, clipped to [0, 1] (so ‖r‖∞ ≤ ‖x̂ − x‖₂ / √d ≤ the attack's L∞ budget). Seeded."""
    check_inputs(inputs)
    if inputs.shape != adversarial.shape:
        raise ValueError(f"images and adversarial images differ in shape: {tuple(inputs.shape)} vs {tuple(adversarial.shape)}")
    gen = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, inputs.shape, generator=gen).to(inputs) * 2 - 1
    norm = (adversarial - inputs).flatten(1).norm(dim=1).view(-1, *[1] * (inputs.dim() - 1))
    return (inputs + signs * norm / math.sqrt(inputs[0].numel())).clamp(0, 1)
