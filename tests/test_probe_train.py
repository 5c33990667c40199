"""Training and scoring on real (synthetic, learnable) feature files written by FeatureWriter."""

import csv

import numpy as np
import pytest
import torch

from probe.config import TrainConfig
from probe.data import open_probe_data, open_store, sliding_windows
from probe.evaluate import (
    evaluate_checkpoint,
    load_checkpoint,
    predict,
    video_scores,
    window_logits,
    write_predictions,
)
from probe.metrics import compute_metrics
from probe.synthetic import write_synthetic_features
from probe.train import run_grid, train_probe
from vtl.features import FeatureFile

# Two threads on a busy 2-core machine make tiny ops spin; one is faster and results are equal.
torch.set_num_threads(1)

FAST = dict(epochs=12, lr=3e-3, patience=6, scheduler_patience=3, threads=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two backbones of one dataset (same videos, labels, splits, clips; 16-d and 24-d)."""
    root = tmp_path_factory.mktemp("features")
    common = dict(n_videos=120, clips=(5, 50), n_labels=3, n_splits=2, dataset_seed=7, signal=0.3)
    a = write_synthetic_features(
        root / "a.h5", feature_dim=16, backbone_seed=1, backbone="synth-image", **common
    )
    b = write_synthetic_features(
        root / "b.h5",
        feature_dim=24,
        backbone_seed=2,
        backbone="synth-video",
        kind="video",
        **common,
    )
    return a, b


def chance_map(path, split=0):
    """mAP (percent) of a constant score: each label's AP is its positive rate."""
    data = open_probe_data([path])
    try:
        y = data.labels[data.subset(split, "test")]
    finally:
        data.close()
    return 100 * y.mean(axis=0).mean()


@pytest.mark.parametrize("model", ["divita", "linear", "mlp", "savg", "gru"])
def test_each_probe_beats_chance(files, model, tmp_path):
    result = train_probe([files[0]], TrainConfig(model=model, **FAST), tmp_path, progress=False)
    test = result["metrics"]["test"]
    # Chance (constant scores) is about 53 here; every probe lands well above 68.
    assert test["map"] > chance_map(files[0]) + 15, test
    assert set(test) == {"uap", "map", "wap", "sap"}
    assert result["features"][0]["backbone"] == "synth-image"
    assert result["features"][0]["weights"]["name"] == "synthetic-1"
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "checkpoint.pt").is_file()
    with open(tmp_path / "predictions.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["video_id", "label0", "label1", "label2"]
    assert len(rows) - 1 == result["videos"]["test"]
    # The file gives back the metrics exactly.
    with FeatureFile(files[0]) as f:
        truth = dict(zip(f.video_ids, f.labels, strict=True))
    y_true = np.array([truth[row[0]] for row in rows[1:]])
    y_score = np.array([[float(v) for v in row[1:]] for row in rows[1:]])
    assert 100 * compute_metrics(y_true, y_score)["uap"] == test["uap"]


def test_predictions_are_written_to_the_last_bit(tmp_path):
    """Six decimals tied confident scores (0.9999996 and 0.9999998 both read 1.000000), and the
    μAP recomputed from predictions.csv differed from the run's; every score reads back as the
    same float."""
    scores = np.array([[0.9999996, 1e-9], [0.9999998, 0.1 + 0.2], [0.5, 2**-40]])
    write_predictions(tmp_path / "p.csv", ["a", "b", "c"], ["x", "y"], scores)
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.reader(f))[1:]
    np.testing.assert_array_equal([[float(v) for v in row[1:]] for row in rows], scores)


def test_same_seed_same_weights_and_metrics(files, tmp_path):
    config = TrainConfig(model="divita", **FAST)
    first = train_probe([files[0]], config, tmp_path / "1", progress=False)
    second = train_probe([files[0]], config, tmp_path / "2", progress=False)
    other = train_probe(
        [files[0]],
        TrainConfig(model="divita", **{**FAST, "seed": 1}),
        tmp_path / "3",
        progress=False,
    )
    assert first["metrics"] == second["metrics"]
    assert first["training"][0]["val_loss"] == second["training"][0]["val_loss"]
    _, (m1,) = load_checkpoint(tmp_path / "1" / "checkpoint.pt")
    _, (m2,) = load_checkpoint(tmp_path / "2" / "checkpoint.pt")
    _, (m3,) = load_checkpoint(tmp_path / "3" / "checkpoint.pt")
    for key, value in m1.state_dict().items():
        assert torch.equal(value, m2.state_dict()[key]), key
    assert not torch.equal(m1.embed.weight, m3.embed.weight)
    assert first["training"][0]["val_loss"] != other["training"][0]["val_loss"]


def test_streaming_gives_the_same_run_as_memory(files):
    config = TrainConfig(model="divita", **{**FAST, "epochs": 3})
    in_memory = train_probe([files[0]], config, progress=False)
    config.memory_budget_gb = 0.0
    streamed = train_probe([files[0]], config, progress=False)
    assert in_memory["metrics"] == streamed["metrics"]
    assert in_memory["training"][0]["val_loss"] == streamed["training"][0]["val_loss"]


def test_late_fusion_averages_the_single_models_logits(files, tmp_path):
    config = TrainConfig(model="linear", **FAST)
    train_probe([files[0]], config, tmp_path / "a", progress=False)
    train_probe([files[1]], config, tmp_path / "b", progress=False)
    fused = train_probe(list(files), config, tmp_path / "ab", progress=False)
    assert len(fused["training"]) == 2  # one model per file

    # Each file's model in the fusion is that file's single model (same seed, same data) ...
    ckpt, (fa, fb) = load_checkpoint(tmp_path / "ab" / "checkpoint.pt")
    _, (sa,) = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    _, (sb,) = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert torch.equal(fa.cls.weight, sa.cls.weight) and torch.equal(fb.cls.weight, sb.cls.weight)

    # ... and the fused scores are the window logits of the two single models, averaged, then
    # sigmoid and mean over each video's windows.
    data = open_probe_data(list(files))
    try:
        videos = data.subset(0, "test")
        windows = sliding_windows(videos, data.clip_counts[0], 30)
        la = window_logits(sa, open_store(data, [0], 1.0), windows, 30, True)
        lb = window_logits(sb, open_store(data, [1], 1.0), windows, 30, True)
        expected = video_scores((la + lb) / 2, windows, videos)
        probability_mean = (
            video_scores(la, windows, videos) + video_scores(lb, windows, videos)
        ) / 2
        ids = [data.video_ids[i] for i in videos]
    finally:
        data.close()
    with open(tmp_path / "ab" / "predictions.csv") as f:
        rows = list(csv.reader(f))[1:]
    assert [r[0] for r in rows] == ids
    written = np.array([[float(v) for v in r[1:]] for r in rows])
    np.testing.assert_allclose(written, expected, atol=1e-6)
    assert np.abs(expected - probability_mean).max() > 1e-4  # logits, not probabilities

    # Scoring the fused checkpoint again reproduces the run's test metrics.
    again = evaluate_checkpoint(tmp_path / "ab" / "checkpoint.pt", list(files))
    assert again["metrics"] == pytest.approx(fused["metrics"]["test"])


def test_early_fusion_concatenates_features(files, tmp_path):
    config = TrainConfig(model="mlp", fusion="concat", **FAST)
    result = train_probe(list(files), config, tmp_path, progress=False)
    assert len(result["training"]) == 1
    ckpt, (model,) = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["feature_dims"] == [16 + 24] and model.bn.num_features == 40
    assert result["metrics"]["test"]["map"] > chance_map(files[0]) + 15


def test_predict_and_evaluate_a_checkpoint(files, tmp_path):
    result = train_probe([files[0]], TrainConfig(model="savg", **FAST), tmp_path, progress=False)
    ids, labels, scores = predict(tmp_path / "checkpoint.pt", [files[0]])
    assert len(ids) == 120 and labels == ["label0", "label1", "label2"]
    assert scores.shape == (120, 3) and ((scores >= 0) & (scores <= 1)).all()
    test = evaluate_checkpoint(tmp_path / "checkpoint.pt", [files[0]], subset="test")
    assert test["metrics"] == pytest.approx(result["metrics"]["test"])
    by_id = dict(zip(ids, scores, strict=True))
    np.testing.assert_allclose([by_id[v] for v in test["video_ids"]], test["scores"])


def test_grid_reports_mean_and_std(files, tmp_path):
    config = TrainConfig(model="linear", **{**FAST, "epochs": 3})
    summary = run_grid(
        [files[0]], config, splits=[0, 1], seeds=[0], out_dir=tmp_path, progress=False
    )
    values = [r["test"]["uap"] for r in summary["runs"]]
    assert [(r["split"], r["seed"]) for r in summary["runs"]] == [(0, 0), (1, 0)]
    assert summary["test"]["uap"]["mean"] == pytest.approx(np.mean(values))
    assert summary["test"]["uap"]["std"] == pytest.approx(np.std(values, ddof=1))
    assert (tmp_path / "summary.json").is_file()
    assert (tmp_path / "split1-seed0" / "metrics.json").is_file()
