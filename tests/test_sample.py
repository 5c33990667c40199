"""The stratified sample of a collection: exact sizes, reproducible draws, train positives of
every label in every split where the data have them, and label/split shares close to the
collection's (closer than a plain random sample's)."""

import numpy as np
import pytest

from vtl.errors import UserError
from vtl.sample import parse_sample_size, sample_count, sample_record, stratified_sample

TRAIN = 0


def collection(n_videos=600, seed=0):
    """Multi-label videos with common and rare labels, and three random 70/10/20 splits.

    Labels 0-4 are common (prevalence 40% down to 8%), label 5 has 6 positives, label 6 has 3,
    label 7 has 2; the rare positives sit in train of some splits and not others.
    """
    rng = np.random.default_rng(seed)
    prevalence = np.array([0.4, 0.3, 0.2, 0.12, 0.08])
    common = rng.random((n_videos, 5)) < prevalence
    rare = np.zeros((n_videos, 3), bool)
    for column, count in enumerate((6, 3, 2)):
        rare[rng.choice(n_videos, count, replace=False), column] = True
    labels = np.concatenate([common, rare], axis=1).astype(np.uint8)
    splits = rng.choice(3, size=(n_videos, 3), p=[0.7, 0.1, 0.2]).astype(np.uint8)
    return labels, splits


def train_positive_pairs(labels, splits):
    """The (label, split) pairs that have a positive among the split's train videos."""
    has = (labels[:, :, None] == 1) & (splits[:, None, :] == TRAIN)
    return {tuple(pair) for pair in np.argwhere(has.any(axis=0))}


@pytest.mark.filterwarnings("ignore:a sample of 1 videos")
@pytest.mark.parametrize(("size", "expected"), [(60, 60), (0.1, 60), (0.25, 150), (1, 1)])
def test_sizes_are_exact(size, expected):
    labels, splits = collection()
    chosen = stratified_sample(labels, splits, size, seed=3)
    assert len(chosen) == expected
    assert len(np.unique(chosen)) == expected
    assert (np.diff(chosen) > 0).all()  # sorted
    assert chosen.min() >= 0 and chosen.max() < len(labels)


def test_whole_collection():
    labels, splits = collection(n_videos=50)
    assert stratified_sample(labels, splits, 1.0).tolist() == list(range(50))


def test_same_seed_same_sample_other_seed_other_sample():
    labels, splits = collection()
    first = stratified_sample(labels, splits, 0.1, seed=7)
    assert np.array_equal(first, stratified_sample(labels, splits, 0.1, seed=7))
    assert not np.array_equal(first, stratified_sample(labels, splits, 0.1, seed=8))


@pytest.mark.parametrize("seed", range(5))
def test_every_label_keeps_train_positives_in_every_split(seed):
    labels, splits = collection(seed=seed)
    full = train_positive_pairs(labels, splits)
    # The rare labels have a train positive in some split: the test means something.
    assert any(label >= 5 for label, _ in full)
    chosen = stratified_sample(labels, splits, 0.05, seed=seed)  # 30 videos
    assert train_positive_pairs(labels[chosen], splits[chosen]) == full


def test_a_plain_random_sample_loses_rare_train_positives():
    """The property above is not automatic: random 5% samples lose rare labels' positives."""
    labels, splits = collection()
    full = train_positive_pairs(labels, splits)
    rng = np.random.default_rng(0)
    kept = [
        train_positive_pairs(labels[c], splits[c]) == full
        for c in (rng.choice(len(labels), 30, replace=False) for _ in range(20))
    ]
    assert not any(kept)


def test_too_small_a_sample_covers_what_it_can_and_warns():
    labels, splits = collection()
    with pytest.warns(UserWarning, match="cannot hold a train positive"):
        chosen = stratified_sample(labels, splits, 2, seed=0)
    assert len(chosen) == 2
    # The two picks went to the rarest strata: label 7 (2 positives) has a train positive.
    assert (labels[chosen, 7] == 1).any()


def shares(labels, splits):
    subsets = np.concatenate([splits == code for code in range(3)], axis=1)
    return labels.mean(axis=0)[:5], subsets.mean(axis=0)


@pytest.mark.parametrize("size", [0.1, 0.2])
def test_label_and_split_shares_close_to_the_collection(size):
    labels, splits = collection(n_videos=1000)
    full_labels, full_splits = shares(labels, splits)
    rng = np.random.default_rng(1)
    ours, plain = [], []
    for seed in range(10):
        chosen = stratified_sample(labels, splits, size, seed=seed)
        random = rng.choice(len(labels), len(chosen), replace=False)
        for group, rows in ((ours, chosen), (plain, random)):
            got_labels, got_splits = shares(labels[rows], splits[rows])
            group.append(
                np.abs(np.concatenate([got_labels - full_labels, got_splits - full_splits]))
            )
    ours, plain = np.array(ours), np.array(plain)
    assert ours.max() < 0.03  # every common label's and subset's share, in every draw
    assert ours.mean() < 0.5 * plain.mean()  # and much closer than random sampling


@pytest.mark.parametrize("seed", range(3))
def test_a_grown_sample_holds_the_smaller_one_and_stays_stratified(seed):
    """Growing a 10% sample to 20% (`keep`) re-draws none of its videos, where a fresh 20% draw
    would hold fewer than half of them; the grown sample keeps every train positive pair and
    the collection's label and split shares as a fresh draw does."""
    labels, splits = collection(n_videos=1000, seed=seed)
    small = stratified_sample(labels, splits, 0.1, seed=seed)
    grown = stratified_sample(labels, splits, 0.2, seed=seed, keep=small)
    fresh = stratified_sample(labels, splits, 0.2, seed=seed)
    assert len(grown) == 200 and set(small) <= set(grown)
    assert len(set(small) & set(fresh)) < 0.5 * len(small)
    assert train_positive_pairs(labels[grown], splits[grown]) == train_positive_pairs(
        labels, splits
    )
    full_labels, full_splits = shares(labels, splits)
    got_labels, got_splits = shares(labels[grown], splits[grown])
    assert np.abs(got_labels - full_labels).max() < 0.03
    assert np.abs(got_splits - full_splits).max() < 0.03


def test_keep_fills_the_sample_or_is_refused():
    labels, splits = collection()
    kept = stratified_sample(labels, splits, 60, seed=1)
    assert stratified_sample(labels, splits, 60, seed=5, keep=kept).tolist() == kept.tolist()
    assert stratified_sample(labels, splits, 60, seed=1, keep=[]).tolist() == kept.tolist()
    with pytest.raises(ValueError, match="keep: 60 videos to keep in a sample of 30"):
        stratified_sample(labels, splits, 30, seed=1, keep=kept)
    with pytest.raises(ValueError, match="indices in range"):
        stratified_sample(labels, splits, 60, seed=1, keep=[len(labels)])


def test_without_split_columns_labels_keep_positives():
    labels, _ = collection()
    chosen = stratified_sample(labels, np.zeros((len(labels), 0), np.uint8), 20, seed=0)
    assert labels[chosen].any(axis=0).all()


def test_record():
    labels, splits = collection(n_videos=40)
    ids = [f"v{i:02d}" for i in range(40)]
    chosen = stratified_sample(labels, splits, 0.25, seed=5)
    record = sample_record(chosen, ids, 0.25, 5)
    assert record["method"] == "iterative-stratification"
    assert record["n"] == 10 and record["of_videos"] == 40 and record["fraction"] == 0.25
    assert record["seed"] == 5 and record["requested"] == 0.25
    assert record["video_ids"] == [ids[i] for i in chosen]


@pytest.mark.parametrize(("text", "value"), [("200", 200), ("0.2", 0.2), ("20%", 0.2), ("1", 1)])
def test_parse_sample_size(text, value):
    assert parse_sample_size(text) == value


@pytest.mark.parametrize("text", ["0", "-3", "1.5", "abc", "", "0%", "150%"])
def test_parse_sample_size_rejects(text):
    with pytest.raises(UserError, match="--sample must be"):
        parse_sample_size(text)


def test_sample_count_rejects_bad_sizes():
    assert sample_count(0.001, 100) == 1
    for bad in (0, 101, 0.0, 1.5, True, "10"):
        with pytest.raises(UserError, match="sample"):
            sample_count(bad, 100)
    labels, splits = collection(n_videos=20)
    with pytest.raises(ValueError, match="splits must be"):
        stratified_sample(labels, splits[:10], 5)
    with pytest.raises(ValueError, match="only 0 and 1"):
        stratified_sample(labels * 2, splits, 5)
