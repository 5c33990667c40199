"""Extraction over broken and odd videos (`extract.fuzz`): a fast set of 36 files, every kind of
damage twice, mixed with clean videos. `bench/fuzz_extract.py --n 300` is the long run."""

from __future__ import annotations

from extract.fuzz import MUTATION_NAMES, WHOLE_FILE_CASES, run_fuzz
from vtl.features import verify_features
from vtl.manifest import read_manifest

OPTIONS = (
    "-b efficientnet_lite0 --segmentation fixed --shot-frames 40 --image-frames 1 --batch-size 8"
).split()


def test_every_fuzzed_file_is_extracted_or_fails_with_a_reason(demo_manifest, tmp_path):
    paths = read_manifest(demo_manifest).paths
    report = run_fuzz(
        tmp_path, paths[:2], paths[:3], n=36, seed=1, timeout=900, options=tuple(OPTIONS)
    )
    assert not report.hang and report.tracebacks == 0, report.stderr[-2000:]
    assert report.returncode == 0, report.stderr[-2000:]
    assert report.unaccounted == []
    assert all(r and "\n" not in r for r in report.failed.values())
    assert report.clean_identical
    kinds = report.by_mutation()
    assert set(kinds) == set(MUTATION_NAMES) | set(WHOLE_FILE_CASES)
    # valid videos in odd shapes are extracted: other sizes joined, a wrong extension
    for kind in ("joined_sizes", "wrong_extension"):
        files, extracted, _ = kinds[kind]
        assert extracted == files, kind
    for kind in ("random_bytes", "text", "truncate_tiny"):  # no video in there
        files, _, failed = kinds[kind]
        assert failed == files, kind
    verify_features(next((tmp_path / "mixed").rglob("*.h5")))
