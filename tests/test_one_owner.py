"""One owner per output, through the command lines: two `extract run` on one output at once give
one complete file and one line (or, with --wait, two successes); a killed holder's output is
taken over and completed; `probe matrix` holds its report folder the same way.

The lock is `vtl.lock.OutputLock` on each feature file's work folder (`.<stem>.work`) and on a
report folder; tests/test_lock.py tests the lock itself with bare processes.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from extract.merge import part_paths, try_merge
from probe.synthetic import write_synthetic_features
from vtl.features import FeatureFile, FeatureWriter
from vtl.lock import OutputLock, lock_path
from vtl.manifest import read_manifest, write_manifest

BIN = Path(sys.executable).parent
FAST = (
    "-b efficientnet_lite0 --segmentation fixed --shot-frames 40 --image-frames 1 "
    "--batch-size 8 --quiet"
).split()
OUT_NAME = Path("efficientnet") / "efficientnet_lite0.h5"


def work_folder(out: Path) -> Path:
    """The work folder of the feature file a run writes under `out` (what the run locks)."""
    final = out / OUT_NAME
    return final.with_name(f".{final.stem}.work")


def extract(manifest: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [BIN / "extract", "run", "-m", manifest, "-o", out, *FAST, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 900) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return process.returncode, err


def until(condition, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout:.0f} s for {what}"
        time.sleep(0.2)


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def manifest(demo_manifest, tmp_path_factory) -> Path:
    """Three demo videos: a run of a few seconds a video, long enough to meet a second run."""
    m = read_manifest(demo_manifest)
    folder = tmp_path_factory.mktemp("one_owner")
    ids = m.video_ids[:3]
    splits = np.tile(np.array([[0], [1], [2]], np.uint8), (1, m.splits.shape[1]))  # each split
    paths = [str(p) for p in m.paths[:3]]
    return write_manifest(folder / "m.csv", ids, paths, m.label_names, m.labels[:3], splits)


@pytest.fixture(scope="module")
def reference(manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    code, err = finish(extract(manifest, out))
    assert code == 0, err
    return out / OUT_NAME


def test_a_held_output_is_refused_before_any_model_loads(manifest, tmp_path):
    out = tmp_path / "out"
    with OutputLock(work_folder(out), command="the test"):
        started = time.monotonic()
        code, err = finish(extract(manifest, out), timeout=300)
        assert code == 2
        lines = error_lines(err)
        assert len(lines) == 1
        holder = f"another run is writing it (pid {os.getpid()} on host "
        assert lines[0].startswith(f"error: {work_folder(out)}: {holder}")
        assert lines[0].endswith("(the test)); wait for it, or pass --wait")
        assert time.monotonic() - started < 120
    assert not (out / OUT_NAME).exists()


def test_two_runs_at_once_give_one_file_and_one_line(
    manifest, reference, tmp_path, assert_same_features
):
    out = tmp_path / "out"
    runs = [extract(manifest, out), extract(manifest, out)]  # a job launched twice
    (code_a, err_a), (code_b, err_b) = (finish(run) for run in runs)
    assert sorted([code_a, code_b]) == [0, 2], err_a + err_b
    winner, loser = (runs[0], err_b) if code_a == 0 else (runs[1], err_a)
    lines = error_lines(loser)
    assert len(lines) == 1, loser
    assert f"another run is writing it (pid {winner.pid} on host " in lines[0]
    assert lines[0].endswith("; wait for it, or pass --wait")
    assert_same_features(out / OUT_NAME, reference)


@pytest.mark.slow  # two more extractions; `make test-all` runs it
def test_with_wait_both_runs_succeed(manifest, reference, tmp_path, assert_same_features):
    out = tmp_path / "out"
    runs = [extract(manifest, out, "--wait"), extract(manifest, out, "--wait")]
    for code, err in [finish(run) for run in runs]:
        assert code == 0, err
    assert_same_features(out / OUT_NAME, reference)
    assert not lock_path(work_folder(out)).exists()


@pytest.mark.slow  # two more extractions; `make test-all` runs it
def test_a_killed_holder_is_taken_over_and_the_run_resumes(
    manifest, reference, tmp_path, assert_same_features
):
    out = tmp_path / "out"
    first = extract(manifest, out)
    until(lambda: any(work_folder(out).glob("*.npz")), "the first video to be committed")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    assert lock_path(work_folder(out)).exists()  # left behind by the killed run
    code, err = finish(extract(manifest, out), timeout=900)  # no --wait: taken over at once
    assert code == 0, err
    assert_same_features(out / OUT_NAME, reference)
    assert not lock_path(work_folder(out)).exists()


@pytest.mark.slow  # keeps `make test` under its 15 minutes; `make test-all` runs it
def test_probe_matrix_holds_its_report_folder(lite0_features, tmp_path):
    report = tmp_path / "reports" / "lite0"
    options = "--models linear --splits 0 --scores none --quiet".split()
    command = [BIN / "probe", "matrix", "--features", lite0_features, "--out", report, *options]
    with OutputLock(report, command="the test"):
        run = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert run.returncode == 2
        lines = error_lines(run.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"error: {report}: another run is writing")
        waiting = subprocess.Popen(
            [*command, "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        time.sleep(5)
        assert waiting.poll() is None  # waits while the folder is held
    code, err = finish(waiting, timeout=600)
    assert code == 0, err
    assert (report / "matrix.md").exists()


def _parts(final: Path, count: int = 2) -> list[Path]:
    """A synthetic feature file cut into `count` shard part files of `final`."""
    whole = write_synthetic_features(
        final.parent / "whole.h5", n_videos=6, clips=(2, 3), n_labels=2, n_splits=1
    )
    parts = part_paths(final, count)
    with FeatureFile(whole) as f:
        for p, path in enumerate(parts):
            with FeatureWriter(path, f.meta, f.label_names, 1, part=(p, count)) as writer:
                for i in range(p, f.n_videos, count):
                    writer.add(dataclasses.replace(f.video(i), manifest_index=i))
    return parts


def test_the_merge_of_parts_is_left_to_the_shard_holding_it(tmp_path):
    final = tmp_path / "fam" / "model.h5"
    parts = _parts(final)
    with OutputLock(final):  # another shard is merging
        assert try_merge(final, 2) is None
    assert all(p.is_file() for p in parts) and not final.exists()
    assert try_merge(final, 2) == final  # free again: this shard merges
    assert not any(p.exists() for p in parts) and not lock_path(final).exists()
    with FeatureFile(final) as merged, FeatureFile(tmp_path / "fam" / "whole.h5") as whole:
        assert merged.video_ids == whole.video_ids


def test_a_merge_killed_midway_does_not_block_the_next(tmp_path):
    """The lock dies with its holder: a merge killed by SIGKILL leaves nothing to delete."""
    final = tmp_path / "fam" / "model.h5"
    _parts(final)
    code = (
        "import os, sys, signal\nfrom vtl.lock import OutputLock\n"
        "OutputLock(sys.argv[1]).acquire()\nos.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(final)], timeout=60)
    assert killed.returncode == -signal.SIGKILL and lock_path(final).exists()
    assert try_merge(final, 2) == final
