"""Part 4 of bench_scale: peak memory of `probe train` against the size of the feature file.

A Trailers12k-shaped synthetic feature file (1,500 videos; --quick: 400) vs one 4x larger,
streaming (`--memory-budget-gb 0`, target: flat) and in memory (the default, grows by design).

    .venv/bin/python bench/bench_probe_scale.py [--quick] [--probe-model linear]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from common import (
    MIB,
    TRAILERS12K_SHAPE,
    print_commands,
    run_child,
    script,
    table,
    write_trailers12k_shaped,
)

MODES = {"streaming": ["--memory-budget-gb", "0"], "in memory": []}


def bench_probe_scale(work: Path, args) -> None:
    """Print peak RSS of `probe train` on the x1 and x4 files, streaming and in memory."""
    folder = work / "probe"
    folder.mkdir()
    base = 400 if args.quick else 1500
    dim = TRAILERS12K_SHAPE["feature_dim"]
    started = time.perf_counter()
    files = {
        factor: write_trailers12k_shaped(folder / f"features-x{factor}.h5", base * factor)
        for factor in (1, 4)
    }
    made = time.perf_counter() - started
    baseline = run_child([sys.executable, "-c", "import probe.cli"], threads=2)
    rows, peaks, commands = [], {}, []
    for mode, budget in MODES.items():
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
                    f"{clips * dim * 2 / MIB:.0f}",
                    f"{child.seconds:.1f}",
                    f"{child.peak_mib:.0f}",
                    f"{child.peak_mib - baseline.peak_mib:+.0f}",
                    f"{metrics['metrics']['test']['uap']:.2f}",
                ]
            )
            if factor == 4:
                commands.append(command)
    table(
        f"4. peak memory of `probe train --model {args.probe_model} --epochs 1` "
        f"({dim}-d float16, 50-150 clips per video)",
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
    for mode in MODES:
        grew = peaks[(mode, 4)] - peaks[(mode, 1)]
        print(
            f"{mode}: x4 / x1 peak RSS {peaks[(mode, 4)] / peaks[(mode, 1)]:.2f}x "
            f"({grew:+.0f} MiB)" + (" (target: flat)" if mode == "streaming" else "")
        )
    print(
        f"feature files written in {made:.1f} s; `import probe.cli` alone peaks at "
        f"{baseline.peak_mib:.0f} MiB"
    )
    print_commands(commands, work)


if __name__ == "__main__":
    from bench_scale import main

    main(["probe"])
