"""Training-free transferability scores: LogME against a brute-force evidence maximisation,
H-score and kNN against hand-computed cases, rankings of informative vs random features, and
scoring real (small) feature files video by video."""

import numpy as np
import pytest
from scipy import optimize, stats

from probe.synthetic import synthetic_meta
from probe.transferability import (
    hscore,
    knn_neighbours,
    knn_score,
    logme,
    rank_correlation,
    score_feature_file,
    video_embeddings,
)
from vtl.errors import UserError
from vtl.features import FeatureFile, FeatureWriter, consecutive_clips

# ------------------------------------------------------------------ LogME


def log_evidence(f, y, log_alpha, log_beta):
    """Log marginal likelihood of Bayesian linear regression, written out directly."""
    alpha, beta = np.exp(log_alpha), np.exp(log_beta)
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    _, log_det = np.linalg.slogdet(a)
    return (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - n / 2 * np.log(2 * np.pi)
        - beta / 2 * np.sum((y - f @ m) ** 2)
        - alpha / 2 * m @ m
        - log_det / 2
    )


def brute_force_logme(f, labels):
    """Maximise the evidence of each label with a generic optimiser over (log alpha, log beta)."""
    values = []
    for y in labels.T:

        def objective(p, y=y):
            return -log_evidence(f, y, *p)

        options = {"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20000}
        start = optimize.minimize(objective, [0.0, 0.0], method="Nelder-Mead", options=options)
        best = optimize.minimize(objective, start.x, method="BFGS", options={"gtol": 1e-10})
        # The same evidence as a Gaussian density of y: N(0, I/beta + F F^T/alpha).
        cov = np.eye(len(y)) / np.exp(best.x[1]) + f @ f.T / np.exp(best.x[0])
        density = stats.multivariate_normal(np.zeros(len(y)), cov).logpdf(y)
        assert density == pytest.approx(-best.fun, abs=1e-8)
        values.append(-best.fun / len(y))
    return float(np.mean(values))


def binary_problem(n, d, labels=3, noise=2.0, seed=0):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, d))
    y = f @ rng.normal(size=(d, labels)) + noise * rng.normal(size=(n, labels)) > 0
    return f, y.astype(np.uint8)


@pytest.mark.parametrize("n, d", [(60, 8), (120, 30), (40, 40), (30, 50)])
def test_logme_equals_brute_force_evidence_maximum(n, d):
    # (30, 50): fewer samples than dims, where F^T F has zero eigenvalues that log det A keeps.
    f, y = binary_problem(n, d, seed=n + d)
    assert logme(f, y) == pytest.approx(brute_force_logme(f, y.astype(float)), abs=1e-6)


def test_logme_known_value_one_dimension():
    # One feature, one label: the same closed form maximised by a fine grid and refined.
    f = np.array([[0.5], [1.0], [-0.3], [2.0], [-1.2], [0.1]])
    y = np.array([1, 1, 0, 1, 0, 0])
    expected = brute_force_logme(f, y[:, None].astype(float))
    assert logme(f, y) == pytest.approx(expected, abs=1e-6)
    assert logme(f, y) == pytest.approx(logme(f, y[:, None]))


def test_logme_of_features_orthogonal_to_the_label_is_the_noise_only_model():
    # F^T y = 0: the best model has w = 0 (alpha -> inf) and y ~ N(0, 1/beta), beta = N/|y|^2,
    # so LogME = 1/2 log(4 / 2) - 1/2 (1 + log 2 pi) = -1.0722...
    f = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]])
    y = np.array([1, 0, 1, 0])
    expected = 0.5 * np.log(2.0) - 0.5 * (1 + np.log(2 * np.pi))
    assert logme(f, y) == pytest.approx(expected, abs=1e-9)


def test_logme_averages_labels_and_skips_constant_ones():
    f, y = binary_problem(80, 6, labels=2)
    each = [logme(f, y[:, j]) for j in range(2)]
    assert logme(f, y) == pytest.approx(np.mean(each))
    with pytest.warns(UserWarning, match=r"constant label columns \[2\]"):
        value = logme(f, np.c_[y, np.zeros(80, np.uint8)])
    assert value == pytest.approx(np.mean(each))


def informative_and_random(n=300, labels=5, seed=1):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.3).astype(np.uint8)
    mixing = rng.normal(size=(labels, 32))
    informative = y @ mixing + 0.8 * rng.normal(size=(n, 32))
    random = rng.normal(size=(n, 32)) * informative.std()
    return informative, random, y


def test_scores_rank_informative_features_above_random():
    informative, random, y = informative_and_random()
    assert logme(informative, y) > logme(random, y) + 0.1
    assert hscore(informative, y) > 10 * hscore(random, y)
    assert knn_score(informative, y, k=5) > knn_score(random, y, k=5) + 0.2


# ------------------------------------------------------------------ H-score and kNN


def test_hscore_hand_computed_one_dimension():
    # 1-D: Ledoit-Wolf shrinkage is 0; p = 1/2, mu1 - mu0 = 2.5 - 0.5 = 2, var = 1.25 (1/N):
    # H = p (1 - p) (mu1 - mu0)^2 / var = 0.25 * 4 / 1.25 = 0.8.
    assert hscore([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]) == pytest.approx(0.8)


def test_hscore_matches_definition_with_shrinkage():
    from sklearn.covariance import LedoitWolf

    f, y = binary_problem(50, 12, labels=2, seed=3)
    f = f * np.geomspace(4, 0.25, 12)  # anisotropic, as real features: 0 < shrinkage < 1
    assert 0.05 < LedoitWolf().fit(f).shrinkage_ < 0.95
    expected = []
    for column in y.T:
        # E[f | y] per sample, then tr(cov_a(f)^-1 (1 - a) cov(E[f | y])).
        means = np.where(column[:, None] == 1, f[column == 1].mean(0), f[column == 0].mean(0))
        lw = LedoitWolf().fit(f)
        between = np.cov(means, rowvar=False, bias=True)
        expected.append(np.trace(np.linalg.inv(lw.covariance_) @ between) * (1 - lw.shrinkage_))
    assert hscore(f, y) == pytest.approx(np.mean(expected), rel=1e-9)


def test_hscore_has_no_verdict_where_the_shrinkage_is_one():
    """Isotropic features on few samples: Ledoit-Wolf shrinks all the way (a = 1) and the
    regularised H-score's (1 - a) factor makes it 0 for any labels, informative or not; it
    said 0 (ranking such a backbone last, below pure noise of more dims), and now says why it
    has no value."""
    from sklearn.covariance import LedoitWolf

    f, y = binary_problem(50, 12, labels=2, seed=3)  # labels that f predicts well
    assert LedoitWolf().fit(f).shrinkage_ == 1
    with pytest.raises(ValueError, match="Ledoit-Wolf shrinkage is 1 on these 50 samples"):
        hscore(f, y)


def test_knn_score_hand_computed():
    angles = np.deg2rad([0, 10, 90, 100])  # two tight pairs of directions
    f = np.c_[np.cos(angles), np.sin(angles)]
    assert knn_score(f, [[1, 0], [1, 0], [0, 1], [0, 1]], k=1) == pytest.approx(1.0)
    # Each sample's only neighbour has the opposite label: scores (0, 1, 1, 0) for truth
    # (1, 0, 0, 1); the PR curve runs from (recall 0, precision 0) to (1, 0.5): area 0.25.
    assert knn_score(f, [1, 0, 0, 1], k=1) == pytest.approx(0.25)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "features, labels, message",
    [
        (np.ones(5), np.ones((5, 1)), "features must be 2-D"),
        (np.ones((5, 2)), np.ones((4, 1)), "labels has 4 samples but features has 5"),
        (np.ones((5, 2)), np.full((5, 1), 2), r"labels must hold only 0 and 1, found \[2\]"),
        (np.full((5, 2), np.nan), np.ones((5, 1)), "features holds NaN"),
        (np.ones((1, 2)), np.ones((1, 1)), "at least 2 samples"),
        (np.ones((4, 2)), np.ones((4, 1)), "every label column is constant"),
    ],
)
def test_scores_reject_bad_input(features, labels, message):
    for score in (logme, hscore):
        with pytest.raises(ValueError, match=message):
            score(features, labels)


def test_knn_rejects_bad_k():
    f, y = binary_problem(10, 3)
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 9\].*got 10"):
        knn_score(f, y, k=10)


def test_rank_correlation_hand_computed():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == {
        "kendall_tau": pytest.approx(1.0),
        "spearman_rho": pytest.approx(1.0),
    }
    # Pairs (a, b) swapped in both halves: 4 concordant, 2 discordant of 6 -> tau = 1/3;
    # rank differences (-1, 1, -1, 1): rho = 1 - 6 * 4 / (4 * 15) = 0.6.
    result = rank_correlation([1, 2, 3, 4], [2, 1, 4, 3])
    assert result["kendall_tau"] == pytest.approx(1 / 3)
    assert result["spearman_rho"] == pytest.approx(0.6)
    assert np.isnan(rank_correlation([1, 1, 1], [1, 2, 3])["kendall_tau"])
    with pytest.raises(ValueError, match="scores has 3 values but accuracies has 2"):
        rank_correlation([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2 backbones"):
        rank_correlation([1], [1])


# ------------------------------------------------------------------ feature files


def write_file(path, informative, seed=0, n_videos=40, dim=16, labels=3):
    """A real feature file: videos with 1..5 clips whose features do (or don't) carry labels."""
    rng = np.random.default_rng(seed)
    meta = synthetic_meta(dim)
    mixing = rng.normal(size=(labels, dim)) * 2
    y = (rng.random((n_videos, labels)) < 0.4).astype(np.uint8)
    y[0], y[1] = 1, 0  # every label has both values among the train videos
    with FeatureWriter(path, meta, [f"g{j}" for j in range(labels)], n_splits=2) as writer:
        for v in range(n_videos):
            clips = 1 + v % 5
            base = y[v] @ mixing if informative else 0.0
            features = base + rng.normal(size=(clips, dim))
            splits = np.array([0 if v % 4 else (1 + v // 4 % 2), 0])
            writer.add(consecutive_clips(f"v{v:02d}", features, y[v], splits, 24, 24.0))
    return path


def test_video_embeddings_mean_pool_each_video(tmp_path):
    path = write_file(tmp_path / "f.h5", informative=True)
    with FeatureFile(path) as f:
        x, y = video_embeddings(f, split=0)
        train = np.flatnonzero(f.splits[:, 0] == 0)
        assert len(x) == len(train) == 30
        expected = np.stack([f.video_features(i).astype(np.float64).mean(0) for i in train])
        np.testing.assert_allclose(x, expected, rtol=1e-12)
        np.testing.assert_array_equal(y, f.labels[train])
        x_all, _ = video_embeddings(f, split=1, subset=("train", "val", "test"))
        assert len(x_all) == f.n_videos
        with pytest.raises(UserError, match="split 2 does not exist; the file has splits 0..1"):
            video_embeddings(f, split=2)
        with pytest.raises(UserError, match=r"subset must be names among .*'trian'"):
            video_embeddings(f, subset=("trian",))


def test_score_feature_file_ranks_informative_file_higher(tmp_path):
    good = score_feature_file(write_file(tmp_path / "good.h5", True), methods=METHODS_ALL)
    bad = score_feature_file(write_file(tmp_path / "bad.h5", False, seed=1), methods=METHODS_ALL)
    assert list(good) == list(METHODS_ALL)
    for method in METHODS_ALL:
        assert good[method] > bad[method], method
    sub = score_feature_file(tmp_path / "good.h5", methods="logme", max_videos=12)
    assert set(sub) == {"logme"} and np.isfinite(sub["logme"])
    with pytest.raises(UserError, match=r"methods must be among .*'lgme'"):
        score_feature_file(tmp_path / "good.h5", methods=("lgme",))
    with pytest.raises(UserError, match="max_videos must be an integer >= 2 or None, got 1"):
        score_feature_file(tmp_path / "good.h5", max_videos=1)


METHODS_ALL = ("logme", "hscore", "knn")


def test_knn_on_a_small_sample_still_reads_the_features():
    # With as many neighbours as other videos, every backbone would score the same.
    assert [knn_neighbours(10, n) for n in (2, 6, 40)] == [1, 3, 10]
    informative, random, y = informative_and_random(n=8, labels=2, seed=3)
    k = knn_neighbours(10, len(y))
    assert knn_score(informative, y, k=k) != knn_score(random, y, k=k)
    assert knn_score(informative, y, k=7) == knn_score(random, y, k=7)  # what the cap avoids
