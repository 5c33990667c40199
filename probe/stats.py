"""Is a difference between two settings real? Paired tests over the same splits and seeds.

A study compares a variant with the baseline run for run: the same split (the same test videos)
and the same seed, so each pair's difference removes what the split and the seed do to both.
The question is whether the mean difference could be noise.

The test used is the **sign-flip permutation test** (Fisher's randomization test for paired
data): under the null hypothesis that the variant changes nothing, each difference is as likely
to have come out with the opposite sign, so the observed mean difference is compared with the
means of all 2^n ways of flipping the signs. Why it, and not the paired t-test: it assumes no
normal distribution of the differences, which a handful of runs cannot show, and it is exact
(every sign assignment is counted for n <= 20 pairs). Its smallest possible p-value is
2 / 2^n, so with n pairs a difference can only be called real when 2 / 2^n < alpha: 5 pairs at
least for alpha = 0.05 (3 splits x 1 seed can never be; 3 splits x 3 seeds can). The paired
t-test (`paired_t_test`) is given beside it for comparison.

Caveat: runs of the same split with different seeds share their test videos, so they are not
independent samples of the dataset; the test says whether a difference is larger than the noise
of training (seeds) and of these splits, not of new datasets.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

ALPHA = 0.05
EXACT_PAIRS = 20  # up to this many pairs every sign assignment is enumerated (2^20)
RESAMPLES = 100_000  # beyond, random sign assignments (seeded)


@dataclass(frozen=True)
class PairedTest:
    """The outcome of a paired comparison of a variant (b) with a baseline (a)."""

    n: int  # pairs
    mean: float  # mean of b - a
    std: float  # sample std of b - a (0 for one pair)
    p_value: float  # two-sided, sign-flip permutation
    p_ttest: float | None  # two-sided paired t-test, for comparison (None: undefined)
    alpha: float = ALPHA

    @property
    def verdict(self) -> str:
        """'distinguishable' when p < alpha, else 'within noise'."""
        return "distinguishable" if self.p_value < self.alpha else "within noise"

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


def paired_arrays(
    a: Sequence[float], b: Sequence[float], names: tuple[str, str] = ("a", "b")
) -> tuple[np.ndarray, np.ndarray]:
    """`a` and `b` as float64 arrays of paired values: 1-D, equally long, finite (checked in
    that order). Errors name the arguments as `names`."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    first, second = names
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"{first} and {second} must be 1-D, got shapes {x.shape} and {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"{first} has {len(x)} values but {second} has {len(y)}: pairs must match")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"{first} and {second} must be finite")
    return x, y


def _differences(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    if len(a) == 0:
        raise ValueError("no pairs to compare")
    x, y = paired_arrays(a, b)
    return y - x


def sign_flip_p_value(a: Sequence[float], b: Sequence[float], seed: int = 0) -> float:
    """Two-sided p-value of the sign-flip permutation test of mean(b - a) = 0.

    The share of sign assignments s whose |mean(s * d)| is at least the observed |mean(d)| (with
    a relative tolerance of 1e-12, so that ties from rounding count as ties); exact for up to
    EXACT_PAIRS pairs, else estimated from RESAMPLES random assignments (the observed one
    included, so the estimate is never 0). All differences 0 gives 1.
    """
    d = _differences(a, b)
    observed = abs(d.mean())
    if observed == 0.0:
        return 1.0
    tolerance = observed * 1e-12
    if len(d) <= EXACT_PAIRS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
        means = np.abs(signs @ d) / len(d)
        return float(np.mean(means >= observed - tolerance))
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(RESAMPLES, len(d)))
    hits = int(np.sum(np.abs(signs @ d) / len(d) >= observed - tolerance))
    return (hits + 1) / (RESAMPLES + 1)


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of the paired t-test of mean(b - a) = 0 (scipy's `ttest_rel`); None
    for fewer than 2 pairs or differences that are all equal (no variance to test against)."""
    d = _differences(a, b)
    if len(d) < 2:
        return None
    sd = d.std(ddof=1)
    if sd == 0:
        return None
    from scipy import stats

    t = d.mean() / (sd / math.sqrt(len(d)))
    return float(2 * stats.t.sf(abs(t), df=len(d) - 1))


def paired_test(
    a: Sequence[float], b: Sequence[float], alpha: float = ALPHA, seed: int = 0
) -> PairedTest:
    """Compare paired values of a variant (`b`) with the baseline (`a`): see the module
    docstring. `a[i]` and `b[i]` must come from the same split and seed."""
    d = _differences(a, b)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return PairedTest(
        n=len(d),
        mean=float(d.mean()),
        std=float(d.std(ddof=1)) if len(d) > 1 else 0.0,
        p_value=sign_flip_p_value(a, b, seed),
        p_ttest=paired_t_test(a, b),
        alpha=alpha,
    )


def smallest_p_value(n: int) -> float:
    """The smallest two-sided sign-flip p-value n pairs can give: 2 / 2^n."""
    return min(1.0, 2.0 / 2**n)


@dataclass(frozen=True)
class RankedCell:
    """One cell of a report column compared with the column's best cell."""

    best: bool  # the highest mean of the column
    p_vs_best: float | None  # sign-flip p of this cell's runs against the best's (None: the best)
    pairs: int  # (split, seed) runs the two cells share
    within_noise: bool  # the best cannot be told apart from this cell (p >= alpha)


def compare_with_best(
    runs: dict[str, dict[tuple, float]], alpha: float = ALPHA
) -> dict[str, RankedCell]:
    """Which cells of one report column the column's best cannot be told apart from.

    Args:
        runs: cell name -> {(split, seed): value} (a matrix column: one probe's test μAP of each
            backbone, run by run).
        alpha: the test's level.

    The best cell is the one with the highest mean (ties: the first). Every other cell is
    compared with it by the paired sign-flip test over the runs both have (the same split and
    seed: the same test videos and initialisation), as a study compares a variant with its
    baseline; it is `within_noise` when p >= alpha, and also when the two share no run.
    """
    means = {name: float(np.mean(list(values.values()))) for name, values in runs.items() if values}
    if not means:
        return {}
    best = max(means, key=means.get)
    out = {best: RankedCell(True, None, len(runs[best]), True)}
    for name in means:
        if name == best:
            continue
        common = sorted(set(runs[name]) & set(runs[best]))
        if not common:
            out[name] = RankedCell(False, None, 0, True)
            continue
        a = [runs[best][k] for k in common]
        b = [runs[name][k] for k in common]
        p = sign_flip_p_value(a, b)
        out[name] = RankedCell(False, p, len(common), p >= alpha)
    return out
