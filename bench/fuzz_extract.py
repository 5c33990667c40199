"""Robustness of `extract run` on broken and odd videos (extract/fuzz.py), mixed with clean ones.

    .venv/bin/python bench/fuzz_extract.py [--n 300] [--seed 0] [--clean 6] [--sources 4]
        [--timeout 3600] [--keep DIR] [--transnetv2]

Makes N files from a few demo videos (byte flips in headers, indexes and payloads, truncations,
dropped / repeated / swapped blocks, zeroed boxes and tails, garbage before and after, segments
of other sizes or codecs joined, wrong extensions, random bytes, text) in ten containers and
codecs, runs `extract run` over them with clean demo videos among them (EfficientNet-Lite0, one
frame per clip, fixed 40-frame segments: fast, and shot detection is not what is tested;
`--transnetv2` instead runs TransNetV2, whose 48x27 frames the decoder makes as well), then
over the clean videos alone, and prints: files extracted, failed with a reason, neither, hangs
(the run passing --timeout), tracebacks, wall time, and whether the clean videos' arrays equal
those of the clean run. Per mutation, how many files were extracted and how many failed; each
failure nobody anticipated (an exception's type and where it was raised, not a reason), in full
with its file and damage.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Small and fast: the fuzz is about decoding damaged files, not about the model.
OPTIONS = (
    "-b efficientnet_lite0 --segmentation fixed --shot-frames 40 --image-frames 1 --batch-size 8"
).split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="fuzzed files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clean", type=int, default=6, help="clean demo videos mixed in")
    parser.add_argument("--sources", type=int, default=4, help="demo videos the files come from")
    parser.add_argument("--timeout", type=float, default=3600, help="a hang past this (s)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument(
        "--transnetv2", action="store_true", help="TransNetV2 shots (the decoder's 48x27 frames)"
    )
    args = parser.parse_args()

    from extract.demo_data import make_demo_data
    from extract.fuzz import run_fuzz
    from vtl.manifest import read_manifest

    work = args.keep or Path(tempfile.mkdtemp(prefix="fuzz-extract-"))
    count = max(6, args.clean, args.sources)
    demo = read_manifest(make_demo_data(work / "demo", count, progress=False))
    report = run_fuzz(
        work,
        demo.paths[: args.sources],
        demo.paths[: args.clean],
        args.n,
        args.seed,
        args.timeout,
        tuple(OPTIONS if not args.transnetv2 else [*OPTIONS[:2], "--image-frames", "1"]),
    )
    fuzzed = [f"fuzz{i}" for i in range(len(report.cases))]
    shots = "TransNetV2 shots" if args.transnetv2 else "fixed segments"
    print(f"{args.n} fuzzed files + {args.clean} clean videos, seed {args.seed}, {shots}")
    print(f"{'mutation':18} {'files':>5} {'extracted':>9} {'failed':>6}")
    for name, (files, extracted, failed) in report.by_mutation().items():
        print(f"{name:18} {files:5d} {extracted:9d} {failed:6d}")
    print()
    fuzzed_ok = sum(v in report.extracted for v in fuzzed)
    clean_ok = sum(f"clean{j}" in report.extracted for j in range(args.clean))
    print(f"extracted:              {fuzzed_ok} fuzzed, {clean_ok} clean")
    concealed = sum(v in report.concealed for v in fuzzed)
    print(f"  with concealed frames: {concealed} fuzzed ({sum(report.concealed.values())} frames)")
    print(f"failed with a reason:   {sum(v in report.failed for v in fuzzed)}")
    print(f"neither (unaccounted):  {len(report.unaccounted)} {report.unaccounted[:5]}")
    print(f"hangs:                  {int(report.hang)}")
    print(f"tracebacks:             {report.tracebacks}")
    print(f"exit code:              {report.returncode}")
    print(f"wall time:              {report.seconds:.1f} s")
    print(f"clean videos identical: {report.clean_identical}")
    reasons = collections.Counter(r.split(" (at ")[0][:90] for r in report.failed.values())
    print("\nfailure reasons:")
    for reason, n in reasons.most_common():
        print(f"{n:5d}  {reason}")
    # Failures nobody anticipated carry the place they were raised: each in full, with its file.
    for video, reason in sorted(report.failed.items()):
        if " (at " in reason:
            case = report.cases[int(video[4:])] if video.startswith("fuzz") else None
            made = f"{case.path.name}, {case.mutation} {case.detail}" if case else video
            print(f"unanticipated ({made}): {reason}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
