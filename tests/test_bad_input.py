"""Bad input, one case at a time: every row of the README's "Bad input" table is a test here.

Real files throughout: videos written with PyAV or cut from the real demo videos, the real CLI
in a subprocess, real EfficientNet-Lite0 weights, real HDF5 files damaged on disk.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import resource
import shutil
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from extract.backbones import EXTREME_ASPECT, create_backbone
from extract.video import Timing, VideoError, VideoSource, constant_rate, frame_rate
from vtl.errors import FeatureFileError
from vtl.features import FeatureFile, verify_features
from vtl.headers import RAW_DEMUXERS, header_frames, index_missing
from vtl.manifest import read_manifest, write_manifest

FAST_OPTIONS = (
    "--segmentation fixed --shot-frames 40 --image-frames 1 --batch-size 8 --quiet".split()
)
BIN = Path(sys.executable).parent
OUT_NAME = Path("efficientnet") / "efficientnet_lite0.h5"


# --- making the files -------------------------------------------------------------------------


def pattern(i: int, height: int, width: int) -> np.ndarray:
    """Frame i of a moving pattern with structure at every size (rgb24)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 127 + 100 * np.sin((x + 3 * i) / max(2.0, width / 6))
    green = 127 + 100 * np.cos((y - 2 * i) / max(2.0, height / 5))
    blue = np.full_like(x, (i * 9) % 256)
    return np.stack([red, green, blue], axis=-1).clip(0, 255).astype(np.uint8)


def encode(
    path: Path,
    frames,
    fps=24,
    pix_fmt="yuv420p",
    rotation=None,
    pts_ms=None,
    format=None,
    codec="libx264",
    codec_options=None,
    time_base=Fraction(1, 1000),
    **opts,
):
    """Write rgb24 frames with H.264 (or `codec`, with its `codec_options`; MP4 unless
    `format`; `opts`: the muxer's). `pts_ms`: per-frame times (variable frame rate), in
    milliseconds or in units of `time_base`."""
    frames = list(frames)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format=format, options=opts) as container:
        stream = container.add_stream(codec, rate=fps, options=codec_options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if pts_ms is not None:  # both time bases before the first encode
            stream.time_base = stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)  # counter-clockwise, as frame.rotation reads
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = int(pts_ms[i]), time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def pattern_video(path: Path, n=48, size=(64, 48), **kwargs) -> Path:
    width, height = size
    return encode(path, (pattern(i, height, width) for i in range(n)), **kwargs)


def size_change_video(path: Path, n=48) -> Path:
    """Two MPEG-TS segments joined, 64x48 then 32x24, as stream downloaders write them."""
    first = encode(
        path.with_suffix(".a.ts"), [pattern(i, 48, 64) for i in range(n)], format="mpegts"
    )
    second = encode(
        path.with_suffix(".b.ts"), [pattern(n + i, 24, 32) for i in range(n)], format="mpegts"
    )
    path.write_bytes(first.read_bytes() + second.read_bytes())
    return path


def add_picture(container, height: int, width: int, cover: bool):
    """A video stream for one MJPEG picture (`mux_picture`), marked as the file's cover art
    when `cover`. Add every stream before muxing the first packet."""
    stream = container.add_stream("mjpeg", rate=1)
    stream.height, stream.width, stream.pix_fmt = height, width, "yuvj420p"
    if cover:
        stream.disposition = av.stream.Disposition.attached_pic
    return stream


def mux_picture(container, stream, image: np.ndarray) -> None:
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuvj420p")
    for packet in [*stream.encode(frame), *stream.encode()]:
        container.mux(packet)


def audio_only(path: Path, cover: bool = False) -> Path:
    """AAC audio; with `cover`, a cover picture too (as music files carry)."""
    with av.open(str(path), "w") as container:
        picture = add_picture(container, 64, 64, cover=True) if cover else None
        stream = container.add_stream("aac", rate=16000)
        if picture is not None:
            mux_picture(container, picture, pattern(0, 64, 64))
        for i in range(16):
            samples = np.sin(np.arange(1024) / 9.0).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def mux_pattern(container, stream, n: int) -> None:
    """`pattern` frames 0 to n - 1 at the stream's size, encoded into it and flushed."""
    for i in range(n):
        image = pattern(i, stream.height, stream.width)
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def picture_then_video(path: Path, n=48) -> Path:
    """MKV whose first video stream is one still picture, unmarked (an image attachment muxed
    as a track), and whose second is the video (H.264, the `pattern` frames)."""
    with av.open(str(path), "w") as container:
        picture = add_picture(container, 96, 128, cover=False)
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        mux_picture(container, picture, np.full((96, 128, 3), 200, np.uint8))
        mux_pattern(container, stream, n)
    return path


def cut_in_half(source: Path, path: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# VFR: 24 frames 80 ms apart, then 24 frames 20 ms apart (12.5 fps, then 50 fps).
VFR_PTS = np.concatenate([np.arange(24) * 80, 24 * 80 + np.arange(24) * 20])
# A phone's clock (1/90000 s): 30 fps with a tick of jitter, and frames dropped (a step of two
# and one of three frames).
PHONE_TICKS = np.cumsum([0, *[3000, 3003, 2997, 3000, 6000, 3000, 3003, 2997] * 5, 3000, 9000]
                        + [3000] * 5)  # fmt: skip
# A screen recording (ms): 30 fps, a 2 s pause, 30 fps, a 1.5 s pause, then 60 fps.
SCREEN_PTS = np.cumsum([0] + [33] * 15 + [2000] + [33] * 15 + [1500] + [17] * 15)
# 24 fps with a minute's pause after frame 23 (ms).
PAUSE_PTS = np.arange(48) * 1000 / 24 + (np.arange(48) >= 24) * 60_000
# ffmpeg's command line: the frames `ffmpeg -i VIDEO -f rawvideo` gives for `vfr_videos`, as
# indices of their source frames (recorded with ffmpeg 9.0.2; tests/data/README.md).
FFMPEG_CFR = Path(__file__).parent / "data" / "ffmpeg_cfr.npz"


def after_audio(path: Path, frames: list, start_ms: int, format=None, audio=True) -> Path:
    """24 fps video whose first frame is at `start_ms`, after an AAC track that starts at 0
    (as cameras and joiners write them); with `audio=False`, the video alone."""
    with av.open(str(path), "w", format=format) as container:
        video = container.add_stream("libx264", rate=24, options={"bf": "0"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.time_base = video.codec_context.time_base = Fraction(1, 1000)
        packets = []
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = start_ms + round(i * 1000 / 24), Fraction(1, 1000)
            packets += video.encode(frame)
        packets += video.encode()
        if audio:
            sound = container.add_stream("aac", rate=16000)
            for i in range(len(frames)):
                samples = np.zeros((1, 1024), np.float32)
                chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 16000, i * 1024
                packets += sound.encode(chunk)
            packets += sound.encode()
        for packet in sorted(packets, key=lambda p: float(p.dts * p.time_base)):
            container.mux(packet)
    return path


def vfr_videos(folder: Path) -> dict[str, Path]:
    """Variable-rate videos (48 frames, frame i of value 5i), by name; and videos starting
    after their audio (`after_audio`)."""
    frames = [np.full((48, 64, 3), 5 * i, np.uint8) for i in range(48)]
    made = {
        "late.mp4": after_audio(folder / "late.mp4", frames, 500),
        "late.mkv": after_audio(folder / "late.mkv", frames, 500),
        "late.ts": after_audio(folder / "late.ts", frames, 500, format="mpegts"),
        "late40.mp4": after_audio(folder / "late40.mp4", frames, 40),
        "alone.mp4": after_audio(folder / "alone.mp4", frames, 500, audio=False),
    }
    for name, times, options in (
        ("vfr.mp4", VFR_PTS, {}),
        ("vfr.mov", VFR_PTS, {}),
        ("vfr.mkv", VFR_PTS, {}),  # Matroska and WebM declare a nominal rate (24)
        ("vfr.webm", VFR_PTS, {"codec": "libvpx-vp9"}),
        ("phone.mp4", PHONE_TICKS, {"time_base": Fraction(1, 90000), "fps": 30}),
        ("phone.mkv", PHONE_TICKS // 90, {"fps": 30}),  # the same in Matroska's milliseconds
        ("screen.mp4", SCREEN_PTS, {"fps": 30}),
        ("screen.mkv", SCREEN_PTS, {"fps": 30}),
        ("pause.mkv", PAUSE_PTS, {}),
        # FLV's packets carry no durations: a frame lasts one output frame (ffmpeg's filter
        # graph rate), not the step before it
        ("vfr.flv", VFR_PTS, {"format": "flv"}),
        ("screen.flv", SCREEN_PTS, {"format": "flv", "fps": 30}),
        ("phone.ts", PHONE_TICKS // 90, {"format": "mpegts", "fps": 30}),
        # frame 30 stamped with frame 29's time (a muxer's or a joiner's artefact)
        (
            "shared.mkv",
            np.concatenate([VFR_PTS[:30], VFR_PTS[29:47]]),
            {"codec_options": {"bf": "0"}},
        ),
    ):
        made[name] = encode(folder / name, frames, pts_ms=times, **options)
    return made


# ffmpeg's command line: the frames `ffmpeg -i VIDEO -vf scale=iw*sar:ih -f rawvideo -pix_fmt
# rgb24` gives for `rgb_videos` (recorded with ffmpeg 9.0.2; tests/data/README.md).
FFMPEG_RGB = Path(__file__).parent / "data" / "ffmpeg_rgb.npz"


def planar_video(
    path: Path, pix_fmt: str, n: int = 2, sample_aspect=None, rotation=None, **tags
) -> Path:
    """FFV1 (lossless: the decoded pictures are the planes written, on any machine) of random
    8x8 blocks in every plane, so that each colour edge shows where the chroma is placed;
    48x32, with the colour `tags` given (colorspace, color_range). With a sample aspect ratio,
    lossless H.264 (qp 0), whose bitstream carries it; `rotation`: a display matrix (MP4)."""
    rng = np.random.default_rng(len(path.name))
    depth = av.VideoFormat(pix_fmt).components[0].bits
    dtype = np.uint16 if depth > 8 else np.uint8
    with av.open(str(path), "w") as container:
        if sample_aspect is None:
            stream = container.add_stream("ffv1", rate=24)
        else:
            stream = container.add_stream("libx264", rate=24, options={"qp": "0"})
            stream.codec_context.sample_aspect_ratio = sample_aspect
        stream.width, stream.height, stream.pix_fmt = 48, 32, pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for name, value in tags.items():
            setattr(stream.codec_context, name, value)
        for i in range(n):
            frame = av.VideoFrame(48, 32, pix_fmt)
            for name, value in tags.items():
                setattr(frame, name, value)
            for plane in frame.planes:
                blocks = rng.integers(16, 236, (-(-plane.height // 8), -(-plane.width // 8)))
                values = np.kron(blocks, np.ones((8, 8), int))[: plane.height, : plane.width]
                rows = np.zeros((plane.height, plane.line_size // dtype().itemsize), dtype)
                rows[:, : plane.width] = values << (depth - 8)
                plane.update(rows.tobytes())
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def exif_mjpeg_video(path: Path, n: int = 4, rotation=None) -> Path:
    """A camera's MJPEG video: JPEG pictures (of `pattern`) each carrying EXIF, as digital
    cameras record them in AVI and QuickTime; FFmpeg 8's decoder attaches the EXIF to each
    frame as side data PyAV 18 has no name for. `rotation`: a display matrix (QuickTime)."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Camera maker", "Camera model"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n):
            picture = io.BytesIO()
            Image.fromarray(pattern(i, 48, 64)).save(picture, "JPEG", quality=95, exif=exif)
            packet = av.Packet(picture.getvalue())
            packet.stream, packet.time_base = stream, Fraction(1, 24)
            packet.pts = packet.dts = i
            packet.is_keyframe = True
            container.mux(packet)
    return path


def rgb_videos(folder: Path) -> dict[str, Path]:
    """Videos whose RGB frames the test suite compares with ffmpeg's command line."""
    return {
        "p10.mkv": planar_video(folder / "p10.mkv", "yuv420p10le", color_range=1),
        "p10_full_709.mkv": planar_video(
            folder / "p10_full_709.mkv", "yuv422p10le", colorspace=1, color_range=2
        ),
        "p12_2020.mkv": planar_video(
            folder / "p12_2020.mkv", "yuv420p12le", colorspace=9, color_range=1
        ),
        "p8_709.mkv": planar_video(folder / "p8_709.mkv", "yuv420p", colorspace=1, color_range=1),
        "anamorphic_p10.mp4": planar_video(
            folder / "anamorphic_p10.mp4", "yuv420p10le", sample_aspect=Fraction(32, 27)
        ),
        # turned upright before the scale to the display width, as ffmpeg's autorotation is
        "anamorphic_turned.mp4": planar_video(
            folder / "anamorphic_turned.mp4", "yuv420p", sample_aspect=Fraction(40, 33), rotation=90
        ),
        "anamorphic_upside_down.mp4": planar_video(
            folder / "anamorphic_upside_down.mp4",
            "yuv420p",
            sample_aspect=Fraction(40, 33),
            rotation=180,
        ),
        "exif.avi": exif_mjpeg_video(folder / "exif.avi"),
        "exif_turned.mov": exif_mjpeg_video(folder / "exif_turned.mov", rotation=90),
    }


def unusable_videos(folder: Path, demo: Path) -> dict[str, tuple[Path, str]]:
    """id -> (file, words its failure reason must hold)."""
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("these are my notes, not a video\n" * 40)
    streamable = pattern_video(folder / "whole.mp4", n=64, movflags="faststart")
    return {
        "zero_byte": (folder / "empty.mp4", "empty file (0 bytes)"),
        "truncated_demo": (cut_in_half(demo, folder / "cut_demo.mp4"), "truncated"),
        "truncated_streamable": (cut_in_half(streamable, folder / "cut_fast.mp4"), "truncated"),
        "text_as_mp4": (folder / "notes.mp4", "not a decodable video file"),
        "audio_only": (audio_only(folder / "audio.mp4"), "no video stream"),
        "audio_with_cover": (
            audio_only(folder / "song.mp4", cover=True),
            "no video stream, only a cover picture",
        ),
        "one_frame": (pattern_video(folder / "one.mp4", n=1), "shorter than one clip"),
        "future_matroska": (
            future_matroska(folder / "future.mkv"),
            "uses a feature this FFmpeg does not implement",
        ),
        "index_asks_for_too_much": (
            huge_index_count(pattern_video(folder / "huge.mp4"), folder / "huge_count.mp4"),
            "ffmpeg cannot allocate the memory its header asks for",
        ),
        "codec_unknown": (
            zeroed_box(pattern_video(folder / "nocodec.mp4"), folder / "no_codec.mp4", b"minf"),
            "codec is unknown to this FFmpeg build",
        ),
    }


def huge_index_count(source: Path, path: Path) -> Path:
    """An MP4 whose time-to-sample table (stts) claims 268 million entries: ffmpeg's MP4 demuxer
    fails to allocate them (ENOMEM, PyAV's MemoryError) as it opens the file."""
    data = source.read_bytes()
    at = data.index(b"stts") + 8  # after the box type, its version and flags: the entry count
    path.write_bytes(data[:at] + (0x0FFFFFFF).to_bytes(4, "big") + data[at + 4 :])
    return path


def zeroed_box(source: Path, path: Path, box: bytes) -> Path:
    """`source` with one MP4 box's bytes zeroed (its header kept): zeroing the video track's
    media information (minf) leaves a video stream whose codec ffmpeg does not know."""
    data = bytearray(source.read_bytes())
    at = data.index(box) - 4
    size = int.from_bytes(data[at : at + 4], "big")
    data[at + 8 : at + size] = bytes(size - 8)
    path.write_bytes(bytes(data))
    return path


def webp_animation(path: Path, n=48, lossless=True) -> Path:
    """An animated WebP at 24 fps, written by ffmpeg's libwebp encoder."""
    with av.open(str(path), "w", format="webp") as container:
        options = {"lossless": "1"} if lossless else {"quality": "90"}
        stream = container.add_stream("libwebp_anim", rate=24, options=options)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        mux_pattern(container, stream, n)
    return path


def future_matroska(path: Path) -> Path:
    """A Matroska file whose EBML header asks for a reader of version 2 (this FFmpeg reads 1):
    PyAV's PatchWelcomeError, "Not yet implemented in FFmpeg, patches welcome"."""
    data = pattern_video(path).read_bytes()
    read_version = b"\x42\xf7\x81\x01"  # EBMLReadVersion, 1 byte long, = 1
    assert read_version in data[:64]
    path.write_bytes(data.replace(read_version, b"\x42\xf7\x81\x02", 1))
    return path


def unusual_videos(folder: Path) -> dict[str, Path]:
    """id -> valid but unusual video that must extract."""
    return {
        "plain": pattern_video(folder / "plain.mp4"),  # the yardstick for the pixel formats
        "odd_17x9": pattern_video(folder / "odd.mp4", size=(17, 9), pix_fmt="yuv444p"),
        "wide_4000x20": pattern_video(folder / "wide.mp4", size=(4000, 20)),
        "rotated_90": pattern_video(folder / "rotated.mp4", rotation=90),
        "variable_rate": pattern_video(folder / "vfr.mp4", pts_ms=VFR_PTS),
        "yuv420p10le": pattern_video(folder / "p10.mp4", pix_fmt="yuv420p10le"),
        "yuv444p": pattern_video(folder / "p444.mp4", pix_fmt="yuv444p"),
        "size_change": size_change_video(folder / "joined.ts"),
        "picture_then_video": picture_then_video(folder / "picture_first.mkv"),
        "animated_webp": webp_animation(folder / "animation.webp"),
        "http_response_before": bytes_before(
            pattern_video(folder / "download.mp4"), folder / "saved.mp4", HTTP_RESPONSE
        ),
    }


# What a download saved with its response's headers starts with.
HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 48213\r\n\r\n"


def bytes_before(video: Path, path: Path, head: bytes) -> Path:
    """A copy of `video` with `head` before its first byte."""
    path.write_bytes(head + video.read_bytes())
    return path


def manifest_of(demo_manifest: Path, out: Path, extra: dict[str, Path], n_demo=3) -> Path:
    m = read_manifest(demo_manifest)
    ids = m.video_ids[:n_demo] + list(extra)
    paths = [str(p) for p in m.paths[:n_demo]] + [str(p) for p in extra.values()]
    labels = np.zeros((len(ids), len(m.label_names)), np.uint8)
    labels[:n_demo] = m.labels[:n_demo]
    labels[np.arange(len(ids)), np.arange(len(ids)) % len(m.label_names)] = 1
    splits = np.array([[0], [1], [2]] * len(ids), np.uint8)[: len(ids)]
    return write_manifest(out / "manifest.csv", ids, paths, m.label_names, labels, splits)


def cli(*args, limit_bytes: int | None = None, timeout=300) -> subprocess.CompletedProcess:
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run(
        [str(BIN / args[0]), *map(str, args[1:])],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        preexec_fn=limit if limit_bytes else None,
    )


def extract_run(manifest: Path, out: Path, *options, timeout=300) -> subprocess.CompletedProcess:
    """`extract run` of efficientnet_lite0 on `manifest` into `out`, with more options."""
    return cli(
        "extract",
        "run",
        "-m",
        manifest,
        "-b",
        "efficientnet_lite0",
        "-o",
        out,
        *options,
        timeout=timeout,
    )


def error_lines(run: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in run.stderr, run.stderr
    return [line for line in run.stderr.splitlines() if line.startswith("error:")]


# --- one run over every bad and unusual video, shared by the per-row tests ---------------------


@pytest.fixture(scope="module")
def mixed(demo_manifest, tmp_path_factory):
    """`extract run` (the CLI) over 3 demo videos + every unusable + every unusual video."""
    folder = tmp_path_factory.mktemp("bad_input")
    demo = read_manifest(demo_manifest).paths[3]
    unusable = unusable_videos(folder, demo)
    unusual = unusual_videos(folder)
    extra = {**{k: v[0] for k, v in unusable.items()}, **unusual}
    manifest = manifest_of(demo_manifest, folder, extra)
    run = extract_run(manifest, folder / "out", *FAST_OPTIONS)
    alone = manifest_of(demo_manifest, folder / "alone", {})
    reference = extract_run(alone, folder / "alone_out", *FAST_OPTIONS)
    assert reference.returncode == 0, reference.stderr
    return {
        "run": run,
        "path": folder / "out" / OUT_NAME,
        "reference": folder / "alone_out" / OUT_NAME,
        "unusable": unusable,
        "unusual": unusual,
        "folder": folder,
    }


@pytest.mark.parametrize(
    "case",
    [
        "zero_byte",
        "truncated_demo",
        "truncated_streamable",
        "text_as_mp4",
        "audio_only",
        "audio_with_cover",
        "one_frame",
        "future_matroska",
        "index_asks_for_too_much",
        "codec_unknown",
    ],
)
def test_unusable_video_is_listed_and_the_rest_extracted(mixed, case):
    run, path = mixed["run"], mixed["path"]
    video, words = mixed["unusable"][case]
    assert run.returncode == 1, run.stderr  # failures without --allow-failures
    assert error_lines(run) == []
    lines = [line for line in run.stderr.splitlines() if str(video) in line]
    assert len(lines) == 1 and words in lines[0], run.stderr
    with path.with_suffix(".failures.csv").open() as handle:
        rows = {row["video_id"]: row for row in csv.DictReader(handle)}
    assert rows[case]["path"] == str(video) and words in rows[case]["reason"]
    with FeatureFile(path) as f:
        assert case not in f.video_ids
        assert {x["video_id"] for x in f.meta.failures} == set(mixed["unusable"])
    verify_features(path)
    assert not list(path.parent.glob(".*tmp*")) and not list(path.parent.glob(".*.work"))


def test_other_videos_features_are_intact(mixed):
    with FeatureFile(mixed["path"]) as f, FeatureFile(mixed["reference"]) as ref:
        assert f.video_ids[:3] == ref.video_ids
        for i in range(3):
            np.testing.assert_array_equal(f.video(i).features, ref.video(i).features)
            np.testing.assert_array_equal(f.video(i).frames, ref.video(i).frames)


def test_allow_failures_exits_zero(demo_manifest, tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    manifest = manifest_of(demo_manifest, tmp_path, {"empty": tmp_path / "empty.mp4"}, n_demo=3)
    run = extract_run(manifest, tmp_path / "out", "--allow-failures", *FAST_OPTIONS)
    assert run.returncode == 0 and error_lines(run) == []
    assert sum("empty.mp4" in line for line in run.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "case",
    [
        "odd_17x9",
        "wide_4000x20",
        "rotated_90",
        "variable_rate",
        "yuv420p10le",
        "yuv444p",
        "size_change",
        "picture_then_video",
        "http_response_before",
        "animated_webp",
    ],
)
def test_unusual_video_is_extracted(mixed, case):
    with FeatureFile(mixed["path"]) as f:
        assert case in f.video_ids, mixed["run"].stderr
        features = f.video_features(f.video_ids.index(case))
        assert len(features) >= 2 and np.all(np.isfinite(features))
        if case in ("yuv420p10le", "yuv444p", "animated_webp"):
            # The same pictures as `plain` (8-bit 4:2:0 H.264): nearly the same embeddings,
            # nearer than those of another video.
            def cosine(a, b):
                return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))

            plain = f.video_features(f.video_ids.index("plain"))
            other = f.video_features(0)[: len(plain)]
            assert features.shape == plain.shape
            same = cosine(features, plain)
            # (WebP's lossy coding moves EfficientNet-Lite0's embedding to a cosine of 0.86)
            assert same.min() > 0.8 and same.min() > cosine(plain[: len(other)], other).max()


def test_unusual_videos_give_transnetv2_its_frames(tmp_path):
    """Each unusual video's 48x27 frames for TransNetV2 (made by libavfilter, as ffmpeg makes
    them for the package) come one per frame, upright, showing what the frames show (near a
    torch resize of them; a size change mid-stream rebuilds the chain, an animated WebP goes
    through it from Pillow's RGB)."""
    for name, path in unusual_videos(tmp_path).items():
        chunks = list(VideoSource(path, small=True).chunks())
        frames = np.concatenate([c[1] for c in chunks])
        small = np.concatenate([c[2] for c in chunks])
        assert small.shape == (len(frames), 27, 48, 3) and small.dtype == np.uint8, name
        shrunk = TF.resize(
            torch.from_numpy(frames).permute(0, 3, 1, 2), [27, 48], antialias=True
        ).permute(0, 2, 3, 1)
        assert np.abs(small.astype(int) - shrunk.numpy()).mean() < 8, name


def test_the_video_stream_is_the_video_not_a_picture_before_it(tmp_path):
    """A still picture muxed as the first video stream is passed over for the video, as ffmpeg
    and decord pick it, by the decoder and by the header read that balances the shards."""
    path = picture_then_video(tmp_path / "picture_first.mkv", n=24)
    source = VideoSource(path)
    assert (source.info.n_frames, source.info.width, source.info.height) == (24, 64, 48)
    frames = np.concatenate([chunk for _, chunk, _ in source.chunks()])
    assert np.abs(frames.astype(int) - np.stack([pattern(i, 48, 64) for i in range(24)])).mean() < 6
    assert header_frames(path) == 24
    assert header_frames(audio_only(tmp_path / "song.mp4", cover=True)) == 0


@pytest.mark.parametrize(
    "name, fmt, codec, rate, size",
    [
        ("raw.m2v", "mpeg2video", "mpeg2video", Fraction(24), (64, 48)),  # header: 25 fps
        # raw H.264 and HEVC: no timestamps, the demuxer's 25 fps; the stream's timing says 30
        ("raw.h264", "h264", "libx264", Fraction(30), (64, 48)),
        ("raw.hevc", "hevc", "libx265", Fraction(30000, 1001), (64, 48)),
        ("vp8.ivf", "ivf", "libvpx", Fraction(24), (64, 48)),  # header: no average rate
        ("v.nut", "nut", "mpeg4", Fraction(24), (64, 48)),  # header: no average rate
        ("ntsc.dv", "dv", "dvvideo", Fraction(30000, 1001), (720, 480)),  # header: 60000 fps
        # raw Dirac (VC-2): its parser's times are picture numbers (0, 1, 2 in 1/1,200,000 s;
        # before, read as times: 4 frames of 24), and it ends on a parse unit of no picture
        ("raw.drc", "dirac", "vc2", Fraction(30), (64, 48)),
    ],
)
def test_a_header_that_misstates_the_rate_gives_way_to_the_timestamps(
    tmp_path, name, fmt, codec, rate, size
):
    """Streams without an index declare a wrong frame rate or none; evenly spaced timestamps
    say the rate (raw streams' times are the demuxer's guesses, which ffmpeg's command line
    drops: their own timing information says it), and the video is read frame by frame at it
    (not resampled as variable)."""
    width, height = size
    path = tmp_path / name
    with av.open(str(path), "w", format=fmt) as container:
        options = {"b": "2M"} if codec == "vc2" else None  # VC-2 needs a bit rate
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv411p" if codec == "dvvideo" else "yuv420p"
        for i in range(24):
            frame = av.VideoFrame.from_ndarray(pattern(i, height, width), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    source = VideoSource(path)
    assert source.info.fps == pytest.approx(float(rate), rel=1e-9)
    assert source.info.n_frames == 24 and not source.info.variable_rate
    frames = np.concatenate([chunk for _, chunk, _ in source.chunks()])
    if codec == "vc2":  # FFmpeg's VC-2 encoder is far off at this size: its own decode, in order
        with av.open(str(path)) as container:
            decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        np.testing.assert_array_equal(frames, np.stack(decoded))
    elif source.info.width == width:  # DV's pixels are not square: its frames are resized
        expected = np.stack([pattern(i, height, width) for i in range(24)])
        assert np.abs(frames.astype(int) - expected).mean() < 12


X264_GOP = {"g": "50", "keyint_min": "50", "sc_threshold": "0", "bf": "2"}


@pytest.mark.parametrize(
    "fmt, codec, options",
    [
        ("mpegts", "libx264", X264_GOP),  # a broadcast capture started mid-GOP
        ("mpegts", "libx265", {"g": "50", "bf": "2"}),  # open GOPs: leading pictures after a CRA
        ("mpegts", "mpeg2video", {"g": "15", "bf": "2"}),  # open GOPs
        ("h264", "libx264", X264_GOP),  # a camera's raw stream cut with `tail -c`
        # no keyframes after the first: intra refresh, shown once a refresh completes
        ("mpegts", "libx264", {"x264-params": "intra-refresh=1:keyint=50"}),
        ("h264", "libx264", {"x264-params": "intra-refresh=1:keyint=50"}),
    ],
)
def test_a_stream_that_starts_mid_gop_is_shown_from_its_first_keyframe(
    tmp_path, fmt, codec, options
):
    """The packets before a stream's first keyframe decode to nothing (the decoder drops them,
    as ffmpeg and players show the stream from its first keyframe), and so do an open GOP's
    leading pictures and those before an intra refresh completes: they are no part of the video,
    neither frames to conceal nor a timeline gap. Before, a 2 s GOP cut in half made 27 of 177
    frames 'missing' and the video failed."""
    n = 250
    frames = (pattern(i, 48, 64) for i in range(n))
    path = encode(
        tmp_path / f"whole.{fmt}", frames, 25, format=fmt, codec=codec, codec_options=options
    )
    data = path.read_bytes()
    cut = tmp_path / f"cut.{fmt}"
    at = int(len(data) * 0.3) // 188 * 188  # mid-GOP, on a TS packet
    cut.write_bytes(data[at:])
    while fmt == "h264" and not _ffmpeg_opens(cut):  # what ffmpeg shows: see the test below
        at += 1
        cut.write_bytes(data[at:])
    source = VideoSource(cut)
    frames = np.concatenate([chunk for _, chunk, _ in source.chunks()])
    shown = sum(len(p.decode()) for p in av.open(str(cut)).demux(video=0))  # as ffmpeg shows it
    assert source.info.n_frames == len(frames) == shown and source.concealed == 0
    assert source.info.fps == 25 and not source.info.variable_rate
    first = n - shown  # every frame from the first keyframe on, in order
    expected = np.stack([pattern(first + i, 48, 64) for i in range(shown)])
    assert np.abs(frames.astype(int) - expected).mean() < 12


def _ffmpeg_opens(path: Path) -> bool:
    try:
        av.open(str(path)).close()
    except av.error.InvalidDataError:
        return False
    return True


def test_a_raw_stream_cut_where_ffmpeg_cannot_probe_it_is_read_from_its_parameter_sets(tmp_path):
    """A raw H.264 stream cut at one of the places (a few in a hundred) where ffmpeg cannot
    open it (the bytes before the first start code make its probe, or its extradata filter,
    fail): read from its first parameter set on, every frame ffmpeg decodes from there."""
    n = 250
    frames = (pattern(i, 48, 64) for i in range(n))
    data = encode(tmp_path / "whole.h264", frames, 25, format="h264", codec_options=X264_GOP)
    data = data.read_bytes()
    cut, at = tmp_path / "cut.h264", int(len(data) * 0.3)
    cut.write_bytes(data[at:])
    while _ffmpeg_opens(cut):
        at += 1
        cut.write_bytes(data[at:])
    assert at < len(data) * 0.5  # such places are not rare
    sps = data.index(b"\x00\x00\x01\x67", at)  # libx264's sequence parameter sets
    reference = tmp_path / "from_sps.h264"
    reference.write_bytes(data[sps:])
    with av.open(str(reference)) as container:
        expected = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    source = VideoSource(cut)
    frames = np.concatenate([chunk for _, chunk, _ in source.chunks()])
    assert source.info.n_frames == len(frames) == len(expected) > 0 and source.concealed == 0
    assert source.info.fps == 25
    np.testing.assert_array_equal(frames, expected)


def test_an_avi_without_index_or_frame_count_reads_every_frame(tmp_path):
    """An AVI whose capture was killed before it closed the file: no index, header frame counts
    0. Its packets carry guessed times (H.264 with B-frames: the frames' times differ from their
    packets'); every frame is read, in order, none taken for the stream's head."""
    import struct

    data = bytearray(pattern_video(tmp_path / "v.avi", n=48, format="avi").read_bytes())
    data = data[: data.rfind(b"idx1")]
    struct.pack_into("<I", data, data.find(b"avih") + 8 + 16, 0)  # dwTotalFrames
    struct.pack_into("<I", data, data.find(b"strh") + 8 + 32, 0)  # dwLength
    path = tmp_path / "killed.avi"
    path.write_bytes(bytes(data))
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # nothing says how many
        times = [p.pts for p in container.demux(video=0) if p.size]
    with av.open(str(path)) as container:
        assert [f.pts for f in container.decode(video=0)] != times  # reordered, guessed
    source = VideoSource(path)
    frames = np.concatenate([chunk for _, chunk, _ in source.chunks()])
    assert source.info.n_frames == len(frames) == 48 and source.concealed == 0
    expected = np.stack([pattern(i, 48, 64) for i in range(48)])
    assert np.abs(frames.astype(int) - expected).mean() < 12


@pytest.mark.parametrize("length", [480, 2**31 - 1, 24, 0])
def test_an_avi_whose_stream_header_misstates_its_length_reads_every_frame(tmp_path, length):
    """A damaged frame count in an AVI's stream header (dwLength, which makes the duration as
    wrong), the file whole with its index: the index's frames are the video, all of them. Cut
    short, its index goes with its end, and a count too high leaves frames missing."""
    intact = pattern_video(tmp_path / "v.avi", n=48, format="avi")
    data = bytearray(intact.read_bytes())
    struct.pack_into("<I", data, data.find(b"strh") + 8 + 32, length)  # dwLength
    path = tmp_path / "damaged.avi"
    path.write_bytes(bytes(data))
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == length
    source, expected = VideoSource(path), VideoSource(intact)
    assert (source.info.n_frames, source.info.fps) == (48, expected.info.fps)
    assert header_frames(path) == 48
    frames = np.concatenate([chunk for _, chunk, _ in source.chunks()])
    np.testing.assert_array_equal(frames, np.concatenate([c for _, c, _ in expected.chunks()]))
    if length > 48:
        cut = tmp_path / "cut.avi"
        cut.write_bytes(bytes(data[: len(data) * 4 // 5]))
        with pytest.raises(VideoError, match=rf"^the data ends after \d+ of its {length} frames"):
            VideoSource(cut)


@pytest.mark.parametrize("cut", ["end", "start"])
@pytest.mark.parametrize(
    "name, codec, pix_fmt",
    [("trim.mov", "mjpeg", "yuvj420p"), ("trim.mp4", "libx264", "yuv420p")],
)
def test_an_edit_list_that_trims_the_video_shows_the_part_it_keeps(
    tmp_path, name, codec, pix_fmt, cut
):
    """A trim without re-encoding (QuickTime's, `ffmpeg -ss/-t -c copy`) leaves every sample in
    the file and an edit list that shows a part of them: the last 12 of 48 frames cut, or the
    first 12. The video is that part, as players show it. Before, an intra-only codec's trimmed
    file counted the samples the edit list leaves out as missing and failed ("the data ends
    after 36 of its 48 frames")."""
    intact = pattern_video(tmp_path / name, n=48, codec=codec, pix_fmt=pix_fmt)
    data = bytearray(intact.read_bytes())
    at = data.find(b"elst") + 12  # one entry (version 0): segment duration, media time
    duration, media_time = struct.unpack_from(">Ii", data, at)
    media_scale = struct.unpack_from(">I", data, data.find(b"mdhd") + 16)[0]  # units per second
    skip = media_scale * 12 // 24 if cut == "start" else 0  # 12 frames at 24 fps
    struct.pack_into(">Ii", data, at, duration * 36 // 48, media_time + skip)
    path = tmp_path / f"cut-{cut}-{name}"
    path.write_bytes(bytes(data))
    source = VideoSource(path)
    frames = np.concatenate([chunk for _, chunk, _ in source.chunks()])
    assert source.info.n_frames == len(frames) == 36 and source.concealed == 0
    whole = np.concatenate([chunk for _, chunk, _ in VideoSource(intact).chunks()])
    np.testing.assert_array_equal(frames, whole[12:] if cut == "start" else whole[:36])
    # the index's count; H.264 keeps the samples outside the edit in its index (to decode from
    # a keyframe, marked discard), so its header count stands: an estimate 12 frames high
    assert header_frames(path) == (36 if codec == "mjpeg" else 48)


def test_a_sample_table_that_loses_frames_still_counts_them_missing(tmp_path):
    """The counterpart of the trim: a damaged sample size (the 25th sample 2 GB long) ends the
    MP4 demuxer's index early while the duration still covers every frame. The frames the
    index lost are missing, beyond the budget: the video fails, as a truncated one does."""
    data = bytearray(pattern_video(tmp_path / "v.mp4", n=48).read_bytes())
    sizes = data.find(b"stsz") + 4 + 12  # after version and flags, sample size, sample count
    struct.pack_into(">I", data, sizes + 4 * 24, 0x7F000000)
    path = tmp_path / "lost.mp4"
    path.write_bytes(bytes(data))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert 1 < len(stream.index_entries) < stream.frames == 48  # the index ends early
    with pytest.raises(VideoError, match="the data ends after"):
        VideoSource(path).info  # noqa: B018
    assert header_frames(path) == 48


def damaged_time_scale(intact: Path, path: Path, scale: float) -> Path:
    """A copy of an MP4 whose track time scale (`mdhd`) is `scale` times its own (0: one tick a
    second; 100: 100x too fine)."""
    data = bytearray(intact.read_bytes())
    at = data.index(b"mdhd") + 4 + 4 + 8  # version and flags, creation and modification times
    timescale = int.from_bytes(data[at : at + 4], "big")
    data[at : at + 4] = max(1, int(timescale * scale)).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("codec", ["h264", "mpeg2video"])
def test_a_damaged_time_scale_is_read_at_the_bitstreams_rate(tmp_path, codec):
    """The MP4 track's time scale 100x too fine (frames 1/2,400 s apart), where the bitstream
    declares its own rate (H.264's VUI, MPEG-2's sequence header): every frame, in order, at
    that rate, as the undamaged file is read."""
    intact = pattern_video(tmp_path / "intact.mp4", n=24, codec=codec)
    source = VideoSource(damaged_time_scale(intact, tmp_path / "damaged.mp4", 100))
    assert source.info.fps == VideoSource(intact).info.fps == 24
    assert source.info.n_frames == 24 and not source.info.variable_rate
    frames = np.concatenate([chunk for _, chunk, _ in source.chunks()])
    expected = np.concatenate([chunk for _, chunk, _ in VideoSource(intact).chunks()])
    np.testing.assert_array_equal(frames, expected)
    assert source.concealed == 0


@pytest.mark.parametrize(
    "codec, scale",
    [("mjpeg", 100), ("mjpeg", 0), ("h264", 0)],
    ids=["mjpeg", "mjpeg-1s", "h264-1s"],
)
def test_a_damaged_time_scale_without_a_rate_to_go_by_says_so(tmp_path, codec, scale):
    """MJPEG declares no rate of its own; at one tick a second the edit list, read in the
    damaged clock, hides every frame but the first: one line naming the damage, neither a
    video read at 1/512 or 2,400 fps nor one frame of 24, nor a truncation."""
    pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    intact = pattern_video(tmp_path / "intact.mp4", n=24, codec=codec, pix_fmt=pix_fmt)
    with pytest.raises(VideoError, match=r"^[^;]*frame rate[^;]*\(a damaged header\)$"):
        VideoSource(damaged_time_scale(intact, tmp_path / "damaged.mp4", scale))


def wav_header(samples: int = 32) -> bytes:
    """A WAV file of `samples` silent 16-bit mono samples: what ffmpeg opens as audio."""
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 8000, 16000, 2, 16)
    size = 2 * samples
    riff = struct.pack("<I", 4 + len(fmt) + 8 + size)
    return b"RIFF" + riff + b"WAVE" + fmt + b"data" + struct.pack("<I", size) + bytes(size)


@pytest.mark.parametrize(
    "name, encoding, before",
    [
        ("v.mp4", {}, "random"),
        ("v.mov", {}, "random"),
        ("v.mkv", {}, "random"),
        ("v.webm", {"codec": "libvpx-vp9"}, "random"),
        ("streamable.mp4", {"movflags": "faststart"}, "random"),
        ("after_audio.mp4", {}, "wav"),
    ],
)
def test_bytes_before_the_container_are_read_past(tmp_path, name, encoding, before):
    """Bytes before an MP4, QuickTime, Matroska or WebM header (random ones, the last of them
    the header's own first byte twice; or a whole WAV file): the file reads from its header
    on, every frame as the file without them, and its header gives the same frame count."""
    intact = pattern_video(tmp_path / name, n=24, **encoding)
    if before == "random":
        head = np.random.default_rng(3).bytes(1500) + intact.read_bytes()[:1]
    else:
        head = wav_header()
    damaged = bytes_before(intact, tmp_path / f"damaged-{name}", head)
    try:  # what ffmpeg makes of it alone: nothing, audio, or a raw stream (VP9 here: H.263)
        with av.open(str(damaged)) as alone:
            assert alone.format.name in RAW_DEMUXERS or not alone.streams.video
    except av.error.InvalidDataError:
        pass
    source, expected = VideoSource(damaged), VideoSource(intact)
    assert (source.info.n_frames, source.info.fps) == (expected.info.n_frames, expected.info.fps)
    frames = np.concatenate([chunk for _, chunk, _ in source.chunks()])
    np.testing.assert_array_equal(frames, np.concatenate([c for _, c, _ in expected.chunks()]))
    assert header_frames(damaged) == header_frames(intact)


def test_a_container_mark_in_bytes_that_are_no_video_is_not_a_video(tmp_path):
    path = tmp_path / "noise.mp4"
    rng = np.random.default_rng(5)
    path.write_bytes(rng.bytes(300) + b"\x00\x00\x00\x18ftypisom" + rng.bytes(3000))
    with pytest.raises(VideoError, match="not a decodable video file"):
        VideoSource(path)
    assert header_frames(path) == 0


def test_a_download_saved_under_another_formats_name_is_read_past_its_headers(tmp_path):
    """An MP4 with its HTTP response's headers before it, saved as `.gif`: ffmpeg takes it for a
    GIF by its name and runs out of data; the file reads from the MP4 header on."""
    intact = pattern_video(tmp_path / "v.mp4", n=24)
    damaged = bytes_before(intact, tmp_path / "saved.gif", HTTP_RESPONSE)
    with pytest.raises(av.error.EOFError):
        av.open(str(damaged)).close()
    source, expected = VideoSource(damaged), VideoSource(intact)
    assert source.info.n_frames == expected.info.n_frames == header_frames(damaged) == 24
    frames = np.concatenate([chunk for _, chunk, _ in source.chunks()])
    np.testing.assert_array_equal(frames, np.concatenate([c for _, c, _ in expected.chunks()]))


def test_a_file_that_ends_inside_its_header_says_so(tmp_path):
    """Out of data before the header is read: a file cut there, or text under a video's name
    (ffmpeg picks GIF by the name), is no video whose last frames are lost."""
    text = tmp_path / "notes.gif"
    text.write_text("not a picture\n" * 20)
    with pytest.raises(VideoError, match=r"^the file ends inside its header \(truncated"):
        VideoSource(text)
    cut = tmp_path / "cut.webm"
    cut.write_bytes(pattern_video(tmp_path / "v.webm", codec="libvpx-vp9").read_bytes()[:200])
    with pytest.raises(VideoError, match=r"^input/output error while reading its header"):
        VideoSource(cut)


def test_a_stream_of_which_no_frame_decodes_says_so(tmp_path):
    """A raw HEVC stream cut after its last parameter sets, inside its last random-access
    picture: ffmpeg opens it and demuxes its packets, and not one of them decodes to a frame
    (no reference picture) nor raises."""
    frames = (pattern(i, 48, 64) for i in range(100))
    options = {"g": "50", "bf": "2"}
    data = encode(
        tmp_path / "w.hevc", frames, 25, format="hevc", codec="libx265", codec_options=options
    ).read_bytes()
    cut = tmp_path / "tail.hevc"
    cut.write_bytes(data[data.rindex(b"\x00\x00\x01\x40") + 300 :])  # after the last VPS
    with av.open(str(cut)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
        assert packets and not any(p.decode() for p in packets)
    with pytest.raises(VideoError, match="^no frame decodes"):
        VideoSource(cut)


@pytest.mark.parametrize("lossless", [True, False])
def test_an_animated_webp_is_read_with_libwebp(tmp_path, lossless):
    """Animated WebP: FFmpeg (8.1 here) demuxes its packets but decodes no frame of them;
    Pillow's libwebp reads it, every frame, in order, each at its duration (42, 41, 42 ms ...:
    24 fps)."""
    path = webp_animation(tmp_path / "anim.webp", n=30, lossless=lossless)
    with av.open(str(path)) as container:  # what FFmpeg alone makes of it
        decoded = 0
        with contextlib.suppress(av.FFmpegError):
            for packet in container.demux(video=0):
                decoded += len(packet.decode())
        assert decoded == 0
    source = VideoSource(path)
    frames = np.concatenate([chunk for _, chunk, _ in source.chunks()])
    assert source.info.n_frames == len(frames) == header_frames(path) == 30
    assert source.info.fps == pytest.approx(24, rel=1e-3) and not source.info.variable_rate
    expected = np.stack([pattern(i, 48, 64) for i in range(30)])
    assert np.abs(frames.astype(int) - expected).mean() < 12
    wrong_order = np.abs(frames[1:].astype(int) - expected[:-1]).mean()
    assert np.abs(frames[1:].astype(int) - expected[1:]).mean() < wrong_order


def test_the_frame_rate_from_timestamps_and_header():
    ms = Fraction(1, 1000)
    assert frame_rate([0, 40, 80, 120], ms, Fraction(25)) == 25.0
    assert frame_rate([120, 0, 80, 40], ms, Fraction(60000)) == 25.0  # decoding order
    assert frame_rate([0, 80, 100, 120], ms, Fraction(20)) == 25.0  # variable: 3 steps in 120 ms
    assert frame_rate([0, 80, 100, 120], ms, None) == 25.0  # ... with or without a header
    assert frame_rate([0, 42, 83, 125], ms, Fraction(24)) == 24.0  # the header's, rounded
    assert frame_rate([0, 42, 125, 167], ms, Fraction(24)) == 24.0  # ... a frame missing
    assert frame_rate([0, 42, 250, 292], ms, Fraction(24)) == 24.0  # ... or 4
    assert frame_rate([0, 42, 292, 333], ms, Fraction(24)) == pytest.approx(3 / 0.333)  # 5
    assert frame_rate([0, 40, 80, 140], ms, Fraction(25)) == pytest.approx(3 / 0.14)
    assert frame_rate([0, 40, 40, 80], ms, Fraction(30)) == 25.0  # a repeated time counts once
    assert frame_rate([0, 40, 10**9], ms, Fraction(24)) == 24.0  # no plausible average: the header
    assert frame_rate([None, None], ms, Fraction(24)) == 24.0  # no timestamps
    assert frame_rate([0], ms, None) == 0.0
    # Where timestamps may jump, a step over JUMP_SECONDS is a discontinuity, not a pause
    jumped = [0, 40, 80, 80 + 60_000, 120 + 60_000]
    assert frame_rate(jumped, ms, None, jumps=True) == 25.0
    assert frame_rate(jumped, ms, None) == pytest.approx(4 / 60.12)


# name -> (file name, encode's options, mean error allowed: the lossy codecs' at their defaults)
WILD_FORMATS = {
    "yuv420p10le": ("v.mp4", {"pix_fmt": "yuv420p10le"}, 6),
    "yuv444p": ("v.mp4", {"pix_fmt": "yuv444p"}, 6),
    "grey_h264": ("v.mp4", {"pix_fmt": "gray"}, 8),
    "rgb_h264": ("v.mkv", {"codec": "libx264rgb", "pix_fmt": "rgb24"}, 3),
    "hevc_12bit": (
        "v.mkv",
        {
            "codec": "libx265",
            "pix_fmt": "yuv420p12le",
            "codec_options": {"x265-params": "log-level=none"},
        },
        6,
    ),
    "vp9_alpha": ("v.webm", {"codec": "libvpx-vp9", "pix_fmt": "yuva420p"}, 6),
    "prores_4444_alpha": ("v.mov", {"codec": "prores_ks", "pix_fmt": "yuva444p10le"}, 2),
    "png_alpha": ("v.mov", {"codec": "png", "pix_fmt": "rgba"}, 1),
    "qtrle_alpha": ("v.mov", {"codec": "qtrle", "pix_fmt": "argb"}, 1),
    "ffv1_16bit": ("v.mkv", {"codec": "ffv1", "pix_fmt": "yuv444p16le"}, 1),
    "utvideo": ("v.avi", {"codec": "utvideo", "pix_fmt": "gbrap"}, 1),
    "raw_bgr": ("v.nut", {"codec": "rawvideo", "pix_fmt": "bgr24"}, 1),
    "full_range": ("v.mp4", {"pix_fmt": "yuvj420p"}, 6),
    "yuv422p": ("v.mp4", {"pix_fmt": "yuv422p"}, 6),
    "interlaced_h264": ("v.mp4", {"codec_options": {"x264-params": "interlaced=1:tff=1"}}, 8),
    "interlaced_mpeg2_ts": (
        "v.ts",
        {"codec": "mpeg2video", "format": "mpegts", "codec_options": {"flags": "+ilme+ildct"}},
        12,
    ),
    "mpeg2_program_stream": ("v.mpg", {"codec": "mpeg2video", "format": "mpeg"}, 12),
    "flv1": ("v.flv", {"codec": "flv", "format": "flv"}, 12),
    "wmv2": ("v.wmv", {"codec": "wmv2", "format": "asf"}, 12),
}


@pytest.mark.parametrize("name", list(WILD_FORMATS))
def test_pixel_formats_decode_to_the_same_picture(tmp_path, name):
    """Each frame is the picture encoded, in its place (closer to it than to its neighbour), and
    so is its 48x27 frame for TransNetV2 (each pixel format through ffmpeg's scale filter)."""
    file_name, options, allowed = WILD_FORMATS[name]
    source = VideoSource(pattern_video(tmp_path / file_name, n=12, **options), small=True)
    assert (source.info.n_frames, source.info.width, source.info.height) == (12, 64, 48)
    assert source.info.fps == 24 and not source.info.variable_rate
    chunks = list(source.chunks())
    frames = np.concatenate([chunk for _, chunk, _ in chunks]).astype(int)
    small = np.concatenate([chunk for _, _, chunk in chunks]).astype(int)
    shrunk = TF.resize(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), [27, 48])
    assert small.shape == (12, 27, 48, 3)
    assert np.abs(small - shrunk.permute(0, 2, 3, 1).numpy()).mean() < 8
    expected = np.stack([pattern(i, 48, 64) for i in range(12)]).astype(int)
    if options.get("pix_fmt") == "gray":  # its luma (BT.601), as ffmpeg converts grey to RGB
        expected = np.repeat(np.rint(expected @ [0.299, 0.587, 0.114])[..., None], 3, axis=-1)
    error = np.abs(frames - expected).mean()
    assert error < allowed
    assert error < np.abs(frames[1:] - expected[:-1]).mean()  # not a frame late


def test_frames_of_another_size_are_scaled_to_the_first_size(tmp_path):
    """Segments of other sizes joined: every frame comes out at the first frame's size, the
    later ones scaled (bicubic, as ffmpeg's scale filter) from their own picture."""
    source = VideoSource(size_change_video(tmp_path / "joined.ts", n=24))
    assert (source.info.width, source.info.height, source.info.n_frames) == (64, 48, 48)
    frames = np.concatenate([chunk for _, chunk, _ in source.chunks()])
    assert frames.shape == (48, 48, 64, 3)
    first = np.stack([pattern(i, 48, 64) for i in range(24)])
    assert np.abs(frames[:24].astype(int) - first).mean() < 6
    small = torch.from_numpy(np.stack([pattern(24 + i, 24, 32) for i in range(24)]))
    scaled = TF.resize(small.permute(0, 3, 1, 2), [48, 64], antialias=True).permute(0, 2, 3, 1)
    assert np.abs(frames[24:].astype(int) - scaled.numpy()).mean() < 10


@pytest.mark.parametrize("size", [(17, 9), (4000, 20)])
def test_odd_sizes_decode_at_their_size(tmp_path, size):
    pix_fmt = "yuv444p" if size[0] % 2 else "yuv420p"
    source = VideoSource(pattern_video(tmp_path / "v.mp4", n=4, size=size, pix_fmt=pix_fmt))
    assert (source.info.width, source.info.height) == size
    _, frames, _ = next(source.chunks())
    assert frames.shape == (4, size[1], size[0], 3)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_is_honoured(tmp_path, rotation):
    """The picture is stored turned clockwise by `rotation` with metadata saying "turn it
    counter-clockwise by `rotation` to show it": the frames must come out as the picture."""
    upright = [pattern(i, 64, 48) for i in range(6)]  # portrait, 48 wide x 64 high
    upright = [np.concatenate([np.zeros((8, 48, 3), np.uint8), p[8:]]) for p in upright]  # a bar
    stored = [np.ascontiguousarray(np.rot90(p, k=-rotation // 90)) for p in upright]
    video = encode(tmp_path / "rotated.mp4", stored, rotation=rotation)
    source = VideoSource(video)
    assert source.info.rotation == rotation
    assert (source.info.height, source.info.width) == (64, 48)
    _, frames, _ = next(source.chunks())
    assert frames.shape == (6, 64, 48, 3)
    assert np.abs(frames.astype(int) - np.stack(upright)).mean() < 6
    assert frames[:, :8].mean() < 20  # the black bar is on top


@pytest.mark.parametrize(
    "rotation, hflip, vflip, shown",
    [  # the filters ffmpeg's autorotation inserts for these matrices (fftools' get_rotation)
        (0, True, False, lambda s: s[:, ::-1]),  # hflip (the matrix reads as 180, mirrored)
        (0, False, True, lambda s: s[::-1]),  # vflip
        (90, True, False, lambda s: np.rot90(s, k=-1)[::-1]),  # transpose=clock_flip
        (90, False, True, lambda s: s.transpose(1, 0, 2)),  # transpose=cclock_flip
        (180, True, False, lambda s: s[::-1]),  # vflip: the turn and the mirror cancel across
    ],
)
def test_mirroring_display_matrix_flips_as_ffmpeg_shows(tmp_path, rotation, hflip, vflip, shown):
    """A display matrix that mirrors (a front camera's, `-display_hflip`) flips the picture as
    ffmpeg shows it (before, only its angle was read: a plain horizontal flip came out upside
    down)."""
    stored = [pattern(i, 48, 64) for i in range(6)]
    stored = [np.concatenate([np.zeros((48, 8, 3), np.uint8), p[:, 8:]], axis=1) for p in stored]
    stored = [np.concatenate([np.full((8, 64, 3), 255, np.uint8), p[8:]]) for p in stored]
    with av.open(str(tmp_path / "mirrored.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(rotation, hflip=hflip, vflip=vflip)
        for image in stored:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    source = VideoSource(tmp_path / "mirrored.mp4", small=True)
    _, frames, small = next(source.chunks())
    expected = np.stack([shown(s) for s in stored])
    assert frames.shape == expected.shape
    assert np.abs(frames.astype(int) - expected).mean() < 6
    # TransNetV2's 48x27 frames are turned the same way (ffmpeg turns before it scales)
    shrunk = TF.resize(torch.from_numpy(expected).permute(0, 3, 1, 2), [27, 48], antialias=True)
    assert np.abs(small.astype(int) - shrunk.permute(0, 2, 3, 1).numpy()).mean() < 6


def shown_frames(source: VideoSource, step: int = 5) -> np.ndarray:
    """The source frame each of a video's frames is, for frames where frame i has value step*i."""
    decoded = np.concatenate([chunk for _, chunk, _ in source.chunks()]).mean((1, 2, 3))
    return np.rint(decoded / step).astype(int)


def test_variable_frame_rate_is_brought_to_ffmpegs_constant_rate(tmp_path):
    """A variable-rate video's frames are those `ffmpeg -i VIDEO -f rawvideo` outputs (and so
    what TransNetV2's `predict_video` reads): at ffmpeg's own guess of the rate, each frame
    repeated over its time on screen, the frame before repeated where one comes late, frames
    dropped where the rate is lower than theirs (recorded from ffmpeg 9.0.2's command line).
    Before, they were sampled at the average rate, which thinned the fast parts: a screen
    recording's 30 fps to 10; and a video starting after its audio began at its first frame,
    every frame number off by the repeats ffmpeg's output starts with."""
    expected = np.load(FFMPEG_CFR)
    for name, path in vfr_videos(tmp_path).items():
        source = VideoSource(path)
        shown = shown_frames(source)
        assert source.info.n_frames == len(shown), name
        np.testing.assert_array_equal(shown, expected[name], err_msg=name)
        with av.open(str(path)) as container:
            assert source.info.fps == float(container.streams.video[0].guessed_rate), name
    # A video that starts after its file's audio starts, as ffmpeg's output does, at the
    # file's start, its first frame repeated (0.5 s: 12 more; 40 ms, a frame's 0.96: one
    # more), but in MPEG-TS (the start of the streams read) and in a file of one stream.
    first = {name: int((expected[name] == 0).sum()) for name in ("late.mp4", "late.mkv")}
    assert first == {"late.mp4": 13, "late.mkv": 13} and (expected["late40.mp4"] == 0).sum() == 2
    for name in ("late.ts", "alone.mp4"):
        np.testing.assert_array_equal(expected[name], np.arange(48))
    # What that keeps: the slow half's frames held, the 50 fps half read at 50 fps; the screen
    # recording's 30 fps parts whole, each pause held on the frame before it, the 60 fps end
    # at 30. Where B-frames reorder a variable-rate MP4, ffmpeg takes each frame's duration
    # from its packet (a step of decoding times): the 2 s pause lands on frame 17, which it
    # holds, dropping the 14 frames after it; 2 frames of the 50 fps half are dropped so.
    vfr = expected["vfr.mp4"]
    assert np.bincount(vfr)[:24].min() == 4 and len(set(vfr)) == 46
    screen = np.bincount(expected["screen.mkv"], minlength=48)
    assert screen[:15].max() == 1 and screen[15] == 59 and screen[31] == 44
    assert screen[17:31].max() == 1 and screen[33:].min() == 0 and screen[33:].max() == 1
    quirk = np.bincount(expected["screen.mp4"], minlength=48)
    assert quirk[17] == 60 and quirk[18:32].max() == 0
    assert 29 not in expected["shared.mkv"]  # its time is frame 30's: the later one shows


def test_frames_are_ffmpegs_rgb_in_every_pixel_format(tmp_path):
    """Each frame is, pixel for pixel, what `ffmpeg -i VIDEO -vf scale=iw*sar:ih -f rawvideo
    -pix_fmt rgb24` outputs (recorded from ffmpeg 9.0.2's command line): 10- and 12-bit
    pictures in limited and full range with BT.709 and BT.2020 tags, non-square pixels brought
    to their display size, and a camera's MJPEG frames carrying EXIF, one video turned by its
    display matrix, and non-square pixels turned (then scaled, as ffmpeg's autorotation turns
    them before any filter). Before, the conversion called libswscale directly, which places
    high bit depths' chroma otherwise (3 levels off ffmpeg's on average, up to 127 at a
    colour's edge);
    and a frame carrying EXIF (side data FFmpeg 8 attaches and PyAV 18 has no name for) failed
    its video with "ValueError: 31 is not a valid Type"."""
    expected = np.load(FFMPEG_RGB)
    for name, path in rgb_videos(tmp_path).items():
        source = VideoSource(path, small=True)
        frames = np.concatenate([chunk for _, chunk, _ in source.chunks()])
        assert frames.shape[0] == source.info.n_frames, name
        np.testing.assert_array_equal(frames.reshape(len(frames), -1), expected[name], name)
    # turned, then scaled: 48x32 at 40:33 turned a quarter is shown 26x48 (before, scaled to
    # 58x32, then turned: 32x58)
    source = VideoSource(tmp_path / "anamorphic_turned.mp4")
    assert (source.info.width, source.info.height) == (26, 48)
    # the camera's pictures as encoded (Pillow's JPEGs of `pattern`), upright when turned
    source = VideoSource(tmp_path / "exif_turned.mov")
    assert source.info.rotation == 90 and (source.info.width, source.info.height) == (48, 64)
    turned = np.concatenate([chunk for _, chunk, _ in source.chunks()]).astype(int)
    upright = np.stack([np.rot90(pattern(i, 48, 64)) for i in range(4)]).astype(int)
    assert np.abs(turned - upright).mean() < 3


def test_a_damaged_clock_does_not_blow_the_timeline_up():
    """One frame stamped hours after the others (a damaged timestamp, or a file start hours
    before the video): ffmpeg would repeat a frame for the hours; such a timeline (ten times
    the frames and an hour longer) is no video's, and its frames are read in order, decided
    before any of it is built."""
    ticks = np.append(np.arange(47) * 40, 47 * 40 + 5 * 3600 * 1000)  # ms: 25 fps, then 5 h
    assert constant_rate(Timing(ticks, [40] * 48, Fraction(1, 1000)), 25.0) is None
    late = Timing(np.arange(48) * 40, [40] * 48, Fraction(1, 1000), lead=5 * 3600 * 1000)
    assert constant_rate(late, 25.0) is None
    pause = Timing(np.append(np.arange(47) * 40, 47 * 40 + 60_000), [40] * 48, Fraction(1, 1000))
    assert len(constant_rate(pause, 25.0)) == 47 + 60 * 25 + 1  # a minute's pause is held


def test_variable_frame_rate_in_mpegts_keeps_time(tmp_path):
    """MPEG-TS, whose rate ffmpeg guesses from its first frames (its versions differ: 12.5
    here, 50 in ffmpeg 9.0.2, so its output is no reference): at that rate, frames in order,
    each shown within two frames of its own time (ffmpeg's tolerance is 1.1), to the end."""
    frames = [np.full((48, 64, 3), 5 * i, np.uint8) for i in range(48)]
    video = encode(tmp_path / "vfr.ts", frames, pts_ms=VFR_PTS, format="mpegts")
    source = VideoSource(video)
    shown = shown_frames(source)
    with av.open(str(video)) as container:
        assert source.info.fps == float(container.streams.video[0].guessed_rate)
    assert source.info.variable_rate and len(shown) == source.info.n_frames
    assert shown[0] == 0 and np.diff(shown).min() >= 0
    times = np.arange(len(shown)) / source.info.fps * 1000  # each output frame's time (ms)
    period = 1000 / source.info.fps
    ends = np.append(VFR_PTS[1:], VFR_PTS[-1] + 20)  # when each frame leaves the screen
    assert (times >= VFR_PTS[shown] - 2 * period).all()
    assert (times <= ends[shown] + 2 * period).all()
    assert times[-1] >= VFR_PTS[-1] - 2 * period


def test_mpegts_clocks_going_back_play_on(tmp_path):
    """Three MPEG-TS recordings joined with `cat`, each clock behind the one before (one at 10
    s, then two that start at 1.4 s as ffmpeg's muxer starts them; an HLS download across an ad
    break is the same): every frame once, in order, at 24 fps, as ffmpeg plays them (before,
    the times were sorted across the joins: frames held for seconds, others skipped)."""
    segments = []
    for k, start in enumerate([10_000, 1_400, 1_400]):
        frames = [np.full((48, 64, 3), 3 * (24 * k + i), np.uint8) for i in range(24)]
        pts_ms = start + np.arange(24) * 1000 / 24
        video = encode(tmp_path / f"{k}.ts", frames, pts_ms=pts_ms, format="mpegts")
        segments.append(video.read_bytes())
    (tmp_path / "joined.ts").write_bytes(b"".join(segments))
    source = VideoSource(tmp_path / "joined.ts")
    assert source.info.n_frames == 72 and not source.info.variable_rate
    assert source.info.fps == pytest.approx(24, rel=1e-3)
    decoded = np.concatenate([chunk for _, chunk, _ in source.chunks()]).mean((1, 2, 3))
    np.testing.assert_array_equal(np.rint(decoded / 3).astype(int), np.arange(72))


def test_an_animated_gifs_centisecond_delays_show_every_frame_once(tmp_path):
    """A GIF at 24 fps is stored with delays of 4 and 5 hundredths (ffmpeg reads its rate as
    25): every frame comes once, in order, at about 24 fps."""
    frames = [np.full((48, 64, 3), 5 * i, np.uint8) for i in range(48)]
    source = VideoSource(encode(tmp_path / "a.gif", frames, pix_fmt="rgb8", codec="gif"))
    assert source.info.n_frames == 48 and not source.info.variable_rate
    assert source.info.fps == pytest.approx(24, abs=0.1)
    decoded = np.concatenate([chunk for _, chunk, _ in source.chunks()]).mean((1, 2, 3))
    np.testing.assert_array_equal(np.rint(decoded / 5).astype(int), np.arange(48))


def test_a_jump_of_the_timestamps_is_closed_where_the_container_may_jump(tmp_path):
    """24 fps with the timestamps a minute ahead from frame 24 on. MPEG-TS (whose timestamps
    may jump: a splice, an encoder restart) plays the frames on: a constant 24 fps, every frame
    once (ffmpeg's command line detects the discontinuity too, yet holds frame 23 for the
    minute and drops the 24 frames after it). In Matroska the minute is a pause, held on frame
    23 (`pause.mkv` above)."""
    frames = [np.full((48, 64, 3), 5 * i, np.uint8) for i in range(48)]
    source = VideoSource(encode(tmp_path / "jump.ts", frames, pts_ms=PAUSE_PTS, format="mpegts"))
    assert source.info.fps == pytest.approx(24, rel=1e-3) and not source.info.variable_rate
    np.testing.assert_array_equal(shown_frames(source), np.arange(48))
    assert (np.load(FFMPEG_CFR)["pause.mkv"] == 23).sum() == 60 * 24  # the minute


def test_edit_list_hides_the_frames_before_its_start(tmp_path):
    """Frames stamped before 0 (as cutting without re-encoding leaves them) sit outside the
    MP4's edit list: they are neither counted nor decoded, and the others all are."""
    frames = [np.full((48, 64, 3), 5 * i, np.uint8) for i in range(48)]  # frame i has value 5i
    source = VideoSource(encode(tmp_path / "edit.mp4", frames, pts_ms=(np.arange(48) - 5) * 40))
    assert source.info.n_frames == 43 and not source.info.variable_rate
    decoded = np.concatenate([chunk for _, chunk, _ in source.chunks()]).mean((1, 2, 3))
    np.testing.assert_array_equal(np.rint(decoded / 5).astype(int), np.arange(5, 48))


def test_constant_rate_videos_are_read_frame_by_frame(demo_manifest):
    source = VideoSource(read_manifest(demo_manifest).paths[0])
    assert not source.info.variable_rate and source.info.rotation == 0


def test_extreme_aspect_is_cropped_before_resizing():
    """4000x20 must not become a 44800-wide image; the crop-first result equals the whole-image
    resize to within one grey level, and ordinary frames take the plain path bit for bit."""
    backbone = create_backbone("efficientnet_lite0")
    resize, size = backbone.spec.resize_size, backbone.spec.input_size
    mode = TF.InterpolationMode(backbone.spec.interpolation)  # timm's configuration: bicubic

    def reference(frames):
        whole = TF.resize(frames.permute(0, 3, 1, 2), [resize], interpolation=mode, antialias=True)
        return TF.center_crop(whole, [size])

    for height, width in [(20, 2000), (2000, 20), (700, 3001)]:
        assert max(height, width) > EXTREME_ASPECT * min(height, width)
        frames = torch.from_numpy(pattern(0, height, width))[None].repeat(2, 1, 1, 1)
        prepared = backbone.prepare(frames)
        assert prepared.shape == (2, 3, size, size)
        assert (prepared.int() - reference(frames).int()).abs().max() <= 1
    for height, width in [(48, 64), (180, 320), (9, 17), (64, 48)]:
        frames = torch.from_numpy(pattern(3, height, width))[None]
        assert torch.equal(backbone.prepare(frames), reference(frames))
    wide = torch.from_numpy(pattern(0, 20, 4000))[None].repeat(64, 1, 1, 1)
    assert backbone.prepare(wide).shape == (64, 3, size, size)  # 64 x 3 x 224 x 44800 otherwise


# --- manifests --------------------------------------------------------------------------------


def bad_manifests(demo_manifest: Path, folder: Path) -> dict[str, tuple[Path, str, str]]:
    """name -> (manifest, row, column) of the first bad cell."""
    good = demo_manifest.read_text().splitlines()
    header, rows = good[0], good[1:4]
    path_col = header.split(",").index("path")
    absolute = []  # the bad manifests live elsewhere: point at the demo videos absolutely
    for row in rows:
        cells = row.split(",")
        cells[path_col] = str(demo_manifest.parent / cells[path_col])
        absolute.append(",".join(cells))
    rows = absolute
    cells = rows[1].split(",")
    label_col = 2
    cases = {}

    def write(name: str, row: str, column: str, lines: list[str]):
        path = folder / f"{name}.csv"
        path.write_text("\n".join([header, *lines]) + "\n")
        cases[name] = (path, row, column)

    missing = cells.copy()
    missing[path_col] = str(folder / "no_such_video.mp4")
    write("missing_file", "row 3", "column path", [rows[0], ",".join(missing), rows[2]])
    label = cells.copy()
    label[label_col] = "2"
    write(
        "non_binary_label",
        "row 3",
        f"column {header.split(',')[label_col]}",
        [rows[0], ",".join(label), rows[2]],
    )
    split = cells.copy()
    split[-1] = "holdout"
    last = header.split(",")[-1]
    write("unknown_split", "row 3", f"column {last}", [rows[0], ",".join(split), rows[2]])
    write("duplicate_id", "row 4", "column video_id", [rows[0], rows[1], rows[1]])
    write("short_row", "row 3", "", [rows[0], ",".join(cells[:-1]), rows[2]])
    return cases


@pytest.mark.parametrize(
    "case", ["missing_file", "non_binary_label", "unknown_split", "duplicate_id", "short_row"]
)
def test_bad_manifest_fails_before_any_work(demo_manifest, tmp_path, case):
    manifest, row, column = bad_manifests(demo_manifest, tmp_path)[case]
    out = tmp_path / "out"
    run = extract_run(manifest, out, *FAST_OPTIONS, timeout=120)
    assert run.returncode == 2
    lines = error_lines(run)
    assert len(lines) == 1 and str(manifest) in lines[0] and row in lines[0], run.stderr
    assert column in lines[0]
    if case == "missing_file":
        assert "no_such_video.mp4" in lines[0]
    assert not out.exists()


# --- a full disk ------------------------------------------------------------------------------


def test_full_disk_stops_with_one_line_and_the_rerun_resumes(demo_manifest, tmp_path):
    manifest = manifest_of(demo_manifest, tmp_path, {}, n_demo=3)
    out = tmp_path / "out"
    args = ("extract", "run", "-m", manifest, "-b", "efficientnet_lite0", "-o", out, *FAST_OPTIONS)
    full = cli(*args, limit_bytes=48 * 1024)  # room for each video's commit, not the whole file
    assert full.returncode == 2, full.stderr
    lines = error_lines(full)
    assert len(lines) == 1, full.stderr
    assert "File too large" in lines[0] and str(out) in lines[0] and "rerun" in lines[0]
    final = out / OUT_NAME
    assert not final.exists() and not list(final.parent.glob(".*.tmp-*"))
    done = list((final.parent / ".efficientnet_lite0.work").glob("*.npz"))
    rerun = cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    summary = verify_features(final)
    assert summary["videos"] == 3 and summary["failures"] == 0
    assert done, "the limit should leave some videos committed for the rerun to keep"


# --- damaged feature files before `probe train` -----------------------------------------------


def probe_train(features: Path, out: Path, *options) -> subprocess.CompletedProcess:
    """`probe train` of a linear probe for 2 epochs, with more options."""
    args = ("probe", "train", "--features", features, "--model", "linear", "--epochs", "2")
    return cli(*args, *options, "--out", out, timeout=120)


def flip_feature_bytes(path: Path) -> None:
    """Overwrite bytes in the middle of /clips/features' first chunk, on disk."""
    with h5py.File(path, "r") as h5:
        info = h5["clips/features"].id.get_chunk_info(0)
    with path.open("r+b") as handle:
        handle.seek(info.byte_offset + info.size // 2)
        handle.write(bytes(64 * [0x7B]))


def test_corrupted_feature_data_is_one_line_for_probe_train(mixed, tmp_path):
    damaged = tmp_path / "damaged.h5"
    shutil.copy(mixed["path"], damaged)
    flip_feature_bytes(damaged)
    with pytest.raises(FeatureFileError, match="corrupted data in /clips/features"):
        verify_features(damaged)
    with FeatureFile(damaged) as f, pytest.raises(FeatureFileError, match=str(damaged)):
        f.video_features(0)
    run = probe_train(damaged, tmp_path / "probe")
    assert run.returncode == 2
    lines = error_lines(run)
    assert len(lines) == 1 and str(damaged) in lines[0] and "corrupted data" in lines[0]
    assert "re-extract" in lines[0]


def test_truncated_feature_file_is_one_line_for_probe_train(mixed, tmp_path):
    cut = tmp_path / "cut.h5"
    data = mixed["path"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FeatureFileError):
        FeatureFile(cut)
    run = probe_train(cut, tmp_path / "probe")
    assert run.returncode == 2
    lines = error_lines(run)
    assert len(lines) == 1 and str(cut) in lines[0]


# --- options and output paths, refused before any work -----------------------------------------


@pytest.mark.parametrize(
    "changes, option",
    [
        ({"batch_size": 0}, "--batch-size"),
        ({"clip_fps": 0.0}, "--clip-fps"),
        ({"frames_per_clip": 0}, "--frames-per-clip"),
        ({"image_frames": 0}, "--image-frames"),
        ({"threshold": 2.0}, "--threshold"),
        ({"min_tail": 99}, "--min-tail"),
        ({"video_timeout": -1.0}, "--video-timeout"),
        ({"segmentation": "scenes"}, "--segmentation"),
        ({"device": "tpu"}, "--device"),
        # before, accepted: 1e9 clips per second ran the machine out of memory, and a million
        # frames per clip failed every video with the allocator's words
        ({"clip_fps": 1e9}, "--clip-fps must be a frame rate above 0 and at most 1000"),
        ({"image_frames": 25}, "--image-frames must be at most --frames-per-clip \\(24\\)"),
    ],
)
def test_bad_extract_options_are_refused_at_the_boundary(changes, option):
    from extract.pipeline import ExtractConfig
    from vtl.errors import UserError

    with pytest.raises(UserError, match=option):
        ExtractConfig(**changes).validate()


def test_bad_option_is_one_line_before_any_model_loads(demo_manifest, tmp_path):
    out = tmp_path / "out"
    run = extract_run(demo_manifest, out, "--clip-fps", "0", timeout=120)
    assert run.returncode == 2
    lines = error_lines(run)
    assert len(lines) == 1 and "--clip-fps" in lines[0], run.stderr
    assert not out.exists()


def test_out_naming_a_file_is_one_line(demo_manifest, lite0_features, tmp_path):
    taken = tmp_path / "taken.txt"
    taken.write_text("a file, not a folder")
    runs = {
        "extract run": extract_run(demo_manifest, taken, *FAST_OPTIONS, timeout=120),
        "probe train": cli(
            "probe", "train", "--features", lite0_features, "--out", taken, timeout=120
        ),
        "probe matrix": cli(
            "probe", "matrix", "--features", lite0_features, "--out", taken, timeout=120
        ),
        "below a file": cli(
            "probe", "train", "--features", lite0_features, "--out", taken / "run", timeout=120
        ),
    }
    for name, run in runs.items():
        assert run.returncode == 2, (name, run.stderr)
        lines = error_lines(run)
        assert len(lines) == 1 and str(taken) in lines[0] and "--out" in lines[0], (name, lines)
        assert "is a file" in lines[0], lines
    assert taken.read_text() == "a file, not a folder"


def test_unexpected_error_is_one_line_and_a_log_with_the_traceback(tmp_path, monkeypatch, capsys):
    """The last line of defence of every command (`vtl.cli.run_app`) on an app that fails the
    way no code path anticipated."""
    import typer

    from vtl.cli import EXIT_SOFTWARE, run_app

    app = typer.Typer(add_completion=False)

    @app.command()
    def boom() -> None:
        {}["missing"]

    @app.command()
    def other() -> None:
        pass

    monkeypatch.setenv("VTL_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(sys, "argv", ["extract", "boom"])
    with pytest.raises(SystemExit) as stop:
        run_app(app)
    assert stop.value.code == EXIT_SOFTWARE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: `extract boom` failed unexpectedly")
    assert "KeyError: 'missing'" in err[0] and "test_bad_input.py" in err[0]
    logs = list((tmp_path / "logs").glob("extract-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err[0]
    assert "Traceback" in logs[0].read_text() and "boom" in logs[0].read_text()


def test_warnings_are_one_line_each(monkeypatch, capsys):
    """A command's warnings (`vtl.cli.run_app`): "warning: ..." on one line, not Python's two
    lines with a path and the source of the call."""
    import warnings

    import typer

    from vtl.cli import run_app

    app = typer.Typer(add_completion=False)

    @app.command()
    def careful() -> None:
        warnings.warn("labels left out:\n  person", UserWarning, stacklevel=1)
        warnings.warn("invalid value", RuntimeWarning, stacklevel=1)

    @app.command()
    def other() -> None:
        pass

    monkeypatch.setattr(sys, "argv", ["probe", "careful"])
    with pytest.raises(SystemExit) as stop:
        run_app(app)
    assert stop.value.code == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "warning: labels left out: person"
    assert err[1].startswith("warning: RuntimeWarning: invalid value (at test_bad_input.py:")
    assert len(err) == 2 and warnings.showwarning is not run_app.__globals__["_show_warning"]


# --- non-finite values ---------------------------------------------------------------------------


def with_nan(source: Path, path: Path, video: int) -> Path:
    shutil.copy(source, path)
    with h5py.File(path, "r+") as h5:
        row = int(h5["videos/offset"][video]) + 1
        h5["clips/features"][row, 3] = np.nan
    return path


def test_non_finite_features_are_refused_naming_the_video(lite0_features, tmp_path):
    path = with_nan(lite0_features, tmp_path / "nan.h5", video=2)
    with FeatureFile(path) as f:
        name = f.video_ids[2]
    # `probe recommend` against a clean copy, named as another candidate (one extraction twice
    # is refused): the mean-pooled features of its probes and scores
    other = shutil.copy(lite0_features, tmp_path / "clean.h5")
    with h5py.File(other, "r+") as h5:
        h5.attrs["backbone"] = "another"
    recommend = ("probe", "recommend", "--features", path, "--features", other)
    runs = (
        cli("extract", "verify", path, timeout=120),
        probe_train(path, tmp_path / "probe"),
        cli(*recommend, "--out", tmp_path / "rec", timeout=120),
    )
    for run in runs:
        assert run.returncode == 2
        lines = error_lines(run)
        assert len(lines) == 1 and str(path) in lines[0], run.stderr
        assert "non-finite" in lines[0] and repr(name) in lines[0]
    assert not (tmp_path / "probe").exists()


def test_streamed_features_are_checked_as_they_are_read(lite0_features, tmp_path):
    """Streaming from the file (`--memory-budget-gb 0`): every row a run reads is checked as it
    is read, with no pass of its own over the file."""
    path = with_nan(lite0_features, tmp_path / "nan.h5", video=0)
    with FeatureFile(path) as f:
        name = f.video_ids[0]
    run = probe_train(path, tmp_path / "probe", "--memory-budget-gb", "0")
    assert run.returncode == 2
    lines = error_lines(run)
    assert len(lines) == 1 and "non-finite" in lines[0] and repr(name) in lines[0], run.stderr


def test_a_diverging_training_stops_with_one_line(lite0_features, tmp_path):
    run = cli(
        "probe",
        "train",
        "--features",
        lite0_features,
        "--model",
        "linear",
        "--lr",
        "10",
        "--weight-decay",
        "1e38",
        "--epochs",
        "20",
        "--out",
        tmp_path / "probe",
        timeout=120,
    )
    assert run.returncode == 2
    lines = error_lines(run)
    assert len(lines) == 1 and str(lite0_features) in lines[0], run.stderr
    assert "loss" in lines[0] and "at epoch" in lines[0] and "--lr" in lines[0]


def test_non_finite_embeddings_fail_their_videos(demo_manifest, tmp_path):
    """A checkpoint whose embeddings are NaN (a negative batch-norm variance): every video fails
    with that reason, and nothing non-finite is written."""
    from extract.backbones import get_spec
    from extract.pipeline import ExtractConfig, run_extraction
    from extract.weights import locate_weights

    state = torch.load(locate_weights(get_spec("efficientnet_lite0")), map_location="cpu")
    key = next(k for k in state if k.endswith("running_var"))
    state[key] = -torch.ones_like(state[key])
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    manifest = manifest_of(demo_manifest, tmp_path, {}, n_demo=3)
    config = ExtractConfig(segmentation="fixed", shot_frames=40, image_frames=1, batch_size=8)
    result = run_extraction(
        manifest, "efficientnet_lite0", tmp_path / "out", config, weights=broken, progress=False
    )
    assert len(result.failures) == 3
    assert all("non-finite embedding values" in f["reason"] for f in result.failures)


@pytest.mark.slow  # keeps `make test` under its 15 minutes; `make test-all` runs it
def test_embeddings_beyond_float16_fail_their_videos(demo_manifest, tmp_path):
    from extract.backbones import build_model, get_spec
    from extract.pipeline import ExtractConfig, run_extraction

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(get_spec("resnet18"))
    state = model.state_dict()
    state["layer4.1.bn2.weight"] *= 1e6  # finite in float32, far beyond float16's 65504
    checkpoint = tmp_path / "resnet18.pth"
    torch.save(state, checkpoint)
    manifest = manifest_of(demo_manifest, tmp_path, {}, n_demo=3)
    config = ExtractConfig(segmentation="fixed", shot_frames=40, batch_size=8)
    result = run_extraction(
        manifest, "resnet18", tmp_path / "out", config, weights=checkpoint, progress=False
    )
    assert len(result.failures) == 3
    assert all("beyond float16's range" in f["reason"] for f in result.failures)


# --- a command line click cannot parse --------------------------------------------------------


@pytest.mark.parametrize(
    "args, says",
    [
        (("extract", "run"), "Missing option '--manifest'"),
        (("extract", "run", "--no-such-option"), "No such option: --no-such-option"),
        (("probe", "matrix", "--no-such-option"), "No such option: --no-such-option"),
    ],
)
def test_a_bad_command_line_is_a_usage_error_not_a_crash(args, says):
    run = cli(*args, timeout=60)
    assert run.returncode == 2, run.stderr
    assert says in run.stderr and "failed unexpectedly" not in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_an_mp4_whose_index_is_missing_or_cut_off_says_so(tmp_path):
    """An MP4 written with its index (moov) at the end, cut inside its frames (mdat) or inside
    the index: ffmpeg reads no frame of it, and the reason says why and what may recover it,
    where before it read "not a decodable video file". A damaged index, or a cut file whose
    index is whole (at the front), keeps its own reason."""
    whole = pattern_video(tmp_path / "whole.mp4", n=48)
    data = whole.read_bytes()
    moov = data.index(b"moov") - 4
    assert moov > data.index(b"mdat")  # the index at the end, as cameras and ffmpeg write it
    for name, end in (("in_frames", moov // 2), ("in_index", moov + 40)):
        cut = tmp_path / f"{name}.mp4"
        cut.write_bytes(data[:end])
        with pytest.raises(VideoError, match=r"^an MP4 or QuickTime file whose index \(its moov"):
            VideoSource(cut)
        assert index_missing(cut) and header_frames(cut) == 0
    zeroed = bytearray(data)
    zeroed[moov + 4 : moov + 8] = bytes(4)  # the index's type zeroed: damaged, not cut
    (tmp_path / "zeroed.mp4").write_bytes(bytes(zeroed))
    assert not index_missing(tmp_path / "zeroed.mp4")
    with pytest.raises(VideoError, match="not a decodable video file"):
        VideoSource(tmp_path / "zeroed.mp4")
    front = cut_in_half(pattern_video(tmp_path / "f.mp4", movflags="faststart"), tmp_path / "c.mp4")
    assert not index_missing(front) and not index_missing(whole)
    assert not index_missing(tmp_path / "missing.mp4")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_a_video_the_user_cannot_read_says_so(tmp_path):
    """As nobody (root's effective ids dropped for the call): a file it may not read, and one in
    a folder it may not enter, fail with a reason that says permission is what is missing
    (before: "Permission denied" alone, and "file not found" for a file that is there)."""
    os.chmod(tmp_path, 0o755)
    video = pattern_video(tmp_path / "v.mp4", n=4)
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    shutil.copy(video, closed / "v.mp4")
    os.chmod(video, 0o600)
    reasons = []
    for path in (video, closed / "v.mp4"):
        os.setegid(65534)
        os.seteuid(65534)
        try:
            VideoSource(path)
        except VideoError as error:
            reasons.append(str(error))
        finally:
            os.seteuid(0)
            os.setegid(0)
    assert len(reasons) == 2 and all(r.startswith("permission denied") for r in reasons), reasons
    assert VideoSource(video).info.n_frames == 4  # root reads it


def test_header_counts_of_matroska_offsets_second_streams_and_joined_ts(tmp_path):
    """`header_frames` (shard balance, `probe recommend`'s costs) counts the video that is read:
    a Matroska file whose clock starts at 10 s holds 2 s of frames (its segment ends at 12 s),
    a second, longer video stream is not the one read, and MPEG-TS recordings joined with their
    clocks 90 s apart are no 26-hour video (each frame takes a 188-byte packet at least)."""
    frames = [pattern(i, 48, 64) for i in range(48)]
    late = encode(tmp_path / "late.mkv", frames, pts_ms=10_000 + np.arange(48) * 1000 / 24)
    assert VideoSource(late).info.n_frames == 48
    assert header_frames(late) == 48  # was 288: the offset counted
    with av.open(str(tmp_path / "two.mkv"), "w") as container:
        first, second = (container.add_stream("libx264", rate=24) for _ in range(2))
        for stream in (first, second):
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(96):
            image = av.VideoFrame.from_ndarray(frames[i % 48], format="rgb24")
            for stream in (first, second) if i < 48 else (second,):
                container.mux(stream.encode(image))
        for stream in (first, second):
            container.mux(stream.encode())
    assert header_frames(tmp_path / "two.mkv") == VideoSource(tmp_path / "two.mkv").info.n_frames
    parts = [
        encode(
            tmp_path / f"{k}.ts", frames, pts_ms=start + np.arange(48) * 1000 / 24, format="mpegts"
        )
        for k, start in enumerate((100_000, 10_000))
    ]
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(part.read_bytes() for part in parts))
    assert VideoSource(joined).info.n_frames == 96
    assert 96 <= header_frames(joined) <= joined.stat().st_size // 188  # was 2.3 million
