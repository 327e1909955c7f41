"""Standard attribution baselines, all with one verb: ``attribute(inputs, target)``. The gradient,
Integrated Gradients and the SmoothGrad family are :mod:`salbook.methods.gradients` (their methods also
give the differentiable map, ``saliency``, that saliency attacks need); the others wrap Captum or zennit.

Every method returns the **signed, raw** map shaped like the inputs; taking absolute values, squaring,
reducing over colour channels and normalising are evaluation choices made by the yardstick or the
figure that uses the map (``postprocess``), never silently here. Conventions, stated once:

* inputs are images in [0, 1] (normalisation lives in the model), so SmoothGrad's noise σ = 0.15 is
  the usual 15 % of the input range;
* Integrated Gradients and DeepLIFT use the black image as baseline; IG integrates with Captum's
  default rule, Gauss–Legendre, over 50 steps;
* Occlusion slides a window over all channels and replaces it with ``baseline`` (0 by default).

``make(name, model, **options)`` builds a method by name; :data:`NAMES` lists them.
"""
from __future__ import annotations

import copy

import torch
from captum import attr as captum
from captum.attr._utils import lrp_rules

from ..checks import check_inputs, targets_or_prediction
from . import gradients


class AttributionMethod:
    """Shared checking for every method here: validated inputs and targets, maps on the CPU. (Not named
    "Baseline": in attribution that word means the reference input of IG, DeepLIFT and occlusion.)"""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def attribute(self, inputs: torch.Tensor, target=None) -> torch.Tensor:
        """Maps of ``target`` (a class, or one per image; None: each image's predicted class)."""
        check_inputs(inputs)
        device = next(self.model.parameters()).device
        x = inputs.detach().to(device)
        targets = targets_or_prediction(self.model, x, target).to(device)
        return self._attribute(x, targets).detach().cpu()

    def _attribute(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class DifferentiableMethod(AttributionMethod):
    """A method whose map is a differentiable function of the input (:mod:`~salbook.methods.gradients`):
    ``saliency(x, target, create_graph=False)`` is that map on the model's device, the one
    ``attribute`` returns and the one a saliency attack differentiates; ``with_model(m)`` is the
    same method, same options, on another model (the attack's smooth copy of the network)."""

    def saliency(self, x: torch.Tensor, target, create_graph: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def with_model(self, model: torch.nn.Module) -> DifferentiableMethod:
        other = copy.copy(self)
        other.model = model
        return other

    def _attribute(self, inputs, targets):
        return self.saliency(inputs, targets)


class Gradient(DifferentiableMethod):
    """∂f_target/∂x (Simonyan et al. 2013), signed (:func:`~salbook.methods.gradients.gradient`; equal to
    Captum's ``Saliency`` with ``abs=False``)."""

    def saliency(self, x, target, create_graph=False):
        return gradients.gradient(self.model, x, target, create_graph)


class InputXGradient(AttributionMethod):
    """x ⊙ ∂f_target/∂x."""

    def _attribute(self, inputs, targets):
        return captum.InputXGradient(self.model).attribute(inputs, target=targets)


class GuidedBackprop(AttributionMethod):
    """Guided backpropagation (Springenberg et al. 2015): only positive gradients through ReLUs."""

    def _attribute(self, inputs, targets):
        return captum.GuidedBackprop(self.model).attribute(inputs, target=targets)


class DeconvNet(AttributionMethod):
    """DeconvNet (Zeiler & Fergus 2014): ReLU applied to the backward signal."""

    def _attribute(self, inputs, targets):
        return captum.Deconvolution(self.model).attribute(inputs, target=targets)


class IntegratedGradients(DifferentiableMethod):
    """Integrated Gradients (Sundararajan et al. 2017) from the black image, ``n_steps`` Gauss–Legendre
    nodes (:func:`~salbook.methods.gradients.integrated_gradients`; Captum's default rule), in forward
    passes of about ``internal_batch_size`` rows."""

    def __init__(self, model, n_steps: int = 50, internal_batch_size: int = 256):
        super().__init__(model)
        self.n_steps, self.internal_batch_size = n_steps, internal_batch_size

    def saliency(self, x, target, create_graph=False):
        return gradients.integrated_gradients(self.model, x, target, self.n_steps, create_graph=create_graph,
                                              rows=self.internal_batch_size)


SMOOTHGRAD_KINDS = {"smoothgrad": "mean", "smoothgrad_sq": "square", "vargrad": "var"}  # kind → reduce


class SmoothGrad(DifferentiableMethod):
    """SmoothGrad (Smilkov et al. 2017) and its variants (:func:`~salbook.methods.gradients.smoothgrad`).

    ``kind``: ``"smoothgrad"`` (mean of noisy gradients), ``"smoothgrad_sq"`` (mean of their squares:
    ROAR's SG-SQ) or ``"vargrad"`` (their variance). σ = ``noise`` × input range (1 for [0, 1] images).

    The noise is seeded: every call draws it from ``seed`` (the caller's random state is left as it was),
    so a batch's maps do not depend on what ran before in the process, nor on the other images of the
    batch (they share the noise draws). Forward passes of about ``rows`` noisy copies.
    """

    def __init__(self, model, kind: str = "smoothgrad", samples: int = 15, noise: float = 0.15, rows: int = 256,
                 seed: int = 0):
        if kind not in SMOOTHGRAD_KINDS:
            raise ValueError(f"unknown SmoothGrad kind {kind!r}: choose smoothgrad, smoothgrad_sq or vargrad")
        super().__init__(model)
        self.kind, self.samples, self.noise, self.rows, self.seed = kind, samples, noise, rows, seed

    def saliency(self, x, target, create_graph=False):
        return gradients.smoothgrad(self.model, x, target, self.samples, self.noise, self.seed, create_graph,
                                    reduce=SMOOTHGRAD_KINDS[self.kind], rows=self.rows)


class DeepLift(AttributionMethod):
    """DeepLIFT (Shrikumar et al. 2017), rescale rule, black baseline."""

    def _attribute(self, inputs, targets):
        return captum.DeepLift(self.model).attribute(inputs, baselines=torch.zeros_like(inputs), target=targets)


class LRP(AttributionMethod):
    """Layer-wise relevance propagation (Bach et al. 2015), Captum's ε-rule on every layer.

    The model's preprocessing layer and ``Flatten`` pass relevance through unchanged (identity rule;
    for ``Flatten`` reshaped back to the input's shape, which Captum's own identity rule does not do).
    Works on sequential networks; Captum's LRP does not handle residual additions.
    """

    def __init__(self, model):
        from ..nets import Normalize, SubtractMean

        model = copy.deepcopy(model)  # the rules are attributes on the modules: keep the caller's model clean
        for m in model.modules():
            if isinstance(m, (Normalize, SubtractMean)):
                m.rule = lrp_rules.IdentityRule()
            elif isinstance(m, torch.nn.Flatten):
                m.rule = _ReshapeRule()
        super().__init__(model)

    def _attribute(self, inputs, targets):
        try:
            return captum.LRP(self.model).attribute(inputs, target=targets)
        except (TypeError, AttributeError) as error:  # Captum: a module without a rule (a residual Identity)
            raise ValueError("LRP cannot propagate relevance through this network: Captum's rules need a "
                             "sequential network of layers it has rules for, without residual additions "
                             f"(Captum: {str(error)[:90]}); use another method") from error


class ExcitationBackprop(AttributionMethod):
    """Excitation backprop (Zhang et al. 2018): the marginal winning probability (MWP) of every input
    pixel, through zennit's ``ExcitationBackprop`` composite.

    A probabilistic winner-take-all signal starts as probability 1 on the target logit and is passed
    down layer by layer: neuron *j* hands its probability to the inputs *i* in proportion to their
    excitatory contribution ``a_i w_ij⁺`` (zennit's z⁺ rule; biases are left out, as in the paper, so
    every layer conserves the total probability); max-pooling passes it to the winner (the gradient)
    and ReLUs pass it unchanged. The map is therefore **non-negative and sums to 1** over the input's
    pixels and channels, up to zennit's stabiliser (1e-6). Batch norms are merged into the
    convolution before them (zennit's ``SequentialMergeBatchNorm``); the model's preprocessing layer
    (``Normalize``, ``SubtractMean``) passes the probabilities through unchanged, like the LRP
    baseline's. The first convolution sees normalised, signed pixels: zennit's z⁺ rule then counts
    both excitatory products, ``x⁺ w⁺`` and ``x⁻ w⁻``.

    ``contrastive=True`` gives Zhang et al.'s contrastive MWP: the MWP of the target minus that of its
    *dual*, a unit whose weights in the last linear layer are the target's, negated. Both maps sum to
    1, so the difference sums to 0; Zhang et al. show its positive part. (Where every active unit below
    the last linear layer excites the target, the dual has no excitatory input, its MWP is empty and
    the contrastive map is the MWP map itself, summing to 1.) Works on sequential networks;
    residual additions written as ``+`` (this library's ResNets) receive the plain gradient, which
    does not conserve the total.

    Args:
        model: the classifier (left unchanged: the method works on a copy).
        contrastive: return the contrastive MWP (default ``False``).
        stabilizer: zennit's denominator stabiliser (default ``1e-6``).

    Example::

        >>> import torch
        >>> from salbook import nets
        >>> from salbook.methods.baselines import make
        >>> model = nets.build("mnist_cnn2").eval()
        >>> m = make("excitation_backprop", model).attribute(torch.rand(2, 1, 28, 28), target=3)
        >>> m.shape, bool((m >= 0).all())
        (torch.Size([2, 1, 28, 28]), True)
    """

    def __init__(self, model, contrastive: bool = False, stabilizer: float = 1e-6):
        from zennit.canonizers import SequentialMergeBatchNorm
        from zennit.composites import ExcitationBackprop as Composite
        from zennit.rules import Pass
        from zennit.types import BatchNorm

        from ..nets import Normalize, SubtractMean

        super().__init__(copy.deepcopy(model).eval())  # canonizer and hooks act on a copy
        self.contrastive = contrastive
        self.composite = lambda: Composite(
            stabilizer=stabilizer, zero_params=["bias"], canonizers=[SequentialMergeBatchNorm()],
            layer_map=[((Normalize, SubtractMean), Pass()), (BatchNorm, Pass())])
        self.dual = None
        if contrastive:
            self.dual = copy.deepcopy(self.model)
            linears = [m for m in self.dual.modules() if isinstance(m, torch.nn.Linear)]
            if not linears:
                raise ValueError("contrastive excitation backprop needs a final nn.Linear layer")
            with torch.no_grad():
                linears[-1].weight.neg_()

    def _mwp(self, model, inputs, targets):
        from zennit.attribution import Gradient

        onehot = torch.nn.functional.one_hot(targets, self._classes(model, inputs)).to(inputs.dtype)
        with Gradient(model, self.composite()) as attributor:
            _, relevance = attributor(inputs.clone().requires_grad_(True), onehot)
        return relevance

    @staticmethod
    def _classes(model, inputs):
        with torch.no_grad():
            return model(inputs[:1]).shape[1]

    def _attribute(self, inputs, targets):
        mwp = self._mwp(self.model, inputs, targets)
        return mwp - self._mwp(self.dual, inputs, targets) if self.contrastive else mwp


class Occlusion(AttributionMethod):
    """Occlusion (Zeiler & Fergus 2014): the drop of the target output when a window is replaced."""

    def __init__(self, model, window: int = 2, stride: int = 1, baseline: float = 0.0):
        super().__init__(model)
        self.window, self.stride, self.baseline = window, stride, baseline

    def _attribute(self, inputs, targets):
        # Captum evaluates perturbations_per_eval windows of *every* image in one forward pass: keep the
        # pass near 64 rows, whatever the batch (thousands of rows run several times slower on a CPU).
        c = inputs.shape[1]
        return captum.Occlusion(self.model).attribute(
            inputs, sliding_window_shapes=(c, self.window, self.window), strides=(c, self.stride, self.stride),
            baselines=self.baseline, target=targets, perturbations_per_eval=max(1, 64 // len(inputs)))


def last_conv(model: torch.nn.Module) -> torch.nn.Module:
    """The last convolution of ``model``."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise ValueError("Grad-CAM needs a convolutional layer; this model has none")
    return convs[-1]


def gradcam_layer(model: torch.nn.Module) -> torch.nn.Module:
    """Grad-CAM's default layer: the first ReLU after the last convolution, i.e. the rectified feature
    maps Aᵏ (the original code reads VGG16's ``relu5_3``; in this library's ResNets, the last block's
    output). The raw convolution output can make Σ αₖAᵏ negative everywhere and the map empty."""
    modules = list(model.modules())
    after = modules[modules.index(last_conv(model)) + 1:]
    return next((m for m in after if isinstance(m, torch.nn.ReLU)), last_conv(model))


class GradCAM(AttributionMethod):
    """Grad-CAM (Selvaraju et al. 2017) at the rectified last convolutional layer (:func:`gradcam_layer`)
    unless ``layer`` is given, ReLU of the weighted activations, upsampled bilinearly to the input and
    repeated over its channels (so the map is shaped like it)."""

    def __init__(self, model, layer: torch.nn.Module | None = None):
        super().__init__(model)
        self.layer = layer or gradcam_layer(model)

    def _attribute(self, inputs, targets):
        cam = captum.LayerGradCam(self.model, self.layer).attribute(inputs, target=targets, relu_attributions=True)
        cam = captum.LayerAttribution.interpolate(cam, tuple(inputs.shape[2:]), "bilinear")
        return cam.expand_as(inputs).clone()


class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM map (Captum's ``GuidedGradCam``)."""

    def _attribute(self, inputs, targets):
        return captum.GuidedGradCam(self.model, self.layer).attribute(inputs, target=targets, interpolate_mode="bilinear")


class _ReshapeRule(lrp_rules.IdentityRule):
    """Identity rule for a layer that only reshapes (``Flatten``): relevance keeps its values."""

    def _create_backward_hook_input(self, inputs):
        def _backward_hook_input(grad):
            return self.relevance_output[grad.device].reshape(grad.shape)

        return _backward_hook_input


METHODS = {
    "gradient": Gradient,
    "input_x_gradient": InputXGradient,
    "guided_backprop": GuidedBackprop,
    "deconvnet": DeconvNet,
    "integrated_gradients": IntegratedGradients,
    "smoothgrad": SmoothGrad,
    "smoothgrad_sq": lambda model, **kw: SmoothGrad(model, kind="smoothgrad_sq", **kw),
    "vargrad": lambda model, **kw: SmoothGrad(model, kind="vargrad", **kw),
    "deeplift": DeepLift,
    "lrp": LRP,
    "occlusion": Occlusion,
    "gradcam": GradCAM,
    "guided_gradcam": GuidedGradCAM,
    "excitation_backprop": ExcitationBackprop,
}
NAMES = tuple(METHODS)


def make(name: str, model: torch.nn.Module, **options) -> AttributionMethod:
    """Build the baseline ``name`` for ``model``."""
    if name not in METHODS:
        raise ValueError(f"unknown attribution method {name!r}: choose one of {', '.join(NAMES)}")
    return METHODS[name](model, **options)
