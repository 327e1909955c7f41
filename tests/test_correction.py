import numpy as np
import pytest
import torch

from salbook.yardsticks import closed_loop_correction


@pytest.fixture
def counter(linear_model):
    """Class 0's logit counts the bright pixels of a 1x4 image; class 1 has a constant logit 2.5."""
    return linear_model(torch.tensor([[1.0, 1, 1, 1], [0, 0, 0, 0]]), torch.tensor([0.0, 2.5]))


def run(model, replacement, eps=10, max_tries=None, chunk=2):
    x = torch.zeros(1, 1, 1, 4)
    scores = torch.tensor([0.4, 0.1, 0.3, 0.2]).view(1, 1, 1, 4)  # ascending order: dims 1, 3, 2, 0
    rep = torch.tensor(replacement).view(1, 1, 1, 4)
    return closed_loop_correction(model, x, 0, scores, rep, eps=eps, max_tries=max_tries, chunk=chunk, progress=False)


def test_known_answer(counter):
    res = run(counter, [1.0, 1, 1, 1])
    assert res.success.tolist() == [True] and res.n_replaced.tolist() == [3]
    assert [s[0] for s in res.steps[0]] == [1, 3, 2]  # lowest scores first
    assert res.inputs.flatten().tolist() == [0, 1, 1, 1]


def test_budget_eps_is_respected(counter):
    res = run(counter, [1.0, 1, 1, 1], eps=2)
    assert res.success.tolist() == [False] and res.n_replaced.tolist() == [2]


def test_non_improving_replacements_are_not_kept(counter):
    res = run(counter, [1.0, 0, 1, 1])  # dim 1 would stay 0: no improvement, not kept
    assert [s[0] for s in res.steps[0]] == [3, 2, 0] and res.success.tolist() == [True]
    assert res.n_tried.tolist() == [4]
    limited = run(counter, [1.0, 0, 1, 1], max_tries=3)  # only the 3 lowest-score dims are candidates
    assert limited.success.tolist() == [False] and limited.n_replaced.tolist() == [2]


def test_already_correct_needs_nothing(counter):
    res = run(counter, [1.0, 1, 1, 1])
    again = closed_loop_correction(counter, res.inputs, 0, torch.zeros(1, 1, 1, 4), torch.zeros(1, 1, 1, 4), progress=False)
    assert again.success.tolist() == [True] and again.n_replaced.tolist() == [0]


def test_chunking_gives_the_sequential_greedy_result(linear_model):
    torch.manual_seed(0)
    model = linear_model(torch.randn(5, 36))
    x, scores, rep = torch.rand(12, 1, 6, 6), torch.rand(12, 1, 6, 6), torch.rand(12, 1, 6, 6)
    target = torch.arange(12) % 5
    results = [closed_loop_correction(model, x, target, scores, rep, eps=6, chunk=c, progress=False) for c in (1, 5, 64)]
    for other in results[1:]:
        assert np.array_equal(other.success, results[0].success)
        assert np.array_equal(other.n_replaced, results[0].n_replaced)
        assert torch.equal(other.inputs, results[0].inputs)
    for k, steps in enumerate(results[0].steps):  # every kept step raised the target probability
        p = [results[0].probs_before[k, target[k]].item()] + [s[3][target[k]].item() for s in steps]
        assert all(b > a for a, b in zip(p, p[1:]))
        assert len(steps) <= 6


def test_bad_arguments(counter):
    x = torch.zeros(1, 1, 1, 4)
    with pytest.raises(ValueError, match="shaped like inputs"):
        closed_loop_correction(counter, x, 0, torch.zeros(1, 4), torch.zeros(1, 1, 1, 4))
    with pytest.raises(ValueError, match="eps"):
        closed_loop_correction(counter, x, 0, x, x, eps=0)
    with pytest.raises(ValueError, match="one class per input"):
        closed_loop_correction(counter, x, [0, 1], x, x)


def test_trajectory_replays_the_kept_steps(counter):
    res = run(counter, [1.0, 1, 1, 1])
    images, probs, changed = res.trajectory(0, torch.zeros(1, 1, 4))
    assert images.shape == (4, 1, 1, 4) and probs.shape == (4, 2)
    assert torch.equal(images[-1], res.inputs[0])
    assert changed[-1] == [(0, 1), (0, 3), (0, 2)]
    assert torch.equal(probs[0], res.probs_before[0])
