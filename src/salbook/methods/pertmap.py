"""PertMap: the maximal invariant perturbation box as a saliency map.

Hara et al. (2018) score feature i by how far it can move without changing the decision: find the
largest box R(w) = [−w₁, w₁] × … × [−w_d, w_d] such that c = argmax_j f_j(x + r) for every r ∈ R(w)
(Problem 2.1 of Ikeno & Hara 2018, with 0 ≤ w ≤ C); small w_i means a relevant feature, so the score
is −w.

:class:`StochasticPertMap` is Ikeno & Hara's Algorithm 1. By Proposition 3.1 the constraint holds
iff E_t[max(0, f_j(x + t⊙w) − f_c(x + t⊙w))] = 0 for t ~ U[−1, 1]^d, which gives the penalty
problem (eq. 3.2) and its sample-average objective (eq. 3.3):

    maximise   Σ_i w_i − λ Σ_{j≠c} (1/M) Σ_m max(0, f_j(x + t_m⊙w) − f_c(x + t_m⊙w)),

solved by Adam with w initialised at 0 and clipped to [0, C] after every step. As in the reference
notebook, f is the softmax output (probabilities) and the perturbed image is not clipped to [0, 1].
Many images are optimised at once: each has its own w, and a network in eval mode treats images
independently, so batching changes nothing but speed.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..checks import as_targets, check_inputs


class StochasticPertMap:
    """Algorithm 1 of Ikeno & Hara (2018), with Captum's verb.

    Args:
        model: classifier returning logits for inputs in [0, 1] (probabilities are its softmax).
        iterations: Adam steps (the reference notebook: 500).
        samples: M, perturbations t ~ U[−1, 1]^d per step and image (paper: 32).
        lam: λ as a multiple of d (paper: λ = 0.1·d); a number, or one value per image.
        lr: Adam step size (paper: 0.01).
        C: upper bound of w (paper: C = 1 for images in [0, 1]); a number, or one value per image.
        seed: seeds the perturbations.
        tol, window: an optional stopping rule. With ``tol`` set, an image (row) stops once the mean of
            its w has moved by less than ``tol``·C over the last ``window`` iterations; its w is then
            frozen and it leaves the forward passes. ``iterations`` stays the cap. None (the default):
            exactly ``iterations`` steps, as in the paper's Algorithm 1 with a fixed budget.
        batch_size: about how many perturbed images (images × samples) enter one forward and backward
            pass; None: 64 on a CPU (small passes keep the activations in cache, which is faster than
            large ones there) and 2048 on a GPU.

    ``attribute(inputs, target=None)`` returns −ŵ shaped like the inputs (higher = more relevant);
    ``target`` defaults to the predicted class c, which the paper fixes from the clean image.
    ``self.history`` holds ŵ at the iterations listed in ``checkpoints``; ``self.mean_w`` the mean of each
    row's w every ``window`` iterations (``(len(checks), n)``, iterations in ``self.mean_w_at``) and
    ``self.stopped_at`` the iteration at which each row stopped (the cap when it never did).

    Each image's box is optimised independently (Adam is elementwise and the network, in eval mode,
    treats images independently), so one call can run several settings at once: repeat the images
    and give ``lam`` or ``C`` per row. Only w is differentiated (``torch.autograd.grad``): the
    model's weight gradients are neither computed nor left in ``.grad``. The gradient is accumulated
    over chunks of images (:meth:`loss_gradient`), and perturbed images enter the network
    channels-last, the faster layout for convolutions.

    Example::

        maps = StochasticPertMap(model, iterations=500).attribute(images)
        per_pixel = maps.mean(1)   # the reference's reduction over colour channels
        # two penalty weights in one optimisation: rows 0..n-1 at 0.1·d, rows n..2n-1 at 10·d
        both = StochasticPertMap(model, lam=[0.1] * n + [10.0] * n).attribute(images.repeat(2, 1, 1, 1))
    """

    def __init__(self, model, iterations: int = 500, samples: int = 32, lam=0.1, lr: float = 0.01,
                 C=1.0, seed: int = 0, batch_size: int | None = None, checkpoints: tuple = (), progress: bool = True,
                 tol: float | None = None, window: int = 100):
        lam_t, C_t = torch.as_tensor(lam, dtype=torch.float32), torch.as_tensor(C, dtype=torch.float32)
        if iterations < 1 or samples < 1 or lr <= 0 or lam_t.ndim > 1 or C_t.ndim > 1:
            raise ValueError("iterations and samples must be ≥ 1 and lr > 0; lam and C a number or one value per image")
        if not (torch.isfinite(lam_t).all() and torch.isfinite(C_t).all() and (lam_t >= 0).all() and (C_t > 0).all()):
            raise ValueError("lam must be ≥ 0 and C > 0 (finite)")
        if batch_size is not None and batch_size < 1:
            raise ValueError("batch_size must be ≥ 1 (or None for the device's default)")
        if (tol is not None and not tol > 0) or window < 1:
            raise ValueError("tol must be > 0 (or None: no stopping rule) and window ≥ 1")
        self.model, self.iterations, self.samples, self.lam, self.lr, self.C = model, iterations, samples, lam_t, lr, C_t
        self.seed, self.batch_size, self.checkpoints, self.progress = seed, batch_size, tuple(checkpoints), progress
        self.tol, self.window = tol, window
        self.history: dict[int, torch.Tensor] = {}
        self.mean_w: torch.Tensor | None = None
        self.mean_w_at: list[int] = []
        self.stopped_at: torch.Tensor | None = None

    def attribute(self, inputs: torch.Tensor, target=None) -> torch.Tensor:
        check_inputs(inputs)
        device = next(self.model.parameters()).device
        x = inputs.detach().to(device)
        with torch.no_grad():
            logits = self.model(x)
        c = logits.argmax(1) if target is None else as_targets(target, len(x), logits.shape[1]).to(device)
        n = len(x)
        lam = self.per_image(self.lam, n, "lam").to(device)
        C = self.per_image(self.C, n, "C").to(device).view(n, *[1] * (x.ndim - 1))
        rows = self.batch_size or (64 if device.type == "cpu" else 2048)  # 64: a CPU's activations stay in cache
        w = torch.zeros_like(x)
        opt = torch.optim.Adam([w], lr=self.lr)
        gen = torch.Generator(device=device).manual_seed(self.seed)
        self.history, means, self.mean_w_at = {}, [w.flatten(1).mean(1).cpu()], [0]
        active = torch.ones(n, dtype=torch.bool, device=device)
        stopped_at = torch.full((n,), self.iterations)
        for it in tqdm(range(1, self.iterations + 1), desc="stochastic PertMap", disable=not self.progress):
            # the draws do not depend on which rows are still active: every row draws every step
            t = torch.rand((n, self.samples, *x.shape[1:]), generator=gen, device=device) * 2 - 1
            if active.all():
                w.grad = self.loss_gradient(x, w, t, c, lam, max(1, rows // self.samples))
            else:
                idx = active.nonzero().flatten()
                grad = torch.zeros_like(w)
                grad[idx] = self.loss_gradient(x[idx], w[idx].detach(), t[idx], c[idx], lam[idx],
                                               max(1, rows // self.samples))
                w.grad = grad
            frozen = w.detach()[~active].clone()
            opt.step()
            w.copy_(w.clamp(min=0).minimum(C))
            if not active.all():
                w.data[~active] = frozen  # Adam's momentum must not move a row that has stopped
            if it in self.checkpoints:
                self.history[it] = w.cpu().clone()
            if it % self.window == 0:
                means.append(w.flatten(1).mean(1).cpu())
                self.mean_w_at.append(it)
                if self.tol is not None:
                    moved = (means[-1] - means[-2]).abs().to(device)
                    done = active & (moved < self.tol * C.flatten())
                    stopped_at[done.cpu()] = it
                    active &= ~done
                    if not active.any():
                        break
        self.mean_w, self.stopped_at = torch.stack(means), stopped_at
        return -w.cpu()

    def loss_gradient(self, x: torch.Tensor, w: torch.Tensor, t: torch.Tensor, c: torch.Tensor, lam: torch.Tensor,
                      images_per_pass: int) -> torch.Tensor:
        """∂/∂w of the loss Adam minimises, −Σ_images objective / d (1/d: the scale of the reference's
        means), i.e. −1/d + λ_i ∂hinge_i/∂w: one forward and backward per chunk of images."""
        grad = torch.full_like(w, -1.0 / x[0].numel())
        for start in range(0, len(x), images_per_pass):
            part = slice(start, start + images_per_pass)
            w_part = w[part].detach().requires_grad_(True)
            penalty = (lam[part] * self.hinge(x[part], w_part, t[part], c[part])).sum()
            grad[part] += torch.autograd.grad(penalty, w_part)[0]
        return grad

    def objective(self, x: torch.Tensor, w: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Eq. 3.3 per image: Σ w − λd Σ_{j≠c} mean_m max(0, f_j − f_c) at x + t⊙w."""
        lam = self.per_image(self.lam, len(x), "lam").to(x.device)
        return w.flatten(1).sum(1) - lam * x[0].numel() * self.hinge(x, w, t, c)

    def hinge(self, x: torch.Tensor, w: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Per image, mean_m Σ_{j≠c} max(0, f_j − f_c) at x + t_m⊙w (one forward pass of all samples)."""
        n, m = t.shape[:2]
        perturbed = (x[:, None] + t * w[:, None]).flatten(0, 1).contiguous(memory_format=torch.channels_last)
        probs = F.softmax(self.model(perturbed), 1).view(n, m, -1)
        p_c = probs.gather(2, c.view(n, 1, 1).expand(n, m, 1))
        return (probs - p_c).clamp(min=0).sum(2).mean(1)  # the j = c term is 0

    @staticmethod
    def per_image(value: torch.Tensor, n: int, name: str) -> torch.Tensor:
        """A setting given as a number or one value per image, as a tensor ``(n,)``."""
        if value.ndim == 1 and len(value) != n:
            raise ValueError(f"{name} has {len(value)} values for {n} images: give a number or one value per image")
        return value.expand(n)


class LPPertMap:
    """LP PertMap (Hara et al. 2018): the maximal box under a linearised decision constraint.

    The box is asymmetric, r_i ∈ [−v_i, u_i] with 0 ≤ u, v ≤ δ (u: allowed increase, v: allowed
    decrease). For every class j ≠ c the logit margin Z_j(x') = z_c(x') − z_j(x') is linearised at
    points x_k = x + n_k (n_0 = 0; with smoothing, n_k ~ N(0, σ²) for k = 1..K) with gradient H_{k,j}.
    The worst case of H·r over the box is −Σ_i (H⁺_i v_i + H⁻_i u_i), so the first-order constraint
    Z_j(x_k) + H_{k,j}·(x + r − x_k) ≥ 0 for all r becomes

        Σ_i H⁻_{k,j,i} u_i + H⁺_{k,j,i} v_i ≤ Z_j(x_k) − H_{k,j}·n_k,

    and the LP maximises Σ(u + v) under these **hard** constraints, as the problem is defined
    (Problem 2.1 with the constraint linearised). With ``lam`` set, the constraints are softened as in
    the reference notebook: a slack s ≥ 0 is added to every right-hand side and the LP maximises
    Σ(u + v) − λ·2d·s (the notebook's λ = 1e-4 makes slack so cheap that it is bought on every image).

    With smoothing, a right-hand side can be negative (the expansion at a noisy point predicts a
    flipped decision at x); then no box satisfies the constraints, not even the empty one, and the
    image is **infeasible**: its box is reported as empty (u = v = 0, a flat map) and flagged in
    ``self.info``, never hidden. Without smoothing the empty box is always feasible (Z_j(x) > 0).

    **The right-hand side is derived here, not copied:** the reference notebook uses Z + g_j·n with the
    raw gradient of the j-th *non-c* class index (off by one for j ≥ c, and of the wrong sign), which
    the first-order expansion above does not support. Solved with HiGHS (scipy) in place of CPLEX; one
    (u, v) pair per input entry (the reference shares them over 8×8 patches of a 224-pixel image,
    which is one pixel at CIFAR's 32).

    ``attribute(inputs, target=None)`` returns −(u + v) shaped like the inputs (higher = more relevant)
    and keeps the box in ``self.upper`` (u) and ``self.lower`` (v), the slack per image in
    ``self.slack`` and, per image, ``self.info``: ``feasible``, ``status`` (HiGHS), ``slack``,
    ``max_residual`` (the largest Σ H⁻u + H⁺v − rhs over the constraints, without slack: ≤ 0 when the
    box respects every linearised constraint), ``binding`` (constraints within 1e-9 of equality),
    ``constraints`` and ``objective`` (Σ(u + v)).
    """

    def __init__(self, model, delta: float = 0.1, lam: float | None = None, noise_points: int = 0, sigma: float = 0.05,
                 seed: int = 0, progress: bool = True):
        if delta <= 0 or (lam is not None and lam < 0) or noise_points < 0 or sigma < 0:
            raise ValueError("delta must be > 0 and lam (None: hard constraints), noise_points, sigma ≥ 0")
        self.model, self.delta, self.lam, self.noise_points, self.sigma = model, delta, lam, noise_points, sigma
        self.seed, self.progress = seed, progress
        self.slack: list[float] = []
        self.info: list[dict] = []
        self.upper: torch.Tensor | None = None  # u: allowed increase per entry, after attribute()
        self.lower: torch.Tensor | None = None  # v: allowed decrease

    def attribute(self, inputs: torch.Tensor, target=None) -> torch.Tensor:
        check_inputs(inputs)
        gen = torch.Generator().manual_seed(self.seed)
        out, ups, downs, self.slack, self.info = [], [], [], [], []
        for k in tqdm(range(len(inputs)), desc="LP PertMap", disable=not self.progress):
            x = inputs[k:k + 1].detach().cpu()
            A, b = self.constraints(x, None if target is None else as_targets(target, len(inputs))[k], gen)
            u, v, info = self.solve(A, b, x.numel())
            ups.append(torch.from_numpy(u).float().view(x.shape[1:]))
            downs.append(torch.from_numpy(v).float().view(x.shape[1:]))
            out.append(-(ups[-1] + downs[-1]))
            self.slack.append(info["slack"])
            self.info.append(info)
        self.upper, self.lower = torch.stack(ups), torch.stack(downs)
        return torch.stack(out)

    def solve(self, A: np.ndarray, b: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """The LP for one image from :meth:`constraints` (rows ``[H⁻ | H⁺ | −1]``): ``(u, v, info)``."""
        from scipy.optimize import linprog

        H, rhs = A[:, :2 * d], b
        info = {"constraints": int(len(b)), "negative_rhs": int((b < 0).sum())}
        if self.lam is None:
            if (b < 0).any():  # Σ H⁻u + H⁺v ≥ 0 > rhs: no box, not even the empty one
                info.update(feasible=False, status="infeasible (a right-hand side is negative)", slack=0.0,
                            max_residual=float(-b.min()), binding=0, objective=0.0)
                return np.zeros(d), np.zeros(d), info
            res = linprog(-np.ones(2 * d), A_ub=H, b_ub=rhs, bounds=[(0, self.delta)] * (2 * d), method="highs")
            z, slack = (res.x if res.status == 0 else None), 0.0
        else:
            cost = np.concatenate([-np.ones(2 * d), [self.lam * 2 * d]])  # minimise −Σ(u+v) + λ·2d·s
            res = linprog(cost, A_ub=A, b_ub=b, bounds=[(0, self.delta)] * (2 * d) + [(0, None)], method="highs")
            z, slack = (res.x[:2 * d], float(res.x[-1])) if res.status == 0 else (None, 0.0)
        if z is None:
            if res.status == 2:  # infeasible: reported, with the empty box
                info.update(feasible=False, status=res.message, slack=0.0, max_residual=None, binding=0,
                            objective=0.0)
                return np.zeros(d), np.zeros(d), info
            raise RuntimeError(f"LP PertMap: HiGHS failed: {res.message}")
        residual = H @ z - rhs
        info.update(feasible=True, status="optimal", slack=slack, max_residual=float(residual.max()),
                    binding=int((np.abs(residual) <= 1e-9 * max(1.0, np.abs(rhs).max())).sum()), objective=float(z.sum()))
        return z[:d], z[d:], info

    def constraints(self, x: torch.Tensor, target, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``[H⁻ | H⁺ | −1]`` and right-hand sides ``Z − H·n`` for every point and class j ≠ c."""
        device = next(self.model.parameters()).device
        noise = [torch.zeros_like(x)] + [torch.randn(x.shape, generator=gen) * self.sigma for _ in range(self.noise_points)]
        points = torch.cat([x + n for n in noise]).to(device).requires_grad_(True)
        logits = self.model(points)
        c = int(logits[0].argmax()) if target is None else int(target)
        others = [j for j in range(logits.shape[1]) if j != c]
        rows, rhs = [], []
        for j in others:
            margin = logits[:, c] - logits[:, j]
            (grad,) = torch.autograd.grad(margin.sum(), points, retain_graph=True)
            H = grad.flatten(1).cpu().double().numpy()
            n = torch.cat(noise).flatten(1).double().numpy()
            rows.append(np.concatenate([np.clip(-H, 0, None), np.clip(H, 0, None), -np.ones((len(H), 1))], 1))
            rhs.append(margin.detach().cpu().double().numpy() - (H * n).sum(1))
        return np.concatenate(rows), np.concatenate(rhs)
