"""Scale benchmark: 1 vs 2 extraction processes, merge speed, peak memory vs input size.

    .venv/bin/python bench/bench_scale.py [--videos 36] [--quick]
        [--only extract|merge|memory|single-shot|probe|matrix] [--launcher torchrun|shard]
        [--transnetv2] [--keep DIR]

Prints one table per part; each part is a file of its own that also runs alone
(`bench/bench_merge.py --quick`), and says in its docstring what it measures and its target:

1. extract (bench_shards.py): one `extract run` vs the same run as 2 shards; the merged file
   must equal the single-process one.
2. merge (bench_merge.py): `merge_parts` speed and peak RSS on Trailers12k-shaped part files.
3. memory (bench_memory.py): peak RSS of `extract run` on a 30 s vs a 300 s video.
3b. single-shot (bench_single_shot.py): peak RSS on a 10 s vs a 600 s single continuous shot.
4. probe (bench_probe_scale.py): peak RSS of `probe train` on a feature file vs one 4x larger.
5. matrix (bench_matrix.py): `probe matrix --jobs 1` vs `--jobs 2`.

Everything whose memory or parallelism is measured runs in a fresh subprocess; peak RSS is the
child's own `ru_maxrss` from `os.wait4` in a small launcher process (common.py). Machines
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
import shlex  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

from bench_matrix import bench_matrix  # noqa: E402
from bench_memory import bench_memory  # noqa: E402
from bench_merge import bench_merge  # noqa: E402
from bench_probe_scale import bench_probe_scale  # noqa: E402
from bench_shards import bench_shards  # noqa: E402
from bench_single_shot import bench_single_shot  # noqa: E402
from common import BIN, loadavg, machine  # noqa: E402

# The parts, in the order they run: --only NAME -> the function that prints its table.
PARTS = {
    "extract": bench_shards,
    "merge": bench_merge,
    "memory": bench_memory,
    "single-shot": bench_single_shot,
    "probe": bench_probe_scale,
    "matrix": bench_matrix,
}


def main(parts: Sequence[str] = tuple(PARTS)) -> None:
    """Parse the options, print the machine, run `parts` (or those --only names) in order."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=None, help="demo videos (36; quick: 12)")
    parser.add_argument("--quick", action="store_true", help="smaller everything (~3 min)")
    parser.add_argument("--only", choices=parts, action="append", help="run only this part")
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
    chosen = args.only or list(parts)

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
    try:
        for part, run in PARTS.items():
            if part in chosen:
                part_started = time.perf_counter()
                run(work, args)
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
