import numpy as np
import pytest
import torch

from salbook.yardsticks import closed_loop_correction
from salbook.stats import wilson_size
from salbook.yardsticks.correction import stratified_sample
from salbook.stats import proportion


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


class Counting(torch.nn.Module):
    """Wraps a model and counts the images it is asked to classify."""

    def __init__(self, model):
        super().__init__()
        self.model, self.rows, self.calls = model, 0, 0

    def forward(self, x):
        self.rows += len(x)
        self.calls += 1
        return self.model(x)


@pytest.mark.parametrize("max_tries", [None, 8])
def test_chunking_gives_the_sequential_greedy_result(linear_model, max_tries):
    torch.manual_seed(0)
    model = linear_model(torch.randn(5, 36))
    x, scores, rep = torch.rand(12, 1, 6, 6), torch.rand(12, 1, 6, 6), torch.rand(12, 1, 6, 6)
    rep[:, :, :2] = x[:, :, :2]  # some candidates change nothing and are skipped
    target = torch.arange(12) % 5
    results = [closed_loop_correction(model, x, target, scores, rep, eps=6, max_tries=max_tries, chunk=c,
                                      batch_size=7, progress=False) for c in (1, 5, 64)]
    for other in results[1:]:
        assert np.array_equal(other.success, results[0].success)
        assert np.array_equal(other.n_replaced, results[0].n_replaced)
        assert np.array_equal(other.n_tried, results[0].n_tried)
        assert torch.equal(other.inputs, results[0].inputs)
        assert [[s[:3] for s in steps] for steps in other.steps] == [[s[:3] for s in steps] for steps in results[0].steps]
    for k, steps in enumerate(results[0].steps):  # every kept step raised the target probability
        p = [results[0].probs_before[k, target[k]].item()] + [s[3][target[k]].item() for s in steps]
        assert all(b > a for a, b in zip(p, p[1:]))
        assert len(steps) <= 6


def test_adaptive_chunks_waste_little_and_save_forward_calls(linear_model):
    """chunk=1 is the sequential greedy search: one forward row per candidate tried. The adaptive
    chunk evaluates at most about twice as many rows, in far fewer forward calls, when improving
    candidates are rare (here: only the last 10 of 100 dimensions move class 0's logit)."""
    weight = torch.zeros(2, 100)
    weight[0, 90:] = 1.0
    model = linear_model(weight, torch.tensor([0.0, 10.0]))  # never reached: each image keeps eps = 5
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(20, 1, 10, 10, generator=gen) * 0.5
    scores = torch.rand(20, 1, 10, 10, generator=gen)
    counts = {}
    for c in (1, 64):
        counting = Counting(model)
        res = closed_loop_correction(counting, x, 0, scores, x + 0.5, eps=5, chunk=c, progress=False)
        counts[c] = (counting.rows - len(x), counting.calls)  # minus the first pass over the clean images
        assert (res.n_replaced == 5).all()
    assert counts[1][0] == res.n_tried.sum()
    assert counts[64][0] <= 2 * counts[1][0]
    assert counts[64][1] < counts[1][1] / 3


def test_bad_arguments(counter):
    x = torch.zeros(1, 1, 1, 4)
    with pytest.raises(ValueError, match="must be shaped"):
        closed_loop_correction(counter, x, 0, torch.zeros(1, 4), torch.zeros(1, 1, 1, 4))
    with pytest.raises(ValueError, match="unit"):
        closed_loop_correction(counter, x, 0, x, x, unit="patch")
    with pytest.raises(ValueError, match="eps"):
        closed_loop_correction(counter, x, 0, x, x, eps=0)
    with pytest.raises(ValueError, match="one class per input"):
        closed_loop_correction(counter, x, [0, 1], x, x)
    with pytest.raises(ValueError, match="target classes"):
        closed_loop_correction(counter, x, 2, x, x)  # a 2-class model


def test_trajectory_replays_the_kept_steps(counter):
    res = run(counter, [1.0, 1, 1, 1])
    images, probs, changed = res.trajectory(0, torch.zeros(1, 1, 4))
    assert images.shape == (4, 1, 1, 4) and probs.shape == (4, 2)
    assert torch.equal(images[-1], res.inputs[0])
    assert changed[-1] == [(0, 1), (0, 3), (0, 2)]
    assert torch.equal(probs[0], res.probs_before[0])


@pytest.fixture
def rgb_counter(linear_model):
    """Class 0's logit sums all 3 x 1 x 2 values of an RGB image; class 1 has a constant logit 2.5."""
    return linear_model(torch.tensor([[1.0] * 6, [0.0] * 6]), torch.tensor([0.0, 2.5]))


def test_pixel_unit_sets_all_channels_of_a_pixel(rgb_counter):
    x = torch.zeros(1, 3, 1, 2)
    rep = torch.ones(1, 3, 1, 2)
    pixel = closed_loop_correction(rgb_counter, x, 0, torch.tensor([[[0.9, 0.1]]]), rep, eps=10, unit="pixel",
                                   progress=False)
    assert pixel.success.tolist() == [True] and pixel.n_replaced.tolist() == [1]  # one pixel: logit 3 > 2.5
    dim, old, new, _ = pixel.steps[0][0]
    assert dim == 1 and old.tolist() == [0, 0, 0] and new.tolist() == [1, 1, 1]  # the lower-scored pixel first
    assert pixel.inputs[0, :, 0].tolist() == [[0, 1], [0, 1], [0, 1]]
    assert pixel.pixels(0).tolist() == [1]
    images, _, changed = pixel.trajectory(0, x[0])
    assert torch.equal(images[-1], pixel.inputs[0]) and changed[-1] == [(0, 1)]
    channel = closed_loop_correction(rgb_counter, x, 0, torch.arange(6.0).view(1, 3, 1, 2), rep, eps=10,
                                     progress=False)
    assert channel.n_replaced.tolist() == [3]  # one value at a time: three edits to pass 2.5
    assert channel.pixels(0).tolist() == [0, 1]  # dims 0, 1, 2 are pixels 0, 1 of channel 0 and pixel 0 of channel 1
    eps1 = closed_loop_correction(rgb_counter, x, 0, torch.arange(6.0).view(1, 3, 1, 2), rep, eps=1, progress=False)
    assert eps1.success.tolist() == [False]  # ε counts channels here, pixels above


def test_nan_scores_are_refused_and_inf_means_last(counter):
    x = torch.zeros(1, 1, 1, 4)
    with pytest.raises(ValueError, match="NaN"):
        closed_loop_correction(counter, x, 0, torch.tensor([0.1, float("nan"), 0.2, 0.3]).view(1, 1, 1, 4),
                               torch.ones(1, 1, 1, 4), progress=False)
    res = closed_loop_correction(counter, x, 0, torch.tensor([0.1, float("inf"), 0.2, 0.3]).view(1, 1, 1, 4),
                                 torch.ones(1, 1, 1, 4), progress=False)
    assert [s[0] for s in res.steps[0]] == [0, 2, 3]


def test_stratified_sample_keeps_class_shares_and_is_seeded():
    labels = np.repeat(np.arange(4), [40, 30, 20, 10])
    idx = np.arange(100) + 1000
    a = stratified_sample(idx, labels, 50, seed=3)
    assert len(a) == 50 and len(set(a)) == 50 and np.array_equal(a, stratified_sample(idx, labels, 50, seed=3))
    assert np.bincount(labels[a - 1000]).tolist() == [20, 15, 10, 5]
    assert not np.array_equal(a, stratified_sample(idx, labels, 50, seed=4))
    odd = stratified_sample(idx, labels, 7, seed=0)  # rounding by largest remainders still gives 7
    assert len(odd) == 7
    assert np.array_equal(stratified_sample(idx, labels, None), idx)


def test_wilson_size_bounds_the_interval():
    n = wilson_size(0.08)
    assert n == 151
    for k in range(0, n + 1, 5):  # every outcome of n images: the Wilson interval is within ±8 points
        p = proportion(k, n)
        assert max(p["rate"] - p["ci_low"], p["ci_high"] - p["rate"]) <= 0.08
    p = proportion(n // 2, n - 20)
    assert p["ci_high"] - p["rate"] > 0.08 or p["rate"] - p["ci_low"] > 0.08  # fewer images: wider
