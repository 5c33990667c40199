"""Decoding: open a video once and read its frames in order, in bounded chunks.

Frames are decoded with PyAV at the native size (the display size for non-square pixels), in
order, and converted to RGB by the libavfilter chain ffmpeg's command line runs (`_RgbChain`):
pixel-identical to `ffmpeg -i VIDEO -f rawvideo -pix_fmt rgb24` in every pixel format (and to
decord's frames where decord's older FFmpeg agrees; tests/test_extract.py compares them). Every
backbone resizes in torch from the same decoded frames. The shot detector's 48x27 frames
(`small=True`) are made from each decoded picture by the same chain, as the TransNetV2
package's `predict_video` has the ffmpeg command line make them.
This module needs only PyAV and numpy:
the extraction runs it in a decoder process of its own (`extract.decoder`), which has no torch.

Why not decord here: decord 0.6's threaded decoder pushes one more packet each time its worker
has no frame ready yet, and the backlog of decoded frames it queues never shrinks before the end
of the file. When the models keep the CPU busy the worker falls behind and the queue grows with
the video: 1,400 queued frames (242 MB at 320x180) 100 s into a video, measured with memray
(bench/bench_scale.py, part 3). decord remains the random-access reader of the demo generator
and the tests' independent reference.

The video is the stream ffmpeg would pick, never cover art (`vtl.headers.video_stream`), and its
frame rate is one over its frames' spacing when they are evenly spaced, else what the header
declares (`frame_rate`). Six cases need more than reading frames in order (README, "Bad input"):

- Rotation metadata (a display matrix, as phones write): frames come out upright, turned and,
  where the matrix mirrors (a front camera's), flipped as ffmpeg's own autorotation shows them
  (`_orientation`).
- Variable frame rate: frames are brought to a constant rate exactly as ffmpeg's command line
  (`ffmpeg -i VIDEO -f rawvideo`, which TransNetV2's `predict_video` reads) brings them, at
  ffmpeg's guess of the rate, each frame repeated over its time on screen and dropped where
  the rate is lower than its own (`constant_rate`), so clips span the intended seconds and the
  shot detector sees ffmpeg's frames; as there, a video that starts after its file's audio
  begins at the file's start, its first frame repeated (`_origin`). Frame numbers
  (`/clips/frames`, `/videos/n_frames`) count frames of that timeline; for a constant-rate
  video starting with its file it is the video's own frames.
- Frame size changing mid-stream (segments of different resolutions joined, as capture tools and
  stream downloaders write them): every frame is scaled to the first frame's size, bicubic, as
  ffmpeg's scale filter does when it meets a new input size.
- Non-square pixels (a sample aspect ratio, as DVD and broadcast sources have: 720x480 at 32:27
  is shown 853x480): frames are brought to their display size, the height kept and the width
  scaled (bicubic, in the same swscale call as the colour conversion), as ffmpeg's
  `scale=iw*sar:ih` and every player show them; `VideoInfo` gives the display size.
- A stream that starts mid-GOP (a broadcast capture, a file cut with `tail -c`): the packets
  before its first keyframe, an open GOP's pictures that reference the part cut away, and an
  intra-refresh stream's pictures before its refresh completes decode to nothing; they are no
  part of the video, which starts at its first shown frame as ffmpeg and players show it
  (`_head`), rather than frames lost to conceal.
- Damage (a packet the codec cannot decode, frames the index promises but the data lacks): decoded
  around, as players conceal it, within a budget (`conceal_budget`). Packets are decoded one by one,
  so one bad packet does not end the stream. A frame that cannot be decoded is replaced by the frame
  before it on screen, in its own place (found from the frames' times, since with frame threads a
  codec reports an error a packet or two late); damage before the first good frame repeats that
  frame. Frames the index promises but the data lacks are concealed where the times leave a gap,
  else at the end; a frame a codec drops without an error shows only as a frame short at the end,
  and is concealed there. `VideoSource.concealed` counts them all. Beyond the budget the video fails
  with the reason a strict decode gives, plus the budget; with `strict` (`--strict-decode`) the
  first damaged frame fails it, as before concealment existed. Clean videos decode the same either
  way.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vtl.errors import UserError
from vtl.headers import (
    MAX_FPS,
    MIN_FPS,
    animated_webp,
    declared_rate,
    index_missing,
    open_container,
    open_location,
    promised_frames,
    video_stream,
)
from vtl.manifest import special_file

# Bytes of decoded frames per chunk: a 1080p video gets small chunks, a 320x180 one large ones.
# Small chunks keep memory low: the pipeline frees frames a chunk at a time.
CHUNK_BYTES = 16 * 1024 * 1024
MAX_CHUNK_FRAMES = 32
# TransNetV2's input size (width, height): the package's `predict_video` asks ffmpeg for it.
SHOT_WIDTH, SHOT_HEIGHT = 48, 27
# libavcodec threads per video (frame and slice threading); decoding is not the bottleneck next
# to the models, and more threads would take cores from them.
DECODE_THREADS = 2
# A frame start this far (in frame periods) past a timeline point still counts as on screen:
# timestamps are rounded to the stream's time base.
_TIMESTAMP_SLACK = 0.25
# Where the container's timestamps may jump, a step forward longer than this (seconds) is a
# discontinuity (`close_jumps`: ffmpeg's `-dts_delta_threshold`), and so is a step back of more
# than BACK_SECONDS (`follow_on`: its tenth of a second); elsewhere a long step is a pause,
# shown as such.
JUMP_SECONDS = 10.0
BACK_SECONDS = 0.1
# Sample aspect ratios a real video has (anamorphic formats are within 1:2 and 2:1, 4:1 allows
# unusual lenses); beyond them the ratio is damaged metadata and pixels are taken as square.
MAX_SAMPLE_ASPECT = 4.0

# The concealment budget of one video (see `conceal_budget`). A concealed frame is a repeat of
# the last good one: a few of them change a clip's features less than its compression does, and
# a damaged download is worth keeping. A share of 2% (about 58 frames of a 2-minute trailer) is
# what a few damaged packets or a cut of the last frames cost; more is a broken file. A run of
# concealed frames longer than a second is no longer a stutter but a frozen picture, which
# would stand for that second's content in a clip. One frame is always allowed, so that a short
# video may lose its last frame (the commonest cut of a download).
CONCEAL_SHARE = 0.02
CONCEAL_RUN_SECONDS = 1.0
CONCEAL_MIN_FRAMES = 1


class VideoError(UserError):
    """A video that cannot be used; the message is the reason (the caller adds the file)."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    n_frames: int
    fps: float
    height: int
    width: int
    rotation: int = 0  # degrees counter-clockwise applied to show the frames upright (and a flip
    # where the display matrix mirrors)
    # frames resampled to a constant-rate timeline (a variable rate; or a video starting after
    # its file's audio, its first frame repeated from the file's start)
    variable_rate: bool = False
    # the stored pictures' pixel aspect (1: square pixels), applied to their width before the
    # turn: to the shown height where the turn transposes
    sample_aspect: float = 1.0

    @property
    def seconds(self) -> float:
        return self.n_frames / self.fps


def conceal_budget(n_frames: int, fps: float) -> tuple[int, int]:
    """(frames in all, frames in a row) a video of `n_frames` at `fps` may conceal: at most
    CONCEAL_SHARE of its frames (at least CONCEAL_MIN_FRAMES) and CONCEAL_RUN_SECONDS in a row."""
    total = max(CONCEAL_MIN_FRAMES, int(CONCEAL_SHARE * n_frames))
    in_a_row = max(1, int(round(CONCEAL_RUN_SECONDS * fps))) if np.isfinite(fps) else 1
    return total, min(total, in_a_row)


_UNREADABLE = (
    "permission denied: the user running the extraction cannot read the file or enter a folder "
    "above it (make them readable, e.g. chmod a+r the file and a+x its folders)"
)


def _check_file(path: Path) -> None:
    kind = special_file(path)  # never open one: a named pipe blocks, a device never ends
    if kind is not None:
        raise VideoError(f"is {kind}, not a video file")
    try:
        size = path.stat().st_size
    except PermissionError:
        raise VideoError(_UNREADABLE) from None
    except OSError:
        raise VideoError("file not found") from None
    if not path.is_file():
        raise VideoError("file not found")
    effective = os.access in os.supports_effective_ids  # the process's rights, as open's
    if not os.access(path, os.R_OK, effective_ids=effective):
        raise VideoError(_UNREADABLE)
    if size == 0:
        raise VideoError("empty file (0 bytes)")


# ffmpeg's errors that name no damage of their own, by PyAV's type: what they mean for a file.
_BY_TYPE = (
    (
        av.error.PatchWelcomeError,
        "uses a feature this FFmpeg does not implement (a damaged header, or a rare variant of "
        "its format: re-encode it if it plays elsewhere)",
    ),
    (
        av.error.DecoderNotFoundError,
        "no decoder for its codec in this FFmpeg build (re-encode it, e.g. to H.264)",
    ),
    (av.error.DemuxerNotFoundError, "not a container format this FFmpeg build reads"),
    # ENOMEM: a damaged size field (an MP4 index's entry count, a frame's dimensions) asks ffmpeg
    # for more memory than the machine has
    (
        av.error.MemoryError,
        "ffmpeg cannot allocate the memory its header asks for (a damaged size field in the "
        "header or index, or a frame too large for this machine)",
    ),
)


def _reason(error: av.FFmpegError) -> str:
    """ffmpeg's error, turned into a short reason (without its errno and the file's path: the
    failure record names the file)."""
    for kind, reason in _BY_TYPE:
        if isinstance(error, kind):
            return reason
    message = _message(error)
    if "cannot find video stream" in message or "no video stream" in message:
        return "no video stream (an audio-only file, or not a video)"
    corrupt = ("Error reading", "Invalid data", "moov atom", "Invalid argument")
    if any(text in message for text in corrupt):
        return "not a decodable video file (corrupt, truncated or another format)"
    if "Input/output error" in message:
        return "input/output error while reading (a damaged file, or a failing disk)"
    if "End of file" in message:
        return "the data ends or breaks before the last frame (truncated or corrupt file)"
    return (message or "unknown decoder error").split("Error: ")[-1][:160]


# `vtl.headers.index_missing`: ffmpeg opens such a file with an error, or (cut inside the
# index) without its streams
_INDEX_MISSING = (
    "an MP4 or QuickTime file whose index (its moov box, written at the end) is missing or cut "
    "off: a recording or download interrupted before it finished (truncated); ffmpeg reads no "
    "frame without it (untrunc can rebuild the index from an intact file of the same camera or "
    "encoder)"
)


def _open_reason(error: av.FFmpegError, path: Path) -> str:
    """`_reason` for an error while ffmpeg reads the file's header, before any frame: running
    out of data there is a file cut inside its header (or text that ffmpeg took for a format
    by its extension), not frames lost at the end; an MP4 or QuickTime file whose index is
    missing or cut off says so, and how it may be recovered."""
    if index_missing(path):
        return _INDEX_MISSING
    if isinstance(error, av.error.EOFError):
        return "the file ends inside its header (truncated, a damaged size field, or not a video)"
    if "Input/output error" in _message(error):
        return (
            "input/output error while reading its header (a truncated or damaged file, or a "
            "failing disk)"
        )
    return _reason(error)


def _message(error: av.FFmpegError) -> str:
    """ffmpeg's message on one line, without the errno and the path PyAV's str() adds."""
    return " ".join((error.strerror or str(error)).split())


class _Lost:
    """A packet of a shown frame that the codec could not decode: the error, and the frame's
    presentation time (None when the packet has none)."""

    __slots__ = ("error", "pts")

    def __init__(self, error: av.FFmpegError, pts: int | None) -> None:
        self.error = error
        self.pts = pts


# How many shown frames before the last one a decode after a failed flush seeks back to (more
# than a codec's reordering delay: its seek lands by decoding time).
FLUSH_SEEK_BACK = 48


# The demuxer's "try again" (EAGAIN) in a row before the data counts as broken: av_read_frame
# says it where no packet is ready yet, as the MPEG-TS demuxer does while it resyncs over
# damaged data; ffmpeg's own tools read on (each retry reads further into the file).
EAGAIN_TRIES = 1000


def _demux(container, stream) -> Iterator[av.Packet]:
    """`container.demux(stream)`, read on after the demuxer's "try again" (EAGAIN_TRIES in a row
    at most; then its error, as any other).

    PyAV (18) ends a demux with an empty packet per stream it was asked for, going over the
    streams the file has by then; where streams appeared while reading (MPEG-TS data that
    damage makes look like a new program), it reads past its own table of which to flush and
    may raise IndexError for a stream it never listed, at random. That comes after this
    stream's own empty packet (its index is lower): the demux has ended, so it ends here.

    A raw Dirac (VC-2) stream's end-of-sequence parse unit, which its parser passes as a packet
    of its own and which holds no picture, is left out: it is no frame of the video."""
    tries, flushed = 0, False
    dirac = stream.codec_context is not None and stream.codec_context.name == "dirac"
    while True:
        try:
            for packet in container.demux(stream):
                tries = 0
                flushed = not packet.size
                if dirac and packet.size == 13 and bytes(packet)[:5] == b"BBCD\x10":
                    continue
                yield packet
            return
        except av.error.BlockingIOError:
            tries += 1
            if tries > EAGAIN_TRIES:
                raise
        except IndexError:
            if not flushed:
                raise
            return


def _decode(
    container, stream, strict: bool, skip: frozenset[int] = frozenset(), location: str = ""
) -> Iterator[av.VideoFrame | _Lost]:
    """The stream's frames in decoding order, the packets `skip` names not decoded (`_head`'s
    packets before the first keyframe: indices among the packets with data); unless `strict`, a
    packet that fails to decode is a `_Lost` in their place (the codec goes on with the next
    packet), and data that breaks ends the stream (the codec's delayed frames flushed).

    A frame-threaded codec reports a packet's error a frame or two late: for one of the last
    packets (a file cut inside its last frame), at the flush, and the frames it still holds
    after the failed one cannot be received any more (a codec that is draining takes no further
    call). Given the `location` the container opened at, those frames are decoded again,
    single-threaded (`_after_failed_flush`)."""
    packets, index = _demux(container, stream), -1
    shown: list = []  # the good frames' times (None: unknown), for a decode again to go on

    def flushed(packet: av.Packet | None) -> Iterator[av.VideoFrame | _Lost]:
        try:
            frames = packet.decode() if packet is not None else stream.codec_context.decode(None)
        except av.FFmpegError as error:
            if location:
                yield _Lost(error, None)
                yield from _after_failed_flush(location, skip, shown)
            return
        shown.extend(frame.pts for frame in frames)
        yield from frames

    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError:  # the data breaks here: what it still promised is missing
            if strict:
                raise
            yield from flushed(None)
            return
        index += bool(packet.size)
        if packet.size and index in skip:
            continue
        if strict:
            yield from packet.decode()
            continue
        if not packet.size:  # the end of the stream: the codec's delayed frames
            yield from flushed(packet)
            continue
        try:
            frames = packet.decode()
        except av.FFmpegError as error:
            if not packet.is_discard:  # a frame to be shown is lost
                yield _Lost(error, packet.pts)
            continue
        shown.extend(frame.pts for frame in frames)
        yield from frames


def _after_failed_flush(
    location: str, skip: frozenset[int], shown: list
) -> Iterator[av.VideoFrame]:
    """The frames a frame-threaded codec held when its flush failed, decoded again
    single-threaded (errors surface at their own packet there): those after the `shown` ones.
    Where their times are known, from the keyframe before the `FLUSH_SEEK_BACK`-th last of them
    (a seek: a long video is not decoded twice; a seek lands by decoding time, which B-frames
    put before the shown time), unless the first frame decoded there is already a later one;
    then, and where times are unknown (by count), from the start. Frames it loses too are what
    the data lacks: the caller's count conceals them."""
    times = sorted(t for t in shown if t is not None)
    by_time = bool(times) and len(times) == len(shown)
    last = times[-1] if by_time else None
    for start in ([times[-min(FLUSH_SEEK_BACK, len(times))]] if by_time else []) + [None]:
        with open_location(location) as container:
            stream = video_stream(container)
            stream.thread_count = 1
            if start is not None:
                try:
                    container.seek(start, stream=stream, backward=True)
                except av.FFmpegError:
                    continue
            # the packets' indices change with a seek: `skip` is for the start only
            decoded = _decode(container, stream, False, skip if start is None else frozenset())
            frames = (frame for frame in decoded if not isinstance(frame, _Lost))
            if start is not None:
                first = next(frames, None)
                if first is None or first.pts is None or first.pts > last:
                    continue  # it began after frames that are needed: from the start
                frames = itertools.chain([first], frames)
            passed = 0
            for frame in frames:
                if by_time:
                    keep = frame.pts is not None and frame.pts > last
                else:
                    keep = passed >= len(shown)
                    passed += 1
                if keep:
                    yield frame
            return


def _head(location: str, packets: list, indexed: bool) -> tuple[frozenset[int], frozenset[int]]:
    """The stream's packets that are no part of the video, as ffmpeg and players show it from
    its first keyframe. A recording or a cut that starts mid-GOP (broadcast captures, files cut
    with `tail -c`) begins with packets that decoders drop (H.264, HEVC, MPEG-2) or fail on;
    after the keyframe, an open GOP's pictures that reference the GOP cut away, and the pictures
    an intra-refresh stream shows only once its refresh completes, decode to nothing too. They
    are found by decoding the head of the stream (up to its first shown frame, a GOP at most):
    the packets before the keyframe when none of them shows a frame (MPEG-4 Part 2 shows them
    grey: kept), then those up to the first shown frame whose times no frame shows (or, where
    the frames' times are not their packets', as many as show nothing). A packet the codec
    fails on is damage, not head: it stays, for concealment.

    Args:
        location: where the video file opens (`vtl.headers.open_container`).
        packets: (timestamp, shown, keyframe) of each packet with data, in decoding order.
        indexed: the container's index gave the frame count: a file written whole, which starts
            at a keyframe; only pictures shown before it (an open GOP) are looked for then.

    Returns:
        (left out, not decoded): indices in `packets`; the second, the packets before the
        keyframe, is part of the first. Both empty for a stream whose every packet is shown.
    """
    none = frozenset(), frozenset()
    key = next((i for i, (_, _, keyframe) in enumerate(packets) if keyframe), None)
    if key is None:
        return none
    times = [t for t, _, _ in packets]
    leading = (
        key + 1 < len(times) and None not in times[key : key + 2] and times[key + 1] < times[key]
    )
    if indexed and key == 0 and not leading:
        return none
    skip = frozenset()
    if key and not _decode_head(location, packets, skip, lambda i, shown: i >= key - 1)[0]:
        skip = frozenset(range(key))

    def first_shown(i: int, shown: list) -> bool:  # and nothing sent yet that shows before it
        known = [t for t in shown if t is not None]
        return bool(shown) and (
            not known or i + 1 >= len(times) or times[i + 1] is None or times[i + 1] >= min(known)
        )

    shown, last, failed = _decode_head(location, packets, skip, first_shown)
    if not shown:
        return none  # nothing decodes: the decoder says so, as for any such stream
    sent = [i for i in range(last + 1) if i not in skip and i not in failed]
    sent_times, shown_times = {times[i] for i in sent}, set(shown)
    if None in sent_times or not shown_times <= sent_times:
        # no times (a raw stream), or frames timed otherwise than their packets (guessed
        # timestamps, as AVI's with B-frames): as many as show nothing
        hidden = sent[: max(0, len(sent) - len(shown))]
    else:
        hidden = [i for i in sent if times[i] not in shown_times]
    return skip | frozenset(hidden), skip


def _decode_head(location: str, packets: list, skip: frozenset[int], stop) -> tuple[list, int, set]:
    """Decode the stream's packets with data in order, those in `skip` not sent, until
    `stop(index, shown times)` after one (or the last of `packets`: the data may break after
    it), then flush the codec. Returns the shown frames' times, the last packet's index and the
    packets the codec failed on."""
    shown, last, failed = [], -1, set()
    with open_location(location) as container:
        stream = video_stream(container)
        with contextlib.suppress(av.FFmpegError):
            for packet in _demux(container, stream):
                if not packet.size:
                    continue
                last += 1
                if last not in skip:
                    try:
                        shown += [frame.pts for frame in packet.decode()]
                    except av.FFmpegError:
                        failed.add(last)
                if last >= len(packets) - 1 or stop(last, shown):
                    break
        with contextlib.suppress(av.FFmpegError):
            shown += [frame.pts for frame in stream.codec_context.decode(None)]
    return shown, last, failed


def _orientation(frame: av.VideoFrame) -> tuple[int, tuple[bool, bool, bool]]:
    """How ffmpeg's autorotation shows a frame of this display matrix upright (fftools'
    `get_rotation` and the transpose / flip filters it inserts by the matrix's signs, so that a
    mirroring matrix, a front camera's, flips too): (degrees turned counter-clockwise, and the
    turn as (transpose, flip rows, flip columns), applied in that order). An angle off the right
    angles (ffmpeg's `rotate` filter, which corners the picture in black) is taken to the
    nearest right angle."""
    if not np.isfinite(frame.rotation):  # 0 without a display matrix
        return 0, (False, False, False)
    try:
        matrix = next(
            (d for d in frame.side_data if d.type == av.sidedata.sidedata.Type.DISPLAYMATRIX),
            None,
        )
    except ValueError:
        # PyAV's enum of side-data types lags FFmpeg's: av 18.1 lacks EXIF, which FFmpeg 8's
        # JPEG and TIFF decoders attach to a camera's MJPEG frames, and MV-HEVC's view ids, so
        # listing such a frame's side data raises (PyAV pull request #2392). Its rotation reads
        # without the list; the matrix is then that rotation's alone (a mirror goes unseen):
        # the one from which av_display_rotation_get (PyAV's `rotation`) reads this angle.
        c, s = np.cos(np.radians(frame.rotation)), np.sin(np.radians(frame.rotation))
        m = np.rint(np.array([c, -s, 0, s, c, 0, 0, 0, 1]) * (1 << 16))
    else:
        if matrix is None:
            return 0, (False, False, False)
        m = np.frombuffer(bytes(matrix), np.int32)
    quarter = int(round(-frame.rotation / 90.0)) % 4  # clockwise, as ffmpeg's theta
    if quarter == 1:  # transpose=clock, or cclock_flip (a plain transpose)
        return 270, (True, False, bool(m[3] <= 0))
    if quarter == 3:  # transpose=cclock, or clock_flip
        return 90, (True, True, bool(m[3] < 0))
    return 180 * quarter // 2, (False, bool(m[4] < 0), bool(quarter == 2 and m[0] < 0))


class _RgbChain:
    """Decoded pictures as RGB24 through the libavfilter chain ffmpeg's command line runs on
    them (`ffmpeg -i VIDEO -f rawvideo -pix_fmt rgb24`, with `-s W:H` to a size): autorotation's
    transpose and flips when given, then `scale` at its default bicubic with the conversion to
    RGB24, from the picture as decoded, its own size and pixel format (a new size mid-stream
    gets a new chain, as ffmpeg reconfigures its graph). So every pixel format converts as
    ffmpeg converts it, pixel for pixel: libswscale called directly (PyAV's `reformat`) places
    the chroma of high-bit-depth pictures otherwise, 3 levels off ffmpeg's on average on 10-bit
    video and up to 127 at a colour's edge."""

    def __init__(
        self, size: tuple[int, int], turn: tuple[bool, bool, bool] = (False, False, False)
    ) -> None:
        transpose, flip_rows, flip_columns = turn
        # transpose=cclock_flip is the plain transpose: with the flips it moves the pixels where
        # fftools' own filters for the display matrix move them
        named = (("transpose", transpose), ("vflip", flip_rows), ("hflip", flip_columns))
        self._turn = [name for name, on in named if on]
        self._size = size
        self._graph, self._input = None, None

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        """uint8 [height, width, 3] of one decoded picture, at the chain's size."""
        key = (frame.width, frame.height, frame.format.name)
        if key != self._input:
            self._graph, self._input = self._chain(*key), key
        self._graph.push(frame)
        return self._graph.pull().to_ndarray()

    def _chain(self, width: int, height: int, pixel_format: str) -> av.filter.Graph:
        graph = av.filter.Graph()
        nodes = [
            graph.add_buffer(
                width=width, height=height, format=pixel_format, time_base=Fraction(1, 90000)
            )
        ]
        nodes += [graph.add(n, "cclock_flip" if n == "transpose" else "") for n in self._turn]
        nodes += [
            graph.add("scale", "{}:{}".format(*self._size)),
            graph.add("format", "rgb24"),
            graph.add("buffersink"),
        ]
        for before, after in itertools.pairwise(nodes):
            before.link_to(after)
        graph.configure()
        return graph


def _sample_aspect(stream) -> Fraction | None:
    """The stream's sample aspect ratio (container first, then codec, as ffmpeg guesses it), or
    None for square pixels, an unset ratio or a damaged one."""
    try:
        sar = stream.sample_aspect_ratio
    except (av.FFmpegError, ValueError, ZeroDivisionError):
        return None
    if not sar or sar == 1 or not 1 / MAX_SAMPLE_ASPECT <= sar <= MAX_SAMPLE_ASPECT:
        return None
    return Fraction(sar)


class _Frames:
    """A video's frames with PyAV: timestamps from its packets, frames decoded in order, turned
    upright by the display matrix, brought to their display aspect and converted to RGB as
    ffmpeg turns, scales and converts them (`_RgbChain`), and damage concealed within the budget
    unless `strict`; with `small` also each at TransNetV2's input size (`_RgbChain`)."""

    def __init__(self, path: Path, strict: bool = False, small: bool = False):
        self.path = path
        self.strict = strict
        self.small = small
        try:
            container, self._location = open_container(path)
        except av.FFmpegError as error:
            raise VideoError(_open_reason(error, path)) from None
        try:
            with container:
                stream = video_stream(container)
                if (stream is None or stream.codec_context is None) and index_missing(path):
                    raise VideoError(_INDEX_MISSING)  # the index cut inside its stream's entry
                if stream is None:
                    raise VideoError(
                        "no video stream, only a cover picture (an audio file, not a video)"
                        if container.streams.video
                        else "no video stream (an audio-only file, or not a video)"
                    )
                if stream.codec_context is None:  # no decoder for the stream's codec id
                    raise VideoError(
                        "its video stream's codec is unknown to this FFmpeg build (a damaged "
                        "header, or a codec it lacks: re-encode it, e.g. to H.264)"
                    )
                declared = promised_frames(stream)  # 0 when the container gives no count
                time_base = stream.time_base
                # (timestamp, shown) per packet; an edit list marks the packets not shown
                packets, decoding = [], []  # and each packet's decoding time
                lengths = []  # and its duration (None where the container gives none)
                try:
                    for packet in _demux(container, stream):
                        if packet.size:
                            stamp = packet.pts if packet.pts is not None else packet.dts
                            packets.append((stamp, not packet.is_discard, packet.is_keyframe))
                            decoding.append(packet.dts)
                            lengths.append(packet.duration or None)
                except av.FFmpegError:
                    # the data breaks: unless strict, the index says what is missing after it
                    if strict or not declared:
                        raise
                header_rate = declared_rate(stream)
                guessed = stream.guessed_rate  # ffmpeg's guess: the rate its CLI outputs
                # MPEG-TS and MPEG-PS: timestamps may jump (`follow_on`, `close_jumps`)
                jumps = bool(container.format.flags & av.format.Flags.ts_discont.value)
                # raw streams (H.264, HEVC, MPEG-2, Dirac, MJPEG, ... elementary streams): their
                # packets' times are the demuxer's and parser's guesses (a Dirac parser's are
                # picture numbers)
                unstamped = bool(container.format.flags & av.format.Flags.no_timestamps.value)
                codec_rate = stream.codec_context.framerate  # the bitstream's own timing
                origin = _origin(container, stream, jumps)
            head, self._skip = _head(self._location, packets, indexed=declared > 0)
        except av.FFmpegError as error:
            raise VideoError(_reason(error)) from None
        kept = [i for i in range(len(packets)) if i not in head]
        times = [packets[i][0] for i in kept]
        if jumps and time_base:
            times = follow_on(times, [decoding[i] for i in kept], float(time_base))
        # the frames' times are not their packets' where a discontinuity moved them
        self._rejoined = times != [packets[i][0] for i in kept]
        if unstamped:  # as ffmpeg's command line drops them (DECODER_FLAG_TS_UNRELIABLE): the
            times = [None] * len(times)  # frames in their order, at the stream's rate
        lengths = [lengths[i] for i in kept]
        packets = [packets[i] for i in kept]
        declared = max(0, declared - len(head))
        shown_packets = [
            (time, length)
            for time, length, (_, shown, _) in zip(times, lengths, packets, strict=True)
            if shown
        ]
        stamps = [time for time, _ in shown_packets]
        self.fps = frame_rate(stamps, time_base, header_rate, jumps, guessed)
        # The container's clock in seconds per timestamp unit, or a damaged one corrected.
        clock = float(time_base) if time_base else 0.0
        tick = Fraction(time_base) if time_base else Fraction(0)  # clock, exactly
        if stamps and (problem := _rate_problem(self.fps)):
            # A clock no video runs at (a damaged time scale: frames 512 s or 1/2,400 s apart).
            # Where the bitstream declares its rate (H.264's and HEVC's VUI, MPEG-2's and
            # MPEG-4's headers), the frames are read in their order at that rate; unless the
            # damaged clock's edit list hides frames, which leaves nothing to go by.
            hidden = len(stamps) < len(packets)
            if not codec_rate or _rate_problem(float(codec_rate)) or hidden:
                raise VideoError(problem)
            clock *= self.fps / float(codec_rate) if self.fps > 0 else 1.0
            tick = Fraction(clock)
            self.fps = float(codec_rate)
        missing = max(0, declared - len(packets))  # promised by the index, absent in the data
        if missing:
            message = (
                f"the data ends after {len(packets)} of its {declared} frames "
                "(truncated or corrupt file)"
            )
            _, in_a_row = conceal_budget(declared, self.fps)
            if strict:
                raise VideoError(message)
            if missing > in_a_row or not packets:
                self.n_frames = declared
                raise VideoError(message + self._budget_clause(missing))
        self.n_frames = len(stamps) + missing
        self._missing = missing
        # the shown frames' times in display order (where concealment places lost frames)
        self._stamps: np.ndarray | None = None
        self._ticks: np.ndarray | None = None  # those times, jumps closed (`Timing`)
        self._lengths: list = []  # each one's duration in the same units (None: not given)
        self._tick = tick
        self._lead = 0  # ticks from where ffmpeg's output starts to the first frame
        if clock and None not in stamps and stamps:
            period = 1.0 / (self.fps * clock) if self.fps > 0 else 1.0
            self._stamps = _with_missing(np.sort(np.array(stamps, np.int64)), missing, period)
            self._ticks = close_jumps(self._stamps, clock) if jumps else self._stamps
            length_of = dict(shown_packets)  # a time two frames share: the later's duration
            self._lengths = [length_of.get(int(time)) for time in self._stamps]
            if origin is not None:
                self._lead = max(0, int(self._stamps[0]) - origin)
        self.rotation = 0  # see `_orientation`
        self.sample_aspect: Fraction | None = None
        self.concealed = 0  # frames concealed so far (repeats of a good frame)
        self._frames: Iterator[np.ndarray] | None = None
        self._next = 0  # index of the frame `_frames` yields next
        self._last: np.ndarray | None = None

    def timing(self) -> Timing | None:
        """The shown frames' times and durations for `constant_rate`; None without times."""
        if self._ticks is None:
            return None
        return Timing(self._ticks, self._lengths, self._tick, self._lead)

    def _decoded(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(frame, its 48x27 one or None) in display order, concealed frames included."""
        converter = scaler = None
        size = None  # the first frame's display (width, height): every frame comes out at it
        self.concealed = 0
        total, in_a_row = conceal_budget(self.n_frames, self.fps)
        produced, run = 0, 0  # frames yielded; concealed frames yielded since the last good one
        # the shown frames' times in display order (None: unknown, or not the frames' own)
        expected = None if self._rejoined else self._stamps
        # the last good frame; the last decoding error; frames lost and not placed yet (from the
        # start: those the index promises but the data lacks, placed by their times if known,
        # else at the end)
        last, error = None, None
        lost = self._missing if expected is not None and not self.strict else 0
        with open_location(self._location) as container:
            stream = video_stream(container)  # the stream __init__ read (same file, same pick)
            stream.thread_type, stream.thread_count = "AUTO", DECODE_THREADS
            self.sample_aspect = _sample_aspect(stream)
            for frame in _decode(container, stream, self.strict, self._skip, self._location):
                if isinstance(frame, _Lost):
                    error, lost = frame.error, lost + 1
                    if self.concealed + lost > total:
                        raise self._beyond_budget(
                            produced, error, last is None, self.concealed + lost
                        )
                    continue
                if size is None:
                    self.rotation, turn = _orientation(frame)
                    size = _display_size(frame.width, frame.height, self.sample_aspect, turn[0])
                    # every frame turned upright, then at the first one's display size (another
                    # size, non-square pixels: scaled by the chain's scale filter), as ffmpeg
                    # turns and scales them
                    converter = _RgbChain(size, turn)
                    scaler = _RgbChain((SHOT_WIDTH, SHOT_HEIGHT), turn) if self.small else None
                image = (converter(frame), scaler(frame) if scaler else None)
                # Lost frames go where the times say a frame is missing before this one (with
                # frame threads a codec reports an error a packet or two late, so the failed
                # packet's own time would not do), or here when times are unknown: the frame
                # before them repeated (before the first good frame: this one).
                while lost and (
                    expected is None
                    or frame.pts is None
                    or produced >= len(expected)
                    or frame.pts > expected[produced]
                ):
                    lost, run = lost - 1, run + 1
                    self.concealed += 1
                    if run > in_a_row:
                        raise self._beyond_budget(produced, error, last is None, run)
                    produced += 1
                    yield image if last is None else last
                last, run = image, 0
                produced += 1
                yield image
        if self.strict:
            return
        if last is None:  # nothing decodes: as a strict decode says it
            if error is not None:
                raise VideoError(_reason(error))
            return
        # The data ended: the frames still promised (lost ones not placed yet, frames a codec
        # dropped without an error, frames the index promises but the data lacks) are
        # concealed with the last good one.
        tail = self.n_frames - produced
        if tail > 0:
            if self.concealed + tail > total or run + tail > in_a_row:
                raise VideoError(
                    f"the decoder stopped after {produced} of {self.n_frames} frames "
                    "(truncated or corrupt file)" + self._budget_clause(self.concealed + tail)
                )
            self.concealed += tail
            for _ in range(tail):
                yield last

    def _budget_clause(self, lost: int) -> str:
        total, in_a_row = conceal_budget(self.n_frames, self.fps)
        return (
            f"; {lost} frames missing or undecodable, beyond what a video may conceal "
            f"({total} in all, {in_a_row} in a row)"
        )

    def _beyond_budget(
        self, produced: int, error: av.FFmpegError, first: bool, lost: int
    ) -> VideoError:
        """The failure of a stream damaged beyond the budget (`lost` frames), as a strict
        decode words it, with the budget."""
        if first:  # nothing decoded yet
            return VideoError(_reason(error))
        detail = _message(error)[:120]
        return VideoError(
            f"the stream breaks after {produced} of {self.n_frames} frames "
            f"(corrupt data: {detail})" + self._budget_clause(lost)
        )

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Frames at non-decreasing indices (repeats allowed), decoding forward only, upright,
        and their 48x27 ones (None unless `small`)."""
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
            if self._next == 0:  # packets, but not one frame and no error
                raise VideoError(
                    "no frame decodes (a codec or format this FFmpeg cannot decode, "
                    "or a corrupt file)"
                ) from None
            raise VideoError(
                f"the decoder stopped after {self._next} of {self.n_frames} frames "
                "(truncated or corrupt file)"
            ) from None
        except av.FFmpegError as error:
            if self._next == 0:  # nothing decodes at all
                raise VideoError(_reason(error)) from None
            detail = _message(error)[:120]
            raise VideoError(
                f"the stream breaks after {self._next} of {self.n_frames} frames (corrupt data: "
                f"{detail})"
            ) from None
        frames = np.stack([image for image, _ in out])
        small = np.stack([image for _, image in out]) if self.small else None
        return frames, small


class _PillowFrames(_Frames):
    """An animated WebP's frames with Pillow (libwebp: FFmpeg demuxes the format but decodes no
    animation frame), each composited as the format says and shown for its duration; what
    `_Frames` gives otherwise (times, forward-only `get`), without concealment: a frame that
    does not decode breaks the video."""

    def __init__(self, path: Path, strict: bool = False, small: bool = False):
        from PIL import Image

        self.path, self.strict = path, strict  # nothing to conceal: strict or not, the same
        self.small = small
        try:
            with Image.open(path) as image:
                durations = []  # ms; Pillow reads a frame's duration as it decodes it
                for index in range(getattr(image, "n_frames", 1)):
                    image.seek(index)
                    image.load()
                    durations.append(int(image.info.get("duration", 0)))
        except (OSError, ValueError) as error:
            raise VideoError(
                f"not a decodable animated WebP (truncated or corrupt file; libwebp: {error})"
            ) from None
        stamps = [0, *np.cumsum(durations[:-1]).tolist()]
        self.fps = frame_rate(stamps, Fraction(1, 1000), None)
        self.n_frames = len(durations)
        self._ticks = np.array(stamps, np.int64)
        self._lengths, self._tick = [d or None for d in durations], Fraction(1, 1000)
        self._lead = 0
        self.rotation, self.sample_aspect, self.concealed = 0, None, 0
        self._frames, self._next, self._last = None, 0, None

    def _decoded(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        from PIL import Image

        scaler = _RgbChain((SHOT_WIDTH, SHOT_HEIGHT)) if self.small else None
        with Image.open(self.path) as image:
            for index in range(self.n_frames):
                try:
                    image.seek(index)
                    rgb = np.asarray(image.convert("RGB"))
                    small = scaler(av.VideoFrame.from_ndarray(rgb, "rgb24")) if scaler else None
                    yield rgb, small
                except (OSError, ValueError) as error:
                    raise VideoError(
                        f"the stream breaks after {index} of {self.n_frames} frames (corrupt "
                        f"data: {error})"
                    ) from None


def _rate_problem(fps: float) -> str | None:
    """What is wrong with a frame rate no video has (None for a plausible one)."""
    if not np.isfinite(fps) or fps <= 0:
        return "no usable frame rate in the header or the timestamps (a damaged header)"
    if not MIN_FPS <= fps <= MAX_FPS:
        return f"implausible frame rate {fps:g} fps (a damaged header)"
    return None


def frame_rate(
    stamps: list,
    time_base: Fraction | None,
    header_rate: Fraction | None,
    jumps: bool = False,
    guessed: Fraction | None = None,
) -> float:
    """A video's frame rate from its shown frames' timestamps and its header.

    Frames evenly spaced in time are a constant-rate video whose rate is one over the spacing,
    whatever the header says: streams without an index declare a wrong rate or none (raw MPEG-2
    at 24 fps reads 25, DV 60000, IVF and NUT none). Other frames (timestamps rounded, frames
    missing, a variable rate) are brought to a constant rate as ffmpeg's command line brings
    them (`constant_rate`), at `guessed`, ffmpeg's own guess (`av_guess_frame_rate`: what
    `ffmpeg -i VIDEO -f rawvideo` outputs, and so what TransNetV2's `predict_video` reads; 30 or
    60 for a phone's video, 24 for Matroska's rounded milliseconds) where it is plausible. Else
    frames at the header's rate with their timestamps rounded (each within `_TIMESTAMP_SLACK`
    of a frame of that rate), a few missing (at most 4, or one slot in ten), are at that rate,
    and others at their own average, (frames - 1) / (last start - first start). A timestamp
    two frames share counts once (a muxer's artefact, or segments joined). The header's rate
    where timestamps are missing or give no plausible rate; 0 when nothing tells.

    Args:
        stamps: the shown frames' timestamps in decoding order (None where a packet has none).
        time_base: the stream's time base (seconds per timestamp unit).
        header_rate: the rate the header declares, if plausible.
        jumps: the container's timestamps may jump (`close_jumps`).
        guessed: ffmpeg's guess of the stream's rate (PyAV's `guessed_rate`).
    """
    average = None
    if None not in stamps and len(set(stamps)) >= 2 and time_base:
        unit = Fraction(time_base)
        times = np.unique(np.array(stamps, np.int64))  # sorted, each once
        if jumps:
            times = close_jumps(times, float(unit))
        steps = np.diff(times)
        if steps.min() == steps.max():
            return float(1 / (int(steps[0]) * unit))
        if guessed and MIN_FPS <= guessed <= MAX_FPS:
            return float(guessed)
        if header_rate:
            # each time within the slack of a frame of the header's rate, a few frames missing
            slots = (times - times[0]) * float(header_rate * unit)
            nearest = np.rint(slots)
            missing = nearest[-1] + 1 - len(times)
            if (
                np.abs(slots - nearest).max() <= _TIMESTAMP_SLACK
                and np.diff(nearest).min() > 0
                and missing <= max(4, len(times) // 10)
            ):
                return float(header_rate)
        average = float((len(times) - 1) / (int(steps.sum()) * unit))
        if MIN_FPS <= average <= MAX_FPS:
            return average
    if header_rate:
        return float(header_rate)
    return average or 0.0


def follow_on(stamps: list, decoding: list, clock: float) -> list:
    """Packets' timestamps (decoding order, in units of `clock` seconds) where a container's
    timestamps may jump (MPEG-TS and MPEG-PS) and its clock goes back: a packet whose decoding
    time is more than `BACK_SECONDS` before the time due (the previous packet's plus a frame,
    the decoding times' median step) starts a segment (recordings joined with `cat`, an HLS
    download across an ad break, an encoder restart), and each segment's times are moved to
    follow the frames before it, as ffmpeg plays them on (its tenth of a second). Steps forward
    are `close_jumps`'. Unchanged where the times cannot tell (a packet without a time; no step
    within `JUMP_SECONDS`: a damaged clock).

    Args:
        stamps: each packet's timestamp (presentation time; decoding time where it has none).
        decoding: each packet's decoding time (None where it has none: not checked).
        clock: seconds per timestamp unit.
    """
    if None in stamps or len(stamps) < 2:
        return stamps
    steps = np.diff(np.array([d for d in decoding if d is not None], np.int64))
    steps = steps[(steps > 0) & (steps * clock <= JUMP_SECONDS)]
    if not len(steps):
        return stamps
    step = int(np.median(steps))
    starts, last = [0], None  # each segment's first packet; the previous decoding time
    for i, time in enumerate(decoding):
        if time is not None:
            if last is not None and (last + step - time) * clock > BACK_SECONDS:
                starts.append(i)
            last = time
    out, end = [], None  # end: the last time shown so far, moved
    for first, stop in zip(starts, [*starts[1:], len(stamps)], strict=True):
        segment = stamps[first:stop]
        offset = 0 if end is None else end + step - min(segment)
        out += [stamp + offset for stamp in segment]
        end = max(segment) + offset
    return out


def close_jumps(times: np.ndarray, clock: float) -> np.ndarray:
    """Sorted frame times (in units of `clock` seconds) with every step longer than
    `JUMP_SECONDS` shortened to the median of the other steps, the frames after it moved up:
    in a container whose timestamps may jump (MPEG-TS and MPEG-PS: a splice, an encoder
    restart) such a step is a discontinuity, not a pause, and ffmpeg plays the frames after it
    on (its `-dts_delta_threshold`, 10 s). Unchanged when every step is that long (a damaged
    clock, not a jump)."""
    steps = np.diff(times)
    jumps = steps * clock > JUMP_SECONDS
    if not jumps.any() or jumps.all():
        return times
    steps[jumps] = max(1, int(round(float(np.median(steps[~jumps])))))
    return np.concatenate([times[:1], times[0] + np.cumsum(steps)])


def _with_missing(times: np.ndarray, missing: int, period: float) -> np.ndarray:
    """Sorted frame times with the times of `missing` frames added: in a gap of the frames'
    grid where there is one (a B-frame cut off at the end of the data leaves a gap in display
    order), else after the last frame. `period`: a frame's duration, when times cannot say."""
    steps = np.diff(times)
    step = float(np.median(steps)) if len(steps) and np.median(steps) > 0 else period
    for _ in range(missing):
        steps = np.diff(times)
        widest = int(np.argmax(steps)) if len(steps) else 0
        if len(steps) and steps[widest] >= 1.5 * step:
            added = times[widest] + round(step)
        else:
            added = times[-1] + round(step)
        times = np.sort(np.append(times, np.int64(added)))
    return times


def _display_size(
    width: int, height: int, sample_aspect: Fraction | None, transpose: bool = False
) -> tuple[int, int]:
    """(width, height) a frame is shown at: the height kept, the width scaled by the sample
    aspect ratio and its fraction dropped, as ffmpeg's `scale=iw*sar:ih` evaluates it, in
    double precision (720x480 at 32:27 -> 853x480, at 40:33 -> 872x480, 440x240 at 12:11 ->
    479x240: 440 x 12/11 is 479.99999999999994 in doubles). A frame that autorotation transposes
    is scaled after the turn, as ffmpeg's transpose filter leaves it: height and width swapped,
    the inverse aspect (720x480 at 40:33 turned a quarter -> 396x720)."""
    if transpose:
        width, height = height, width
        sample_aspect = None if sample_aspect is None else 1 / sample_aspect
    if sample_aspect is None:
        return width, height
    shown = int(width * (sample_aspect.numerator / sample_aspect.denominator))
    return shown or width, height  # as ffmpeg's scale takes a width of 0 for the input's


@dataclass(frozen=True)
class Timing:
    """A video's shown frames' times in display order, as integer `ticks` of `tick` seconds
    (jumps closed), and each one's duration in ticks (None where the container gives none)."""

    ticks: np.ndarray
    lengths: list
    tick: Fraction
    lead: int = 0  # ticks from the start ffmpeg's output counts from to the first frame


def _origin(container, stream, jumps: bool) -> int | None:
    """The time, in `stream`'s ticks, that ffmpeg's command line starts a video's output at:
    the file's start (the earliest of its streams', an audio track's that begins first
    included), so that a video starting later begins with its first frame repeated; in MPEG-TS
    and MPEG-PS the start of the streams it reads, the video's own (fftools'
    `correct_input_start_times`); None, the first frame, for a file of one stream (whose output
    starts at its first frame: `VSYNC_VSCFR`) or without a start."""
    start = stream.start_time if jumps else container.start_time
    if len(container.streams) < 2 or start is None or not stream.time_base:
        return None
    if jumps:
        return int(start)
    ticks = Fraction(start, 1_000_000) / Fraction(stream.time_base)  # av_rescale_q: nearest
    return int(ticks + Fraction(1, 2)) if ticks >= 0 else -int(-ticks + Fraction(1, 2))


# A timeline this many times longer than the frames, and longer than them by more than
# `_MAX_HOLD_SECONDS`, is no video's: a damaged clock (one frame hours after the others); its
# frames are read in order instead.
_MAX_HOLD_RATIO, _MAX_HOLD_SECONDS = 10, 3600


def constant_rate(timing: Timing, fps: float) -> np.ndarray | None:
    """The source frame of each frame of the video brought to a constant `fps`, as ffmpeg's
    command line brings a variable-rate video to a constant rate for `-f rawvideo` (fftools'
    `video_sync_process`, CFR): each frame is output as many times as its time and duration
    cover output frames (nearest), the frame before it repeated where it comes late, a frame
    dropped where it comes more than 1.1 frames early, the last frame repeated as the median of
    the last three frames' repeats; times count from the output's start, `timing.lead` before
    the first frame (`_origin`). None when that is every frame once, in order (a constant-rate
    video starting with its file, or rounded timestamps within the tolerance)."""
    ticks, lengths = timing.ticks.tolist(), timing.lengths
    n = len(ticks)
    steps = np.diff(timing.ticks)
    if not n or (
        n > 1
        and steps.min() == steps.max()
        and all(x in (None, steps[0]) for x in lengths)
        and timing.lead * fps * timing.tick < 0.5  # the first frame not repeated
    ):
        return None  # evenly spaced: every frame once
    rate = Fraction(fps).limit_denominator(1_001_000)  # 30000/1001, not its float
    scale = timing.tick * rate  # ticks -> output frames: num / den, exactly
    num, den = scale.numerator, scale.denominator
    limit = max(_MAX_HOLD_RATIO * n, n + _MAX_HOLD_SECONDS * fps)
    shown: list[int] = []
    next_pts, previous, history = 0, -1, [0, 0, 0]
    for i, tick in enumerate(ticks):
        since = tick - ticks[0] + timing.lead  # ticks from the output's start
        pts = since * num / den
        if since * num % den:  # as ffmpeg: off exact midpoints
            pts += (1.0 if pts > 0 else -1.0) / (1 << 17)
        length = lengths[i]
        # no duration from the container (FLV's packets carry none): one output frame, as
        # ffmpeg gives a frame without one its filter graph's rate (`fg_output_step`)
        duration = length * num / den if length else 1.0
        drift = pts - next_pts  # delta0
        delta = drift + duration
        repeats, earlier = 1, 0  # this frame's outputs; of them, the frame before's
        if drift < 0 < delta:
            drift = 0.0
        if delta < -1.1:
            repeats = 0
        elif delta > 1.1:
            repeats = int(np.rint(np.float32(delta)))
            if drift > 1.1:
                earlier = int(np.rint(np.float32(drift - 0.6)))
        history = [earlier, *history[:2]]
        if next_pts + repeats > limit:
            return None
        shown += [previous if k < earlier and previous >= 0 else i for k in range(repeats)]
        next_pts += repeats
        previous = i
    shown += [previous] * sorted(history)[1]
    if not shown:
        return None
    out = np.array(shown, np.int64)
    return None if len(out) == n and np.array_equal(out, np.arange(n)) else out


class VideoSource:
    """One opened video: its metadata and an in-order chunked frame iterator.

    Args:
        path: the video file.
        strict: fail at the first frame that cannot be decoded (`--strict-decode`) instead of
            concealing damage within the budget (`conceal_budget`).
        small: also give each frame at TransNetV2's input size, as its package makes them
            (`_RgbChain`).
    """

    def __init__(self, path: str | Path, strict: bool = False, small: bool = False):
        self.path = Path(path)
        _check_file(self.path)
        reader = _PillowFrames if animated_webp(self.path) else _Frames
        self._frames = reader(self.path, strict=strict, small=small)
        n_frames, fps = self._frames.n_frames, self._frames.fps
        if n_frames == 0:
            raise VideoError("the video stream has no frames")
        if problem := _rate_problem(fps):
            raise VideoError(problem)
        # Frames on ffmpeg's constant-rate timeline; a time two frames share (a muxer's
        # artefact) shows the later one, as ffmpeg does, unless so many share that the times
        # say nothing (then the frames are read in order at the rate).
        timing = self._frames.timing()
        self._shown = None
        if (
            timing is not None
            and len(timing.ticks) - len(np.unique(timing.ticks)) <= len(timing.ticks) // 10
        ):
            self._shown = constant_rate(timing, fps)
        height, width = self._frames.get(np.array([0]))[0].shape[1:3]
        self.info = VideoInfo(
            self.path,
            n_frames if self._shown is None else len(self._shown),
            fps,
            int(height),
            int(width),
            rotation=self._frames.rotation,
            variable_rate=self._shown is not None,
            sample_aspect=float(self._frames.sample_aspect or 1),
        )

    @property
    def concealed(self) -> int:
        """Frames concealed so far (repeats of a good frame where the stream is damaged); the
        video's count once its chunks are consumed."""
        return self._frames.concealed

    def chunk_frames(self) -> int:
        frame_bytes = self.info.height * self.info.width * 3
        return int(max(1, min(MAX_CHUNK_FRAMES, CHUNK_BYTES // frame_bytes)))

    def chunks(self) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        """Yield (first frame index, uint8 [T, H, W, 3], uint8 [T, 27, 48, 3] or None unless
        `small`) for consecutive chunks of the video."""
        step = self.chunk_frames()
        for start in range(0, self.info.n_frames, step):
            stop = min(self.info.n_frames, start + step)
            indices = np.arange(start, stop) if self._shown is None else self._shown[start:stop]
            batch, small = self._frames.get(indices)
            if batch.shape[0] != stop - start:
                raise VideoError(f"decoder returned {batch.shape[0]} frames for {stop - start}")
            yield start, batch, small
