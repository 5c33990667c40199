"""Training-free scores from the model-selection literature, beside LogME, H-score and kNN.

Inputs are per video, as in `probe.transferability`: (N, D) mean-pooled clip features, (N, L)
0/1 multi-label targets and, for the scores that read the backbone's own classifier, (N, C)
mean-pooled source logits (`video_logits`). A multi-label target is scored as L binary tasks
and the scores averaged, as `transferability.logme` does; constant label columns are skipped
with a warning. Each score is registered with `transferability.register_score`.

- NCE (Tran et al., ICCV 2019): the negative conditional entropy -H(Y | Z) of the target label
  given the source label Z, taken as the argmax of the source logits.
- LEEP (Nguyen et al., ICML 2020): the mean log-likelihood of the target labels under the
  "expected empirical predictor" p(y | x) = sum_z p(y | z) theta_z(x), theta = softmax(logits).
- SFDA (Shao et al., ECCV 2022): a regularised Fisher discriminant fitted per label, its
  posteriors softened and used to mix each sample towards the other class's mean ("ConfMix"),
  refitted; the score is the mean posterior of the true class. On PCA-reduced features when
  there are fewer than twice as many samples as dimensions (`guard_dims`).
- PARC (Bolya et al., NeurIPS 2021): the Spearman correlation between the pairwise
  dissimilarities (1 - Pearson r) of the samples' features, PCA-reduced to 32 dimensions and
  standardised, and those of their label vectors (multi-label vectors used as they are, as the
  authors do for VOC2007).

The tests check each against the authors' code (tests/third_party/reference_scores/) on the
same inputs.
"""

from __future__ import annotations

import logging

import numpy as np

from probe.transferability import (
    ScoreSpec,
    _informative,
    check_features_labels,
    register_score,
)
from vtl.features import FeatureFile

log = logging.getLogger(__name__)

PARC_DIMS = 32  # the authors' PCA size (dbolya/parc `demo.py`, SFDA's PARC_Score)
PARC_MAX_VIDEOS = 5000  # PARC holds two N x N matrices: 5000 videos is ~0.4 GB
SFDA_MIN_SHRINKAGE = 1e-10  # the authors' floor on the adaptive shrinkage


# ------------------------------------------------------------------ inputs


def check_logits_labels(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate (N, C) source logits and (N, L) 0/1 labels; return both as float64.

    Raises:
        ValueError: naming the argument and what is wrong with it.
    """
    if logits is None:
        raise ValueError("this score needs source logits; extract the features with --logits")
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must be 2-D (samples, >= 2 classes), got shape {logits.shape}")
    logits, labels = check_features_labels(logits, labels)
    return logits, labels


def guard_dims(n_samples: int, dims: int) -> int:
    """The feature dimension a score should work in: `dims`, or n_samples // 2 when smaller.

    With fewer samples than dimensions a linear model fits any labels, noise included, and a
    covariance matrix is singular; at half as many dimensions as samples the estimates are
    stable again (see `probe.recommend` for the failure this guards against).
    """
    return int(max(1, min(dims, n_samples // 2)))


def reduce_dims(features: np.ndarray, dims: int) -> np.ndarray:
    """The first `dims` principal components of `features` (exact PCA); as-is if already small."""
    features = np.asarray(features, dtype=np.float64)
    if dims >= features.shape[1]:
        return features
    from sklearn.decomposition import PCA  # here: registering the scores stays light

    return PCA(n_components=dims, svd_solver="full").fit_transform(features)


def video_logits(feature_file: FeatureFile, videos: np.ndarray | None = None) -> np.ndarray:
    """Mean-pooled source logits per video: the counterpart of `video_embeddings` for logits.

    Args:
        feature_file: an open feature file with `/clips/logits` (`extract run --logits`).
        videos: file indices to read, in the order wanted; None reads every video.

    Returns:
        (V, C) float64, each video's clip logits averaged.

    Raises:
        FeatureFileError: the file has no logits.
    """
    chosen = np.arange(feature_file.n_videos) if videos is None else np.asarray(videos)
    rows = [feature_file.video_mean(int(i), "logits") for i in chosen]
    if not rows:
        width = len(feature_file.logit_names or ())
        return np.empty((0, width), np.float64)
    return np.stack(rows)


def _softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax (as scipy.special.softmax(z, axis=1))."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _plogp(p: np.ndarray) -> np.ndarray:
    """p log p, 0 where p = 0."""
    return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)


# ------------------------------------------------------------------ NCE and LEEP


def nce(logits, labels) -> float:
    """NCE: -H(Y | Z) per binary label, averaged; Z = argmax of the source logits.

    H(Y | Z) = -sum_z P(z) sum_y P(y | z) log P(y | z), with the empirical joint distribution of
    (Z, Y) over the samples. Zero at best (Y determined by Z), -log 2 at worst.

    Args:
        logits: (N, C) source-head logits (or probabilities: only the argmax is used).
        labels: (N, L) 0/1 labels (or (N,)); constant columns skipped with a warning.
    """
    theta, y = check_logits_labels(logits, labels)
    y = _informative(y, "nce")
    z = theta.argmax(axis=1)
    members = np.zeros((len(z), theta.shape[1]))
    members[np.arange(len(z)), z] = 1.0
    count = members.sum(axis=0)  # (C,) samples per source label
    used = count > 0
    positive = (members.T @ y)[used] / count[used, None]  # (C', L) P(y = 1 | z)
    neg_entropy = _plogp(positive) + _plogp(1 - positive)
    return float(np.mean((count[used, None] / len(z) * neg_entropy).sum(axis=0)))


def leep(logits, labels) -> float:
    """LEEP: mean over samples of log p(y | x) per binary label, averaged over labels.

    theta = softmax(logits) is the source-label distribution of each sample; the empirical
    joint P(y, z) = sum over samples with label y of theta_z / N gives P(y | z), and
    p(y | x) = sum_z P(y | z) theta_z(x). At most 0; higher is better.

    Args:
        logits: (N, C) source-head logits of each sample.
        labels: (N, L) 0/1 labels (or (N,)); constant columns skipped with a warning.
    """
    logits, y = check_logits_labels(logits, labels)
    y = _informative(y, "leep")
    theta = _softmax(logits)
    mass = theta.sum(axis=0)  # (C,) N P(z)
    # A source label with no mass never enters p(y | x); dividing by 1 keeps it finite.
    mass = np.where(mass > 0, mass, 1.0)
    given_z1 = (theta.T @ y) / mass[:, None]  # (C, L) P(y = 1 | z)
    given_z0 = (theta.T @ (1 - y)) / mass[:, None]
    likelihood = np.where(y == 1, theta @ given_z1, theta @ given_z0)
    return float(np.mean(np.log(likelihood).mean(axis=0)))


# ------------------------------------------------------------------ SFDA


def sfda(features, labels) -> float:
    """SFDA per binary label, averaged over labels (Shao et al., ECCV 2022; module docstring).

    For one label: class priors pi_c and means mu_c, within-class scatter
    S_w = sum_c pi_c cov_c (1/N covariances), shrunk towards its mean eigenvalue with strength
    lambda = max(exp(-5 lambda_max(S_w)), 1e-10). The discriminant's posterior is
    softmax_c(x^T S^-1 mu_c - mu_c^T S^-1 mu_c / 2 + log pi_c), S the shrunk S_w: the authors
    write it through the generalised eigenvectors V of (S_b, S), and V V^T = S^-1 since
    V^T S V = I, so the between-class scatter cancels. The posteriors are softened by a second
    softmax, each sample x with true-class posterior p becomes p x + (1 - p) mu_other, and the
    discriminant is refitted (same lambda); the score is the mean true-class posterior.

    Two departures from the authors' code: lambda_max is the exact largest eigenvalue (theirs
    is three power iterations from S_w 1, the same wherever those converge), and features are
    first reduced to `guard_dims` principal components when samples are fewer than twice the
    dimensions (their S_w is then singular up to the shrinkage).

    Args:
        features: (N, D) features.
        labels: (N, L) 0/1 labels (or (N,)); constant columns skipped with a warning.

    Returns:
        The mean SFDA score in (0, 1); higher is better.
    """
    f, y = check_features_labels(features, labels)
    y = _informative(y, "sfda")
    f = reduce_dims(f, guard_dims(*f.shape))
    return float(np.mean([_sfda_binary(f, column == 1) for column in y.T]))


def _sfda_binary(x: np.ndarray, positive: np.ndarray) -> float:
    """SFDA of one binary label (`positive`: (N,) bool, both classes present)."""
    classes = positive.astype(np.int64)  # 0, 1 as the authors' np.unique gives them
    priors = np.bincount(classes, minlength=2) / len(classes)
    means, scatter = _class_statistics(x, classes, priors)
    last = len(scatter) - 1
    from scipy import linalg  # here: registering the scores stays light

    largest = linalg.eigh(scatter, eigvals_only=True, subset_by_index=[last, last])[0]
    shrinkage = max(float(np.exp(-5 * largest)), SFDA_MIN_SHRINKAGE)
    posterior = _discriminant_posterior(x, means, scatter, priors, shrinkage)
    # Soften: the authors apply a softmax to the posteriors themselves.
    soft = _softmax(posterior)
    rows = np.arange(len(x))
    p = soft[rows, classes][:, None]
    mixed = p * x + (1 - p) * means[1 - classes]  # towards the other class's mean
    means, scatter = _class_statistics(mixed, classes, priors)
    posterior = _discriminant_posterior(mixed, means, scatter, priors, shrinkage)
    return float(posterior[rows, classes].mean())


def _class_statistics(x, classes, priors) -> tuple[np.ndarray, np.ndarray]:
    """Class means (2, D) and the prior-weighted within-class scatter (D, D), 1/N covariances."""
    means = np.stack([x[classes == c].mean(axis=0) for c in (0, 1)])
    centred = x - means[classes]
    weights = priors[classes] / np.bincount(classes, minlength=2)[classes]
    return means, (centred * weights[:, None]).T @ centred


def _discriminant_posterior(x, means, scatter, priors, shrinkage) -> np.ndarray:
    """softmax_c(x^T S^-1 mu_c - mu_c^T S^-1 mu_c / 2 + log pi_c), S the shrunk scatter."""
    d = len(scatter)
    shrunk = (1 - shrinkage) * scatter + shrinkage * np.trace(scatter) / d * np.eye(d)
    coef = np.linalg.solve(shrunk, means.T).T  # (2, D) = mu_c^T S^-1
    intercept = -0.5 * np.einsum("cd,cd->c", means, coef) + np.log(priors)
    return _softmax(x @ coef.T + intercept)


# ------------------------------------------------------------------ PARC


def parc(features, labels, dims: int = PARC_DIMS, max_videos: int = PARC_MAX_VIDEOS) -> float:
    """PARC (Bolya et al., NeurIPS 2021): agreement of feature and label dissimilarities.

    Features of more than `dims` dimensions are reduced to `dims` principal components as the
    authors do (sklearn's randomized PCA, random_state 1919, one power iteration), all features
    are standardised per dimension; the
    dissimilarity of two samples is 1 - Pearson r of their feature vectors, and likewise of
    their label vectors; the score is the Spearman correlation of the two over all pairs.
    Samples whose label vector is constant (no label, or every label) have no Pearson r with
    anything and are left out. Returned in [-1, 1] (the authors report it x 100).

    Args:
        features: (N, D) features.
        labels: (N, L) 0/1 labels (or (N,) for one label, scored as a one-hot pair of classes).
        dims: PCA dimensions (the authors' 32).
        max_videos: score a fixed random subset of this many samples when there are more (the
            dissimilarity matrices are N x N).

    Returns:
        The Spearman correlation; higher is better.
    """
    f, y = check_features_labels(features, labels)
    if y.shape[1] == 1:  # one binary label: its two classes one-hot, as the authors' np.eye
        y = np.concatenate([1 - y, y], axis=1)
    y = _informative(y, "parc")
    varied = y.min(axis=1) != y.max(axis=1)
    if not varied.all():
        log.info("parc: leaving out %d samples with a constant label vector", (~varied).sum())
        f, y = f[varied], y[varied]
    if len(f) > max_videos:
        keep = np.sort(np.random.default_rng(0).choice(len(f), max_videos, replace=False))
        log.info("parc: scoring a fixed subset of %d of %d samples", max_videos, len(f))
        f, y = f[keep], y[keep]
    if len(f) < 3:
        raise ValueError(f"parc needs at least 3 samples with varied labels, got {len(f)}")
    from scipy import stats
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    if f.shape[1] > dims:  # the authors' feature_reduce (with at most N components)
        f = PCA(
            n_components=min(dims, len(f)),
            svd_solver="randomized",
            random_state=1919,
            iterated_power=1,
        ).fit_transform(f)
    f = StandardScaler().fit_transform(f)
    upper = np.triu_indices(len(f), 1)
    feature_distance = 1 - np.corrcoef(f)[upper]
    label_distance = 1 - np.corrcoef(y)[upper]
    return float(stats.spearmanr(feature_distance, label_distance).statistic)


def _of_logits(score):
    """A registry entry's compute for a score of the source logits and the labels alone."""
    return lambda x, y, logits=None, **_: score(logits, y)


for _name, _label, _score in (("nce", "NCE", nce), ("leep", "LEEP", leep)):
    register_score(ScoreSpec(_name, _label, _of_logits(_score), needs_logits=True))
register_score(ScoreSpec("sfda", "SFDA", lambda x, y, **_: sfda(x, y)))
register_score(
    ScoreSpec(
        "parc",
        "PARC",
        lambda x, y, **_: parc(x, y),
        percent=True,
        digits=2,
    )
)
