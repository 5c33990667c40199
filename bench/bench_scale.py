"""Scale benchmark: 1 vs 2 extraction processes, merge speed, peak memory vs input size.

    .venv/bin/python bench/bench_scale.py [--videos 36] [--quick]
        [--only extract|merge|memory|probe|matrix] [--launcher torchrun|shard] [--transnetv2]
        [--keep DIR]

Prints one table per part:

1. extract: throughput of one `extract run` (2 torch threads) vs the same command as 2 shards
   under `torchrun --standalone --nproc-per-node=2` (1 thread each; the last shard merges), on
   generated demo videos, fixed segmentation (and TransNetV2 with --transnetv2); checks that the
   merged file equals the single-process one. Also 1 process x 1 thread: the same numbers as the
   shards, so the merged file must be bit-identical to it.
2. merge: `extract.merge.merge_parts` on 4 synthetic part files (Trailers12k-shaped: 12,000
   videos, ~100 clips each, 768-d float16), and on a quarter of that: clips/s, MB/s and the
   merging process's peak RSS (target: flat in the number of clips).
3. memory: peak RSS of `extract run` on a 30 s video vs a 300 s one (the first 30 s continued,
   real footage with cuts, 320x180 H.264); target: flat. What extraction holds is bounded by
   constants, not by the video: decoded chunks queued, the open shot's prepared frames, a batch
   of 16 clips (16 s of video) and TransNetV2's windows (100 frames; on CUDA, groups of 8 of
   them: 450 frames, 19 s). The short video is longer than those so that both runs reach that
   steady state: a 10 s video never fills a batch and would show the steady state's cost as
   growth.
3b. single-shot: peak RSS of `extract run` on a 10 s video vs a 600 s one that is a single
   continuous shot (a slow pan; TransNetV2, --image-frames 2; --quick: 120 s); target: within
   15%, and the first clips identical.
4. probe: peak RSS of `probe train` on a synthetic feature file vs one 4x larger, streaming
   (`--memory-budget-gb 0`, target: flat) and in memory (the default, grows by design).
5. matrix: wall time of `probe matrix --jobs 1` vs `--jobs 2` on 4 synthetic feature files x 2
   probes (same --threads 2 in all); checks that both give the same matrix.

Everything whose memory or parallelism is measured runs in a fresh subprocess; peak RSS is the
child's own `ru_maxrss` from `os.wait4` in a small launcher process (see `_LAUNCHER`). Machines
are shared: the load average is printed at the start and the end of each part, and ratios within
one run are what to compare. `--quick` (~4 min) shrinks every part (20 s vs 200 s video, fixed
segmentation only); the default run takes ~10-15 min on 2 cores, depending on their load.
"""

from __future__ import annotations

import os

# Before torch loads OpenMP (here and in every child, which inherit it): idle threads sleep
# instead of spinning, or a shared machine makes every parallel op wait for a descheduled peer.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from fractions import Fraction  # noqa: E402
from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
from common import (  # noqa: E402
    BIN,
    ROOT,
    Child,
    loadavg,
    machine,
    run_child,
    script,
    show_command,
    table,
)

PARTS = ("extract", "merge", "memory", "single-shot", "probe", "matrix")
BACKBONE = "efficientnet_lite0"
MIB = 2**20


def compare_feature_files(a: Path, b: Path) -> str:
    """'identical', or what differs between two feature files (index arrays, meta, features)."""
    from vtl.features import FeatureFile

    with FeatureFile(a) as fa, FeatureFile(b) as fb:
        if fa.meta != fb.meta:
            return "meta differs"
    names = [
        "videos/id",
        "videos/offset",
        "videos/n_frames",
        "videos/fps",
        "clips/frames",
        "clips/shot",
        "shots/offset",
        "shots/frames",
        "labels",
        "splits",
    ]
    with h5py.File(a, "r") as ha, h5py.File(b, "r") as hb:
        for name in names:
            if not np.array_equal(ha[name][:], hb[name][:]):
                return f"/{name} differs"
        fa16, fb16 = ha["clips/features"][:], hb["clips/features"][:]
    if fa16.shape != fb16.shape:
        return f"features {fa16.shape} vs {fb16.shape}"
    if np.array_equal(fa16, fb16):
        return "identical"
    diff = np.abs(fa16.astype(np.float32) - fb16.astype(np.float32))
    return f"index identical; features max |diff| {diff.max():.2g} ({(diff > 0).mean():.1%} differ)"


def bench_extract(work: Path, args) -> None:
    from extract.demo_data import make_demo_data
    from vtl.features import FeatureFile

    started = time.perf_counter()
    manifest = make_demo_data(work / "demo", args.videos, seed=0, progress=False)
    made = time.perf_counter() - started
    importing = run_child([sys.executable, "-c", "import extract.pipeline"], threads=2)
    segmentations = ["fixed", "transnetv2"] if args.transnetv2 else ["fixed"]
    rows, commands, checks = [], [], []
    for segmentation in segmentations:
        common = [
            "run",
            "-m",
            str(manifest),
            "-b",
            BACKBONE,
            "--segmentation",
            segmentation,
            "--image-frames",
            "2",
            "--device",
            "cpu",
            "-q",
        ]
        outs = {key: work / f"{key}-{segmentation}" for key in ("1x1", "1x2", "2x1")}
        single = {key: [*script("extract"), *common, "-o", str(outs[key])] for key in outs}
        children = {
            "1x1": run_child(single["1x1"], threads=1),
            "1x2": run_child(single["1x2"], threads=2),
        }
        if args.launcher == "torchrun":
            two_cmd = [
                str(BIN / "torchrun"),
                "--standalone",
                "--nproc-per-node=2",
                "--no-python",
                *single["2x1"],
            ]
            children["2x1"] = run_child(two_cmd, threads=1)
        else:
            children["2x1"] = run_shard_pair(single["2x1"])
            two_cmd = children["2x1"].command
        files = {}
        for key, out in outs.items():
            found = [p for p in out.rglob("*.h5") if ".part-" not in p.name]
            if len(found) != 1:
                raise RuntimeError(f"{out}: expected one merged feature file, found {found}")
            files[key] = found[0]
        leftovers = [p.name for p in outs["2x1"].rglob("*part-*")]
        with FeatureFile(files["1x2"]) as f:
            n_videos, n_clips = f.n_videos, f.n_clips
        labels = {
            "1x1": "1 process x 1 thread",
            "1x2": "1 process x 2 threads",
            "2x1": "2 processes x 1 thread",
        }
        base = children["1x2"].seconds
        for key, child in children.items():
            rows.append(
                [
                    f"{segmentation}: {labels[key]}",
                    f"{n_clips}",
                    f"{child.seconds:.1f}",
                    f"{n_videos / child.seconds:.2f}",
                    f"{n_clips / child.seconds:.1f}",
                    f"{base / child.seconds:.2f}x",
                    f"{child.cpu_seconds:.1f}",
                ]
            )
        checks.append(
            f"{segmentation}: merged 2-process file vs 1 process x 1 thread: "
            f"{compare_feature_files(files['1x1'], files['2x1'])}; "
            f"vs 1 process x 2 threads: {compare_feature_files(files['1x2'], files['2x1'])}; "
            f"part files left: {leftovers or 'none'}"
        )
        commands += [show_command(single["1x2"], work), show_command(two_cmd, work)]
    table(
        f"1. extraction throughput, {n_videos} demo videos, {BACKBONE}, --image-frames 2, CPU",
        ["run", "clips", "wall s", "videos/s", "clips/s", "vs 1x2", "CPU s"],
        rows,
    )
    print(
        f"demo videos generated in {made:.1f} s; wall times include each process's start-up "
        f"(`import extract.pipeline` alone: {importing.seconds:.1f} s); threads set with "
        "OMP_NUM_THREADS"
    )
    for line in checks:
        print(line)
    for command in commands:
        print(f"  $ {command}")


def run_shard_pair(command: list[str]) -> Child:
    """`--shard 0/2` and `--shard 1/2` started at once, 1 thread each (the torchrun-free way)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*command, "--shard", f"{i}/2"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    errors = [p.communicate()[1] for p in procs]
    seconds = time.perf_counter() - started
    for p, err in zip(procs, errors, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"shard exit {p.returncode}: {err[-3000:]}")
    nan = float("nan")
    return Child([*command, "--shard", "{0,1}/2"], seconds, nan, nan, nan, nan, 0, 0, "", "")


# ------------------------------------------------------------------ 2. merge speed

_MERGE_CHILD = """
import json, sys, time
from extract.merge import merge_parts
started = time.perf_counter()
merge_parts(sys.argv[1:-1], sys.argv[-1])
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def write_parts(folder: Path, n_videos: int, n_parts: int, dim: int, seed: int = 0):
    """Synthetic part files of one run (the product's shard assignment); returns (paths, counts,
    feature pool) so that the merged file can be checked."""
    from vtl.features import FeatureMeta, FeatureWriter, VideoFeatures
    from vtl.shards import assign_shards

    rng = np.random.default_rng(seed)
    counts = rng.integers(50, 151, n_videos)
    pool = rng.standard_normal((8192 + 151, dim), dtype=np.float32).astype(np.float16)
    labels = (rng.random((n_videos, 10)) < 0.3).astype(np.uint8)
    splits = rng.integers(0, 3, (n_videos, 3)).astype(np.uint8)
    meta = FeatureMeta(
        backbone="synthetic-768",
        family="synthetic",
        pretrain="none",
        kind="image",
        feature_dim=dim,
        frames_per_clip=24,
        clip_fps=24.0,
        input_size=0,
        weights={"name": "synthetic", "sha256": "0" * 64},
        shot_detector="fixed-48",
        config={"bench": "merge"},
    )
    assignment = assign_shards(counts.tolist(), n_parts)
    paths = [folder / f"synthetic.part-{p}-of-{n_parts}.h5" for p in range(n_parts)]
    names = [f"label{j}" for j in range(10)]
    writers = [
        FeatureWriter(path, meta, names, 3, part=(p, n_parts)) for p, path in enumerate(paths)
    ]
    try:
        for i in range(n_videos):
            c = int(counts[i])
            s = (i * 997) % 8192
            starts = np.arange(c, dtype=np.int64) * 24
            writers[assignment[i]].add(
                VideoFeatures(
                    video_id=f"v{i:05d}",
                    n_frames=c * 24,
                    fps=24.0,
                    features=pool[s : s + c],
                    frames=np.stack([starts, starts + 23], axis=1),
                    shot=np.zeros(c, np.int32),
                    shots=np.array([[0, c * 24 - 1]], np.int64),
                    labels=labels[i],
                    splits=splits[i],
                    manifest_index=i,
                )
            )
    except BaseException:
        for w in writers:
            w.discard()
        raise
    for w in writers:
        w.close()
    return paths, counts, pool


def check_merged(path: Path, counts: np.ndarray, pool: np.ndarray) -> str:
    from vtl.features import FeatureFile

    with FeatureFile(path) as f:
        if f.video_ids != [f"v{i:05d}" for i in range(len(counts))]:
            return "videos NOT in manifest order"
        if not np.array_equal(np.diff(f.offsets), counts):
            return "clip counts differ"
        for i in np.linspace(0, len(counts) - 1, 25).astype(int):
            s = (int(i) * 997) % 8192
            if not np.array_equal(f.video(int(i)).features, pool[s : s + counts[i]]):
                return f"features of video {i} differ"
        if f.part is not None or f.manifest_index is not None:
            return "merged file still marked as a part"
    return "ok"


def bench_merge(work: Path, args) -> None:
    n_full = 3000 if args.quick else 12000
    rows, commands, notes = [], [], []
    for n_videos in (n_full // 4, n_full):
        folder = work / f"merge-{n_videos}"
        folder.mkdir(parents=True)
        started = time.perf_counter()
        parts, counts, pool = write_parts(folder, n_videos, 4, 768)
        written = time.perf_counter() - started
        out = folder / "merged.h5"
        command = [sys.executable, "-c", _MERGE_CHILD, *map(str, parts), str(out)]
        child = run_child(command, threads=1)
        seconds = json.loads(child.out.strip().splitlines()[-1])["seconds"]
        clips = int(counts.sum())
        megabytes = clips * 768 * 2 / 1e6
        rows.append(
            [
                f"{n_videos} videos",
                f"{clips}",
                f"{megabytes:.0f}",
                f"{seconds:.1f}",
                f"{clips / seconds:,.0f}",
                f"{megabytes / seconds:.0f}",
                f"{child.peak_mib:.0f}",
            ]
        )
        notes.append(
            f"{n_videos} videos: parts written in {written:.1f} s; merged file check: "
            f"{check_merged(out, counts, pool)}"
        )
        commands.append(f"{Path(sys.executable).name} -c 'merge_parts(PARTS, OUT)' (timed inside)")
        shutil.rmtree(folder)
    baseline = run_child([sys.executable, "-c", "import extract.merge"], threads=1)
    table(
        "2. merge_parts: 4 part files -> 1 (768-d float16, 50-150 clips per video)",
        ["input", "clips", "MB", "merge s", "clips/s", "MB/s", "peak RSS MiB"],
        rows,
    )
    growth = rows[1][-1], rows[0][-1]
    print(
        f"peak RSS {growth[0]} MiB at 4x the clips vs {growth[1]} MiB (target: flat); "
        f"`import extract.merge` alone peaks at {baseline.peak_mib:.0f} MiB"
    )
    print("merge s is measured inside the child (after imports) and includes the final fsync")
    for line in notes:
        print(line)
    print(f"  $ {commands[0]}")


# ------------------------------------------------------------------ 3. extraction memory


def write_footage_video(path: Path, seconds: float, seed: int, pool, fps: int = 24) -> int:
    """An H.264 video of real footage shots (the demo generator's), encoded shot by shot so that
    the whole video is never held in memory. The same seed gives the same first frames, so a
    longer video is the shorter one continued. Returns the number of frames."""
    import av

    from extract.demo_data import (
        ENCODER_OPTIONS,
        HEIGHT,
        WIDTH,
        plan_video,
        render_video,
        rgb_to_yuv420p,
    )

    rng = np.random.default_rng(seed)
    categories = sorted({p.category for p in pool})
    target = int(round(seconds * fps))
    written = 0
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options=dict(ENCODER_OPTIONS))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.time_base = Fraction(1, fps)
        while written < target:
            plan = plan_video(pool, "scale", str(rng.choice(categories)), rng)
            if plan.fps != fps:  # keep one frame rate: draw again
                continue
            frames = render_video(plan, pool)[: target - written]
            for image in rgb_to_yuv420p(frames):
                frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
                frame.pts = written
                container.mux(stream.encode(frame))
                written += 1
        container.mux(stream.encode(None))
    return written


def write_pan_video(path: Path, seconds: float, fps: int = 24) -> int:
    """One continuous shot: a slow pan (1 pixel a frame) back and forth across a photo mirrored
    into a seamless strip, 320x180 H.264. A longer video is the shorter one continued."""
    import av
    import torch
    import torchvision.transforms.v2.functional as TF
    from skimage import data as photos

    from extract.demo_data import ENCODER_OPTIONS, HEIGHT, WIDTH, rgb_to_yuv420p

    photo = torch.from_numpy(photos.coffee()).permute(2, 0, 1)  # 400x600
    photo = TF.resize(photo, [HEIGHT], antialias=True)
    strip = torch.cat([photo, photo.flip(-1)], dim=-1)  # (3, H, W), seamless in the middle
    span = strip.shape[-1] - WIDTH
    target = int(round(seconds * fps))
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options=dict(ENCODER_OPTIONS))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(target):
            x = i % (2 * span)
            x = x if x < span else 2 * span - x  # back and forth
            image = strip[None, :, :, x : x + WIDTH].contiguous()
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(image)[0], format="yuv420p")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return target


def bench_single_shot(work: Path, args) -> None:
    """Peak memory of a 10 s video against a 600 s one that is a single continuous shot
    (TransNetV2, --image-frames 2): clips are cut while the shot is still open, so memory must
    not follow the shot's length. Also checks that the shared first clips are identical."""
    from vtl.features import FeatureFile
    from vtl.manifest import write_manifest

    folder = work / "single-shot"
    folder.mkdir()
    long_seconds = 120.0 if args.quick else 600.0
    started = time.perf_counter()
    frames = {}
    for name, seconds in (("short", 10.0), ("long", long_seconds)):
        frames[name] = write_pan_video(folder / f"{name}.mp4", seconds)
    for k in (1, 2):  # val and test videos for the manifest
        write_pan_video(folder / f"filler{k}.mp4", 1.5 + k)
    made = time.perf_counter() - started
    rows, peaks, features = [], {}, {}
    for name in ("short", "long"):
        manifest = write_manifest(folder / f"{name}.csv", [name, "filler1", "filler2"],
                                  [f"{name}.mp4", "filler1.mp4", "filler2.mp4"], ["demo"],
                                  np.array([[1], [0], [1]], np.uint8),
                                  np.array([[0], [1], [2]], np.uint8))  # fmt: skip
        out = folder / f"out-{name}"
        command = [*script("extract"), "run", "-m", str(manifest), "-b", BACKBONE, "-o", str(out),
                   "--image-frames", "2", "--device", "cpu", "-q"]  # fmt: skip
        child = run_child(command, threads=2)
        (path,) = list(out.rglob("*.h5"))
        with FeatureFile(path) as f:
            i = f.video_ids.index(name)
            shots = int(np.diff(f.shot_offsets)[i])
            features[name] = f.video(i).features
        peaks[name] = child.peak_mib
        rows.append([name, f"{frames[name] / 24:.0f} s", frames[name], shots, len(features[name]),
                     f"{child.seconds:.1f}", f"{child.peak_mib:.0f}",
                     f"{child.tree_peak_mib:.0f}"])  # fmt: skip
    table(
        f"3b. one continuous shot (a slow pan): peak memory of `extract run` ({BACKBONE}, "
        "TransNetV2, --image-frames 2)",
        [
            "video",
            "length",
            "frames",
            "shots",
            "clips",
            "wall s",
            "peak RSS MiB",
            "all processes MiB",
        ],  # fmt: skip
        rows,
    )
    shared = len(features["short"]) - 1  # the short video's last clip is its tail
    same = np.array_equal(features["short"][:shared], features["long"][:shared])
    print(f"long / short peak RSS {peaks['long'] / peaks['short']:.2f}x at "
          f"{frames['long'] / frames['short']:.0f}x the frames (target: within 15%); the first "
          f"{shared} clips identical: {same}; videos made in {made:.1f} s")  # fmt: skip


def bench_memory(work: Path, args) -> None:
    from extract.demo_data import load_shot_pool
    from vtl.features import FeatureFile
    from vtl.manifest import write_manifest

    folder = work / "memory"
    folder.mkdir()
    pool = load_shot_pool()
    started = time.perf_counter()
    # Two 1.5 s fillers give the manifest the val and test videos every split needs.
    for k in (1, 2):
        write_footage_video(folder / f"filler{k}.mp4", 1.5, seed=100 + k, pool=pool)
    frames = {}
    short = 20.0 if args.quick else 30.0
    for name, seconds in (("short", short), ("long", 10 * short)):
        frames[name] = write_footage_video(folder / f"{name}.mp4", seconds, seed=7, pool=pool)
        write_manifest(
            folder / f"{name}.csv",
            [name, "filler1", "filler2"],
            [f"{name}.mp4", "filler1.mp4", "filler2.mp4"],
            ["demo"],
            np.array([[1], [0], [1]], np.uint8),
            np.array([[0], [1], [2]], np.uint8),
        )
    made = time.perf_counter() - started
    baseline = run_child([sys.executable, "-c", "import extract.pipeline"], threads=2)
    segmentations = ["fixed"] if args.quick else ["fixed", "transnetv2"]
    rows, commands, peaks = [], [], {}
    for segmentation in segmentations:
        for name in ("short", "long"):
            out = folder / f"out-{segmentation}-{name}"
            command = [
                *script("extract"),
                "run",
                "-m",
                str(folder / f"{name}.csv"),
                "-b",
                BACKBONE,
                "-o",
                str(out),
                "--segmentation",
                segmentation,
                "--image-frames",
                "1",
                "--device",
                "cpu",
                "-q",
            ]
            child = run_child(command, threads=2)
            (path,) = list(out.rglob("*.h5"))
            with FeatureFile(path) as f:
                clips = int(f.clip_counts()[f.video_ids.index(name)])
                shots = int(np.diff(f.shot_offsets)[f.video_ids.index(name)])
            peaks[(segmentation, name)] = child.peak_mib
            rows.append(
                [
                    f"{segmentation}: {name}",
                    f"{frames[name] / 24:.0f} s",
                    f"{frames[name]}",
                    f"{shots}",
                    f"{clips}",
                    f"{child.seconds:.1f}",
                    f"{child.peak_mib:.0f}",
                    f"{child.peak_mib - baseline.peak_mib:+.0f}",
                ]
            )
            if name == "long":
                commands.append(show_command(command, work))
    table(
        f"3. peak memory of `extract run` ({BACKBONE}, --image-frames 1), 320x180 24 fps H.264",
        [
            "video",
            "length",
            "frames",
            "shots",
            "clips",
            "wall s",
            "peak RSS MiB",
            "over import",
        ],
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
    for command in commands:
        print(f"  $ {command}")


# ------------------------------------------------------------------ 4. probe memory


def bench_probe(work: Path, args) -> None:
    from probe.synthetic import write_synthetic_features

    folder = work / "probe"
    folder.mkdir()
    base = 400 if args.quick else 1500
    files = {}
    started = time.perf_counter()
    for factor in (1, 4):
        files[factor] = write_synthetic_features(
            folder / f"features-x{factor}.h5",
            n_videos=base * factor,
            clips=(50, 150),
            feature_dim=768,
            n_labels=10,
            n_splits=3,
            signal=0.3,
            backbone="synthetic-768",
        )
    made = time.perf_counter() - started
    baseline = run_child([sys.executable, "-c", "import probe.cli"], threads=2)
    rows, peaks, commands = [], {}, []
    for mode, budget in (("streaming", ["--memory-budget-gb", "0"]), ("in memory", [])):
        for factor, path in files.items():
            out = folder / f"run-{mode.replace(' ', '')}-x{factor}"
            command = [
                *script("probe"),
                "train",
                "--features",
                str(path),
                "--out",
                str(out),
                "--model",
                args.probe_model,
                "--epochs",
                "1",
                "--threads",
                "2",
                *budget,
                "-q",
            ]
            child = run_child(command)
            metrics = json.loads((out / "metrics.json").read_text())
            clips = metrics["features"][0]["clips"]
            peaks[(mode, factor)] = child.peak_mib
            rows.append(
                [
                    f"{mode}: x{factor}",
                    f"{base * factor}",
                    f"{clips}",
                    f"{clips * 768 * 2 / MIB:.0f}",
                    f"{child.seconds:.1f}",
                    f"{child.peak_mib:.0f}",
                    f"{child.peak_mib - baseline.peak_mib:+.0f}",
                    f"{metrics['metrics']['test']['uap']:.2f}",
                ]
            )
            if factor == 4:
                commands.append(show_command(command, work))
    table(
        f"4. peak memory of `probe train --model {args.probe_model} --epochs 1` "
        "(768-d float16, 50-150 clips per video)",
        [
            "run",
            "videos",
            "clips",
            "features MiB",
            "wall s",
            "peak RSS MiB",
            "over import",
            "test uAP",
        ],
        rows,
    )
    for mode in ("streaming", "in memory"):
        grew = peaks[(mode, 4)] - peaks[(mode, 1)]
        print(
            f"{mode}: x4 / x1 peak RSS {peaks[(mode, 4)] / peaks[(mode, 1)]:.2f}x "
            f"({grew:+.0f} MiB)" + (" (target: flat)" if mode == "streaming" else "")
        )
    print(
        f"feature files written in {made:.1f} s; `import probe.cli` alone peaks at "
        f"{baseline.peak_mib:.0f} MiB"
    )
    for command in commands:
        print(f"  $ {command}")


# ------------------------------------------------------------------ 5. probe matrix


def read_matrix(path: Path) -> dict[tuple[str, str], dict]:
    with path.open() as handle:
        return {(r["row"], r["probe"]): r for r in csv.DictReader(handle)}


def compare_matrices(a: Path, b: Path) -> str:
    ra, rb = read_matrix(a), read_matrix(b)
    if ra.keys() != rb.keys():
        return "different cells"
    worst, differing = 0.0, 0
    for key, row in ra.items():
        for column, value in row.items():
            if column == "train_seconds" or value == rb[key][column]:
                continue
            differing += 1
            try:
                worst = max(worst, abs(float(value) - float(rb[key][column])))
            except ValueError:
                return f"{key} {column}: {value!r} vs {rb[key][column]!r}"
    if not differing:
        return "identical (every column but train_seconds)"
    return f"{differing} values differ, max |diff| {worst:.3g} (metrics in %)"


def bench_matrix(work: Path, args) -> None:
    from probe.synthetic import write_synthetic_features

    folder = work / "matrix"
    features = folder / "features"
    n_videos, epochs = (400, 3) if args.quick else (1200, 5)
    for k in range(4):
        write_synthetic_features(
            features / f"synthetic{k}.h5",
            n_videos=n_videos,
            clips=(20, 80),
            feature_dim=512,
            n_labels=8,
            n_splits=1,
            backbone_seed=k,
            signal=0.5,
            backbone=f"synthetic{k}",
        )
    rows, outs, commands = [], {}, []
    for jobs in (1, 2):
        outs[jobs] = folder / f"out-jobs{jobs}"
        command = [
            *script("probe"),
            "matrix",
            "--features",
            str(features),
            "--out",
            str(outs[jobs]),
            "--models",
            "linear,mlp",
            "--splits",
            "0",
            "--scores",
            "none",
            "--epochs",
            str(epochs),
            "--jobs",
            str(jobs),
            "--threads",
            "2",
            "-q",
        ]
        child = run_child(command)
        cells = list(read_matrix(outs[jobs] / "matrix.csv").values())
        cell_seconds = sum(float(c["train_seconds"]) for c in cells)
        stored = [json.loads(c.read_text()) for c in (outs[jobs] / "cells").glob("*.json")]
        cell_cpu = sum(c["result"].get("cpu_seconds", 0.0) for c in stored)
        rows.append(
            [
                f"--jobs {jobs}",
                f"{len(cells)}",
                f"{child.seconds:.1f}",
                f"{child.cpu_seconds:.1f}",
                f"{cell_seconds:.1f}",
                f"{cell_cpu:.1f}",
                "",
            ]
        )
        commands.append(show_command(command, work))
    rows[1][-1] = f"{float(rows[0][2]) / float(rows[1][2]):.2f}x"
    table(
        f"5. `probe matrix`, 4 synthetic files ({n_videos} videos, 20-80 clips, 512-d) x "
        f"linear,mlp, split 0, {epochs} epochs, --threads 2",
        ["run", "cells", "wall s", "CPU s", "cells' wall s", "cells' CPU s", "speed-up"],
        rows,
    )
    print(
        "cells' wall s / CPU s: sums over cells, measured inside the workers (matrix.csv, cells/)"
    )
    print(
        f"--jobs 2 vs --jobs 1 matrix.csv: "
        f"{compare_matrices(outs[1] / 'matrix.csv', outs[2] / 'matrix.csv')}"
    )
    for command in commands:
        print(f"  $ {command}")


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=None, help="demo videos (36; quick: 12)")
    parser.add_argument("--quick", action="store_true", help="smaller everything (~3 min)")
    parser.add_argument("--only", choices=PARTS, action="append", help="run only this part")
    parser.add_argument(
        "--launcher",
        choices=("torchrun", "shard"),
        default="torchrun",
        help="2 extraction processes: torchrun, or two --shard i/2 processes",
    )
    parser.add_argument("--probe-model", default="linear", help="model of part 4")
    parser.add_argument(
        "--transnetv2",
        action="store_true",
        help="part 1 also with TransNetV2 shots (slow on CPU: ~10 min more on 2 cores)",
    )
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    args.videos = args.videos or (12 if args.quick else 36)
    parts = args.only or list(PARTS)

    print("# bench_scale")
    print(
        f"command: {shlex.join([sys.executable, *sys.argv])}".replace(str(BIN) + "/", ".venv/bin/")
    )
    for line in machine():
        print(line)
    print(
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} in every child; "
        f"load average at start: {loadavg()}"
    )
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    functions = {
        "extract": bench_extract,
        "merge": bench_merge,
        "memory": bench_memory,
        "single-shot": bench_single_shot,
        "probe": bench_probe,
        "matrix": bench_matrix,
    }
    try:
        for part in PARTS:
            if part in parts:
                part_started = time.perf_counter()
                functions[part](work, args)
                print(
                    f"({part}: {time.perf_counter() - part_started:.0f} s, "
                    f"load average {loadavg()})"
                )
                sys.stdout.flush()
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at end: {loadavg()}")


if __name__ == "__main__":
    main()
