"""The decoder process on its own (`extract.decoder`): failures of one video stay that video's."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from extract.decoder import DecodeFailed, Decoder, Failure
from vtl.manifest import read_manifest


@pytest.fixture(scope="module")
def videos(demo_manifest) -> list[tuple[int, Path]]:
    return list(enumerate(read_manifest(demo_manifest).paths[:3]))


def run(decoder: Decoder, act=lambda video, start: None) -> list:
    """What became of each video: its frame count, or its failure's reason."""
    out = []
    for item in decoder:
        if isinstance(item, Failure):
            out.append(item.reason)
            continue
        frames = 0
        try:
            for start, chunk, _ in item.chunks():
                act(item, start)
                frames += len(chunk)
            out.append(frames)
        except DecodeFailed as failed:
            out.append(str(failed))
    return out


def test_every_video_once_in_one_process(videos):
    with Decoder(videos, min_seconds=1.0) as decoder:
        got = run(decoder)
    assert all(isinstance(n, int) and n > 24 for n in got)
    assert decoder.started == 1 and decoder.opened == 3


def test_a_decoder_without_progress_fails_its_video_and_the_next_goes_on(videos):
    def freeze(video, start):
        if video.index == 1 and start == 0:  # frozen after its first chunk
            os.kill(video.decoder._process.pid, signal.SIGSTOP)

    started = time.monotonic()
    with Decoder(videos, min_seconds=1.0, stall=2.0) as decoder:
        got = run(decoder, freeze)
    assert isinstance(got[0], int) and isinstance(got[2], int)
    assert "made no progress for 2 s" in got[1]
    assert decoder.started == 2 and time.monotonic() - started < 60


def test_missing_and_too_short_videos_fail_without_stopping(videos, tmp_path):
    missing = (7, tmp_path / "missing.mp4")
    with Decoder([missing, *videos[:1]], min_seconds=1000.0) as decoder:
        got = run(decoder)
    assert got[0] == "file not found" and "shorter than one clip" in got[1]


def damaged_video(folder: Path) -> Path:
    """`cut.mp4` in `folder`: 60 frames of H.264 whose index promises 60 and whose data holds 59
    (the last sample cut off, as an unfinished download leaves it)."""
    import av
    import numpy as np

    from extract.encode import write_video

    clean = folder / "clean.mp4"
    frames = (np.full((48, 64, 3), 4 * i, np.uint8) for i in range(60))
    write_video(clean, frames, 24, container_options={"movflags": "faststart"})
    with av.open(str(clean)) as container:
        last = max(p.pos for p in container.demux(video=0) if p.size)
    cut = folder / "cut.mp4"
    cut.write_bytes(clean.read_bytes()[:last])
    return cut


def test_concealed_frames_are_reported_per_video(videos, tmp_path):
    """The decoder process says how many frames it concealed in each video's "end" message;
    with strict decoding the same file fails as before."""
    cut = damaged_video(tmp_path)
    todo = [videos[0], (5, cut)]
    concealed = []
    with Decoder(todo, min_seconds=1.0) as decoder:
        got = run(decoder, lambda video, start: concealed.append(video.concealed))
        assert got == [got[0], 60] and isinstance(got[0], int)
    assert concealed and set(concealed) == {0}  # known only once its chunks are consumed
    with Decoder(todo, min_seconds=1.0) as decoder:
        counts = []
        for item in decoder:
            for _ in item.chunks():
                pass
            counts.append(item.concealed)
    assert counts == [0, 1]
    with Decoder(todo, min_seconds=1.0, strict=True) as decoder:
        got = run(decoder)
    assert isinstance(got[0], int)
    assert got[1] == "the data ends after 59 of its 60 frames (truncated or corrupt file)"
