"""Extraction speed, and what it costs the machine: each stage and whole `extract run`s, each in
a fresh process, with frames/s next to user and system CPU time, minor page faults and peak RSS.

    .venv/bin/python bench/bench_extract.py [--videos 12] [--device auto]
        [--backbones efficientnet_lite0,efficientnet_lite1] [--image-frames N] [--batch-size 16]
        [--skip-pair] [--json FILE]

1. decode: the decoder process alone (`extract.decoder`, PyAV) over the videos; again with the
   48x27 frames TransNetV2 takes (made in the decoder process as ffmpeg makes them).
2. TransNetV2: its predictions on the videos' 48x27 frames, as `extract run` batches its windows
   on this device.
3. model only: each backbone embedding 24-frame clips of real frames the way `extract run` does
   on this device (its micro-batches; on CUDA with AMP and channels-last); CPU time and faults of
   the timed loop alone.
4. end to end: `extract run` over the first N demo videos (320x180, about 6 s each; manifest with
   its first split column only) with each backbone and otherwise the defaults (TransNetV2 shots,
   every frame of each clip unless --image-frames): frames decoded per second of wall time, and
   the kernel's share of the CPU time (decoder process included).
5. one run with two backbones against two separate runs (one decode for both).

Backbones whose weights are not here run with random weights saved to a temporary cache (speed
does not depend on the values). Machines are shared: compare figures within one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import loadavg, machine, report_json, run_child, script, table  # noqa: E402

CLIP = 24  # frames per clip (the default)


def ensure_weights(names: list[str], cache: Path) -> None:
    """Random-init checkpoints, in the cache, for backbones whose real weights are absent."""
    import torch

    from extract.backbones import build_model, get_spec
    from extract.weights import expected_path, locate_weights

    for name in names:
        spec = get_spec(name)
        if locate_weights(spec, cache_dir=cache) is None:
            path = expected_path(spec, cache)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(build_model(spec).state_dict(), path)
            print(f"  {name}: real weights absent here, timing random weights")


# ------------------------------------------------------------------ measured in a child process


def _usage() -> tuple[float, float, int]:
    # This process and the processes it waited for (the decoder process).
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (
        own.ru_utime + children.ru_utime,
        own.ru_stime + children.ru_stime,
        own.ru_minflt + children.ru_minflt,
    )


def _timed(function) -> dict:
    """Run `function` (returns frames processed); its wall time, CPU time and faults."""
    before = _usage()
    started = time.perf_counter()
    frames = function()
    seconds = time.perf_counter() - started
    after = _usage()
    return {
        "frames": frames,
        "seconds": seconds,
        "user": after[0] - before[0],
        "sys": after[1] - before[1],
        "minflt": after[2] - before[2],
    }


def measure(args) -> dict:
    """One stage, inside the child process `main` starts (--measure)."""
    import torch

    from extract.decoder import Decoder
    from extract.memory import tune_allocator
    from extract.pipeline import resolve_device
    from vtl.manifest import read_manifest

    tune_allocator()  # as `extract run` does at start-up
    manifest = read_manifest(args.manifest)
    device = resolve_device(args.device)
    videos = list(enumerate(manifest.paths))

    def decode(small: bool = False) -> list[torch.Tensor]:
        """Each video's frames (with `small`, its 48x27 ones instead, decoded with both)."""
        out = []
        with Decoder(videos, 0.0, small=small) as decoder:
            for video in decoder:
                out.append(torch.cat([c[2 if small else 1] for c in video.chunks()]))
        return out

    if args.measure == "decode":
        return _timed(lambda: sum(len(v) for v in decode()))
    if args.measure == "decode-small":
        return _timed(lambda: sum(len(v) for v in decode(small=True)))
    if args.measure == "transnetv2":
        from extract.shots import TransNetV2Shots

        small = [v.to(device) for v in decode(small=True)]
        detector = TransNetV2Shots(device=device)
        detector.predict(small[0][:100])  # warm-up
        return _timed(lambda: sum(len(detector.predict(v)) for v in small))
    from extract.backbones import create_backbone

    backbone = create_backbone(
        args.measure,
        device=device,
        cache_dir=args.cache,
        image_frames=args.image_frames,
        amp=True,
        channels_last=True,
    )
    frames = decode()[0][:CLIP].to(device)
    prepared = backbone.prepare(frames)[backbone.clip_frames(CLIP).to(device)]
    clips = [prepared] * args.batch_size
    backbone.embed_used(clips[:2])  # warm-up

    def embed() -> int:
        for _ in range(args.batches):
            backbone.embed_used(clips)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return args.batches * len(clips) * len(prepared)

    result = _timed(embed)
    result["micro_batch"] = backbone.micro_batch
    result["frames_per_clip"] = len(prepared)
    return result


# ------------------------------------------------------------------ the benchmark

# The stages measured on their own, before the backbones: --measure NAME -> its row.
STAGES = {
    "decode": "decode (decoder process, PyAV)",
    "decode-small": "decode, with the 48x27 frames for TransNetV2",
    "transnetv2": "TransNetV2 (48x27)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, help="default: a generated demo collection")
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbones", default="efficientnet_lite0,efficientnet_lite1")
    parser.add_argument("--image-frames", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=4, help="batches timed per backbone")
    parser.add_argument("--skip-pair", action="store_true", help="skip part 5")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return

    from extract.demo_data import make_demo_data
    from extract.pipeline import resolve_device
    from vtl.manifest import read_manifest, write_manifest

    device = resolve_device(args.device)
    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    work = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    cache = work / "cache"
    ensure_weights(names, cache)
    if args.manifest is None:
        args.manifest = make_demo_data(work / "demo", max(6, args.videos), progress=False)
    source = read_manifest(args.manifest)
    n = min(args.videos, len(source))
    manifest = write_manifest(
        work / "manifest.csv",
        source.video_ids[:n],
        [str(p) for p in source.paths[:n]],
        source.label_names,
        source.labels[:n],
        source.splits[:n, :1],
    )
    print("# bench_extract")
    for line in machine():
        print(line)
    print(f"device {device}; {n} videos; load average at start {loadavg()}")

    rows, figures = [], {}

    def add(stage: str, frames: float, child, inner: dict | None = None, note: str = "") -> None:
        user = inner["user"] if inner else child.user_seconds
        sys_ = inner["sys"] if inner else child.sys_seconds
        faults = inner["minflt"] if inner else child.minor_faults
        seconds = inner["seconds"] if inner else child.seconds
        share = sys_ / (user + sys_) if user + sys_ else 0.0
        figures[stage] = {
            "frames_per_s": frames / seconds,
            "wall_s": seconds,
            "user_s": user,
            "sys_s": sys_,
            "sys_share": share,
            "minor_faults": faults,
            "peak_rss_mib": child.peak_mib,
            "all_processes_mib": child.tree_peak_mib,
            "note": note,
        }
        rows.append(
            [
                stage,
                f"{frames / seconds:.1f}",
                f"{seconds:.1f}",
                f"{user:.1f}",
                f"{sys_:.1f}",
                f"{100 * share:.1f}%",
                f"{faults / 1e6:.2f} M",
                f"{child.peak_mib:.0f}",
                f"{child.tree_peak_mib:.0f}",
                note,
            ]
        )

    base = [
        sys.executable,
        __file__,
        "--manifest",
        str(manifest),
        "--device",
        str(device),
        "--cache",
        str(cache),
        "--batch-size",
        str(args.batch_size),
        "--batches",
        str(args.batches),
    ]
    extra = ["--image-frames", str(args.image_frames)] if args.image_frames else []
    base += extra
    for stage, what in STAGES.items():
        child = run_child([*base, "--measure", stage])
        inner = json.loads(child.out.strip().splitlines()[-1])
        add(what, inner["frames"], child, inner)
    for name in names:
        child = run_child([*base, "--measure", name])
        inner = json.loads(child.out.strip().splitlines()[-1])
        note = f"micro-batch {inner['micro_batch']}, {inner['frames_per_clip']} frames/clip"
        add(f"{name} model only", inner["frames"], child, inner, note)

    frames = sum(_frames(p) for p in read_manifest(manifest).paths)
    runs = {}
    for name in names if args.skip_pair else [*names, ",".join(names[:2])]:
        command = [
            *script("extract"),
            "run",
            "-m",
            str(manifest),
            "-b",
            name,
            "-o",
            str(work / f"out-{len(runs)}"),
            "--cache-dir",
            str(cache),
            "--device",
            str(device),
            "--batch-size",
            str(args.batch_size),
            "-q",
            *extra,
        ]
        runs[name] = run_child(command)
        add(f"extract run {name}", frames, runs[name], note=f"{n} videos, {frames} frames")
    table(
        f"extraction on {device} (frames/s: frames embedded for models, decoded otherwise)",
        [
            "stage",
            "frames/s",
            "wall s",
            "user s",
            "sys s",
            "sys %",
            "minor faults",
            "peak RSS MiB",
            "all processes MiB",
            "note",
        ],
        rows,
    )
    if not args.skip_pair and len(names) >= 2:
        pair = ",".join(names[:2])
        separate = runs[names[0]].seconds + runs[names[1]].seconds
        ratio = separate / runs[pair].seconds
        figures["pair_ratio"] = ratio
        print(
            f"\none run with {pair}: {runs[pair].seconds:.1f} s; separate runs {separate:.1f} s: "
            f"{ratio:.2f}x (one decode, one shot detection for both)"
        )
    print(f"load average at end {loadavg()}")
    report_json(args.json, figures)


def _frames(path: Path) -> int:
    from vtl.headers import header_frames

    return header_frames(path)


if __name__ == "__main__":
    main()
