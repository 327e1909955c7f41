"""Every rule of salbook.verdicts reaches each of its three outcomes, and says so in its text."""
import math
import re
from pathlib import Path

import numpy as np
import pytest

from salbook import verdicts
from salbook.verdicts import Interval, VERDICTS


def iv(lo, hi):
    return Interval((lo + hi) / 2, lo, hi, "test")


CASES = {
    "contains": [
        (lambda: verdicts.contains(iv(0.8, 0.9), 0.85, margin=0.05), "reproduced"),
        (lambda: verdicts.contains(iv(0.8, 0.9), 0.93, margin=0.05), "partly"),
        (lambda: verdicts.contains(iv(0.8, 0.9), 0.99, margin=0.05), "not reproduced"),
    ],
    "exceeds": [
        (lambda: verdicts.exceeds(iv(0.2, 0.4), 0.0, margin=0.1), "reproduced"),
        (lambda: verdicts.exceeds(iv(0.05, 0.4), 0.0, margin=0.1), "partly"),  # above 0, not by the margin
        (lambda: verdicts.exceeds(iv(-0.1, 0.4), 0.0), "partly"),  # undecided
        (lambda: verdicts.exceeds(iv(-0.3, -0.1), 0.0), "not reproduced"),
    ],
    "below": [
        (lambda: verdicts.below(iv(0.1, 0.3), 0.5), "reproduced"),
        (lambda: verdicts.below(iv(0.4, 0.6), 0.5), "partly"),
        (lambda: verdicts.below(iv(0.5, 0.6), 0.5), "not reproduced"),
    ],
    "equivalent": [
        (lambda: verdicts.equivalent(iv(-0.01, 0.02), 0.0, margin=0.03, n_seeds=3), "reproduced"),
        (lambda: verdicts.equivalent(iv(-0.01, 0.02), 0.0, margin=0.03, n_seeds=1), "partly"),  # too few seeds
        (lambda: verdicts.equivalent(iv(-0.01, 0.05), 0.0, margin=0.03), "partly"),
        (lambda: verdicts.equivalent(iv(0.04, 0.05), 0.0, margin=0.03), "not reproduced"),
    ],
    "no_better_than": [
        (lambda: verdicts.no_better_than(iv(-0.05, 0.01), margin=0.02, n_seeds=5), "reproduced"),
        (lambda: verdicts.no_better_than(iv(0.005, 0.015), margin=0.02, n_seeds=1), "partly"),  # one seed: partly at most
        (lambda: verdicts.no_better_than(iv(0.0, 0.04), margin=0.02, n_seeds=5), "partly"),
        (lambda: verdicts.no_better_than(iv(0.03, 0.04), margin=0.02, n_seeds=5), "not reproduced"),
    ],
    "ordered": [
        (lambda: verdicts.ordered({"A − B": iv(0.1, 0.2), "B − C": iv(0.05, 0.1)}), "reproduced"),
        (lambda: verdicts.ordered({"A − B": iv(0.1, 0.2), "B − C": iv(-0.05, 0.1)}), "partly"),
        (lambda: verdicts.ordered({"A − B": iv(0.1, 0.2), "B − C": iv(-0.2, -0.1)}), "not reproduced"),
    ],
    "all_of": [
        (lambda: verdicts.all_of({"a": verdicts.exceeds(iv(1, 2), 0), "b": verdicts.exceeds(iv(1, 3), 0)}), "reproduced"),
        (lambda: verdicts.all_of({"a": verdicts.exceeds(iv(1, 2), 0), "b": verdicts.exceeds(iv(-1, 3), 0)}), "partly"),
        (lambda: verdicts.all_of({"a": verdicts.exceeds(iv(1, 2), 0), "b": verdicts.exceeds(iv(-3, -1), 0)}),
         "not reproduced"),
    ],
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_every_rule_reaches_every_verdict(rule):
    got = [make().verdict for make, _ in CASES[rule]]
    assert got == [want for _, want in CASES[rule]]
    assert set(got) == set(VERDICTS)


def test_rule_text_is_generated_from_the_parameters():
    v = verdicts.exceeds(Interval(0.3, 0.25, 0.35, "200 images", fmt=".0%"), 0.1, margin=0.05)
    assert v.rule.startswith("exceeds:") and "15%" in v.rule and "10%" in v.rule and "margin of 5%" in v.rule
    assert v.evidence == "30% [25%, 35%] (200 images)"
    v = verdicts.no_better_than(iv(0, 0.01), margin=0.02, n_seeds=2, min_seeds=4)
    assert "4 seeds" in v.rule and "(2 run)" in v.rule and v.verdict == "partly"


def test_interval_constructors():
    p = Interval.proportion(10, 10)
    assert p.estimate == 1 and p.hi == pytest.approx(1) and 0.6 < p.lo < 0.8
    assert verdicts.contains(p, 1.0).verdict == "reproduced"
    m = Interval.mean(np.arange(100.0))
    assert m.lo < 49.5 < m.hi and m.estimate == 49.5
    assert Interval.mean(np.arange(100.0)) == m  # seeded
    pt = Interval.point(3.0)
    assert pt.lo == pt.hi == 3 and str(pt).startswith("3 (exact")
    d = Interval.from_stats({"mean difference": 0.1, "ci_low": 0.0, "ci_high": 0.2, "n": 5})
    assert (d.estimate, d.lo, d.hi) == (0.1, 0.0, 0.2) and "n = 5" in d.how


@pytest.mark.parametrize("bad", [
    lambda: Interval(math.nan, 0, 1),
    lambda: Interval(0.5, 0.6, 1.0),  # estimate outside its interval
    lambda: Interval.mean([1.0, math.nan]),
    lambda: Interval.proportion(0, 0),
    lambda: verdicts.exceeds(iv(0, 1), 0.0, margin=-1),
    lambda: verdicts.Verdict("maybe", "", ""),
    lambda: verdicts.ordered({}),
    lambda: verdicts.all_of({}),
])
def test_bad_input_is_refused(bad):
    with pytest.raises(ValueError):
        bad()


def test_no_chapter_writes_a_verdict_by_hand():
    """Notebooks call a rule; a string verdict or an if/else ladder in a notebook is a bug."""
    ladder = re.compile(r'"(reproduced|partly|not reproduced)"\s+if\b')
    root = Path(__file__).resolve().parents[1]
    offenders = [str(p.relative_to(root)) for p in (root / "notebooks").rglob("*.md") if ladder.search(p.read_text())]
    offenders += [str(p.relative_to(root)) for p in (root / "src").rglob("*.py")
                  if p.name != "verdicts.py" and ladder.search(p.read_text())]
    assert offenders == []


def test_check_maps_refuses_nan_maps():
    import torch

    from salbook.checks import check_maps

    check_maps(torch.zeros(2, 1, 4, 4), (2, 1, 4, 4))
    maps = torch.zeros(3, 1, 4, 4)
    maps[1, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="1 of 3 maps"):
        check_maps(maps)
    with pytest.raises(ValueError, match="one map per input"):
        check_maps(torch.zeros(2, 4), (3, 1, 2, 2))
    with pytest.raises(TypeError):
        check_maps(torch.zeros(2, 4, dtype=torch.long))


def test_all_of_is_the_worst_verdict_and_names_each_threshold():
    yes, no = verdicts.Interval.point(0.0), verdicts.Interval.point(0.1)
    undecided = verdicts.Interval(0.0, -0.05, 0.05)
    v = {k: verdicts.no_better_than(iv, 0.02) for k, iv in (("yes", yes), ("no", no), ("undecided", undecided))}
    assert (v["yes"].verdict, v["no"].verdict, v["undecided"].verdict) == ("reproduced", "not reproduced", "partly")
    assert verdicts.all_of({0.5: v["yes"], 0.9: v["yes"]}, what="threshold").verdict == "reproduced"
    assert verdicts.all_of({0.5: v["yes"], 0.9: v["undecided"]}).verdict == "partly"
    combined = verdicts.all_of({0.5: v["undecided"], 0.9: v["no"]}, what="threshold")
    assert combined.verdict == "not reproduced"
    assert "t = 50%: partly" in combined.evidence and "t = 90%: not reproduced" in combined.evidence
    assert "at every threshold (t = 50%, t = 90%)" in combined.rule and "no better than" in combined.rule
    parts = verdicts.all_of({"MNIST": v["yes"], 0.9: v["yes"]}, what="part")
    assert parts.verdict == "reproduced" and "MNIST: reproduced" in parts.evidence
    with pytest.raises(ValueError):
        verdicts.all_of({})


def test_bootstrap_interval_resamples_units_jointly_and_is_seeded():
    values = np.arange(20.0)
    iv = Interval.bootstrap(lambda i: values[i].mean(), len(values), "20 units")
    mean = Interval.mean(values)
    assert (iv.estimate, iv.lo, iv.hi) == pytest.approx((mean.estimate, mean.lo, mean.hi))  # same draws as bootstrap_ci
    assert Interval.bootstrap(lambda i: values[i].mean(), len(values), "20 units") == iv
