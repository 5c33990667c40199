"""Record what ffmpeg's command line outputs for the test suite's videos, which the tests compare
`VideoSource` with (`tests/test_bad_input.py`):

- `tests/data/ffmpeg_cfr.npz`: for each variable-rate video (`vfr_videos`), the source frame of
  every frame of `ffmpeg -i VIDEO -f rawvideo -pix_fmt gray` (frame i of those videos has
  value 5i);
- `tests/data/ffmpeg_rgb.npz`: for each video of `rgb_videos` (high bit depths, colour tags,
  non-square pixels, a camera's MJPEG with EXIF), the frames of `ffmpeg -i VIDEO -vf
  scale=iw*sar:ih -f rawvideo -pix_fmt rgb24`.

    .venv/bin/python bench/record_ffmpeg.py --ffmpeg /path/to/ffmpeg

Needs an ffmpeg executable (e.g. `pip install imageio-ffmpeg`; recorded with its 9.0.2 build).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from common import ffmpeg_frames, ffmpeg_version  # noqa: E402
from test_bad_input import FFMPEG_CFR, FFMPEG_RGB, rgb_videos, vfr_videos  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ffmpeg", default="ffmpeg", help="the ffmpeg executable")
    args = parser.parse_args()
    print(ffmpeg_version(args.ffmpeg))
    with tempfile.TemporaryDirectory() as folder:
        recorded = {}
        for name, path in vfr_videos(Path(folder)).items():
            frames = np.frombuffer(ffmpeg_frames(args.ffmpeg, path, "gray"), np.uint8)
            recorded[name] = np.rint(frames.reshape(-1, 48 * 64).mean(1) / 5).astype(np.int16)
            print(f"{name}: {len(recorded[name])} frames")
        np.savez_compressed(FFMPEG_CFR, **recorded)
        print(f"wrote {FFMPEG_CFR}")
        recorded = {}
        for name, path in rgb_videos(Path(folder)).items():
            raw = ffmpeg_frames(args.ffmpeg, path, "rgb24", "-vf", "scale=iw*sar:ih")
            with av.open(str(path)) as container:  # the count, for the frames' size
                n = sum(1 for packet in container.demux(video=0) if packet.size)
            recorded[name] = np.frombuffer(raw, np.uint8).reshape(n, -1)
            print(f"{name}: {n} frames of {recorded[name].shape[1] // 3} pixels")
        np.savez_compressed(FFMPEG_RGB, **recorded)
        print(f"wrote {FFMPEG_RGB}")


if __name__ == "__main__":
    main()
