"""Frank-Wolfe ℓ∞ / ℓ2 / ℓ1-q perturbations (Roberts & Tsiligkaridis 2021) and the projected-gradient
ℓ1 descent they are measured against.

All solve, approximately, the paper's eq. (1) for each image x:

    δ̂(x, y_a; p, ε) = argmin_{δ ∈ B_p(ε)} L(f(x + δ), y_a),

with L the cross-entropy. *Targeted* (the paper's use) minimises L toward y_a: y_a = the prediction
("why this mistake?"), the true label ("what would have corrected it?"), or any class (concept
probing). *Untargeted* minimises −L(f(x + δ), y), an ordinary adversarial attack.

:func:`frank_wolfe` is §2.2 / Algorithm 1: from δ₀ = 0, for k = 0..K−1,

    s_k = argmin_{‖s‖ ≤ ε} ⟨∇_δ L(f(x + δ_k), y_a), s⟩        (the linear minimisation oracle, :func:`lmo`)
    δ_{k+1} = γ_k·s_k + (1 − γ_k)·δ_k,    γ_k = c/(c + k),  c ≥ 1 (c = 2 as in the reference code)

**Algorithm 1 as printed is wrong, and we follow the reference code instead** (REFERENCE_NOTES §5,
``Jay-Roberts/FW-Perturbations/Attackers.py`` and its port ``rai_toolbox.optim.L1qFrankWolfe``). The
printed pseudo-code (a) takes the gradient at x + δ̃ with δ̃ = 0, i.e. always at the clean image, never
at the iterate; (b) never scales the oracle's unit-ℓ1 answer by ε; (c) updates δ ← δ + (1 − γ)·δ̃,
which is no convex combination: it adds nothing at k = 0 (γ₀ = 1) and then ever more unit-ℓ1 mass, so
δ leaves every ball as K grows; and (d) moves along +sgn(g), which *raises* the L that eq. (1)
minimises. The reference code runs the standard update above, with s_k on the ε-sphere, which keeps
every iterate in B_p(ε) because it is a convex combination of points of the ball.

The ℓ1-q step (the n = ⌈q·d⌉ entries of largest |g|, signed, scaled to ‖·‖₁ = ε) is itself an exact
oracle: of the ℓ1 ball B₁(ε) cut by the ℓ∞ ball of radius ε/n, whose best vertex fills the n largest
|g| to ε/n each. ℓ1-q Frank-Wolfe is therefore ordinary Frank-Wolfe on B₁(ε) ∩ B∞(ε/n), and q sets the
largest change any single entry may receive.

Where we depart from the reference code, on purpose:

* q is the fraction of entries each ℓ1-q step changes (Algorithm 1's ``topk(|g|, q·dim(x))``): the
  reference's q is the percentile left out, so our q = 1 − theirs (its notebook's q = 0.995 is our
  0.005, the default here). The count is ⌈q·d⌉ (reference: max(1, ⌊(1 − q)d⌋); rai-toolbox:
  round((1 − q)d)), so any q in (0, 1] changes at least one entry.
* q is fixed: the reference notebook redraws it every step from U[q − 0.05, q + 0.05] (``pert_q``),
  which the paper does not mention (rai-toolbox's ``dq`` defaults to 0).
* x + δ stays an image (``box=True``): the feasible set is the ball ∩ {δ : x + δ ∈ [0, 1]}, and each
  oracle is the exact one of that set (:func:`lmo` with ``images``), so every iterate is a convex
  combination of valid images and nothing is clamped away. Neither reference implementation keeps
  the range (REFERENCE_NOTES §5(d)2: they clamp for display only); ``box=False`` reproduces them.
  Clamping after each step instead would throw away budget and, with the averaging, shrink the
  perturbation: on a 64-pixel linear classifier, ℓ1-q steps with ε/n > 1 then never reached the target.
  With the box, an entry gets at most its room to 0 or 1, so a step whose ε/n exceeds the room spreads
  its mass over more than n entries: ε, not q, then sets the sparsity.
* The loss is summed over the batch, so an image's perturbation does not depend on its batch
  (the reference takes the batch mean; the oracles are scale-free, so only rounding differs).

ε is in [0, 1] pixel units, the normalisation living inside the model; :func:`scale_eps` converts the
paper's 224×224 radii. :func:`pgd_l1` (sparse ℓ1 descent) is the projected-gradient baseline of the cost
comparison. The attack that robust models are trained (``zoo.Recipe.adversarial``) and evaluated with,
ℓ2 PGD, lives in :mod:`salbook.attacks`, below the zoo.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..attacks import l2_norms, loss_gradient, per_image
from ..checks import as_targets, check_inputs

NORMS = ("linf", "l2", "l1q")
Q = 0.005  # the reference notebook's ℓ1-q sparsity (its q = 0.995): 0.5 % of the entries per step
_TINY = torch.finfo(torch.float32).tiny  # keeps an all-zero gradient from dividing by zero


@dataclass
class Perturbation:
    """Per image: the perturbed ``images`` x + δ, ``success`` (targeted: the prediction is the target;
    untargeted: it has left the label) and the cross-entropy ``loss`` toward that class at x + δ."""

    images: torch.Tensor
    success: torch.Tensor
    loss: torch.Tensor


def scale_eps(eps_224: float, norm: str, size: int = 32) -> float:
    """The radius for ``size``×``size`` images that matches the paper's radius at 224×224.

    Rule: keep the per-entry amplitude. A perturbation that moves each of d entries by a has
    ‖·‖∞ = a, ‖·‖₂ = a·√d and ‖·‖₁ = a·d, so when d shrinks from 3·224² to 3·size²

        ε∞ is unchanged,   ε₂ scales with √d (× size/224),   ε₁ (ℓ1-q) scales with d (× (size/224)²).

    This keeps the paper's ℓ1-q radius rule ε₁ = ε₂·√d ("the corners of the ℓ1 ball intersect the ℓ2
    ball", §3.2) true at the new size: ε₁ = 35·√(3·224²) ≈ 13 580 becomes 277 = 5·√(3·32²). At 32×32:
    ℓ2 ε = 12 (Fig. 2) → 1.71, ε = 35 (Fig. 3) → 5.0. With the same q, an ℓ1-q step then moves each of
    its ⌈q·d⌉ entries by the same amount as at 224×224.
    """
    _check_norm(norm)
    _check_eps(eps_224)
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    ratio = size / 224
    return float(eps_224 * {"linf": 1.0, "l2": ratio, "l1q": ratio ** 2}[norm])


def top_count(q: float, d: int) -> int:
    """⌈q·d⌉ entries, the ℓ1-q support size (rounded to 1e-9 first so that 0.3·10 is 3, not 4)."""
    return max(1, math.ceil(round(q * d, 9)))


def lmo(grad: torch.Tensor, norm: str, eps: float, q: float = Q, images: torch.Tensor | None = None) -> torch.Tensor:
    """The linear minimisation oracle argmin ⟨grad, s⟩ over the ε-ball, per image (first dimension).

    ``linf``: −ε·sgn(g). ``l2``: −ε·g/‖g‖₂. ``l1q``: −(ε/n)·sgn(g) on the n = ⌈q·d⌉ entries of largest
    |g| (over all C·H·W entries, so per channel), 0 elsewhere: the best vertex of B₁(ε) ∩ B∞(ε/n), on
    the ℓ1 sphere; a vertex of B₁(ε) itself only for n = 1. Entries with g = 0 are left at 0 (sgn 0 = 0,
    as in the reference).

    With ``images`` (x, shaped like ``grad``), the oracle is that of the ball ∩ {s : x + s ∈ [0, 1]}:
    each entry moves at most its room (x toward 0, 1 − x toward 1). ℓ∞ moves each entry by min(ε, room);
    ℓ1-q fills entries in decreasing |g| up to min(ε/n, room) each until the mass ε is spent (more than
    n entries where rooms are small); ℓ2 clips −t·g to the box, with t found by bisection. The answer is
    on the ε-sphere unless the whole box corner lies inside the ball.
    """
    _check_norm(norm)
    g = grad.flatten(1)
    room = torch.full_like(g, math.inf) if images is None else torch.where(g > 0, images.flatten(1), 1 - images.flatten(1))
    if norm == "linf":
        s = -g.sign() * room.clamp(max=eps)
    elif norm == "l2":
        s = _l2_oracle(g, eps, room)
    else:
        caps = room.double().clamp(max=eps / top_count(q, g.shape[1])).masked_fill(g == 0, 0)
        s = -g.sign() * _fill(g.abs(), eps, caps)
    return s.view_as(grad)


def _fill(priority: torch.Tensor, mass: float, caps: torch.Tensor) -> torch.Tensor:
    """Greedy ℓ1 filling: entries in decreasing ``priority`` receive up to their (float64) cap until
    ``mass`` is spent; remainders below 1e-9·mass are rounding and dropped, so the support stays exact."""
    order = priority.argsort(dim=1, descending=True)
    caps = caps.gather(1, order)
    amount = (mass - (caps.cumsum(1) - caps)).clamp(min=0).minimum(caps)
    amount = amount.masked_fill(amount < 1e-9 * mass, 0)
    return torch.zeros_like(priority).scatter_(1, order, amount.to(priority.dtype))


def _l2_oracle(g: torch.Tensor, eps: float, room: torch.Tensor, iterations: int = 60) -> torch.Tensor:
    """−clip(t·g, room) with the largest t ≥ ε/‖g‖ that keeps ‖·‖₂ ≤ ε (t = ε/‖g‖ without a box)."""
    size = g.abs()

    def length(t):  # ‖clip(t·g, room)‖₂: the sign does not change it
        return (t * size).minimum(room).norm(dim=1, keepdim=True)

    def step(t):
        return -g.sign() * (t * size).minimum(room)

    t_low = eps / g.norm(dim=1, keepdim=True).clamp_min(_TINY)
    if torch.isinf(room).all():
        return step(t_low)
    t_high = (room / size).masked_fill(g == 0, 0).amax(1, keepdim=True).clamp_min(t_low)  # every entry clipped
    for _ in range(iterations):  # geometric bisection: t spans orders of magnitude
        t = (t_low * t_high).sqrt()
        inside = length(t) <= eps
        t_low, t_high = torch.where(inside, t, t_low), torch.where(inside, t_high, t)
    return step(torch.where(length(t_high) <= eps, t_high, t_low))


def frank_wolfe(model, inputs: torch.Tensor, target=None, *, norm: str = "l1q", eps: float, steps: int = 30,
                q: float = Q, c: float = 2.0, targeted: bool = True, box: bool = True) -> Perturbation:
    """Frank-Wolfe perturbations of eq. (1): the standard update δ ← γ·s + (1 − γ)·δ, γ = c/(c + k).

    Args:
        model: classifier returning logits for inputs in [0, 1] (in eval mode).
        inputs: ``(N, C, H, W)`` images in [0, 1].
        target: y_a, an int or one class per image; None: the model's prediction on ``inputs``.
        norm: ``"linf"``, ``"l2"`` or ``"l1q"`` (the paper's ℓ1-q).
        eps: the radius ε in [0, 1] pixel units (:func:`scale_eps` converts the paper's).
        steps: K (the paper: 30).
        q: fraction of entries each ℓ1-q step changes, in (0, 1]; ignored for the other norms.
        c: γ_k = c/(c + k), c ≥ 1 (the reference code: 2; rai-toolbox's concept probing: 1).
        targeted: minimise L toward ``target`` (True, the paper) or maximise it away from it.
        box: keep x + δ in [0, 1] through box-aware oracles (the reference code does not).

    Example::

        out = frank_wolfe(model, images, target=labels, norm="l1q", eps=scale_eps(35 * 3 ** .5 * 224, "l1q"))
        changed = (out.images != images).float().mean()   # sparsity: fraction of entries changed
    """
    _check_budget(norm, eps, q, steps)
    if c < 1:
        raise ValueError(f"c must be ≥ 1 (γ = c/(c + k) starts at 1), got {c}")
    x, classes = _prepare(model, inputs, target)
    delta = torch.zeros_like(x)
    for k in range(steps):
        gamma = c / (c + k)
        s = lmo(loss_gradient(model, x + delta, classes, targeted), norm, eps, q, x if box else None)
        delta = gamma * s + (1 - gamma) * delta
    images = (x + delta).clamp(0, 1) if box else x + delta  # box: the clamp only absorbs float rounding
    return _outcome(model, images, classes, targeted, inputs.device)


class FrankWolfe:
    """:func:`frank_wolfe` with Captum's verb: ``attribute(inputs, target=None)`` returns δ shaped like
    the inputs (the counterfactual minus the image); ``self.result`` keeps the last
    :class:`Perturbation`. ``target=None`` gives the paper's prediction-targeted counterfactual.

    Example::

        delta = FrankWolfe(model, norm="l2", eps=scale_eps(12, "l2")).attribute(images, target=labels)
    """

    def __init__(self, model, *, norm: str = "l1q", eps: float, steps: int = 30, q: float = Q, c: float = 2.0,
                 targeted: bool = True, box: bool = True):
        _check_budget(norm, eps, q, steps)
        self.model, self.options = model, dict(norm=norm, eps=eps, steps=steps, q=q, c=c, targeted=targeted, box=box)
        self.result: Perturbation | None = None

    def attribute(self, inputs: torch.Tensor, target=None) -> torch.Tensor:
        self.result = frank_wolfe(self.model, inputs, target, **self.options)
        return self.result.images - inputs


def pgd_l1(model, inputs: torch.Tensor, target=None, *, eps: float, steps: int = 30, step_size: float | None = None,
           q: float = Q, targeted: bool = True) -> Perturbation:
    """Projected-gradient ℓ1 perturbations: the sparse ℓ1 descent of Tramèr & Boneh (2019, "SLIDE").

    Each step moves δ by ``step_size`` along the unit-ℓ1 ℓ1-q direction (:func:`lmo` with ε = 1: −sgn g
    on the ⌈q·d⌉ entries of largest |g|, mass 1/⌈q·d⌉ each), leaving out entries already at 0 or 1 that
    the step would push further (their trick against wasting budget on the box), then projects onto the
    ℓ1 ball (:func:`project_l1`, Duchi et al. 2008) and clamps x + δ to [0, 1]. Same arguments and result
    as :func:`frank_wolfe`; ``step_size`` defaults to 2.5·ε/steps (Madry et al.'s rule).
    """
    _check_budget("l1q", eps, q, steps)
    step_size = 2.5 * eps / steps if step_size is None else step_size
    if step_size <= 0:
        raise ValueError(f"step_size must be > 0, got {step_size}")
    x, classes = _prepare(model, inputs, target)
    delta = torch.zeros_like(x)
    for _ in range(steps):
        g = loss_gradient(model, x + delta, classes, targeted)
        stuck = ((x + delta <= 0) & (g > 0)) | ((x + delta >= 1) & (g < 0))  # the step moves along −g
        delta = project_l1(delta + lmo(g.masked_fill(stuck, 0), "l1q", step_size, q), eps)
        delta = (x + delta).clamp(0, 1) - x
    return _outcome(model, x + delta, classes, targeted, inputs.device)


def project_l1(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Euclidean projection of each image's δ onto the ℓ1 ball of radius ε (Duchi et al. 2008, Fig. 1):
    soft-threshold |δ| by the θ ≥ 0 that leaves ‖δ‖₁ = ε (θ = 0 inside the ball)."""
    flat = delta.flatten(1)
    mags = flat.abs()
    u = mags.sort(dim=1, descending=True).values
    excess = u.cumsum(1) - eps
    rho = (u > excess / torch.arange(1, u.shape[1] + 1, device=u.device)).sum(1, keepdim=True).clamp_min(1)
    theta = (excess.gather(1, rho - 1) / rho).clamp_min(0)
    return (flat.sign() * (mags - theta).clamp_min(0)).view_as(delta)


def _prepare(model, inputs: torch.Tensor, target) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated inputs on the model's device, and the class of each image (default: its prediction)."""
    check_inputs(inputs)
    device = next(model.parameters()).device
    x = inputs.detach().to(device)
    with torch.no_grad():
        logits = model(x)
    if target is None:
        return x, logits.argmax(1)
    return x, as_targets(target, len(x), logits.shape[1]).to(device)


@torch.no_grad()
def _outcome(model, images: torch.Tensor, classes: torch.Tensor, targeted: bool, device) -> Perturbation:
    logits = model(images)
    hit = logits.argmax(1) == classes
    loss = F.cross_entropy(logits, classes, reduction="none")
    return Perturbation(images.to(device), (hit if targeted else ~hit).to(device), loss.to(device))


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}: choose one of {', '.join(NORMS)}")


def _check_eps(eps: float) -> None:
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a finite radius > 0, got {eps}")


def _check_budget(norm: str, eps: float, q: float, steps: int) -> None:
    _check_norm(norm)
    _check_eps(eps)
    if not 0 < q <= 1:
        raise ValueError(f"q (the fraction of entries an l1-q step changes) must lie in (0, 1], got {q}")
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
