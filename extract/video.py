"""Decoding: open a video once and read its frames in order, in bounded chunks.

decord decodes at the native size (its own resizer breaks `get_batch` for small sizes); every
consumer resizes in torch from the same decoded frames.

Two cases need more than decord's frame-by-index view (README, "Bad input"):

- Rotation metadata (a display matrix, as phones write): frames come out upright. decord 0.6
  mishandles +-90 degree matrices (wrong shapes, failing `get_batch`), so a rotated video is
  decoded with PyAV instead and each frame is turned with `torch.rot90`, as ffmpeg's own
  autorotation would show it.
- Variable frame rate: frames are sampled on a constant-rate timeline at the video's average
  frame rate, each point of it showing the frame on screen at that time (timestamp-based), so
  clips span the intended seconds. Frame numbers (`/clips/frames`, `/videos/n_frames`) then
  count points of that timeline; for a constant-rate video the timeline is the video's own
  frames, untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import decord
import numpy as np
import torch

from vtl.errors import UserError

# decord logs every ffmpeg complaint to stderr; we report failures ourselves, one line each.
decord.logging.set_level(decord.logging.QUIET)

# Bytes of decoded frames per chunk: a 1080p video gets small chunks, a 320x180 one large ones.
CHUNK_BYTES = 48 * 1024 * 1024
MAX_CHUNK_FRAMES = 128
# A frame start this far (in frame periods) past a timeline point still counts as on screen:
# timestamps are rounded to the stream's time base.
_TIMESTAMP_SLACK = 0.25


class VideoError(UserError):
    """A video that cannot be used; the message is the reason (the caller adds the file)."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    n_frames: int
    fps: float
    height: int
    width: int
    rotation: int = 0  # degrees counter-clockwise applied to show the frames upright
    variable_rate: bool = False  # frames resampled to a constant-rate timeline

    @property
    def seconds(self) -> float:
        return self.n_frames / self.fps


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise VideoError("file not found")
    if path.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)")


def _reason(message: str) -> str:
    """decord's and ffmpeg's messages, turned into a short reason."""
    if "cannot find video stream" in message or "no video stream" in message:
        return "no video stream (an audio-only file, or not a video)"
    if "Error reading" in message or "Invalid data" in message or "moov atom" in message:
        return "not a decodable video file (corrupt, truncated or another format)"
    if "av_read_frame failed" in message or "End of file" in message:
        return "the data ends or breaks before the last frame (truncated or corrupt file)"
    first = message.strip().splitlines()[0] if message.strip() else "unknown decoder error"
    return first.split("ERROR ")[-1].split("Error: ")[-1][:160]


def read_rotation(path: str | Path) -> int:
    """Degrees (a multiple of 90, counter-clockwise) to turn the frames by to show them upright,
    from the stream's display matrix (0 when there is none).

    Opens the file with PyAV and decodes its first frame, so it also rejects, with a short
    reason, a file that is not a video at all; decord would log its own lines about those.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError("no video stream (an audio-only file, or not a video)")
            for frame in container.decode(video=0):
                return int(round(frame.rotation / 90.0)) * 90 % 360
    except av.FFmpegError as error:
        raise VideoError(_reason(str(error))) from None
    raise VideoError("the video stream has no decodable frames")


class _DecordFrames:
    """Frames by index with decord (every video without rotation metadata)."""

    def __init__(self, path: Path):
        try:
            self._reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        except (RuntimeError, decord.DECORDError) as error:
            raise VideoError(_reason(str(error))) from None
        self.n_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps()) if self.n_frames else 0.0

    def starts(self) -> np.ndarray:
        return self._reader.get_frame_timestamp(np.arange(self.n_frames))[:, 0].astype(np.float64)

    def get(self, indices: np.ndarray) -> np.ndarray:
        try:
            return self._reader.get_batch(list(indices)).asnumpy()
        except (RuntimeError, decord.DECORDError) as error:
            raise VideoError(_reason(str(error))) from None


class _PyAVFrames:
    """Frames in order with PyAV, turned upright (videos with rotation metadata)."""

    def __init__(self, path: Path, rotation: int):
        self.path, self.rotation = path, rotation
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                base = float(stream.time_base)
                pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
                rate = stream.average_rate
        except (av.FFmpegError, IndexError) as error:
            raise VideoError(_reason(str(error))) from None
        self.n_frames = len(pts)
        self._starts = np.array(pts, np.float64) * base
        self.fps = float(rate) if rate else 0.0
        self._frames: Iterator | None = None
        self._next = 0  # index of the frame `_frames` yields next
        self._last: np.ndarray | None = None

    def starts(self) -> np.ndarray:
        return self._starts

    def _decoded(self) -> Iterator[np.ndarray]:
        with av.open(str(self.path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Frames at non-decreasing indices (repeats allowed), decoding forward only."""
        if self._frames is None or (len(indices) and indices[0] < self._next - 1):
            self._frames, self._next, self._last = self._decoded(), 0, None
        out = []
        try:
            for index in indices:
                while self._next <= index:
                    self._last = next(self._frames)
                    self._next += 1
                out.append(self._last)
        except StopIteration:
            raise VideoError(f"the decoder stopped after {self._next} frames") from None
        except av.FFmpegError as error:
            raise VideoError(_reason(str(error))) from None
        k = self.rotation // 90
        return np.ascontiguousarray(np.rot90(np.stack(out), k=k, axes=(1, 2)))


def _open(path: Path) -> _DecordFrames | _PyAVFrames:
    _check_file(path)
    rotation = read_rotation(path)
    return _PyAVFrames(path, rotation) if rotation else _DecordFrames(path)


def timeline(starts: np.ndarray, fps: float) -> np.ndarray | None:
    """Source frame shown at each point of a constant-rate timeline at `fps` (one point per
    frame, from the first frame's start), or None when that is every frame in order (a
    constant frame rate)."""
    n = len(starts)
    points = starts[0] + np.arange(n) / fps
    shown = np.searchsorted(starts, points + _TIMESTAMP_SLACK / fps, side="right") - 1
    shown = np.clip(shown, 0, n - 1)
    return None if np.array_equal(shown, np.arange(n)) else shown


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video's metadata (frame count, fps, size) without decoding the whole video."""
    return VideoSource(path).info


class VideoSource:
    """One opened video: its metadata and an in-order chunked frame iterator."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._frames = _open(self.path)
        n_frames, fps = self._frames.n_frames, self._frames.fps
        if n_frames == 0:
            raise VideoError("the video stream has no frames")
        if not np.isfinite(fps) or fps <= 0:
            raise VideoError(f"unusable frame rate {fps!r}")
        starts = self._frames.starts()
        self._shown = timeline(starts, fps) if np.all(np.diff(starts) > 0) else None
        height, width = self._frames.get(np.array([0])).shape[1:3]
        self.info = VideoInfo(
            self.path,
            n_frames,
            fps,
            int(height),
            int(width),
            rotation=getattr(self._frames, "rotation", 0),
            variable_rate=self._shown is not None,
        )

    def chunk_frames(self) -> int:
        frame_bytes = self.info.height * self.info.width * 3
        return int(max(1, min(MAX_CHUNK_FRAMES, CHUNK_BYTES // frame_bytes)))

    def chunks(self) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (first frame index, uint8 [T, H, W, 3]) for consecutive chunks of the video."""
        step = self.chunk_frames()
        for start in range(0, self.info.n_frames, step):
            stop = min(self.info.n_frames, start + step)
            indices = np.arange(start, stop) if self._shown is None else self._shown[start:stop]
            try:
                batch = self._frames.get(indices)
            except VideoError as error:
                raise VideoError(f"decoding failed at frame {start}: {error}") from None
            if batch.shape[0] != stop - start:
                raise VideoError(f"decoder returned {batch.shape[0]} frames for {stop - start}")
            yield start, torch.from_numpy(np.ascontiguousarray(batch))
