"""Decoding around damage within a budget, and frames at their display aspect (`extract.video`).

Real files: H.264 MP4s written with PyAV, then damaged on disk the way downloads break (the last
sample cut off, the bytes of a packet in the middle flipped); an anamorphic DVD-sized video
whose circle is round only when its sample aspect ratio is applied.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from extract.backbones import create_backbone
from extract.encode import write_video
from extract.fuzz import _boxes
from extract.video import (
    CONCEAL_RUN_SECONDS,
    CONCEAL_SHARE,
    VideoError,
    VideoSource,
    conceal_budget,
)
from vtl.headers import header_frames

FRAMES = 60
FPS = 24
FASTSTART = {"movflags": "faststart"}  # the index first: the end of the file is frames


def pattern(i: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frame i of a moving pattern: every frame differs from the one before it (rgb24)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 127 + 100 * np.sin((x + 3 * i) / 10)
    green = 127 + 100 * np.cos((y - 2 * i) / 8)
    blue = np.full_like(x, (i * 9) % 256)
    return np.stack([red, green, blue], axis=-1).clip(0, 255).astype(np.uint8)


def clean_video(path: Path, n: int = FRAMES) -> Path:
    """H.264 with B-frames, its index at the front (so that the end of the file is frames)."""
    write_video(path, (pattern(i) for i in range(n)), FPS, container_options=FASTSTART)
    return path


def packets(path: Path) -> list[tuple[int, int, int]]:
    """(byte offset, size, presentation time) of each video packet, in the file's (decoding)
    order."""
    with av.open(str(path)) as container:
        return [(p.pos, p.size, p.pts) for p in container.demux(video=0) if p.size]


def cut_last_frames(clean: Path, path: Path, k: int) -> Path:
    """The file cut where its last `k` samples start: the index still promises them."""
    data = clean.read_bytes()
    path.write_bytes(data[: sorted(pos for pos, _, _ in packets(clean))[-k]])
    return path


def flip_packets(clean: Path, path: Path, indices) -> Path:
    """The first 4 bytes of each packet at `indices` (decoding order) flipped: its NAL unit's
    length becomes impossible, and the codec refuses that packet."""
    data = bytearray(clean.read_bytes())
    where = packets(clean)
    for i in indices:
        pos = where[i][0]
        data[pos : pos + 4] = bytes(b ^ 0xFF for b in data[pos : pos + 4])
    path.write_bytes(bytes(data))
    return path


def decode(path: Path, strict: bool = False) -> tuple[np.ndarray, VideoSource]:
    source = VideoSource(path, strict=strict)
    frames = np.concatenate([chunk for _, chunk, _ in source.chunks()])
    return frames, source


def repeats(frames: np.ndarray) -> list[int]:
    """Indices of frames equal to the frame before them."""
    return [i for i in range(1, len(frames)) if np.array_equal(frames[i], frames[i - 1])]


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return clean_video(tmp_path_factory.mktemp("damaged") / "clean.mp4")


@pytest.fixture(scope="module")
def reference(clean) -> np.ndarray:
    frames, source = decode(clean, strict=True)
    assert len(frames) == FRAMES and source.concealed == 0 and not repeats(frames)
    return frames


def test_the_budget():
    assert conceal_budget(60, 24.0) == (1, 1)  # a short video may lose one frame
    assert conceal_budget(100, 24.0) == (2, 2)
    assert conceal_budget(2880, 24.0) == (
        int(CONCEAL_SHARE * 2880),
        round(CONCEAL_RUN_SECONDS * 24),
    )
    assert conceal_budget(100_000, 60.0) == (2000, 60)


def test_a_clean_video_decodes_the_same_with_or_without_concealment(clean, reference):
    frames, source = decode(clean)
    np.testing.assert_array_equal(frames, reference)
    assert source.concealed == 0 and source.info.sample_aspect == 1.0


def flat(i: int) -> np.ndarray:
    """Frame i, one grey level: x264 ends the file with a B-frame shown before the last frame."""
    return np.full((48, 64, 3), 4 * i, np.uint8)


@pytest.mark.parametrize("content", [pattern, flat])
def test_a_frame_the_index_promises_but_the_data_lacks_is_concealed(content, tmp_path):
    """The last sample in the file is cut off: the frame before it on screen takes its place
    (the last frame, or a B-frame's place in the middle)."""
    clean = tmp_path / "clean.mp4"
    write_video(clean, (content(i) for i in range(FRAMES)), FPS, container_options=FASTSTART)
    reference, _ = decode(clean)
    cut = cut_last_frames(clean, tmp_path / "cut.mp4", 1)
    where = packets(clean)
    times = sorted(pts for _, _, pts in where)
    slot = times.index(max(where)[2])  # the cut frame's place on screen
    assert slot == (FRAMES - 1 if content is pattern else FRAMES - 2)
    frames, source = decode(cut)
    assert source.info.n_frames == FRAMES and len(frames) == FRAMES
    assert not source.info.variable_rate
    assert source.concealed == 1
    np.testing.assert_array_equal(frames[slot], frames[slot - 1])
    np.testing.assert_array_equal(frames[:slot], reference[:slot])
    with pytest.raises(VideoError) as strict:
        VideoSource(cut, strict=True)
    assert (
        str(strict.value) == "the data ends after 59 of its 60 frames (truncated or corrupt file)"
    )


FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}  # a recording's layout


@pytest.mark.parametrize(
    "container, layout",
    [("mp4", FASTSTART), ("mp4", FRAGMENTED), ("flv", {})],
    ids=["faststart", "fragmented", "flv"],
)
def test_a_file_cut_inside_its_last_frame_keeps_every_whole_frame(container, layout, tmp_path):
    """The file ends inside its last sample (an interrupted download or recording): that frame
    alone is lost. The codec's frame threads report its error at the flush, where the frames
    they still hold cannot be received any more; they are decoded again (before, 3 frames were
    lost, beyond a 60-frame video's budget, and the video failed). A fragmented MP4 promises
    only the frames of the fragments it holds: the cut one's; an FLV file promises none."""
    clean = tmp_path / f"clean.{container}"
    frames = (pattern(i) for i in range(FRAMES))
    write_video(clean, frames, FPS, format=container, container_options=layout)
    reference, _ = decode(clean)
    pos, size, pts = max(packets(clean))  # the last sample in the file
    cut = tmp_path / f"cut.{container}"
    cut.write_bytes(clean.read_bytes()[: pos + size // 2])
    slot = sorted(t for _, _, t in packets(clean)).index(pts)  # its place on screen
    frames, source = decode(cut)
    assert len(frames) == source.info.n_frames == FRAMES and source.concealed == 1
    np.testing.assert_array_equal(frames[slot], frames[slot - 1])
    keep = np.arange(FRAMES) != slot
    np.testing.assert_array_equal(frames[keep], reference[keep])


def test_a_fragmented_mp4_cut_inside_the_frame_after_a_keyframe_keeps_every_whole_frame(tmp_path):
    """Cut inside the packet after the last fragment's keyframe: the frames held at the failed
    flush include the previous group's last B-frames. A seek by the last good frame's shown
    time lands by decoding time, after them: the decode again starts further back (before,
    one of them was lost and the frame before it shown in its place). The cut packet's frame
    and the B-frames before it, never stored, are the last whole frame held up to the cut
    packet's time (ffmpeg's command line stops at the last whole frame)."""
    clean = tmp_path / "clean.mp4"
    frames = (pattern(i) for i in range(FRAMES))
    write_video(clean, frames, FPS, options={"g": "12"}, container_options=FRAGMENTED)
    reference, _ = decode(clean)
    with av.open(str(clean)) as container:
        stored = [(p.pos, p.size, p.pts, p.is_keyframe) for p in container.demux(video=0) if p.size]
    stored.sort()  # file order
    key = max(i for i, (*_, keyframe) in enumerate(stored) if keyframe)
    pos, _, cut_time, _ = stored[key + 1]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clean.read_bytes()[: pos + 6])  # its first bytes: it cannot decode
    on_screen = sorted(t for _, _, t, _ in stored)  # the clean file's times: slot i, frame i
    whole = {t for _, _, t, _ in stored[: key + 1]}  # the frames the cut file holds whole
    kept, source = decode(cut)
    assert len(kept) == source.info.n_frames >= len(whole)
    last = on_screen.index(max(whole))  # the frames' slots are their times: the last whole one's
    assert sorted(whole) == on_screen[: last + 1]
    np.testing.assert_array_equal(kept[: last + 1], reference[: last + 1])
    np.testing.assert_array_equal(kept[last + 1 :], reference[[last] * (len(kept) - last - 1)])
    assert len(kept) <= on_screen.index(cut_time) + 1


@pytest.mark.parametrize("fragment", [-1, -2])
def test_a_fragmented_mp4_cut_inside_a_fragment_header_keeps_the_fragments_before(
    fragment, tmp_path
):
    """A fragmented MP4 (12-frame fragments) cut inside a fragment's header (`moof`): ffmpeg
    reads every such header as it opens the file and cannot open it at all (before: "the file
    ends inside its header"). It is read up to the last whole box, every frame of the
    fragments before the cut."""
    clean = tmp_path / "clean.mp4"
    frames = (pattern(i) for i in range(FRAMES))
    write_video(clean, frames, FPS, options={"g": "12"}, container_options=FRAGMENTED)
    reference, _ = decode(clean)
    # (start, size) of each fragment header: its payload follows its 8-byte size and type
    boxes = _boxes(clean.read_bytes())
    fragments = [(at - 8, end - at + 8) for kind, at, end in boxes if kind == "moof"]
    assert len(fragments) == FRAMES // 12
    at, size = fragments[fragment]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clean.read_bytes()[: at + 3 * size // 4])  # inside its sample table
    with pytest.raises(av.FFmpegError):
        av.open(str(cut)).close()
    kept, source = decode(cut)
    whole = 12 * (len(fragments) + fragment)
    assert len(kept) == source.info.n_frames == whole and source.concealed == 0
    np.testing.assert_array_equal(kept, reference[:whole])
    assert header_frames(cut) == whole  # what shards are balanced on, read the same way


def test_an_undecodable_packet_repeats_the_frame_before_it(clean, reference, tmp_path):
    """Packet 30 in decoding order is frame 30 on screen (a P-frame): it is lost, frame 29 takes
    its place, and the frames before it are untouched (those after it show the damage, as in
    every player)."""
    damaged = flip_packets(clean, tmp_path / "flipped.mp4", [30])
    frames, source = decode(damaged)
    assert source.info.n_frames == FRAMES and len(frames) == FRAMES
    assert source.concealed == 1 and repeats(frames) == [30]
    np.testing.assert_array_equal(frames[:30], reference[:30])
    with pytest.raises(
        VideoError, match=r"^the stream breaks after \d+ of 60 frames \(corrupt data"
    ):
        decode(damaged, strict=True)


def test_damage_beyond_the_budget_fails_as_before(clean, tmp_path):
    flipped = flip_packets(clean, tmp_path / "flipped3.mp4", [20, 30, 40])
    with pytest.raises(VideoError) as failed:
        decode(flipped)
    message = str(failed.value)
    assert message.startswith("the stream breaks after ") and "(corrupt data: " in message
    assert message.endswith(
        "2 frames missing or undecodable, beyond what a video may conceal (1 in all, 1 in a row)"
    )
    cut = cut_last_frames(clean, tmp_path / "cut5.mp4", 5)
    with pytest.raises(
        VideoError,
        match=r"^the data ends after 55 of its 60 frames \(truncated or corrupt file\); 5 frames",
    ):
        VideoSource(cut)


def test_a_run_of_concealed_frames_is_at_most_a_second(tmp_path):
    """A 1,300-frame video may conceal 26 frames, but only 24 in a row (one second): 10 lost
    packets are concealed, 25 in a row are not."""
    clean = clean_video(tmp_path / "long.mp4", n=1300)
    assert conceal_budget(1300, FPS) == (26, 24)
    frames, source = decode(flip_packets(clean, tmp_path / "ten.mp4", range(600, 610)))
    assert len(frames) == 1300 and source.concealed == 10 == len(repeats(frames))
    with pytest.raises(VideoError) as failed:
        decode(flip_packets(clean, tmp_path / "many.mp4", range(600, 625)))
    assert str(failed.value).endswith(
        "25 frames missing or undecodable, beyond what a video may conceal (26 in all, 24 in a row)"
    )


# --- display aspect -----------------------------------------------------------------------------

SAR = Fraction(32, 27)  # NTSC DVD 16:9: 720x480 shown at 853x480
RADIUS = 150  # of the circle on screen, in display pixels


def anamorphic_circle(path: Path, n: int = 4) -> Path:
    """720x480 at SAR 32:27 holding a circle squeezed horizontally by 27/32 in its stored
    pixels: on screen, the pixels widened by 32/27, it is round."""
    height, width = 480, 720
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    inside = ((x - width / 2) * SAR / RADIUS) ** 2 + ((y - height / 2) / RADIUS) ** 2 <= 1
    image = np.where(inside[..., None], 255, 0).astype(np.uint8).repeat(3, axis=2)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.sample_aspect_ratio = SAR
        for _ in range(n):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def extent(image: np.ndarray) -> tuple[int, int]:
    """(width, height) in pixels of the bright shape in an [H, W] or [H, W, C] image."""
    bright = (image.mean(axis=-1) if image.ndim == 3 else image) > 128
    return int(bright.any(axis=0).sum()), int(bright.any(axis=1).sum())


def test_anamorphic_frames_come_at_their_display_aspect(tmp_path):
    path = anamorphic_circle(tmp_path / "dvd.mp4")
    with av.open(str(path)) as container:  # stored: an ellipse, 27/32 as wide as high
        stored = next(container.decode(video=0)).to_ndarray(format="rgb24")
    width, height = extent(stored)
    assert width / height == pytest.approx(27 / 32, rel=0.02)

    frames, source = decode(path)
    assert (source.info.width, source.info.height) == (853, 480) == frames.shape[2:0:-1]
    assert source.info.sample_aspect == pytest.approx(32 / 27)
    width, height = extent(frames[0])
    assert width == pytest.approx(height, rel=0.02) and height == pytest.approx(2 * RADIUS, abs=3)

    # what a backbone receives (resized and center-cropped) holds a circle, not an ellipse
    backbone = create_backbone("efficientnet_lite0")
    prepared = backbone.prepare(torch.from_numpy(frames[:1]))[0].permute(1, 2, 0).numpy()
    width, height = extent(prepared)
    assert width == pytest.approx(height, rel=0.02)


def test_a_demuxer_that_says_try_again_is_read_on(tmp_path):
    """An MPEG-TS download whose tail is zeros: while it resyncs over them, the MPEG-TS demuxer
    answers "try again" (EAGAIN, PyAV's BlockingIOError), which ffmpeg's own tools read on
    after. Before, it failed the video as "Resource temporarily unavailable"; now the frames
    before the zeros are the video, as for a TS file cut there."""
    whole = tmp_path / "whole.ts"
    write_video(whole, (pattern(i) for i in range(96)), FPS, format="mpegts")
    data = whole.read_bytes()
    broken = tmp_path / "zeros.ts"

    def says_try_again(keep: int) -> bool:
        broken.write_bytes(data[:keep] + bytes(len(data) - keep))
        with av.open(str(broken)) as container:
            try:
                for _ in container.demux(video=0):
                    pass
            except av.error.BlockingIOError:
                return True
        return False

    # zeros from within a TS packet on (a preallocated file, written up to a byte), the first
    # cut past the middle that makes the demuxer say it (about 1 in 4 do)
    keep = next((k for k in range(len(data) // 2, len(data), 61) if says_try_again(k)), None)
    if keep is None:  # a PyAV that reads on by itself: the case does not arise
        pytest.skip("no zeroed tail makes this PyAV's MPEG-TS demuxing raise EAGAIN")
    frames, source = decode(broken)
    full, _ = decode(whole)
    assert 24 <= len(frames) < len(full) and source.concealed == 0
    assert np.array_equal(frames[:20], full[:20])


class DemuxEndsInIndexError:
    """A PyAV container whose demux raises IndexError as PyAV 18's may on an MPEG-TS file whose
    streams grew while it was read (its flush goes over streams it never listed): after the
    empty packet that ends the asked stream, or (`early`) after ten packets of data."""

    def __init__(self, container, early: bool) -> None:
        self._container, self._early = container, early

    def __getattr__(self, name: str):
        return getattr(self._container, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._container.close()

    def demux(self, *args, **kwargs):
        for i, packet in enumerate(self._container.demux(*args, **kwargs)):
            if self._early and i == 10:
                break
            yield packet
        raise IndexError("list index out of range")


@pytest.mark.parametrize("early", [False, True])
def test_an_index_error_after_the_demux_ends_keeps_the_video(tmp_path, monkeypatch, early):
    """Damaged MPEG-TS files (`bench/fuzz_extract.py --seed 4`, two payload flips) failed in
    about half the runs as "IndexError: list index out of range (at streams.py:107 in
    _get_streams)", raised by PyAV after the video's last packet. Now that video is whole; an
    IndexError before the end is still the video's failure."""
    path = tmp_path / "video.ts"
    write_video(path, (pattern(i) for i in range(48)), FPS, format="mpegts")
    full, _ = decode(path)
    real_open = av.open
    monkeypatch.setattr(
        av, "open", lambda *a, **k: DemuxEndsInIndexError(real_open(*a, **k), early)
    )
    if early:
        with pytest.raises(IndexError):
            decode(path)
        return
    frames, source = decode(path)
    assert np.array_equal(frames, full) and source.concealed == 0


@pytest.mark.parametrize(
    "size, sar, shown",
    [
        # 440 x 12/11 is 480 exactly, 479.99999999999994 in doubles, where ffmpeg evaluates it
        ((440, 240), Fraction(12, 11), (479, 240)),
        ((704, 576), Fraction(12, 11), (768, 576)),  # PAL 4:3: exact in doubles too
    ],
)
def test_the_display_width_is_ffmpegs_to_the_pixel(tmp_path, size, sar, shown):
    """The display size is what `ffmpeg -i VIDEO -vf scale=iw*sar:ih` outputs (ffmpeg 9.0.2:
    479x240 and 768x576), whose expression runs in double precision: the width one pixel
    narrower than the exact product where that product is an integer the doubles miss."""
    width, height = size
    with av.open(str(tmp_path / "v.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.sample_aspect_ratio = sar
        for _ in range(2):
            frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), "rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    frames, source = decode(tmp_path / "v.mp4")
    assert (source.info.width, source.info.height) == shown == frames.shape[2:0:-1]
