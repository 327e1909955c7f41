"""The model zoo: named recipes, trained on demand and cached, or loaded from committed checkpoints.

A recipe is an architecture, a dataset, a training recipe and a seed. ``get(name, profile)`` returns
the trained network from the first of:

1. the data cache ``data/models/<name>-<profile>-<key>.pt`` (``key``: a hash of the recipe, the
   profile and the training-loop version);
2. a committed checkpoint ``checkpoints/<profile>/<name>.pt`` whose card names the same key (the
   canonical ``cpu`` models ship with the project so that the book builds in minutes; ``SALBOOK_RETRAIN=1``
   or ``make book RETRAIN=1`` skips them);
3. training it here, then caching it.

Every weights file has a JSON card beside it (accuracies, training seconds, device, data source,
git commit, the recipe itself and the SHA-256 of the weights). The card is tied to its weights: a
file whose hash differs from its card's is refused (a cache entry is retrained, a checkpoint stops
with an error that says how to restore it). Weights load with ``torch.load(weights_only=True)``.

Profiles change how long a recipe trains (``epochs``, ``train_size``), never what it is.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import config, data, nets, timings
from .attacks import pgd_l2
from .results import git_commit
from .storage import atomic_path, content_hash, sha256_file, write_json

CARD_VERSION = 2  # bump when the training loop changes in a way that changes the weights
# test images a card's test accuracy is measured on (None: all); the mirrors come in a seeded random
# order, so a prefix is a random sample. smoke models are only for tests, which need it fast.
TEST_SIZE = {"smoke": 1000}


@dataclass(frozen=True)
class Recipe:
    """How to train one zoo model. Per-profile values are dicts keyed by profile name."""

    name: str
    dataset: str
    architecture: str
    epochs: dict
    train_size: dict  # training images used (None: all but the validation hold-out)
    val_size: int = 5000
    batch_size: int = 128
    optimizer: str = "adam"  # "adam", or "sgd" (momentum 0.9, Nesterov unless nesterov=False)
    lr: float = 1e-3  # peak learning rate, cosine-decayed to 0 over training unless schedule="constant"
    weight_decay: float = 0.0
    augment: bool = False  # random crop (zero padding 4) and horizontal flip, batched on the device
    seed: int = 0  # seeds the weights, the data order, dropout and the validation split
    nesterov: bool = True
    schedule: str = "cosine"  # "cosine", "constant" or "onecycle" (see lr_factor)
    label_smoothing: float = 0.0
    permute_labels: bool = False  # train on a seeded permutation of the labels (a sanity-check model)
    adversarial: dict | None = None  # pgd_l2 arguments (eps, steps, step_size, random_start): train on its examples
    notes: str = ""
    paper: dict = field(default_factory=dict)  # the paper's reported numbers, for comparison only


# The cpu profile's shared CIFAR-10 network, and the same recipe with an adversary (the robust pair).
_RESNET8 = Recipe(
    name="cifar-resnet8",
    dataset="cifar10",
    architecture="cifar_resnet8",
    epochs={"smoke": 1, "cpu": 10, "full": 30},
    train_size={"smoke": 1000, "cpu": None, "full": None},
    val_size=0, batch_size=256, optimizer="sgd", lr=0.2, weight_decay=5e-4, augment=True, schedule="onecycle",
    notes="The cpu profile's shared CIFAR-10 network: ResNet-8 on all 50,000 training images, 10 epochs, SGD "
    "(Nesterov, peak lr 0.2, one-cycle, weight decay 5e-4, batch 256), crop + flip. It stands in for ResNet-50 "
    "(MPE chapters), for VGG16 (decoy chapters) and is the standard model of the robust-counterfactuals chapter.",
)


RECIPES = {
    r.name: r
    for r in [
        Recipe(
            name="mnist-cnn2",
            dataset="mnist",
            architecture="mnist_cnn2",
            epochs={"smoke": 1, "cpu": 2, "full": 12},
            train_size={"smoke": 2000, "cpu": None, "full": None},
            lr=2e-3, schedule="onecycle",
            notes="MPE paper §3.1. Adam (peak lr 2e-3, one-cycle, batch 128) in place of the unspecified optimiser; "
            "the last 5,000 of a seeded permutation of the training set are held out for validation.",
            paper={"train_acc": 0.9874, "val_acc": 0.9920, "test_acc": 0.9922},
        ),
        Recipe(
            name="cifar-cnn4",
            dataset="cifar10",
            architecture="cifar_cnn4",
            epochs={"smoke": 1, "cpu": 10, "full": 60},
            train_size={"smoke": 2000, "cpu": None, "full": None},
            batch_size=256, lr=2e-3, augment=True, schedule="onecycle",
            notes="MPE paper §4.1 '4-layers CNN', in place of its unspecified recipe: Adam (peak lr 2e-3, one-cycle, "
            "batch 256), crop + flip augmentation, 45,000 training images (5,000 held out). Also the cpu profile's "
            "stand-in for VGG16 in the PertMap chapters and the CIFAR-10 network of the method gallery.",
            paper={"test_acc": 0.8019},
        ),
        Recipe(
            name="cifar-resnet50",
            dataset="cifar10",
            architecture="cifar_resnet50",
            epochs={"smoke": 1, "cpu": 15, "full": 20},
            train_size={"smoke": 1000, "cpu": None, "full": None},
            optimizer="sgd", lr=0.1, weight_decay=5e-4, augment=True,
            notes="MPE paper §4.1 ResNet50 'trained with pixel-means subtracted' (mean image inside the "
            "model). SGD (Nesterov, lr 0.1, cosine, weight decay 5e-4, batch 128), crop + flip.",
            paper={"test_acc": 0.8602},
        ),
        Recipe(
            name="mnist-lenet",
            dataset="mnist",
            architecture="mnist_lenet",
            epochs={"smoke": 1, "cpu": 10, "full": 10},
            train_size={"smoke": 2000, "cpu": None, "full": None},
            val_size=0, batch_size=64, optimizer="sgd", lr=1e-3, nesterov=False, schedule="constant",
            notes="ROAR thesis §5.1.1: SGD (lr 1e-3, momentum 0.9, constant), batch 64, 10 epochs, the whole "
            "60,000-image training set. The model whose maps the MNIST ROAR chapter tests (and its clean-accuracy "
            "claim); the chapter's cpu grid retrains with a faster recipe of its own, stated there.",
            paper={"test_acc": 0.974, "test_acc_sd_over_5_seeds": 0.004},
        ),
        _RESNET8,
        dataclasses.replace(
            _RESNET8,
            name="cifar-resnet8-l2robust",
            adversarial={"eps": 0.5, "steps": 3, "step_size": 2.5 * 0.5 / 3, "random_start": True},
            notes="Robust-counterfactuals chapter: cifar-resnet8 (same network, data, schedule and seed) trained only "
            "on L2 PGD examples (Madry et al. 2018) at eps = 0.5 in [0, 1] pixel space, a fast recipe: 3 steps of "
            "2.5·eps/3 with a random start on the augmented batch (MadryLab's robustness library uses 7).",
            paper={"anchor": "MadryLab robustness, CIFAR-10 ResNet-50 trained at L2 eps 0.5, PGD-20 accuracy",
                   "clean_acc": 0.9083, "pgd_acc_eps_0.25": 0.8234, "pgd_acc_eps_0.5": 0.7017, "pgd_acc_eps_1.0": 0.4047},
        ),
        Recipe(
            name="cifar-resnet8-roar",
            dataset="cifar10",
            architecture="cifar_resnet8",
            epochs={"smoke": 1, "cpu": 3, "full": 10},
            train_size={"smoke": 500, "cpu": 1500, "full": None},
            val_size=0, optimizer="sgd", lr=0.1, weight_decay=5e-4, schedule="onecycle",
            notes="ROAR chapter, cpu profile: stands in for Hooker et al.'s ResNet-50 so that one retraining takes "
            "about ten seconds on one CPU thread (the chapter runs over thirty): ResNet-8 on the first 1,500 images "
            "of the seeded training order, 3 epochs, SGD (Nesterov, peak lr 0.1, one-cycle, weight decay 5e-4, "
            "batch 128), no augmentation (in pilots of a few epochs on a few thousand images, crop + flip cost "
            "accuracy). The model whose maps are tested and every retraining use this recipe.",
        ),
        Recipe(
            name="mnist-cnn2-permuted",
            dataset="mnist",
            architecture="mnist_cnn2",
            epochs={"smoke": 2, "cpu": 40, "full": 100},
            train_size={"smoke": 500, "cpu": 500, "full": None},
            batch_size=32, permute_labels=True,
            notes="Adebayo et al.'s data-randomisation test: mnist-cnn2 trained on permuted training labels until "
            "it memorises them (their criterion: > 95 % training accuracy). The cpu profile memorises a "
            "500-image subset (40 epochs of batch 32: under a minute on one CPU thread); the test needs a network "
            "that has learned noise, not a large training set.",
        ),
        Recipe(
            name="cifar-vgg16bn",
            dataset="cifar10",
            architecture="cifar_vgg16_bn",
            epochs={"smoke": 1, "cpu": 15, "full": 40},
            train_size={"smoke": 1000, "cpu": None, "full": None},
            optimizer="sgd", lr=0.05, weight_decay=5e-4, augment=True,
            notes="PertMap chapter: stands in for the ImageNet VGG16 of Ikeno & Hara (2018). SGD "
            "(Nesterov, lr 0.05, cosine, weight decay 5e-4, batch 128), crop + flip.",
        ),
        Recipe(
            name="bam-object",
            dataset="bam-object",  # data.load builds the BAM-style set (data.BAM_DATASETS)
            architecture="cifar_resnet8",
            epochs={"smoke": 1, "cpu": 4, "full": 30},
            train_size={"smoke": 500, "cpu": 12000, "full": None},
            val_size=0, optimizer="sgd", lr=0.1, weight_decay=5e-4,
            notes="BAM chapter (Yang & Kim 2019): MNIST digits pasted into CIFAR-10 scenes, the digit as label. "
            "Same images, network and recipe as bam-scene: ResNet-8, SGD (Nesterov, lr 0.1, cosine, weight decay "
            "5e-4, batch 128), no augmentation (a mirrored digit is another digit). cpu: 12,000 images, 4 epochs.",
        ),
        Recipe(
            name="bam-scene",
            dataset="bam-scene",
            architecture="cifar_resnet8",
            epochs={"smoke": 1, "cpu": 4, "full": 30},
            train_size={"smoke": 500, "cpu": 12000, "full": None},
            val_size=0, optimizer="sgd", lr=0.1, weight_decay=5e-4,
            notes="BAM chapter: the same pasted images as bam-object with the CIFAR-10 class as label, same recipe.",
        ),
    ]
}


@dataclass
class TrainedModel:
    """A trained network (in eval mode) and its card (accuracies, time, provenance, ``origin``)."""

    model: nn.Module
    card: dict


class WeightsMismatchError(RuntimeError):
    """A weights file does not match the SHA-256 its card records (corrupt, truncated or replaced)."""


_LOADED: dict[str, dict] = {}  # name → card of every model ``get`` returned in this process


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown zoo model {name!r}: choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def cache_key(r: Recipe, profile: str) -> str:
    """Hash of what determines the weights under ``profile``: the recipe's non-default training
    fields (of the per-profile ``epochs`` and ``train_size``, only this profile's values), the profile
    and the training-loop version. Documentation fields (``notes``, ``paper``) are left out, and so
    are fields at their default, so that adding a field to ``Recipe`` keeps existing caches valid,
    and changing the ``full`` profile's epochs leaves the ``cpu`` checkpoints valid."""
    fields = {
        f.name: getattr(r, f.name).get(profile) if f.name in ("epochs", "train_size") else getattr(r, f.name)
        for f in dataclasses.fields(r)
        if f.name not in ("notes", "paper") and getattr(r, f.name) != f.default
    }
    return content_hash({"recipe": fields, "profile": profile, "card_version": CARD_VERSION})


def paths(name: str, profile: str) -> tuple[Path, Path]:
    """The weights file and the card file of a zoo model in the data cache."""
    stem = config.data_dir() / "models" / f"{name}-{profile}-{cache_key(recipe(name), profile)}"
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


def checkpoint_paths(name: str, profile: str) -> tuple[Path, Path]:
    """The committed checkpoint of a zoo model: weights and card under ``checkpoints/<profile>/``."""
    stem = config.checkpoint_dir() / profile / name
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


def retrain_requested() -> bool:
    """``SALBOOK_RETRAIN=1`` (``make book RETRAIN=1``): train every model instead of loading checkpoints."""
    return os.environ.get("SALBOOK_RETRAIN", "") not in ("", "0")


def get(name: str, profile: str | None = None, device=None, retrain: bool = False) -> TrainedModel:
    """Return zoo model ``name`` under ``profile``: cached, else a committed checkpoint, else trained here.

    ``card["origin"]`` says which: ``"trained"`` (in this run or an earlier one on this machine) or
    ``"checkpoint"`` (the committed file, verified against its card's SHA-256).
    """
    profile = config.resolve_profile(profile)
    device = torch.device(device) if device is not None else config.default_device()
    r = recipe(name)
    with timings.timed("model", name, profile=profile) as event, _training_lock(name, profile):
        weights, card = _find(r, profile, retrain)
        trained_now = weights is None
        if trained_now:
            train(r, profile, device)
            weights, card = _find(r, profile, retrain=False)
        event.update(origin=card["origin"], trained_now=trained_now, train_seconds=card["train_seconds"],
                     test_acc=card["test_acc"])
    model = nets.build(r.architecture)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    _LOADED[name] = card
    return TrainedModel(model.to(device).eval(), card)


def verified(name: str, profile: str, weights: str) -> TrainedModel:
    """:func:`get`, after checking that the model has the weights (``card["weights_sha256"]``) a job was
    built for: a job never computes with other weights than its parameters name."""
    trained = get(name, profile)
    if trained.card["weights_sha256"] != weights:
        raise ValueError(f"zoo model {name} ({profile}) now has weights {trained.card['weights_sha256'][:12]}…, the "
                         f"job was built for {str(weights)[:12]}…: the model changed since; rebuild the job from "
                         "zoo.get(name, profile).card['weights_sha256']")
    return trained


def loaded() -> list[dict]:
    """Short cards of the models ``get`` returned in this process (for run records)."""
    keys = ("name", "profile", "origin", "cache_key", "weights_sha256", "test_acc", "train_seconds", "device", "git_commit")
    return [{k: card.get(k) for k in keys} for card in _LOADED.values()]


def forget_loaded() -> None:
    """Start :func:`loaded` afresh (a process that runs several chapters, one after another)."""
    _LOADED.clear()


def _find(r: Recipe, profile: str, retrain: bool) -> tuple[Path | None, dict | None]:
    """The verified weights and card to load (cache first, then checkpoint), or (None, None) to train."""
    key = cache_key(r, profile)
    weights, card_path = paths(r.name, profile)
    if not retrain and weights.exists() and card_path.exists():
        try:
            return weights, {**_verified_card(weights, card_path), "origin": "trained"}
        except (WeightsMismatchError, ValueError) as err:
            warnings.warn(f"{err}; retraining {r.name}")
            return None, None
    weights, card_path = checkpoint_paths(r.name, profile)
    if retrain or retrain_requested() or not (weights.exists() and card_path.exists()):
        return None, None
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"checkpoint card {card_path} is not valid JSON ({err}): restore it with "
                         f"`git checkout -- {card_path}`, or set SALBOOK_RETRAIN=1 to train the model") from None
    if card.get("cache_key") != key:
        warnings.warn(f"checkpoint {weights} was trained from another recipe (key {card.get('cache_key')}, now {key}): "
                      f"training {r.name} instead; `python -m salbook.zoo publish {r.name} --profile {profile}` refreshes it")
        return None, None
    try:
        return weights, {**_verified_card(weights, card_path), "origin": "checkpoint"}
    except WeightsMismatchError as err:
        raise WeightsMismatchError(f"{err}. Restore it with `git checkout -- {weights}` (or `git lfs pull`), "
                                   "or set SALBOOK_RETRAIN=1 to train the model instead") from None


def _verified_card(weights: Path, card_path: Path) -> dict:
    """The card of ``weights``, after checking the file's SHA-256 against the card."""
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"model card {card_path} is not valid JSON ({err})") from None
    expected, actual = card.get("weights_sha256"), sha256_file(weights)
    if expected != actual:
        raise WeightsMismatchError(f"weights file {weights} does not match its card {card_path.name} "
                                   f"(sha256 {actual[:12]}…, card says {str(expected)[:12]}…)")
    return card


@contextlib.contextmanager
def _training_lock(name: str, profile: str):
    """Hold an exclusive lock per model, so that two notebooks run in parallel never train it twice."""
    path = config.data_dir() / "models" / f".{name}-{profile}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def split_indices(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded permutation of ``range(n)`` cut into (train, validation) indices."""
    perm = np.random.default_rng(seed).permutation(n)
    return perm[: n - val_size], perm[n - val_size:]


def train(r: Recipe, profile: str, device: torch.device) -> dict:
    """Train recipe ``r`` under ``profile`` and write its weights and card atomically to the data cache."""
    torch.manual_seed(r.seed)
    train_set, test_set = data.load(r.dataset, "train"), data.load(r.dataset, "test")
    idx_train, idx_val = split_indices(len(train_set), r.val_size, r.seed)
    idx_train = idx_train[: r.train_size[profile]]
    x = data.to_input(train_set.x[idx_train], device)
    labels = train_set.y[idx_train]
    if r.permute_labels:
        labels = np.random.default_rng(r.seed).permutation(labels)
    y = torch.from_numpy(labels).to(device)

    model = nets.build(r.architecture).to(device)
    init_preprocessing(model, x)
    seconds = fit(model, x, y, r, r.epochs[profile], desc=f"training {r.name} ({profile})")

    model.eval()
    weights, card_path = paths(r.name, profile)
    with atomic_path(weights) as tmp:
        torch.save(model.state_dict(), tmp)
        sha = sha256_file(tmp)
    card = {
        "name": r.name,
        "profile": profile,
        "cache_key": cache_key(r, profile),
        "weights_sha256": sha,
        "train_acc": accuracy(model, train_set.x[idx_train], labels),  # against the labels it was trained on
        "val_acc": accuracy(model, train_set.x[idx_val], train_set.y[idx_val]) if len(idx_val) else None,
        "test_acc": accuracy(model, test_set.x[: TEST_SIZE.get(profile)], test_set.y[: TEST_SIZE.get(profile)]),
        "test_size": len(test_set.y[: TEST_SIZE.get(profile)]),
        "train_seconds": round(seconds, 2),
        "device": config.device_name(device),
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "data_source": train_set.source,
        "recipe": dataclasses.asdict(r),
    }
    write_json(card_path, card)
    return card


def init_preprocessing(model: nn.Module, x: torch.Tensor) -> None:
    """Set data-dependent preprocessing (the mean image of :class:`~salbook.nets.SubtractMean`) from
    the training inputs ``x``; a no-op for models with fixed normalisation."""
    for m in model.modules():
        if isinstance(m, nets.SubtractMean):
            m.mean.copy_(x.mean(0, keepdim=True))


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, r: Recipe, epochs: int, transform=None,
        desc: str = "training", progress: bool = True) -> float:
    """Train ``model`` in place on model inputs ``x`` and labels ``y`` with recipe ``r``'s optimiser,
    schedule, batch size, label smoothing, augmentation and seed; return the seconds spent.

    Training runs in the channels-last memory layout (1.5× faster for ResNet-8 on a 2-core CPU) and,
    on a GPU, in bfloat16 autocast (weights and optimiser state stay float32); the model is handed
    back in the default layout, in eval mode.
    ``transform(inputs, indices, epoch)``, if given, modifies each batch before augmentation (ROAR's
    random masks resampled every epoch use it). A recipe with ``adversarial`` set replaces each
    augmented batch by its ``pgd_l2`` examples, found with the model in train mode (Madry et al. 2018).
    """
    opt = make_optimizer(r, model)
    gen = torch.Generator().manual_seed(r.seed)
    steps = epochs * -(-len(y) // r.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(r.schedule, steps))
    model.to(memory_format=torch.channels_last)
    start = time.perf_counter()
    with tqdm(total=steps, desc=desc, disable=not progress, mininterval=5) as bar:
        for epoch in range(epochs):
            model.train()
            for batch in torch.randperm(len(y), generator=gen).split(r.batch_size):
                batch = batch.to(x.device)
                inputs = x[batch] if transform is None else transform(x[batch], batch, epoch)
                inputs = augment(inputs, gen) if r.augment else inputs
                with mixed_precision(x.device):
                    inputs = pgd_l2(model, inputs, y[batch], generator=gen, **r.adversarial) if r.adversarial else inputs
                    logits = model(inputs.contiguous(memory_format=torch.channels_last))
                    loss = F.cross_entropy(logits, y[batch], label_smoothing=r.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
                if bar.n % 50 == 0:  # reading the loss waits for the GPU: not at every step
                    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                bar.update()
    model.to(memory_format=torch.contiguous_format).eval()
    return time.perf_counter() - start


def mixed_precision(device: torch.device):
    """bfloat16 autocast on a GPU (tensor cores; no loss scaling needed), nothing on a CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


SCHEDULES = ("cosine", "constant", "onecycle")


def lr_factor(schedule: str, steps: int, warmup: float = 0.2):
    """The learning-rate multiplier at each step: ``cosine`` decay to 0, ``constant``, or ``onecycle``
    (linear warm-up from 0.1 over the first ``warmup`` of the steps, then linear decay to 0, the
    triangular schedule of fast CIFAR recipes such as Keller Jordan's airbench)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}: choose one of {SCHEDULES}")
    if schedule == "constant":
        return lambda step: 1.0
    if schedule == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    peak = max(1, round(warmup * steps))
    return lambda step: 0.1 + 0.9 * step / peak if step < peak else max(0.0, (steps - step) / (steps - peak))


def make_optimizer(r: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    if r.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=r.lr, weight_decay=r.weight_decay)
    if r.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=r.lr, momentum=0.9, nesterov=r.nesterov, weight_decay=r.weight_decay)
    raise ValueError(f"unknown optimizer {r.optimizer!r}: choose 'adam' or 'sgd'")


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop of the zero-padded batch and random horizontal flip (the standard CIFAR recipe)."""
    n, c, h, w = x.shape
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n, 1), generator=gen).to(x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]
    return padded[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None], rows, cols]


@torch.no_grad()
def predict_proba(model: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Softmax outputs of ``model`` for uint8 images or model-input tensors, in batches (on CPU)."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size]
        inputs = data.to_input(chunk, device) if isinstance(chunk, np.ndarray) else chunk.to(device)
        out.append(F.softmax(model(inputs), dim=1).cpu())
    return torch.cat(out)


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` on uint8 images ``x`` with labels ``y``."""
    pred = predict_proba(model, x).argmax(1).numpy()
    return float((pred == y).mean())


def publish(name: str, profile: str) -> Path:
    """Copy zoo model ``name`` (trained here first if needed) into ``checkpoints/<profile>/`` with its
    card, to be committed: the canonical weights every clone then loads instead of training."""
    get(name, profile, device="cpu", retrain=False)
    weights, card_path = paths(name, profile)
    if not weights.exists():
        raise FileNotFoundError(f"{name} ({profile}) is not in the data cache {weights.parent}: it came from a "
                                "checkpoint already; set SALBOOK_RETRAIN=1 to train it here first")
    card = _verified_card(weights, card_path)
    if card["git_commit"].endswith("+dirty"):
        raise ValueError(f"{name} was trained from uncommitted code ({card['git_commit']}): commit, retrain "
                         "(SALBOOK_RETRAIN=1), then publish")
    dst_weights, dst_card = checkpoint_paths(name, profile)
    with atomic_path(dst_weights) as tmp:
        shutil.copyfile(weights, tmp)
    write_json(dst_card, card)
    return dst_weights


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m salbook.zoo", description="The model zoo's committed checkpoints.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("publish", help="train (if needed) and copy models into checkpoints/<profile>/")
    p.add_argument("names", nargs="+", help=f"zoo models: {', '.join(RECIPES)}")
    p.add_argument("--profile", default="cpu", choices=config.PROFILES)
    args = parser.parse_args(argv)
    for name in args.names:
        path = publish(name, args.profile)
        print(f"{name}: {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
