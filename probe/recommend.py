"""Recommend a backbone from a sample of the collection, and say how sure the recommendation is.

Input: for each candidate backbone, video-level data of the same sampled videos (mean-pooled
features, optionally mean-pooled source logits, its source top-1 as a prior), the sample's
labels and splits, and quick probes' per-video test predictions per (candidate, split, seed).
Output (`recommend`): every training-free score per candidate and their average rank, each
score's and the prior's agreement (Kendall tau) with the quick probes, and a bootstrap over the
sample's videos of the quick probes' μAP: each candidate's probability of being the best, its
expected regret, and whether the top two are too close to call (with the sample size that would
separate them, when it can be estimated).

Guardrails, each reported in the result's notes:

- Labels with no positive (or no negative) among the sampled videos are left out of every score,
  for every candidate alike: such a column carries no information, and published LogME scores it
  +6 to +7 against about 0 for real labels, which dominates a multi-label mean.
- With fewer videos than twice a candidate's feature dimension, the scores see its first
  N // 2 principal components (`scores_extra.guard_dims`): with N <= D a linear model fits any
  labels, so published LogME scores 1024-d pure noise far above real 64-d features at N = 200.
- Scores are combined by average rank, since their scales are unrelated.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from probe.catalogue import check_same_truth, file_truth
from probe.scores_extra import guard_dims, reduce_dims, video_logits
from probe.transferability import SCORES, knn_neighbours, rank_correlation
from vtl.errors import FeatureFileError, UserError
from vtl.features import FeatureFile

log = logging.getLogger(__name__)

RESAMPLES = 200  # bootstrap resamples, the fewest advised (and `probe recommend --help`'s figure)
# Scores that see the full features even with few videos: H-score regularises itself (its
# Ledoit-Wolf shrinkage is made for fewer samples than dims), and on a handful of principal
# components the shrinkage goes to 1, which zeroes it for every candidate (the demo's 18 videos).
UNGUARDED = ("hscore",)
LEVEL = 0.95  # the bootstrap intervals' coverage
_BLOCK = 50  # resamples whose weighted μAP is computed at once


@dataclass
class Candidate:
    """One backbone's data on the sample's videos (rows aligned with the sample's labels).

    `prior` is the backbone's published source top-1 accuracy in percent (None if unknown);
    `cost` is its feature file's `cost` attribute (params_m, gflops_per_clip, embed_seconds,
    shared_seconds, videos, clips) and `frames` the frames of the videos that cost covers,
    from which `collection_cost` extrapolates to the whole collection."""

    name: str
    features: np.ndarray  # (N, D) mean-pooled clip features per video
    logits: np.ndarray | None = None  # (N, C) mean-pooled source logits, with --logits
    prior: float | None = None
    cost: dict = field(default_factory=dict)
    frames: int | None = None


@dataclass
class ProbeRun:
    """A quick probe's test predictions: `scores[i]` are its label scores for sample video
    `videos[i]` (indices into the sample's rows)."""

    candidate: str
    split: int
    seed: int
    videos: np.ndarray  # (T,) int
    scores: np.ndarray  # (T, L)


@dataclass
class Bootstrap:
    """Quick-probe μAP per candidate, on the sample and over bootstrap resamples of its videos."""

    candidates: list[str]
    point: np.ndarray  # (C,) μAP (fraction) on the sample, mean over splits and seeds
    resampled: np.ndarray  # (B, C) the same on each resample
    p_best: np.ndarray  # (C,) share of resamples in which the candidate is best
    regret: np.ndarray  # (C,) mean over resamples of best μAP - candidate μAP
    low: np.ndarray  # (C,) interval bounds (percentiles of the resampled μAP)
    high: np.ndarray
    n_videos: int  # videos in the sample


@dataclass
class Verdict:
    """What to extract, how sure, and whether more data would settle it."""

    best: str
    p_best: float
    regret: float  # expected regret of the recommendation, μAP fraction
    runner_up: str | None
    too_close: bool  # the best's and runner-up's intervals overlap
    videos_to_separate: int | None  # sample size at which they would not, if estimable
    by_prior: bool = False  # too close to call: `best` is the one with the higher source top-1
    by_evidence: bool = False  # too close, no prior separates: `best` has the higher LogME


@dataclass
class Recommendation:
    """Everything a report shows (probe.recommend.recommend)."""

    candidates: list[str]
    scores: dict[str, dict[str, float]]  # score -> candidate -> value
    average_rank: dict[str, float]  # candidate -> mean rank over the combined scores (1 best)
    combined: list[str]  # the scores in the average rank
    priors: dict[str, float]  # candidate -> published top-1 (those that have one)
    agreement: dict[str, float]  # score, "average rank" or "prior" -> Kendall tau with probes
    bootstrap: Bootstrap | None
    verdict: Verdict | None
    kept_labels: list[str]
    notes: list[str]
    costs: dict[str, dict] = field(default_factory=dict)  # candidate -> collection_cost
    evidence: dict[str, float] = field(default_factory=dict)  # the verdict's LogME tie-break
    sample_seed: int | None = None  # the sample's seed (files of `extract run --sample`)


@dataclass
class SampleData:
    """The candidates' feature files read for `recommend`: rows are the videos every file has."""

    candidates: list[Candidate]
    video_ids: list[str]
    labels: np.ndarray  # (N, L) uint8
    label_names: list[str]
    splits: np.ndarray  # (N, K) uint8
    notes: list[str]
    sample_seed: int | None = None  # the seed every file's sample was drawn with, if one


def read_sample(paths: Sequence[str | Path], names: Sequence[str] | None = None) -> SampleData:
    """Mean-pooled features (and logits, where stored), cost and frames of each feature file.

    Args:
        paths: one feature file per candidate, all of the same sample (or collection).
        names: the candidates' names (default: each file's backbone attribute).

    Returns:
        SampleData over the videos every file holds, in the first file's order; a note names
        how many videos were left out because some file lacks them.

    Raises:
        UserError: files with different labels, or no video common to all.
    """
    if not paths:
        raise UserError("no feature files to recommend from")
    files = [FeatureFile(p) for p in paths]
    try:
        first = files[0]
        for f in files[1:]:
            if f.label_names != first.label_names:
                raise UserError(
                    f"{f.path}: labels {f.label_names} differ from {first.path}'s "
                    f"{first.label_names}; compare files of one collection"
                )
        common = set.intersection(*(set(f.video_ids) for f in files))
        ids = [v for v in first.video_ids if v in common]
        if not ids:
            raise UserError(f"the files {[str(p) for p in paths]} share no video")
        notes = []
        left_out = len(set.union(*(set(f.video_ids) for f in files))) - len(ids)
        if left_out:
            notes.append(f"{left_out} videos left out: not in every candidate's file")
            log.warning(
                "%d videos left out: not in every candidate's file (samples of other sizes or "
                "seeds, or failed videos); the candidates are compared on the %d all hold",
                left_out,
                len(ids),
            )
        first_index = {v: i for i, v in enumerate(first.video_ids)}
        first_rows = np.array([first_index[v] for v in ids])
        truth = file_truth(first)
        candidates = []
        for k, f in enumerate(files):
            check_same_truth(first.path, truth, f.path, file_truth(f))
            index = {v: i for i, v in enumerate(f.video_ids)}
            rows = np.array([index[v] for v in ids])
            features = np.stack([f.video_mean(int(i)) for i in rows])
            if len(features) > 1 and (features == features[0]).all():
                raise FeatureFileError(
                    f"{f.path}: every sampled video has the same features: nothing to rank; "
                    "re-extract the file or leave it out"
                )
            candidates.append(
                Candidate(
                    name=names[k] if names is not None else f.meta.backbone,
                    features=features,
                    logits=video_logits(f, rows) if f.has_logits else None,
                    cost=dict(f.meta.cost),
                    frames=int(f.n_frames.sum()),  # the frames the file's cost covers
                )
            )
        seeds = {f.meta.sample.get("seed") for f in files}
        return SampleData(
            candidates=candidates,
            video_ids=ids,
            labels=first.labels[first_rows],
            label_names=list(first.label_names),
            splits=first.splits[first_rows],
            notes=notes,
            sample_seed=seeds.pop() if len(seeds) == 1 else None,
        )
    finally:
        for f in files:
            f.close()


# ------------------------------------------------------------------ guardrails


def informative_labels(labels: np.ndarray) -> np.ndarray:
    """Mask of the label columns with both a positive and a negative among the sampled videos.

    Raises:
        ValueError: no label has both.
    """
    labels = np.asarray(labels)
    keep = (labels.max(axis=0) == 1) & (labels.min(axis=0) == 0)
    if not keep.any():
        raise ValueError("no label has both positive and negative videos in the sample")
    return keep


def guarded_features(features: np.ndarray) -> tuple[np.ndarray, str | None]:
    """The features the scores should see, and a note when they were PCA-reduced.

    With N videos and D dims, D > N // 2 is reduced to the first N // 2 principal components
    (`scores_extra.guard_dims`)."""
    n, d = features.shape
    dims = guard_dims(n, d)
    if dims == d:
        return np.asarray(features, dtype=np.float64), None
    note = (
        f"{n} videos < 2 x {d} dims: scores computed on the first {dims} principal components "
        "(with fewer than two videos per dimension a linear fit explains even pure noise)"
    )
    return reduce_dims(features, dims), note


# ------------------------------------------------------------------ scores


def score_candidates(
    candidates: Sequence[Candidate],
    labels: np.ndarray,
    methods: Sequence[str] | None = None,
    knn_k: int = 10,
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Every score of every candidate, on its guarded features; and notes on what was skipped.

    A score that needs logits skips candidates without them; a score that fails on a candidate
    (a ValueError) skips it with the reason.

    Returns:
        ({score: {candidate: value}}, notes).
    """
    methods = list(SCORES) if methods is None else list(methods)
    unknown = [m for m in methods if m not in SCORES]
    if unknown:
        raise ValueError(f"unknown scores {unknown}; choose among {list(SCORES)}")
    table: dict[str, dict[str, float]] = {m: {} for m in methods}
    notes: list[str] = []
    k = knn_neighbours(knn_k, len(labels))
    need_logits = [m for m in methods if SCORES[m].needs_logits]
    without = [c.name for c in candidates if c.logits is None]
    if need_logits and without:  # one note for them all
        files = "its file has" if len(without) == 1 else "their files have"
        notes.append(
            f"{', '.join(need_logits)}: skipped for {', '.join(without)} ({files} no "
            "/clips/logits; extract with --logits)"
        )
    for candidate in candidates:
        guarded, note = guarded_features(candidate.features)
        if note:
            notes.append(f"{candidate.name}: {note}")
        for method in methods:
            spec = SCORES[method]
            if spec.needs_logits and candidate.logits is None:
                continue
            try:
                with warnings.catch_warnings():
                    # Constant labels were already left out (informative_labels).
                    warnings.simplefilter("ignore", UserWarning)
                    features = candidate.features if method in UNGUARDED else guarded
                    value = spec.compute(features, labels, knn_k=k, logits=candidate.logits)
            except ValueError as error:
                notes.append(f"{method}: skipped for {candidate.name} ({error})")
                continue
            table[method][candidate.name] = float(value)
    return table, notes


def average_rank(
    table: Mapping[str, Mapping[str, float]], candidates: Sequence[str]
) -> tuple[dict[str, float], list[str]]:
    """Mean rank (1 = best, ties averaged) over the scores that rate every candidate.

    Returns:
        ({candidate: mean rank}, the scores used).
    """
    used = [m for m, values in table.items() if all(c in values for c in candidates)]
    if not used:
        return {c: float("nan") for c in candidates}, []
    ranks = np.array(
        [stats.rankdata([-table[m][c] for c in candidates], method="average") for m in used]
    )
    return dict(zip(candidates, ranks.mean(axis=0).tolist(), strict=True)), used


def set_priors(candidates: Sequence[Candidate], top1: Mapping[str, float]) -> None:
    """Give each candidate its published source top-1 (percent) from `top1` (name -> top-1)."""
    for candidate in candidates:
        if candidate.name in top1:
            candidate.prior = float(top1[candidate.name])


def torchvision_top1(weights: str) -> float | None:
    """The ImageNet-1k top-1 (percent) torchvision records for a weights enum, e.g.
    "ResNet50_Weights.IMAGENET1K_V2"; None when it records none (or the name is unknown)."""
    from torchvision.models import get_weight

    try:
        meta = get_weight(weights).meta
    except (ValueError, KeyError, AttributeError):
        return None
    metric = meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    return None if metric is None else float(metric)


# ------------------------------------------------------------------ bootstrap


def weighted_micro_ap(y_true: np.ndarray, y_score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """μAP (`probe.metrics.micro_ap`) of a score matrix with each video counted `weights` times.

    Args:
        y_true: (T, L) 0/1 labels.
        y_score: (T, L) scores.
        weights: (B, T) non-negative integer counts, one row per resample.

    Returns:
        (B,) the μAP each row of weights gives: exactly micro_ap of the matrix with every video
        repeated its count of times (NaN when those videos hold no positive).
    """
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    s = np.asarray(y_score, dtype=np.float64).reshape(-1)
    w = np.repeat(np.asarray(weights, dtype=np.float64), y_true.shape[1], axis=1)
    order = np.argsort(s, kind="mergesort")[::-1]  # as sklearn's confusion_matrix_at_thresholds
    s, y, w = s[order], y[order], w[:, order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last pair of each distinct score
    tps = np.cumsum(w * y, axis=1)[:, last]
    fps = np.cumsum(w * (1 - y), axis=1)[:, last]
    total = tps[:, -1:]
    # Thresholds above every counted pair have no counted pair at all: the repeated matrix has
    # no such point. Giving them the first counted point's values adds zero-width segments.
    first = np.argmax(tps + fps > 0, axis=1)
    columns = np.maximum(np.arange(len(last))[None, :], first[:, None])
    tps = np.take_along_axis(tps, columns, axis=1)
    fps = np.take_along_axis(fps, columns, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tps / (tps + fps)
        recall = tps / total
    # The curve runs from (recall 0, precision 1) through the thresholds in falling order.
    recall = np.concatenate([np.zeros((len(w), 1)), recall], axis=1)
    precision = np.concatenate([np.ones((len(w), 1)), precision], axis=1)
    area = (np.diff(recall, axis=1) * (precision[:, 1:] + precision[:, :-1]) / 2).sum(axis=1)
    return np.where(total[:, 0] > 0, area, np.nan)


def bootstrap(
    runs: Sequence[ProbeRun],
    labels: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> Bootstrap:
    """Resample the sample's videos; μAP of every quick probe on each resample.

    Every candidate sees the same resamples (a paired bootstrap): a video drawn twice counts
    twice in the test set of every split it is a test video of. A candidate's μAP on a resample
    is the mean over its (split, seed) runs.

    Args:
        runs: the quick probes' test predictions (at least one per candidate).
        labels: (N, L) the sample's labels (the columns the probes predict).
        resamples: bootstrap resamples, >= RESAMPLES recommended.
        seed: the resampling seed.
        level: the intervals' coverage.
    """
    if not runs:
        raise ValueError("no quick-probe runs to bootstrap")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    labels = np.asarray(labels)
    n = len(labels)
    names = list(dict.fromkeys(run.candidate for run in runs))
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1 / n), size=resamples)  # (B, N)
    point = np.zeros(len(names))
    resampled = np.zeros((resamples, len(names)))
    for c, name in enumerate(names):
        mine = [run for run in runs if run.candidate == name]
        values, points = [], []
        for run in mine:
            videos = np.asarray(run.videos, dtype=np.int64)
            truth, scores = labels[videos], np.asarray(run.scores, dtype=np.float64)
            if scores.shape != truth.shape:
                raise ValueError(
                    f"{name} split {run.split} seed {run.seed}: scores {scores.shape} do not "
                    f"match the labels of its {len(videos)} test videos {truth.shape}"
                )
            points.append(weighted_micro_ap(truth, scores, np.ones((1, len(videos))))[0])
            # A block of resamples at a time: memory is block x (test videos x labels).
            blocks = range(0, resamples, _BLOCK)
            weights = [counts[b : b + _BLOCK, videos] for b in blocks]
            values.append(np.concatenate([weighted_micro_ap(truth, scores, w) for w in weights]))
        point[c] = np.nanmean(points)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample with no positive
            resampled[:, c] = np.nanmean(values, axis=0)
    resampled = np.nan_to_num(resampled, nan=-np.inf)
    best = resampled.max(axis=1, keepdims=True)
    winners = resampled == best
    p_best = (winners / winners.sum(axis=1, keepdims=True)).mean(axis=0)
    finite = np.isfinite(resampled)
    regret = np.where(finite, best - resampled, np.nan)
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(np.where(finite, resampled, np.nan), [tail, 100 - tail], axis=0)
    return Bootstrap(
        candidates=names,
        point=point,
        resampled=resampled,
        p_best=p_best,
        regret=np.nanmean(regret, axis=0),
        low=low,
        high=high,
        n_videos=n,
    )


def verdict(
    result: Bootstrap,
    collection_videos: int | None = None,
    priors: Mapping[str, float] | None = None,
    evidence: Mapping[str, float] | None = None,
) -> Verdict:
    """The candidate with the least expected regret, and whether the runner-up is too close.

    The runner-up is the next best by μAP on the sample. They are "too close to call" when their
    intervals overlap. Intervals shrink about as 1/sqrt(n), so they would separate at
    n' = n ((d1 + d2) / gap)^2 videos (d1 the higher one's point less its interval's low end, d2
    the other's high end less its point: the sides facing each other; gap the μAP difference)
    if the gap observed on the sample holds; on a small sample that gap is itself uncertain, so
    n' is a first estimate, to be checked on the larger sample. No estimate when the gap is 0,
    or when n' exceeds the collection (`collection_videos`).

    When they are too close to call and every candidate whose interval overlaps the best's has
    a source prior (`priors`: candidate -> published top-1), the one of them with the highest
    prior is named first (`by_prior`), the probes' pick second: the sample cannot tell them
    apart, and source accuracy is the strongest simple predictor of transfer the literature
    reports (the baseline every score here is measured against).

    When the priors do not separate them (a prior missing, or all equal) and every candidate
    whose interval overlaps the best's has `evidence` (candidate -> LogME, given only where the
    sample has two videos per feature dimension: `regime_evidence`), the one of them with the
    highest is named first (`by_evidence`): the evidence of a linear fit to every sampled video
    resolves gaps that held-out μAP on the same videos cannot.
    """
    order = np.lexsort((-result.point, result.regret))
    best = int(order[0])
    if len(order) == 1:
        return Verdict(result.candidates[best], 1.0, 0.0, None, False, None)
    others = [int(i) for i in np.argsort(-result.point, kind="stable") if i != best]
    runner = others[0]

    def overlaps(i: int) -> bool:  # candidate i's interval and the best's
        return bool(result.low[best] <= result.high[i] and result.low[i] <= result.high[best])

    too_close = overlaps(runner)
    tied = [best, *(i for i in others if overlaps(i))]
    priors, evidence, names = priors or {}, evidence or {}, result.candidates
    by_prior = by_evidence = False
    known = all(names[i] in priors for i in tied)
    if too_close and known:
        first = max(tied, key=lambda i: priors[names[i]])  # the earliest of equal priors
        if priors[names[first]] > priors[names[best]]:
            best, runner, by_prior = first, best, True
    separated = known and len({priors[names[i]] for i in tied}) > 1
    if too_close and not separated and all(names[i] in evidence for i in tied):
        first = max(tied, key=lambda i: evidence[names[i]])
        if evidence[names[first]] > evidence[names[best]]:
            best, runner, by_evidence = first, best, True
    needed = None
    upper, lower = sorted((best, runner), key=lambda i: -result.point[i])
    gap = result.point[upper] - result.point[lower]
    if too_close and gap > 0:
        # The sides that face each other: overlapping, they span at least the gap, so the
        # estimate is above the sample's size (percentile intervals need not be symmetric).
        facing = result.point[upper] - result.low[upper] + result.high[lower] - result.point[lower]
        needed = math.ceil(result.n_videos * (facing / gap) ** 2)
        if collection_videos is not None and needed > collection_videos:
            needed = None
    return Verdict(
        best=result.candidates[best],
        p_best=float(result.p_best[best]),
        regret=float(result.regret[best]),
        runner_up=result.candidates[runner],
        too_close=too_close,
        videos_to_separate=needed,
        by_prior=by_prior,
        by_evidence=by_evidence,
    )


def regime_evidence(
    candidates: Sequence[Candidate], labels: np.ndarray, table: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """LogME of each candidate whose sample has at least two videos per feature dimension (no
    PCA guard: `guarded_features`), from the scores' `table` where it holds it: `verdict`'s
    tie-break. Below that, LogME rates even pure noise high, so no candidate gets one there.

    On the bench's 2,000-video bank (a 1.06 μAP gap) the recommendation picked right in 96% of
    20% samples with this tie-break, and the held-out probes alone in 80%."""
    known = table.get("logme", {})
    out = {}
    for candidate in candidates:
        n, d = candidate.features.shape
        if guard_dims(n, d) != d:
            continue
        if candidate.name in known:
            out[candidate.name] = known[candidate.name]
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                out[candidate.name] = float(SCORES["logme"].compute(candidate.features, labels))
        except ValueError:
            continue
    return out


# ------------------------------------------------------------------ everything


def recommend(
    candidates: Sequence[Candidate],
    labels: np.ndarray,
    label_names: Sequence[str],
    runs: Sequence[ProbeRun] = (),
    methods: Sequence[str] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    collection_videos: int | None = None,
    collection_frames: int | None = None,
    knn_k: int = 10,
) -> Recommendation:
    """Scores, their agreement with the quick probes, the bootstrap and the verdict.

    Args:
        candidates: the backbones, each with the same sampled videos in the same row order.
        labels: (N, L) the sample's labels; label_names their names.
        runs: quick-probe test predictions (their `videos` index the sample's rows, their
            score columns follow `labels`); none: scores only, no bootstrap or verdict.
        methods: the scores to compute (default: every registered score).
        resamples, seed: the bootstrap's.
        collection_videos: the whole collection's size, the ceiling of a sample size estimate.
        collection_frames: the whole collection's frames, to extrapolate each candidate's cost.
        knn_k: neighbours of the kNN score.
    """
    names = [c.name for c in candidates]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"candidates must have distinct names, got {names}")
    labels = np.asarray(labels)
    for candidate in candidates:
        if len(candidate.features) != len(labels):
            raise ValueError(
                f"{candidate.name}: {len(candidate.features)} feature rows but {len(labels)} "
                "labelled videos"
            )
    notes: list[str] = []
    keep = informative_labels(labels)
    if not keep.all():
        dropped = ", ".join(label_names[i] for i in np.flatnonzero(~keep))
        notes.append(
            f"labels without positives (or without negatives) in the sample left out of the "
            f"scores: {dropped}; a larger sample may include them"
        )
        warnings.warn(notes[-1], UserWarning, stacklevel=2)
    table, score_notes = score_candidates(candidates, labels[:, keep], methods, knn_k)
    notes += score_notes
    ranks, combined = average_rank(table, names)
    priors = {c.name: c.prior for c in candidates if c.prior is not None}
    if len(priors) < len(names):
        unknown = ", ".join(n for n in names if n not in priors)
        notes.append(
            f"no source prior for {unknown} (top-1 is read from torchvision's weights only): "
            "give the published figure with --prior NAME=TOP1 to rank by it and break ties"
        )

    result = verdict_ = None
    agreement: dict[str, float] = {}
    evidence: dict[str, float] = {}
    if runs:
        result = bootstrap(runs, labels, resamples=resamples, seed=seed)
        evidence = regime_evidence(candidates, labels[:, keep], table)
        verdict_ = verdict(result, collection_videos, priors, evidence)
        probe = dict(zip(result.candidates, result.point.tolist(), strict=True))
        rows = {m: values for m, values in table.items()}
        if combined:
            rows["average rank"] = {c: -r for c, r in ranks.items()}
        rows["prior"] = priors
        for name, values in rows.items():
            shared = [c for c in names if c in values and c in probe]
            if len(shared) >= 2:
                agreement[name] = rank_correlation(
                    [values[c] for c in shared], [probe[c] for c in shared]
                )["kendall_tau"]
    return Recommendation(
        candidates=names,
        scores=table,
        average_rank=ranks,
        combined=combined,
        priors=priors,
        agreement=agreement,
        bootstrap=result,
        verdict=verdict_,
        kept_labels=[n for n, k in zip(label_names, keep, strict=True) if k],
        notes=notes,
        costs={c.name: collection_cost(c, collection_frames) for c in candidates},
        evidence=evidence,
    )


def collection_cost(candidate: Candidate, collection_frames: int | None) -> dict:
    """What extracting the candidate on the whole collection would cost, from its sample's cost.

    Time and FLOPs grow with the frames decoded, so both are the sample's figures times
    collection_frames / the sample's frames. Returns {} when a figure is missing, else {"hours":
    the candidate's extraction hours on the machine that extracted the sample (its embedding
    and the run's decoding and shot detection, `shared_seconds`, where the file records them),
    "embed_hours": the embedding's part, "pflops": ...}.
    """
    cost, frames = candidate.cost or {}, candidate.frames
    if not collection_frames or not frames:
        return {}
    scale = collection_frames / frames
    result = {}
    if cost.get("embed_seconds") is not None:
        result["embed_hours"] = float(cost["embed_seconds"]) * scale / 3600
        shared = float(cost.get("shared_seconds") or 0.0)
        result["hours"] = result["embed_hours"] + shared * scale / 3600
    if cost.get("gflops_per_clip") is not None and cost.get("clips") is not None:
        result["pflops"] = float(cost["gflops_per_clip"]) * float(cost["clips"]) * scale / 1e6
    return result
