"""Decoy-enhanced saliency maps (Lu, Guo, Xing & Noble, ICLR 2021 submission; ICML 2021 "DANCE").

A **decoy** x̃ of an image x at layer ℓ changes only a small swappable patch K of x and keeps the
layer-ℓ representation: F_ℓ(x̃) = F_ℓ(x) (eq. 1, the swappable condition), relaxed to an ε-ball.
For every patch mask M and both directions s = ±1 the paper takes the decoy that moves the patch
as far as that allows (eq. 2):

    maximise_{x̃ ∈ [0, 1]^d}  ‖((x̃ − x)·s)⁺‖₁
    subject to               ‖F_ℓ(x̃) − F_ℓ(x)‖∞ ≤ ε,   (x̃ − x)∘(1 − M) = 0,   |x̃_i − x_i| ≤ C₂·δ_i.

The last constraint (the *box*) is the one Proposition 1 needs: if both x and an adversarial x̂
have decoys within C₂·δ_i of them, with **δ_i = |E(x̂)_i − E(x)_i|** the change of the base map E
under the attack, then |Z_{x̂,i} − Z_{x,i}| ≤ δ_i. δ therefore depends on a known x̂; here the box
is the half-width C₂·δ, given by the caller (a number or a tensor shaped like the inputs), or
``None`` for no box.

The **decoy-enhanced score** (eq. 3) of feature i is the range of the base map over all 2n decoys
of the n masks, Z_i = max_k E(x̃ᵏ)_i − min_k E(x̃ᵏ)_i (:func:`decoy_range`); the paper's ablations
are the mean (:func:`decoy_mean`) and constant-perturbation "decoys" (:func:`constant_decoys`).
Theorem 1 ties Z_i to the Hessian H_x of F^c: |Z_i − ½|Σ_{k∈K} (x̃⁺_k − x̃⁻_k)(H_x)_{k,i}|| ≤ C₁; for
a linear model the gradient is the same for every decoy and the range is 0 (the paper's appendix A7).

**Solver** (the paper's appendix A6 is missing; this is our choice, in the spirit of its "initial
Lagrange multiplier λ"). The decoy is x̃ = x + M∘δ; the pixel range, the patch and the box are
enforced exactly by projecting δ after every step; the layer constraint by the penalty
λ_k Σ_j (|F_ℓ(x̃)_j − F_ℓ(x)_j| − ε)⁺, which is zero exactly when ‖F_ℓ(x̃) − F_ℓ(x)‖∞ ≤ ε and,
unlike the ∞-norm, has a gradient at every violating unit. Adam maximises the objective minus the
penalty, with a cosine-decayed step size (so that the iterates settle on the boundary of the
feasible set instead of oscillating across it) and β₂ = 0.99 (so that Adam forgets the large penalty
gradients of a violation quickly). Each decoy k has its own λ_k, multiplied by ``growth`` after a
step at which it is infeasible and divided by it after a feasible one (an adaptive penalty: a λ that
only grows stalls the iterates inside the feasible set); the best feasible iterate is kept (δ = 0 is
feasible, so the worst decoy is x itself). A check on an affine layer (cifar-resnet8 cut after its
first convolution, 6 decoys of a test image), where eq. 2 with Σ s·(x̃ − x) as the objective is a
linear programme whose value bounds eq. 2's from below: the defaults (100 steps, lr 0.02) reach
76–117 % of the LP value at ε = 0.1, 103–117 % at ε = 0.3 and 109–117 % at ε = 0.5; with λ only
growing (×1.5) they reached 66–81 % at ε = 0.5.
The 2n decoys of an image, and those of all images, are rows of one batch (split into passes of
bounded memory, ``chunk``), so one forward pass of F_ℓ serves them all;
:func:`generate_decoys_loop` solves them one at a time. The solver has no randomness: same inputs,
same decoys.

**Solving on a crop** (exact). A unit of a convolutional F_ℓ at output position o sees only the
input pixels J·o + lo … J·o + hi of each axis (its receptive field; J the total stride,
:func:`receptive_field`). So F_ℓ(x̃) − F_ℓ(x) is exactly zero at every unit whose field misses the
patch, and the units whose field meets it see only the patch widened by w = hi − lo on each side. A
decoy's problem is therefore the same on a crop of the image that holds the patch ± w: the crop's own
zero padding at its inner edges changes only units whose field leaves the crop, whose difference is
zero on both sides; where the crop meets the image's border the padding is the network's own; and
the crop starts at a multiple of J, so strided layers sample the same positions. Normalisation,
batch norm in eval mode and activations act pixel by pixel. At ℓ = the first ReLU of a ResNet
(w = 2) a 3×3 patch is solved on 7×7 pixels instead of 32×32. Only layers whose geometry is known
(convolutions, pooling, pointwise layers, the zoo's residual blocks) are cropped; any other F_ℓ is
solved on the whole image. The solver also runs on a copy of F_ℓ with each batch norm folded into
its convolution, in the channels-last layout (:func:`salbook.nets.fast_copy`). Crops and the copy change float
rounding only; every decoy is verified afterwards on the whole image with the original F_ℓ
(:func:`verify_decoys`).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from ..checks import as_targets, check_inputs
from ..nets import Normalize, _Basic, fast_copy
from . import baselines

LAMBDA_RANGE = (1e-3, 1e6)  # λ stays finite in float32 (λ · 0 = 0) and never so small that it takes long to recover
VERIFY_ATOL = 1e-4  # float32 headroom: F_ℓ of one image can differ by ~1e-6 between batch compositions


@dataclass
class DecoySet:
    """Decoys of N images and their verification.

    ``decoys`` ``(N, D, C, H, W)``; ``masks`` ``(D, 1, H, W)`` bool (the patch of each decoy);
    ``signs`` ``(D,)``: +1 / −1 for optimised decoys, 0 for constant ones; ``feasible`` ``(N, D)``:
    every constraint of eq. 2 holds (:func:`verify_decoys`); ``distance`` ``(N, D)``:
    ‖F_ℓ(x̃) − F_ℓ(x)‖∞.
    """

    decoys: torch.Tensor
    masks: torch.Tensor
    signs: torch.Tensor
    feasible: torch.Tensor
    distance: torch.Tensor

    @property
    def violation_rate(self) -> float:
        """Share of decoys that break a constraint of eq. 2."""
        return float(1 - self.feasible.float().mean())


# --- layers and patches -------------------------------------------------------------------------

def layer_index(model: nn.Module, layer: int | str | None) -> int:
    """Position of ``layer`` in ``model``: an index (negative counts from the end), a child's name, or
    ``None`` for the first ``nn.ReLU`` child (the first hidden representation)."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"decoys cut the model after layer ℓ, which needs an nn.Sequential (the zoo's "
                         f"networks are); got {type(model).__name__}")
    names = [name for name, _ in model.named_children()]
    if layer is None:
        relus = [k for k, m in enumerate(model.children()) if isinstance(m, nn.ReLU)]
        if not relus:
            raise ValueError("the model has no nn.ReLU child to default to: give layer (an index or a child name)")
        return relus[0]
    if isinstance(layer, str):
        if layer not in names:
            raise ValueError(f"unknown layer {layer!r}: choose a child name ({', '.join(names)}) or an index")
        return names.index(layer)
    if isinstance(layer, bool) or not isinstance(layer, int) or not -len(names) <= layer < len(names):
        raise ValueError(f"unknown layer {layer!r}: choose an index in {-len(names)}..{len(names) - 1} or a "
                         f"child name ({', '.join(names)})")
    return layer % len(names)


def truncate(model: nn.Module, layer: int | str | None) -> nn.Sequential:
    """F_ℓ: ``model`` up to and including ``layer``, in eval mode (batch norm and dropout must not
    make one decoy's representation depend on the others in its batch)."""
    features = model[: layer_index(model, layer) + 1]
    if any(m.training for m in features.modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout))):
        raise ValueError("the model is in training mode: call model.eval() before generating decoys")
    return features


def patch_masks(height: int, width: int, patch: int = 3, stride: int | None = None) -> torch.Tensor:
    """The n swappable patches: ``patch × patch`` windows slid by ``stride`` (default ``patch``:
    non-overlapping), plus a last row / column of windows flush with the border when the stride
    would miss it, so that every pixel lies in some patch. ``(n, 1, H, W)`` bool, all channels."""
    stride = patch if stride is None else stride
    if patch < 1 or stride < 1:
        raise ValueError(f"patch and stride must be ≥ 1, got patch={patch}, stride={stride}")
    if patch > min(height, width):
        raise ValueError(f"patch {patch} is larger than the {height}×{width} image: "
                         f"choose patch ≤ {min(height, width)}")
    rows, cols = (_starts(n, patch, stride) for n in (height, width))
    masks = torch.zeros(len(rows) * len(cols), 1, height, width, dtype=torch.bool)
    for k, (r, c) in enumerate((r, c) for r in rows for c in cols):
        masks[k, :, r:r + patch, c:c + patch] = True
    return masks


def _starts(size: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, size - patch + 1, stride))
    return starts if starts[-1] == size - patch else starts + [size - patch]


def _bounds(inputs: torch.Tensor, box) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel lower and upper limits of a decoy: the pixel range [0, 1] cut by the box."""
    if box is None:
        return torch.zeros_like(inputs), torch.ones_like(inputs)
    box = torch.as_tensor(box, dtype=inputs.dtype, device=inputs.device)
    if not torch.isfinite(box).all() or (box < 0).any():
        raise ValueError("box (the half-width C₂·δ of Proposition 1) must be finite and ≥ 0, or None for no box")
    return (inputs - box).clamp(min=0), (inputs + box).clamp(max=1)


# --- receptive fields: the crop a decoy is solved on ------------------------------------------

POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.Softplus, nn.Sigmoid, nn.Tanh, nn.Identity, nn.Dropout,
             nn.modules.batchnorm._BatchNorm, Normalize)


@dataclass(frozen=True)
class Field:
    """Along each image axis, output position o of a layer depends only on input positions
    ``stride``·o + ``lo`` … ``stride``·o + ``hi``."""

    stride: int = 1
    lo: int = 0
    hi: int = 0

    def then(self, kernel: int, stride: int, padding: int, dilation: int = 1) -> "Field":
        """The field after a window layer: its output o reads positions stride·o − padding … + dilation·(kernel − 1)."""
        return Field(self.stride * stride, self.lo - self.stride * padding,
                     self.hi + self.stride * (dilation * (kernel - 1) - padding))


def receptive_field(module: nn.Module, field: Field = Field()) -> Field | None:
    """The :class:`Field` of ``module``'s output, or ``None`` where its geometry is unknown (a layer
    that mixes positions in another way, such as a linear layer, global pooling or a per-pixel
    mean image), in which case decoys are solved on the whole image."""
    if isinstance(module, nn.Sequential):
        for child in module:
            field = receptive_field(child, field)
            if field is None:
                return None
        return field
    if isinstance(module, POINTWISE):
        return field
    if isinstance(module, _Basic):  # out(body(x) + shortcut(x))
        body, short = receptive_field(module.body, field), receptive_field(module.shortcut, field)
        if body is None or short is None or body.stride != short.stride:
            return None
        return Field(body.stride, min(body.lo, short.lo), max(body.hi, short.hi))
    window = _layer_window(module)
    return None if window is None else field.then(*window)


def _layer_window(module: nn.Module) -> tuple[int, int, int, int] | None:
    """(kernel, stride, padding, dilation) of a square-windowed convolution or pooling layer with zero
    (or −∞) padding, else ``None``."""
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros" and not isinstance(module.padding, str):
        params = (module.kernel_size, module.stride, module.padding, module.dilation)
    elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)) and not module.ceil_mode:
        params = (module.kernel_size, module.stride, module.padding, getattr(module, "dilation", 1))
    else:
        return None
    pairs = [p if isinstance(p, tuple) else (p, p) for p in params]
    return tuple(p[0] for p in pairs) if all(p[0] == p[1] for p in pairs) else None


def crop_boxes(field: Field | None, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Where to solve each decoy: top and left corners ``(D,)`` and the common ``(height, width)`` of
    the crops holding each mask's patch widened by the field's width (see the module's docstring);
    the whole image when ``field`` is ``None`` or the crop would not be smaller."""
    height, width = masks.shape[-2:]
    rows, cols = masks.any(1).any(2), masks.any(1).any(1)  # (D, H), (D, W): which rows / columns the patch spans
    if not (rows.any(1) & cols.any(1)).all():
        raise ValueError("every mask must select at least one pixel")
    corners, sizes = [], []
    for spans, size in ((rows, height), (cols, width)):
        first = spans.float().argmax(1)
        extent = int((size - spans.flip(1).float().argmax(1) - first).max())  # the widest patch along this axis
        if field is None:
            corners.append(torch.zeros_like(first)); sizes.append(size)
            continue
        j, w = field.stride, field.hi - field.lo
        crop = size - j * ((size - (extent + 2 * w + j - 1)) // j) if extent + 2 * w + j - 1 < size else size
        corners.append(torch.minimum(j * ((first - w).clamp(min=0) // j), torch.tensor(size - crop)))
        sizes.append(crop)
    return corners[0], corners[1], (sizes[0], sizes[1])


def _window(top: torch.Tensor, left: torch.Tensor, size: tuple[int, int], channels: int) -> tuple:
    """Indices (channel, row, column) that, after a row index ``(R, 1, 1, 1)``, cut R crops
    ``(R, channels, *size)`` with corners (top[i], left[i])."""
    rows = (top[:, None] + torch.arange(size[0], device=top.device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(size[1], device=top.device))[:, None, None, :]
    return torch.arange(channels, device=top.device)[None, :, None, None], rows, cols


# --- decoy generation (eq. 2) ------------------------------------------------------------------

def generate_decoys(model: nn.Module, inputs: torch.Tensor, layer: int | str | None, eps: float, patch: int = 3,
                    stride: int | None = None, box=None, steps: int = 100, lr: float = 0.02, lam: float = 1.0,
                    growth: float = 1.2, chunk: int = 512, crop: bool = True, progress: bool = True) -> DecoySet:
    """The 2n decoys of eq. 2 for every image: all masks, both directions, batched.

    Args:
        model: an ``nn.Sequential`` classifier in eval mode, on inputs in [0, 1].
        inputs: ``(N, C, H, W)`` images in [0, 1].
        layer: ℓ, the child of ``model`` after which F_ℓ is cut (:func:`layer_index`).
        eps: ε, the largest allowed ‖F_ℓ(x̃) − F_ℓ(x)‖∞ (> 0, in the units of layer ℓ).
        patch, stride: the swappable windows (:func:`patch_masks`).
        box: C₂·δ of Proposition 1 (a number or a tensor broadcastable to ``inputs``), or ``None``.
        steps, lr: Adam steps and step size on δ (pixel units).
        lam, growth: initial Lagrange multiplier λ and its factor per step (× when infeasible, ÷ when feasible).
        chunk: bounds the memory of a forward pass: it holds the decoys of ``chunk`` whole images' pixels
            (``chunk`` decoys, or proportionally more crops).
        crop: solve each decoy on the crop its patch can influence (exact, see the module's docstring);
            ``False`` solves on the whole image (the reference the crop is tested against).

    Returns a :class:`DecoySet` whose decoys come in (s = +1, s = −1) pairs per mask.
    """
    return _generate(model, inputs, layer, eps, patch, stride, box, steps, lr, lam, growth, chunk, crop, progress,
                     by_pixels=True)


def generate_decoys_loop(model: nn.Module, inputs: torch.Tensor, layer: int | str | None, eps: float, patch: int = 3,
                         stride: int | None = None, box=None, steps: int = 100, lr: float = 0.02, lam: float = 1.0,
                         growth: float = 1.2, crop: bool = True, progress: bool = True) -> DecoySet:
    """Reference for the benchmark: the same solver, one mask and one direction per forward pass."""
    return _generate(model, inputs, layer, eps, patch, stride, box, steps, lr, lam, growth, 1, crop, progress,
                     by_pixels=False)


def _generate(model, inputs, layer, eps, patch, stride, box, steps, lr, lam, growth, chunk, crop, progress,
              by_pixels) -> DecoySet:
    check_inputs(inputs)
    _check_solver(eps, steps, lr, lam, growth, chunk)
    features = truncate(model, layer)
    masks = patch_masks(*inputs.shape[2:], patch, stride).repeat_interleave(2, 0)
    signs = torch.tensor([1.0, -1.0]).repeat(len(masks) // 2)
    x = inputs.detach().to(_device(model))
    lo, hi = _bounds(x, box)
    top, left, size = crop_boxes(receptive_field(features) if crop else None, masks)
    masks, signs, top, left = (t.to(x.device) for t in (masks, signs, top, left))
    solver = fast_copy(features)
    n, d = len(x), len(masks)
    per_pass = chunk * max(1, x[0, 0].numel() // (size[0] * size[1])) if by_pixels else chunk
    best = x.repeat_interleave(d, 0)
    for a in tqdm(range(0, n * d, per_pass), desc="decoys", disable=not progress):
        rows = torch.arange(a, min(a + per_pass, n * d), device=x.device)
        img, k = rows // d, rows % d
        window = _window(top[k], left[k], size, x.shape[1])
        at = (img[:, None, None, None], *window)
        x0 = x[at]
        with torch.no_grad():
            f0 = solver(x0)
        patch_mask = masks[(k[:, None, None, None], *_window(top[k], left[k], size, 1))]
        found = _solve(solver, x0, f0, patch_mask, signs[k], lo[at], hi[at], eps, steps, lr, lam, growth)
        best[(rows[:, None, None, None], *window)] = found
    decoys = best.view(n, d, *x.shape[1:])
    return _verified(features, x, decoys, masks, signs, eps, box)


def _solve(features, x0, f0, masks, signs, lo, hi, eps, steps, lr, lam, growth) -> torch.Tensor:
    """Penalty method for a batch of rows, each one (image, mask, direction); returns the best
    feasible iterate of each row. Gradients are taken with respect to δ alone (the model's
    parameters get none)."""
    delta = torch.zeros_like(x0, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr, betas=(0.9, 0.99))
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * t / steps)))
    lam = torch.full((len(x0),), float(lam), device=x0.device)
    s = signs.view(-1, 1, 1, 1)
    best, best_gain = x0.clone(), torch.zeros(len(x0), device=x0.device)
    dims = tuple(range(1, x0.dim()))  # sums over all but the row (no flatten: it would copy channels-last tensors)
    for step in range(steps + 1):
        decoy = torch.clamp(x0 + masks * delta, lo, hi)  # exact range and box (δ is already projected)
        move = (decoy - x0) * s
        excess = (features(decoy) - f0).abs() - eps
        penalty = excess.clamp(min=0).sum(tuple(range(1, excess.dim())))  # Σ_j (|ΔF_j| − ε)⁺
        feasible = penalty == 0  # ⇔ ‖F_ℓ(x̃) − F_ℓ(x)‖∞ ≤ ε
        with torch.no_grad():
            gain = move.clamp(min=0).sum(dims)
            better = feasible & (gain > best_gain)
            best[better], best_gain[better] = decoy[better], gain[better]
        if step == steps:
            break
        # where(): subgradient 1 at move = 0, so that δ = 0 starts moving in direction s
        loss = -torch.where(move >= 0, move, 0).sum(dims) + lam * penalty
        (delta.grad,) = torch.autograd.grad(loss.sum(), delta)
        opt.step()
        schedule.step()
        with torch.no_grad():
            delta.copy_(torch.clamp(delta, lo - x0, hi - x0) * masks)
            lam = torch.where(feasible, lam / growth, lam * growth).clamp(*LAMBDA_RANGE)
    return best.detach()


def _check_eps(eps) -> None:
    if not eps > 0:
        raise ValueError(f"eps must be > 0 (the allowed ‖F_ℓ(x̃) − F_ℓ(x)‖∞), got {eps}")


def _check_solver(eps, steps, lr, lam, growth, chunk) -> None:
    _check_eps(eps)
    if steps < 1 or chunk < 1 or not lr > 0 or not lam > 0 or not growth > 1:
        raise ValueError("steps and chunk must be ≥ 1, lr and lam > 0, growth > 1")


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# --- the constant-perturbation ablation ----------------------------------------------------------

def constant_decoys(model: nn.Module, inputs: torch.Tensor, layer: int | str | None, eps: float, patch: int = 3,
                    stride: int | None = None) -> DecoySet:
    """The paper's "constant-perturbation" ablation: one "decoy" per mask, the patch replaced by
    the image's mean pixel (its mean colour). Verified against eq. 2 like real decoys, so the
    :attr:`DecoySet.violation_rate` says how far they are from being decoys."""
    check_inputs(inputs)
    _check_eps(eps)
    features = truncate(model, layer)
    masks = patch_masks(*inputs.shape[2:], patch, stride)
    x = inputs.detach().to(_device(model))
    mean = x.mean((2, 3), keepdim=True)
    decoys = torch.where(masks.to(x.device)[None], mean[:, None], x[:, None])
    return _verified(features, x, decoys, masks, torch.zeros(len(masks)), eps, None)


# --- verification -----------------------------------------------------------------------------

def verify_decoys(model: nn.Module, inputs: torch.Tensor, decoys: torch.Tensor, masks: torch.Tensor,
                  layer: int | str | None, eps: float, box=None,
                  atol: float = VERIFY_ATOL) -> tuple[torch.Tensor, torch.Tensor]:
    """Check every constraint of eq. 2 afresh: ‖F_ℓ(x̃) − F_ℓ(x)‖∞ ≤ ε + ``atol``, x̃ = x outside
    the patch (exactly), x̃ ∈ [0, 1] and, with a box, |x̃ − x| ≤ C₂·δ + ``atol``.

    ``decoys`` ``(N, D, C, H, W)`` for ``inputs`` ``(N, C, H, W)``; ``masks`` ``(D, 1, H, W)``.
    Returns ``(feasible, distance)``, both ``(N, D)``; the violation rate is ``1 − feasible.mean()``.
    """
    x = inputs.detach().to(_device(model))
    return _verify(truncate(model, layer), x, decoys.to(x.device), masks, eps, box, atol)


def _verify(features, x, decoys, masks, eps, box, atol, chunk: int = 512):
    n, d = decoys.shape[:2]
    with torch.no_grad():
        f0 = features(x)
        f = torch.cat([features(b).flatten(1) for b in decoys.flatten(0, 1).split(chunk)]).view(n, d, -1)
    distance = (f - f0.flatten(1)[:, None]).abs().amax(2)
    change = decoys - x[:, None]
    outside = ~masks.to(x.device)[None]
    ok = (distance <= eps + atol) & (change * outside).flatten(2).abs().amax(2).eq(0)
    ok &= (decoys >= 0).flatten(2).all(2) & (decoys <= 1).flatten(2).all(2)
    if box is not None:
        box = torch.as_tensor(box, dtype=x.dtype, device=x.device).expand_as(x)
        ok &= (change.abs() <= box[:, None] + atol).flatten(2).all(2)
    return ok.cpu(), distance.cpu()


def _verified(features, x, decoys, masks, signs, eps, box) -> DecoySet:
    feasible, distance = _verify(features, x, decoys, masks, eps, box, VERIFY_ATOL)
    return DecoySet(decoys.detach().cpu(), masks.cpu(), signs.cpu(), feasible, distance)


# --- aggregation (eq. 3) and post-processing ------------------------------------------------------

def decoy_range(maps: torch.Tensor) -> torch.Tensor:
    """Eq. 3: Z_i = max_k E(x̃ᵏ)_i − min_k E(x̃ᵏ)_i over the decoy axis of ``maps`` ``(N, D, ...)``."""
    return maps.amax(1) - maps.amin(1)


def decoy_mean(maps: torch.Tensor) -> torch.Tensor:
    """The paper's mean-aggregation ablation: the mean of E(x̃ᵏ)_i over the decoys."""
    return maps.mean(1)


AGGREGATIONS = {"range": decoy_range, "mean": decoy_mean}


def postprocess(maps: torch.Tensor, percentile: float = 95.0) -> torch.Tensor:
    """The paper's post-processing before every evaluation, for every method: absolute value, max
    over colour channels, winsorise (clip the upper tail) at the ``percentile``-th percentile of each
    image, then scale linearly to [0, 1] per image (min → 0, max → 1; a constant map becomes 0).

    ``maps`` ``(N, C, H, W)`` or ``(N, H, W)`` → ``(N, H, W)``.
    """
    if maps.dim() not in (3, 4):
        raise ValueError(f"maps must be (N, C, H, W) or (N, H, W), got {tuple(maps.shape)}")
    if not torch.isfinite(maps).all():
        raise ValueError("maps contain NaN or infinite values")
    m = maps.detach().abs()
    m = (m.amax(1) if m.dim() == 4 else m).double()
    flat = m.flatten(1)
    flat = torch.minimum(flat, torch.quantile(flat, percentile / 100, dim=1, keepdim=True))
    lo, span = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True) - flat.amin(1, keepdim=True)
    scaled = torch.where(span > 0, (flat - lo) / span.clamp(min=torch.finfo(flat.dtype).tiny), 0.0)
    return scaled.view_as(m).to(maps.dtype)


# --- the method, with Captum's verb ---------------------------------------------------------------

class DecoyEnhanced:
    """Decoy-enhanced saliency (eq. 3): aggregate a base method's maps over the decoys of eq. 2.

    Args:
        model: ``nn.Sequential`` classifier in eval mode, returning logits for inputs in [0, 1].
        base: the base method E, any :data:`baselines.NAMES` (the paper: ``"gradient"``,
            ``"smoothgrad"``, ``"integrated_gradients"``); default ``"gradient"``.
        layer: ℓ (:func:`layer_index`); default ``None``: the first ReLU, the cheapest hidden
            representation, and one that every zoo network has.
        eps: ε in layer-ℓ units; default 0.3, a small share of the largest first-ReLU activation of
            the zoo's CIFAR-10 networks (a few units on a test image); the decoy part's first chapter
            measures how far the patches then move, and how that changes with ε.
        patch, stride: swappable windows; default 3 (the paper's 3×3) and ``None`` (= ``patch``).
        aggregation: ``"range"`` (eq. 3, default) or ``"mean"`` (ablation).
        decoys: ``"optimised"`` (eq. 2, default) or ``"constant"`` (ablation: patch := mean colour).
        base_options: keyword arguments for ``baselines.make(base, model, ...)``.
        box: C₂·δ of Proposition 1, or ``None`` (default: no box).
        cache: a dict shared by several methods (the base methods of one experiment, the stages of a
            randomisation check) that keeps decoys by a fingerprint of the images, F_ℓ's weights, the
            box and the decoy settings, so that the same problems are solved once; ``None``: no cache.
        steps, lr, lam, growth, chunk: the solver's (:func:`generate_decoys`); ``chunk`` also
            bounds the base method's batch.
        seed: the seed of the base method's noise where it draws any (SmoothGrad, SG-SQ, VarGrad: their
            ``seed`` option, which seeds every call; the other bases draw nothing and ignore it); ``None``:
            ``base_options``' seed, else the base's default. Give it once, here or in ``base_options``.
        progress: tqdm bars.

    ``attribute(inputs, target=None)`` returns the unsigned score ``(N, C, H, W)`` (target defaults
    to the predicted class); ``self.decoy_set`` keeps the last call's :class:`DecoySet` (decoys,
    feasibility, violation rate). Post-process with :func:`postprocess` before evaluating.

    Example::

        >>> model = nets.build("cifar_resnet8").eval()
        >>> method = DecoyEnhanced(model, base="gradient", steps=20, progress=False)
        >>> method.attribute(torch.rand(1, 3, 32, 32), target=3).shape
        torch.Size([1, 3, 32, 32])
    """

    def __init__(self, model: nn.Module, base: str = "gradient", layer: int | str | None = None, eps: float = 0.3,
                 patch: int = 3, stride: int | None = None, aggregation: str = "range", decoys: str = "optimised",
                 base_options: dict | None = None, box=None, steps: int = 100, lr: float = 0.02, lam: float = 1.0,
                 growth: float = 1.2, chunk: int = 512, seed: int | None = None, progress: bool = True,
                 cache: dict | None = None):
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}: choose range or mean")
        if decoys not in ("optimised", "constant"):
            raise ValueError(f"unknown decoys {decoys!r}: choose optimised or constant")
        _check_solver(eps, steps, lr, lam, growth, chunk)
        truncate(model, layer)  # fail now on an unknown layer or a model in training mode
        self.model, self.layer, self.eps, self.patch, self.stride = model, layer, eps, patch, stride
        self.aggregation, self.kind, self.box, self.progress = aggregation, decoys, box, progress
        self.solver = dict(steps=steps, lr=lr, lam=lam, growth=growth, chunk=chunk)
        self.base = baselines.make(base, model, **_seeded(base, base_options or {}, seed))
        self.cache = cache
        self.decoy_set: DecoySet | None = None

    def attribute(self, inputs: torch.Tensor, target=None) -> torch.Tensor:
        check_inputs(inputs)
        targets = self._targets(inputs, target)
        self.decoy_set = self.make_decoys(inputs)
        aggregate = AGGREGATIONS[self.aggregation]
        images = tqdm(zip(self.decoy_set.decoys, targets), total=len(inputs), desc="decoy maps",
                      disable=not self.progress)
        return torch.cat([aggregate(self.decoy_maps(decoys, int(t))[None]) for decoys, t in images])

    def make_decoys(self, inputs: torch.Tensor) -> DecoySet:
        """The decoys of ``inputs``: optimised (eq. 2) or constant, as configured (from the cache
        when one was given and holds them)."""
        if self.cache is None:
            return self._solve_decoys(inputs)
        key = self._fingerprint(inputs)
        if key not in self.cache:
            self.cache[key] = self._solve_decoys(inputs)
        return self.cache[key]

    def _fingerprint(self, inputs: torch.Tensor) -> str:
        digest = hashlib.sha256(repr((tuple(inputs.shape), self.kind, self.layer, self.eps, self.patch, self.stride,
                                      self.box is None, sorted(self.solver.items()))).encode())
        state = truncate(self.model, self.layer).state_dict().values()
        for t in (inputs, *state, *([] if self.box is None else [torch.as_tensor(self.box)])):
            digest.update(t.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def _solve_decoys(self, inputs: torch.Tensor) -> DecoySet:
        if self.kind == "constant":
            return constant_decoys(self.model, inputs, self.layer, self.eps, self.patch, self.stride)
        return generate_decoys(self.model, inputs, self.layer, self.eps, self.patch, self.stride, self.box,
                               progress=self.progress, **self.solver)

    def decoy_maps(self, decoys: torch.Tensor, target: int) -> torch.Tensor:
        """E(x̃ᵏ) for the decoys ``(D, C, H, W)`` of one image, in batches of ``chunk``. A seeded base
        (SmoothGrad) draws the same noise at every call, so within a batch all decoys share it, and an
        image's map does not depend on the other images of the call."""
        return torch.cat([self.base.attribute(b, target=target) for b in decoys.split(self.solver["chunk"])])

    def _targets(self, inputs, target) -> torch.Tensor:
        with torch.no_grad():
            logits = self.model(inputs.to(_device(self.model)))
        return logits.argmax(1).cpu() if target is None else as_targets(target, len(inputs), logits.shape[1])


def _seeded(base: str, options: dict, seed: int | None) -> dict:
    """The base method's ``options`` with ``seed`` as its noise seed (only SmoothGrad's family draws noise)."""
    if seed is None or base not in baselines.SMOOTHGRAD_KINDS:
        return options
    if options.get("seed", seed) != seed:
        raise ValueError(f"two seeds for the base's noise: seed={seed} and base_options seed={options['seed']}; "
                         "give one")
    return {**options, "seed": seed}
