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

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


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


def mnist_lenet() -> nn.Sequential:
    """The ROAR thesis' MNIST CNN: "two convolution layers, two pooling layers, and three linear layers".

    The thesis gives no sizes; we take the LeNet-5 layout of the PyTorch tutorial that matches the
    description (conv 6@5×5 → max-pool → conv 16@5×5 → max-pool → 120 → 84 → 10), with the
    normalisation the thesis applies (MNIST mean and std) as the first layer.
    """
    return nn.Sequential(
        Normalize((0.1307,), (0.3081,)),
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * 4 * 4, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


class SubtractMean(nn.Module):
    """``x - mean_image``: the "pixel-means subtracted" preprocessing (a per-pixel, per-channel mean
    image of the training set, stored as a buffer so that it travels with the weights)."""

    def __init__(self, shape: tuple[int, ...] = (3, 32, 32)):
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, *shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.mean


def cifar_cnn4() -> nn.Sequential:
    """The MPE paper's "4-layers CNN" for CIFAR-10 (paper test accuracy 80.19 %).

    The paper gives no architecture; we take the canonical four-convolution CIFAR-10 network (Keras'
    ``cifar10_cnn`` example: 2 × conv 32 → pool → 2 × conv 64 → pool → dense 512 → dense 10, with
    dropout), which reaches about 80 % without augmentation tricks.
    """
    return nn.Sequential(
        Normalize(CIFAR_MEAN, CIFAR_STD),
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(64 * 6 * 6, 512), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(512, 10),
    )


class _Basic(nn.Module):
    """ResNet basic block (two 3×3 convolutions); each ReLU is its own module."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.shortcut = _shortcut(cin, cout, stride)
        self.out = nn.ReLU()

    def forward(self, x):
        return self.out(self.body(x) + self.shortcut(x))


class _Bottleneck(_Basic):
    """ResNet bottleneck block (1×1, 3×3, 1×1 convolutions, ×4 expansion)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        nn.Module.__init__(self)
        cout = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.shortcut = _shortcut(cin, cout, stride)
        self.out = nn.ReLU()


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


def _resnet(block, blocks: tuple[int, ...], widths: tuple[int, ...], stem: int, preprocess: nn.Module) -> nn.Sequential:
    layers, cin = [preprocess, nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU()], stem
    for stage, (n, width) in enumerate(zip(blocks, widths)):
        for b in range(n):
            layers.append(block(cin, width, 2 if stage > 0 and b == 0 else 1))
            cin = width * block.expansion
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10))


def cifar_resnet50() -> nn.Sequential:
    """ResNet-50 (bottleneck blocks 3-4-6-3) adapted to 32×32 inputs: a 3×3 stride-1 stem and no
    max-pool, as is usual for CIFAR. Input preprocessing: the training set's mean image is
    subtracted ("trained with pixel-means subtracted", MPE paper §4.1)."""
    return _resnet(_Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512), 64, SubtractMean())


def cifar_resnet8() -> nn.Sequential:
    """ResNet-8 (three stages of one basic block, 16-32-64 channels, 78 k parameters) with per-channel
    normalisation inside the model: the ``cpu`` profile's shared CIFAR-10 network (see the zoo). Fixed
    normalisation (not a learned mean image) lets a ROAR retraining on modified data start from the
    same preprocessing."""
    return _resnet(_Basic, (1, 1, 1), (16, 32, 64), 16, Normalize(CIFAR_MEAN, CIFAR_STD))


VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def cifar_vgg16_bn() -> nn.Sequential:
    """VGG16 with batch norm adapted to 32×32 CIFAR-10 (13 convolutions, five poolings to 1×1, one
    linear classifier), the ``full`` profile's stand-in for the ImageNet VGG16 of the PertMap and
    decoy papers."""
    layers, cin = [Normalize(CIFAR_MEAN, CIFAR_STD)], 3
    for v in VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU()]
            cin = v
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin, 10))


ARCHITECTURES = {
    "mnist_lenet": mnist_lenet,
    "mnist_cnn2": mnist_cnn2,
    "cifar_cnn4": cifar_cnn4,
    "cifar_resnet8": cifar_resnet8,
    "cifar_resnet50": cifar_resnet50,
    "cifar_vgg16_bn": cifar_vgg16_bn,
}


def build(architecture: str) -> nn.Module:
    """Instantiate a named architecture."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}: choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture]()


def fast_copy(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """A copy of a network in eval mode for inference and gradients: every batch norm that directly
    follows a convolution in an ``nn.Sequential`` folded into it (in eval mode it is an affine map per
    channel) and, with ``channels_last``, that memory layout; each is about 1.3–1.5× faster for the
    zoo's ResNets on a CPU. The same function up to float rounding (~1e-6). Libraries that ``view``
    input gradients as contiguous (torchattacks) need ``channels_last=False``. The decoy solver runs
    on a fast copy of F_ℓ (:mod:`salbook.methods.decoys`); decoys are verified on the original."""
    fast = copy.deepcopy(model)
    for module in list(fast.modules()):
        if isinstance(module, nn.Sequential):
            children = list(module._modules.items())
            for (name, conv), (next_name, norm) in zip(children, children[1:]):
                if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                    module._modules[name] = fuse_conv_bn_eval(conv, norm)
                    module._modules[next_name] = nn.Identity()
    return fast.to(memory_format=torch.channels_last) if channels_last else fast
