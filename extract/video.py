"""Decoding: open a video once and read its frames in order, in bounded chunks.

Frames are decoded with PyAV at the native size, in order, and converted to RGB by one reused
swscale context (pixel-identical to decord's frames; tests/test_extract.py compares them). Every
consumer resizes in torch from the same decoded frames. This module needs only PyAV and numpy:
the extraction runs it in a decoder process of its own (`extract.decoder`), which has no torch.

Why not decord here: decord 0.6's threaded decoder pushes one more packet each time its worker
has no frame ready yet, and the backlog of decoded frames it queues never shrinks before the end
of the file. When the models keep the CPU busy the worker falls behind and the queue grows with
the video: 1,400 queued frames (242 MB at 320x180) 100 s into a video, measured with memray
(bench/bench_scale.py, part 3). decord remains the random-access reader of the demo generator
and the tests' independent reference.

Three cases need more than reading frames in order (README, "Bad input"):

- Rotation metadata (a display matrix, as phones write): frames come out upright, each turned
  with `np.rot90` as ffmpeg's own autorotation would show it.
- Variable frame rate: frames are sampled on a constant-rate timeline at the video's average
  frame rate, each point of it showing the frame on screen at that time (timestamp-based), so
  clips span the intended seconds. Frame numbers (`/clips/frames`, `/videos/n_frames`) then
  count points of that timeline; for a constant-rate video the timeline is the video's own
  frames, untouched.
- Frame size changing mid-stream (segments of different resolutions joined, as capture tools and
  stream downloaders write them): every frame is scaled to the first frame's size, bicubic, as
  ffmpeg's scale filter does when it meets a new input size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from vtl.errors import UserError

# Bytes of decoded frames per chunk: a 1080p video gets small chunks, a 320x180 one large ones.
# Small chunks keep memory low: the pipeline frees frames a chunk at a time.
CHUNK_BYTES = 16 * 1024 * 1024
MAX_CHUNK_FRAMES = 32
# libavcodec threads per video (frame and slice threading); decoding is not the bottleneck next
# to the models, and more threads would take cores from them.
DECODE_THREADS = 2
# A frame start this far (in frame periods) past a timeline point still counts as on screen:
# timestamps are rounded to the stream's time base.
_TIMESTAMP_SLACK = 0.25
# Frame rates a real video has (a time-lapse at one frame a minute, a 1,000 fps camera); beyond
# them the container's rate is damaged.
MIN_FPS, MAX_FPS = 1 / 60, 1000.0


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


def _open(path: Path):
    # Damaged files carry damaged metadata too: undecodable text is replaced, not fatal.
    return av.open(str(path), metadata_errors="replace")


def _reason(message: str) -> str:
    """ffmpeg's messages, turned into a short reason."""
    if "cannot find video stream" in message or "no video stream" in message:
        return "no video stream (an audio-only file, or not a video)"
    corrupt = ("Error reading", "Invalid data", "moov atom", "Invalid argument")
    if any(text in message for text in corrupt):
        return "not a decodable video file (corrupt, truncated or another format)"
    if "Input/output error" in message:
        return "input/output error while reading (a damaged file, or a failing disk)"
    if "End of file" in message:
        return "the data ends or breaks before the last frame (truncated or corrupt file)"
    first = message.strip().splitlines()[0] if message.strip() else "unknown decoder error"
    return first.split("Error: ")[-1][:160]


class _Frames:
    """A video's frames with PyAV: timestamps from its packets, frames decoded in order (one
    colour converter reused for every frame) and turned upright by the display matrix."""

    def __init__(self, path: Path):
        self.path = path
        try:
            with _open(path) as container:
                if not container.streams.video:
                    raise VideoError("no video stream (an audio-only file, or not a video)")
                stream = container.streams.video[0]
                declared = stream.frames  # from the container's index; 0 when it has none
                base = float(stream.time_base) if stream.time_base else 0.0
                # (timestamp, shown) per packet; an edit list marks the packets not shown
                packets = [
                    (p.pts if p.pts is not None else p.dts, not p.is_discard)
                    for p in container.demux(stream)
                    if p.size
                ]
                rate = stream.average_rate
        except av.FFmpegError as error:
            raise VideoError(_reason(str(error))) from None
        if declared > len(packets):
            raise VideoError(
                f"the data ends after {len(packets)} of its {declared} frames "
                "(truncated or corrupt file)"
            )
        stamps = [stamp for stamp, shown in packets if shown]
        self.n_frames = len(stamps)
        self.fps = float(rate) if rate else 0.0
        if base and None not in stamps:
            self._starts = np.sort(np.array(stamps, np.float64)) * base
        else:  # no timestamps to go by: a constant rate
            self._starts = np.arange(self.n_frames) / (self.fps or 1.0)
        self.rotation = 0
        self._frames: Iterator[np.ndarray] | None = None
        self._next = 0  # index of the frame `_frames` yields next
        self._last: np.ndarray | None = None

    def starts(self) -> np.ndarray:
        return self._starts

    def _decoded(self) -> Iterator[np.ndarray]:
        converter = VideoReformatter()
        size = None  # the first frame's (width, height): every frame comes out at it
        with _open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type, stream.thread_count = "AUTO", DECODE_THREADS
            for frame in container.decode(stream):
                if size is None:
                    size = (frame.width, frame.height)
                    self.rotation = int(round(frame.rotation / 90.0)) * 90 % 360
                if (frame.width, frame.height) == size:
                    rgb = converter.reformat(frame, format="rgb24")
                else:  # a segment of another size: scale it as ffmpeg's scale filter would
                    rgb = converter.reformat(
                        frame, format="rgb24", width=size[0], height=size[1],
                        interpolation=Interpolation.BICUBIC,
                    )  # fmt: skip
                yield rgb.to_ndarray()

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
            raise VideoError(
                f"the decoder stopped after {self._next} of {self.n_frames} frames "
                "(truncated or corrupt file)"
            ) from None
        except av.FFmpegError as error:
            if self._next == 0:  # nothing decodes at all
                raise VideoError(_reason(str(error))) from None
            detail = " ".join(str(error).split()).split("] ")[-1][:120]
            raise VideoError(
                f"the stream breaks after {self._next} of {self.n_frames} frames (corrupt data: "
                f"{detail})"
            ) from None
        k = self.rotation // 90
        return np.ascontiguousarray(np.rot90(np.stack(out), k=k, axes=(1, 2)))


def timeline(starts: np.ndarray, fps: float) -> np.ndarray | None:
    """Source frame shown at each point of a constant-rate timeline at `fps` (one point per
    frame, from the first frame's start), or None when that is every frame in order (a
    constant frame rate)."""
    n = len(starts)
    points = starts[0] + np.arange(n) / fps
    shown = np.searchsorted(starts, points + _TIMESTAMP_SLACK / fps, side="right") - 1
    shown = np.clip(shown, 0, n - 1)
    return None if np.array_equal(shown, np.arange(n)) else shown


def header_frames(path: str | Path) -> int:
    """A video's frame count as its container header gives it (MP4: exact), else duration x
    rate, else 0; no demuxing or decoding, so that balancing shards reads little of each file."""
    try:
        with _open(path) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or 0
            if stream.frames:
                return int(stream.frames)
            if stream.duration and stream.time_base:
                return int(stream.duration * stream.time_base * rate)
            return int((container.duration or 0) / av.time_base * rate)
    except (av.FFmpegError, IndexError, OSError):
        return 0  # it fails fast wherever it goes


class VideoSource:
    """One opened video: its metadata and an in-order chunked frame iterator."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        _check_file(self.path)
        self._frames = _Frames(self.path)
        n_frames, fps = self._frames.n_frames, self._frames.fps
        if n_frames == 0:
            raise VideoError("the video stream has no frames")
        if not np.isfinite(fps) or fps <= 0:
            raise VideoError(f"unusable frame rate {fps!r}")
        if not MIN_FPS <= fps <= MAX_FPS:
            raise VideoError(f"implausible frame rate {fps:g} fps (a damaged header)")
        starts = self._frames.starts()
        self._shown = timeline(starts, fps) if np.all(np.diff(starts) > 0) else None
        height, width = self._frames.get(np.array([0])).shape[1:3]
        self.info = VideoInfo(
            self.path,
            n_frames,
            fps,
            int(height),
            int(width),
            rotation=self._frames.rotation,
            variable_rate=self._shown is not None,
        )

    def chunk_frames(self) -> int:
        frame_bytes = self.info.height * self.info.width * 3
        return int(max(1, min(MAX_CHUNK_FRAMES, CHUNK_BYTES // frame_bytes)))

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first frame index, uint8 [T, H, W, 3]) for consecutive chunks of the video."""
        step = self.chunk_frames()
        for start in range(0, self.info.n_frames, step):
            stop = min(self.info.n_frames, start + step)
            indices = np.arange(start, stop) if self._shown is None else self._shown[start:stop]
            batch = self._frames.get(indices)
            if batch.shape[0] != stop - start:
                raise VideoError(f"decoder returned {batch.shape[0]} frames for {stop - start}")
            yield start, np.ascontiguousarray(batch)
