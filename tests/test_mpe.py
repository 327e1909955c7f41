import numpy as np
import pytest
import torch
from torch import nn

from salbook import data
from salbook.methods import MPE, correction_arms, exact_mpe, mpe_attack_plan, mpe_table


@pytest.fixture
def tiny(linear_model, rng):
    """A 3-class linear model on 2x3 images and a sampling set of 40 images with few grey levels."""
    torch.manual_seed(0)
    model = linear_model(torch.randn(3, 6) * 3)
    x = rng.choice(np.array([0, 51, 204, 255], np.uint8), size=(40, 2, 3))
    return model, x


def brute_force_mpe(model, x, z, inputs=None):
    """Eq. 4 literally: for each z, i: average f(x) over the x in D with x_i = z_i (x, z flattened in
    the order given; ``inputs``: the model inputs of x when x is not in data layout)."""
    with torch.no_grad():
        f = torch.softmax(model(data.to_input(x) if inputs is None else inputs), 1).double().numpy()
    xf, zf = x.reshape(len(x), -1), z.reshape(len(z), -1)
    out = np.full((len(z), xf.shape[1], f.shape[1]), np.nan)
    for k in range(len(z)):
        for i in range(xf.shape[1]):
            rows = xf[:, i] == zf[k, i]
            if rows.any():
                out[k, i] = f[rows].mean(0)
    return out


def test_table_equals_brute_force(tiny, rng):
    model, x = tiny
    z = np.concatenate([x[:5], rng.choice(np.array([0, 51, 100], np.uint8), size=(3, 2, 3))])
    table = mpe_table(model, x, batch_size=7, progress=False)  # odd batch size: batching must not matter
    expected = brute_force_mpe(model, x, z)
    got = table.mpe(z).numpy()
    assert np.array_equal(np.isnan(got), np.isnan(expected))  # value 100 never occurs: undefined
    np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)], rtol=0, atol=1e-12)
    assert table.counts.sum(1).eq(len(x)).all()


def test_mcmpe_is_exact_mpe_of_the_empirical_distribution(tiny):
    model, x = tiny
    support, counts = np.unique(x.reshape(len(x), -1), axis=0, return_counts=True)
    exact = exact_mpe(model, support.reshape(-1, 2, 3), counts / counts.sum(), x)
    np.testing.assert_allclose(mpe_table(model, x, progress=False).mpe(x), exact, atol=1e-12)


def test_mcmpe_converges_to_exact_conditional_expectation(linear_model, rng):
    torch.manual_seed(1)
    model = linear_model(torch.randn(4, 3) * 4)
    levels = np.array([0, 128, 255], np.uint8)
    support = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 1, 3)
    p = rng.dirichlet(np.ones(len(support)))
    exact = exact_mpe(model, support, p, support)
    errors = []
    for n in (1_000, 100_000):
        sample = support[rng.choice(len(support), size=n, p=p)]
        errors.append((mpe_table(model, sample, progress=False).mpe(support) - exact).abs().nan_to_num(0).max().item())
    assert errors[1] < 0.01 and errors[1] < errors[0] / 3  # ~1/sqrt(n) Monte-Carlo error


def test_typical_sample_200_rule():
    """The best value is chosen only among values seen at least min_count times."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[10.0], [-10.0]]))
        model[1].bias.zero_()
    # dimension 0: value 255 (class 0 likes it most) seen 150 times, value 128 300 times, 0 300 times
    x = np.repeat(np.array([255, 128, 0], np.uint8), [150, 300, 300]).reshape(-1, 1, 1)
    table = mpe_table(model, x, progress=False)
    assert table.typical_sample(min_count=100)[0, 0] == 255
    assert table.typical_sample(min_count=200)[0, 0] == 128  # 255 is too rare to be trusted
    assert table.typical_sample(min_count=200)[1, 0] == 0
    with pytest.raises(ValueError, match="lower min_count"):
        table.typical_sample(min_count=301)


def test_attribute_is_captum_shaped_and_checks_input(tiny):
    model, x = tiny
    table = mpe_table(model, x, progress=False)
    inputs = data.to_input(x[:4])
    maps = MPE(table).attribute(inputs, target=2)
    assert maps.shape == inputs.shape
    np.testing.assert_allclose(maps.flatten(1).numpy(), table.mpe(x[:4])[:, :, 2].numpy(), atol=1e-6)
    per_image = MPE(table).attribute(inputs, target=torch.tensor([0, 1, 2, 0]))
    assert torch.equal(per_image[1], MPE(table).attribute(inputs[1:2], target=1)[0])
    with pytest.raises(ValueError, match="multiples of 1/255"):
        MPE(table).attribute(inputs * 0.999, target=0)
    with pytest.raises(ValueError, match="lie in"):
        MPE(table).attribute(inputs * 2, target=0)
    with pytest.raises(ValueError, match="target classes"):
        MPE(table).attribute(inputs, target=3)
    with pytest.raises(ValueError, match="NaN"):
        MPE(table).attribute(inputs * float("nan"), target=0)


def test_correction_arms_are_seeded(tiny):
    model, x = tiny
    table = mpe_table(model, x, progress=False)
    a, b = correction_arms(table, x[:3], [0, 1, 2], min_count=5, seed=7), correction_arms(table, x[:3], [0, 1, 2], min_count=5, seed=7)
    for arm in a:
        assert all(torch.equal(u, v) for u, v in zip(a[arm], b[arm]))
    scores, typical = a["mpe+typical"]
    assert scores.shape == typical.shape == (3, 1, 2, 3)
    assert torch.equal(typical[0].flatten() * 255, table.typical_sample(5)[0].float())


def test_pixel_arms_score_a_pixel_by_its_worst_channel(linear_model, rng):
    torch.manual_seed(0)
    model = linear_model(torch.randn(3, 2 * 2 * 3))
    x = rng.choice(np.array([0, 128, 255], np.uint8), size=(400, 2, 2, 3))
    table = mpe_table(model, x, progress=False)
    arms = correction_arms(table, x[:4], [0, 1, 2, 0], min_count=5, seed=1, unit="pixel")
    channel = correction_arms(table, x[:4], [0, 1, 2, 0], min_count=5, seed=1)
    scores, typical = arms["mpe+typical"]
    assert scores.shape == (4, 2, 2) and typical.shape == (4, 3, 2, 2)
    assert torch.equal(scores, channel["mpe+typical"][0].amin(1))  # lowest MPE over the channels
    assert torch.equal(typical, channel["mpe+typical"][1])  # the typical pixel: all three channels
    assert arms["rand+rand"][0].shape == (4, 2, 2)
    with pytest.raises(ValueError, match="unit"):
        correction_arms(table, x[:4], [0, 1, 2, 0], min_count=5, unit="patch")


def test_mpe_attack_plan_scores_pixels_by_their_best_channel(linear_model, rng):
    torch.manual_seed(0)
    model = linear_model(torch.randn(3, 2 * 2 * 3))
    x = rng.choice(np.array([0, 255], np.uint8), size=(50, 2, 2, 3))
    table = mpe_table(model, x, progress=False)
    scores, salt = mpe_attack_plan(table, x[:4], [0, 1, 2, 0])
    assert scores.shape == salt.shape == (4, 2, 2) and salt.dtype == torch.bool
    per_channel = MPE(table).attribute(data.to_input(x[:4]), target=torch.tensor([0, 1, 2, 0]))
    assert torch.allclose(scores, per_channel.amax(1))
    mean = table.mean()  # salt where white supports class 0 less than black, on average over channels
    white, black = mean[:, 255, 0].view(3, 2, 2).mean(0), mean[:, 0, 0].view(3, 2, 2).mean(0)
    assert torch.equal(salt[0], white < black)


def test_rgb_table_follows_the_model_input_order(linear_model, rng):
    """RGB images are fed channels-last; the table's dimensions must still be the (C, H, W) entries."""
    torch.manual_seed(2)
    model = linear_model(torch.randn(3, 2 * 2 * 3) * 3)
    x = rng.choice(np.array([0, 90, 255], np.uint8), size=(30, 2, 2, 3))
    table = mpe_table(model, x, batch_size=4, progress=False)
    assert table.input_shape == (3, 2, 2)
    np.testing.assert_allclose(table.mpe(x[:6]).numpy(), brute_force_mpe_chw(model, x, x[:6]), atol=1e-6)


def brute_force_mpe_chw(model, x, z):
    return brute_force_mpe(model, x.transpose(0, 3, 1, 2).copy(), z.transpose(0, 3, 1, 2).copy(),
                           inputs=data.to_input(x))


def test_class_mpe_is_the_target_column_of_mpe(tiny, rng):
    model, x = tiny
    table = mpe_table(model, x, progress=False)
    z = np.concatenate([x[:4], rng.choice(np.array([0, 100], np.uint8), size=(2, 2, 3))])  # 100: unseen
    target = np.array([0, 1, 2, 0, 1, 2])
    full = table.mpe(z)
    got = table.class_mpe(z, target)
    assert got.shape == (6, 6)
    torch.testing.assert_close(got, full[torch.arange(6), :, torch.as_tensor(target)], equal_nan=True)
    assert table.mean() is table.mean()  # computed once
    with pytest.raises(ValueError, match="target classes"):
        table.class_mpe(z, 3)
