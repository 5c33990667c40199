"""A damaged video through `extract run`: extracted with its concealed frames recorded (in the
file's `/videos/concealed` and as a warning row of the failures.csv, kept by a shard merge), or
failed as before with `--strict-decode`."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.test_decoder import damaged_video
from tests.test_one_owner import BIN, FAST, OUT_NAME  # the same quick `extract run`
from vtl.features import FeatureFile, verify_features
from vtl.manifest import read_manifest, write_manifest


@pytest.fixture(scope="module")
def manifest(demo_manifest, tmp_path_factory) -> Path:
    """Three demo videos and the cut one (third in manifest order)."""
    folder = tmp_path_factory.mktemp("damaged_extract")
    m = read_manifest(demo_manifest)
    ids = [*m.video_ids[:2], "cut", m.video_ids[2]]
    paths = [str(m.paths[0]), str(m.paths[1]), str(damaged_video(folder)), str(m.paths[2])]
    labels = np.eye(4, len(m.label_names), dtype=np.uint8)
    splits = np.array([[0], [1], [2], [0]], np.uint8)
    return write_manifest(folder / "m.csv", ids, paths, m.label_names, labels, splits)


def extract(manifest: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "extract", "run", "-m", manifest, "-o", out, *FAST, *extra],
        capture_output=True,
        text=True,
        timeout=900,
    )


def rows(feature_file: Path) -> list[dict]:
    with feature_file.with_suffix(".failures.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_damaged_video_is_extracted_with_its_concealed_frames(manifest, tmp_path):
    run = extract(manifest, tmp_path / "out")
    assert run.returncode == 0, run.stderr  # a warning is not a failure
    assert "1 of 60 frames concealed" in run.stderr and "Traceback" not in run.stderr
    path = tmp_path / "out" / OUT_NAME
    verify_features(path)
    with FeatureFile(path) as f:
        assert f.video_ids == [*read_manifest(manifest).video_ids]
        assert f.concealed.tolist() == [0, 0, 1, 0]
        assert f.n_frames[2] == 60
    [row] = rows(path)
    assert row["video_id"] == "cut" and row["status"] == "warning"
    assert row["reason"].startswith("1 of 60 frames concealed")


def test_strict_decode_fails_it_as_before(manifest, tmp_path):
    run = extract(manifest, tmp_path / "out", "--strict-decode")
    assert run.returncode == 1, run.stderr
    path = tmp_path / "out" / OUT_NAME
    with FeatureFile(path) as f:
        assert "cut" not in f.video_ids and not f.concealed.any()
    [row] = rows(path)
    assert row["video_id"] == "cut" and row["status"] == "failed"
    assert row["reason"] == "the data ends after 59 of its 60 frames (truncated or corrupt file)"


@pytest.mark.slow  # two shard processes; `make test-all` runs it
def test_a_shard_merge_keeps_the_warning(manifest, tmp_path):
    out = tmp_path / "out"
    for shard in ("0/2", "1/2"):
        run = extract(manifest, out, "--shard", shard)
        assert run.returncode == 0, run.stderr
    path = out / OUT_NAME
    with FeatureFile(path) as f:
        assert f.concealed.tolist() == [0, 0, 1, 0]
    assert [(r["video_id"], r["status"]) for r in rows(path)] == [("cut", "warning")]
