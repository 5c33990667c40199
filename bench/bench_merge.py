"""Part 2 of bench_scale: `extract.merge.merge_parts` speed and memory.

A Trailers12k-shaped synthetic feature file (12,000 videos, 50-150 clips each, 768-d float16;
--quick: 3,000) is cut into the 4 part files that 4 shards of the same run would write; merging
them must give the whole file back. Measured on it and on a quarter of it: clips/s, MB/s and the
merging process's peak RSS (target: flat in the number of clips).

    .venv/bin/python bench/bench_merge.py [--quick]
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from common import (
    TRAILERS12K_SHAPE,
    compare_feature_files,
    run_child,
    table,
    write_trailers12k_shaped,
)

N_PARTS = 4

_MERGE_CHILD = """
import json, sys, time
from extract.merge import merge_parts
started = time.perf_counter()
merge_parts(sys.argv[1:-1], sys.argv[-1])
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def split_into_parts(whole: Path, n_parts: int) -> list[Path]:
    """The part files `n_parts` shards of one run would write for the videos of `whole`
    (the product's shard assignment, manifest rows kept), next to it."""
    from extract.merge import part_paths
    from vtl.features import FeatureFile, FeatureWriter
    from vtl.shards import assign_shards

    paths = part_paths(whole, n_parts)
    with FeatureFile(whole) as f:
        assignment = assign_shards(f.clip_counts().tolist(), n_parts)
        writers = [
            FeatureWriter(path, f.meta, f.label_names, f.splits.shape[1], part=(p, n_parts))
            for p, path in enumerate(paths)
        ]
        try:
            for i in range(f.n_videos):
                writers[assignment[i]].add(replace(f.video(i), manifest_index=i))
        except BaseException:
            for writer in writers:
                writer.discard()
            raise
    for writer in writers:
        writer.close()
    return paths


def bench_merge(work: Path, args) -> None:
    """Print merge speed and peak RSS at n/4 and n videos, and check the merged files."""
    n_full = 3000 if args.quick else 12000
    dim = TRAILERS12K_SHAPE["feature_dim"]
    rows, notes = [], []
    for n_videos in (n_full // 4, n_full):
        folder = work / f"merge-{n_videos}"
        started = time.perf_counter()
        whole = write_trailers12k_shaped(folder / "synthetic.h5", n_videos)
        made = time.perf_counter() - started
        started = time.perf_counter()
        parts = split_into_parts(whole, N_PARTS)
        written = time.perf_counter() - started
        out = folder / "merged.h5"
        command = [sys.executable, "-c", _MERGE_CHILD, *map(str, parts), str(out)]
        child = run_child(command, threads=1)
        seconds = json.loads(child.out.strip().splitlines()[-1])["seconds"]
        clips = merged_clips(out)
        megabytes = clips * dim * 2 / 1e6
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
            f"{n_videos} videos: file made in {made:.1f} s, cut into parts in {written:.1f} s; "
            f"merged file vs the whole one: {compare_feature_files(whole, out)}"
        )
        shutil.rmtree(folder)
    baseline = run_child([sys.executable, "-c", "import extract.merge"], threads=1)
    table(
        f"2. merge_parts: {N_PARTS} part files -> 1 ({dim}-d float16, 50-150 clips per video)",
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
    print(f"  $ {Path(sys.executable).name} -c 'merge_parts(PARTS, OUT)' (timed inside)")


def merged_clips(path: Path) -> int:
    """The clips of a merged file, after checking that it is no longer marked as a part."""
    from vtl.features import FeatureFile

    with FeatureFile(path) as f:
        if f.part is not None or f.manifest_index is not None:
            raise RuntimeError(f"{path}: the merged file is still marked as a part")
        return f.n_clips


if __name__ == "__main__":
    from bench_scale import main

    main(["merge"])
