"""The yardstick contract, the ranking and the leaderboard's grading on a tiny network."""
import numpy as np
import pytest
import torch
from torch import nn

from salbook.grids import leaderboard
from salbook.methods import registry
from salbook.methods.registry import Output
from salbook.yardsticks import contract, ranking
from salbook.yardsticks.concentration import gini


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()


def images(n=3, seed=0):
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


# -- the contract ------------------------------------------------------------------------------------

def test_every_yardstick_declares_direction_description_and_images():
    assert len(contract.names()) >= 8
    for name in contract.names():
        y = contract.get(name)
        assert isinstance(y.higher_is_better, bool) and y.description and y.label
        assert y.on in ("correct", "misclassified")


def test_unknown_yardstick_is_refused_with_the_list():
    with pytest.raises(ValueError, match="choose one of"):
        contract.get("nope")


def test_relevance_reads_signed_maps_by_magnitude_and_shifts_one_signed_maps():
    maps = torch.zeros(1, 3, 2, 2)
    maps[0, 1, 0, 0] = -5.0  # strongly negative: relevant by magnitude
    maps[0, 2, 1, 1] = 2.0
    r = contract.relevance(maps, Output(signed=True))
    assert r.shape == (1, 2, 2) and r[0, 0, 0] == 5 and r[0, 1, 1] == 2 and r.min() == 0
    width = -torch.tensor([[[[1.0, 3.0], [2.0, 4.0]]]]).expand(1, 3, 2, 2)  # a PertMap map: minus widths
    r = contract.relevance(width, Output(signed=False))
    assert r.min() == 0 and r[0, 0, 0] == r.max()  # the narrowest box is the most relevant pixel


def test_call_shape_refuses_bad_maps_and_a_missing_explain():
    net, x = tiny_net(), images()
    with pytest.raises(ValueError, match="shaped like the inputs"):
        contract.get("deletion")(net, x, None, torch.zeros(3, 8, 8), output=Output(signed=True))
    with pytest.raises(ValueError, match="explains again"):
        contract.get("sanity")(net, x, None, torch.rand(3, 3, 8, 8), output=Output(signed=True))
    with pytest.raises(ValueError):
        contract.get("deletion")(net, x, None, torch.full((3, 3, 8, 8), float("nan")), output=Output(signed=True))


def test_gini_known_answers():
    assert gini(torch.ones(1, 4, 4))[0] == pytest.approx(0.0)
    one = torch.zeros(1, 4, 4)
    one[0, 2, 2] = 3.0
    assert gini(one)[0] == pytest.approx(15 / 16)
    assert np.isnan(gini(torch.zeros(1, 4, 4))[0])
    with pytest.raises(ValueError, match="non-negative"):
        gini(-torch.ones(1, 2, 2))


def test_sanity_of_a_map_that_ignores_the_model_is_one_and_of_the_gradient_is_lower():
    net, x = tiny_net(), images(4)
    random = registry.make("random", net)
    maps = random.attribute(x)
    same = lambda m, xs, t: maps.clone()  # noqa: E731 - a map that does not look at the model
    values = contract.get("sanity")(net, x, None, maps, same, output=registry.entry("random").output)
    assert np.allclose(values, 1.0)
    grad = lambda m, xs, t: registry.make("gradient", m).attribute(xs, target=t)  # noqa: E731
    values = contract.get("sanity")(net, x, None, grad(net, x, net(x).argmax(1)), grad, output=Output(signed=True))
    assert np.all(values < 0.9)


# -- ranking ---------------------------------------------------------------------------------------------

def test_rank_table_ranks_separated_methods_with_tight_rank_intervals():
    per_image = {"a": np.full(20, 3.0) + np.linspace(0, 0.1, 20), "b": np.full(20, 2.0), "c": np.full(20, 1.0)}
    up = ranking.rank_table(per_image, higher_is_better=True, n_boot=200)
    assert [up[m]["rank"] for m in "abc"] == [1, 2, 3]
    assert up["a"]["rank_lo"] == up["a"]["rank_hi"] == 1
    assert up["a"]["lo"] <= up["a"]["mean"] <= up["a"]["hi"]
    down = ranking.rank_table(per_image, higher_is_better=False, n_boot=200)
    assert [down[m]["rank"] for m in "abc"] == [3, 2, 1]


def test_rank_table_ties_share_ranks_and_a_method_without_values_is_not_ranked():
    table = ranking.rank_table({"a": np.ones(5), "b": np.ones(5), "c": np.full(5, np.nan)}, True, n_boot=50)
    assert table["a"]["rank"] == table["b"]["rank"] == 1.5
    assert np.isnan(table["c"]["rank"]) and table["c"]["n"] == 0
    with pytest.raises(ValueError):
        ranking.rank_table({}, True)


def test_rank_correlation_known_answers():
    up = {"m1": 1.0, "m2": 2.0, "m3": 3.0, "m4": 4.0}
    rho = ranking.rank_correlation({"x": up, "same": dict(up), "reversed": {k: -v for k, v in up.items()},
                                    "few": {"m1": 1.0, "m2": 2.0}})
    assert rho["x"]["same"] == pytest.approx(1.0) and rho["x"]["reversed"] == pytest.approx(-1.0)
    assert np.isnan(rho["x"]["few"])


# -- the grid: a method registered once is graded by every yardstick -----------------------------------------

class Brightness:
    """A toy method: the brighter the entry, the more relevant."""

    def __init__(self, model):
        self.model = model

    def attribute(self, inputs, target=None):
        return inputs.detach().cpu().clone()


@pytest.fixture
def toy_method():
    registry.register("toy_brightness", label="Toy", part="common", output=Output(signed=False),
                      description="the input itself")(Brightness)
    yield "toy_brightness"
    registry.unregister("toy_brightness")


def test_a_newly_registered_method_is_graded_by_every_yardstick(toy_method):
    net, x, wrong = tiny_net(), images(3), images(2, seed=1)
    pred = net(x).argmax(1)
    images_ = {"correct": {"targets": pred, "attacked": (x + 0.01).clamp(0, 1)},
               "misclassified": {"targets": (net(wrong).argmax(1) + 1) % 10, "replacement": images(2, seed=2)}}
    out = leaderboard.grade(net, toy_method, {}, images_, {"correct": x, "misclassified": wrong},
                            {name: {} for name in contract.names()}, batch_size=2)
    assert out["skipped"] == {}
    assert set(out["scores"]) == set(contract.names())
    for name, values in out["scores"].items():
        assert values.shape == (2 if contract.get(name).on == "misclassified" else 3,)
    assert torch.allclose(out["relevance"], x.amax(1) - x.amax(1).flatten(1).amin(1).view(-1, 1, 1))


def test_a_cell_that_cannot_be_run_says_why(toy_method):
    net, x = tiny_net(), images(2)
    images_ = {"correct": {"targets": net(x).argmax(1)}}
    out = leaderboard.grade(net, "lrp", {}, images_, {"correct": x}, {"deletion": {}}, batch_size=2)
    assert out["scores"]["deletion"].shape == (2,)  # a sequential network: LRP runs
    out = leaderboard.grade(net, toy_method, {"unknown_option": 1}, images_, {"correct": x}, {"deletion": {}}, 2)
    assert "deletion" in out["skipped"] and "unknown_option" in out["skipped"]["deletion"]
