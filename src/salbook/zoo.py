"""The model zoo: named recipes, trained on demand and cached.

A recipe is an architecture, a dataset, a training recipe and a seed. ``get(name, profile)`` returns
the trained network, training it first when no cached copy exists. The cache file is keyed by a hash
of the recipe and the profile, written atomically, loaded with ``torch.load(weights_only=True)``, and
accompanied by a JSON card (accuracies, training seconds, device, data source, the recipe itself).

Profiles change how long a recipe trains (``epochs``, ``train_size``), never what it is.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import config, data, nets
from .methods.frank_wolfe import pgd_l2
from .storage import atomic_path, content_hash, write_json

CARD_VERSION = 1  # bump when the training loop changes in a way that changes the weights


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
    schedule: str = "cosine"  # or "constant"
    permute_labels: bool = False  # train on a seeded permutation of the labels (a sanity-check model)
    adversarial: dict | None = None  # pgd_l2 arguments (eps, steps, step_size, random_start): train on its examples
    notes: str = ""
    paper: dict = field(default_factory=dict)  # the paper's reported numbers, for comparison only


# The robust-counterfactuals pair: one recipe, and the same recipe with an adversary.
_RESNET8_NATURAL = Recipe(
    name="cifar-resnet8-natural",
    dataset="cifar10",
    architecture="cifar_resnet8",
    epochs={"smoke": 1, "cpu": 8, "full": 30},
    train_size={"smoke": 1000, "cpu": 30000, "full": None},
    val_size=0, optimizer="sgd", lr=0.1, weight_decay=5e-4, augment=True,
    notes="Robust-counterfactuals chapter: the normally trained counterpart of cifar-resnet8-l2robust (same "
    "network, data, schedule and seed). cpu profile: ResNet-8, a 30,000-image training subset, 8 epochs, SGD "
    "(Nesterov, lr 0.1, cosine, weight decay 5e-4, batch 128), crop + flip.",
)


RECIPES = {
    r.name: r
    for r in [
        Recipe(
            name="mnist-cnn2",
            dataset="mnist",
            architecture="mnist_cnn2",
            epochs={"smoke": 1, "cpu": 4, "full": 12},
            train_size={"smoke": 2000, "cpu": None, "full": None},
            notes="MPE paper §3.1. Adam (lr 1e-3, cosine decay, batch 128) in place of the unspecified optimiser; "
            "the last 5,000 of a seeded permutation of the training set are held out for validation.",
            paper={"train_acc": 0.9874, "val_acc": 0.9920, "test_acc": 0.9922},
        ),
        Recipe(
            name="cifar-cnn4",
            dataset="cifar10",
            architecture="cifar_cnn4",
            epochs={"smoke": 1, "cpu": 15, "full": 60},
            train_size={"smoke": 2000, "cpu": None, "full": None},
            augment=True,
            notes="MPE paper §4.1 '4-layers CNN'. Adam (lr 1e-3, cosine decay, batch 128), crop + flip "
            "augmentation, in place of the unspecified recipe.",
            paper={"test_acc": 0.8019},
        ),
        Recipe(
            name="cifar-resnet50",
            dataset="cifar10",
            architecture="cifar_resnet50",
            epochs={"smoke": 1, "cpu": 15, "full": 40},
            train_size={"smoke": 1000, "cpu": None, "full": None},
            optimizer="sgd", lr=0.1, weight_decay=5e-4, augment=True,
            notes="MPE paper §4.1 ResNet50 'trained with pixel-means subtracted' (mean image inside the "
            "model). SGD (Nesterov, lr 0.1, cosine, weight decay 5e-4, batch 128), crop + flip.",
            paper={"test_acc": 0.8602},
        ),
        Recipe(
            name="cifar-resnet20",
            dataset="cifar10",
            architecture="cifar_resnet20",
            epochs={"smoke": 1, "cpu": 15, "full": 60},
            train_size={"smoke": 2000, "cpu": None, "full": None},
            optimizer="sgd", lr=0.1, weight_decay=5e-4, augment=True,
            notes="Substitute for ResNet-50 where a GPU is missing (cpu profile): ResNet-20, same "
            "preprocessing and recipe as cifar-resnet50.",
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
            "60,000-image training set.",
            paper={"test_acc": 0.974, "test_acc_sd_over_5_seeds": 0.004},
        ),
        Recipe(
            name="cifar-resnet8",
            dataset="cifar10",
            architecture="cifar_resnet8",
            epochs={"smoke": 1, "cpu": 5, "full": 30},
            train_size={"smoke": 1000, "cpu": 10000, "full": None},
            val_size=0, optimizer="sgd", lr=0.1, weight_decay=5e-4, augment=True,
            notes="ROAR chapter, cpu profile: stands in for Hooker et al.'s ResNet-50 so that one retraining "
            "takes about a minute on a laptop CPU: ResNet-8, a 10,000-image training subset, 5 epochs, SGD "
            "(Nesterov, lr 0.1, cosine, weight decay 5e-4, batch 128), crop + flip.",
        ),
        _RESNET8_NATURAL,
        dataclasses.replace(
            _RESNET8_NATURAL,
            name="cifar-resnet8-l2robust",
            adversarial={"eps": 0.5, "steps": 3, "step_size": 2.5 * 0.5 / 3, "random_start": True},
            notes="Robust-counterfactuals chapter: cifar-resnet8-natural (same network, data, schedule and seed) "
            "trained only on L2 PGD examples (Madry et al. 2018) at eps = 0.5 in [0, 1] pixel space, a fast recipe: "
            "3 steps of 2.5·eps/3 with a random start on the augmented batch (MadryLab's robustness library uses 7).",
            paper={"anchor": "MadryLab robustness, CIFAR-10 ResNet-50 trained at L2 eps 0.5, PGD-20 accuracy",
                   "clean_acc": 0.9083, "pgd_acc_eps_0.25": 0.8234, "pgd_acc_eps_0.5": 0.7017, "pgd_acc_eps_1.0": 0.4047},
        ),
        Recipe(
            name="cifar-resnet18",
            dataset="cifar10",
            architecture="cifar_resnet18",
            epochs={"smoke": 1, "cpu": 10, "full": 15},
            train_size={"smoke": 1000, "cpu": None, "full": None},
            val_size=0, batch_size=256, optimizer="sgd", lr=0.2, weight_decay=5e-4, augment=True,
            notes="ROAR chapter, full profile: ResNet-18 on all 50,000 training images, 15 epochs, SGD (Nesterov, "
            "lr 0.2, cosine, weight decay 5e-4, batch 256), crop + flip.",
        ),
        Recipe(
            name="mnist-cnn2-permuted",
            dataset="mnist",
            architecture="mnist_cnn2",
            epochs={"smoke": 2, "cpu": 60, "full": 100},
            train_size={"smoke": 500, "cpu": 5000, "full": None},
            permute_labels=True,
            notes="Adebayo et al.'s data-randomisation test: mnist-cnn2 trained on permuted training labels until "
            "it memorises them (their criterion: > 95 % training accuracy). The cpu profile memorises a "
            "5,000-image subset.",
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
            name="cifar-vgg16bn-quarter",
            dataset="cifar10",
            architecture="cifar_vgg16_bn_quarter",
            epochs={"smoke": 1, "cpu": 15, "full": 40},
            train_size={"smoke": 2000, "cpu": None, "full": None},
            optimizer="sgd", lr=0.05, weight_decay=5e-4, augment=True,
            notes="The cpu profile's substitute for cifar-vgg16bn: the same network at a quarter of the "
            "channels, same recipe.",
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
    """A trained network (in eval mode) and its card (accuracies, time, provenance)."""

    model: nn.Module
    card: dict


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown zoo model {name!r}: choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def cache_key(r: Recipe, profile: str) -> str:
    """Hash of what determines the weights: the recipe's non-default training fields, the profile
    and the training-loop version. Documentation fields (``notes``, ``paper``) are left out, and so
    are fields at their default, so that adding a field to ``Recipe`` keeps existing caches valid."""
    fields = {
        f.name: getattr(r, f.name)
        for f in dataclasses.fields(r)
        if f.name not in ("notes", "paper") and getattr(r, f.name) != f.default
    }
    return content_hash({"recipe": fields, "profile": profile, "card_version": CARD_VERSION})


def paths(name: str, profile: str) -> tuple[Path, Path]:
    """The weights file and the card file of a zoo model."""
    stem = config.data_dir() / "models" / f"{name}-{profile}-{cache_key(recipe(name), profile)}"
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


def get(name: str, profile: str | None = None, device=None, retrain: bool = False) -> TrainedModel:
    """Return zoo model ``name`` trained under ``profile``; train and cache it if needed."""
    profile = config.resolve_profile(profile)
    device = torch.device(device) if device is not None else config.default_device()
    weights, card_path = paths(name, profile)
    if retrain or not (weights.exists() and card_path.exists()):
        train(recipe(name), profile, device)
    model = nets.build(recipe(name).architecture)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return TrainedModel(model.to(device).eval(), json.loads(card_path.read_text()))


def split_indices(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded permutation of ``range(n)`` cut into (train, validation) indices."""
    perm = np.random.default_rng(seed).permutation(n)
    return perm[: n - val_size], perm[n - val_size:]


def train(r: Recipe, profile: str, device: torch.device) -> dict:
    """Train recipe ``r`` under ``profile`` and write its weights and card atomically."""
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
    card = {
        "name": r.name,
        "profile": profile,
        "cache_key": cache_key(r, profile),
        "train_acc": accuracy(model, train_set.x[idx_train], labels),  # against the labels it was trained on
        "val_acc": accuracy(model, train_set.x[idx_val], train_set.y[idx_val]) if len(idx_val) else None,
        "test_acc": accuracy(model, test_set.x, test_set.y),
        "train_seconds": round(seconds, 2),
        "device": config.device_name(device),
        "torch": torch.__version__,
        "data_source": train_set.source,
        "recipe": dataclasses.asdict(r),
    }
    weights, card_path = paths(r.name, profile)
    with atomic_path(weights) as tmp:
        torch.save(model.state_dict(), tmp)
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
    schedule, batch size, augmentation and seed; return the seconds spent.

    ``transform(inputs, indices, epoch)``, if given, modifies each batch before augmentation (ROAR's
    random masks resampled every epoch use it). A recipe with ``adversarial`` set replaces each
    augmented batch by its ``pgd_l2`` examples, found with the model in train mode (Madry et al. 2018).
    """
    if r.schedule not in ("cosine", "constant"):
        raise ValueError(f"unknown schedule {r.schedule!r}: choose 'cosine' or 'constant'")
    opt = make_optimizer(r, model)
    gen = torch.Generator().manual_seed(r.seed)
    steps = epochs * -(-len(y) // r.batch_size)
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if r.schedule == "cosine"
                else torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0))
    start = time.perf_counter()
    with tqdm(total=steps, desc=desc, disable=not progress) as bar:
        for epoch in range(epochs):
            model.train()
            for batch in torch.randperm(len(y), generator=gen).split(r.batch_size):
                batch = batch.to(x.device)
                inputs = x[batch] if transform is None else transform(x[batch], batch, epoch)
                inputs = augment(inputs, gen) if r.augment else inputs
                inputs = pgd_l2(model, inputs, y[batch], generator=gen, **r.adversarial) if r.adversarial else inputs
                loss = F.cross_entropy(model(inputs), y[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                bar.update()
    model.eval()
    return time.perf_counter() - start


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
