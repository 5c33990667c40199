"""Decoding: open a video once and read its frames in order, in bounded chunks.

decord decodes at the native size (its own resizer breaks `get_batch` for small sizes); every
consumer resizes in torch from the same decoded frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import decord
import numpy as np
import torch

from vtl.errors import UserError

# decord logs every ffmpeg complaint to stderr; we report failures ourselves, one line each.
decord.logging.set_level(decord.logging.QUIET)

# Bytes of decoded frames per chunk: a 1080p video gets small chunks, a 320x180 one large ones.
CHUNK_BYTES = 48 * 1024 * 1024
MAX_CHUNK_FRAMES = 128


class VideoError(UserError):
    """A video that cannot be used; the message is the reason (the caller adds the file)."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    n_frames: int
    fps: float
    height: int
    width: int

    @property
    def seconds(self) -> float:
        return self.n_frames / self.fps


def _open(path: Path) -> decord.VideoReader:
    if not path.is_file():
        raise VideoError("file not found")
    if path.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)")
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except (RuntimeError, decord.DECORDError) as error:
        raise VideoError(_reason(str(error))) from None


def _reason(message: str) -> str:
    """decord's C++ messages, turned into a short reason."""
    if "cannot find video stream" in message:
        return "no video stream (an audio-only file, or not a video)"
    if "Error reading" in message or "Invalid data" in message or "moov atom" in message:
        return "not a decodable video file (corrupt, truncated or another format)"
    first = message.strip().splitlines()[0] if message.strip() else "unknown decoder error"
    return first.split("ERROR ")[-1][:160]


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video's metadata (frame count, fps, size) without decoding frames."""
    path = Path(path)
    reader = _open(path)
    return _info(path, reader)


def _info(path: Path, reader: decord.VideoReader) -> VideoInfo:
    n_frames = len(reader)
    if n_frames == 0:
        raise VideoError("the video stream has no frames")
    fps = float(reader.get_avg_fps())
    if not np.isfinite(fps) or fps <= 0:
        raise VideoError(f"unusable frame rate {fps!r}")
    height, width = reader[0].shape[:2]
    return VideoInfo(path, n_frames, fps, int(height), int(width))


class VideoSource:
    """One opened video: its metadata and an in-order chunked frame iterator."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._reader = _open(self.path)
        self.info = _info(self.path, self._reader)

    def chunk_frames(self) -> int:
        frame_bytes = self.info.height * self.info.width * 3
        return int(max(1, min(MAX_CHUNK_FRAMES, CHUNK_BYTES // frame_bytes)))

    def chunks(self) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (first frame index, uint8 [T, H, W, 3]) for consecutive chunks of the video."""
        step = self.chunk_frames()
        for start in range(0, self.info.n_frames, step):
            stop = min(self.info.n_frames, start + step)
            try:
                batch = self._reader.get_batch(list(range(start, stop))).asnumpy()
            except (RuntimeError, decord.DECORDError) as error:
                reason = _reason(str(error))
                raise VideoError(f"decoding failed at frame {start}: {reason}") from None
            if batch.shape[0] != stop - start:
                raise VideoError(f"decoder returned {batch.shape[0]} frames for {stop - start}")
            yield start, torch.from_numpy(np.ascontiguousarray(batch))
