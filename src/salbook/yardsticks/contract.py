"""One call shape for every yardstick, in Quantus' spirit, and the registry the leaderboard grades with.

A :class:`Yardstick` is called as ``yardstick(model, inputs, targets, maps, explain=None)`` and returns
one value per image, ``(N,)`` (NaN where the value is undefined for that image). ``maps`` are a
method's raw maps ``(N, C, H, W)`` with the registry's convention (higher = more relevant to the
target); ``explain(model, inputs, targets) -> maps`` is given to the yardsticks that must explain
again (``needs_explain``): on a randomised model (sanity), or on attacked images (sensitivity).
Every yardstick declares ``higher_is_better`` and a one-line ``description`` the figures print.

**From maps to one relevance per pixel** (:func:`relevance`, the one rule every yardstick here uses):
a signed map is read by its magnitude, the largest |value| over the colour channels (Simonyan et al.
2013's reduction; the decoy paper post-processes every map the same way); a one-signed map by its
largest value over the channels, shifted so that its least relevant pixel is 0 (a PertMap map is
minus a box width). Yardsticks that weight an image by its map (fidelity, sensitivity) take
:func:`decoys.postprocess <salbook.methods.decoys.postprocess>` of that relevance: winsorised at the
95th percentile and scaled to [0, 1] per image.

The primitives stay in their modules (with their own chapters' options); the adapters below fix the
leaderboard's reading of each and say it in ``description``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..checks import check_inputs, check_maps, targets_or_prediction
from ..methods.decoys import postprocess
from ..methods.registry import Output
from . import completeness as game
from .concentration import gini
from .correction import closed_loop_correction
from .curves import deletion_auc, insertion_auc
from .fidelity import saliency_fidelity
from .grayflip import curve_areas, grayflip_changes
from .saliency_attacks import sensitivity as sensitivity_ratio
from .sanity import randomised_model, similarity

Explain = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Yardstick:
    """A yardstick with the common call shape; ``part`` names the book's part (paper) it comes from.

    ``on``: the images it grades, ``"correct"`` (classified correctly, explained for their class) or
    ``"misclassified"`` (explained for the wrong class they get); ``needs``: the names of what else it
    takes about those images (keyword arguments, e.g. the true ``labels``)."""

    name: str
    label: str
    part: str
    higher_is_better: bool
    description: str
    fn: Callable[..., np.ndarray]
    needs_explain: bool = False
    on: str = "correct"
    needs: tuple[str, ...] = ()

    def __call__(self, model, inputs: torch.Tensor, targets, maps: torch.Tensor, explain: Explain | None = None,
                 *, output: Output, **options) -> np.ndarray:
        """One value per image. ``output``: how the method's maps read (its registry entry's ``output``);
        ``options``: the yardstick's own (see its function)."""
        check_inputs(inputs)
        check_maps(maps, tuple(inputs.shape))
        if tuple(maps.shape) != tuple(inputs.shape):
            raise ValueError(f"maps must be shaped like the inputs {tuple(inputs.shape)}, got {tuple(maps.shape)}")
        if self.needs_explain and explain is None:
            raise ValueError(f"the {self.name!r} yardstick explains again: pass explain(model, inputs, targets)")
        targets = targets_or_prediction(model, inputs, targets)
        args = (model, inputs, targets, maps) + ((explain,) if self.needs_explain else ())
        values = np.asarray(self.fn(*args, output=output, **options), dtype=float)
        if values.shape != (len(inputs),):
            raise RuntimeError(f"yardstick {self.name!r} returned shape {values.shape}, not one value per image")
        return values


YARDSTICKS: dict[str, Yardstick] = {}


def yardstick(name: str, *, label: str, part: str, higher_is_better: bool, description: str,
              needs_explain: bool = False, on: str = "correct", needs: tuple[str, ...] = ()):
    """Decorator: register ``fn(model, inputs, targets, maps[, explain], *, output, **options) -> (N,)``."""

    def add(fn):
        if name in YARDSTICKS:
            raise ValueError(f"a yardstick named {name!r} is registered already")
        if on not in ("correct", "misclassified"):
            raise ValueError(f"on must be 'correct' or 'misclassified', got {on!r}")
        YARDSTICKS[name] = Yardstick(name, label, part, higher_is_better, description, fn, needs_explain, on,
                                     tuple(needs))
        return fn

    return add


def get(name: str) -> Yardstick:
    if name not in YARDSTICKS:
        raise ValueError(f"unknown yardstick {name!r}: choose one of {', '.join(YARDSTICKS)}")
    return YARDSTICKS[name]


def names() -> tuple[str, ...]:
    return tuple(YARDSTICKS)


def relevance(maps: torch.Tensor, output: Output) -> torch.Tensor:
    """One non-negative relevance per pixel, ``(N, H, W)``, by the rule of the module's docstring."""
    check_maps(maps)
    if maps.dim() != 4:
        raise ValueError(f"maps must be (N, C, H, W), got {tuple(maps.shape)}")
    r = maps.detach().abs().amax(1) if output.signed else maps.detach().amax(1)
    return (r - r.flatten(1).amin(1).view(-1, 1, 1)).float()


# -- yardsticks on the maps alone, or on the maps and the model -----------------------------------------

@yardstick("deletion", label="Deletion AUC", part="roar", higher_is_better=False,
           description="area under the class probability as the most relevant pixels are deleted (RISE)")
def _deletion(model, inputs, targets, maps, output: Output):
    return deletion_auc(model, inputs, targets, relevance(maps, output))


@yardstick("insertion", label="Insertion AUC", part="roar", higher_is_better=True,
           description="area under the class probability as the most relevant pixels are put back (RISE)")
def _insertion(model, inputs, targets, maps, output: Output):
    return insertion_auc(model, inputs, targets, relevance(maps, output))


@yardstick("gray_flipping", label="Gray flipping", part="pertmap", higher_is_better=False,
           description="area under the share of flipped decisions as the least relevant pixels turn gray")
def _gray_flipping(model, inputs, targets, maps, output: Output, seed: int = 0):
    changed = grayflip_changes(model, inputs, {"m": relevance(maps, output)}, seed=seed)["m"]
    return curve_areas(changed, tuple(range(0, 101, 5)))


@yardstick("completeness", label="Completeness α", part="roar", higher_is_better=True,
           description="α: the kept pixels' game reaches the class probability (thesis §4.2), target class only")
def _completeness(model, inputs, targets, maps, output: Output):
    return game.scores(model, inputs, targets, relevance(maps, output))["alpha"]


@yardstick("soundness", label="Soundness β", part="roar", higher_is_better=True,
           description="min over labels of β: the map's pixels cannot prove a label the network does not say")
def _soundness(model, inputs, targets, maps, output: Output):
    n_classes = int(model(inputs[:1].to(next(model.parameters()).device)).shape[1])
    labels = game.all_labels(len(inputs), n_classes)
    return game.scores(model, inputs, labels, relevance(maps, output), per_label=False)["beta"].min(1)


@yardstick("fidelity", label="Saliency fidelity", part="decoys", higher_is_better=False,
           description="−log of the class probability of the map-weighted image over the mean-weighted one")
def _fidelity(model, inputs, targets, maps, output: Output):
    return saliency_fidelity(model, inputs, postprocess(relevance(maps, output)), target=targets).numpy()


@yardstick("concentration", label="Concentration (Gini)", part="robust", higher_is_better=True,
           description="Gini index of the pixel relevance: 0 spread evenly, 1 on one pixel")
def _concentration(model, inputs, targets, maps, output: Output):
    return gini(relevance(maps, output))


# -- yardsticks that explain again -----------------------------------------------------------------------

@yardstick("sanity", label="Randomisation similarity", part="roar", higher_is_better=False, needs_explain=True,
           description="|Spearman| of the relevance between the trained and the fully randomised model (low passes)")
def _sanity(model, inputs, targets, maps, explain: Explain, output: Output, seed: int = 0):
    moved = relevance(explain(randomised_model(model, seed=seed), inputs, targets), output)
    rho = similarity(relevance(maps, output), moved, per_image=True)["per_image"]["spearman_abs"]
    # |ρ|: a map that still orders the pixels, either way round, follows the image, not the model; a
    # map the randomised model makes constant keeps nothing of the original: 0
    return np.where(moved.flatten(1).amax(1).numpy() == 0, 0.0, np.abs(rho))


@yardstick("sensitivity", label="Attack sensitivity", part="decoys", higher_is_better=False, needs_explain=True,
           needs=("attacked",),
           description="‖E(x) − E(x̂)‖ / ‖x − x̂‖ under a top-k saliency attack x̂ (given as `attacked`)")
def _sensitivity(model, inputs, targets, maps, explain: Explain, output: Output, attacked: torch.Tensor):
    moved = explain(model, attacked, targets)
    return sensitivity_ratio(postprocess(relevance(maps, output)), postprocess(relevance(moved, output)),
                             inputs, attacked).numpy()


@yardstick("correction", label="Closed-loop correction", part="mpe", higher_is_better=True,
           on="misclassified", needs=("replacement",),
           description="a misclassified image reaches its true class within ε pixel edits, least supportive first")
def _correction(model, inputs, targets, maps, output: Output, replacement: torch.Tensor, eps: int = 10,
                max_tries: int | None = None):
    """The MPE paper's eq. 9 loop for any map: ``inputs`` misclassified, ``targets`` their **true**
    classes, which the maps explain. Pixels are tried from the least supportive of the true class up
    (the paper's ascending MPE): a signed map by the sum of its channels (most negative first), a
    one-signed map by its lowest channel (the paper's pixel rule for MPE). Each is set to its value in
    ``replacement`` (the true class's typical sample), kept only if it raises the true class's
    probability; 1 where the prediction becomes the true class within ``eps`` kept edits."""
    scores = maps.sum(1) if output.signed else maps.amin(1)
    result = closed_loop_correction(model, inputs, targets, scores.float(), replacement, eps=eps,
                                    max_tries=max_tries, progress=False, unit="pixel")
    return result.success.astype(float)
