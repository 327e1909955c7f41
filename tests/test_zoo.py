import dataclasses
import json

import pytest
import torch

from salbook import nets, zoo
from salbook.storage import sha256_file


@pytest.fixture
def tiny_recipe(tmp_models, monkeypatch):
    r = dataclasses.replace(zoo.RECIPES["mnist-cnn2"], name="tiny", epochs={"smoke": 1}, train_size={"smoke": 256}, val_size=100,
                            batch_size=32, lr=1e-3, schedule="constant")  # eight steps, whatever mnist-cnn2's schedule is
    monkeypatch.setitem(zoo.RECIPES, "tiny", r)
    return r


def test_train_cache_and_card(tiny_recipe, monkeypatch):
    first = zoo.get("tiny", "smoke", device="cpu")
    weights, card = zoo.paths("tiny", "smoke")
    assert weights.exists() and card.exists()
    assert json.loads(card.read_text()) | {"origin": "trained"} == first.card
    for key in ("train_acc", "val_acc", "test_acc", "test_size", "train_seconds", "device", "data_source", "recipe"):
        assert key in first.card
    assert 0.3 < first.card["test_acc"] <= 1 and first.card["test_size"] == zoo.TEST_SIZE["smoke"]  # far above chance (0.1)
    assert not first.model.training

    def fail(*args):
        raise AssertionError("a cached model must not be retrained")

    monkeypatch.setattr(zoo, "train", fail)
    again = zoo.get("tiny", "smoke", device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))


def test_the_card_is_tied_to_its_weights(tiny_recipe):
    first = zoo.get("tiny", "smoke", device="cpu")
    weights, _ = zoo.paths("tiny", "smoke")
    assert first.card["weights_sha256"] == sha256_file(weights) and first.card["origin"] == "trained"
    state = torch.load(weights, weights_only=True)
    state["fc.weight" if "fc.weight" in state else next(iter(state))].add_(1.0)
    torch.save(state, weights)  # a weights file that no longer matches its card
    with pytest.warns(UserWarning, match="does not match its card"):
        again = zoo.get("tiny", "smoke", device="cpu")  # the cache entry is rebuilt
    assert again.card["weights_sha256"] == sha256_file(weights)
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))


def test_a_committed_checkpoint_is_loaded_instead_of_training(tiny_recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("SALBOOK_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setattr(zoo, "git_commit", lambda: "abc123")
    published = zoo.publish("tiny", "smoke")
    assert published == zoo.checkpoint_paths("tiny", "smoke")[0] and published.exists()
    monkeypatch.setenv("SALBOOK_DATA", str(tmp_path / "fresh-clone-data"))  # an empty cache, as in a fresh clone

    def fail(*args):
        raise AssertionError("a model with a valid checkpoint must not be trained")

    with monkeypatch.context() as m:
        m.setattr(zoo, "train", fail)
        loaded = zoo.get("tiny", "smoke", device="cpu")
    assert loaded.card["origin"] == "checkpoint" and loaded.card["git_commit"] == "abc123"
    assert zoo.loaded()[-1]["origin"] == "checkpoint"

    monkeypatch.setenv("SALBOOK_RETRAIN", "1")  # make book RETRAIN=1
    assert zoo.get("tiny", "smoke", device="cpu").card["origin"] == "trained"


def test_a_damaged_or_stale_checkpoint_is_never_used_silently(tiny_recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("SALBOOK_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setattr(zoo, "git_commit", lambda: "abc123")
    weights = zoo.publish("tiny", "smoke")
    monkeypatch.setenv("SALBOOK_DATA", str(tmp_path / "fresh"))
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    with pytest.raises(zoo.WeightsMismatchError, match=r"git checkout -- .*tiny\.pt.*SALBOOK_RETRAIN=1"):
        zoo.get("tiny", "smoke", device="cpu")
    card = zoo.checkpoint_paths("tiny", "smoke")[1]
    text = card.read_text()
    card.write_text(text[:20])  # a half-written card
    with pytest.raises(ValueError, match=r"card .* is not valid JSON.*git checkout --"):
        zoo.get("tiny", "smoke", device="cpu")
    card.write_text(text)
    monkeypatch.setitem(zoo.RECIPES, "tiny", dataclasses.replace(tiny_recipe, lr=0.5))  # the recipe moved on
    with pytest.warns(UserWarning, match="trained from another recipe"):
        assert zoo.get("tiny", "smoke", device="cpu").card["origin"] == "trained"


def test_publishing_refuses_models_trained_from_uncommitted_code(tiny_recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("SALBOOK_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setattr(zoo, "git_commit", lambda: "abc123+dirty")
    with pytest.raises(ValueError, match="uncommitted code"):
        zoo.publish("tiny", "smoke")


@pytest.mark.parametrize("schedule", zoo.SCHEDULES)
def test_learning_rate_schedules(schedule):
    f = zoo.lr_factor(schedule, steps=100)
    values = [f(step) for step in range(101)]
    assert all(0 <= v <= 1 for v in values)
    if schedule == "constant":
        assert set(values) == {1.0}
    elif schedule == "cosine":
        assert values[0] == 1 and values[-1] < 1e-12 and all(a >= b for a, b in zip(values, values[1:]))
    else:  # onecycle: warm-up from 0.1 to the peak over the first 20 %, then linear decay to 0
        assert values[0] == pytest.approx(0.1) and max(values) == values[20] == 1 and values[-1] == 0
    with pytest.raises(ValueError, match="unknown schedule"):
        zoo.lr_factor("step", 10)


def test_training_is_deterministic(tiny_recipe):
    a = zoo.get("tiny", "smoke", device="cpu").model.state_dict()
    b = zoo.get("tiny", "smoke", device="cpu", retrain=True).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cache_key_depends_on_recipe_and_profile(tiny_recipe):
    other = dataclasses.replace(tiny_recipe, seed=1)
    assert zoo.cache_key(tiny_recipe, "smoke") != zoo.cache_key(other, "smoke")
    assert zoo.cache_key(tiny_recipe, "smoke") != zoo.cache_key(tiny_recipe, "cpu")
    longer_full = dataclasses.replace(tiny_recipe, epochs={"smoke": 1, "full": 99})
    assert zoo.cache_key(longer_full, "smoke") == zoo.cache_key(tiny_recipe, "smoke")  # other profiles' values don't count


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


def test_mean_image_is_set_from_the_training_images(tmp_models, monkeypatch):
    r = dataclasses.replace(zoo.RECIPES["cifar-resnet50"], name="tiny-res", epochs={"smoke": 1},
                            train_size={"smoke": 64}, val_size=100)
    monkeypatch.setitem(zoo.RECIPES, "tiny-res", r)
    monkeypatch.setattr(zoo, "fit", lambda *args, **kw: 0.0)  # the mean is set before training starts
    monkeypatch.setattr(zoo, "accuracy", lambda *args: 0.0)  # a ResNet-50 on 10,000 test images is not the point
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
