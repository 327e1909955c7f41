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
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0  # seeds the weights, the data order, dropout and the validation split
    notes: str = ""
    paper: dict = field(default_factory=dict)  # the paper's reported numbers, for comparison only


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
    """Hash of everything that determines the weights: recipe, profile, training-loop version."""
    return content_hash({"recipe": dataclasses.asdict(r), "profile": profile, "card_version": CARD_VERSION})


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
    y = torch.from_numpy(train_set.y[idx_train]).to(device)

    model = nets.build(r.architecture).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=r.lr, weight_decay=r.weight_decay)
    gen = torch.Generator().manual_seed(r.seed)
    steps = r.epochs[profile] * -(-len(y) // r.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    start = time.perf_counter()
    with tqdm(total=steps, desc=f"training {r.name} ({profile})") as bar:
        for _ in range(r.epochs[profile]):
            model.train()
            for batch in torch.randperm(len(y), generator=gen).split(r.batch_size):
                batch = batch.to(device)
                loss = F.cross_entropy(model(x[batch]), y[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                bar.update()
    seconds = time.perf_counter() - start

    model.eval()
    card = {
        "name": r.name,
        "profile": profile,
        "cache_key": cache_key(r, profile),
        "train_acc": accuracy(model, train_set.x[idx_train], train_set.y[idx_train]),
        "val_acc": accuracy(model, train_set.x[idx_val], train_set.y[idx_val]),
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


@torch.no_grad()
def predict_proba(model: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
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
