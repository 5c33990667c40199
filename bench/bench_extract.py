"""Extraction throughput: decode, shot detection, each backbone, and one decode for two backbones.

    .venv/bin/python bench/bench_extract.py [--videos 12] [--device auto]
        [--backbones efficientnet_lite0,efficientnet_lite1] [--image-frames N]

Prints frames per second of each stage and the ratio (two separate runs) / (one run with both
backbones). Backbones whose weights are not here run with random weights saved to a temporary
cache (speed does not depend on the values). Compare ratios within one run: machines are shared.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return value, time.perf_counter() - start


def ensure_weights(names: list[str], cache: Path) -> None:
    """Random-init checkpoints, in the cache, for backbones whose real weights are absent."""
    from extract.backbones import build_model, get_spec
    from extract.weights import expected_path, locate_weights

    for name in names:
        spec = get_spec(name)
        if locate_weights(spec, cache_dir=cache) is None:
            path = expected_path(spec, cache)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(build_model(spec).state_dict(), path)
            print(f"  {name}: real weights absent here, timing random weights")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, help="default: a generated demo collection")
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbones", default="efficientnet_lite0,efficientnet_lite1")
    parser.add_argument("--image-frames", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    from extract.backbones import create_backbone
    from extract.demo_data import make_demo_data
    from extract.pipeline import ExtractConfig, resolve_device, run_extraction
    from extract.shots import TransNetV2Shots, resize_for_shots
    from extract.video import VideoSource
    from vtl.manifest import read_manifest

    device = resolve_device(args.device)
    names = [n.strip() for n in args.backbones.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    cache = work / "cache"
    ensure_weights(names, cache)
    manifest_path = args.manifest or make_demo_data(work / "demo", args.videos, progress=False)
    manifest = read_manifest(manifest_path)
    print(f"device {device}, {len(manifest)} videos, torch threads {torch.get_num_threads()}")

    # 1. decode
    frames_by_video = []

    def decode():
        for path in manifest.paths:
            frames_by_video.append(torch.cat([f for _, f in VideoSource(path).chunks()]))

    _, seconds = timed(decode)
    n_frames = sum(len(f) for f in frames_by_video)
    size = tuple(frames_by_video[0].shape[1:3])
    rows = [("decode (PyAV, native size)", n_frames / seconds, f"{size[1]}x{size[0]}")]

    # 2. shot detection
    small = [resize_for_shots(f.to(device)) for f in frames_by_video]
    for batch_windows in (1, 8):
        detector = TransNetV2Shots(device=device, batch_windows=batch_windows)
        _, seconds = timed(lambda d=detector: [d.predict(f) for f in small])
        rows.append((f"TransNetV2, {batch_windows} window(s)/forward", n_frames / seconds, ""))

    # 3. each backbone on 24-frame clips of real frames
    sample = frames_by_video[0][:24].to(device)
    for name in names:
        backbone = create_backbone(
            name, device=device, cache_dir=cache, image_frames=args.image_frames, amp=True,
            channels_last=True,
        )  # fmt: skip
        clip = backbone.prepare(sample).unsqueeze(0).expand(args.batch_size, -1, -1, -1, -1)
        backbone.embed(clip[:2])  # warm-up
        _, seconds = timed(lambda b=backbone, c=clip: b.embed(c))
        embedded = backbone.image_frames or 24 if backbone.spec.kind == "image" else 24
        clips_per_s = args.batch_size / seconds
        rows.append(
            (
                f"{name} ({backbone.spec.kind}, {embedded} frames/clip)",
                clips_per_s * 24,
                f"{clips_per_s:.1f} clips/s",
            )  # fmt: skip
        )

    print(f"\n{'stage':48} {'frames/s':>10}  note")
    for stage, fps, note in rows:
        print(f"{stage:48} {fps:10.1f}  {note}")

    # 4. one decode for two backbones vs two separate runs (the whole `extract run` path)
    if len(names) >= 2:
        config = ExtractConfig(image_frames=args.image_frames, batch_size=args.batch_size,
                               device=str(device))  # fmt: skip
        pair = ",".join(names[:2])

        def run(backbones, folder):
            return run_extraction(manifest_path, backbones, work / folder, config,
                                  cache_dir=cache, progress=False)  # fmt: skip

        _, both = timed(lambda: run(pair, "both"))
        _, first = timed(lambda: run(names[0], "first"))
        _, second = timed(lambda: run(names[1], "second"))
        print(f"\nextract run, {pair}: one run {both:.1f} s; separate runs {first:.1f} s + "
              f"{second:.1f} s = {first + second:.1f} s")  # fmt: skip
        print(f"ratio separate / together: {(first + second) / both:.2f}x (target >= 1.6x)")


if __name__ == "__main__":
    main()
