"""salbook.methods.registry: every method of the book under one name, with one verb and a declared output."""
import numpy as np
import pytest
import torch

from salbook import nets
from salbook.methods import registry

# the smallest settings that still run each method's algorithm
FAST = {
    "smoothgrad": dict(samples=3), "smoothgrad_sq": dict(samples=3), "vargrad": dict(samples=3),
    "integrated_gradients": dict(n_steps=4), "occlusion": dict(window=8, stride=8),
    "stochastic_pertmap": dict(iterations=3, samples=2),
    "decoy_gradient": dict(steps=3, patch=8), "decoy_smoothgrad": dict(steps=3, patch=8, base_options=dict(samples=2)),
    "decoy_integrated_gradients": dict(steps=3, patch=8, base_options=dict(n_steps=3)),
    "counterfactual_l1q": dict(steps=3),
}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return nets.build("cifar_cnn4").eval()


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (2, 3, 32, 32), generator=gen).float() / 255  # on MPE's 1/255 grid


@pytest.fixture(scope="module")
def sampling():
    return np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)


def options(name, sampling):
    return {"sampling": sampling, "undefined": 0.0} if name == "mpe" else FAST.get(name, {})


def test_the_book_has_every_method_the_issue_lists():
    assert len(registry.names()) >= 20
    assert {"gradient", "deconvnet", "guided_backprop", "gradcam", "guided_gradcam", "smoothgrad", "smoothgrad_sq",
            "vargrad", "integrated_gradients", "lrp", "deeplift", "occlusion", "excitation_backprop", "mpe",
            "stochastic_pertmap", "lp_pertmap", "decoy_gradient", "decoy_smoothgrad", "decoy_integrated_gradients",
            "counterfactual_l1q", "random"} <= set(registry.names())
    assert {registry.entry(n).part for n in registry.names()} == {"roar", "mpe", "pertmap", "decoys", "robust",
                                                                  "common"}


@pytest.mark.parametrize("name", registry.names())
def test_every_method_returns_finite_maps_shaped_like_the_inputs(name, model, images, sampling):
    torch.manual_seed(0)
    method = registry.make(name, model, **options(name, sampling))
    maps = method.attribute(images, target=torch.tensor([1, 2]))
    assert maps.shape == images.shape and maps.dtype == torch.float32 and maps.device.type == "cpu"
    assert torch.isfinite(maps).all()
    output = registry.entry(name).output
    if not output.signed:
        assert (maps >= 0).all() or (maps <= 0).all(), f"{name} declares one sign"
    if output.resolution == "pixel":
        assert torch.equal(maps, maps[:, :1].expand_as(maps)), f"{name} declares one value per pixel"


def test_target_defaults_to_the_prediction(model, images, sampling):
    predicted = model(images).argmax(1)
    for name in ("gradient", "mpe"):
        method = registry.make(name, model, **options(name, sampling))
        assert torch.equal(method.attribute(images), method.attribute(images, target=predicted))


def test_random_is_seeded_and_ignores_the_model(images):
    one, two = registry.make("random", None, seed=3), registry.make("random", None, seed=3)
    assert torch.equal(one.attribute(images), two.attribute(images))
    assert not torch.equal(one.attribute(images), registry.make("random", None, seed=4).attribute(images))


def test_a_registered_method_is_built_by_name_and_listed(model, images):
    @registry.register("toy", label="Toy", part="common", output=registry.Output(signed=False),
                       description="the image itself")
    class Toy:
        def __init__(self, model, scale=1.0):
            self.scale = scale

        def attribute(self, inputs, target=None):
            return inputs * self.scale

    try:
        assert "toy" in registry.names() and "toy" in registry.names(part="common")
        assert torch.equal(registry.make("toy", model, scale=2.0).attribute(images), images * 2)
        with pytest.raises(ValueError, match="registered already"):
            registry.register("toy", label="x", part="common", output=registry.Output(signed=False), description="")(Toy)
    finally:
        registry.unregister("toy")
    assert "toy" not in registry.names()


def test_bad_names_and_outputs_are_refused(model):
    with pytest.raises(ValueError, match="unknown saliency method 'gradients'.*choose one of gradient"):
        registry.make("gradients", model)
    with pytest.raises(ValueError, match="resolution"):
        registry.Output(signed=True, resolution="patch")
    with pytest.raises(ValueError, match="MPE needs its table"):
        registry.make("mpe", model)


def test_explain_in_batches_gives_the_maps_of_one_call(model, images):
    inputs = torch.cat([images] * 3)  # 6 images: batches of 4 and 2
    targets = torch.tensor([0, 1, 2, 3, 4, 5])
    gradient = registry.make("gradient", model)
    maps = registry.explain(gradient, inputs, targets, batch_size=4)
    assert maps.shape == inputs.shape
    assert torch.allclose(maps, gradient.attribute(inputs, target=targets), atol=1e-6)
    # a seeded method's generator runs on across batches: the same draws as one call
    assert torch.equal(registry.explain(registry.make("random", model, seed=5), inputs, batch_size=4),
                       registry.make("random", model, seed=5).attribute(inputs))


def test_explain_targets_default_to_the_prediction_and_a_class_is_broadcast(model, images):
    gradient = registry.make("gradient", model)
    predicted = model(images).argmax(1)
    assert torch.equal(registry.explain(gradient, images, batch_size=1),
                       registry.explain(gradient, images, predicted, batch_size=1))
    assert torch.equal(registry.explain(gradient, images, 3, batch_size=1),
                       registry.explain(gradient, images, torch.tensor([3, 3]), batch_size=1))


def test_explain_refuses_bad_batches_and_inputs(model, images):
    gradient = registry.make("gradient", model)
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        registry.explain(gradient, images, batch_size=0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        registry.explain(gradient, images[0])
    with pytest.raises(ValueError, match="one class per input"):
        registry.explain(gradient, images, torch.tensor([1, 2, 3]))


def test_random_is_uniform_per_entry(images):
    maps = registry.make("random", None, seed=0).attribute(torch.zeros(200, 3, 8, 8))
    assert maps.min() >= 0 and maps.max() < 1 and abs(maps.mean().item() - 0.5) < 0.01
    assert not torch.equal(maps[:, 0], maps[:, 1])  # the channels are drawn independently
