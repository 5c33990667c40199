"""Writing videos: the one encoder the demo collection, the fuzz corpus, the tests and the
benchmarks share (PyAV, any container and codec FFmpeg was built with).

Frames stream in (a generator is fine: a 10-minute benchmark video is never held whole), each
an `input_format` array: ``rgb24`` (H, W, 3) or ``yuv420p`` planes (H * 3 // 2, W). Presentation
times are frame numbers at `fps`. The file is written under a temporary name and renamed
(`vtl.atomic`), so a video is complete or absent. With `bitexact`, no encoder version or time
stamp enters the file, so the same frames and options give the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vtl.atomic import replacing


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: int | Fraction,
    *,
    format: str = "mp4",
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    input_format: str = "rgb24",
    options: Mapping[str, str] | None = None,
    container_options: Mapping[str, str] | None = None,
    bitexact: bool = False,
) -> int:
    """Encode `frames` to `path`; returns the number of frames written.

    Args:
        frames: arrays in `input_format`, all of one size (even width and height for 4:2:0).
        fps: frames per second (an int or a Fraction such as 30000/1001).
        format, codec, pix_fmt: the container, the encoder and its pixel format.
        options, container_options: encoder and muxer options (FFmpeg's names).
        bitexact: leave encoder versions and creation times out of the file.
    """
    path = Path(path)
    rate = Fraction(fps)
    muxer = dict(container_options or {})
    if bitexact:
        muxer["fflags"] = "+bitexact"
    written = 0
    with replacing(path) as tmp:
        with av.open(str(tmp), "w", format=format, options=muxer) as container:
            stream = None
            for image in frames:
                if stream is None:
                    height, width = _size(image, input_format)
                    stream = container.add_stream(codec, rate=rate, options=dict(options or {}))
                    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
                    stream.time_base = 1 / rate
                    if bitexact:
                        stream.codec_context.flags |= av.codec.context.Flags.bitexact
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=input_format)
                frame.pts = written
                container.mux(stream.encode(frame))
                written += 1
            if stream is None:
                raise ValueError(f"{path}: no frames to write")
            container.mux(stream.encode(None))
    return written


def _size(image: np.ndarray, input_format: str) -> tuple[int, int]:
    if input_format == "yuv420p":
        return image.shape[0] * 2 // 3, image.shape[1]
    return image.shape[0], image.shape[1]
