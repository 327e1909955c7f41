import pytest
import torch

from salbook.yardsticks.attack import salt_and_pepper_attack


@pytest.fixture
def brightness(linear_model):
    """Class 0's logit sums a 2x2 RGB image's 12 values; class 1 has a constant logit 4.5."""
    return linear_model(torch.stack([torch.ones(12), torch.zeros(12)]), torch.tensor([0.0, 4.5]))


def test_known_answer_and_prefix_probabilities(brightness):
    x = torch.full((1, 3, 2, 2), 0.5)  # logit 6 > 4.5: class 0
    scores = torch.tensor([[[0.1, 0.9], [0.5, 0.3]]])  # order: pixel 1, 2, 3, 0
    res = salt_and_pepper_attack(brightness, x, 0, scores, torch.zeros(1, 2, 2, dtype=torch.bool), budget=4, progress=False)
    assert res.success.tolist() == [True] and res.n_changed.tolist() == [2]  # 6 - 1.5 = 4.5 ties (argmax 0); 3 < 4.5
    assert res.pixels[0].tolist() == [1, 2, 3, 0]
    assert res.probs.shape == (1, 5, 2)
    assert torch.equal(res.adversarial[0, :, 0, 1], torch.zeros(3))  # the top two pixels painted black
    assert torch.equal(res.adversarial[0, :, 1, 0], torch.zeros(3))
    assert torch.equal(res.adversarial[0, :, 1, 1], torch.full((3,), 0.5))  # the others untouched
    assert torch.allclose(res.probs[0, 1], torch.tensor([0.5, 0.5]))


def test_salt_moves_the_other_way_and_budget_limits(brightness):
    x = torch.full((2, 3, 2, 2), 0.2)  # logit 2.4 < 4.5: class 1
    scores = torch.rand(2, 2, 2, generator=torch.Generator().manual_seed(0))
    pepper = torch.zeros(2, 2, 2, dtype=torch.bool)
    res = salt_and_pepper_attack(brightness, x, 1, scores, pepper, budget=4, progress=False)
    assert res.success.tolist() == [False, False] and res.n_changed.tolist() == [4, 4]
    assert torch.equal(res.adversarial, x)  # a failed attack returns the original
    res = salt_and_pepper_attack(brightness, x, 1, scores, ~pepper, budget=4, batch_size=3, progress=False)
    assert res.n_changed.tolist() == [1, 1]  # one white pixel: 2.4 + 3 * 0.8 = 4.8 > 4.5


def test_bad_arguments(brightness):
    x = torch.zeros(1, 3, 2, 2)
    with pytest.raises(ValueError, match="shaped"):
        salt_and_pepper_attack(brightness, x, 0, torch.zeros(1, 4), torch.zeros(1, 2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="budget"):
        salt_and_pepper_attack(brightness, x, 0, torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool), budget=5)
    with pytest.raises(ValueError, match="NaN"):
        salt_and_pepper_attack(brightness, x, 0, torch.full((1, 2, 2), float("nan")), torch.zeros(1, 2, 2, dtype=torch.bool))


def test_stopping_at_success_and_blocks_do_not_change_the_result(cnn):
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(6, 3, 16, 16, generator=gen)
    with torch.no_grad():
        label = cnn(x).argmax(1)
    scores, salt = torch.rand(6, 16, 16, generator=gen), torch.rand(6, 16, 16, generator=gen) < 0.5
    whole = salt_and_pepper_attack(cnn, x, label, scores, salt, budget=40, until_success=False, progress=False)
    assert not whole.probs.isnan().any()
    assert whole.success.any() and not whole.success.all()  # the case tests both outcomes
    for block in (1, 3, 64):
        res = salt_and_pepper_attack(cnn, x, label, scores, salt, budget=40, block=block, batch_size=5, progress=False)
        assert (res.success == whole.success).all() and (res.n_changed == whole.n_changed).all()
        assert torch.equal(res.adversarial, whole.adversarial) and torch.equal(res.pixels, whole.pixels)
        evaluated = ~res.probs[:, :, 0].isnan()
        torch.testing.assert_close(res.probs[evaluated], whole.probs[evaluated])
        for k in range(6):  # every prefix up to the first change of label is evaluated
            assert evaluated[k, : whole.n_changed[k] + 1].all()
            if whole.success[k] and block == 1:
                assert not evaluated[k, whole.n_changed[k] + 1:].any()
