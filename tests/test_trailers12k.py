"""Importing the reference's Trailers12k zarr features: a small store in the published layout
(one (clips, D) array per trailer id, zarr v3 and v2 formats) and an mtgc.csv, converted to a
real feature file that `verify_features` accepts; failures, bad CSVs and bad stores."""

import csv
import logging

import numpy as np
import pytest
import zarr

from probe.trailers12k import import_trailers12k, read_mtgc, store_sha256
from probe.transferability import score_feature_file
from vtl.errors import UserError
from vtl.features import FeatureFile, verify_features

GENRES = "action adventure comedy crime drama fantasy horror romance sci-fi thriller".split()
DIM = 16
N_TRAILERS = 12


def trailer_features(i):
    """Trailer i's clip embeddings: 1..8 clips; one trailer stored as float32, the rest float16."""
    rng = np.random.default_rng(i)
    clips = 1 + (i * 5) % 8
    dtype = np.float32 if i == 3 else np.float16
    return rng.normal(size=(clips, DIM)).astype(dtype)


def mid(i):
    return f"tt{1000000 + i:07d}"


def write_store(path, zarr_format=3, extra=True):
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    group.attrs["num_features"] = DIM
    for i in range(N_TRAILERS):
        if i == 7:  # listed in the CSV, missing from the store
            continue
        group.create_array(mid(i), data=trailer_features(i), chunks=(4, DIM))
    if extra:  # in the store, not in the CSV
        group.create_array("tt9999999", data=np.ones((2, DIM), np.float16))
    return path


def csv_rows():
    rows = [["mid", *GENRES, "split0", "split1", "split2"]]
    for i in range(N_TRAILERS):
        labels = [(7 * i + 3 * j) % 5 < 2 for j in range(len(GENRES))]
        splits = [i % 3, (i + 1) % 3, (i + 2) % 3]
        rows.append([mid(i), *(int(v) for v in labels), *splits])
    return rows


def write_csv(path, rows):
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


@pytest.fixture
def reference(tmp_path):
    store = write_store(tmp_path / "trailers_k_toy_fps24_fpc24.zarr")
    labels = write_csv(tmp_path / "mtgc.csv", csv_rows())
    return store, labels


def test_import_round_trip(reference, tmp_path, caplog):
    store, labels = reference
    with caplog.at_level(logging.INFO):
        out = import_trailers12k(
            store,
            labels,
            tmp_path / "toy.h5",
            backbone="toy3d",
            pretrain="k400",
            kind="video",
            progress=False,
        )
    summary = verify_features(out)
    assert summary["videos"] == N_TRAILERS - 1 and summary["failures"] == 1
    table = read_mtgc(labels)
    with FeatureFile(out) as f:
        kept = [i for i in range(N_TRAILERS) if i != 7]
        assert f.video_ids == [mid(i) for i in kept]  # CSV order
        assert f.label_names == GENRES
        np.testing.assert_array_equal(f.labels, table.labels[kept])
        np.testing.assert_array_equal(f.splits, table.splits[kept])
        for v, i in enumerate(kept):
            expected = trailer_features(i)
            np.testing.assert_allclose(f.video_features(v), expected, rtol=1e-3, atol=1e-3)
            if expected.dtype == np.float16:  # stored as float16: bit-exact
                np.testing.assert_array_equal(f.video(v).features, expected)
            video = f.video(v)
            clips = len(expected)
            assert video.n_frames == 24 * clips and video.fps == 24.0
            np.testing.assert_array_equal(video.frames[:, 0], 24 * np.arange(clips))
            np.testing.assert_array_equal(video.frames[:, 1], 24 * np.arange(clips) + 23)
            np.testing.assert_array_equal(video.shots, [[0, 24 * clips - 1]])
        m = f.meta
        assert (m.backbone, m.family, m.pretrain, m.kind) == ("toy3d", "toy3d", "k400", "video")
        assert (m.feature_dim, m.frames_per_clip, m.clip_fps) == (DIM, 24, 24.0)
        assert m.shot_detector == "reference (imported)"
        assert m.weights == {"name": store.name, "sha256": store_sha256(store)}
        assert m.failures == [
            {"video_id": mid(7), "path": f"{store}/{mid(7)}", "reason": "not in the features store"}
        ]
        assert m.config["imported_from"] == str(store.resolve())
        assert m.config["ignored_store_arrays"] == 1
        assert m.config["store_attrs"] == {"num_features": DIM}
        assert m.config["frames"].startswith("synthetic")
    assert "1 of 12 trailers not imported" in caplog.text
    assert "ignoring 1 store arrays not listed in mtgc.csv" in caplog.text
    with out.with_suffix(".failures.csv").open() as handle:
        assert [row["video_id"] for row in csv.DictReader(handle)] == [mid(7)]
    # The imported file feeds the probe stage directly.
    scores = score_feature_file(out, split=0, methods=("logme", "hscore"))
    assert all(np.isfinite(v) for v in scores.values())


def test_zarr_v2_store_imports_identically(reference, tmp_path):
    store, labels = reference
    store2 = write_store(tmp_path / "v2.zarr", zarr_format=2)
    a = import_trailers12k(store, labels, tmp_path / "a.h5", progress=False)
    b = import_trailers12k(store2, labels, tmp_path / "b.h5", progress=False)
    with FeatureFile(a) as fa, FeatureFile(b) as fb:
        assert fa.video_ids == fb.video_ids
        np.testing.assert_array_equal(fa.read_features(), fb.read_features())
        # The hash covers content (keys, dtypes, shapes, values), not the on-disk format.
        assert fa.meta.weights["sha256"] == fb.meta.weights["sha256"]
    changed = write_store(tmp_path / "changed.zarr", extra=False)
    assert store_sha256(changed) != store_sha256(store)


def test_unusable_arrays_become_failures(tmp_path):
    store = write_store(tmp_path / "s.zarr", extra=False)
    group = zarr.open_group(str(store), mode="a")
    del group[mid(0)]
    group.create_array(mid(0), data=np.ones((3, DIM + 1), np.float16))  # wrong width
    del group[mid(1)]
    group.create_array(mid(1), data=np.full((2, DIM), 1e6, np.float32))  # inf in float16
    out = import_trailers12k(
        store, write_csv(tmp_path / "m.csv", csv_rows()), tmp_path / "o.h5", progress=False
    )
    with FeatureFile(out) as f:
        reasons = {x["video_id"]: x["reason"] for x in f.meta.failures}
        assert list(reasons) == [mid(0), mid(1), mid(7)]  # CSV order
        assert "expected (clips, 16)" in reasons[mid(0)]
        assert "float16" in reasons[mid(1)]
        assert f.n_videos == N_TRAILERS - 3
    verify_features(out)


def bad_csv(tmp_path, edit):
    rows = csv_rows()
    edit(rows)
    return write_csv(tmp_path / "bad.csv", rows)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda rows: rows[0].__setitem__(0, "movie"), r"row 1: missing column 'mid'"),
        (
            lambda rows: rows[2].__setitem__(3, "2"),
            r"row 3, column comedy: label '2' is not 0 or 1",
        ),
        (lambda rows: rows[4].__setitem__(12, "5"), r"row 5, column split1: split code '5'"),
        (lambda rows: rows[6].__setitem__(0, mid(0)), r"row 7, column mid: duplicate id"),
        (lambda rows: rows[3].pop(), r"row 4: 13 fields but the header has 14"),
        (
            lambda rows: (
                [r.pop() for r in rows] and [r.pop() for r in rows] and [r.pop() for r in rows]
            ),
            "no split column",
        ),
    ],
)
def test_bad_csv_is_a_user_error_naming_file_row_column(reference, tmp_path, edit, message):
    store, _ = reference
    path = bad_csv(tmp_path, edit)
    with pytest.raises(UserError, match=message) as error:
        import_trailers12k(store, path, tmp_path / "o.h5", progress=False)
    assert str(path) in str(error.value)
    assert not (tmp_path / "o.h5").exists()


def test_bad_store_and_arguments(reference, tmp_path):
    _, labels = reference
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x.npy").write_bytes(b"not zarr")
    with pytest.raises(UserError, match="plain: not a zarr group"):
        import_trailers12k(tmp_path / "plain", labels, tmp_path / "o.h5", progress=False)
    with pytest.raises(UserError, match="features store not found"):
        import_trailers12k(tmp_path / "nope.zarr", labels, tmp_path / "o.h5", progress=False)
    zarr.open_array(str(tmp_path / "array.zarr"), mode="w", shape=(2, 2), dtype="f4")
    with pytest.raises(UserError, match="array.zarr: not a zarr group"):
        import_trailers12k(tmp_path / "array.zarr", labels, tmp_path / "o.h5", progress=False)
    other = zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    other.create_array("tt0", data=np.ones((2, DIM), np.float16))
    with pytest.raises(UserError, match="no .clips, features. array for any trailer id"):
        import_trailers12k(tmp_path / "other.zarr", labels, tmp_path / "o.h5", progress=False)
    with pytest.raises(UserError, match="kind must be 'image' or 'video', got 'clip'"):
        import_trailers12k(reference[0], labels, tmp_path / "o.h5", kind="clip", progress=False)
    assert not (tmp_path / "o.h5").exists()
    assert read_mtgc(labels).mids == [mid(i) for i in range(N_TRAILERS)]
