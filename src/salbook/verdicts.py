"""The rules that turn a measurement into a verdict on a paper's claim.

A chapter never writes ``"reproduced" if … else "partly" if … else "not reproduced"`` by hand. It
measures an :class:`Interval` (an estimate with its confidence interval; :meth:`Interval.point` for a
quantity with no sampling error) and calls one of five named rules:

========================  =====================================================================
rule                      the paper's claim
========================  =====================================================================
:func:`contains`          "the value is v" (our interval should contain v, or come within a margin)
:func:`exceeds`           "the value is above b" (one-sided, with a margin of practical size)
:func:`below`             "the value is below b" (mirror of :func:`exceeds`)
:func:`equivalent`        "the value is b, within ± m" (two one-sided tests, by interval)
:func:`no_better_than`    "A is no better than B": an equivalence (non-superiority) claim on A − B,
                          which needs ``min_seeds`` independent seeds per arm to be reproduced
:func:`ordered`           "A > B" for every listed pair ("A > B > C", or "A > B on both networks")
:func:`all_of`            a claim with several parts (every method, every threshold): combines verdicts
========================  =====================================================================

Every rule can reach all three verdicts of :data:`VERDICTS`, and returns a :class:`Verdict` whose
``rule`` text is generated from the rule's parameters, so the note in a run record always says what
the code did. An interval that straddles the decision point is "partly" (undecided), never a pass.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from . import stats

VERDICTS = ("reproduced", "partly", "not reproduced")


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval ``[lo, hi]``; ``how`` says how it was obtained
    (e.g. "95 % Wilson, 200 images"); ``fmt`` is the format spec used to print it (".1%", ".3g")."""

    estimate: float
    lo: float
    hi: float
    how: str = ""
    fmt: str = ".3g"

    def __post_init__(self):
        for name in ("estimate", "lo", "hi"):
            value = getattr(self, name)
            if value is None or not math.isfinite(float(value)):
                raise ValueError(f"Interval.{name} is {value!r}: a verdict needs a finite estimate and interval "
                                 "(too few values? NaN maps?) — measure more, or record it as a metric instead")
            object.__setattr__(self, name, float(value))
        if not self.lo <= self.estimate <= self.hi:
            raise ValueError(f"Interval must satisfy lo <= estimate <= hi, got {self.lo} <= {self.estimate} <= {self.hi}")

    @classmethod
    def point(cls, value: float, how: str = "exact, no sampling error", fmt: str = ".3g") -> "Interval":
        """A quantity measured without sampling error (a count on fixed images, a timing)."""
        return cls(value, value, value, how, fmt)

    @classmethod
    def proportion(cls, k: int, n: int, level: float = 0.95, fmt: str = ".1%") -> "Interval":
        """``k`` successes of ``n``: the rate with its Wilson score interval."""
        if int(n) <= 0:
            raise ValueError(f"a proportion needs n > 0 trials, got k={k}, n={n}")
        p = stats.proportion(k, n, level)
        return cls(p["rate"], p["ci_low"], p["ci_high"], f"{int(k)} of {int(n)}, {level:.0%} Wilson", fmt)

    @classmethod
    def mean(cls, values, level: float = 0.95, seed: int = 0, fmt: str = ".3g", what: str = "values") -> "Interval":
        """Mean of ``values`` (NaNs refused) with a seeded percentile-bootstrap interval; for a paired
        comparison pass the per-image (or per-seed) differences."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if len(v) == 0 or not np.isfinite(v).all():
            raise ValueError(f"Interval.mean needs finite values, got {len(v)} values with "
                             f"{int((~np.isfinite(v)).sum())} NaN/inf")
        b = stats.bootstrap_ci(v, level=level, seed=seed)
        return cls(b["mean"], min(b["ci_low"], b["mean"]), max(b["ci_high"], b["mean"]),
                   f"mean of {len(v)} {what}, {level:.0%} bootstrap", fmt)

    @classmethod
    def bootstrap(cls, statistic, n: int, how: str, level: float = 0.95, seed: int = 0, n_boot: int = 2000,
                  fmt: str = ".3g") -> "Interval":
        """``statistic(idx)`` on all ``n`` units (``idx = arange(n)``) with the seeded percentile-bootstrap
        interval of :func:`salbook.stats.resample_interval` (the estimate is kept inside its interval)."""
        estimate = float(statistic(np.arange(n)))
        lo, hi = stats.resample_interval(statistic, n, n_boot, level, seed)
        return cls(estimate, min(lo, estimate), max(hi, estimate), how, fmt)

    @classmethod
    def from_stats(cls, d: dict, how: str = "", fmt: str = ".3g") -> "Interval":
        """From a :mod:`salbook.stats` dict (``rate``/``mean``/``mean difference``/``median difference``
        with ``ci_low``/``ci_high``)."""
        key = next((k for k in ("rate", "mean", "mean difference", "median difference") if k in d), None)
        if key is None:
            raise KeyError(f"no estimate in {sorted(d)}; expected rate, mean, mean difference or median difference")
        n = f", n = {d['n']}" if "n" in d else ""
        return cls(d[key], d["ci_low"], d["ci_high"], how or f"{key}{n}", fmt)

    def f(self, value: float) -> str:
        return format(value, self.fmt)

    def __str__(self) -> str:
        if self.lo == self.hi:
            return f"{self.f(self.estimate)} ({self.how})"
        return f"{self.f(self.estimate)} [{self.f(self.lo)}, {self.f(self.hi)}] ({self.how})"


@dataclass(frozen=True)
class Verdict:
    """A verdict, the rule that gave it (words generated from its parameters) and the evidence judged."""

    verdict: str
    rule: str
    evidence: str

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def as_dict(self) -> dict:
        return asdict(self)


def _verdict(ok: bool, fail: bool, rule: str, evidence: str) -> Verdict:
    assert not (ok and fail), "a rule's pass and fail conditions overlap"
    return Verdict("reproduced" if ok else "not reproduced" if fail else "partly", rule, evidence)


def _margin(margin: float) -> float:
    if margin is None or not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    return float(margin)


def contains(x: Interval, value: float, margin: float = 0.0) -> Verdict:
    """Claim "the quantity is ``value``": reproduced if the interval contains it, partly if the
    interval comes within ``margin`` of it, not reproduced if it lies farther away."""
    m, f = _margin(margin), x.f
    gap = max(x.lo - value, value - x.hi, 0.0)
    rule = (f"contains: reproduced if the interval contains the paper's {f(value)}; partly if it comes within "
            f"{f(m)} of it; not reproduced otherwise")
    return _verdict(gap == 0, gap > m, rule, str(x))


def exceeds(x: Interval, bound: float, margin: float = 0.0) -> Verdict:
    """Claim "the quantity is above ``bound``" (e.g. a difference above 0): reproduced if the whole
    interval lies above ``bound + margin``; not reproduced if it lies at or below ``bound``; partly
    otherwise (undecided, or above the bound by less than the margin)."""
    m, f = _margin(margin), x.f
    rule = (f"exceeds: reproduced if the interval lies above {f(bound + m)}"
            + (f" ({f(bound)} plus a margin of {f(m)})" if m else "")
            + f"; not reproduced if it lies at or below {f(bound)}; partly otherwise")
    return _verdict(x.lo > bound + m, x.hi <= bound, rule, str(x))


def below(x: Interval, bound: float, margin: float = 0.0) -> Verdict:
    """Claim "the quantity is below ``bound``": the mirror of :func:`exceeds`."""
    m, f = _margin(margin), x.f
    rule = (f"below: reproduced if the interval lies below {f(bound - m)}"
            + (f" ({f(bound)} minus a margin of {f(m)})" if m else "")
            + f"; not reproduced if it lies at or above {f(bound)}; partly otherwise")
    return _verdict(x.hi < bound - m, x.lo >= bound, rule, str(x))


def _seeds_ok(n_seeds: int | None, min_seeds: int) -> tuple[bool, str]:
    if n_seeds is None:
        return True, ""
    ok = int(n_seeds) >= min_seeds
    return ok, f"; at least {min_seeds} seeds per arm needed to reproduce it ({int(n_seeds)} run)"


def equivalent(x: Interval, value: float, margin: float, n_seeds: int | None = None, min_seeds: int = 3) -> Verdict:
    """Claim "the quantity equals ``value`` within ± ``margin``" (equivalence by two one-sided tests,
    read off the interval): reproduced if the interval lies inside ``value ± margin`` (and at least
    ``min_seeds`` seeds were run, when ``n_seeds`` is given); not reproduced if it lies wholly outside;
    partly otherwise."""
    m, f = _margin(margin), x.f
    seeds, seeds_text = _seeds_ok(n_seeds, min_seeds)
    rule = (f"equivalent: reproduced if the interval lies inside {f(value)} ± {f(m)}{seeds_text}; "
            f"not reproduced if it lies wholly outside that band; partly otherwise")
    inside = value - m <= x.lo and x.hi <= value + m
    outside = x.lo > value + m or x.hi < value - m
    return _verdict(inside and seeds, outside, rule, str(x))


def no_better_than(difference: Interval, margin: float, n_seeds: int | None = None, min_seeds: int = 3) -> Verdict:
    """Claim "A is no better than B", judged on ``difference`` = A − B (higher = A better) as a
    non-superiority test: reproduced if the interval lies below ``+margin`` (and at least ``min_seeds``
    seeds per arm were run, when ``n_seeds`` is given); not reproduced if it lies above ``+margin``
    (A better by more than the margin); partly otherwise — in particular A better by less than the
    margin on too few seeds is partly at most."""
    m, f = _margin(margin), difference.f
    seeds, seeds_text = _seeds_ok(n_seeds, min_seeds)
    rule = (f"no better than: reproduced if the difference's interval lies below the margin {f(m)}{seeds_text}; "
            f"not reproduced if it lies above {f(m)}; partly otherwise")
    return _verdict(difference.hi < m and seeds, difference.lo > m, rule, str(difference))


def ordered(differences: dict[str, Interval], margin: float = 0.0) -> Verdict:
    """Claim "A > B" for every listed pair (an ordering "A > B > C …" lists its neighbours; "A beats
    B on both networks" lists one difference per network), judged on the intervals of the paired
    differences, keyed like ``{"A − B": Interval, "B − C": Interval}``: reproduced if every interval
    lies above ``margin``; not reproduced if some interval lies below 0 (a pair significantly
    reversed); partly otherwise."""
    if not differences:
        raise ValueError("ordered needs at least one pairwise difference")
    m = _margin(margin)
    f = next(iter(differences.values())).f
    rule = (f"ordered: reproduced if the interval of every listed difference ({', '.join(differences)}) lies above "
            f"{f(m)}; not reproduced if any lies below 0 (that pair reversed); partly otherwise")
    evidence = "; ".join(f"{k}: {v}" for k, v in differences.items())
    ok = all(v.lo > m for v in differences.values())
    fail = any(v.hi < 0 for v in differences.values())
    return _verdict(ok, fail, rule, evidence)


def all_of(parts: dict, what: str = "part") -> Verdict:
    """A claim made of several parts (``{part: Verdict}``: every method, every threshold t — a number
    key is printed as a threshold): reproduced if every part is reproduced, not reproduced if any part
    is not, partly otherwise (the worst of the verdicts). The rule text names every part and lists
    each distinct rule of the parts once."""
    if not parts:
        raise ValueError("all_of needs at least one part")
    label = lambda k: f"t = {k:.0%}" if isinstance(k, (int, float)) else str(k)  # noqa: E731
    verdicts = [v.verdict for v in parts.values()]
    rules = " | ".join(dict.fromkeys(v.rule for v in parts.values()))
    rule = (f"all of: at every {what} (" + ", ".join(label(k) for k in parts) + "), reproduced only if every one is "
            f"reproduced, not reproduced if any is not, partly otherwise; per {what}: {rules}")
    evidence = "; ".join(f"{label(k)}: {v.verdict}, {v.evidence}" for k, v in parts.items())
    return _verdict(all(v == "reproduced" for v in verdicts), "not reproduced" in verdicts, rule, evidence)
