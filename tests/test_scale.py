"""Scale and survive: shards under torchrun and SLURM, resume after SIGKILL, clean SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from extract.pipeline import ExtractConfig, run_extraction
from extract.video import VideoSource
from tests.test_bad_input import pattern_video
from vtl.errors import UserError
from vtl.features import FeatureFile
from vtl.headers import fill_unknown, header_frames
from vtl.manifest import read_manifest, write_manifest
from vtl.shards import assign_shards, resolve_shard

BIN = Path(sys.executable).parent
FAST = "--segmentation fixed --shot-frames 40 --image-frames 1 --batch-size 8 --quiet".split()
FAST_CONFIG = ExtractConfig(segmentation="fixed", shot_frames=40, image_frames=1, batch_size=8)


def copy_manifest(manifest: Path, out: Path, n: int) -> Path:
    m = read_manifest(manifest)
    splits = np.array([[0], [1], [2]] * n, np.uint8)[:n]
    paths = [str(p) for p in m.paths[:n]]
    return write_manifest(
        out / "m.csv", m.video_ids[:n], paths, m.label_names, m.labels[:n], splits
    )


@pytest.fixture(scope="module")
def manifest(demo_manifest, tmp_path_factory) -> Path:
    return copy_manifest(demo_manifest, tmp_path_factory.mktemp("scale"), n=6)


@pytest.fixture(scope="module")
def reference(manifest, tmp_path_factory) -> Path:
    """An uninterrupted run of the same command. (A subprocess, like the runs it is compared
    with: CPU kernels round differently with another thread count, and tests in this process
    may have changed torch's.)"""
    out = tmp_path_factory.mktemp("reference")
    subprocess.run(extract_command(manifest, out), check=True)
    return out / "efficientnet" / "efficientnet_lite0.h5"


def extract_command(manifest: Path, out: Path, *extra: str) -> list[str]:
    return [
        str(BIN / "extract"),
        "run",
        "-m",
        str(manifest),
        "-b",
        "efficientnet_lite0",
        "-o",
        str(out),
        *FAST,
        *extra,
    ]


def wait_for_commits(folder: Path, count: int, process: subprocess.Popen, timeout=300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(folder.glob("*.npz"))) >= count:
            return
        if process.poll() is not None:
            pytest.fail(f"extraction ended before {count} commits: {process.stderr.read()}")
        time.sleep(0.02)
    pytest.fail("no progress")


def interrupt(
    manifest: Path, out: Path, commits: int, sig: signal.Signals
) -> tuple[subprocess.Popen, Path]:
    """Start an extraction into `out` and send it `sig` once `commits` videos are committed;
    return the process and its work folder."""
    work = out / "efficientnet" / ".efficientnet_lite0.work"
    process = subprocess.Popen(extract_command(manifest, out), stderr=subprocess.PIPE, text=True)
    wait_for_commits(work, commits, process)
    process.send_signal(sig)
    return process, work


def test_resume_after_sigkill_gives_the_same_arrays(
    manifest, reference, tmp_path, assert_same_features
):
    out = tmp_path / "out"
    process, work = interrupt(manifest, out, 2, signal.SIGKILL)
    process.wait()
    done_before = len(list(work.glob("*.npz")))
    assert 2 <= done_before < 6 and not (out / "efficientnet" / "efficientnet_lite0.h5").exists()

    # a changed configuration is refused, not mixed in
    changed = subprocess.run(
        extract_command(manifest, out, "--frames-per-clip", "16"), capture_output=True, text=True
    )
    assert changed.returncode == 2 and "another configuration" in changed.stderr

    rerun = subprocess.run(extract_command(manifest, out), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert not work.exists()
    assert_same_features(reference, out / "efficientnet" / "efficientnet_lite0.h5")


def test_sigterm_stops_after_the_current_video_and_says_how_to_resume(
    manifest, reference, tmp_path, assert_same_features
):
    out = tmp_path / "out"
    process, work = interrupt(manifest, out, 1, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "rerun the same command to resume" in stderr and "Traceback" not in stderr
    assert 1 <= len(list(work.glob("*.npz"))) < 6
    rerun = subprocess.run(extract_command(manifest, out), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert_same_features(reference, out / "efficientnet" / "efficientnet_lite0.h5")


def decoder_process(parent: int, timeout: float = 120) -> int:
    """The pid of the decoder process that extraction process `parent` started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmdline = (stat.parent / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == parent and b"extract.decoder" in cmdline:
                return int(stat.parent.name)
        time.sleep(0.05)
    pytest.fail("no decoder process")


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.mark.slow  # keeps `make test` under its 15 minutes; `make test-all` runs it
def test_sigterm_while_decoding_is_stuck_ends_within_30_s(manifest, tmp_path):
    """The decoder stops making progress (SIGSTOP: as stuck as a codec spinning or a read that
    never returns); SIGTERM still ends the run within 30 s, with the resume hint, and takes the
    decoder process with it."""
    out = tmp_path / "out"
    process = subprocess.Popen(extract_command(manifest, out), stderr=subprocess.PIPE, text=True)
    decoder = decoder_process(process.pid)
    wait_for_commits(out / "efficientnet" / ".efficientnet_lite0.work", 1, process)
    os.kill(decoder, signal.SIGSTOP)
    time.sleep(2)  # the frames already sent run out: the run now waits on a stuck decoder
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - started < 30
    assert process.returncode == 130
    assert "rerun the same command to resume" in stderr and "Traceback" not in stderr
    deadline = time.monotonic() + 10
    while not gone(decoder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gone(decoder)


def test_a_crashed_or_stalled_decoder_fails_one_video_and_the_run_goes_on(
    manifest, reference, tmp_path
):
    """The decoder process crashes (SIGSEGV) in one video and stalls in another (SIGSTOP, past
    --video-timeout): each is that video's failure with its reason, a new decoder process takes
    the videos after it, and the others are extracted as in an undisturbed run."""
    out = tmp_path / "out"
    work = out / "efficientnet" / ".efficientnet_lite0.work"
    process = subprocess.Popen(
        extract_command(manifest, out, "--video-timeout", "3"), stderr=subprocess.PIPE, text=True
    )
    wait_for_commits(work, 1, process)
    os.kill(decoder_process(process.pid), signal.SIGSEGV)
    wait_for_commits(work, 3, process)
    os.kill(decoder_process(process.pid), signal.SIGSTOP)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr  # some videos failed
    assert "Traceback" not in stderr
    path = out / "efficientnet" / "efficientnet_lite0.h5"
    with FeatureFile(path) as f, FeatureFile(reference) as ref:
        reasons = [x["reason"] for x in f.meta.failures]
        assert len(reasons) == 2 and f.n_videos == 4, reasons
        assert any("killed by SIGSEGV" in r for r in reasons)
        assert any("timed out" in r and "--video-timeout" in r for r in reasons)
        for i, video_id in enumerate(f.video_ids):
            j = ref.video_ids.index(video_id)
            np.testing.assert_array_equal(f.video(i).features, ref.video(j).features)


@pytest.mark.slow
def test_torchrun_two_processes_merge_to_the_single_process_file(
    manifest, tmp_path, assert_same_features
):
    # torchrun gives each worker one thread; CPU kernels round differently with another thread
    # count, so the single-process reference runs with one thread too.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(extract_command(manifest, tmp_path / "single"), env=env)
    assert single.returncode == 0
    out = tmp_path / "out"
    run = subprocess.run(
        [
            str(BIN / "torchrun"),
            "--standalone",
            "--nproc-per-node=2",
            "--no-python",
            *extract_command(manifest, out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    merged = out / "efficientnet" / "efficientnet_lite0.h5"
    assert merged.is_file() and not list(merged.parent.glob("*.part-*"))
    assert_same_features(tmp_path / "single" / "efficientnet" / "efficientnet_lite0.h5", merged)


def test_slurm_array_shards_merge_to_the_single_process_file(
    manifest, tmp_path, monkeypatch, assert_same_features
):
    single = run_extraction(
        manifest, "efficientnet_lite0", tmp_path / "single", FAST_CONFIG, progress=False
    ).files["efficientnet_lite0"]
    out = tmp_path / "out"
    seconds = []  # each part's embedding and shared seconds (the last run merges, removing them)
    for task in (7, 8, 9):  # an array 7-9: three shards, whatever the first task id
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
        monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "7")
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
        result = run_extraction(manifest, "efficientnet_lite0", out, FAST_CONFIG, progress=False)
        part = result.files["efficientnet_lite0"]
        assert part.name == f"efficientnet_lite0.part-{task - 7}-of-3.h5"
        if part.is_file():
            with FeatureFile(part) as f:
                seconds.append((f.meta.cost["embed_seconds"], f.meta.cost["shared_seconds"]))
    merged = result.merged["efficientnet_lite0"]
    assert_same_features(single, merged)
    # The merged file's cost is the parts' together, as a single run's covers all its videos.
    with FeatureFile(single) as one, FeatureFile(merged) as f:
        for key in ("videos", "clips"):
            assert f.meta.cost[key] == one.meta.cost[key] == (6 if key == "videos" else one.n_clips)
        for key, i in (("embed_seconds", 0), ("shared_seconds", 1)):
            assert f.meta.cost[key] > sum(s[i] for s in seconds) > 0


def test_shard_resolution_and_balance():
    assert resolve_shard("1/4").index == 1
    assert resolve_shard(None, {"RANK": "1", "WORLD_SIZE": "2"}).source == "torchrun"
    slurm = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}
    assert (resolve_shard(None, slurm).index, resolve_shard(None, slurm).count) == (2, 4)
    assert resolve_shard(None, {}).count == 1
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(UserError, match="shard"):
            resolve_shard(bad)
    # balanced by frames, not by count: one long video against many short ones
    lengths = [1000, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100]
    assignment = assign_shards(lengths, 2)
    loads = [sum(n for n, s in zip(lengths, assignment, strict=True) if s == k) for k in (0, 1)]
    assert sorted(loads) == [1000, 1000]
    assert assign_shards(lengths, 2) == assignment  # deterministic


def test_shards_balance_on_header_frame_counts(demo_manifest, tmp_path):
    """Shards are balanced on frame counts read from each file's header, without decoding: on
    MP4 they are the exact counts; a file that is no video weighs 0 (it fails fast anywhere)."""
    for path in read_manifest(demo_manifest).paths[:4]:
        assert header_frames(path) == VideoSource(path).info.n_frames > 0
    (tmp_path / "notes.mp4").write_text("not a video")
    assert header_frames(tmp_path / "notes.mp4") == header_frames(tmp_path / "missing.mp4") == 0
    # A raw H.264 stream (a camera's .h264) has no index and no duration: its count is unknown,
    # and it weighs the known videos' mean, neither nothing nor a guess.
    raw = pattern_video(tmp_path / "cam.h264", n=30, format="h264")
    assert header_frames(raw) is None and VideoSource(raw).info.n_frames == 30
    assert fill_unknown([100, None, 0, 300], 1.0) == ([100, 200.0, 0, 300], 1)
    assert fill_unknown([None, 0], 7.0) == ([7.0, 0], 1)


def test_merge_refuses_parts_of_different_runs(manifest, tmp_path):
    from extract.merge import merge_parts
    from vtl.errors import FeatureFileError

    a = run_extraction(
        manifest, "efficientnet_lite0", tmp_path / "a", FAST_CONFIG, shard="0/2", progress=False
    ).files["efficientnet_lite0"]
    other = ExtractConfig(**{**FAST_CONFIG.__dict__, "frames_per_clip": 16})
    b = run_extraction(
        manifest, "efficientnet_lite0", tmp_path / "b", other, shard="1/2", progress=False
    ).files["efficientnet_lite0"]
    with pytest.raises(FeatureFileError, match=r"part-1-of-2.h5: frames_per_clip differs"):
        merge_parts([a, b], tmp_path / "merged.h5")
    with pytest.raises(FeatureFileError, match="not exactly shards"):
        merge_parts([a], tmp_path / "merged.h5")
    assert not (tmp_path / "merged.h5").exists()
    shutil.rmtree(tmp_path / "a")


def test_a_damaged_failures_csv_of_a_part_does_not_stop_the_merge(tmp_path):
    """The warning rows (concealed frames) a merge carries over come from the parts'
    failures.csv: one that is not text is left out with a warning (before, UnicodeDecodeError)."""
    from extract.merge import _warnings

    good, bad = tmp_path / "a.part-0-of-2.h5", tmp_path / "a.part-1-of-2.h5"
    good.with_suffix(".failures.csv").write_text(
        "video_id,path,reason,status\nv,/v.mp4,1 of 60 frames concealed,warning\n"
    )
    bad.with_suffix(".failures.csv").write_bytes(b"\xff\xfe\x00garbage\x89")
    assert [row["video_id"] for row in _warnings([good, bad])] == ["v"]


def test_a_sample_run_keeps_an_interrupted_full_runs_videos(
    manifest, reference, tmp_path, assert_same_features
):
    """A full run killed after 3 videos, then a sample of 2 into the same --out: the sample's
    run took what it needed and deleted the work folder with the other committed videos, which
    the full run then decoded again. Now they are kept, and the full run decodes only the rest."""
    out = tmp_path / "out"
    process, work = interrupt(manifest, out, 3, signal.SIGKILL)
    process.wait()
    committed = len(list(work.glob("*.npz")))
    sample = subprocess.run(
        extract_command(manifest, out, "--sample", "2"), capture_output=True, text=True
    )
    assert sample.returncode == 0, sample.stderr
    assert "of an interrupted run over more videos kept in" in sample.stderr, sample.stderr
    assert len(list(work.glob("*.npz"))) >= committed
    full = subprocess.run(extract_command(manifest, out), capture_output=True, text=True)
    assert full.returncode == 0, full.stderr
    assert not work.exists()
    assert_same_features(reference, out / "efficientnet" / "efficientnet_lite0.h5")
