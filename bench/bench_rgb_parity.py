"""The RGB frames `extract run` decodes, side by side with ffmpeg's command line's, over the
codecs and pixel formats of the wild, and videos turned by their display matrix.

    .venv/bin/python bench/bench_rgb_parity.py --ffmpeg /path/to/ffmpeg [--keep DIR]

Each video is written by that ffmpeg from its `testsrc2` pattern (a video whose encoder the
build lacks is skipped), read by `extract.video.VideoSource` (every frame) and by `ffmpeg -i
VIDEO -vf scale=iw*sar:ih -f rawvideo -pix_fmt rgb24 -` (non-square pixels brought to their
display width, as `VideoSource` brings them), and compared frame by frame: the frame counts, the
frames identical to the byte, and the mean absolute difference. The colour conversion is
ffmpeg's own libavfilter chain in both (`extract.video._RgbChain`), so every row should read
identical; the timeline is ffmpeg's too (`extract.video.constant_rate`). Needs an ffmpeg
executable (e.g. `pip install imageio-ffmpeg`; measured with its 9.0.2 build).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import ffmpeg_frames, ffmpeg_version, machine, table  # noqa: E402

from extract.video import VideoError, VideoSource  # noqa: E402

SMALL = "testsrc2=size=176x144:rate=24:duration=1"
# file name -> (lavfi source, ffmpeg's output options)
VIDEOS = {
    # high bit depths and colour tags
    "hevc_10bit.mkv": (SMALL, "-c:v libx265 -pix_fmt yuv420p10le -x265-params log-level=error"),
    "hevc_10bit_bt2020.mkv": (
        SMALL,
        "-c:v libx265 -pix_fmt yuv420p10le -colorspace bt2020nc -color_primaries bt2020 "
        "-color_trc smpte2084 -x265-params log-level=error",
    ),
    "hevc_10bit_full.mkv": (
        SMALL,
        "-c:v libx265 -pix_fmt yuv420p10le -color_range pc -x265-params log-level=error",
    ),
    "h264_10bit_422.mkv": (SMALL, "-c:v libx264 -pix_fmt yuv422p10le"),
    "h264_bt709.mp4": (SMALL, "-c:v libx264 -colorspace bt709 -color_primaries bt709"),
    "h264_bt2020.mp4": (SMALL, "-c:v libx264 -colorspace bt2020nc"),
    "h264_full_range.mp4": (SMALL, "-c:v libx264 -pix_fmt yuvj420p"),
    "h264_444.mkv": (SMALL, "-c:v libx264 -pix_fmt yuv444p"),
    "prores_4444.mov": (SMALL, "-c:v prores_ks -profile:v 4 -pix_fmt yuva444p10le"),
    "dnxhd_422.mov": (
        "testsrc2=size=1920x1080:rate=24:duration=0.5",
        "-c:v dnxhd -b:v 36M -pix_fmt yuv422p",
    ),
    "cineform.mov": (SMALL, "-c:v cfhd"),
    "v210.mov": (SMALL, "-c:v v210"),
    "r210.mov": (SMALL, "-c:v r210"),
    "jpeg2000_xyz.mov": (SMALL, "-c:v jpeg2000 -pix_fmt xyz12le"),
    "ffv1_gray16.mkv": (SMALL, "-c:v ffv1 -pix_fmt gray16le"),
    # raw and packed pixels
    "yuy2.avi": (SMALL, "-c:v rawvideo -pix_fmt yuyv422"),
    "uyvy.mov": (SMALL, "-c:v rawvideo -pix_fmt uyvy422"),
    "nv12.nut": (SMALL, "-c:v rawvideo -pix_fmt nv12"),
    "rgb565.nut": (SMALL, "-c:v rawvideo -pix_fmt rgb565le"),
    "bgr0.nut": (SMALL, "-c:v rawvideo -pix_fmt bgr0"),
    "png_grey_alpha.mov": (SMALL, "-c:v png -pix_fmt ya8"),
    "png_rgb48.mov": (SMALL, "-c:v png -pix_fmt rgb48be"),
    "png_1bit.mov": (SMALL, "-c:v png -pix_fmt monob"),
    "msrle_palette.avi": (SMALL, "-c:v msrle -pix_fmt pal8"),
    # codecs of the wild
    "cinepak.avi": (SMALL, "-c:v cinepak"),
    "msvideo1.avi": (SMALL, "-c:v msvideo1"),
    "smc.mov": (SMALL, "-c:v smc"),
    "snow.mkv": (SMALL, "-c:v snow"),
    "huffyuv.avi": (SMALL, "-c:v huffyuv"),
    "jpegls.avi": (SMALL, "-c:v jpegls"),
    "magicyuv.avi": (SMALL, "-c:v magicyuv"),
    "vc2.mkv": (SMALL, "-c:v vc2 -b:v 5M"),
    "dirac_raw.drc": (SMALL, "-c:v vc2 -b:v 5M"),
    "tiff.mov": (SMALL, "-c:v tiff"),
    "theora.ogv": (SMALL, "-c:v libtheora"),
    "h263.3gp": (SMALL, "-c:v h263"),
    "h263_raw.h263": (SMALL, "-c:v h263"),
    "mpeg1.mpg": (SMALL, "-c:v mpeg1video"),
    "mpeg4_bframes.avi": (SMALL, "-c:v mpeg4 -bf 2"),
    "flash_screen.flv": (SMALL, "-c:v flashsv"),
    "wmv1.wmv": (SMALL, "-c:v wmv1"),
    "realvideo1.rm": (SMALL, "-c:v rv10"),
    "asv1.avi": (SMALL, "-c:v asv1"),
    "mxf_mpeg2.mxf": (SMALL, "-c:v mpeg2video -b:v 5M"),
    "av1.mp4": (SMALL, "-c:v libaom-av1 -cpu-used 8"),
    "vp8.webm": (SMALL, "-c:v libvpx -b:v 1M"),
    "y4m.y4m": (SMALL, ""),
    "apng.apng": (SMALL, "-plays 0"),
    "gif.gif": (SMALL, ""),
    # DVD sources: anamorphic, interlaced, program streams
    "ntsc_dvd.vob": ("testsrc2=size=720x480:rate=30000/1001:duration=1", "-target ntsc-dvd"),
    "pal_dvd_16x9.mpg": (
        "testsrc2=size=720x576:rate=25:duration=1",
        "-target pal-dvd -aspect 16:9",
    ),
    "anamorphic_40x33.mp4": (
        "testsrc2=size=720x480:rate=24:duration=0.5",
        "-vf setsar=40/33 -c:v libx264",
    ),
    # 440 x 12/11: 480 exactly, 479.99999999999994 in the doubles ffmpeg's scale evaluates
    "anamorphic_12x11.mp4": (
        "testsrc2=size=440x240:rate=24:duration=0.5",
        "-vf setsar=12/11 -c:v libx264",
    ),
}

# Phone and camera videos turned by their display matrix: file name -> (the video of VIDEOS it
# copies, ffmpeg's input options that set the matrix). ffmpeg's autorotation turns them before
# any filter, so non-square pixels are scaled after the turn.
TURNED = {
    "phone_turned.mp4": ("h264_bt709.mp4", "-display_rotation 90"),
    "phone_upside_down.mp4": ("h264_bt709.mp4", "-display_rotation 180"),
    "selfie_mirrored.mp4": ("h264_bt709.mp4", "-display_rotation 90 -display_hflip"),
    "hevc_10bit_turned.mov": ("hevc_10bit.mkv", "-display_rotation 270"),
    "anamorphic_turned.mp4": ("anamorphic_40x33.mp4", "-display_rotation 90"),
    "anamorphic_upside_down.mp4": ("anamorphic_40x33.mp4", "-display_rotation 180"),
}


def compare(ffmpeg: str, path: Path) -> list:
    try:
        source = VideoSource(path)
        ours = np.concatenate([chunk for _, chunk, _ in source.chunks()])
    except Exception as error:  # noqa: BLE001 - a crash is a row, as `extract run` reports it
        why = str(error) if isinstance(error, VideoError) else f"{type(error).__name__}: {error}"
        return [path.name, "", "", "", "", f"failed: {why}"]
    raw = ffmpeg_frames(ffmpeg, path, "rgb24", "-vf", "scale=iw*sar:ih")
    size = ours[0].size
    theirs = np.frombuffer(raw[: len(raw) // size * size], np.uint8).reshape(-1, *ours.shape[1:])
    n = min(len(ours), len(theirs))
    same = sum(bool(np.array_equal(ours[i], theirs[i])) for i in range(n))
    error = np.mean([np.abs(ours[i].astype(np.int16) - theirs[i]).mean() for i in range(n)])
    verdict = "identical" if same == n == len(ours) == len(theirs) else "differs"
    return [path.name, len(ours), len(theirs), f"{same}/{n}", f"{error:.3f}", verdict]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ffmpeg", default="ffmpeg", help="the ffmpeg executable")
    parser.add_argument("--keep", type=Path, default=None, help="write the videos here")
    args = parser.parse_args()
    print("\n".join(machine()))
    print(ffmpeg_version(args.ffmpeg))
    rows, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="rgb-parity-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        made_from = {
            name: ["-f", "lavfi", "-i", source, *options.split()]
            for name, (source, options) in VIDEOS.items()
        }
        for name, (video, matrix) in TURNED.items():
            made_from[name] = [*matrix.split(), "-i", str(folder / video), "-c", "copy"]
        for name, command in made_from.items():
            path = folder / name
            made = subprocess.run(
                [args.ffmpeg, "-v", "error", "-y", *command, str(path)],
                capture_output=True,
                text=True,
            )
            if made.returncode or not path.exists() or not path.stat().st_size:
                skipped.append(f"{name} ({made.stderr.strip().splitlines()[-1:]})")
                continue
            rows.append(compare(args.ffmpeg, path))
    table(
        "RGB frames against ffmpeg's command line (-vf scale=iw*sar:ih -pix_fmt rgb24)",
        ["video", "frames", "ffmpeg's", "identical", "mean |diff|", ""],
        rows,
    )
    identical = sum(row[-1] == "identical" for row in rows)
    print(f"\nidentical: {identical} of {len(rows)} videos")
    for name in skipped:
        print(f"skipped (this ffmpeg cannot write it): {name}")


if __name__ == "__main__":
    main()
