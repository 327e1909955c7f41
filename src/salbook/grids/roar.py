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
from ..methods import baselines
from ..yardsticks import properties, roar

RANDOM = "random"
SMOOTHGRAD_FAMILY = ("smoothgrad", "smoothgrad_sq", "vargrad")  # statistics of one set of noisy gradients


def attribution_maps(dataset: str, model: str, profile: str, method: str, split: str, options: dict | None = None,
                     train_size: int | None = None, test_size: int | None = None, weights: str | None = None,
                     batch_size: int = 64) -> dict:
    """Signed maps of ``method`` (a :mod:`~salbook.methods.baselines` name) for the predicted class,
    and the seconds they took (for the SmoothGrad family: the seconds of the shared noisy gradients).
    ``weights``: the SHA-256 of the model's weights (its card's), so that a retrained model gets new jobs."""
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
    explainer = baselines.make(method, net, **(options or {}))
    maps = []
    for x, target in _batches(net, chosen, batch_size, f"{method} maps ({split})"):
        maps.append(explainer.attribute(x, target=target).float())
    return {"maps": torch.cat(maps), "seconds": time.perf_counter() - t0}


def noisy_gradient_moments(dataset: str, model: str, profile: str, split: str, samples: int = 15, noise: float = 0.15,
                           train_size: int | None = None, test_size: int | None = None, weights: str | None = None,
                           seed: int = 0, rows: int = 64) -> dict:
    """Mean and mean square over ``samples`` noisy gradients per image (σ = ``noise``), for the predicted
    class: SmoothGrad is the mean, SmoothGrad-squared the mean square, VarGrad their difference
    ``mean_sq − mean²`` (Captum's ``NoiseTunnel`` statistics). Forwards of about ``rows`` noisy copies."""
    net = _explained(model, profile, weights)
    t0 = time.perf_counter()
    chosen = images(dataset, model, profile, split, train_size, test_size)
    gen = torch.Generator().manual_seed(seed)
    mean, mean_sq = [], []
    for x, target in _batches(net, chosen, max(1, rows // samples), f"noisy gradients ({split})"):
        g = properties.noisy_gradients(net, x, target, samples, noise, generator=gen)
        mean.append(g.mean(1))
        mean_sq.append(g.square().mean(1))
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

    ``method="random"`` ranks at random: ``random_mask="fixed"`` draws one mask per image (seeded by
    ``seed`` and the split), ``"resampled"`` a new one for every training batch of every epoch (the
    released code's behaviour). ``fraction=0`` with ``keep=False`` is the unmodified data. ``weights``:
    the explained model's SHA-256, as for :func:`attribution_maps`.
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
    transform_batch = None
    for s in ("train", "test"):
        if method == RANDOM and s == "train" and random_mask == "resampled":
            transform_batch = _resampled(fraction, keep, fill, per, seed)
            continue
        if method == RANDOM:
            top = roar.random_mask(_score_shape(x[s], per), fraction, seed=2 * seed + (s == "test"))
        else:
            top = roar.mask_from_ranks(cached(Job(ranking, dict(
                dataset=dataset, model=model, profile=profile, method=method, split=s, options=options,
                transform=transform, per=per, train_size=train_size, test_size=test_size, weights=weights)))["ranks"],
                fraction)
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
    trained = zoo.get(model, profile)
    if weights is not None and trained.card["weights_sha256"] != weights:
        raise ValueError(f"{model} ({profile}) has weights {trained.card['weights_sha256'][:12]}…, but the job was "
                         f"built for {weights[:12]}…: rebuild the grid from zoo.get(...).card['weights_sha256']")
    return trained.model


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


def _score_shape(x: torch.Tensor, per: str) -> tuple:
    return (x.shape[0], 1 if per == "pixel" else x.shape[1], *x.shape[2:])


def _resampled(fraction: float, keep: bool, fill: torch.Tensor, per: str, seed: int):
    """A ``fit`` transform that draws a fresh random mask for every batch of every epoch."""
    def transform(inputs, indices, epoch):
        step_seed = (seed * 1_000_003 + epoch * 100_003 + int(indices[0])) % 2**31
        return roar.replace(inputs, roar.random_mask(_score_shape(inputs, per), fraction, step_seed).to(inputs.device),
                            keep, fill)
    return transform
