"""Training-free transferability scores: how well frozen features suit the labels, with no probe.

Each score takes a (samples, features) matrix and a (samples, labels) 0/1 matrix; higher means
"the features make the labels easier to predict". The probe stage works per video, so
`video_embeddings` mean-pools each video's clip features into one row, and `score_feature_file`
scores the train videos of one split of a feature file. `rank_correlation` then says how well a
score orders backbones the way their trained probes' μAP does.

- LogME (You et al., ICML 2021): the maximised log evidence of Bayesian linear regression from
  the features to each label, per sample, averaged over labels (each label one binary target, as
  the paper does for each class of a classification task).
- H-score (Bao et al., ICIP 2019), in its regularised form (Ibrahim et al., "Newer is not always
  better", ICLR 2023): tr(cov(f)^-1 cov(E[f|y])), with a Ledoit-Wolf shrinkage covariance, since
  the plain empirical covariance of a few hundred videos in 1000+ dimensions is singular.
- kNN (leave-one-out): each video's label scores are the mean labels of its k nearest other
  videos (cosine), scored with μAP as the probes are.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probe.stats import paired_arrays
from vtl.errors import UserError
from vtl.features import FeatureFile
from vtl.manifest import SPLIT_NAMES
from vtl.registry import register

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreSpec:
    """One training-free score: how it is computed and how reports show it.

    `compute(features, labels, knn_k=..., logits=...)` takes (N, D) video features and (N, L)
    labels; `percent` scores lie in [0, 1] and are shown x 100, with `digits` decimals. A score
    that `needs_logits` reads `logits`, the videos' (N, C) mean-pooled source logits (files
    extracted with `--logits`), and is skipped with a note for files without them. `revision`
    counts changes of what it computes: cached results of an earlier one are computed again."""

    name: str
    label: str
    compute: Callable[..., float]
    percent: bool = False
    digits: int = 3
    needs_logits: bool = False
    revision: int = 1

    def format(self, mean: float, std: float) -> str:
        scale = 100 if self.percent else 1
        return f"{mean * scale:.{self.digits}f} ± {std * scale:.{self.digits}f}"


SCORES: dict[str, ScoreSpec] = {}


def register_score(spec: ScoreSpec) -> ScoreSpec:
    """Add a score to SCORES (what `probe score`, `probe matrix` and their reports offer)."""
    return register(SCORES, spec.name, spec, "score")


# ------------------------------------------------------------------ validation


def check_features_labels(features, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (N, D) feature matrix and a (N, L) 0/1 label matrix; return both as float64.

    A 1-D `labels` is taken as one label column.

    Raises:
        ValueError: naming the argument and what is wrong with it.
    """
    features = np.asarray(features)
    labels = np.asarray(labels)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (samples, dims), got shape {features.shape}")
    if not np.issubdtype(features.dtype, np.number) or np.iscomplexobj(features):
        raise ValueError(f"features must be real numbers, got dtype {features.dtype}")
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (samples, labels), got shape {labels.shape}")
    if labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"labels has {labels.shape[0]} samples but features has {features.shape[0]}"
        )
    if features.shape[0] < 2:
        raise ValueError(f"need at least 2 samples, got {features.shape[0]}")
    if features.shape[1] == 0 or labels.shape[1] == 0:
        raise ValueError(f"features {features.shape} and labels {labels.shape} must be non-empty")
    features = features.astype(np.float64)
    if not np.isfinite(features).all():
        raise ValueError("features holds NaN or infinite values")
    values = np.unique(labels)
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"labels must hold only 0 and 1, found {values[:5].tolist()}")
    return features, labels.astype(np.float64)


def _informative(labels: np.ndarray, score: str) -> np.ndarray:
    """The label columns that are not constant; warns about the others.

    A label that is all 0 (or all 1) among these samples says nothing about the features: LogME's
    evidence is unbounded for an all-zero target (w = 0 fits it exactly) and H-score has no class
    means to compare. The same columns are dropped for every backbone, so rankings stay fair.
    """
    constant = labels.min(axis=0) == labels.max(axis=0)
    if constant.all():
        raise ValueError(f"{score}: every label column is constant (all 0 or all 1)")
    if constant.any():
        warnings.warn(
            f"{score}: ignoring constant label columns {np.flatnonzero(constant).tolist()}",
            UserWarning,
            stacklevel=3,
        )
    return labels[:, ~constant]


# ------------------------------------------------------------------ LogME


def logme(features, labels, *, max_iter: int = 1000, tol: float = 1e-10) -> float:
    """LogME: mean over labels of the maximum log evidence per sample (You et al., ICML 2021).

    For each binary target y (N,), Bayesian linear regression y = F w + noise with prior
    w ~ N(0, I/alpha) and noise N(0, 1/beta) has the log evidence

        L(alpha, beta) = D/2 log alpha + N/2 log beta - N/2 log 2 pi
                         - beta/2 |y - F m|^2 - alpha/2 |m|^2 - 1/2 log det A,
        A = alpha I + beta F^T F,  m = beta A^-1 F^T y,

    maximised over (alpha, beta) by the paper's fixed-point iteration (Algorithm 1):
    gamma = sum beta s_i / (alpha + beta s_i), alpha = gamma / |m|^2,
    beta = (N - gamma) / |y - F m|^2, with s_i the eigenvalues of F^T F (one SVD of F serves
    every label). Unlike the reference code (thuml/LogME) there is no epsilon and the iteration
    runs to convergence, so the value is the exact maximum (checked against a generic optimiser
    in the tests), and the D - rank zero eigenvalues of F^T F are kept in log det A (the
    reference's fixed-point variant drops them, which inflates its score when N < D).

    Args:
        features: (N, D) features, computed in float64.
        labels: (N, L) 0/1 labels (or (N,) for one label). Constant columns are skipped with a
            warning.
        max_iter: fixed-point iterations at most.
        tol: stop when alpha/beta changes by less than this fraction for every label.

    Returns:
        The LogME score (log evidence per sample, averaged over labels); higher is better.
    """
    f, y = check_features_labels(features, labels)
    y = _informative(y, "logme")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    n = len(f)
    sigma, x = _spectrum(f, y)  # (k,), (k, L): nonzero eigenvalues of F^T F, projections U^T y
    x2 = x**2
    # Part of |y|^2 outside the column space of F: no choice of w can fit it.
    outside = np.maximum((y**2).sum(axis=0) - x2.sum(axis=0), 0.0)
    s = sigma[:, None]

    # The ratio t = alpha / beta is all the iteration needs: alpha = gamma / |m|^2 and
    # beta = (N - gamma) / |res|^2 are functions of it. Bounding t keeps everything finite when
    # the maximum lies at a boundary (t -> inf: features useless, w = 0; t -> 0 when N <= rank:
    # the features interpolate y); the evidence is flat there, so the bound costs ~1e-12.
    t_low, t_high = sigma.min() * 1e-12, sigma.max() * 1e12
    t = np.ones(y.shape[1])  # alpha = beta = 1, as in the paper
    for _ in range(max_iter):
        gamma, rest, m2, res2 = _posterior(s, x2, outside, t, n)
        new = np.clip(gamma * res2 / np.maximum(rest * m2, np.finfo(float).tiny), t_low, t_high)
        converged = np.abs(new - t) <= tol * t
        t = new
        if converged.all():
            break
    gamma, rest, m2, res2 = _posterior(s, x2, outside, t, n)
    beta = rest / res2
    # The evidence at the fixed point. There beta |res|^2 = N - gamma and alpha |m|^2 = gamma,
    # and D/2 log alpha - 1/2 log det A = -1/2 sum_i log(1 + s_i / t): the D - k zero
    # eigenvalues of F^T F contribute log alpha each to log det A, cancelling their share of
    # D/2 log alpha. Written this way nothing overflows when alpha or beta is huge.
    evidence = n / 2 * (np.log(beta) - 1 - np.log(2 * np.pi)) - np.log1p(s / t).sum(axis=0) / 2
    return float(np.mean(evidence / n))


def _spectrum(f: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nonzero eigenvalues s of F^T F and the projections U^T Y on F's left singular vectors."""
    n, d = f.shape
    eps = np.finfo(np.float64).eps
    if n > d:
        # Many more samples than dims (the usual case): the D x D Gram matrix is the cheap route,
        # as in the paper. U^T y = V^T F^T y / sqrt(s).
        sigma, v = np.linalg.eigh(f.T @ f)
        keep = sigma > max(sigma.max(), 0.0) * n * eps
        sigma, v = sigma[keep], v[:, keep]
        x = (v.T @ (f.T @ y)) / np.sqrt(sigma)[:, None]
    else:
        u, sv, _ = np.linalg.svd(f, full_matrices=False)
        keep = sv > sv.max() * d * eps
        sigma, x = sv[keep] ** 2, u[:, keep].T @ y
    if len(sigma) == 0:
        raise ValueError("features is all zeros; LogME needs features with some variation")
    return sigma, x


def _posterior(s, x2, outside, t, n):
    """gamma, N - gamma, |m|^2 and |y - F m|^2 at t = alpha / beta, in F's singular basis.

    Each is written so that it neither overflows nor cancels for t far above or below s.
    """
    kept = s / (t + s)  # fraction of each component of y that the posterior mean fits
    left = t / (t + s)  # the fraction left in the residual
    gamma = kept.sum(axis=0)
    rest = (n - len(s)) + left.sum(axis=0)  # N - gamma, exact even when gamma is close to N
    m2 = (kept * x2 / (t + s)).sum(axis=0)  # sum s x^2 / (t + s)^2
    res2 = (x2 * left**2).sum(axis=0) + outside
    return gamma, rest, m2, res2


# ------------------------------------------------------------------ H-score


def hscore(features, labels) -> float:
    """Regularised H-score, averaged over labels (Bao et al. 2019; Ibrahim et al. 2023).

    For each label, tr(cov_a(f)^-1 (1 - a) cov(E[f | y])), where cov_a is the Ledoit-Wolf
    shrinkage covariance of the features (sklearn `LedoitWolf`, shrinkage a chosen by the
    Ledoit-Wolf formula) and E[f | y] replaces each sample by the mean feature of its class.
    The shrinkage keeps the score finite when samples are fewer than dims; the (1 - a) factor
    scales the between-class covariance like the shrunk within-data part. Covariances use 1/N.
    For a binary label with positive rate p and class means mu1, mu0 the trace is
    (1 - a) p (1 - p) (mu1 - mu0)^T cov_a^-1 (mu1 - mu0).

    Args:
        features: (N, D) features.
        labels: (N, L) 0/1 labels (or (N,)); constant columns are skipped with a warning.

    Returns:
        The mean H-score over labels; higher is better.

    Raises:
        ValueError: the shrinkage is 1 (few samples of nearly isotropic features), where the
            score is 0 for any labels: no verdict, rather than a lowest one.
    """
    f, y = check_features_labels(features, labels)
    y = _informative(y, "hscore")
    f = f - f.mean(axis=0)
    from sklearn.covariance import LedoitWolf  # here: `probe --help` reads SCORES, not sklearn

    # The precision is not needed (one solve below): skip its pseudo-inverse, most of the cost.
    lw = LedoitWolf(assume_centered=True, store_precision=False).fit(f)
    if lw.shrinkage_ >= 1:  # (1 - a) = 0: zero for any labels, a verdict on nothing
        raise ValueError(
            f"Ledoit-Wolf shrinkage is 1 on these {len(f)} samples (their covariance cannot be "
            "told from a multiple of the identity), which makes the regularised H-score 0 "
            "whatever the labels"
        )
    positive = y == 1
    p = positive.mean(axis=0)  # (L,)
    # Class-mean differences, one column per label: mu1 - mu0 = (sum over positives) / n1 - ...
    mu1 = (f.T @ positive) / positive.sum(axis=0)
    mu0 = (f.T @ ~positive) / (~positive).sum(axis=0)
    diff = mu1 - mu0  # (D, L)
    quad = np.einsum("dl,dl->l", diff, _solve_psd(lw.covariance_, diff))
    return float(np.mean((1 - lw.shrinkage_) * p * (1 - p) * quad))


def _solve_psd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a^-1 b for a symmetric positive semi-definite a (least squares if it is singular)."""
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(a, b, rcond=None)[0]


# ------------------------------------------------------------------ kNN


def knn_score(features, labels, k: int = 10, block: int = 1024) -> float:
    """Leave-one-out kNN μAP: how well a video's nearest neighbours predict its labels.

    Each sample's score for a label is the mean of that label over its `k` most cosine-similar
    other samples; the score matrix is rated with μAP (`probe.metrics.micro_ap`, the probes'
    headline metric), so the value reads like a probe's μAP in [0, 1].

    Args:
        features: (N, D) features.
        labels: (N, L) 0/1 labels (or (N,)).
        k: neighbours per sample, 1 <= k < N.
        block: rows of the similarity matrix held at once (memory is block x N).

    Returns:
        μAP of the leave-one-out kNN scores; higher is better.
    """
    f, y = check_features_labels(features, labels)
    n = len(f)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise ValueError(f"k must be an integer in [1, {n - 1}] (samples - 1), got {k!r}")
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be a positive integer, got {block!r}")
    if not y.any():
        raise ValueError("labels has no positive value; μAP is undefined")
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    f = f / np.where(norms > 0, norms, 1.0)
    predicted = np.empty_like(y)
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        similarity = f[rows] @ f.T
        similarity[np.arange(len(rows)), rows] = -np.inf  # leave the sample itself out
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        predicted[rows] = y[nearest].mean(axis=1)
    from probe.metrics import micro_ap  # here: sklearn loads when a score is computed

    return micro_ap(y, predicted)


def knn_neighbours(k: int, n: int) -> int:
    """The kNN score's neighbours for `n` samples: `k`, at most half of them. With k = n - 1
    every sample's neighbours would be all the others whatever the features, and every backbone
    would get the same score (small samples, e.g. a recommendation's)."""
    return max(1, min(k, n // 2))


# ------------------------------------------------------------------ rank correlation


def rank_correlation(scores: Sequence[float], accuracies: Sequence[float]) -> dict[str, float]:
    """Kendall's tau and Spearman's rho between a score and probe accuracies across backbones.

    Args:
        scores: one transferability score per backbone.
        accuracies: the trained probe's μAP (or any accuracy) per backbone, same order.

    Returns:
        {"kendall_tau": ..., "spearman_rho": ...} in [-1, 1]; NaN where either sequence is
        constant (no ranking to compare).
    """
    a, b = paired_arrays(scores, accuracies, ("scores", "accuracies"))
    if len(a) < 2:
        raise ValueError(f"need at least 2 backbones to rank, got {len(a)}")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"kendall_tau": float("nan"), "spearman_rho": float("nan")}
    from scipy import stats  # here, as sklearn above: importing this module stays light

    return {
        "kendall_tau": float(stats.kendalltau(a, b).statistic),
        "spearman_rho": float(stats.spearmanr(a, b).statistic),
    }


# ------------------------------------------------------------------ feature files


def video_embeddings(
    feature_file: FeatureFile,
    split: int = 0,
    subset: Sequence[str] = ("train",),
    videos: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean-pooled clip features and labels of the videos in `subset` of split `split`.

    Reads one video's clips at a time, so memory follows a video, not the file.

    Args:
        feature_file: an open feature file.
        split: the split column.
        subset: subset names among "train", "val", "test".
        videos: optional file indices to restrict to (after the subset filter), in file order.

    Returns:
        X (V, D) float64 mean clip feature per video, Y (V, L) uint8 labels, in file order.

    Raises:
        UserError: an unknown split or subset name.
    """
    _check_split(feature_file, split)
    if isinstance(subset, str):
        subset = (subset,)
    unknown = [name for name in subset if name not in SPLIT_NAMES]
    if unknown or not subset:
        raise UserError(f"subset must be names among {SPLIT_NAMES}, got {list(subset)!r}")
    codes = [SPLIT_NAMES.index(name) for name in subset]
    chosen = np.flatnonzero(np.isin(feature_file.splits[:, split], codes))
    if videos is not None:
        chosen = np.intersect1d(chosen, np.asarray(videos, dtype=np.int64))
    x = np.empty((len(chosen), feature_file.feature_dim), np.float64)
    for row, i in enumerate(chosen):
        x[row] = feature_file.video_mean(int(i))
    return x, feature_file.labels[chosen].astype(np.uint8)


def score_feature_file(
    path: str | Path,
    split: int = 0,
    methods: Sequence[str] = ("logme", "hscore"),
    max_videos: int | None = None,
    knn_k: int = 10,
    seed: int = 0,
    exclude: Sequence[str] = (),
    failed: dict[str, str] | None = None,
) -> dict[str, float]:
    """Transferability scores of a feature file, on the train videos of one split.

    Args:
        path: a feature file (.h5).
        split: the split whose train videos are scored.
        methods: names among `SCORES`.
        max_videos: score at most this many train videos, a random subset drawn with `seed`
            (kept in file order); None scores them all.
        knn_k: neighbours for "knn".
        seed: seed of the `max_videos` subset.
        exclude: video ids left out (those some other file of a report lacks).
        failed: where given, a method that cannot be computed on these features is left out
            of the result and its reason put here (method -> reason), and the other methods
            are still computed; None: such a method raises UserError.

    Returns:
        {method: score} in the order of `methods`; a method that needs logits is left out, with
        a warning, when the file has none.

    Raises:
        UserError: an unknown method, a bad split or max_videos, an unreadable file, or too few
            train videos.
    """
    if isinstance(methods, str):
        methods = (methods,)
    unknown = [m for m in methods if m not in SCORES]
    if unknown or not methods:
        raise UserError(f"methods must be among {tuple(SCORES)}, got {list(methods)!r}")
    if max_videos is not None and (
        isinstance(max_videos, bool)
        or not isinstance(max_videos, (int, np.integer))
        or max_videos < 2
    ):
        raise UserError(f"max_videos must be an integer >= 2 or None, got {max_videos!r}")
    with FeatureFile(path) as f:
        chosen = None
        if max_videos is not None or exclude:
            _check_split(f, split)
            in_split = np.flatnonzero(f.splits[:, split] == SPLIT_NAMES.index("train"))
            if exclude:
                left_out = set(exclude)
                in_split = np.array([i for i in in_split if f.video_ids[i] not in left_out])
                chosen = in_split.astype(np.int64)
            if max_videos is not None and len(in_split) > max_videos:
                rng = np.random.default_rng(seed)
                chosen = np.sort(rng.choice(in_split, size=max_videos, replace=False))
        x, y = video_embeddings(f, split, ("train",), videos=chosen)
        logits = None
        wanted = [m for m in methods if SCORES[m].needs_logits]
        if wanted and not f.has_logits:
            log.warning(
                "%s: %s skipped: the file has no /clips/logits (extract with --logits)",
                path,
                ", ".join(wanted),
            )
            methods = [m for m in methods if m not in wanted]
        elif wanted:
            from probe.scores_extra import video_logits  # it registers scores from this module

            # The rows video_embeddings read: the split's train videos (within `chosen`).
            rows = np.flatnonzero(f.splits[:, split] == SPLIT_NAMES.index("train"))
            rows = rows if chosen is None else np.intersect1d(rows, chosen)
            logits = video_logits(f, rows)
    if len(x) < 2:
        raise UserError(f"{path}: split {split} has {len(x)} train videos; need at least 2")
    log.info("%s: scoring %d train videos of split %d", Path(path).name, len(x), split)
    results = {}
    for method in methods:
        try:
            results[method] = SCORES[method].compute(
                x, y, knn_k=knn_neighbours(knn_k, len(x)), logits=logits
            )
        except ValueError as error:
            where = f"{path}: {method} on split {split} train videos"
            if failed is None:
                raise UserError(f"{where}: {error}") from None
            failed[method] = str(error)
            log.warning("%s: %s left out: %s", path, method, error)
    return results


register_score(ScoreSpec("logme", "LogME", lambda x, y, **_: logme(x, y)))
# revision 2: no value where the Ledoit-Wolf shrinkage is 1 (it was 0 for any labels)
register_score(ScoreSpec("hscore", "H-score", lambda x, y, **_: hscore(x, y), revision=2))
register_score(
    ScoreSpec(
        "knn",
        "kNN μAP",
        lambda x, y, knn_k=10, **_: knn_score(x, y, k=knn_k),
        percent=True,
        digits=2,
    )
)
import probe.scores_extra  # noqa: E402, F401  (registers NCE, LEEP, SFDA and PARC)

METHODS = tuple(SCORES)  # the registered names, for option defaults
# The matrix's default scores: cheap, and computed from the features alone (no logits needed).
DEFAULT_SCORES = ("logme", "hscore", "knn")


def _check_split(f: FeatureFile, split) -> None:
    if isinstance(split, bool) or not isinstance(split, (int, np.integer)):
        raise UserError(f"split must be an integer, got {split!r}")
    n_splits = int(f.splits.shape[1])
    if not 0 <= split < n_splits:
        raise UserError(
            f"{f.path}: split {split} does not exist; the file has splits 0..{n_splits - 1}"
        )
