"""Benchmark: DIViTA training time per epoch on Trailers12k-shaped synthetic features.

Makes a feature file shaped like Trailers12k with one backbone (12,000 videos, 50-150 clips each,
100 on average, 768-d float16, 10 labels, 3 splits) through the shared FeatureWriter, then
trains DIViTA for a few epochs with the reference's settings and prints the time per training
epoch, per validation pass and for the test scoring, the feature loading time and the peak RSS.

    .venv/bin/python bench/bench_probe.py [--videos 12000] [--epochs 2] [--threads 2]
                                          [--keep DIR] [--memory-budget-gb 4]

Target: one training epoch in under 10 s on 2 CPU cores.

`--grid` times the sweep protocol instead (`probe.sweep`, on 400 videos by default): one head
(a reference run) against a grid of heads trained at once, for the linear probe (12 heads) and
DIViTA (6 and 12 heads), and the same grid trained one run after another. Learning rates are
log-spaced over 1e-5..1e-2 and patience exceeds the epochs, so every head trains every epoch.

    .venv/bin/python bench/bench_probe.py --grid [--videos 400] [--epochs 3] [--threads 2]

Targets: 12 linear heads in at most 1.5x the time of one; 6 DIViTA heads in at most 3x one.

What batching cannot share is each head's own arithmetic, so `--grid` also prints a floor for
DIViTA: one head is trained by the sweep under torch.profiler, the share of its training and
validation time spent in its own matrix products (matmuls and attention, forward and backward)
is measured, and the floor for K heads is 1 + (K - 1) x that share: the ratio K heads would
take if everything else (data, batch-norm statistics, element-wise steps, optimiser, Python)
were shared for free. Stacking the same float32 products cannot go below it on this machine
(their time grows with the heads: they are large enough to cost their FLOPs, unlike a linear
head's, whose time is per-call overhead that stacking does share). A measured ratio near the
floor means the time goes to arithmetic, not overhead.
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

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import write_trailers12k_shaped  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from probe.config import TrainConfig  # noqa: E402
from probe.data import open_probe_data, open_store, split_indices  # noqa: E402
from probe.models import build_probe  # noqa: E402
from probe.sweep import fit_sweep  # noqa: E402
from probe.train import train_probe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, help="videos (default 12000; 400 with --grid)")
    parser.add_argument("--epochs", type=int, help="epochs (default 2; with --grid, per probe)")
    parser.add_argument("--grid", action="store_true", help="time the sweep protocol's grid")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: default)")
    parser.add_argument("--model", default="divita")
    parser.add_argument("--memory-budget-gb", type=float, default=4.0)
    parser.add_argument("--keep", type=Path, help="folder to keep (and reuse) the feature file")
    args = parser.parse_args()
    args.videos = args.videos or (GRID_VIDEOS if args.grid else 12000)
    if not args.grid:
        args.epochs = args.epochs or 2

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        path = folder / f"trailers12k-shaped-{args.videos}.h5"
        started = time.perf_counter()
        if not path.exists():
            write_trailers12k_shaped(path, args.videos)
            made = f"{time.perf_counter() - started:.1f} s"
        else:
            made = "reused"
        if args.grid:
            print(f"features: {args.videos} Trailers12k-shaped videos, written {made}")
            grid_bench(path, args)
            return
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


GRID_VIDEOS = 400
# Per probe: heads trained at once, and epochs (a linear epoch on 400 videos is too short to
# time alone).
GRID_SIZES = {"linear": (12,), "divita": (6, 12)}  # each size divides the largest
GRID_EPOCHS = {"linear": 15, "divita": 3}
# Probes whose floor is printed: those whose per-head products are large enough to cost their
# FLOPs. A linear head's products are tiny, their time the per-call overhead that stacking
# shares, so counting it per head would give a floor above what 12 heads measure.
FLOOR_PROBES = ("divita",)


def grid_bench(path: Path, args) -> None:
    """Print one head vs a grid of heads at once vs the grid run after run, per probe."""
    print(
        f"batch {TrainConfig().batch_size}, torch threads "
        f"{args.threads or torch.get_num_threads()}; times are training + validation "
        "(wall s, and CPU s of the training passes: the machine may be shared)"
    )
    header = (
        f"  {'probe':<7} {'epochs':>6} {'heads':>5} {'at once':>15} {'one head':>15} {'ratio':>6}"
    )
    print(header + f" {'floor':>6} {'run after run':>15} {'saved':>6}")
    shares = {}
    for model, sizes in GRID_SIZES.items():
        epochs = args.epochs or GRID_EPOCHS[model]
        base = dict(
            model=model,
            epochs=epochs,
            patience=epochs + 1,
            scheduler_patience=epochs + 1,
            threads=args.threads,
            memory_budget_gb=args.memory_budget_gb,
        )
        # Nested grids: a smaller grid is every other rate of the largest, so the run-after-run
        # time of each grid sums solo runs of exactly its rates.
        lrs = np.geomspace(1e-5, 1e-2, max(sizes)).tolist()
        solo = [_fit_time(path, TrainConfig(**base, lr=lr)) for lr in lrs]
        one = solo[int(np.argmin([abs(lr - TrainConfig().lr) for lr in lrs]))]
        if model in FLOOR_PROBES:
            shares[model] = _product_share(path, TrainConfig(**base, protocol="sweep"))
        for heads in sizes:
            every = max(sizes) // heads
            config = TrainConfig(
                **base,
                protocol="sweep",
                sweep_lrs=tuple(lrs[::every]),
                sweep_weight_decays=(TrainConfig().weight_decay,),
            )
            at_once = _fit_time(path, config)
            sequential = tuple(sum(t[i] for t in solo[::every]) for i in range(2))
            floor = f"{1 + (heads - 1) * shares[model]:>5.2f}x" if model in shares else "-"
            print(
                f"  {model:<7} {epochs:>6} {heads:>5} {_pair(at_once):>15} {_pair(one):>15} "
                f"{at_once[0] / one[0]:>5.2f}x {floor:>6} {_pair(sequential):>15} "
                f"{sequential[0] / at_once[0]:>5.1f}x"
            )
    print("ratio: at once / one head (wall); saved: run after run / at once (wall)")
    print(
        "floor: 1 + (heads - 1) x the share of one head's time in its own matrix products "
        "(the lowest ratio any stacking could reach here); that share: "
        + ", ".join(f"{model} {share:.0%}" for model, share in shares.items())
    )


# The matrix products each head computes on its own parameters (forward and backward), which
# no batching over heads can share: dense products and the attention kernels.
PER_HEAD_OPS = (
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "aten::baddbmm",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
)


def _product_share(path: Path, config: TrainConfig) -> float:
    """Share of one head's training + validation wall time spent in its own matrix products.

    One head of the sweep (the default lr and weight decay) is trained under torch.profiler;
    the products' time over the training and validation passes' wall time (the profiler's own
    overhead falls outside the products, so it can only lower the share).
    """
    config = TrainConfig.from_dict(
        {
            **config.to_dict(),
            "sweep_lrs": (config.lr,),
            "sweep_weight_decays": (config.weight_decay,),
        }
    )
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    data = open_probe_data([path])
    try:
        subsets = split_indices(data, config.split)
        store = open_store(data, [0], config.memory_budget_gb)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            probe = build_probe(config.model, store.feature_dim, len(data.label_names))
            with profile(activities=[ProfilerActivity.CPU]) as profiled:
                _, history = fit_sweep(
                    probe,
                    store,
                    data,
                    subsets,
                    data.clip_counts[0],
                    config,
                    config.sweep_lrs,
                    config.sweep_weight_decays,
                    progress=False,
                )
    finally:
        data.close()
        torch.set_num_threads(threads)
    products = sum(e.self_cpu_time_total for e in profiled.key_averages() if e.key in PER_HEAD_OPS)
    return products / 1e6 / (sum(history["train_seconds"]) + sum(history["val_seconds"]))


def _fit_time(path: Path, config: TrainConfig) -> tuple[float, float]:
    """(training + validation wall seconds, training CPU seconds) of one train_probe run."""
    run = train_probe([path], config, progress=False)["training"][0]
    wall = sum(run["train_seconds"]) + sum(run["val_seconds"])
    return wall, sum(run["train_cpu_seconds"])


def _pair(times: tuple[float, float]) -> str:
    return f"{times[0]:.1f} s/{times[1]:.1f} c"


if __name__ == "__main__":
    main()
