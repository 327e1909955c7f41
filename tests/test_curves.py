import numpy as np
import pytest
import torch
from torch import nn

from salbook.yardsticks import curves


class OnePixel(nn.Module):
    """Logits (10·x[0, 0, 0], 0): class 0 is likely only while pixel (0, 0) is bright."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        z = 10 * (x[:, 0, 0, 0] - 0.5)
        return torch.stack([z, torch.zeros_like(z)], 1) + 0 * self.dummy


def test_constant_model_has_its_probability_as_area():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    nn.init.zeros_(model[1].weight)
    with torch.no_grad():
        model[1].bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    x, maps = torch.rand(2, 1, 4, 4), torch.rand(2, 4, 4)
    p = torch.softmax(torch.tensor([1.0, 0.0, 0.0]), 0)[0].item()
    for metric in (curves.deletion_auc, curves.insertion_auc):
        assert metric(model, x, 0, maps, step=3) == pytest.approx([p, p], abs=1e-6)


def test_deleting_the_decisive_pixel_first_gives_the_lower_deletion_area():
    model = OnePixel()
    x = torch.full((1, 1, 4, 4), 0.2)
    x[0, 0, 0, 0] = 1.0
    right, wrong = torch.zeros(1, 4, 4), torch.ones(1, 4, 4)
    right[0, 0, 0], wrong[0, 0, 0] = 1.0, 0.0  # first, and last
    c = curves.curve(model, x, 0, right, "deletion", step=4, substrate=torch.zeros(1))
    p_bright, p_dark = torch.sigmoid(torch.tensor(5.0)).item(), torch.sigmoid(torch.tensor(-5.0)).item()
    assert c[0] == pytest.approx([p_bright, p_dark, p_dark, p_dark, p_dark], abs=1e-6)
    assert curves.auc(c)[0] == pytest.approx((p_bright / 2 + 3 * p_dark + p_dark / 2) / 4, abs=1e-6)
    assert curves.deletion_auc(model, x, 0, right, step=4, substrate=torch.zeros(1)) < \
        curves.deletion_auc(model, x, 0, wrong, step=4, substrate=torch.zeros(1))
    assert curves.insertion_auc(model, x, 0, right, step=4) > curves.insertion_auc(model, x, 0, wrong, step=4)


def test_blur_keeps_constant_images_away_from_the_border_and_its_mass():
    x = torch.ones(1, 3, 32, 32)
    blurred = curves.gaussian_blur(x)
    assert torch.allclose(blurred[..., 10:22, 10:22], torch.ones(1, 3, 12, 12), atol=1e-5)
    assert (blurred <= 1 + 1e-6).all()


def test_bad_attributions_are_refused():
    model, x = OnePixel(), torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match="NaN"):
        curves.deletion_auc(model, x, 0, torch.full((1, 4, 4), float("nan")))
    with pytest.raises(ValueError, match="NaN"):
        curves.insertion_auc(model, x, 0, torch.full((1, 1, 4, 4), float("inf")))
    with pytest.raises(ValueError, match="one map per input"):
        curves.deletion_auc(model, x, 0, torch.rand(2, 4, 4))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        curves.deletion_auc(model, x, 0, torch.rand(1, 3, 3))
    with pytest.raises(ValueError, match="unknown mode"):
        curves.curve(model, x, 0, torch.rand(1, 4, 4), "both")
    assert np.isfinite(curves.insertion_auc(model, x, 0, torch.rand(1, 4, 4))).all()
