"""The ROAR / KAR grid: attribution maps of a trained model, then one retraining per
(method, fraction, ROAR or KAR, seed). Each function is one job of :mod:`salbook.jobs`.

Maps explain the class the trained model *predicts* (Hooker et al.), for every training and test
image; they are computed once per method and cached by the job layer. The training images are those
the zoo recipe trains on under the profile (its seeded ``train_size`` subset, or the whole training
set); ``test_size`` keeps the first test images only (``None``: all; smoke runs: 500).
"""
from __future__ import annotations

import dataclasses
import time

import torch
from tqdm.auto import tqdm

from .. import config, data, nets, zoo
from ..jobs import Job, cached
from ..methods import baselines
from ..yardsticks import roar

RANDOM = "random"


def attribution_maps(dataset: str, model: str, profile: str, method: str, split: str, options: dict | None = None,
                     test_size: int | None = None, batch_size: int = 500) -> dict:
    """Signed maps of ``method`` (a :mod:`~salbook.methods.baselines` name) for the predicted class,
    and the seconds they took."""
    net = zoo.get(model, profile).model
    t0 = time.perf_counter()
    images = _split(dataset, model, profile, split, test_size)
    explainer = baselines.make(method, net, **(options or {}))
    device = next(net.parameters()).device
    maps = []
    for start in tqdm(range(0, len(images), batch_size), desc=f"{method} maps ({split})", disable=len(images) <= batch_size):
        x = data.to_input(images.x[start:start + batch_size], device)
        with torch.no_grad():
            target = net(x).argmax(1)
        maps.append(explainer.attribute(x, target=target).float())
    return {"maps": torch.cat(maps), "seconds": time.perf_counter() - t0}


def retrain(dataset: str, model: str, profile: str, method: str, fraction: float, keep: bool, seed: int,
            options: dict | None = None, transform: str = "square", per: str = "channel",
            random_mask: str = "fixed", test_size: int | None = None) -> dict:
    """One ROAR (``keep=False``) or KAR (``keep=True``) retraining; returns its test accuracy.

    ``method="random"`` ranks at random: ``random_mask="fixed"`` draws one ranking per image,
    ``"resampled"`` a new one for every training batch of every epoch (the released code's behaviour).
    """
    if random_mask not in ("fixed", "resampled"):
        raise ValueError(f"unknown random_mask {random_mask!r}: choose 'fixed' or 'resampled'")
    recipe = dataclasses.replace(zoo.recipe(model), seed=seed)
    device = config.default_device()
    splits = {s: _split(dataset, model, profile, s, test_size) for s in ("train", "test")}
    x = {s: data.to_input(d.x, device) for s, d in splits.items()}
    fill = x["train"].mean((0, 2, 3))
    transform_batch = None
    for s in ("train", "test"):
        if method == RANDOM:
            scores = roar.random_scores(_score_shape(x[s], per), seed=2 * seed + (s == "test"))
            if s == "train" and random_mask == "resampled":
                transform_batch = _resampled(fraction, keep, fill, per, seed)
                continue
        else:
            maps = cached(Job(attribution_maps, {"dataset": dataset, "model": model, "profile": profile,
                                                 "method": method, "split": s, "options": options,
                                                 "test_size": test_size}))["maps"]
            scores = roar.ranking_scores(maps, transform, per)
        x[s] = roar.modify(x[s], scores.to(device), fraction, keep=keep, fill=fill, seed=seed)
    y = {s: torch.from_numpy(d.y).to(device) for s, d in splits.items()}
    torch.manual_seed(seed)
    net = nets.build(recipe.architecture).to(device)
    zoo.init_preprocessing(net, x["train"])
    seconds = zoo.fit(net, x["train"], y["train"], recipe, recipe.epochs[profile], transform=transform_batch,
                      progress=False)
    with torch.no_grad():
        test_acc = (zoo.predict_proba(net, x["test"]).argmax(1) == y["test"].cpu()).float().mean().item()
    return {"test_acc": test_acc, "seconds": seconds, "device": config.device_name(device)}


def _split(dataset: str, model: str, profile: str, split: str, test_size: int | None) -> data.Split:
    """The images of ``split`` the grid uses (see the module docstring)."""
    d = data.load(dataset, split)
    if split == "train":
        r = zoo.recipe(model)
        n = r.train_size[profile]
        if n is None:
            return d
        idx = zoo.split_indices(len(d.y), r.val_size, r.seed)[0][:n]
        return data.Split(d.x[idx], d.y[idx], d.source)
    n = test_size if test_size is not None else 500 if profile == "smoke" else None
    return data.Split(d.x[:n], d.y[:n], d.source)


def _score_shape(x: torch.Tensor, per: str) -> tuple:
    return (x.shape[0], 1 if per == "pixel" else x.shape[1], *x.shape[2:])


def _resampled(fraction: float, keep: bool, fill: torch.Tensor, per: str, seed: int):
    """A ``fit`` transform that draws a fresh random ranking for every batch of every epoch."""
    def transform(inputs, indices, epoch):
        step_seed = (seed * 1_000_003 + epoch * 100_003 + int(indices[0])) % 2**31
        scores = roar.random_scores(_score_shape(inputs, per), step_seed).to(inputs.device)
        return roar.modify(inputs, scores, fraction, keep=keep, fill=fill, seed=step_seed)
    return transform
