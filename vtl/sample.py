"""A sample of a collection that represents it: stratified over the labels and the splits.

`extract run --sample N|FRACTION` extracts only a sample of the manifest's videos, so that
`probe recommend` can choose a backbone before the whole collection is extracted. The sample is
drawn by iterative stratification for multi-label data (Sechidis, Tsoumakas and Vlahavas,
"On the stratification of multi-label data", ECML PKDD 2011; scikit-multilearn's
`IterativeStratification`), over three kinds of strata at once:

- each label (its positives keep their share of the sample),
- each subset of each split column (train/val/test of split K keep their share),
- each label x the train subset of each split (the positives a quick probe trains on).

Iterative stratification only keeps *expected* shares, and a label with 3 train positives in a
10% sample is expected to keep 0.3 of them. So before it runs, a covering step takes, rarest
first, one positive of every (label, split) train stratum that has one, whenever the sample size
allows: every label then has a positive to train on in every split of the sample. The fold
choice differs from the paper's (see `_iterative_stratification`).
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from vtl.errors import UserError
from vtl.manifest import SPLIT_NAMES

METHOD = "iterative-stratification"
STRATA = "labels, split subsets, labels x train subset of each split"
_TRAIN = SPLIT_NAMES.index("train")  # the train subset's split code
_SUBSETS = len(SPLIT_NAMES)  # train, val, test


def parse_sample_size(text: str) -> int | float:
    """The value of `--sample`: a count of videos ("200") or a fraction ("0.2" or "20%").

    Raises:
        UserError: anything else, naming the option and the accepted forms.
    """
    raw = str(text).strip()
    try:
        if raw.endswith("%"):
            value: int | float = float(raw[:-1]) / 100
        elif raw.isdigit():
            value = int(raw)
        else:
            value = float(raw)
    except ValueError:
        value = -1
    if isinstance(value, int) and value >= 1:
        return value
    if isinstance(value, float) and 0 < value <= 1:
        return value
    raise UserError(
        f"--sample must be a number of videos (e.g. 200) or a fraction in (0, 1] "
        f"(e.g. 0.2 or 20%), got {text!r}"
    )


def sample_count(size: int | float, n_videos: int) -> int:
    """How many of `n_videos` a sample of `size` (a count, or a fraction in (0, 1]) takes.

    A fraction rounds to the nearest count, at least 1.

    Raises:
        UserError: a count larger than the collection, or a size that is neither form.
    """
    if isinstance(size, bool) or not isinstance(size, numbers.Real):
        raise UserError(f"sample size must be a count or a fraction in (0, 1], got {size!r}")
    if isinstance(size, numbers.Integral):
        if not 1 <= size <= n_videos:
            raise UserError(
                f"sample size {size} is not between 1 and the collection's {n_videos} videos; "
                "pass a smaller count or a fraction"
            )
        return int(size)
    if not 0 < size <= 1:
        raise UserError(f"sample fraction must be in (0, 1], got {size!r}")
    return max(1, min(n_videos, round(size * n_videos)))


def stratified_sample(
    labels: np.ndarray,
    splits: np.ndarray,
    size: int | float,
    seed: int = 0,
    keep: np.ndarray | None = None,
) -> np.ndarray:
    """Draw a sample of videos stratified over labels and splits (module docstring).

    Args:
        labels: (V, L) 0/1 labels of the whole collection.
        splits: (V, K) split codes (0 train, 1 val, 2 test); K may be 0.
        size: the number of videos, or a fraction in (0, 1] of them.
        seed: the draw's seed; the same inputs and seed give the same sample.
        keep: video indices the sample must hold: a smaller sample being grown, whose videos
            are already extracted. They count towards the cover and the quotas, and the
            rest of the sample is drawn around them.

    Returns:
        The chosen video indices, sorted, exactly `sample_count(size, V)` of them.

    Raises:
        ValueError: `keep` holds more videos than the sample, or indices out of range.

    Warns:
        UserWarning: when the sample is too small to hold a train positive of every label in
            every split that has one (it holds as many as it can, rarest first).
    """
    labels, splits = _check_inputs(labels, splits)
    n_videos = len(labels)
    n = sample_count(size, n_videos)
    rng = np.random.default_rng(seed)
    required = labels[:, :, None] & (splits[:, None, :] == _TRAIN)  # (V, L, K)
    required = required.reshape(n_videos, -1) if splits.shape[1] else labels.copy()
    subsets = np.concatenate(
        [splits == code for code in range(_SUBSETS)], axis=1
    )  # (V, 3K): one column per (subset, split)
    strata = np.concatenate([labels, subsets, required], axis=1)
    strata = strata[:, strata.any(axis=0)]

    kept = np.unique(np.asarray([] if keep is None else keep, dtype=np.int64))
    if len(kept) > n or (len(kept) and (kept[0] < 0 or kept[-1] >= n_videos)):
        raise ValueError(
            f"keep: {len(kept)} videos to keep in a sample of {n} of {n_videos} "
            "(at most the sample, indices in range)"
        )
    chosen = _cover(required[:, required.any(axis=0)], n, rng, kept.tolist())
    in_sample = np.zeros(n_videos, bool)
    in_sample[chosen] = True
    in_sample |= _iterative_stratification(strata, in_sample, kept, n, rng)
    return np.flatnonzero(in_sample)


def sample_record(
    indices: np.ndarray,
    video_ids: list[str],
    size: int | float,
    seed: int,
    grown_from: int | None = None,
) -> dict:
    """How a sample was drawn, for the feature file's `sample` attribute (JSON).

    Args:
        indices: the chosen indices into `video_ids` (from `stratified_sample`).
        video_ids: every video of the collection, in manifest order.
        size: the size asked for (a count or a fraction).
        seed: the seed of the draw.
        grown_from: the size of the smaller sample it was grown from (its `keep`), if any.
    """
    indices = np.asarray(indices, dtype=np.int64)
    grown = {} if grown_from is None else {"grown_from": int(grown_from)}
    return {
        "method": METHOD,
        "strata": STRATA,
        "requested": size.item() if isinstance(size, np.generic) else size,
        "n": int(len(indices)),
        "fraction": len(indices) / len(video_ids),
        "seed": int(seed),
        "of_videos": len(video_ids),
        "video_ids": [video_ids[i] for i in indices],
        **grown,
    }


def _check_inputs(labels, splits) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    splits = np.asarray(splits)
    if labels.ndim != 2 or len(labels) == 0:
        raise ValueError(f"labels must be 2-D (videos, labels) and non-empty, got {labels.shape}")
    if splits.ndim != 2 or len(splits) != len(labels):
        raise ValueError(
            f"splits must be 2-D (videos, splits) with {len(labels)} rows, got {splits.shape}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must hold only 0 and 1")
    if not np.isin(splits, range(_SUBSETS)).all():
        raise ValueError("splits must hold only 0 (train), 1 (val) and 2 (test)")
    return labels.astype(bool), splits.astype(np.int64)


def _cover(required: np.ndarray, n: int, rng: np.random.Generator, chosen: list[int]) -> list[int]:
    """Videos that put one member of every required stratum in the sample, rarest first,
    after the `chosen` ones (kept from a smaller sample), which cover what they hold.

    Each pick is the member covering most still-uncovered strata (ties at random), so few picks
    cover many strata and the rest of the sample stays free for the stratification.
    """
    sizes = required.sum(axis=0)
    # Rarest first; a random permutation first breaks ties between equal sizes at random.
    order = rng.permutation(required.shape[1])
    order = order[np.argsort(sizes[order], kind="stable")]
    uncovered = ~required[chosen].any(axis=0)
    chosen = list(chosen)
    for column in order:
        if not uncovered[column]:
            continue
        if len(chosen) == n:
            warnings.warn(
                f"a sample of {n} videos cannot hold a train positive of every label in every "
                f"split: {int(uncovered.sum())} (label, split) pairs have none; "
                "draw a larger sample",
                UserWarning,
                stacklevel=3,
            )
            break
        members = np.flatnonzero(required[:, column])
        members = members[~np.isin(members, chosen)]
        gain = required[members][:, uncovered].sum(axis=1)
        best = members[gain == gain.max()]
        pick = int(rng.choice(best))
        chosen.append(pick)
        uncovered &= ~required[pick]
    return chosen


def _iterative_stratification(
    strata: np.ndarray, fixed: np.ndarray, kept: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Iterative stratification into two folds, the sample (size n) and the rest.

    As Sechidis et al.: take the stratum with the fewest unassigned videos, hand each of its
    videos to a fold, repeat. Their fold choice looks only at the current stratum; with the
    split subsets as strata that decides most videos before the common labels' turn, leaving
    those labels' shares to chance. So each video goes to the fold whose quotas over *all* its
    strata are least filled (the sum of the fraction of each quota still wanted), ties to the
    fold with more room, then at random. A full fold takes nothing more, so sizes are exact.
    `fixed` videos are already in the sample and count towards its quotas: the cover's and the
    `kept` ones (indices) of a smaller sample being grown, whose share the stratification
    fills around. Returns the mask of the videos it adds to the sample.
    """
    n_videos = len(strata)
    share = np.array([n / n_videos, 1 - n / n_videos])
    totals = strata.sum(axis=0)
    quota = share[:, None] * totals[None, :]  # (fold, stratum)
    wanted = quota.copy()  # how many more members of each stratum each fold should receive
    wanted[0] -= strata[fixed].sum(axis=0)
    # Need is the share of a quota still wanted; the sample's quotas are less the kept videos
    # (a sample being grown), so its fold starts as hungry as the rest's. A stratum the kept
    # videos already fill keeps its whole quota as the measure (its need is then negative).
    scale = quota.copy()
    scale[0] -= strata[kept].sum(axis=0)
    scale = np.where(scale > 0, scale, quota)
    capacity = np.array([n - int(fixed.sum()), n_videos - n])
    remaining = ~fixed
    added = np.zeros(n_videos, bool)

    def assign(video: int) -> None:
        folds = np.flatnonzero(capacity > 0)
        mine = strata[video]
        need = (wanted[folds][:, mine] / scale[folds][:, mine]).sum(axis=1)
        folds = folds[need == need.max()]
        folds = folds[capacity[folds] == capacity[folds].max()]
        fold = int(rng.choice(folds))
        wanted[fold] -= mine
        capacity[fold] -= 1
        remaining[video] = False
        added[video] = fold == 0

    while True:
        counts = strata[remaining].sum(axis=0)
        live = np.flatnonzero(counts > 0)
        if len(live) == 0:
            break
        rarest = live[counts[live] == counts[live].min()]
        column = int(rng.choice(rarest))
        for video in rng.permutation(np.flatnonzero(remaining & strata[:, column])):
            assign(int(video))
    for video in rng.permutation(np.flatnonzero(remaining)):  # videos in no stratum
        assign(int(video))
    return added


def drawn(sample: dict) -> str:
    """What a run extracted, from its file's sample record (`sample_record`; empty for every
    video), in words: "a full run" or "a sample of N videos (seed S)"."""
    if not sample:
        return "a full run"
    return f"a sample of {sample.get('n')} videos (seed {sample.get('seed')})"
