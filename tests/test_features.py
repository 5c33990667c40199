"""The HDF5 feature format: write -> read round trip, atomic writes, and `verify` on good and
corrupted files."""

import shutil

import h5py
import numpy as np
import pytest

from probe.synthetic import synthetic_meta
from vtl.errors import FeatureFileError
from vtl.features import FeatureFile, FeatureWriter, VideoFeatures, verify_features


def meta():
    """8-d features of a named backbone, with weights and a failure to read back."""
    return synthetic_meta(
        8,
        backbone="efficientnet_lite0",
        weights={"name": "w.pth", "sha256": "ab" * 32},
        config={"frames_per_clip": 24},
        failures=[{"video_id": "x", "path": "/x.mp4", "reason": "empty"}],
    )


def video(video_id, n_clips, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    starts = np.arange(n_clips) * 24
    last = 24 * n_clips + 4
    two_shots = n_clips >= 3
    return VideoFeatures(
        video_id=video_id,
        n_frames=24 * n_clips + 5,
        fps=25.0,
        features=rng.normal(size=(n_clips, dim)).astype(np.float32),
        frames=np.stack([starts, starts + 23], axis=1),
        shot=np.array([0] * 2 + [1] * (n_clips - 2)) if two_shots else np.zeros(n_clips, np.int32),
        shots=np.array([[0, 47], [48, last]]) if two_shots else np.array([[0, last]]),
        labels=np.array([seed % 2, 1], np.uint8),
        splits=np.array([seed % 3, 0], np.uint8),
    )


@pytest.fixture
def feature_file(tmp_path):
    videos = [video("v0", 3, seed=0), video("v1", 1, seed=1), video("v2", 5, seed=2)]
    path = tmp_path / "f.h5"
    with FeatureWriter(path, meta(), ["a", "b"], n_splits=2) as writer:
        for v in videos:
            writer.add(v)
    return path, videos


def test_round_trip(feature_file):
    path, videos = feature_file
    with FeatureFile(path) as f:
        assert f.video_ids == ["v0", "v1", "v2"]
        np.testing.assert_array_equal(f.offsets, [0, 3, 4, 9])
        assert f.n_clips == 9 and f.feature_dim == 8
        assert f.label_names == ["a", "b"]
        assert f.meta.weights["sha256"] == "ab" * 32
        assert f.meta.failures[0]["reason"] == "empty"
        for i, v in enumerate(videos):
            np.testing.assert_allclose(f.video_features(i), v.features, atol=2e-3)  # float16
            got = f.video(i)
            np.testing.assert_array_equal(got.frames, v.frames)
            np.testing.assert_array_equal(got.shots, v.shots)
            np.testing.assert_array_equal(got.labels, v.labels)
        assert f.dataset("clips/features").dtype == np.float16


def test_verify_summary(feature_file):
    path, _ = feature_file
    summary = verify_features(path)
    assert summary["videos"] == 3 and summary["clips"] == 9 and summary["feature_dim"] == 8
    assert summary["backbone"] == "efficientnet_lite0" and summary["failures"] == 1


def test_failed_write_leaves_nothing_at_final_path(tmp_path):
    path = tmp_path / "f.h5"
    with pytest.raises(ValueError):
        with FeatureWriter(path, meta(), ["a", "b"], n_splits=2) as writer:
            writer.add(video("v0", 2))
            writer.add(video("bad", 2, dim=4))  # wrong feature_dim
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def corrupt(path, how):
    with h5py.File(path, "r+") as h5:
        if how == "offsets":
            h5["videos/offset"][2] = 2  # no longer non-decreasing
        elif how == "nan":
            h5["clips/features"][4, 0] = np.nan
        elif how == "frames":
            h5["clips/frames"][0, 1] = 10_000
        elif how == "shot":
            h5["clips/shot"][3] = 5
        elif how == "labels":
            h5["labels"][0, 0] = 3
        elif how == "splits":
            h5["splits"][0, 0] = 7
        elif how == "attr":
            del h5.attrs["weights"]
        elif how == "dataset":
            del h5["clips/frames"]
        elif how == "format":
            h5.attrs["format"] = "something-else"
        elif how == "dim":
            h5.attrs["feature_dim"] = 99
        elif how == "duplicate":
            h5["videos/id"][1] = "v0"


@pytest.mark.parametrize(
    "how, message",
    [
        ("offsets", "videos/offset"),
        ("nan", "non-finite feature values .NaN or infinity. in video .v"),
        ("frames", "past its video's end"),
        ("shot", "shot index"),
        ("labels", "/labels"),
        ("splits", "/splits"),
        ("attr", "attribute 'weights' is missing"),
        ("dataset", "/clips/frames is missing"),
        ("format", "not a vtl feature file"),
        ("dim", "feature_dim attribute 99"),
        ("duplicate", "duplicate video ids"),
    ],
)
def test_verify_catches_corruption(feature_file, how, message):
    path, _ = feature_file
    corrupt(path, how)
    with pytest.raises(FeatureFileError, match=message) as info:
        verify_features(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_and_foreign_files(feature_file, tmp_path):
    path, _ = feature_file
    truncated = tmp_path / "truncated.h5"
    data = path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(FeatureFileError, match="truncated.h5"):
        verify_features(truncated)
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(FeatureFileError, match="not a readable HDF5 file"):
        FeatureFile(text)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h5:
        h5["x"] = np.zeros(3)
    with pytest.raises(FeatureFileError, match="not a vtl feature file"):
        FeatureFile(foreign)
    with pytest.raises(FeatureFileError, match="not found"):
        FeatureFile(tmp_path / "missing.h5")


def test_part_files_carry_manifest_index(tmp_path):
    path = tmp_path / "p.h5"
    v = video("v0", 2)
    v.manifest_index = 7
    with FeatureWriter(path, meta(), ["a", "b"], n_splits=2, part=(1, 3)) as writer:
        writer.add(v)
    with FeatureFile(path) as f:
        assert f.part == "1/3"
        assert f.manifest_index.tolist() == [7]
    copy = tmp_path / "copy.h5"
    shutil.copy(path, copy)
    assert verify_features(copy)["videos"] == 1


def test_damaged_hdf5_structures_are_one_line(feature_file, tmp_path):
    """Zeroed signatures of the file's group structures (a local heap, a symbol table node, a
    B-tree: what a zeroed disk block does) make h5py raise RuntimeError, not OSError: one
    "damaged feature file" line, not an unexpected error (exit 70) as before."""
    path, _ = feature_file
    data = path.read_bytes()
    for signature in (b"HEAP", b"SNOD", b"TREE"):
        damaged = bytearray(data)
        at = data.index(signature)
        damaged[at : at + 4] = bytes(4)
        broken = tmp_path / f"{signature.decode().lower()}.h5"
        broken.write_bytes(bytes(damaged))
        with pytest.raises(FeatureFileError, match="damaged feature file") as info:
            FeatureFile(broken)
        assert str(broken) in str(info.value) and "\n" not in str(info.value)


def test_a_flipped_bit_in_labels_or_splits_fails_the_read(feature_file, tmp_path):
    """The index datasets are checksummed like the clips: a label's 0 flipped to 1 (or a video
    moved from train to val) is a value verify cannot tell from a real one; its checksum can."""
    path, _ = feature_file
    for name in ("labels", "splits", "videos/offset"):
        with h5py.File(path, "r") as h5:
            at = h5[name].id.get_chunk_info(0).byte_offset
        damaged = bytearray(path.read_bytes())
        damaged[at] ^= 1
        broken = tmp_path / "flipped.h5"
        broken.write_bytes(bytes(damaged))
        # (named as the clips' checksums name theirs; before, "damaged feature file")
        with pytest.raises(FeatureFileError, match=f"corrupted data in /{name} .*re-extract"):
            FeatureFile(broken)


def test_a_zeroed_global_heap_is_one_line_not_a_hang(feature_file, tmp_path, monkeypatch):
    """HDF5 reads a global heap collection (where the variable-length strings live: every
    attribute, the video ids) whose first object header is zeroed round that object forever,
    holding the GIL; before, `probe` and `extract verify` hung on such a file. The metadata is
    read in a child process first, which is stopped after METADATA_SECONDS."""
    import time

    import vtl.features

    path, _ = feature_file
    damaged = bytearray(path.read_bytes())
    heap = damaged.index(b"GCOL")
    damaged[heap + 16 : heap + 32] = bytes(16)  # the first object: index 0, size 0
    broken = tmp_path / "heap.h5"
    broken.write_bytes(bytes(damaged))
    monkeypatch.setattr(vtl.features, "METADATA_SECONDS", 3.0)
    started = time.monotonic()
    with pytest.raises(FeatureFileError, match="hangs reading its metadata") as info:
        FeatureFile(broken)
    assert time.monotonic() - started < 30
    assert str(broken) in str(info.value) and "\n" not in str(info.value)
    assert verify_features(path)["videos"] == 3  # the undamaged file reads as before


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [("splits", 3, "0 .train., 1 .val. or 2 .test."), ("labels", 2, "0 .negative. or 1")],
)
def test_a_label_or_split_code_out_of_range_is_refused_by_every_reader(
    feature_file, name, value, words
):
    """Another tool's file with split code 3 (or 255): `probe train` left those videos out of
    every subset without a word, where only `extract verify` refused the file; now opening it
    is one line naming the video, and our writer never writes one."""
    path, videos = feature_file
    with h5py.File(path, "r+") as h5:
        h5[name][1, 1] = value
    with pytest.raises(FeatureFileError, match=f"/{name} holds {value} for video 'v1' .*{words}"):
        FeatureFile(path)
    bad = videos[0]
    setattr(bad, name, np.array([0, value], np.uint8))
    with pytest.raises(ValueError, match=f"/{name} holds {value} for video 'v0'"):
        with FeatureWriter(path.with_name("g.h5"), meta(), ["a", "b"], n_splits=2) as writer:
            writer.add(bad)


def test_the_writer_refuses_values_float16_cannot_hold(tmp_path):
    """1e6 is finite in float32 and infinite in float16: the writer stored inf (with a numpy
    warning), and every reader then refused the file as 'non-finite'."""
    big = video("v0", 2)
    big.features = big.features * 1e6
    with pytest.raises(ValueError, match="v0: features hold .* beyond float16's range"):
        with FeatureWriter(tmp_path / "f.h5", meta(), ["a", "b"], n_splits=2) as writer:
            writer.add(big)
    assert not (tmp_path / "f.h5").exists()
