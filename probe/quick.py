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
- `cv_runs`: cross-validation over every sampled video (`cv_folds`, K folds x R repeats), the
  penalty picked by the exact leave-one-out predictions of each fold's training videos. A 20%
  sample of a 36-video collection has 1-2 test videos per split; cross-validation scores all 7.

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
FOLDS, REPEATS = 5, 5  # the cross-validation's default: 5 folds, 5 repeats
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
            shrink = path.s**2 / (path.s**2 + penalty * path.n)
            fitted = path.u @ (shrink[:, None] * path.target) + path.offset
            # The hat matrix's diagonal, intercept included: y_loo = (fit - h y) / (1 - h).
            leverage = (1 / path.n + (path.u**2) @ shrink)[:, None]
            loo = (fitted - leverage * y[train]) / (1 - leverage)
            value = _micro_ap(y[train], loo)
            if best_penalty is None or value > best:
                best, best_penalty = value, penalty
        held_out[test] = path.scores(test, path.weights(best_penalty))
    return held_out


def cv_folds(labels: np.ndarray, folds: int = FOLDS, repeats: int = 1, seed: int = 0) -> np.ndarray:
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
    folds: int = FOLDS,
    repeats: int = REPEATS,
    seed: int = 0,
) -> list[ProbeRun]:
    """Each candidate's cross-validated ridge probe (`cv_scores`), one run per repeat over
    every sampled video; every candidate sees the same folds. None with fewer than 2 videos."""
    if len(labels) < 2:
        return []
    y = np.asarray(labels, dtype=np.float64)
    every = np.arange(len(y))
    return [
        ProbeRun(candidate.name, r, 0, every, cv_scores(candidate.features, y, fold))
        for r, fold in enumerate(cv_folds(labels, folds, repeats, seed))
        for candidate in candidates
    ]
