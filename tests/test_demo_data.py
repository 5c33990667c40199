"""The demo collection: real footage in, valid manifest and decodable, reproducible videos out."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import decord
import numpy as np
import pytest

from extract.demo_data import (
    CATEGORY_LABELS,
    LABEL_NAMES,
    MIN_VIDEOS,
    load_shot_pool,
    make_demo_data,
)
from vtl.manifest import read_manifest

N = MIN_VIDEOS  # the smallest valid collection keeps the tests fast


def _digests(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "notes.txt")
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _shots(folder: Path) -> dict[str, list[dict[str, str]]]:
    shots: dict[str, list[dict[str, str]]] = {}
    with (folder / "shots.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            shots.setdefault(row["video_id"], []).append(row)
    return shots


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    # Someone else's file must survive; a stale demo video of a larger run must not.
    (out / "notes.txt").write_text("keep me")
    (out / "videos").mkdir()
    (out / "videos" / "demo_099.mp4").write_bytes(b"stale")
    make_demo_data(out, n_videos=N, seed=0, progress=False)
    return out


def test_manifest_is_valid_and_videos_decode(demo: Path) -> None:
    manifest = read_manifest(demo / "manifest.csv")
    assert len(manifest) == N
    assert manifest.label_names == list(LABEL_NAMES)
    assert manifest.splits.shape == (N, 3)
    assert (demo / "notes.txt").read_text() == "keep me"
    assert not (demo / "videos" / "demo_099.mp4").exists()
    shots = _shots(demo)
    for video_id, path in zip(manifest.video_ids, manifest.paths, strict=True):
        reader = decord.VideoReader(str(path), num_threads=1)
        assert reader[0].shape == (180, 320, 3)
        assert reader.get_avg_fps() in (24.0, 25.0)
        assert len(reader) == int(shots[video_id][-1]["last_frame"]) + 1
        assert 4.0 <= len(reader) / reader.get_avg_fps() <= 8.5


def test_labels_follow_the_shots_and_splits_cover_every_label(demo: Path) -> None:
    manifest = read_manifest(demo / "manifest.csv")
    shots = _shots(demo)
    for v, video_id in enumerate(manifest.video_ids):
        present = {label for row in shots[video_id] for label in CATEGORY_LABELS[row["category"]]}
        expected = [int(name in present) for name in LABEL_NAMES]
        assert manifest.labels[v].tolist() == expected, video_id
        if any(row["source"].startswith("bigbuckbunny") for row in shots[video_id]):
            assert manifest.labels[v, LABEL_NAMES.index("animation")] == 1
    assert manifest.labels.any(axis=0).all() and not manifest.labels.all(axis=0).any()
    for k in range(manifest.splits.shape[1]):
        for part in (0, 2):  # every label has positives to train on and to score
            assert manifest.labels[manifest.splits[:, k] == part].any(axis=0).all()


def test_shots_show_their_recorded_footage(demo: Path) -> None:
    """Every recorded hard cut is a visible jump, and the middle frame of every footage shot
    is nearest to the footage that shots.csv names (so the labels describe what is on screen)."""
    footage = [p for p in load_shot_pool() if p.fps is not None]
    small = {p.name: p.frames[:, :, ::4, ::4].float().numpy() for p in footage}  # 45x80
    for video_id, rows in _shots(demo).items():
        video = decord.VideoReader(str(demo / "videos" / f"{video_id}.mp4"), num_threads=1)
        frames = video.get_batch(list(range(len(video)))).asnumpy().astype(np.float32)
        steps = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
        for row in rows:
            first, last = int(row["first_frame"]), int(row["last_frame"])
            if row["transition"] == "cut":
                assert steps[first - 1] > 3 * np.median(steps), (video_id, row)
            if row["source"] in small:
                middle = frames[(first + last) // 2, ::4, ::4].transpose(2, 0, 1)
                distance = {
                    name: np.abs(clip - middle).mean(axis=(1, 2, 3)).min()
                    for name, clip in small.items()
                }
                nearest = min(distance, key=distance.get)
                # Overlapping windows of one real shot share frames: compare the source files.
                assert nearest.split("[")[0] == row["source"].split("[")[0], (video_id, row)


@pytest.mark.slow  # keeps `make test` under its 15 minutes; `make test-all` runs it
def test_same_seed_same_bytes_other_seed_other_collection(demo: Path, tmp_path: Path) -> None:
    make_demo_data(tmp_path / "again", n_videos=N, seed=0, progress=False)
    assert _digests(tmp_path / "again") == _digests(demo)
    make_demo_data(tmp_path / "other", n_videos=N, seed=1, progress=False)
    other = _digests(tmp_path / "other")
    assert other.keys() == _digests(demo).keys()
    assert all(other[name] != digest for name, digest in _digests(demo).items())


def test_bad_arguments_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"n_videos must be at least {MIN_VIDEOS}"):
        make_demo_data(tmp_path, n_videos=MIN_VIDEOS - 1)
    with pytest.raises(ValueError, match="seed"):
        make_demo_data(tmp_path, n_videos=N, seed=-1)
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file"):
        make_demo_data(tmp_path / "file", n_videos=N)
