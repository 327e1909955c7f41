"""Our yardsticks against Quantus 0.6.0 (Hedström et al. 2023) where Quantus implements the same metric.

Matched, after stating each definition difference (details at each test):

* RISE **deletion** (``curves.curve(..., "deletion")``) = ``quantus.PixelFlipping`` with a constant
  ``perturb_baseline``: same ordering (descending score, one feature per pixel on one-channel images),
  same replacement. Quantus' curve has no point for the untouched image and its AUC is
  ``np.trapz(dx=1)`` over the n perturbed points; ours has the s₀ point and is normalised to [0, 1].
* RISE **insertion** from a blurred image and the thesis' **insertion game** behind
  completeness/soundness (``completeness.game_curve``: keep the top-s pixels, fill the rest) have no
  Quantus metric of their own, but both are PixelFlipping run backwards: keeping the top ``s`` pixels is
  deleting the bottom ``D − s`` first. So PixelFlipping on the *negated* map, replacing by the fill
  (a constant, or the blurred image through a custom ``perturb_func``), gives our curve reversed.
* **Cascading randomisation** (``sanity.cascading_randomisation`` + ``sanity.similarity``) =
  ``quantus.MPRT`` (``ModelParameterRandomisation`` was renamed in 0.5.0), ``layer_order="top_down"``.
  Differences: Quantus re-initialises with each layer's ``reset_parameters()`` (PyTorch's default
  Kaiming-uniform, ``torch.manual_seed(seed + 1)`` before each layer) and walks every module that has
  ``reset_parameters``; we follow Adebayo et al. (truncated normal, std 0.01, conv and linear layers).
  The test makes Quantus draw our weights (patched ``reset_parameters``) and then asserts equality.
  Quantus applies ``abs`` *after* its normalisation and flattens the maps to ``(N, H·W)`` before the
  similarity function, so its ``ssim`` is a 1-D SSIM along the raster order, not the 2-D SSIM of
  Adebayo et al.; the test gives Quantus a similarity function that reshapes back to 2-D.

Not matched, and why:

* Completeness and soundness (Gupta et al. 2022): Quantus 0.6.0 has no such metric. Its
  ``quantus.Completeness`` is a different property with the same name (Sundararajan et al.'s
  conservation: the map sums to ``f(x) − f(baseline)``), so only the insertion game under α and β is
  compared here; the α/β formulas are checked against hand-computed answers in test_completeness.py.
* Quantus' ``RegionPerturbation`` with ``patch_size=1`` reduces to PixelFlipping, but it reports
  ``f(x) − f(x_perturbed)`` and draws ``"uniform"`` noise by default; nothing new to compare.
"""
import numpy as np
import pytest
import torch
from torch import nn

quantus = pytest.importorskip("quantus")

from quantus.functions.similarity_func import correlation_spearman, ssim  # noqa: E402

from salbook.methods import baselines  # noqa: E402
from salbook.yardsticks import completeness, curves, sanity  # noqa: E402

N, H, STEP, FILL = 6, 8, 4, 0.3  # 64 pixels: Quantus needs the step to divide them


def tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * H * H, 3)).eval()


@pytest.fixture
def setup():
    model = tiny_cnn()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(N, 1, H, H, generator=gen)
    maps = torch.randn(N, 1, H, H, generator=gen)  # continuous scores: no ties, so orderings agree exactly
    target = model(x).argmax(1)
    return model, x, target, maps


@pytest.fixture(autouse=True)
def trapz(monkeypatch):
    """Quantus 0.6.0 computes AUCs with ``np.trapz``, which NumPy 2.4 removed; ``np.trapezoid`` is the
    same function under its NumPy 2 name."""
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)


def pixel_flipping(model, x, target, maps, **options):
    metric = quantus.PixelFlipping(features_in_step=STEP, normalise=False, abs=False, disable_warnings=True, **options)
    return np.array(metric(model=model, x_batch=x.numpy(), y_batch=target.numpy(), a_batch=maps.numpy(),
                           device="cpu", softmax=True, channel_first=True))


def test_deletion_matches_quantus_pixel_flipping(setup):
    model, x, target, maps = setup
    ours = curves.curve(model, x, target, maps, "deletion", step=STEP, substrate=torch.tensor([FILL]))
    theirs = pixel_flipping(model, x, target, maps, perturb_baseline=FILL)
    assert theirs.shape == (N, H * H // STEP)
    np.testing.assert_allclose(ours[:, 1:], theirs, atol=1e-6)  # Quantus has no point for the untouched image
    their_auc = pixel_flipping(model, x, target, maps, perturb_baseline=FILL, return_auc_per_sample=True)
    n = ours.shape[1] - 1
    # ours = trapezoid over s₀..sₙ on [0, 1]; Quantus = trapezoid over s₁..sₙ with dx = 1
    np.testing.assert_allclose(curves.auc(ours) * n, their_auc + (ours[:, 0] + ours[:, 1]) / 2, atol=1e-5)


def test_rise_insertion_is_pixel_flipping_of_the_reversed_map_towards_the_blur(setup):
    model, x, target, maps = setup
    ours = curves.curve(model, x, target, maps, "insertion", step=STEP)
    blurred = curves.gaussian_blur(x).flatten(1).numpy()

    def towards_blur(arr, indices, blurred, **kwargs):  # Quantus' perturb_func protocol, rows = our images
        out = arr.copy()
        rows = np.arange(len(arr))[:, None]
        out[rows, indices] = blurred[rows, indices]
        return out

    theirs = pixel_flipping(model, x, target, -maps, perturb_func=towards_blur,
                            perturb_func_kwargs={"blurred": blurred})
    np.testing.assert_allclose(ours[:, :-1], theirs[:, ::-1], atol=1e-6)


def test_insertion_game_of_completeness_matches_quantus(setup):
    model, x, target, maps = setup
    ours = completeness.game_curve(model, x, target, maps, fill=FILL, step=STEP)
    theirs = pixel_flipping(model, x, target, -maps, perturb_baseline=FILL)
    np.testing.assert_allclose(ours[:, :-1], theirs[:, ::-1], atol=1e-6)
    their_auc = pixel_flipping(model, x, target, -maps, perturb_baseline=FILL, return_auc_per_sample=True)
    n = ours.shape[1] - 1
    g = completeness.scores(model, x, target, maps, fill=FILL, step=STEP)["g_auc"]
    np.testing.assert_allclose(g * n, their_auc + (ours[:, -2] + ours[:, -1]) / 2, atol=1e-5)


def gradient(model, inputs, targets, **kwargs):
    """Quantus' explain_func protocol (numpy in, numpy out), our gradient baseline inside."""
    return baselines.make("gradient", model).attribute(torch.as_tensor(inputs), target=torch.as_tensor(targets)).numpy()


def our_weights(monkeypatch, seed):
    """Make Quantus' reset_parameters() draw exactly what cascading_randomisation draws, in the same order."""
    gen = torch.Generator().manual_seed(seed)

    def reset(self):
        with torch.no_grad():
            for p in (self.weight, self.bias):
                if p is not None:
                    p.copy_(sanity._truncated_normal(p.shape, 0.01, gen))

    for cls in (nn.Conv2d, nn.Linear):
        monkeypatch.setattr(cls, "reset_parameters", reset)


def mprt(model, x, target, maps, **options):
    metric = quantus.MPRT(layer_order="top_down", disable_warnings=True, **{"normalise": False, **options})
    return metric(model=model, x_batch=x.numpy(), y_batch=target.numpy(), a_batch=maps, explain_func=gradient,
                  device="cpu", channel_first=True)


def test_cascading_randomisation_matches_quantus_mprt(setup, monkeypatch):
    model, x, target, _ = setup
    ours = sanity.cascading_randomisation(model, x, target, lambda m, inputs, t: torch.as_tensor(gradient(m, inputs, t)),
                                          seed=3)
    maps = gradient(model, x, target)
    # ours: |map| → [0, 1] per image, in float64 (Quantus would keep the maps' float32)
    unit = lambda a, **kw: np.stack([sanity._unit(m) for m in np.abs(a.astype(np.float64))])  # noqa: E731
    # Quantus' ssim returns a list when batched, which its own MPRT cannot take (it calls .tolist()): np.asarray
    ssim_2d = lambda a, b, batched=True, **kw: np.asarray(ssim(a.reshape(-1, H, H), b.reshape(-1, H, H), batched=True))  # noqa: E731
    results = {}
    for key, options in {"spearman_abs": dict(abs=True, similarity_func=correlation_spearman),
                         "spearman": dict(abs=False, similarity_func=correlation_spearman),
                         "ssim": dict(abs=False, normalise=True, normalise_func=unit, similarity_func=ssim_2d)}.items():
        with monkeypatch.context() as m:
            our_weights(m, seed=3)
            results[key] = mprt(model, x, target, maps, **options)
    for key, theirs in results.items():
        assert list(theirs) == ["original", "3", "0"] and [r["randomised"] for r in ours] == ["none", "3", "0"]
        for row, stage in zip(ours, theirs.values()):
            assert row[key] == pytest.approx(float(np.mean(stage)), abs=1e-9), (key, row["randomised"])
    assert ours[-1]["spearman"] < 0.5  # the check is not vacuous: the maps did change


def test_quantus_own_randomisation_and_flat_ssim_differ_as_documented(setup):
    """Without the adjustments the numbers differ; record that they stay in the same regime."""
    model, x, target, _ = setup
    maps = gradient(model, x, target)
    theirs = mprt(model, x, target, maps, abs=True)
    assert list(theirs) == ["original", "3", "0"] and np.mean(theirs["original"]) == pytest.approx(1.0)
    assert np.mean(theirs["0"]) < 0.9  # Kaiming-uniform weights also destroy the gradient map
