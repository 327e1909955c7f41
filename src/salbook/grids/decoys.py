"""The decoy-enhanced saliency grids: each function is one job of :mod:`salbook.jobs` for a batch of
CIFAR-10 test images, so the chapters split their images into batches and run them here or on a Ray
cluster, and a killed run resumes with the batches not yet done.

* :func:`decoy_study` — decoys under one setting (ℓ, ε, patch, stride): how far they move, how close
  their layer-ℓ representation stays, and the decoy-range gradient map (the sensitivity study).
* :func:`fidelity_maps` — for several base methods, the post-processed base map, decoy range, decoy
  mean and constant-perturbation range, and their saliency fidelity (Fig. 1B). The decoys of an image
  are generated once and shared by all base methods.
* :func:`attack_sensitivity` — one of Ghorbani et al.'s attacks on a base method, then the
  sensitivity of the base and the decoy-enhanced map (Fig. 3), with the box of Proposition 1; on
  request also the same attack aimed at the decoy-enhanced map (an attacker who knows the defence)
  and a random perturbation of the attack's norm (the control).
* :func:`max_sensitivity` — Quantus' MaxSensitivity of the base and the decoy-enhanced map.
* :func:`randomisation` — the cascading-randomisation sanity check of the base and the decoy-enhanced map.

``decoy`` arguments are :class:`~salbook.methods.decoys.DecoyEnhanced` keyword arguments (``layer``,
``eps``, ``patch``, ``stride``, ``steps``, ...); ``options`` those of the base method. Methods come from
the registry (:mod:`salbook.methods.registry`): ``base`` is a registered name (``gradient``,
``smoothgrad``, ``integrated_gradients``), its decoy-enhanced map ``decoy_<base>``. Every map is
post-processed (:func:`~salbook.methods.decoys.postprocess`) before it is compared or scored, and
every map explains the class given in ``targets`` (the chapters pass the predicted class).
``weights`` is the model card's ``weights_sha256``: it enters the job's cache key, so a retrained
model never reuses old results, and a job refuses to run on other weights. The jobs explain
:func:`~salbook.nets.fast_copy` of the model (batch norms folded into their convolutions,
channels-last layout: the same function up to float rounding, about 1.35× faster per gradient on a
CPU); the randomisation check, which re-initialises convolutions below their batch norms, runs on
the model itself.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .. import data, zoo
from ..nets import fast_copy
from ..methods import registry
from ..methods.decoys import DecoyEnhanced, constant_decoys, decoy_mean, decoy_range, postprocess
from ..yardsticks import sanity
from ..yardsticks.fidelity import READINGS, saliency_fidelity
from ..yardsticks.saliency_attacks import same_norm_noise, saliency_attack, sensitivity


def _setup(model: str, profile: str, weights: str, indices: list[int], targets: list[int] | None = None,
           fold: bool = True):
    if targets is not None and len(indices) != len(targets):
        raise ValueError(f"{len(indices)} images but {len(targets)} targets: give one target per image")
    trained = zoo.verified(model, profile, weights)
    net = fast_copy(trained.model) if fold else trained.model.to(memory_format=torch.channels_last)
    device = next(net.parameters()).device
    x = data.to_input(data.cifar10("test").x[list(indices)], device)
    if targets is None:
        with torch.no_grad():
            targets = net(x).argmax(1).tolist()
    return net, x, torch.as_tensor(targets)


def _enhanced(net, base: str, options: dict | None, decoy: dict, seed: int, **extra) -> DecoyEnhanced:
    """The registry's decoy-enhanced ``base`` (``decoy_gradient``, ...) with the base method's ``options``."""
    return registry.make(f"decoy_{base}", net, base_options=options, seed=seed, **{**decoy, **extra})


def _aggregate(method: DecoyEnhanced, decoys: torch.Tensor, targets: torch.Tensor, *aggregates) -> list[torch.Tensor]:
    """Each of ``aggregates`` over the decoys ``(N, D, C, H, W)`` of each image of the base maps of
    ``method`` (the maps are computed once per image)."""
    per_image = [method.decoy_maps(d, int(t))[None] for d, t in zip(decoys, targets)]
    return [torch.cat([aggregate(m) for m in per_image]) for aggregate in aggregates]


def decoy_study(model: str, profile: str, weights: str, indices: list[int], decoy: dict, seed: int = 0,
                with_map: bool = True) -> dict:
    """Decoys of the images under one setting: violation rate, ‖F_ℓ(x̃) − F_ℓ(x)‖∞ / ε per decoy,
    mean |x̃ − x| inside the patch, seconds and (``with_map``) the decoy-range gradient map, post-processed."""
    net, x, targets = _setup(model, profile, weights, indices)
    method = _enhanced(net, "gradient", None, decoy, seed)
    start = time.perf_counter()
    found = method.make_decoys(x)
    seconds = time.perf_counter() - start
    inside = found.masks[None].expand_as(found.decoys[:, :, :1]).expand_as(found.decoys)
    move = (found.decoys - x.cpu()[:, None]).abs()[inside].view(len(x), found.decoys.shape[1], -1).mean(2)
    out = {"violation_rate": found.violation_rate, "distance_over_eps": found.distance / decoy["eps"], "move": move,
           "decoys_per_image": int(found.decoys.shape[1]), "seconds": seconds}
    if with_map:
        (z,) = _aggregate(method, found.decoys, targets, decoy_range)
        out["map"] = postprocess(z)
    return out


def fidelity_maps(model: str, profile: str, weights: str, indices: list[int], targets: list[int], bases: dict,
                  decoy: dict, seed: int = 0) -> dict:
    """Post-processed maps and saliency fidelity per base method × {base, range, mean, constant}.

    ``bases`` maps a label to ``(base method name, options)``. Returns ``maps[label][variant]``
    ``(N, H, W)``, ``fidelity[reading][label][variant]`` ``(N,)`` for both readings, the violation
    rates of the optimised and the constant decoys, and seconds (decoys; maps per label).
    """
    net, x, t = _setup(model, profile, weights, indices, targets)
    device = x.device
    start = time.perf_counter()
    first = next(iter(bases.values()))
    optimised = _enhanced(net, first[0], first[1], decoy, seed).make_decoys(x)
    constant = constant_decoys(net, x, decoy.get("layer"), decoy["eps"], decoy.get("patch", 3), decoy.get("stride"))
    seconds = {"decoys": time.perf_counter() - start}
    maps = {}
    for label, (base, options) in bases.items():
        start = time.perf_counter()
        method = _enhanced(net, base, options, decoy, seed)
        plain = registry.make(base, net, **(options or {})).attribute(x, target=t.to(device))
        z_range, z_mean = _aggregate(method, optimised.decoys, t, decoy_range, decoy_mean)
        (z_constant,) = _aggregate(method, constant.decoys, t, decoy_range)
        maps[label] = {"base": postprocess(plain), "range": postprocess(z_range), "mean": postprocess(z_mean),
                       "constant": postprocess(z_constant)}
        seconds[label] = time.perf_counter() - start
    fidelity = {reading: {label: {variant: saliency_fidelity(net, x, m, target=t, reading=reading)
                                  for variant, m in per.items()} for label, per in maps.items()}
                for reading in READINGS}
    return {"maps": maps, "fidelity": fidelity, "violation_rate": {"optimised": optimised.violation_rate,
                                                                   "constant": constant.violation_rate},
            "seconds": seconds}


def attack_sensitivity(model: str, profile: str, weights: str, indices: list[int], kind: str, base: str,
                       options: dict | None, attack: dict, decoy: dict, c2: float | None, seed: int = 0,
                       control: bool = False, adaptive: int | None = None) -> dict:
    """Ghorbani et al.'s attack ``kind`` on the map of ``base``, then SS = ‖E(x) − E(x̂)‖ / ‖x − x̂‖ of
    the post-processed base map and decoy-range map, per image (NaN where the attack found nothing).

    ``attack``: :func:`~salbook.yardsticks.saliency_attacks.saliency_attack` options (``eps``,
    ``step_size``, ``steps``); the attacked map is the scored one: the attack differentiates the base
    method built with ``options`` (IG's nodes, SmoothGrad's samples, noise and seed). ``c2``: C₂ of
    Proposition 1; the decoys of x and of x̂ are then kept in the box |x̃ − x| ≤ C₂·δ with
    δ = |E(x̂) − E(x)| (post-processed base maps, the same for every colour channel); ``None``: no box.

    ``control``: also score x + r, r random with the attack's L2 norm per image
    (:func:`~salbook.yardsticks.saliency_attacks.same_norm_noise`; its box from its own δ) — how much
    each map moves without an attack. ``adaptive``: also run the same attack on the decoy-enhanced
    map (an attacker who knows the defence), through the surrogate of
    :func:`~salbook.yardsticks.saliency_attacks.decoy_range_saliency` on ``adaptive`` decoys drawn
    (seeded) from the 2n box-free decoys of x; both maps are then scored at its x̂, with the decoys
    solved afresh in the box of its own δ. Each of ``"control"`` and ``"adaptive"`` has the keys
    ``base``, ``decoy`` (SS per image) and ``moved``. All decoys are solved in one batch.
    """
    net, x, _ = _setup(model, profile, weights, indices)
    explainer = registry.make(base, net, **(options or {}))
    start = time.perf_counter()
    found = saliency_attack(explainer, x, kind, progress=False, **attack)
    seconds = {"attack": time.perf_counter() - start}
    label = found.label

    def plain(inputs):
        return postprocess(explainer.attribute(inputs, target=label.to(x.device)))

    perturbed = {"attack": found.adversarial.to(x.device)}
    if control:
        perturbed["control"] = same_norm_noise(x.cpu(), found.adversarial, seed).to(x.device)
    if adaptive:
        start = time.perf_counter()
        free = _enhanced(net, base, options, decoy, seed).make_decoys(x)  # the defence at x, no box
        pick = torch.randperm(free.decoys.shape[1], generator=torch.Generator().manual_seed(seed))[:adaptive]
        offsets = free.decoys[:, pick] - x.cpu()[:, None]
        adapted = saliency_attack(explainer, x, kind, progress=False, decoy_offsets=offsets, **attack)
        perturbed["adaptive"] = adapted.adversarial.to(x.device)
        seconds["adaptive attack"] = time.perf_counter() - start
    e_x = plain(x)
    e = {name: plain(xs) for name, xs in perturbed.items()}
    boxes = [None if c2 is None else (c2 * (e[name] - e_x).abs())[:, None].to(x.device).repeat(2, 1, 1, 1)
             for name in perturbed]
    box = None if c2 is None else torch.cat(boxes)
    method = _enhanced(net, base, options, decoy, seed, box=box)
    start = time.perf_counter()
    # the decoys of x and of each x̂ (each pair in the box of its own δ) in one batch: each image's
    # decoys and map do not depend on the others
    batch = torch.cat([t for xs in perturbed.values() for t in (x, xs)])
    z = postprocess(method.attribute(batch, target=label.repeat(2 * len(perturbed)))).chunk(2 * len(perturbed))
    seconds["decoy"] = time.perf_counter() - start
    out = {}
    for j, (name, xs) in enumerate(perturbed.items()):
        z_x, z_s = z[2 * j], z[2 * j + 1]
        out[name] = {"base": sensitivity(e_x, e[name], x.cpu(), xs.cpu()), "decoy": sensitivity(z_x, z_s, x.cpu(), xs.cpu()),
                     "moved": (xs.cpu() != x.cpu()).flatten(1).any(1)}
        if name == "attack":
            maps = {"base": e_x, "base_adversarial": e[name], "decoy": z_x, "decoy_adversarial": z_s}
    attack_out = out.pop("attack")
    return {**attack_out, **out, "maps": maps, "adversarial": found.adversarial, "label": label,
            "objective_gain": found.objective - found.start,
            "violation_rate": method.decoy_set.violation_rate,  # of all decoys of x and of every x̂
            "seconds": seconds}


def max_sensitivity(model: str, profile: str, weights: str, indices: list[int], targets: list[int], bases: dict,
                    decoy: dict, nr_samples: int, radius: float, seed: int = 0) -> dict:
    """Quantus' MaxSensitivity (Yeh et al. 2019): max over ``nr_samples`` uniform perturbations in
    [−radius, radius] of ‖E(x) − E(x')‖ / ‖E(x)‖ (Frobenius norms), for the post-processed base and
    decoy-range maps of each of ``bases`` (label → (base method, options)). The perturbed images are
    clipped to [0, 1] before they are explained (Quantus does not clip; our methods require images).
    Quantus draws the same perturbations for every method (its noise comes from NumPy's global
    generator, seeded before each), so the decoys of each perturbed image are solved once and shared
    by the base methods. Returns ``{label: {"base": (N,), "decoy": (N,), "seconds": {...}}}``."""
    import quantus

    net, x, t = _setup(model, profile, weights, indices, targets)
    device = x.device
    cache: dict = {}
    out = {}
    for label, (base, options) in bases.items():
        methods = {"base": registry.make(base, net, **(options or {})),
                   "decoy": _enhanced(net, base, options, decoy, seed, cache=cache)}
        out[label] = {"seconds": {}}
        for name, method in methods.items():
            def explain(model, inputs, targets, method=method, **kwargs):
                inputs = torch.as_tensor(np.asarray(inputs), dtype=torch.float32, device=device).clamp(0, 1)
                maps = method.attribute(inputs, target=torch.as_tensor(np.asarray(targets)).to(device))
                return postprocess(maps)[:, None].numpy()

            np.random.seed(seed)  # Quantus draws its noise from NumPy's global generator
            metric = quantus.MaxSensitivity(nr_samples=nr_samples, lower_bound=radius, disable_warnings=True,
                                            display_progressbar=False)
            start = time.perf_counter()
            scores = metric(model=net, x_batch=x.cpu().numpy(), y_batch=t.numpy(), a_batch=None, explain_func=explain,
                            device=str(device), batch_size=len(x))
            out[label][name] = torch.as_tensor(np.asarray(scores, dtype=np.float64))
            out[label]["seconds"][name] = time.perf_counter() - start
    return out


def randomisation(model: str, profile: str, weights: str, indices: list[int], targets: list[int], base: str,
                  options: dict | None, decoy: dict, seed: int = 0) -> dict:
    """Cascading randomisation (Adebayo et al. 2018) of the post-processed base and decoy-range maps:
    per stage, the layer down to which weights are random and the similarities to the trained model's
    maps (``base``, ``decoy``: the mean over images per stage; ``base_per_image``, ``decoy_per_image``:
    each image's values per stage, for intervals). The decoys depend only on F_ℓ: they are solved again
    only at the stages that changed it."""
    net, x, t = _setup(model, profile, weights, indices, targets, fold=False)
    device = x.device
    cache: dict = {}

    def base_maps(m, inputs, targets):
        return postprocess(registry.make(base, m, **(options or {})).attribute(inputs, target=targets))

    def decoy_maps(m, inputs, targets):
        return postprocess(_enhanced(m, base, options, decoy, seed, cache=cache).attribute(inputs, target=targets))

    out = {}
    for name, explain in (("base", base_maps), ("decoy", decoy_maps)):
        start = time.perf_counter()
        rows = sanity.cascading_randomisation(net, x, t.to(device), explain, seed=seed, per_image=True)
        out[name] = [{k: (v if isinstance(v, str) else float(v)) for k, v in row.items() if k != "per_image"}
                     for row in rows]
        out[f"{name}_per_image"] = [{k: [float(a) for a in v] for k, v in row["per_image"].items()} for row in rows]
        out[f"{name}_seconds"] = time.perf_counter() - start
    out["decoy_solves"] = len(cache)
    return out
