"""What a video's container header says, without demuxing or decoding: read by both stages
(extraction balances its shards on it; `probe recommend` costs a whole collection with it),
and which of its streams is the video (`video_stream`, also the decoder's choice)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

from vtl.manifest import special_file

# Frame rates a real video has (a time-lapse at one frame a minute, a 1,000 fps camera); beyond
# them a container's rate is damaged.
MIN_FPS, MAX_FPS = 1 / 60, 1000.0
# ffmpeg's demuxers of raw elementary streams (.h264, .hevc, .m4v, ...: no container, no clock).
# Their average rate is their `-framerate` option (25) whatever the stream says, while the
# stream's own headers (H.264 and HEVC timing information, an MPEG-4 VOL's) give the rate
# players show it at, which ffmpeg's guess reads.
RAW_DEMUXERS = frozenset(
    "avs2 avs3 cavsvideo dirac dnxhd evc h261 h263 h264 hevc ingenient m4v mjpeg mjpeg_2000 "
    "mpegvideo vc1 vvc".split()
)


# The boxes an MP4 or QuickTime file starts with (its type, a segment's type, its header or
# data first, padding, QuickTime's preview).
FIRST_BOXES = frozenset(b"ftyp styp moov mdat free skip wide pnot".split())
# Where a container's header starts (the mark's offset less the bytes before it): an MP4 or
# QuickTime file's `ftyp` box (its 4-byte size first), Matroska's and WebM's EBML header.
CONTAINER_MARKS = ((b"ftyp", 4), (b"\x1a\x45\xdf\xa3", 0))
# How far into a file a container's header is looked for, and how many places are tried.
SCAN_BYTES, SCAN_TRIES = 1 << 20, 4
# Raw H.264, HEVC and VVC streams (Annex B: NAL units after 00 00 01 start codes) by the file
# extensions ffmpeg gives them, and how to tell a parameter set's NAL unit (H.264: SPS; HEVC,
# VVC: VPS or SPS) from the byte(s) after a start code. A stream cut mid-way decodes nothing
# before its first parameter set.
RAW_NAL_STREAMS = {
    **dict.fromkeys(("h264", "264", "h26l", "avc"), lambda b: b[0] & 0x9F == 0x07),
    **dict.fromkeys(("hevc", "h265", "265"), lambda b: b[0] & 0xFE in (0x40, 0x42)),
    **dict.fromkeys(("vvc", "h266", "266"), lambda b: b[1] >> 3 in (14, 15) and b[0] < 0x80),
}


def open_location(location: str | Path):
    """A PyAV container of a `location` from `open_container` (or a path); damaged files carry
    damaged metadata too: undecodable text is replaced, not fatal."""
    import av

    return av.open(str(location), metadata_errors="replace")


def open_container(path: str | Path):
    """(open PyAV container, the location it was opened at, for `open_location` to open it
    again). A file that ffmpeg cannot read from its first byte, or reads without a video or as
    a raw stream (`RAW_DEMUXERS`: bytes that happen to look like one), while an MP4, QuickTime,
    Matroska or WebM header starts within its first MiB (bytes before it: an HTTP response's
    headers saved with a download, a recorder's preamble, a broken copy), is opened from that
    header on (ffmpeg's `subfile` protocol: the container's own offsets count from there) when
    a video stream is found there. A raw H.264, HEVC or VVC stream (by its extension) that
    ffmpeg cannot open, cut mid-way where the bytes before its first NAL unit fail its probe,
    is opened from its first parameter set the same way. An MP4 or QuickTime file that ffmpeg
    cannot open because it ends inside a box ffmpeg reads as it opens (a fragmented MP4's
    fragment header, `moof`: an interrupted recording or download) is opened up to the last
    whole box (`_whole_boxes_end`): the fragments before the cut, every frame they hold.

    Raises:
        av.FFmpegError: the error at the file's first byte, when no later header opens either.
    """
    import av

    container, failure = None, None
    try:
        container = open_location(path)
        if container.format.name not in RAW_DEMUXERS and video_stream(container) is not None:
            return container, str(path)
    except (av.error.InvalidDataError, av.error.EOFError) as error:  # EOF: a format by its name
        failure = error
    with open(path, "rb") as handle:
        head = handle.read(SCAN_BYTES)
        starts = _container_starts(head)
        if container is None:  # a raw stream whose bytes before its first NAL unit fail the probe
            starts = [0, *starts, *_parameter_set_start(head, Path(path).suffix)]
        # each start up to its last whole box where a box ffmpeg reads as it opens is cut
        parts = [(start, _whole_boxes_end(handle, start)) for start in starts]
    for start, end in parts:
        if not start and not end:
            continue  # the file itself, which failed
        location = f"subfile,,start,{start},end,{end},,:{path}"
        with contextlib.suppress(av.FFmpegError):
            found = open_location(location)
            if video_stream(found) is not None:
                if container is not None:
                    container.close()
                return found, location
            found.close()
    if container is None:
        raise failure
    return container, str(path)


def _container_starts(head: bytes) -> list[int]:
    """Offsets after the first byte at which a container's header (`CONTAINER_MARKS`) starts
    in a file's first bytes (`head`), nearest first, at most `SCAN_TRIES`."""
    starts = []
    for mark, before in CONTAINER_MARKS:
        at, found = head.find(mark, before + 1), 0
        while at >= 0 and found < SCAN_TRIES:  # each mark's nearest SCAN_TRIES
            starts.append(at - before)
            at, found = head.find(mark, at + 1), found + 1
    return sorted(starts)[:SCAN_TRIES]


def _boxes_on_disk(handle, start: int) -> Iterator[tuple[int, int, bytes]]:
    """(offset, size, type) of the top-level boxes of an MP4 or QuickTime file that starts at
    `start` in an open file, in order: up to the first box that runs past the end of the file
    (included), bytes that are no box (a size below 8 or a type that is not 4 printable
    characters), or fewer than 8 bytes left. A box of size 0 runs to the end of the file (the
    last). Nothing unless the first box is an MP4 or QuickTime one (`FIRST_BOXES`)."""
    size = os.fstat(handle.fileno()).st_size
    at = start
    while at + 8 <= size:
        handle.seek(at)
        header = handle.read(16)
        length, kind = int.from_bytes(header[:4], "big"), header[4:8]
        if length == 1 and len(header) == 16:  # a 64-bit size follows the type
            length = int.from_bytes(header[8:16], "big")
        elif length == 0:  # to the end of the file
            length = size - at
        if length < 8 or not all(32 <= c < 127 for c in kind):
            return
        if at == start and kind not in FIRST_BOXES:
            return  # not an MP4 or QuickTime file
        yield at, length, kind
        if at + length >= size:
            return
        at += length


def _whole_boxes_end(handle, start: int) -> int:
    """Where the last whole top-level box ends in an MP4 or QuickTime file that starts at
    `start` in an open file, when a box other than `mdat` (the frames' data, which may end
    early) runs past the end of the file: ffmpeg reads such a box as it opens the file (a
    fragmented MP4's `moof`, an index) and fails. 0 when the file holds no such cut box, or its
    bytes are no boxes."""
    size = os.fstat(handle.fileno()).st_size
    end = start
    for at, length, kind in _boxes_on_disk(handle, start):
        if at + length > size:
            return at if kind != b"mdat" and at > start else 0
        end = at + length
    # the file ends inside a box's size and type (not where bytes that are no box begin)
    return end if start < end < size and end + 8 > size else 0


def index_missing(path: str | Path) -> bool:
    """Whether a file is an MP4 or QuickTime file that holds frames (`mdat`) but whose index
    (`moov`, which most cameras, phones and encoders write at the end) is missing or cut off:
    a recording or download interrupted before it finished. ffmpeg reads no frame of it."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            kinds, end = set(), 0
            for at, length, kind in _boxes_on_disk(handle, 0):
                if kind == b"moov":
                    return at + length > size
                kinds.add(kind)
                end = at + length
    except OSError:
        return False
    # the boxes reach the end of the file (not bytes that are no box: a damaged index)
    return b"mdat" in kinds and end + 8 > size


def _parameter_set_start(head: bytes, suffix: str) -> list[int]:
    """The offset of the first parameter set's start code in a file's first bytes (`head`),
    where its extension (`suffix`) names a raw H.264, HEVC or VVC stream (`RAW_NAL_STREAMS`);
    [] if none."""
    is_parameter_set = RAW_NAL_STREAMS.get(suffix.lower().lstrip("."))
    if is_parameter_set is None:
        return []
    at = head.find(b"\x00\x00\x01")
    while 0 <= at < len(head) - 5:
        if is_parameter_set(head[at + 3 : at + 5]):
            return [at]
        at = head.find(b"\x00\x00\x01", at + 3)
    return []


def video_stream(container):
    """The stream of an open PyAV container that is its video, or None: the one ffmpeg's
    `av_find_best_stream` picks, as decord and players do (a stream that decodes several frames
    before one that decodes a single picture), never cover art (a stream marked as an attached
    picture, as audio files and some MP4/MKV files carry)."""
    import av

    cover = av.stream.Disposition.attached_pic
    videos = [s for s in container.streams.video if not s.disposition & cover]
    if not videos:
        return None
    best = container.streams.best("video")
    return next((s for s in videos if best is not None and s.index == best.index), videos[0])


def promised_frames(stream) -> int:
    """The frames an open video stream's container promises, 0 when it gives no count: its
    header's count (`stream.frames`: an MP4's sample table, an AVI's stream header), unless the
    index the demuxer built as the file opened lists fewer and still reaches the end of the
    stream's duration (within a decoding delay of 3 frames). Such an index is what the stream
    is: an MP4 or QuickTime edit list that shows a part of the samples (a trim of the start or
    the end without re-encoding) leaves the others out of the index and of the duration, where
    a codec needs none of them to decode the part shown. An index that ends before the
    duration does (a damaged sample table: frames the file holds and cannot be reached) leaves
    the header's count standing, and the frames it lost missing. An AVI file that is whole
    (`whole_avi`) holds the frames its index lists, whatever its stream header says (a damaged
    frame count there makes the duration as wrong as the count)."""
    frames, entries = int(stream.frames or 0), stream.index_entries
    listed = len(entries)
    if 1 < listed != frames and whole_avi(stream.container):
        return listed
    if 1 < listed < frames and stream.duration:
        first, last = entries[0].timestamp, entries[listed - 1].timestamp
        step = (last - first) / (listed - 1)  # the index's frame spacing
        end = (stream.start_time or 0) + stream.duration
        if step > 0 and last + step >= end - 3 * step:
            return listed
    return frames


def whole_avi(container) -> bool:
    """Whether an open container is an AVI file that ends where its RIFF header says and holds
    its legacy index (`idx1`, written after the frames) complete: nothing of it was cut off, so
    its index lists every frame it holds. False for other formats, for an AVI cut short or
    grown (OpenDML's further RIFF segments: its index is per segment) and for one read past
    bytes before it (`open_container`'s subfile location)."""
    if container.format.name != "avi":
        return False
    try:
        with open(container.name, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"AVI ":
                return False
            end = 8 + int.from_bytes(head[4:8], "little")
            if size not in (end, end + 1):  # a RIFF chunk of odd size has a pad byte
                return False
            at = 12
            while at + 8 <= end:  # the top-level chunks: LIST hdrl, LIST movi, idx1, JUNK
                handle.seek(at)
                chunk = handle.read(8)
                length = int.from_bytes(chunk[4:8], "little")
                if chunk[:4] == b"idx1":
                    return at + 8 + length <= end
                at += 8 + length + (length & 1)
    except OSError:  # no such file: a subfile location
        return False
    return False


def declared_rate(stream) -> Fraction | None:
    """The frame rate a video stream's header declares: its average (frames / duration) when
    that is a real video's, else ffmpeg's guess from the stream and codec (`av_guess_frame_rate`;
    a DV file declares an average of 60000, an IVF or NUT file none); None when neither is. A raw
    elementary stream's average is no declaration (`RAW_DEMUXERS`): only the guess counts."""
    raw = stream.container.format.name in RAW_DEMUXERS
    for rate in (stream.guessed_rate,) if raw else (stream.average_rate, stream.guessed_rate):
        if rate and MIN_FPS <= rate <= MAX_FPS:
            return Fraction(rate)
    return None


def animated_webp(path: str | Path) -> bool:
    """Whether a file is an animated WebP (a RIFF WEBP file whose VP8X header sets the animation
    flag): FFmpeg demuxes it, but its WebP decoder reads no animation frame; Pillow's (libwebp)
    does, and extraction reads it with that."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(21)
    except OSError:
        return False
    return len(head) == 21 and head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and head[20] & 2


def header_frames(path: str | Path) -> int | None:
    """A video's frame count as its container header gives it (MP4: exact), else duration x
    rate; no demuxing or decoding, so that reading it for thousands of files is cheap. None for
    a video whose header gives neither count nor duration (a raw .h264 or .hevc stream: no
    index, no clock; `fill_unknown` counts it). 0 for a file that is no video, unreadable, or a
    path that is no regular file (a pipe, a device: never opened): it fails fast anywhere."""
    import av  # here: the probe stage imports this module only to cost a collection

    if special_file(path) is not None:
        return 0
    if animated_webp(path):
        from PIL import Image

        try:
            with Image.open(path) as image:  # libwebp's demuxer counts the frames
                return int(getattr(image, "n_frames", 1))
        except (OSError, ValueError):
            return 0
    try:
        with open_container(path)[0] as container:
            stream = video_stream(container)
            if stream is None:
                return 0
            if frames := promised_frames(stream):
                return frames
            tb = stream.time_base
            start = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
            matroska = "matroska" in container.format.name
            if stream.duration and tb:
                seconds = float(stream.duration * tb)
            elif matroska and (end := _tagged_end(stream)) is not None:
                seconds = end - start  # this track's end (not the longest track's), from 0
            elif container.duration:
                seconds = container.duration / av.time_base
                seconds -= start if matroska else 0.0  # Matroska's segment ends count from 0
            else:
                return None
            if seconds <= 0:  # a tag or a start that contradicts the rest: nothing to go by
                return None
            frames = int(seconds * (declared_rate(stream) or 0))
            if container.format.name == "mpegts":
                # a frame takes one 188-byte packet at least: a clock that wrapped or jumped
                # (recordings joined) makes ffmpeg's estimate more than the file can hold
                frames = min(frames, Path(path).stat().st_size // 188)
            return frames
    except (av.FFmpegError, OSError):
        return 0  # it fails fast wherever it goes


def _tagged_end(stream) -> float | None:
    """The DURATION tag Matroska muxers (ffmpeg's, mkvmerge) write per track, in seconds: the
    track's end, counted from 0 as the file's timestamps are; None without one."""
    text = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    try:
        hours, minutes, seconds = text.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except (AttributeError, ValueError):
        return None


def fill_unknown(counts: list[int | None], default: float) -> tuple[list[float], int]:
    """`header_frames` counts with each unknown one (None) at the mean of the videos' known
    counts (`default` when none is known), so that a raw stream is neither free nor guessed
    wildly; and how many were unknown."""
    known = [c for c in counts if c]
    mean = sum(known) / len(known) if known else default
    return [mean if c is None else c for c in counts], counts.count(None)
