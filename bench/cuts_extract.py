"""Truncated videos: every cut place of a clip in each container, read as `extract run` reads it
and as ffmpeg decodes it.

    .venv/bin/python bench/cuts_extract.py [--cuts 40] [--frames 96] [--keep DIR]

A truncated file is the commonest damage (an interrupted download, copy or recording). A demo
clip is written in each of the fuzz corpus's containers (extract/fuzz.py) and a few more (a
fragmented MP4, as browsers and OBS record; H.264 in Matroska; FLV), then cut at `--cuts` places
evenly spread between 10% and the last byte. Each cut file is read by the decoder
(`extract.video.VideoSource`, every frame) and decoded by plain PyAV (single-threaded, every
packet, errors skipped: ffmpeg's own tolerance). Per container it prints the cuts:

- extracted (and how many of them with concealed frames);
- failed by the budget: the container's header promises frames the cut removed, beyond what a
  video may conceal (`extract.video.conceal_budget`): kept out by design, as a truncated video;
- failed, unreadable: ffmpeg itself decodes no frame;
- failed otherwise: ffmpeg decodes frames and the header promises no more than the file holds.
  These are the videos that could be kept and are not; each is listed with its reason.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extract.fuzz import CONTAINERS, Container, read_frames, write_in  # noqa: E402
from extract.video import VideoError, VideoSource, conceal_budget  # noqa: E402
from vtl.headers import declared_rate, promised_frames, video_stream  # noqa: E402

X264 = (("threads", "1"),)
MORE = (
    Container(
        "mp4_fragmented",
        ".mp4",
        "mp4",
        "libx264",
        "yuv420p",
        (*X264, ("g", "24")),
        (("movflags", "frag_keyframe+empty_moov+default_base_moof"),),
    ),
    Container("mkv_h264", ".mkv", "matroska", "libx264", "yuv420p", X264),
    Container("flv_h264", ".flv", "flv", "libx264", "yuv420p", X264),
)


def ffmpeg_frames(path: Path) -> int:
    """Frames plain PyAV decodes, single-threaded, every packet sent, errors skipped."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1
            frames = 0
            for packet in container.demux(stream):
                try:
                    frames += len(packet.decode())
                except av.FFmpegError:
                    pass
            return frames
    except (av.FFmpegError, IndexError):
        return 0


def promised(path: Path) -> tuple[int, float]:
    """The clean file's header frame count (0 when it gives none: `promised_frames`) and its
    frame rate."""
    with av.open(str(path)) as container:
        stream = video_stream(container)
        return promised_frames(stream), float(declared_rate(stream) or 24)


def read(path: Path) -> tuple[str, int]:
    """('extracted', concealed frames) or ('failed', the reason)."""
    try:
        source = VideoSource(path)
        for _ in source.chunks():
            pass
        return "extracted", source.concealed
    except VideoError as error:
        return "failed", str(error)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", type=int, default=40, help="cut places per container")
    parser.add_argument("--frames", type=int, default=96, help="frames of the clean clip")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()

    from extract.demo_data import make_demo_data
    from vtl.manifest import read_manifest

    work = args.keep or Path(tempfile.mkdtemp(prefix="cuts-extract-"))
    demo = read_manifest(make_demo_data(work / "demo", 6, progress=False))
    frames = read_frames(Path(demo.paths[0]), args.frames)
    print(f"{len(frames)} frames of {Path(demo.paths[0]).name}, {args.cuts} cuts per container")
    header = ("container", "cuts", "extracted", "concealed", "by budget", "unreadable", "otherwise")
    print("{:<16}{:>6}{:>11}{:>11}{:>11}{:>12}{:>11}".format(*header))
    totals = collections.Counter()
    kept_out = []
    for container in (*CONTAINERS.values(), *MORE):
        clean = write_in(work / f"clean_{container.name}{container.suffix}", frames, container)
        count, fps = promised(clean)
        data = clean.read_bytes()
        row = collections.Counter()
        for at in np.linspace(0.1, 1, args.cuts, endpoint=False):
            cut = work / f"cut_{container.name}{container.suffix}"
            cut.write_bytes(data[: int(len(data) * at)])
            outcome, detail = read(cut)
            row["cuts"] += 1
            if outcome == "extracted":
                row["extracted"] += 1
                row["concealed"] += bool(detail)
                continue
            decoded = ffmpeg_frames(cut)
            if not decoded:
                row["unreadable"] += 1
            elif count and count - decoded > conceal_budget(count, fps)[0]:
                row["by budget"] += 1
            else:
                row["otherwise"] += 1
                kept_out.append(f"{container.name} cut at {at:.0%}: {detail} (ffmpeg: {decoded})")
        totals.update(row)
        print(
            "{:<16}{:>6}{:>11}{:>11}{:>11}{:>12}{:>11}".format(
                container.name, *(row[k] for k in header[1:])
            )
        )
    print(
        "{:<16}{:>6}{:>11}{:>11}{:>11}{:>12}{:>11}".format("all", *(totals[k] for k in header[1:]))
    )
    for line in kept_out:
        print("  could be kept:", line)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
