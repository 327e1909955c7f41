"""One registry of every saliency method of the book: name → factory(model, **options).

Every factory returns an object with Captum's verb, ``attribute(inputs, target=None) -> maps``: maps
shaped like the inputs ``(N, C, H, W)``, on the CPU, with **higher = more relevant to the target class**
(a method whose own quantity runs the other way, such as PertMap's box width, is negated by its
class). What else a yardstick needs to know is declared once, in the entry's :class:`Output`:

* ``signed``: both signs carry meaning (a gradient), or the map is one-signed (SG-SQ, a box width);
* ``resolution``: ``"channel"`` (one value per input entry) or ``"pixel"`` (one value per pixel,
  repeated over the channels: Grad-CAM).

``make("gradient", model)`` builds a method; :func:`explain` runs a built method over many images in
batches; :func:`names` lists them (per paper with ``part``), and :func:`register` adds one: a new
method is then graded by every yardstick that takes the registry's methods, with no other change.
Grids, yardsticks and notebooks build methods only here (``tests/test_registry_use.py`` checks it).
The entries name their paper's part of the book (``mpe``, ``decoys``, ``pertmap``, ``roar``,
``robust``; ``common`` for the shared random control).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from ..checks import as_targets, check_inputs, targets_or_prediction
from . import baselines
from .decoys import DecoyEnhanced
from .frank_wolfe import FrankWolfe
from .mpe import MPE, mpe_table
from .pertmap import LPPertMap, StochasticPertMap

RESOLUTIONS = ("channel", "pixel")


@dataclass(frozen=True)
class Output:
    """What a method's maps mean beyond "higher = more relevant"."""

    signed: bool
    resolution: str = "channel"

    def __post_init__(self):
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {self.resolution!r}")


@dataclass(frozen=True)
class Entry:
    name: str
    label: str  # as figures and tables print it
    part: str
    output: Output
    description: str
    factory: Callable[..., Any]


REGISTRY: dict[str, Entry] = {}


def register(name: str, *, label: str, part: str, output: Output, description: str):
    """Decorator: register ``factory(model, **options)`` under ``name`` (names are unique)."""

    def add(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in REGISTRY:
            raise ValueError(f"a method named {name!r} is registered already")
        REGISTRY[name] = Entry(name, label, part, output, description, factory)
        return factory

    return add


def unregister(name: str) -> None:
    """Remove ``name`` (for tests and notebooks that register a method of their own)."""
    REGISTRY.pop(name, None)


def entry(name: str) -> Entry:
    if name not in REGISTRY:
        raise ValueError(f"unknown saliency method {name!r}: choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def make(name: str, model: torch.nn.Module, **options):
    """Build the method ``name`` for ``model`` (options as its factory documents)."""
    return entry(name).factory(model, **options)


def explain(method, inputs: torch.Tensor, targets=None, batch_size: int = 64, progress: str | None = None
            ) -> torch.Tensor:
    """Maps of a built ``method`` (from :func:`make`) for ``inputs`` ``(N, C, H, W)``, ``batch_size``
    images per ``attribute`` call, concatenated: the same maps as one call on all inputs (a seeded
    method's generator runs on from batch to batch). ``targets``: a class, one per image, or None for
    each image's predicted class (the registry's default). ``progress``: a progress bar's title, or None
    for none."""
    check_inputs(inputs)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive number of images; got {batch_size}")
    targets = None if targets is None else as_targets(targets, len(inputs)).to(inputs.device)
    starts = range(0, len(inputs), batch_size)
    return torch.cat([method.attribute(inputs[k:k + batch_size],
                                       target=None if targets is None else targets[k:k + batch_size])
                      for k in tqdm(starts, desc=progress, disable=progress is None or len(starts) < 2,
                                    mininterval=5)])


def names(part: str | None = None) -> tuple[str, ...]:
    """Registered names in registration order, all or those of one part of the book."""
    return tuple(n for n, e in REGISTRY.items() if part is None or e.part == part)


# -- the Captum / zennit baselines (roar: the thesis' survey and Hooker et al.) ------------------------
_BASELINES = {
    "gradient": ("Gradient", Output(signed=True), "∂f_c/∂x (Simonyan et al. 2013)"),
    "input_x_gradient": ("Input × Gradient", Output(signed=True), "x ⊙ ∂f_c/∂x"),
    "deconvnet": ("DeconvNet", Output(signed=True), "ReLU on the backward signal (Zeiler & Fergus 2014)"),
    "guided_backprop": ("Guided backprop", Output(signed=True),
                        "only positive gradients through ReLUs (Springenberg et al. 2015)"),
    "gradcam": ("Grad-CAM", Output(signed=False, resolution="pixel"),
                "ReLU of the gradient-weighted last feature maps, upsampled (Selvaraju et al. 2017)"),
    "guided_gradcam": ("Guided Grad-CAM", Output(signed=True), "guided backprop × Grad-CAM"),
    "smoothgrad": ("SmoothGrad", Output(signed=True), "mean gradient over noisy copies (Smilkov et al. 2017)"),
    "smoothgrad_sq": ("SG-SQ", Output(signed=False), "mean squared gradient over noisy copies (Hooker et al.)"),
    "vargrad": ("VarGrad", Output(signed=False), "variance of the gradient over noisy copies (Adebayo et al.)"),
    "integrated_gradients": ("Integrated Gradients", Output(signed=True),
                             "path integral of the gradient from black (Sundararajan et al. 2017)"),
    "lrp": ("LRP", Output(signed=True), "ε-rule relevance propagation (Bach et al. 2015)"),
    "deeplift": ("DeepLIFT", Output(signed=True), "rescale rule from black (Shrikumar et al. 2017)"),
    "occlusion": ("Occlusion", Output(signed=True), "drop of f_c when a window is blacked out"),
    "excitation_backprop": ("Excitation backprop", Output(signed=False),
                            "marginal winning probability (Zhang et al. 2018)"),
}
for _name, (_label, _output, _description) in _BASELINES.items():
    register(_name, label=_label, part="roar", output=_output, description=_description)(
        lambda model, _name=_name, **options: baselines.make(_name, model, **options))


# -- the five papers' own methods -----------------------------------------------------------------------
@register("mpe", label="MPE", part="mpe", output=Output(signed=False),
          description="Monte-Carlo marginal probability of the class given each input value")
def _mpe(model, table=None, sampling=None, undefined: float | None = None):
    """``table``: an :class:`~salbook.methods.mpe.MPETable` of ``model``, or ``sampling`` (uint8 images,
    N×H×W or N×H×W×C) to build one. ``undefined``: the value of entries whose grey level never occurs in
    the sampling set (MPE is undefined there: NaN unless a value is given)."""
    if table is None:
        if sampling is None:
            raise ValueError("MPE needs its table: pass table= (methods.mpe.mpe_table) or sampling= images")
        table = mpe_table(model, sampling, progress=False)
    return _Filled(model, MPE(table), undefined)


@register("stochastic_pertmap", label="PertMap (stochastic)", part="pertmap", output=Output(signed=False),
          description="minus the width of the largest decision-invariant box, by Algorithm 1 (Ikeno & Hara)")
def _stochastic_pertmap(model, **options):
    return StochasticPertMap(model, **{"progress": False, **options})


@register("lp_pertmap", label="PertMap (LP)", part="pertmap", output=Output(signed=False),
          description="minus the width of the largest box under linearised constraints (Hara et al.)")
def _lp_pertmap(model, **options):
    return LPPertMap(model, **{"progress": False, **options})


for _base, _label in (("gradient", "Gradient"), ("smoothgrad", "SmoothGrad"),
                      ("integrated_gradients", "Integrated Gradients")):
    register(f"decoy_{_base}", label=f"Decoys + {_label}", part="decoys", output=Output(signed=False),
             description=f"range of {_label} over decoys that keep a layer's representation (eq. 3)")(
        lambda model, _base=_base, **options: DecoyEnhanced(model, base=_base, **{"progress": False, **options}))


@register("counterfactual_l1q", label="ℓ1-q counterfactual", part="robust", output=Output(signed=False),
          description="|δ| of the sparse ℓ1-q Frank-Wolfe perturbation away from the class (Roberts et al.)")
def _counterfactual(model, eps: float = 8.0, **options):
    """The entries the sparsest perturbation must change to leave the class are the relevant ones: |δ| of
    the untargeted ℓ1-q Frank-Wolfe perturbation (``eps`` in [0, 1] pixel units, ℓ1)."""
    return _Absolute(FrankWolfe(model, norm="l1q", eps=eps, targeted=False, **options))


@register("random", label="Random", part="common", output=Output(signed=False),
          description="independent uniform noise per input entry: the control every yardstick should rank last")
def _random(model, seed: int = 0):
    return RandomMap(seed)


class RandomMap:
    """Independent uniform noise in [0, 1) per input entry (Hooker et al.'s random ranking). One
    generator seeded with ``seed`` serves all calls in turn, so a run is reproducible and calls on
    batches draw what one call on all images would; the model is not used.

    Per entry rather than per pixel: summed over the channels the pixels' scores are still independent
    and identically distributed, so every ordering of the pixels is equally likely too, and a yardstick
    that ranks per pixel (ROAR ``per="pixel"``, gray flipping) gets a uniform random ranking as well."""

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def attribute(self, inputs: torch.Tensor, target=None) -> torch.Tensor:
        check_inputs(inputs)
        return torch.rand(inputs.shape, generator=self.generator)


class _Absolute:
    def __init__(self, method):
        self.method = method

    def attribute(self, inputs: torch.Tensor, target=None) -> torch.Tensor:
        return self.method.attribute(inputs, target).abs().detach().cpu()


class _Filled:
    """MPE with the registry's defaults: the target defaults to the prediction, undefined entries filled."""

    def __init__(self, model, method, undefined: float | None):
        self.model, self.method, self.undefined = model, method, undefined

    def attribute(self, inputs: torch.Tensor, target=None) -> torch.Tensor:
        maps = self.method.attribute(inputs, targets_or_prediction(self.model, inputs, target))
        return maps if self.undefined is None else torch.nan_to_num(maps, nan=self.undefined)
