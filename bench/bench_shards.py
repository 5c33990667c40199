"""Part 1 of bench_scale: one `extract run` against the same run as 2 shards.

Throughput of one `extract run` (2 torch threads) vs the same command as 2 shards under
`torchrun --standalone --nproc-per-node=2` (1 thread each; the last shard merges), or as two
`--shard i/2` processes (`--launcher shard`), on generated demo videos, fixed segmentation (and
TransNetV2 with --transnetv2). Also 1 process x 1 thread: the same numbers as the shards, so the
merged file must be bit-identical to it.

    .venv/bin/python bench/bench_shards.py [--videos 36] [--quick] [--launcher torchrun|shard]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from common import (
    BACKBONE,
    BIN,
    ROOT,
    Child,
    compare_feature_files,
    extract_command,
    print_commands,
    run_child,
    table,
)

LABELS = {
    "1x1": "1 process x 1 thread",
    "1x2": "1 process x 2 threads",
    "2x1": "2 processes x 1 thread",
}


def bench_shards(work: Path, args) -> None:
    """Print the throughput table and whether the merged file equals the 1-process ones."""
    from extract.demo_data import make_demo_data
    from vtl.features import FeatureFile

    started = time.perf_counter()
    manifest = make_demo_data(work / "demo", args.videos, seed=0, progress=False)
    made = time.perf_counter() - started
    importing = run_child([sys.executable, "-c", "import extract.pipeline"], threads=2)
    segmentations = ["fixed", "transnetv2"] if args.transnetv2 else ["fixed"]
    rows, commands, checks = [], [], []
    for segmentation in segmentations:
        outs = {key: work / f"{key}-{segmentation}" for key in LABELS}
        single = {
            key: extract_command(
                manifest,
                out,
                "--segmentation",
                segmentation,
                "--image-frames",
                "2",
            )
            for key, out in outs.items()
        }
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
        files = {key: merged_file(out) for key, out in outs.items()}
        leftovers = [p.name for p in outs["2x1"].rglob("*part-*")]
        with FeatureFile(files["1x2"]) as f:
            n_videos, n_clips = f.n_videos, f.n_clips
        base = children["1x2"].seconds
        for key, child in children.items():
            rows.append(
                [
                    f"{segmentation}: {LABELS[key]}",
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
        commands += [single["1x2"], two_cmd]
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
    print_commands(commands, work)


def merged_file(out: Path) -> Path:
    """The one feature file of a run (not a part file), or an error naming what is there."""
    found = [p for p in out.rglob("*.h5") if ".part-" not in p.name]
    if len(found) != 1:
        raise RuntimeError(f"{out}: expected one merged feature file, found {found}")
    return found[0]


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


if __name__ == "__main__":
    from bench_scale import main

    main(["extract"])
