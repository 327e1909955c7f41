import numpy as np
import pytest
import torch

from salbook.methods.pertmap import LPPertMap, StochasticPertMap


@pytest.fixture
def margin_model(linear_model):
    """Two classes; the margin z_0 − z_1 = a·x + b with a = (0, 0.5, 1, 4), so the maximal invariant
    box around x = 0.5 (margin m = 1) is the fractional knapsack w = (1, 1, 0.5, 0): Σw = 2.5."""
    a = torch.tensor([0.0, 0.5, 1.0, 4.0])
    b = 1.0 - 0.5 * a.sum()
    return linear_model(torch.stack([a, torch.zeros(4)]), torch.tensor([b, 0.0])), a


def test_stochastic_box_approaches_the_exact_maximal_box(margin_model):
    model, a = margin_model
    x = torch.full((1, 1, 1, 4), 0.5)
    # eq. 3.2 equals Problem 2.1 only for a large enough λ; on d = 4 the paper's 0.1·d is far too small
    scores = StochasticPertMap(model, iterations=600, samples=64, lam=200.0, progress=False).attribute(x)
    w = -scores.flatten()
    assert scores.shape == x.shape and (w >= 0).all() and (w <= 1).all()
    assert torch.allclose(w, torch.tensor([1.0, 1.0, 0.5, 0.0]), atol=0.06)
    r = (torch.rand(100_000, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1) * w
    assert ((r * a).sum(1) < -1).float().mean() < 0.005  # decision kept for (almost) every r in R(w)


def test_batched_images_are_optimised_independently(margin_model):
    model, _ = margin_model
    x = torch.rand(3, 1, 1, 4) * 0.2 + 0.4
    together = StochasticPertMap(model, iterations=30, samples=8, seed=1, progress=False).attribute(x)
    alone = StochasticPertMap(model, iterations=30, samples=8, seed=1, progress=False).attribute(x[1:2])
    assert together.shape == x.shape
    # the random draws differ between the two runs, so compare behaviour, not bits
    assert torch.allclose(together[1], alone[0], atol=0.05)


def test_checkpoints_and_arguments(margin_model):
    model, _ = margin_model
    pm = StochasticPertMap(model, iterations=20, checkpoints=(10, 20), progress=False)
    pm.attribute(torch.full((1, 1, 1, 4), 0.5))
    assert sorted(pm.history) == [10, 20]
    with pytest.raises(ValueError):
        StochasticPertMap(model, iterations=0)
    with pytest.raises(ValueError, match="lam must be"):
        StochasticPertMap(model, lam=[0.1, -1.0])
    with pytest.raises(ValueError, match="lie in"):
        pm.attribute(torch.full((1, 1, 1, 4), 2.0))
    with pytest.raises(ValueError, match="2 values for 3 images"):
        StochasticPertMap(model, iterations=2, C=[1.0, 0.5], progress=False).attribute(torch.full((3, 1, 1, 4), 0.5))


def test_settings_per_row_solve_their_own_problems(margin_model):
    """Several (λ, C) settings in one optimisation, one per row, each reaching its own exact box."""
    model, _ = margin_model
    x = torch.full((3, 1, 1, 4), 0.5)
    w = -StochasticPertMap(model, iterations=600, samples=64, lam=[200.0, 200.0, 0.1], C=[1.0, 0.25, 1.0],
                           progress=False).attribute(x).flatten(1)
    # Adam's last iterate wanders by a few hundredths around the optimum (the notebook's rule allows 0.1)
    assert torch.allclose(w[0], torch.tensor([1.0, 1.0, 0.5, 0.0]), atol=0.1)
    # with every side capped at C = 0.25 the knapsack fills the last side with what is left: (1 − 0.375) / 4
    assert torch.allclose(w[1], torch.tensor([0.25, 0.25, 0.25, 0.156]), atol=0.05)
    assert w[2].sum() > 3.0  # the paper's weak penalty lets the box outgrow the invariant one (Σw = 2.5)


def test_only_the_box_is_differentiated(margin_model):
    """The optimisation must leave the shared model as it found it: no weight gradients in .grad."""
    model, _ = margin_model
    StochasticPertMap(model, iterations=5, samples=4, progress=False).attribute(torch.full((2, 1, 1, 4), 0.5))
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_lp_box_is_exact_for_a_linear_model(margin_model):
    """Linearisation is exact for a linear model: increases are free (no negative gradients) and the
    decreases solve the same knapsack as above, v = (1, 1, 0.5, 0)."""
    model, _ = margin_model
    x = torch.full((1, 1, 1, 4), 0.5)
    lp = LPPertMap(model, delta=1.0, lam=10.0, progress=False)
    scores = lp.attribute(x)
    assert torch.allclose(-scores.flatten(), torch.tensor([2.0, 2.0, 1.5, 1.0]), atol=1e-6)
    assert lp.slack == [pytest.approx(0.0, abs=1e-9)]


def test_lp_smoothing_rhs_uses_the_margin_expansion(margin_model):
    """With noisy linearisation points the constraint must not move for a linear model: Z(x+n) − H·n = Z(x)."""
    model, _ = margin_model
    x = torch.full((1, 1, 1, 4), 0.5)
    A, b = LPPertMap(model, noise_points=5, sigma=0.1).constraints(x, None, torch.Generator().manual_seed(0))
    assert A.shape == (6, 9) and np.allclose(b, 1.0)


def test_box_violation_rate_knows_the_exact_box(margin_model):
    from salbook.yardsticks.invariance import box_violation_rate

    model, _ = margin_model
    x = torch.full((1, 1, 1, 4), 0.5)
    exact = torch.tensor([1.0, 1.0, 0.5, 0.0]).view(1, 1, 1, 4)
    assert box_violation_rate(model, x, exact * 0.99, exact * 0.99, corners=True).item() == 0.0
    too_big = torch.tensor([1.0, 1.0, 1.0, 0.0]).view(1, 1, 1, 4)
    assert box_violation_rate(model, x, too_big, too_big, corners=True).item() > 0.1
    lp = LPPertMap(model, delta=1.0, lam=10.0, progress=False)
    lp.attribute(x)
    assert box_violation_rate(model, x, lp.lower * 0.99, lp.upper * 0.99, corners=True).item() == 0.0


def test_the_grid_job_gives_the_same_maps_in_batches_and_returns_the_lp_box():
    from salbook import data, zoo
    from salbook.grids import pertmap as grid
    from salbook.methods import registry

    weights = zoo.get("cifar-cnn4", "smoke").card["weights_sha256"]
    run = lambda method, idx, **o: grid.method_maps("cifar-cnn4", "smoke", weights, method, o, idx, [3] * len(idx))  # noqa: E731
    whole = run("gradient", [0, 1, 2, 3])
    halves = [run("gradient", [0, 1]), run("gradient", [2, 3])]
    assert whole["maps"].shape == (4, 3, 32, 32) and whole["seconds"] > 0 and whole["maps"].is_contiguous()
    torch.testing.assert_close(whole["maps"], torch.cat([h["maps"] for h in halves]))
    occlusion = run("occlusion", [0, 1], window=4, stride=4)  # one image per call on a CPU, as one call would give
    direct = registry.make("occlusion", zoo.get("cifar-cnn4", "smoke").model, window=4, stride=4).attribute(
        data.to_input(data.cifar10("test").x[[0, 1]]), [3, 3])
    torch.testing.assert_close(occlusion["maps"], direct)
    lp = run("lp_pertmap", [0])
    assert lp["upper"].shape == lp["lower"].shape == (1, 3, 32, 32) and len(lp["slack"]) == 1
    torch.testing.assert_close(lp["maps"], -(lp["upper"] + lp["lower"]))
    with pytest.raises(ValueError, match="one target per image"):
        grid.method_maps("cifar-cnn4", "smoke", weights, "gradient", None, [0, 1], [3])
    with pytest.raises(ValueError, match="unknown saliency method 'pertmap'"):
        grid.method_maps("cifar-cnn4", "smoke", weights, "pertmap", None, [0], [3])


def test_the_prediction_job_names_its_weights(monkeypatch):
    from salbook import data, zoo
    from salbook.grids import pertmap as grid

    test = data.cifar10("test")
    few = data.Split(test.x[:40], test.y[:40], test.source)
    monkeypatch.setattr(grid.data, "cifar10", lambda split: few)
    trained = zoo.get("cifar-cnn4", "smoke")
    pred = grid.test_predictions("cifar-cnn4", "smoke", trained.card["weights_sha256"])["pred"]
    assert torch.equal(pred, trained.model(data.to_input(few.x)).argmax(1))
    with pytest.raises(ValueError, match="now has weights"):
        grid.test_predictions("cifar-cnn4", "smoke", "0" * 64)


def test_box_violation_rate_does_not_depend_on_how_images_are_grouped(cnn):
    from salbook.yardsticks.invariance import box_violation_rate

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 16, 16, generator=gen) * 0.5 + 0.25
    lower, upper = torch.rand(x.shape, generator=gen) * 0.25, torch.rand(x.shape, generator=gen) * 0.25
    rates = [box_violation_rate(cnn, x, lower, upper, samples=40, seed=3, batch_size=b) for b in (40, 120, 1000)]
    assert rates[0].shape == (5,) and 0 < rates[0].mean() < 1
    for r in rates[1:]:
        torch.testing.assert_close(r, rates[0])
    one = box_violation_rate(cnn, x[:1], lower[:1], upper[:1], samples=40, seed=3)
    torch.testing.assert_close(one, rates[0][:1])  # the first image's draws come first


def test_the_chunked_gradient_is_the_gradient_of_eq_3_3(cnn):
    """Adam's step uses ∂(−Σ objective / d)/∂w accumulated over chunks of images; it must equal the
    gradient of eq. 3.3 evaluated on all images at once, whatever the chunk size."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 16, 16, generator=gen)
    w = torch.rand(x.shape, generator=gen) * 0.5
    t = torch.rand((5, 3, *x.shape[1:]), generator=gen) * 2 - 1
    pm = StochasticPertMap(cnn, samples=3, lam=[0.1, 1.0, 10.0, 0.0, 5.0], progress=False)
    c = cnn(x).argmax(1)
    lam = pm.lam
    w_all = w.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(-pm.objective(x, w_all, t, c).sum() / w[0].numel(), w_all)
    for per_pass in (1, 2, 5):
        torch.testing.assert_close(pm.loss_gradient(x, w, t, c, lam, per_pass), expected)


def test_hard_lp_respects_a_constraint_that_the_soft_lp_buys_away(margin_model):
    """At the reference's λ = 1e-4 slack costs 1e-4·2d per unit while each unit buys box volume, so
    the soft LP violates the binding constraint (Σ|a|v = 5.5 > margin 1); the hard LP, as the problem
    is defined, keeps it and solves the knapsack exactly."""
    from salbook.yardsticks.invariance import box_violation_rate

    model, a = margin_model
    x = torch.full((1, 1, 1, 4), 0.5)
    soft = LPPertMap(model, delta=1.0, lam=1e-4, progress=False)
    soft.attribute(x)
    assert soft.slack[0] > 4.0 and soft.info[0]["max_residual"] > 4.0
    assert box_violation_rate(model, x, soft.lower, soft.upper, samples=2000).item() > 0.1
    hard = LPPertMap(model, delta=1.0, progress=False)
    hard.attribute(x)
    info = hard.info[0]
    assert info["feasible"] and info["slack"] == 0.0 and info["max_residual"] <= 1e-9 and info["binding"] == 1
    assert torch.allclose(hard.lower.flatten(), torch.tensor([1.0, 1.0, 0.5, 0.0]), atol=1e-6)
    assert (a * hard.lower.flatten()).sum() <= 1.0 + 1e-9  # the constraint binds and is respected
    assert box_violation_rate(model, x, hard.lower * 0.999, hard.upper * 0.999, corners=True).item() == 0.0


def test_hard_lp_reports_an_infeasible_image_with_an_empty_box(margin_model):
    model, _ = margin_model
    lp = LPPertMap(model, delta=1.0, progress=False)
    A = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0]])
    u, v, info = lp.solve(A, np.array([1.0, -0.5]), 1)  # the second right-hand side is negative
    assert not info["feasible"] and info["negative_rhs"] == 1 and u.tolist() == v.tolist() == [0.0]
    u, v, info = lp.solve(A, np.array([1.0, 0.5]), 1)
    assert info["feasible"] and info["max_residual"] <= 1e-9 and (u + v).item() == pytest.approx(1.5)


def test_stopping_rule_freezes_rows_that_stopped(margin_model):
    """With tol, a row stops once its mean w moves less than tol·C over a window; a row with a weak
    penalty saturates at C fast and stops first, and its w stays where it stopped."""
    model, _ = margin_model
    x = torch.full((2, 1, 1, 4), 0.5)
    pm = StochasticPertMap(model, iterations=2000, samples=16, lam=[1e-3, 200.0], tol=0.005, window=50, progress=False)
    w = -pm.attribute(x).flatten(1)
    assert pm.stopped_at[0] < 2000 and pm.stopped_at[0] <= pm.stopped_at[1]
    assert torch.allclose(w[0], torch.ones(4))  # λ tiny: every side at C
    assert pm.mean_w.shape == (len(pm.mean_w_at), 2) and pm.mean_w_at[0] == 0
    k = pm.mean_w_at.index(int(pm.stopped_at[0]))
    assert torch.allclose(pm.mean_w[k:, 0], pm.mean_w[-1, 0].expand(len(pm.mean_w) - k))
    with pytest.raises(ValueError, match="tol"):
        StochasticPertMap(model, tol=0.0)


def test_the_study_job_runs_every_penalty_weight_as_its_own_rows():
    from salbook import zoo
    from salbook.grids import pertmap as grid

    weights = zoo.get("cifar-cnn4", "smoke").card["weights_sha256"]
    out = grid.stochastic_study("cifar-cnn4", "smoke", weights, [0, 1], [3, 3], [0.01, 10.0], C=1.0, iterations=6,
                                samples=2, tol=1e-3, window=3, seed=0)
    assert out["w"].shape == (4, 3, 32, 32) and (out["w"] >= 0).all() and (out["w"] <= 1).all()
    assert out["mean_w_at"] == [0, 3, 6] and out["mean_w"].shape == (3, 4) and out["stopped_at"].shape == (4,)
    with pytest.raises(ValueError, match="one target per image"):
        grid.stochastic_study("cifar-cnn4", "smoke", weights, [0, 1], [3], [0.1], 1.0, 2, 2, 1e-3, 1, 0)
