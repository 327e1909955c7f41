import matplotlib

matplotlib.use("Agg")

from salbook import plots  # noqa: E402


def test_verdict_bars_stack_each_parts_counts_in_verdict_order():
    ax = plots.verdict_bars({"mpe": {"reproduced": 2, "not reproduced": 1}, "roar": {"partly": 3}})
    bars = [(round(p.get_x()), round(p.get_width())) for p in ax.patches]
    # reproduced (mpe, roar), partly (mpe, roar), not reproduced (mpe, roar): left edges stack up
    assert bars == [(0, 2), (0, 0), (2, 0), (0, 3), (2, 1), (3, 0)]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["reproduced", "partly", "not reproduced"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["mpe", "roar"]
