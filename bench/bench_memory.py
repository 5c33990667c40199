"""Part 3 of bench_scale: peak memory of `extract run` against the length of the video.

A 30 s video vs a 300 s one (the first 30 s continued; --quick: 20 s vs 200 s), real footage with
cuts, 320x180 H.264; target: flat. What extraction holds is bounded by constants, not by the
video: decoded chunks queued, the open shot's prepared frames, a batch of 16 clips (16 s of
video) and TransNetV2's windows (100 frames; on CUDA, groups of 8 of them: 450 frames, 19 s). The
short video is longer than those so that both runs reach that steady state: a 10 s video never
fills a batch and would show the steady state's cost as growth.

    .venv/bin/python bench/bench_memory.py [--quick]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from common import (
    BACKBONE,
    FPS,
    extract_command,
    print_commands,
    run_child,
    table,
    write_filler_manifest,
)


def footage_frames(seconds: float, seed: int, pool: Sequence, fps: int) -> Iterator[np.ndarray]:
    """YUV 4:2:0 frames of real footage shots (the demo generator's), rendered one demo video at
    a time so that the whole video is never held in memory. The same seed gives the same first
    frames, so a longer video is the shorter one continued."""
    from extract.demo_data import plan_video, render_video, rgb_to_yuv420p

    rng = np.random.default_rng(seed)
    categories = sorted({p.category for p in pool})
    left = int(round(seconds * fps))
    while left > 0:
        plan = plan_video(pool, "scale", str(rng.choice(categories)), rng)
        if plan.fps != fps:  # keep one frame rate: draw again
            continue
        frames = render_video(plan, pool)[:left]
        left -= len(frames)
        yield from rgb_to_yuv420p(frames)


def write_footage_video(path: Path, seconds: float, seed: int, pool: Sequence) -> int:
    """An H.264 video of `footage_frames` at `FPS`; returns the number of frames."""
    from extract.demo_data import ENCODER_OPTIONS
    from extract.encode import write_video

    return write_video(
        path,
        footage_frames(seconds, seed, pool, FPS),
        FPS,
        input_format="yuv420p",
        options=dict(ENCODER_OPTIONS),
    )


def bench_memory(work: Path, args) -> None:
    """Print peak RSS of `extract run` on the short and the long video, per segmentation."""
    from extract.demo_data import load_shot_pool
    from vtl.features import FeatureFile

    folder = work / "memory"
    folder.mkdir()
    pool = load_shot_pool()
    started = time.perf_counter()
    for k in (1, 2):
        write_footage_video(folder / f"filler{k}.mp4", 1.5, seed=100 + k, pool=pool)
    frames = {}
    short = 20.0 if args.quick else 30.0
    for name, seconds in (("short", short), ("long", 10 * short)):
        frames[name] = write_footage_video(folder / f"{name}.mp4", seconds, seed=7, pool=pool)
        write_filler_manifest(folder, name)
    made = time.perf_counter() - started
    baseline = run_child([sys.executable, "-c", "import extract.pipeline"], threads=2)
    segmentations = ["fixed"] if args.quick else ["fixed", "transnetv2"]
    rows, commands, peaks = [], [], {}
    for segmentation in segmentations:
        for name in ("short", "long"):
            out = folder / f"out-{segmentation}-{name}"
            command = extract_command(
                folder / f"{name}.csv",
                out,
                "--segmentation",
                segmentation,
                "--image-frames",
                "1",
            )
            child = run_child(command, threads=2)
            (path,) = list(out.rglob("*.h5"))
            with FeatureFile(path) as f:
                clips = int(f.clip_counts()[f.video_ids.index(name)])
                shots = int(np.diff(f.shot_offsets)[f.video_ids.index(name)])
            peaks[(segmentation, name)] = child.peak_mib
            rows.append(
                [
                    f"{segmentation}: {name}",
                    f"{frames[name] / FPS:.0f} s",
                    f"{frames[name]}",
                    f"{shots}",
                    f"{clips}",
                    f"{child.seconds:.1f}",
                    f"{child.peak_mib:.0f}",
                    f"{child.peak_mib - baseline.peak_mib:+.0f}",
                ]
            )
            if name == "long":
                commands.append(command)
    table(
        f"3. peak memory of `extract run` ({BACKBONE}, --image-frames 1), 320x180 24 fps H.264",
        ["video", "length", "frames", "shots", "clips", "wall s", "peak RSS MiB", "over import"],
        rows,
    )
    for segmentation in segmentations:
        ratio = peaks[(segmentation, "long")] / peaks[(segmentation, "short")]
        print(
            f"{segmentation}: long / short peak RSS {ratio:.2f}x at 10x the frames (target: flat)"
        )
    print(
        f"videos made in {made:.1f} s; `import extract.pipeline` alone peaks at "
        f"{baseline.peak_mib:.0f} MiB; each manifest also holds two 1.5 s fillers"
    )
    print_commands(commands, work)


if __name__ == "__main__":
    from bench_scale import main

    main(["memory"])
