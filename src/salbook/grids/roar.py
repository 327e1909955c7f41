"""The ROAR / KAR grid: attribution maps of a trained model, their rankings, then one retraining per
(method, fraction, ROAR or KAR, seed). Each function is one job of :mod:`salbook.jobs`.

Maps explain the class the trained model *predicts* (Hooker et al.), for every training and test
image of the grid; they are computed once per method and cached by the job layer. SmoothGrad,
SmoothGrad-squared and VarGrad are three statistics of the same noisy gradients, so one job draws
them once (seeded) for all three. Each map's ranking is a cached job too, with its ties broken once:
every retraining of a method and t sees the same modified images, as in Hooker et al., who build one
modified data set per method and t and retrain it with several seeds.

Images: the grid trains on the first ``train_size`` images of the zoo recipe's seeded training order
(``None``: the images the zoo model was trained on under the profile) and tests on the first
``test_size`` test images (the data layer stores the test set in a seeded order, so a prefix mixes
the classes; ``None``: all; smoke runs: 500). Retrainings use the zoo recipe, with ``recipe``
overriding some of its fields and ``epochs`` its length where given. Every job takes the explained
model's ``weights`` (the SHA-256 on its card): a retrained zoo model then gets new jobs, never the
cached results of the old one.
"""
from __future__ import annotations

import dataclasses
import functools
import time

import torch
from tqdm.auto import tqdm

from .. import config, data, nets, zoo
from ..jobs import Job, cached
from ..methods import gradients, registry
from ..yardsticks import roar

SMOOTHGRAD_FAMILY = ("smoothgrad", "smoothgrad_sq", "vargrad")  # statistics of one set of noisy gradients


def attribution_maps(dataset: str, model: str, profile: str, method: str, split: str, options: dict | None = None,
                     train_size: int | None = None, test_size: int | None = None, weights: str | None = None,
                     batch_size: int = 64) -> dict:
    """Maps of ``method`` (a :mod:`~salbook.methods.registry` name; ``"random"`` is Hooker et al.'s random
    ranking) for the predicted class, and the seconds they took (for the SmoothGrad family: the seconds
    of the shared noisy gradients). ``weights``: the SHA-256 of the model's weights (its card's), so that
    a retrained model gets new jobs."""
    if method in SMOOTHGRAD_FAMILY:
        opts = {"samples": 15, "noise": 0.15, **(options or {})}
        moments = cached(Job(noisy_gradient_moments, dict(dataset=dataset, model=model, profile=profile, split=split,
                                                         train_size=train_size, test_size=test_size, weights=weights,
                                                         **opts)))
        mean, mean_sq = moments["mean"], moments["mean_sq"]
        maps = {"smoothgrad": mean, "smoothgrad_sq": mean_sq, "vargrad": mean_sq - mean.square()}[method]
        return {"maps": maps, "seconds": moments["seconds"]}
    net = _explained(model, profile, weights)
    t0 = time.perf_counter()
    chosen = images(dataset, model, profile, split, train_size, test_size)
    inputs = data.to_input(chosen.x, next(net.parameters()).device)
    maps = registry.explain(registry.make(method, net, **(options or {})), inputs, batch_size=batch_size,
                            progress=f"{method} maps ({split})")
    return {"maps": maps.float(), "seconds": time.perf_counter() - t0}


def noisy_gradient_moments(dataset: str, model: str, profile: str, split: str, samples: int = 15, noise: float = 0.15,
                           train_size: int | None = None, test_size: int | None = None, weights: str | None = None,
                           seed: int = 0, rows: int = 64) -> dict:
    """Mean and mean square over ``samples`` noisy gradients per image (σ = ``noise``), for the predicted
    class: SmoothGrad is the mean, SmoothGrad-squared the mean square, VarGrad their difference
    ``mean_sq − mean²`` (Captum's ``NoiseTunnel`` statistics). The noisy gradients are
    :func:`salbook.methods.gradients.noisy_gradients` with ``seed``: the registry's three methods with
    the same ``samples``, ``noise`` and ``seed`` give these maps. Forwards of about ``rows`` noisy copies."""
    net = _explained(model, profile, weights)
    t0 = time.perf_counter()
    chosen = images(dataset, model, profile, split, train_size, test_size)
    mean, mean_sq = [], []
    for x, target in _batches(net, chosen, max(1, rows // samples), f"noisy gradients ({split})"):
        g = gradients.noisy_gradients(net, x, target, samples, noise, seed, rows=rows)
        mean.append(g.mean(1).cpu())
        mean_sq.append(g.square().mean(1).cpu())
    return {"mean": torch.cat(mean), "mean_sq": torch.cat(mean_sq), "seconds": time.perf_counter() - t0}


def ranking(dataset: str, model: str, profile: str, method: str, split: str, options: dict | None = None,
            transform: str = "square", per: str = "channel", train_size: int | None = None,
            test_size: int | None = None, weights: str | None = None) -> dict:
    """The rank of every entry (0 = highest) of each map after ``transform`` (and summing over channels
    if ``per="pixel"``), ties broken in one seeded order; int16 where the image is small enough."""
    maps = cached(Job(attribution_maps, dict(dataset=dataset, model=model, profile=profile, method=method, split=split,
                                             options=options, train_size=train_size, test_size=test_size,
                                             weights=weights)))["maps"]
    rank = roar.ranks(roar.ranking_scores(maps, transform, per), seed=0)
    return {"ranks": rank.to(torch.int16) if rank[0].numel() <= torch.iinfo(torch.int16).max else rank}


def retrain(dataset: str, model: str, profile: str, method: str, fraction: float, keep: bool, seed: int,
            options: dict | None = None, transform: str = "square", per: str = "channel",
            random_mask: str = "fixed", train_size: int | None = None, test_size: int | None = None,
            weights: str | None = None, epochs: int | None = None, recipe: dict | None = None) -> dict:
    """One ROAR (``keep=False``) or KAR (``keep=True``) retraining: its test accuracy, which test images
    it classified correctly (for bootstraps over images), its training seconds and device.

    Every method, the random control (``method="random"``) included, ranks each image once
    (:func:`ranking`): one modified data set per method and t, retrained with several seeds.
    ``random_mask="resampled"`` instead draws the training images' maps afresh for every batch of every
    epoch, from the method built with a new ``seed`` option per batch: for the random control that is
    a new random mask each time, the behaviour of Hooker et al.'s released code (it acts like dropout
    augmentation); the test images keep their one ranking. ``fraction=0`` with ``keep=False`` is the
    unmodified data. ``weights``: the explained model's SHA-256, as for :func:`attribution_maps`.
    """
    if random_mask not in ("fixed", "resampled"):
        raise ValueError(f"unknown random_mask {random_mask!r}: choose 'fixed' or 'resampled'")
    if per not in roar.GRANULARITY:
        raise ValueError(f"unknown granularity {per!r}: choose one of {roar.GRANULARITY}")
    r = dataclasses.replace(zoo.recipe(model), seed=seed, **(recipe or {}))
    device = config.default_device()
    splits = {s: images(dataset, model, profile, s, train_size, test_size) for s in ("train", "test")}
    x = {s: data.to_input(d.x, device) for s, d in splits.items()}
    fill = x["train"].mean((0, 2, 3))
    ranked = dict(dataset=dataset, model=model, profile=profile, method=method, options=options, transform=transform,
                  per=per, train_size=train_size, test_size=test_size, weights=weights)
    transform_batch = None
    for s in ("train", "test"):
        if s == "train" and random_mask == "resampled":
            explained = _explained(model, profile, weights)
            transform_batch = _resampled(method, explained, options, fraction, keep, fill, transform, per, seed)
            continue
        top = roar.mask_from_ranks(cached(Job(ranking, dict(ranked, split=s)))["ranks"], fraction)
        x[s] = roar.replace(x[s], top.to(device), keep, fill)
    y = {s: torch.from_numpy(d.y).to(device) for s, d in splits.items()}
    torch.manual_seed(seed)
    net = nets.build(r.architecture).to(device)
    zoo.init_preprocessing(net, x["train"])
    seconds = zoo.fit(net, x["train"], y["train"], r, r.epochs[profile] if epochs is None else epochs,
                      transform=transform_batch, progress=False)
    correct = zoo.predict_proba(net, x["test"], batch_size=64).argmax(1) == y["test"].cpu()
    return {"test_acc": correct.float().mean().item(), "test_correct": correct.to(torch.uint8), "seconds": seconds,
            "device": config.device_name(device)}


def _explained(model: str, profile: str, weights: str | None) -> torch.nn.Module:
    """The zoo model whose maps the grid tests, checked against the weights the job was asked for."""
    return (zoo.get(model, profile) if weights is None else zoo.verified(model, profile, weights)).model


@functools.lru_cache(maxsize=4)
def images(dataset: str, model: str, profile: str, split: str, train_size: int | None = None,
           test_size: int | None = None) -> data.Split:
    """The images of ``split`` the grid uses (see the module docstring), kept in memory for the next
    job of the same process: the arrays are shared, so callers copy them (``data.to_input``) and
    never modify them."""
    d = data.load(dataset, split)
    if split == "train":
        r = zoo.recipe(model)
        n = train_size if train_size is not None else r.train_size[profile]
        idx = zoo.split_indices(len(d.y), r.val_size, r.seed)[0][:n]
        return data.Split(d.x[idx], d.y[idx], d.source)
    n = test_size if test_size is not None else 500 if profile == "smoke" else None
    return data.Split(d.x[:n], d.y[:n], d.source)


def _batches(net: torch.nn.Module, images: data.Split, batch_size: int, desc: str):
    """Model inputs in batches of ``batch_size`` images with the class ``net`` predicts for each."""
    device = next(net.parameters()).device
    for start in tqdm(range(0, len(images), batch_size), desc=desc, disable=len(images) <= batch_size, mininterval=5):
        x = data.to_input(images.x[start:start + batch_size], device)
        with torch.no_grad():
            target = net(x).argmax(1)
        yield x, target  # outside no_grad: the caller takes gradients


def _resampled(method: str, explained: torch.nn.Module, options: dict | None, fraction: float, keep: bool,
               fill: torch.Tensor, transform: str, per: str, seed: int):
    """A ``fit`` transform that ranks every batch of every epoch by a fresh map of ``method``, built with a
    ``seed`` option of its own per batch."""
    def transform_batch(inputs, indices, epoch):
        step_seed = (seed * 1_000_003 + epoch * 100_003 + int(indices[0])) % 2**31
        maps = registry.make(method, explained, **{**(options or {}), "seed": step_seed}).attribute(inputs)
        top = roar.top_mask(roar.ranking_scores(maps, transform, per), fraction)
        return roar.replace(inputs, top.to(inputs.device), keep, fill)
    return transform_batch
