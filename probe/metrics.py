"""Multi-label ranking metrics, computed exactly as the reference code does (DIViTA `train.py`).

Every score is the area under the precision-recall curve, `auc(recall, precision)` over the
points of `sklearn.metrics.precision_recall_curve` (trapezoids, *not* sklearn's step-wise
`average_precision_score`), taken four ways over a (videos x labels) score matrix:

- μAP (`uap`): all (video, label) pairs flattened into one ranking;
- mAP (`map`): mean over labels, a label with no positives counting as 0;
- wAP (`wap`): mean over labels weighted by each label's number of positives;
- sAP (`sap`): mean over videos (samples) of each video's ranking of the labels.

The functions are pure and return fractions in [0, 1]; callers that report percent (as the
reference's result tables do) multiply by 100.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import auc, precision_recall_curve

METRIC_NAMES = ("uap", "map", "wap", "sap")


def check_targets(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (samples, labels) 0/1 target matrix and a score matrix of the same shape.

    Raises:
        ValueError: naming the argument and what is wrong with it.
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim != 2:
        raise ValueError(f"y_true must be 2-D (samples, labels), got shape {y_true.shape}")
    if y_score.shape != y_true.shape:
        raise ValueError(f"y_score has shape {y_score.shape}, y_true has {y_true.shape}")
    if y_true.shape[0] == 0:
        raise ValueError("y_true has no samples")
    values = np.unique(y_true)
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"y_true must hold only 0 and 1, found {values[:5].tolist()}")
    if not np.isfinite(y_score).all():
        raise ValueError("y_score holds NaN or infinite values")
    return y_true.astype(np.int64), y_score


def pr_auc(y_true, y_score) -> float:
    """Area under the precision-recall curve of one ranking, as the reference's `pre_rec_auc`.

    Returns NaN when `y_true` has no positive: recall is undefined there (older scikit-learn
    returned NaN; newer ones warn and return an arbitrary curve), and the aggregate metrics decide
    what an undefined score counts as.
    """
    y_true = np.asarray(y_true).reshape(-1)
    y_score = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true has {y_true.size} values, y_score {y_score.size}")
    if not (y_true == 1).any():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        precision, recall, _ = precision_recall_curve(y_true, y_score)
    return float(auc(recall, precision))


def per_label_ap(y_true, y_score) -> np.ndarray:
    """PR-AUC of each label (column); NaN for a label with no positives."""
    y_true, y_score = check_targets(y_true, y_score)
    return np.array([pr_auc(t, s) for t, s in zip(y_true.T, y_score.T, strict=True)])


def micro_ap(y_true, y_score) -> float:
    """μAP: one PR-AUC over every (sample, label) pair."""
    y_true, y_score = check_targets(y_true, y_score)
    return pr_auc(y_true.reshape(-1), y_score.reshape(-1))


def macro_ap(y_true, y_score) -> float:
    """mAP: mean of the per-label PR-AUCs, a label with no positives counting as 0."""
    return float(np.mean(np.nan_to_num(per_label_ap(y_true, y_score), nan=0.0)))


def weighted_ap(y_true, y_score) -> float:
    """wAP: per-label PR-AUCs averaged with weights = each label's share of all positives."""
    y_true, y_score = check_targets(y_true, y_score)
    support = y_true.sum(axis=0)
    if support.sum() == 0:
        return float("nan")
    aps = np.nan_to_num(per_label_ap(y_true, y_score), nan=0.0)
    return float(np.average(aps, weights=support / support.sum()))


def sample_ap(y_true, y_score) -> float:
    """sAP: mean over samples of the PR-AUC of each sample's label ranking.

    A sample with no positive label counts as 0 (the reference never meets one: every
    Trailers12k trailer has a genre; counting it as 0 keeps the mean finite, as for mAP).
    """
    y_true, y_score = check_targets(y_true, y_score)
    aps = [pr_auc(t, s) for t, s in zip(y_true, y_score, strict=True)]
    return float(np.mean(np.nan_to_num(aps, nan=0.0)))


def compute_metrics(y_true, y_score) -> dict[str, float]:
    """All four aggregate metrics (`uap`, `map`, `wap`, `sap`) as fractions in [0, 1]."""
    return {
        "uap": micro_ap(y_true, y_score),
        "map": macro_ap(y_true, y_score),
        "wap": weighted_ap(y_true, y_score),
        "sap": sample_ap(y_true, y_score),
    }


def chance_metrics(y_true) -> dict[str, float]:
    """What each metric is for a ranking that knows nothing: a random score's PR-AUC equals the
    positive rate in expectation, so μAP's chance level is the share of positive pairs, mAP's
    the mean label prevalence (0 for a label with no positives), wAP's the support-weighted
    prevalence and sAP's the mean share of positive labels per sample. Fractions in [0, 1]."""
    y_true = np.asarray(y_true, dtype=np.float64)
    if y_true.ndim != 2 or y_true.size == 0:
        raise ValueError(f"y_true must be a non-empty (samples, labels) array, got {y_true.shape}")
    prevalence = y_true.mean(axis=0)
    support = y_true.sum(axis=0)
    weighted = float(np.average(prevalence, weights=support)) if support.sum() else float("nan")
    return {
        "uap": float(y_true.mean()),
        "map": float(prevalence.mean()),
        "wap": weighted,
        "sap": float(y_true.mean(axis=1).mean()),
    }
