"""Part 3b of bench_scale: peak memory of `extract run` on one continuous shot.

A 10 s video vs a 600 s one (--quick: 120 s) that is a single shot, a slow pan (TransNetV2,
--image-frames 2): clips are cut while the shot is still open, so memory must not follow the
shot's length; target: within 15%, and the first clips identical.

    .venv/bin/python bench/bench_single_shot.py [--quick]
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from common import (
    BACKBONE,
    FPS,
    extract_command,
    run_child,
    table,
    write_filler_manifest,
)


def pan_frames(seconds: float, fps: int) -> Iterator[np.ndarray]:
    """One continuous shot as YUV 4:2:0 frames: a slow pan (1 pixel a frame) back and forth
    across a photo mirrored into a seamless strip, 320x180. A longer video is the shorter one
    continued."""
    import torch
    import torchvision.transforms.v2.functional as TF
    from skimage import data as photos

    from extract.demo_data import HEIGHT, WIDTH, rgb_to_yuv420p

    photo = torch.from_numpy(photos.coffee()).permute(2, 0, 1)  # 400x600
    photo = TF.resize(photo, [HEIGHT], antialias=True)
    strip = torch.cat([photo, photo.flip(-1)], dim=-1)  # (3, H, W), seamless in the middle
    span = strip.shape[-1] - WIDTH
    for i in range(int(round(seconds * fps))):
        x = i % (2 * span)
        x = x if x < span else 2 * span - x  # back and forth
        yield rgb_to_yuv420p(strip[None, :, :, x : x + WIDTH].contiguous())[0]


def write_pan_video(path: Path, seconds: float) -> int:
    """An H.264 video of `pan_frames` at `FPS`; returns the number of frames."""
    from extract.demo_data import ENCODER_OPTIONS
    from extract.encode import write_video

    return write_video(
        path,
        pan_frames(seconds, FPS),
        FPS,
        input_format="yuv420p",
        options=dict(ENCODER_OPTIONS),
    )


def bench_single_shot(work: Path, args) -> None:
    """Print peak RSS of a short and a long single-shot video, and whether their shared first
    clips are identical."""
    from vtl.features import FeatureFile

    folder = work / "single-shot"
    folder.mkdir()
    long_seconds = 120.0 if args.quick else 600.0
    started = time.perf_counter()
    frames = {}
    for name, seconds in (("short", 10.0), ("long", long_seconds)):
        frames[name] = write_pan_video(folder / f"{name}.mp4", seconds)
    for k in (1, 2):
        write_pan_video(folder / f"filler{k}.mp4", 1.5 + k)
    made = time.perf_counter() - started
    rows, peaks, features = [], {}, {}
    for name in ("short", "long"):
        manifest = write_filler_manifest(folder, name)
        out = folder / f"out-{name}"
        child = run_child(extract_command(manifest, out, "--image-frames", "2"), threads=2)
        (path,) = list(out.rglob("*.h5"))
        with FeatureFile(path) as f:
            i = f.video_ids.index(name)
            shots = int(np.diff(f.shot_offsets)[i])
            features[name] = f.video(i).features
        peaks[name] = child.peak_mib
        rows.append(
            [
                name,
                f"{frames[name] / FPS:.0f} s",
                frames[name],
                shots,
                len(features[name]),
                f"{child.seconds:.1f}",
                f"{child.peak_mib:.0f}",
                f"{child.tree_peak_mib:.0f}",
            ]
        )
    table(
        f"3b. one continuous shot (a slow pan): peak memory of `extract run` ({BACKBONE}, "
        "TransNetV2, --image-frames 2)",
        ["video", "length", "frames", "shots", "clips", "wall s", "peak RSS MiB", "all MiB"],
        rows,
    )
    shared = len(features["short"]) - 1  # the short video's last clip is its tail
    same = np.array_equal(features["short"][:shared], features["long"][:shared])
    ratio = peaks["long"] / peaks["short"]
    print(
        f"long / short peak RSS {ratio:.2f}x at {frames['long'] / frames['short']:.0f}x the "
        f"frames (target: within 15%); the first {shared} clips identical: {same}; videos made "
        f"in {made:.1f} s; all MiB: the whole process tree's RSS, summed"
    )


if __name__ == "__main__":
    from bench_scale import main

    main(["single-shot"])
