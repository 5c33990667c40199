"""The feature format's optional parts: class logits, concealed-frame counts, the sample record,
and warning rows in `<name>.failures.csv`; files without them read as before."""

import csv
import dataclasses

import h5py
import numpy as np
import pytest

from vtl.errors import FeatureFileError
from vtl.features import (
    FeatureFile,
    FeatureMeta,
    FeatureWriter,
    VideoFeatures,
    verify_features,
    write_failures,
)

DIM, CLASSES = 6, 5


def meta(**changes) -> FeatureMeta:
    values = {
        "backbone": "b",
        "family": "f",
        "pretrain": "in1k",
        "kind": "image",
        "feature_dim": DIM,
        "frames_per_clip": 24,
        "clip_fps": 24.0,
        "input_size": 224,
        "weights": {"name": "w.pth", "sha256": "0" * 64},
        "shot_detector": "fixed-48",
    }
    return FeatureMeta(**{**values, **changes})


def video(video_id: str, clips: int, seed: int, logits: bool, concealed: int = 0):
    rng = np.random.default_rng(seed)
    starts = np.arange(clips) * 24
    return VideoFeatures(
        video_id=video_id,
        n_frames=24 * clips,
        fps=24.0,
        features=rng.normal(size=(clips, DIM)),
        frames=np.stack([starts, starts + 23], axis=1),
        shot=np.zeros(clips, np.int32),
        shots=np.array([[0, 24 * clips - 1]]),
        labels=np.array([1, 0], np.uint8),
        splits=np.array([seed % 3], np.uint8),
        logits=rng.normal(size=(clips, CLASSES)) if logits else None,
        concealed=concealed,
    )


def write(path, videos, logit_names=None, **meta_changes):
    with FeatureWriter(path, meta(**meta_changes), ["a", "b"], 1, logit_names=logit_names) as w:
        for v in videos:
            w.add(v)
    return path


def test_logits_concealed_and_sample_round_trip(tmp_path):
    names = [f"class {k}" for k in range(CLASSES)]
    videos = [video("v0", 3, 0, True, concealed=2), video("v1", 2, 1, True)]
    sample = {"method": "iterative-stratification", "seed": 0, "video_ids": ["v0", "v1"]}
    path = write(tmp_path / "f.h5", videos, names, sample=sample)
    with FeatureFile(path) as f:
        assert f.has_logits and f.logit_names == names
        for i, v in enumerate(videos):
            np.testing.assert_array_equal(f.video_logits(i), v.logits.astype(np.float16))
            assert f.video(i).concealed == v.concealed
        np.testing.assert_array_equal(f.concealed, [2, 0])
        assert f.meta.sample == sample
    summary = verify_features(path)
    assert summary["logits"] == CLASSES and summary["concealed"] == 2 and summary["sample"] == 2


def test_files_without_the_optional_parts_read_as_before(tmp_path):
    path = write(tmp_path / "f.h5", [video("v0", 3, 0, False)])
    with FeatureFile(path) as f:
        assert not f.has_logits and f.logit_names is None
        np.testing.assert_array_equal(f.concealed, [0])
        assert f.meta.sample == {}
        with pytest.raises(FeatureFileError, match="re-extract with --logits"):
            f.read_logits()
    with h5py.File(path, "r") as h5:  # nothing is written for a clean, full, logit-free run
        assert "clips/logits" not in h5 and "videos/concealed" not in h5
    assert verify_features(path)["logits"] == 0


def test_writer_refuses_missing_or_misshapen_logits(tmp_path):
    names = [f"c{k}" for k in range(CLASSES)]
    with pytest.raises(ValueError, match="logits None"):
        write(tmp_path / "a.h5", [video("v0", 3, 0, False)], names)
    bad = dataclasses.replace(video("v0", 3, 0, True), logits=np.zeros((2, CLASSES)))
    with pytest.raises(ValueError, match=r"expected \(3, 5\)"):
        write(tmp_path / "b.h5", [bad], names)
    assert not (tmp_path / "a.h5").exists() and not (tmp_path / "b.h5").exists()


def test_verify_refuses_non_finite_logits(tmp_path):
    path = write(tmp_path / "f.h5", [video("v0", 3, 0, True)], [f"c{k}" for k in range(CLASSES)])
    with h5py.File(path, "r+") as h5:
        data = h5["clips/logits"][:]
        data[1, 2] = np.inf
        del h5["clips/logits"]
        h5.create_dataset("clips/logits", data=data)
        h5["clips/logits"].attrs["names"] = [f"c{k}" for k in range(CLASSES)]
    with pytest.raises(FeatureFileError, match="logits holds NaN or infinite"):
        verify_features(path)
    with FeatureFile(path) as f:  # the scores' read (NCE, LEEP) names the video
        assert f.video_mean(0).shape == (f.feature_dim,)
        with pytest.raises(FeatureFileError, match=r"non-finite logit values .* 'v0' \(clip row 1"):
            f.video_mean(0, "logits")


def test_failures_csv_has_failed_and_warning_rows(tmp_path):
    path = tmp_path / "f.h5"
    failed = [{"video_id": "x", "path": "/x.mp4", "reason": "empty file (0 bytes)"}]
    warned = [{"video_id": "y", "path": "/y.mp4", "reason": "3 frames concealed"}]
    written = write_failures(path, failed, warned)
    with written.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["video_id"], r["status"]) for r in rows] == [("x", "failed"), ("y", "warning")]
    assert write_failures(path, []) is None and not written.exists()
