"""Part 5 of bench_scale: wall time of `probe matrix --jobs 1` vs `--jobs 2`.

4 synthetic feature files x 2 probes (linear, mlp), the same --threads 2 in all; checks that
both give the same matrix.

    .venv/bin/python bench/bench_matrix.py [--quick]
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from common import print_commands, run_child, script, table


def read_matrix(path: Path) -> dict[tuple[str, str], dict]:
    """The rows of a matrix.csv by (row, probe)."""
    with path.open() as handle:
        return {(r["row"], r["probe"]): r for r in csv.DictReader(handle)}


def compare_matrices(a: Path, b: Path) -> str:
    """'identical ...', or how many values of two matrix.csv files differ and by how much."""
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


def matrix_command(features: Path, out: Path, epochs: int, jobs: int) -> list[str]:
    """`probe matrix` of linear and mlp probes on split 0, without scores."""
    return [
        *script("probe"),
        "matrix",
        "--features",
        str(features),
        "--out",
        str(out),
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


def bench_matrix(work: Path, args) -> None:
    """Print the wall and CPU times of the matrix with 1 and 2 jobs, and whether they agree."""
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
        command = matrix_command(features, outs[jobs], epochs, jobs)
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
        commands.append(command)
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
    print_commands(commands, work)


if __name__ == "__main__":
    from bench_scale import main

    main(["matrix"])
