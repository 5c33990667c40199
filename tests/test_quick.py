"""The closed-form quick probes of `probe recommend` (`probe.quick`) against scikit-learn's Ridge
refit explicitly: the penalty picked on validation, the exact leave-one-out predictions that
pick it under K-fold cross-validation and that are the default cross-validation; the folds;
splits a sample cannot train on; and a ranking of candidates whose order is known."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from probe import quick
from probe.metrics import micro_ap
from probe.quick import (
    PENALTIES,
    cv_folds,
    cv_runs,
    cv_scores,
    loo_scores,
    ridge_scores,
    split_runs,
)
from probe.recommend import Candidate, bootstrap
from vtl.manifest import split_problem


def dataset(n=40, d=12, labels=3, signal=1.0, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.4).astype(np.float64)
    y[:labels, :] = np.eye(labels)  # every label has a positive among the first videos
    x = rng.standard_normal((n, d)) + signal * y @ rng.standard_normal((labels, d))
    return x * rng.uniform(0.1, 10, d), y  # unequal feature scales: standardisation matters


def sklearn_fit(x, y, train, penalty):
    """Standardised on `train` as the probe does; Ridge's alpha is penalty x training videos."""
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-6
    model = Ridge(alpha=penalty * len(train), fit_intercept=True, solver="svd")
    model.fit((x[train] - mean) / std, y[train])
    return lambda rows: model.predict((x[rows] - mean) / std)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ridge_scores_equal_sklearn_with_the_penalty_picked_on_validation(seed):
    x, y = dataset(seed=seed)
    train, val, test = np.arange(0, 24), np.arange(24, 32), np.arange(32, 40)
    fits = [sklearn_fit(x, y, train, p) for p in PENALTIES]
    values = [micro_ap(y[val], fit(val)) for fit in fits]
    best = fits[int(np.argmax(values))]  # the first of equal values, as the probe
    np.testing.assert_allclose(ridge_scores(x, y, train, val, test), best(test), atol=1e-8)


@pytest.mark.parametrize("seed", [0, 3])
def test_cv_scores_pick_the_penalty_by_explicit_leave_one_out(seed):
    x, y = dataset(n=30, d=40, seed=seed)  # more dims than videos, as on a small sample
    fold = cv_folds(y, folds=3, seed=seed)[0]
    held_out = cv_scores(x, y, fold)
    for f in range(3):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-6
        z = (x - mean) / std  # fixed for the fold, as in the closed form
        values = []
        for penalty in PENALTIES:
            loo = np.empty((len(train), y.shape[1]))
            for i, row in enumerate(train):
                rest = np.delete(train, i)
                model = Ridge(alpha=penalty * len(train), solver="svd").fit(z[rest], y[rest])
                loo[i] = model.predict(z[[row]])[0]
            values.append(micro_ap(y[train], loo))
        penalty = PENALTIES[int(np.argmax(values))]
        model = Ridge(alpha=penalty * len(train), solver="svd").fit(z[train], y[train])
        np.testing.assert_allclose(held_out[test], model.predict(z[test]), atol=1e-8)


@pytest.mark.parametrize(("n", "d", "seed"), [(16, 24, 0), (24, 8, 4), (8, 64, 8)])
def test_leave_one_out_scores_equal_nested_refits_without_each_video(n, d, seed):
    """Every row i of `loo_scores` is scikit-learn's Ridge refit on the other N - 1 videos, at
    the penalty whose refits without each other video j (and i) predict j with the best μAP:
    the held-out video's labels enter neither the fit nor the penalty's choice. Features are
    standardised on all N videos and the penalty's scale is N, as in the closed form; also with
    more dims than videos and on 8 videos. Above NESTED_MAX the choice is shared: refits
    without each video at the penalty of the best μAP over all of them."""
    x, y = dataset(n=n, d=d, seed=seed)
    # Every label keeps a positive and a negative in every fit without two videos: a label with
    # none predicts 0 for all, and the refit's exact zeros and the closed form's 1e-16s would
    # order those ties differently.
    assert y.sum(axis=0).min() >= 3 and (1 - y).sum(axis=0).min() >= 3
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / std

    def refit(rows, penalty, at):
        return Ridge(alpha=penalty * n, solver="svd").fit(z[rows], y[rows]).predict(z[at])

    every = np.arange(n)
    expected = np.empty_like(y)
    for i in every:
        others = np.delete(every, i)
        values = []
        for penalty in PENALTIES:
            inner = np.array([refit(np.setdiff1d(others, [j]), penalty, [j])[0] for j in others])
            values.append(micro_ap(y[others], inner))
        expected[i] = refit(others, PENALTIES[int(np.argmax(values))], [i])[0]
    np.testing.assert_allclose(loo_scores(x, y), expected, atol=1e-7)

    shared = [np.array([refit(np.delete(every, i), p, [i])[0] for i in every]) for p in PENALTIES]
    best = shared[int(np.argmax([micro_ap(y, loo) for loo in shared]))]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(quick, "NESTED_MAX", n - 1)
        np.testing.assert_allclose(loo_scores(x, y), best, atol=1e-7)


def test_cv_folds_hold_out_every_video_once_per_repeat():
    rng = np.random.default_rng(0)
    labels = (rng.random((23, 3)) < 0.5).astype(np.uint8)
    labels[:, 2] = 0
    labels[[1, 6, 10, 15, 20], 2] = 1  # a rare label: 5 positives
    folds = cv_folds(labels, folds=5, repeats=3, seed=7)
    assert folds.shape == (3, 23)
    for row in folds:
        # One fold per video (the row), folds of 5, 5, 5, 4 and 4 videos.
        assert sorted(np.bincount(row, minlength=5)) == [4, 4, 5, 5, 5]
        # The rare label's positives are spread, one per fold.
        assert sorted(row[labels[:, 2] == 1]) == [0, 1, 2, 3, 4]
    assert len({row.tobytes() for row in folds}) == 3  # the repeats differ
    np.testing.assert_array_equal(folds, cv_folds(labels, 5, 3, seed=7))
    assert sorted(cv_folds(labels[:3], folds=5)[0]) == [0, 1, 2]  # at most one fold per video
    with pytest.raises(ValueError, match="2 folds"):
        cv_folds(labels, folds=1)


def test_split_problems_and_the_runs_of_usable_splits():
    _, y = dataset(n=12)
    splits = np.zeros((12, 3), dtype=np.uint8)
    splits[8:10, :], splits[10:, :] = 1, 2  # 8 train, 2 val, 2 test in every split
    splits[:, 1] = np.where(splits[:, 1] == 1, 0, splits[:, 1])  # split 1: no val videos
    splits[[0, 1, 2], 2] = 2  # split 2: the first videos (a label's only positive) in test
    y[3:, 0] = 0
    names = [f"l{j}" for j in range(y.shape[1])]
    assert split_problem(y, splits, 0, names) is None
    assert split_problem(y, splits, 1, names) == "no val videos"
    assert split_problem(y, splits, 2, names) == "no positive training video of label 'l0'"
    y_none = np.hstack([y, y[:, :2]])  # 5 labels, none with a training positive in split 0
    y_none[splits[:, 0] == 0] = 0
    assert split_problem(y_none, splits, 0, [f"l{j}" for j in range(5)]) == (
        "no positive training video of labels 'l0', 'l1', 'l2' and 2 more"
    )
    rng = np.random.default_rng(0)
    candidates = [Candidate(name, rng.random((12, 5))) for name in "ab"]
    runs, notes = split_runs(candidates, y, names, splits, [0, 1, 2])
    assert [(r.candidate, r.split) for r in runs] == [("a", 0), ("b", 0)]
    assert [note.split(":")[0] for note in notes] == [
        "split 1 left out of the quick probes",
        "split 2 left out of the quick probes",
    ]
    assert notes[1].endswith("no positive training video of label 'l0' in the sample")
    np.testing.assert_array_equal(runs[0].videos, [10, 11])
    assert runs[0].scores.shape == (2, y.shape[1])


def test_cross_validated_ridge_ranks_candidates_of_known_order():
    x_strong, y = dataset(n=60, signal=2.0, seed=5)
    rng = np.random.default_rng(9)
    candidates = [
        Candidate("strong", x_strong),
        Candidate("noise", rng.standard_normal(x_strong.shape)),
    ]
    runs = cv_runs(candidates, y, folds=5, repeats=2, seed=1)
    assert [(r.candidate, r.split) for r in runs] == [
        ("strong", 0),
        ("noise", 0),
        ("strong", 1),
        ("noise", 1),
    ]
    assert all(len(r.videos) == 60 for r in runs)  # every video scored once per repeat
    result = bootstrap(runs, y.astype(np.uint8), resamples=200)
    assert result.candidates == ["strong", "noise"]
    assert result.p_best[0] > 0.95 and result.point[0] > result.point[1] + 0.1
    # The default: leave-one-out, one run per candidate over every video, the same order.
    runs = cv_runs(candidates, y)
    assert [(r.candidate, r.split, len(r.videos)) for r in runs] == [
        ("strong", 0, 60),
        ("noise", 0, 60),
    ]
    np.testing.assert_array_equal(runs[0].scores, loo_scores(x_strong, y))
    result = bootstrap(runs, y.astype(np.uint8), resamples=200)
    assert result.p_best[0] > 0.95 and result.point[0] > result.point[1] + 0.1
