"""Closed-form quick probes for `probe recommend`: ridge regressions of the 0/1 labels on a
sample's video features, the penalty picked on held-out videos.

A recommendation from a sample needs a probe whose ranking of the candidates can be trusted and
whose cost is small next to the sample's extraction. A ridge regression is the linear probe with
its weight decay swept (as LAION's clip_benchmark sweeps a logistic regression's on validation),
solved exactly: one SVD of the training videos gives every penalty's weights at once, and no
learning rate, epoch budget or early stopping enters the comparison. Features are each
candidate's clip features averaged per video (`recommend.read_sample`), standardised on the
training videos; the targets are the 0/1 labels, centred, with the intercept (each label's rate)
added back to the scores, since μAP pools every (video, label) pair. Every label is one column of
one solve.

Two ways to hold videos out, both giving `recommend.ProbeRun`s for the bootstrap:

- `split_runs`: the sample's own splits, as the probes of the matrix train: fit on the split's
  train videos, pick the penalty with the best val μAP, score its test videos.
- `cv_runs`: cross-validation over every sampled video. By default leave-one-out, exact and in
  closed form (`loo_scores`: one SVD of all the videos gives each one's prediction by the model
  fit on the others, its penalty picked on those others alone); or K folds x R repeats
  (`cv_folds`), the penalty picked by the exact leave-one-out predictions of each fold's
  training videos. A 20% sample of a 36-video collection has 1-2 test videos per split;
  cross-validation scores all 7, and leave-one-out trains each prediction on 6 of them where 5
  folds train on 5-6. On the bench (200 seeds, 20% samples) leave-one-out picked right in 94% of
  the degraded bank's draws against 84% with 5 x 5 folds, and as often on the others.

The torch probes (linear, MLP, ... through the run cache) remain available to `probe recommend`
with `--models`; the bench (`bench/bench_recommend.py`) measures these ridge probes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from probe.recommend import Candidate, ProbeRun, weighted_micro_ap
from vtl.manifest import split_problem, split_subsets

# Penalties tried, times the training videos: four decades, from nearly least squares to strong
# shrinkage (the pick is not recorded: it only decides the held-out scores).
PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
# The cross-validation's default: leave-one-out (None); K folds are repeated 5 times.
FOLDS, REPEATS = None, 5
NESTED_MAX = 200  # leave-one-out picks each video's penalty without it up to this many videos
_EPS = 1e-6  # added to each feature's standard deviation (constant features)


def _micro_ap(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """μAP of one prediction matrix (`probe.metrics.micro_ap`; 0 without positives)."""
    if not y_true.any():
        return 0.0
    return float(weighted_micro_ap(y_true, y_score, np.ones((1, len(y_true))))[0])


class _Path:
    """What every penalty's fit on the `train` rows shares: the features standardised on them,
    the SVD of theirs, the intercept (each label's rate) and the centred targets in the SVD's
    basis."""

    def __init__(self, x: np.ndarray, y: np.ndarray, train: np.ndarray):
        mean, std = x[train].mean(axis=0), x[train].std(axis=0) + _EPS
        self.z = (x - mean) / std
        self.u, self.s, self.vt = np.linalg.svd(self.z[train], full_matrices=False)
        self.offset = y[train].mean(axis=0)
        self.target = self.u.T @ (y[train] - self.offset)
        self.n = len(train)

    def weights(self, penalty: float) -> np.ndarray:
        """(D, L) the ridge weights at `penalty` times the training rows."""
        return self.vt.T @ ((self.s / (self.s**2 + penalty * self.n))[:, None] * self.target)

    def scores(self, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The regression's predictions for `rows`, intercept included."""
        return self.z[rows] @ weights + self.offset

    def shrink(self, penalty: float) -> np.ndarray:
        """Each singular direction's shrinkage at `penalty`: s^2 / (s^2 + penalty x N)."""
        return self.s**2 / (self.s**2 + penalty * self.n)

    def loo(self, penalty: float, y: np.ndarray) -> np.ndarray:
        """Exact leave-one-out predictions of the training rows `y` at `penalty`: from the hat
        matrix's diagonal h (intercept included), y_loo = (fit - h y) / (1 - h)."""
        shrink = self.shrink(penalty)
        fitted = self.u @ (shrink[:, None] * self.target) + self.offset
        leverage = (1 / self.n + (self.u**2) @ shrink)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):  # h = 1: no prediction
            return (fitted - leverage * y) / (1 - leverage)

    def hat(self, penalty: float) -> np.ndarray:
        """(N, N) the hat matrix of the training rows at `penalty`, intercept included."""
        return 1 / self.n + (self.u * self.shrink(penalty)) @ self.u.T


def _leave_two_out(hat: np.ndarray, fitted: np.ndarray, y: np.ndarray, i: int) -> np.ndarray:
    """Each row j != i predicted by the fit without rows i and j, exactly: with S = {i, j},
    y_S = (I - H_SS)^-1 (fit_S - H_SS y_S), H the fit's hat matrix and fit = H y. Rows in
    order, i left out."""
    rest = np.delete(np.arange(len(y)), i)
    a, b, c = hat[i, i], hat[i, rest][:, None], np.diag(hat)[rest][:, None]
    r_i = fitted[i] - a * y[i] - b * y[rest]
    r_j = fitted[rest] - b * y[i] - c * y[rest]
    with np.errstate(divide="ignore", invalid="ignore"):  # a singular pair: no prediction
        return (b * r_i + (1 - a) * r_j) / ((1 - a) * (1 - c) - b**2)


def ridge_scores(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, test: np.ndarray
) -> np.ndarray:
    """Test scores of a ridge regression of y on x fit on `train`, its penalty the one of
    PENALTIES with the best μAP on `val` (the smallest on a tie).

    Args:
        x: (N, D) video features; y: (N, L) 0/1 labels; train, val, test: row indices.

    Returns:
        (len(test), L) the regression's predictions (intercept included).
    """
    path = _Path(x, y, train)
    best, best_w = -np.inf, None
    for penalty in PENALTIES:
        w = path.weights(penalty)
        value = _micro_ap(y[val], path.scores(val, w))
        if best_w is None or value > best:
            best, best_w = value, w
    return path.scores(test, best_w)


def cv_scores(x: np.ndarray, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Every video's held-out scores: for each fold, a ridge regression fit on the other folds,
    its penalty the one of PENALTIES whose exact leave-one-out predictions of those training
    videos have the best μAP (no validation videos are set aside).

    Args:
        x: (N, D) video features; y: (N, L) 0/1 labels; fold: (N,) each video's fold.

    Returns:
        (N, L) scores, each row from the model that did not see that video.
    """
    held_out = np.zeros_like(y, dtype=np.float64)
    for f in np.unique(fold):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        path = _Path(x, y, train)
        best, best_penalty = -np.inf, None
        for penalty in PENALTIES:
            value = _micro_ap(y[train], path.loo(penalty, y[train]))
            if best_penalty is None or value > best:
                best, best_penalty = value, penalty
        held_out[test] = path.scores(test, path.weights(best_penalty))
    return held_out


def loo_scores(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Every video's leave-one-out scores: a ridge regression fit on all the other videos, at
    the penalty of PENALTIES whose leave-one-out predictions of those other videos have the
    best μAP (the rule `cv_scores` applies to each fold's training videos), so the held-out
    video's labels enter neither the fit nor the penalty's choice. All in closed form from one
    SVD of every video: the fits without one video from the hat matrix's diagonal, the
    penalty's choice from its 2 x 2 blocks (`_leave_two_out`). The features are standardised on
    every video (their labels unseen). Above NESTED_MAX videos the penalty is chosen once, on
    every video's leave-one-out μAP: one video of hundreds barely moves a choice among five,
    and the nested choice costs N μAPs of N videos per penalty (about 18 s per candidate at
    1,000 videos here, against 0.06 s at 60).

    Args:
        x: (N, D) video features; y: (N, L) 0/1 labels.

    Returns:
        (N, L) scores, each row from the model that did not see that video's labels.
    """
    n = len(x)
    path = _Path(x, y, np.arange(n))
    loos = [path.loo(penalty, y) for penalty in PENALTIES]
    values = [_micro_ap(y, loo) if np.isfinite(loo).all() else -np.inf for loo in loos]
    shared = int(np.argmax(values))  # the first of equal values, as every choice here
    if n > NESTED_MAX:
        return loos[shared]
    hats = [path.hat(penalty) for penalty in PENALTIES]
    fits = [hat @ y for hat in hats]
    out = np.empty_like(loos[shared])
    for i in range(n):
        others = np.delete(y, i, axis=0)
        inner = [_leave_two_out(hat, fit, y, i) for hat, fit in zip(hats, fits, strict=True)]
        values = [_micro_ap(others, p) if np.isfinite(p).all() else -np.inf for p in inner]
        pick = int(np.argmax(values)) if np.isfinite(max(values)) else shared
        out[i] = loos[pick][i]
    return out


def cv_folds(labels: np.ndarray, folds: int = 5, repeats: int = 1, seed: int = 0) -> np.ndarray:
    """Repeated k-fold assignments of the sample's videos, each label's positives spread out.

    Every video is in exactly one fold of each repeat, so quick probes tested on each fold in
    turn (trained on the others) give every video one held-out prediction per repeat. Within a
    repeat the videos are dealt to the folds in turn, those whose rarest positive label is
    rarest first (ties in random order), so a label with p positives has them in min(p, folds)
    folds.

    Args:
        labels: (N, L) 0/1 labels of the sample.
        folds: folds per repeat (at most N are used).
        repeats: independent assignments.
        seed: the assignments' seed.

    Returns:
        (repeats, N) int: each video's fold in each repeat, 0 .. min(folds, N) - 1.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n < 2 or folds < 2 or repeats < 1:
        raise ValueError(
            f"cv_folds needs >= 2 videos, >= 2 folds, >= 1 repeat; got {n}, {folds}, {repeats}"
        )
    folds = min(folds, n)
    frequency = labels.sum(axis=0)
    rng = np.random.default_rng(seed)
    assignment = np.empty((repeats, n), dtype=np.int64)
    for r in range(repeats):
        shuffled = rng.permutation(n)
        rarest = np.where(labels[shuffled] == 1, frequency, np.inf).min(axis=1)
        dealt = shuffled[np.argsort(rarest, kind="stable")]
        assignment[r, dealt] = np.arange(n) % folds
    return assignment


def split_runs(
    candidates: Sequence[Candidate],
    labels: np.ndarray,
    label_names: Sequence[str],
    splits: np.ndarray,
    split_list,
) -> tuple[list[ProbeRun], list[str]]:
    """Each candidate's ridge probe on each usable split of the sample (`ridge_scores`): a split
    is usable by the rule of every probe (`vtl.manifest.split_problem`).

    Returns:
        (runs, notes): one run per candidate and usable split; a note per split left out.
    """
    y = np.asarray(labels, dtype=np.float64)
    runs, notes = [], []
    for k in split_list:
        problem = split_problem(labels, splits, k, label_names)
        if problem is not None:
            notes.append(f"split {k} left out of the quick probes: {problem} in the sample")
            continue
        train, val, test = split_subsets(splits, k).values()
        for candidate in candidates:
            scores = ridge_scores(candidate.features, y, train, val, test)
            runs.append(ProbeRun(candidate.name, k, 0, test, scores))
    return runs, notes


def cv_runs(
    candidates: Sequence[Candidate],
    labels: np.ndarray,
    folds: int | None = FOLDS,
    repeats: int = REPEATS,
    seed: int = 0,
) -> list[ProbeRun]:
    """Each candidate's ridge probe cross-validated over every sampled video: leave-one-out
    (`folds` None, `loo_scores`: one run), else `folds` folds x `repeats` (`cv_scores`: one run
    per repeat, the folds seeded by `seed`); every candidate sees the same folds. None with
    fewer than 2 videos."""
    if len(labels) < 2:
        return []
    y = np.asarray(labels, dtype=np.float64)
    every = np.arange(len(y))
    if folds is None:
        return [ProbeRun(c.name, 0, 0, every, loo_scores(c.features, y)) for c in candidates]
    return [
        ProbeRun(candidate.name, r, 0, every, cv_scores(candidate.features, y, fold))
        for r, fold in enumerate(cv_folds(labels, folds, repeats, seed))
        for candidate in candidates
    ]
