"""Adversarial training in the zoo: a recipe's ``adversarial`` field makes ``fit`` train on pgd_l2 examples."""
import dataclasses

import torch

from salbook import attacks, nets, zoo


def test_robust_recipe_differs_from_its_normal_counterpart_only_in_the_attack():
    robust, normal = zoo.RECIPES["cifar-resnet8-l2robust"], zoo.RECIPES["cifar-resnet8"]
    assert robust.adversarial["eps"] == 0.5 and normal.adversarial is None
    same = dataclasses.replace(robust, name=normal.name, adversarial=None, notes=normal.notes, paper=normal.paper)
    assert same == normal
    assert zoo.cache_key(robust, "smoke") != zoo.cache_key(normal, "smoke")


def test_fit_trains_on_pgd_l2_examples_of_each_augmented_batch(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 3, 32, 32, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    r = dataclasses.replace(zoo.RECIPES["cifar-resnet8"], batch_size=32, adversarial=dict(
        eps=0.5, steps=2, step_size=0.3, random_start=True))
    calls = []

    def spy(model, inputs, labels, **kwargs):
        calls.append((model.training, tuple(inputs.shape), kwargs))
        adv = attacks.pgd_l2(model, inputs, labels, **kwargs)
        assert ((adv - inputs).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all() and not torch.equal(adv, inputs)
        return adv

    monkeypatch.setattr(zoo, "pgd_l2", spy)
    weights = []
    for recipe in (r, r, dataclasses.replace(r, adversarial=None)):
        torch.manual_seed(0)  # the same initial weights for all three runs
        model = nets.build("cifar_resnet8")
        zoo.fit(model, x, y, recipe, epochs=1, progress=False)
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert len(calls) == 4  # two batches, two adversarial runs; none in the normal run
    assert all(training and shape == (32, 3, 32, 32) and kw["eps"] == 0.5 for training, shape, kw in calls)
    assert torch.equal(weights[0], weights[1])  # seeded: the random starts come from fit's generator
    assert not torch.allclose(weights[0], weights[2])
