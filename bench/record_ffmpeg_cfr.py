"""Record what ffmpeg's command line outputs for the test suite's variable-rate videos
(`tests/test_bad_input.py`, `vfr_videos`): for each, the source frame of every frame of
`ffmpeg -i VIDEO -f rawvideo -pix_fmt gray` (frame i of those videos has value 5i), written to
`tests/data/ffmpeg_cfr.npz`, which the tests compare `VideoSource` with.

    .venv/bin/python bench/record_ffmpeg_cfr.py --ffmpeg /path/to/ffmpeg

Needs an ffmpeg executable (e.g. `pip install imageio-ffmpeg`; recorded with its 9.0.2 build).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_bad_input import FFMPEG_CFR, vfr_videos  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ffmpeg", default="ffmpeg", help="the ffmpeg executable")
    args = parser.parse_args()
    version = subprocess.run([args.ffmpeg, "-version"], capture_output=True, text=True, check=True)
    print(version.stdout.splitlines()[0])
    recorded = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, path in vfr_videos(Path(folder)).items():
            raw = subprocess.run(
                [
                    args.ffmpeg,
                    "-v",
                    "error",
                    "-i",
                    str(path),
                    "-f",
                    "rawvideo",
                    "-pix_fmt",
                    "gray",
                    "-",
                ],
                capture_output=True,
                check=True,
            ).stdout
            frames = np.frombuffer(raw, np.uint8).reshape(-1, 48 * 64)
            recorded[name] = np.rint(frames.mean(1) / 5).astype(np.int16)
            print(f"{name}: {len(recorded[name])} frames")
    np.savez_compressed(FFMPEG_CFR, **recorded)
    print(f"wrote {FFMPEG_CFR}")


if __name__ == "__main__":
    main()
