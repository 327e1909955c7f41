import dataclasses
import json

import pytest
import torch

from salbook import nets, zoo


@pytest.fixture
def tiny_recipe(tmp_data, monkeypatch):
    r = dataclasses.replace(zoo.RECIPES["mnist-cnn2"], name="tiny", epochs={"smoke": 1}, train_size={"smoke": 256}, val_size=100)
    monkeypatch.setitem(zoo.RECIPES, "tiny", r)
    return r


def test_train_cache_and_card(tiny_recipe, monkeypatch):
    first = zoo.get("tiny", "smoke", device="cpu")
    weights, card = zoo.paths("tiny", "smoke")
    assert weights.exists() and card.exists()
    assert json.loads(card.read_text()) == first.card
    for key in ("train_acc", "val_acc", "test_acc", "train_seconds", "device", "data_source", "recipe"):
        assert key in first.card
    assert 0.3 < first.card["test_acc"] <= 1  # 256 digits, one epoch: far above chance (0.1)
    assert not first.model.training

    def fail(*args):
        raise AssertionError("a cached model must not be retrained")

    monkeypatch.setattr(zoo, "train", fail)
    again = zoo.get("tiny", "smoke", device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))


def test_training_is_deterministic(tiny_recipe):
    a = zoo.get("tiny", "smoke", device="cpu").model.state_dict()
    b = zoo.get("tiny", "smoke", device="cpu", retrain=True).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cache_key_depends_on_recipe_and_profile(tiny_recipe):
    other = dataclasses.replace(tiny_recipe, seed=1)
    assert zoo.cache_key(tiny_recipe, "smoke") != zoo.cache_key(other, "smoke")
    assert zoo.cache_key(tiny_recipe, "smoke") != zoo.cache_key(tiny_recipe, "cpu")


def test_weights_load_with_weights_only(tiny_recipe):
    zoo.get("tiny", "smoke", device="cpu")
    state = torch.load(zoo.paths("tiny", "smoke")[0], weights_only=True)
    nets.build("mnist_cnn2").load_state_dict(state)


@pytest.mark.parametrize("architecture", sorted(nets.ARCHITECTURES))
def test_preprocessing_lives_in_the_model_and_relus_are_distinct(architecture):
    model = nets.build(architecture)
    assert isinstance(model[0], (nets.Normalize, nets.SubtractMean))
    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    assert len({id(m) for m in relus}) == len(relus) and not any(m.inplace for m in relus)
    x = torch.rand(2, 1, 28, 28) if architecture.startswith("mnist") else torch.rand(2, 3, 32, 32)
    assert model.eval()(x).shape == (2, 10)


def test_mean_image_is_set_from_the_training_images(tmp_data, monkeypatch):
    r = dataclasses.replace(zoo.RECIPES["cifar-resnet20"], name="tiny-res", epochs={"smoke": 1},
                            train_size={"smoke": 64}, val_size=100)
    monkeypatch.setitem(zoo.RECIPES, "tiny-res", r)
    model = zoo.get("tiny-res", "smoke", device="cpu").model
    from salbook import data
    idx, _ = zoo.split_indices(50000, 100, r.seed)
    expected = data.to_input(data.cifar10("train").x[idx[:64]]).mean(0, keepdim=True)
    assert torch.allclose(model[0].mean, expected)


def test_augment_is_seeded_and_shape_preserving():
    x = torch.rand(8, 3, 32, 32)
    a = zoo.augment(x, torch.Generator().manual_seed(3))
    b = zoo.augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown zoo model"):
        zoo.get("resnet-9000", "smoke")
    with pytest.raises(ValueError, match="unknown architecture"):
        nets.build("nope")
    with pytest.raises(ValueError, match="unknown profile"):
        zoo.get("mnist-cnn2", "gpu")
