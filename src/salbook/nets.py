"""Network architectures of the model zoo.

Conventions every explainer relies on:

* inputs are float tensors ``(N, C, H, W)`` with values in ``[0, 1]`` (``data.to_input``); the
  normalisation a paper used lives *inside* the network as its first layer, so maps, perturbations
  and budgets are all expressed in image space;
* every non-linearity is its own ``nn.ReLU(inplace=False)`` module, because GuidedBackprop, DeepLift
  and LRP (Captum, zennit) override the backward pass of ReLU *modules*;
* networks return logits; class probabilities are ``softmax`` of them.
"""
from __future__ import annotations

import torch
from torch import nn


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, for inputs in ``[0, 1]``."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def mnist_cnn2() -> nn.Sequential:
    """The MPE paper's "simple 2-layer CNN" for MNIST.

    The paper gives no architecture; we take the canonical two-convolution MNIST network (Keras'
    ``mnist_cnn`` example: conv 32 → conv 64 → max-pool → dropout 0.25 → dense 128 → dropout 0.5 →
    dense 10). Its dropout explains why the paper's training accuracy (98.74 %) is below its test
    accuracy (99.22 %).
    """
    return nn.Sequential(
        Normalize((0.1307,), (0.3081,)),
        nn.Conv2d(1, 32, 3), nn.ReLU(),
        nn.Conv2d(32, 64, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(64 * 12 * 12, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


ARCHITECTURES = {"mnist_cnn2": mnist_cnn2}


def build(architecture: str) -> nn.Module:
    """Instantiate a named architecture."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}: choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture]()
