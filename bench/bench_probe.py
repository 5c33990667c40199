"""Benchmark: DIViTA training time per epoch on Trailers12k-shaped synthetic features.

Makes a feature file shaped like Trailers12k with one backbone (12,000 videos, 50-150 clips each,
100 on average, 768-d float16, 10 labels, 3 splits) through the shared FeatureWriter, then
trains DIViTA for a few epochs with the reference's settings and prints the time per training
epoch, per validation pass and for the test scoring, the feature loading time and the peak RSS.

    .venv/bin/python bench/bench_probe.py [--videos 12000] [--epochs 2] [--threads 2]
                                          [--keep DIR] [--memory-budget-gb 4]

Target: one training epoch in under 10 s on 2 CPU cores.
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle threads sleep instead of spinning, or a busy machine (other
# processes on the same 2 cores) makes every multi-threaded op wait for a descheduled spinner.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from probe.config import TrainConfig  # noqa: E402
from probe.synthetic import write_synthetic_features  # noqa: E402
from probe.train import train_probe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: default)")
    parser.add_argument("--model", default="divita")
    parser.add_argument("--memory-budget-gb", type=float, default=4.0)
    parser.add_argument("--keep", type=Path, help="folder to keep (and reuse) the feature file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        path = folder / f"trailers12k-shaped-{args.videos}.h5"
        started = time.perf_counter()
        if not path.exists():
            write_synthetic_features(
                path,
                n_videos=args.videos,
                clips=(50, 150),
                feature_dim=768,
                n_labels=10,
                n_splits=3,
                signal=0.3,
                backbone="synthetic-768",
            )
            made = f"{time.perf_counter() - started:.1f} s"
        else:
            made = "reused"
        config = TrainConfig(
            model=args.model,
            epochs=args.epochs,
            patience=args.epochs + 1,
            threads=args.threads,
            memory_budget_gb=args.memory_budget_gb,
        )
        started = time.perf_counter()
        result = train_probe([path], config, progress=False)
        total = time.perf_counter() - started

    run = result["training"][0]
    videos = result["videos"]
    clips = result["features"][0]["clips"]
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    rows = [
        (
            "features",
            f"{args.videos} videos, {clips} clips x 768 (float16 "
            f"{clips * 768 * 2 / 2**30:.2f} GiB), written {made}",
        ),
        ("split 0", f"train {videos['train']}, val {videos['val']}, test {videos['test']}"),
        ("torch threads", f"{torch.get_num_threads() if not args.threads else args.threads}"),
        ("load features", f"{run['load_seconds']:.1f} s"),
        (
            "train epoch",
            " ".join(f"{s:.1f}" for s in run["train_seconds"])
            + f" s (median {statistics.median(run['train_seconds']):.1f} s)",
        ),
        (
            "train epoch CPU",
            " ".join(f"{s:.1f}" for s in run["train_cpu_seconds"])
            + " CPU-s (all threads; wall time on idle cores ~ this / threads)",
        ),
        ("val pass", " ".join(f"{s:.1f}" for s in run["val_seconds"]) + " s"),
        ("test scoring", f"{run['test_seconds']:.1f} s (val + test windows)"),
        ("whole run", f"{total:.1f} s for {run['epochs_run']} epochs"),
        ("peak RSS", f"{peak_gib:.2f} GiB"),
        ("test uAP", f"{result['metrics']['test']['uap']:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{args.model} on Trailers12k-shaped synthetic features")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


if __name__ == "__main__":
    main()
