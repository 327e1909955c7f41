import math

import pytest
import torch
from torch import nn

from salbook import nets
from salbook.methods import baselines
from salbook.yardsticks import properties


def checkerboard(n: int, block: int = 1) -> torch.Tensor:
    """An n × n map of ±1 blocks of side ``block``, as a batch of one (1, n, n)."""
    i = torch.arange(n) // block
    return ((i[:, None] + i[None, :]) % 2 * 2 - 1).double()[None]


def test_pixel_map_sums_channels_and_takes_absolute_values():
    m = torch.tensor([[[[1.0, -2.0]], [[-3.0, 1.0]]]])  # (1, 2, 1, 2)
    assert properties.pixel_map(m).tolist() == [[[2.0, 1.0]]]
    assert properties.pixel_map(m, absolute=False).tolist() == [[[-2.0, -1.0]]]
    with pytest.raises(ValueError, match="maps must be"):
        properties.pixel_map(torch.zeros(3, 3))


def test_roughness_known_answers():
    n = 6
    constant = torch.full((1, n, n), 2.0)
    spike = torch.zeros(1, n, n)
    spike[0, 2, 3] = -5.0  # interior: four neighbours
    r = properties.roughness(torch.cat([constant, spike.double(), checkerboard(n)]))
    # constant: 0; an interior spike: TV = 4|v| = 4 · mass; roughness is of |map|, and a ±1 board is constant in |·|
    assert r.tolist() == pytest.approx([0.0, 1.0, 0.0])
    board01 = (checkerboard(n) + 1) / 2  # n²/2 ones; every edge differs by 1: 2n(n-1) edges
    assert properties.roughness(board01).item() == pytest.approx(2 * n * (n - 1) / (4 * n * n / 2))
    assert math.isnan(properties.roughness(torch.zeros(1, 3, 3)).item())


def test_roughness_is_scale_free_and_channels_are_summed():
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(properties.roughness(x), properties.roughness(7 * x))
    assert torch.allclose(properties.roughness(x), properties.roughness(x.sum(1)))


def test_autocorrelation_known_answers():
    board = checkerboard(8)
    assert properties.autocorrelation(board, 0).item() == 1.0
    # signed pixel map needed for the ±1 pattern: use 0/1 values (|·| keeps them)
    board01 = (board + 1) / 2
    assert properties.autocorrelation(board01, 1).item() == pytest.approx(-1.0)
    assert properties.autocorrelation(board01, 2).item() == pytest.approx(1.0)
    # 4 × 4 blocks on 8 × 8: at lag 1, 1 of the 7 column pairs crosses a block edge -> r = 5/7; lag 2: 1/3
    blocks = (checkerboard(8, 4) + 1) / 2
    assert properties.autocorrelation(blocks, 1).item() == pytest.approx(5 / 7)
    assert properties.autocorrelation(blocks, 2).item() == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="does not fit"):
        properties.autocorrelation(board, 8)


def test_correlation_length_known_answers():
    board01 = (checkerboard(8) + 1) / 2
    blocks = (checkerboard(8, 4) + 1) / 2
    # pixel checkerboard: r goes 1 -> -1 between lag 0 and 1, crossing 0.5 at a quarter pixel
    # 4-pixel blocks: r = 5/7 at lag 1 and 1/3 at lag 2 -> 1 + (5/7 - 1/2) / (5/7 - 1/3) = 25/16
    ramp = torch.arange(8.0).expand(8, 8)[None]  # every shift keeps r = 1 horizontally and vertically
    got = properties.correlation_length(torch.cat([board01, blocks, ramp.double()]))
    assert got[:2].tolist() == pytest.approx([0.25, 25 / 16])
    assert math.isinf(got[2].item())
    assert math.isnan(properties.correlation_length(torch.zeros(1, 8, 8)).item())


def test_correlation_length_grows_with_upsampling():
    noise = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    fine = properties.correlation_length(torch.rand(4, 32, 32, generator=torch.Generator().manual_seed(1)))
    coarse = properties.correlation_length(nn.functional.interpolate(noise, size=32, mode="nearest"))
    assert (fine < 0.6).all() and (coarse > 3).all()


def test_map_correlation_known_answers():
    a = torch.randn(3, 2, 5, 5)
    assert properties.map_correlation(a, a).tolist() == pytest.approx([1.0] * 3)
    assert properties.map_correlation(a, -a).tolist() == pytest.approx([1.0] * 3)  # |·| forgets the sign
    assert properties.map_correlation(a, -a, absolute=False).tolist() == pytest.approx([-1.0] * 3)
    left, right = torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)
    left[..., :2], right[..., 2:] = 1, 1
    assert properties.map_correlation(left, right).item() == pytest.approx(-1.0)
    assert math.isnan(properties.map_correlation(left, torch.ones(1, 4, 4)).item())  # constant map: undefined
    with pytest.raises(ValueError, match="differ in shape"):
        properties.map_correlation(a, a[:2])


def test_negative_share_known_answers():
    m = torch.tensor([[1.0, -3.0], [2.0, 2.0]])
    got = properties.negative_share(m)
    assert got[0].item() == pytest.approx(0.75) and got[1].item() == 0.0
    assert math.isnan(properties.negative_share(torch.zeros(1, 4)).item())


@pytest.mark.parametrize("rule, method", [("gradient", "gradient"), ("deconvnet", "deconvnet"),
                                          ("guided_backprop", "guided_backprop")])
def test_backward_signal_reproduces_captum(rule, method):
    torch.manual_seed(0)
    model = nets.build("mnist_cnn2").eval()
    x, t = torch.rand(3, 1, 28, 28), torch.tensor([0, 4, 9])
    got, layers = properties.backward_signal(model, x, t, rule)
    want = baselines.make(method, model).attribute(x, t)
    assert torch.allclose(got, want, atol=1e-6, rtol=1e-4)
    assert [layer["kind"] for layer in layers] == ["relu", "maxpool", "relu", "relu"]  # top down


def test_backward_signal_known_shares():
    torch.manual_seed(0)
    # one ReLU layer under a linear read-out, then a 2 × 2 max-pool
    model = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1)).eval()
    with torch.no_grad():
        model[2].weight.copy_(torch.eye(4))
        model[2].bias.copy_(torch.tensor([0.0, 0.0, -10.0, -10.0]))  # units 2, 3 always off
        model[4].weight.copy_(torch.tensor([[1.0, -1.0, 1.0, -1.0]]))
    x = torch.rand(5, 1, 4, 4)
    _, grad = properties.backward_signal(model, x, 0, "gradient")
    _, deconv = properties.backward_signal(model, x, 0, "deconvnet")
    relu, pool = grad[0], grad[1]
    assert relu["kind"] == "relu" and relu["silenced"] == pytest.approx(0.5)  # the two off units
    assert relu["negative"] == pytest.approx(0.25)  # unit 1 is on and passes −1
    assert deconv[0]["silenced"] == pytest.approx(0.5) and deconv[0]["negative"] == 0.0  # the two −1 signals
    # a 2 × 2 max-pool passes the signal to one input in four, whatever the rule
    assert pool["silenced"] == pytest.approx(0.75) and deconv[1]["silenced"] == pytest.approx(0.75)
    # the same shares per image: every image has the same two off units and one max per window
    assert relu["silenced_per_image"].shape == (5,)
    assert torch.allclose(relu["silenced_per_image"], torch.full((5,), 0.5, dtype=torch.float64))
    assert torch.allclose(pool["silenced_per_image"], torch.full((5,), 0.75, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown rule"):
        properties.backward_signal(model, x, 0, "magic")


def test_per_image_shares_differ_between_images_and_are_nan_without_signal():
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(2))
        model[1].bias.zero_()
        model[3].weight.copy_(torch.tensor([[1.0, 1.0]]))
    x = torch.tensor([[[[1.0, 1.0]]], [[[1.0, -1.0]]], [[[-1.0, -1.0]]]])  # 0, 1 or 2 units off
    _, layers = properties.backward_signal(model, x, 0, "gradient")
    assert layers[0]["silenced_per_image"].tolist() == [0.0, 0.5, 1.0]
    model[3].weight.data.zero_()  # no signal reaches the ReLU: its share is undefined, not 0
    _, layers = properties.backward_signal(model, x, 0, "gradient")
    assert torch.isnan(layers[0]["silenced_per_image"]).all()


def test_nan_maps_are_refused_by_every_measure():
    bad = torch.rand(2, 1, 6, 6)
    bad[0, 0, 1, 1] = math.nan
    good = torch.rand(2, 1, 6, 6)
    for call in (lambda: properties.pixel_map(bad), lambda: properties.roughness(bad),
                 lambda: properties.autocorrelation(bad, 1), lambda: properties.correlation_length(bad),
                 lambda: properties.map_correlation(bad, good), lambda: properties.map_correlation(good, bad),
                 lambda: properties.negative_share(bad)):
        with pytest.raises(ValueError, match="NaN"):
            call()
