"""What a video's container header says, without demuxing or decoding: read by both stages
(extraction balances its shards on it; `probe recommend` costs a whole collection with it)."""

from __future__ import annotations

from pathlib import Path

from vtl.manifest import special_file


def header_frames(path: str | Path) -> int:
    """A video's frame count as its container header gives it (MP4: exact), else duration x
    rate, else 0; no demuxing or decoding, so that reading it for thousands of files is cheap.
    A path that is no regular file (a pipe, a device) is never opened: 0."""
    import av  # here: the probe stage imports this module only to cost a collection

    if special_file(path) is not None:
        return 0
    try:
        with av.open(str(path), metadata_errors="replace") as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or 0
            if stream.frames:
                return int(stream.frames)
            if stream.duration and stream.time_base:
                return int(stream.duration * stream.time_base * rate)
            return int((container.duration or 0) / av.time_base * rate)
    except (av.FFmpegError, IndexError, OSError):
        return 0  # it fails fast wherever it goes
