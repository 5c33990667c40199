"""`probe`: train probes on cached clip features, score checkpoints, write predictions.

Thin commands over `probe.train`, `probe.evaluate`, `probe.matrix`, `probe.transferability`
and `probe.trailers12k`; results go to files and stdout, logs and
progress bars to stderr. User errors are one line and exit code 2 (`vtl.cli.run_app`).
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle worker threads sleep instead of spinning. On a shared machine
# (or several probe runs side by side) spinning threads make every parallel op wait for a
# descheduled peer, 10-100x slower; set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated  # noqa: E402

import typer  # noqa: E402

from probe.config import TrainConfig  # noqa: E402
from probe.data import open_probe_data  # noqa: E402
from probe.evaluate import evaluate_checkpoint, predict, write_predictions  # noqa: E402
from probe.matrix import run_matrix  # noqa: E402
from probe.metrics import METRIC_NAMES  # noqa: E402
from probe.study import run_study  # noqa: E402
from probe.trailers12k import import_trailers12k  # noqa: E402
from probe.train import run_grid, train_probe  # noqa: E402
from probe.transferability import SCORES, score_feature_file  # noqa: E402
from vtl.cli import run_app  # noqa: E402
from vtl.errors import UserError  # noqa: E402
from vtl.paths import check_output_file  # noqa: E402
from vtl.shards import resolve_shard  # noqa: E402
from vtl.study import AXES, read_study  # noqa: E402

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train probes on cached clip features and score them with the reference metrics.",
)

_DEFAULT = TrainConfig()

# Training options that `train` and `matrix` share (defaults: TrainConfig's).
LrOption = Annotated[float, typer.Option(help="AdamW learning rate.")]
EpochsOption = Annotated[int, typer.Option(help="Maximum epochs.")]
BatchSizeOption = Annotated[int, typer.Option(help="Videos per training batch.")]
PatienceOption = Annotated[int, typer.Option(help="Early stopping patience (epochs).")]
SchedulerPatienceOption = Annotated[int, typer.Option(help="ReduceLROnPlateau patience (epochs).")]
WindowOption = Annotated[int, typer.Option(help="Clips per training sample / eval window.")]
DeviceOption = Annotated[str, typer.Option(help="torch device: cpu, cuda, cuda:1.")]
MemoryBudgetOption = Annotated[
    float, typer.Option(help="Hold features in memory up to this size, else stream.")
]
MaskPaddingOption = Annotated[
    bool, typer.Option(help="Mask zero padding (--no-mask-padding: as the reference).")
]
JobsOption = Annotated[int, typer.Option(help="Runs trained side by side, in worker processes.")]
SharedThreadsOption = Annotated[
    int, typer.Option(help="torch threads in all, shared by the jobs (0: torch's default).")
]
CacheOption = Annotated[
    Path,
    typer.Option(
        help="Cache of finished runs (default: $VTL_CACHE_DIR/probe-runs or "
        "~/.cache/vtl/probe-runs), shared by matrices and studies."
    ),  # fmt: skip
]
ShardOption = Annotated[
    str, typer.Option(help="Train shard i/n of the runs (default: from torchrun or SLURM).")
]
_HEADER = {"uap": "uAP", "map": "mAP", "wap": "wAP", "sap": "sAP"}


@app.command()
def train(
    features: list[Path] = typer.Option(
        ..., "--features", help="Feature file (.h5); twice or more for fusion."
    ),
    out: Path = typer.Option(..., "--out", help="Run folder (metrics.json, predictions.csv, ...)."),
    model: str = typer.Option(_DEFAULT.model, help="divita, linear, mlp, savg or gru."),
    split: int = typer.Option(_DEFAULT.split, help="Split column to train and test on."),
    seed: int = typer.Option(_DEFAULT.seed, help="Random seed (first seed with --seeds)."),
    splits: str = typer.Option(None, help="'all' or a list like 0,1,2: run every split."),
    seeds: int = typer.Option(None, help="Run this many seeds (seed, seed+1, ...)."),
    fusion: str = typer.Option(
        _DEFAULT.fusion, help="Several files: late (model per file, logits averaged) or concat."
    ),
    lr: LrOption = _DEFAULT.lr,
    epochs: EpochsOption = _DEFAULT.epochs,
    batch_size: BatchSizeOption = _DEFAULT.batch_size,
    patience: PatienceOption = _DEFAULT.patience,
    scheduler_patience: SchedulerPatienceOption = _DEFAULT.scheduler_patience,
    window: WindowOption = _DEFAULT.window,
    device: DeviceOption = _DEFAULT.device,
    memory_budget_gb: MemoryBudgetOption = _DEFAULT.memory_budget_gb,
    mask_padding: MaskPaddingOption = _DEFAULT.mask_padding,
    threads: int = typer.Option(_DEFAULT.threads, help="torch threads (0: torch's default)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a probe on one split and seed (or on every split and seed) and test it."""
    config = TrainConfig(
        model=model,
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        patience=patience,
        scheduler_patience=scheduler_patience,
        window=window,
        seed=seed,
        split=split,
        fusion=fusion,
        device=device,
        memory_budget_gb=memory_budget_gb,
        mask_padding=mask_padding,
        threads=threads,
    ).validate()
    if splits is None and seeds is None:
        result = train_probe(features, config, out, progress=not quiet)
        _print_table(["split", "seed"], [[split, seed, result["metrics"]["test"]]])
        _print_chance(result["chance"]["test"])
        typer.echo(
            f"wrote {out / 'metrics.json'}, {out / 'predictions.csv'}, {out / 'checkpoint.pt'}"
        )
        return
    split_list = _parse_splits(splits, features) if splits is not None else [split]
    if seeds is not None and seeds < 1:
        raise UserError("--seeds must be at least 1")
    seed_list = list(range(seed, seed + (seeds or 1)))
    summary = run_grid(features, config, split_list, seed_list, out, progress=not quiet)
    rows = [[r["split"], r["seed"], r["test"]] for r in summary["runs"]]
    _print_table(["split", "seed"], rows, summary["test"])
    _print_chance({k: v["mean"] for k, v in summary["chance"].items()})
    typer.echo(f"wrote {out / 'summary.json'} and one folder per run")


def _parse_splits(text: str, features: list[Path]) -> list[int]:
    if text.strip().lower() == "all":
        data = open_probe_data(features)
        try:
            return list(range(data.n_splits))
        finally:
            data.close()
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--splits {text!r}: give 'all' or numbers like 0,1,2") from None


def _report_splits(text: str) -> str | list[int]:
    """--splits of a report: 'all' (resolved against the files later) or split numbers."""
    return "all" if text.strip().lower() == "all" else _parse_splits(text, [])


def _print_table(keys: list[str], rows: list[list], summary: dict | None = None) -> None:
    header = [*keys, *(_HEADER[m] for m in METRIC_NAMES)]
    typer.echo("  ".join(f"{h:>7}" for h in header))
    for *ids, metrics in rows:
        cells = [f"{i:>7}" for i in ids] + [f"{metrics[m]:7.2f}" for m in METRIC_NAMES]
        typer.echo("  ".join(cells))
    if summary is not None:
        cells = [f"{'mean':>7}", f"{'±std':>7}"]
        cells += [f"{summary[m]['mean']:.2f}±{summary[m]['std']:.2f}" for m in METRIC_NAMES]
        typer.echo("  ".join(cells))


def _print_chance(chance: dict) -> None:
    """The chance level of each metric on the test labels (what an uninformed ranking scores)."""
    cells = [f"{'chance':>7}", f"{'':>7}"] + [f"{chance[m]:7.2f}" for m in METRIC_NAMES]
    typer.echo("  ".join(cells))


@app.command("eval")
def eval_(
    checkpoint: Path = typer.Option(..., help="checkpoint.pt written by `probe train`."),
    features: list[Path] = typer.Option(..., "--features", help="Feature file(s), as in training."),
    split: int = typer.Option(None, help="Split (default: the one trained on)."),
    subset: str = typer.Option("test", help="train, val or test."),
    out: Path = typer.Option(None, help="Also write the metrics to this JSON file."),
    memory_budget_gb: float = typer.Option(None, help="Override the checkpoint's budget."),
) -> None:
    """Score a checkpoint on a split of feature files with the reference metrics."""
    if out is not None:
        check_output_file(out)
    result = evaluate_checkpoint(checkpoint, features, split, subset, memory_budget_gb)
    result.pop("scores")
    result.pop("video_ids")
    _print_table(["split", "subset"], [[result["split"], subset, result["metrics"]]])
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        typer.echo(f"wrote {out}")


@app.command("predict")
def predict_(
    checkpoint: Path = typer.Option(..., help="checkpoint.pt written by `probe train`."),
    features: list[Path] = typer.Option(..., "--features", help="Feature file(s), as in training."),
    out: Path = typer.Option(..., help="CSV to write: video_id,<label scores>."),
    split: int = typer.Option(None, help="With --subset: the split (default: trained on)."),
    subset: str = typer.Option(None, help="Only train, val or test videos (default: all)."),
    memory_budget_gb: float = typer.Option(None, help="Override the checkpoint's budget."),
) -> None:
    """Write a checkpoint's per-label scores for the videos of feature files."""
    check_output_file(out)
    ids, labels, scores = predict(checkpoint, features, split, subset, memory_budget_gb)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_predictions(out, ids, labels, scores)
    typer.echo(f"wrote {len(ids)} videos to {out}")


def _names(text: str) -> list[str]:
    """A comma-separated option as a list; "none" or "" is the empty list."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    return [] if names == ["none"] else names


@app.command()
def matrix(
    features: list[Path] = typer.Option(
        ..., "--features", help="Feature files and/or folders (searched for *.h5); repeatable."
    ),
    out: Path = typer.Option(..., "--out", help="Report folder, e.g. reports/NAME."),
    models: str = typer.Option("linear,mlp,divita", help="Probe models, the matrix's columns."),
    splits: str = typer.Option("all", help="'all' or a list like 0,1,2."),
    seeds: int = typer.Option(1, help="Seeds per split (seed, seed+1, ...)."),
    seed: int = typer.Option(0, help="First seed."),
    scores: str = typer.Option(
        ",".join(SCORES), help=f"Training-free scores: {','.join(SCORES)} or none."
    ),
    score_max_videos: int = typer.Option(None, help="Score at most this many train videos."),
    jobs: JobsOption = 1,
    cache: CacheOption = None,
    shard: ShardOption = None,
    lr: LrOption = _DEFAULT.lr,
    epochs: EpochsOption = _DEFAULT.epochs,
    batch_size: BatchSizeOption = _DEFAULT.batch_size,
    patience: PatienceOption = _DEFAULT.patience,
    scheduler_patience: SchedulerPatienceOption = _DEFAULT.scheduler_patience,
    window: WindowOption = _DEFAULT.window,
    device: DeviceOption = _DEFAULT.device,
    memory_budget_gb: MemoryBudgetOption = _DEFAULT.memory_budget_gb,
    mask_padding: MaskPaddingOption = _DEFAULT.mask_padding,
    threads: SharedThreadsOption = _DEFAULT.threads,
    print_: bool = typer.Option(False, "--print", help="Also print matrix.md to stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train every (feature file x probe) cell, family fusions and scores; write the matrix.

    Finished runs are cached (--cache, shared with `probe study`): a rerun trains only new or
    changed runs.
    """
    if seeds < 1:
        raise UserError("--seeds must be at least 1")
    split_list = _report_splits(splits)
    config = TrainConfig(
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        patience=patience,
        scheduler_patience=scheduler_patience,
        window=window,
        device=device,
        memory_budget_gb=memory_budget_gb,
        mask_padding=mask_padding,
        threads=threads,
    )
    with _quiet_runs():
        result = run_matrix(
            features,
            out,
            models=_names(models),
            splits=split_list,
            seeds=list(range(seed, seed + seeds)),
            config=config,
            scores=_names(scores),
            score_max_videos=score_max_videos,
            jobs=jobs,
            progress=not quiet,
            cache=cache,
            shard=resolve_shard(shard),
        )
    if not result.complete:
        _shard_done("matrix", out)
        return
    logging.getLogger(__name__).info(
        "trained %d cells, %d from the cache; wrote %s",
        len(result.trained),
        len(result.cells) - len(result.trained),
        ", ".join(p.name for p in result.outputs.values()),
    )
    if print_:
        typer.echo(result.markdown)
    typer.echo(str(result.outputs["md"]))


@contextlib.contextmanager
def _quiet_runs():
    """One line per run under a bar over runs is noise; warnings still show."""
    quieter = [logging.getLogger(n) for n in ("probe.train", "probe.transferability")]
    levels = [logger.level for logger in quieter]
    for logger in quieter:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(quieter, levels, strict=True):
            logger.setLevel(level)


def _shard_done(what: str, out: Path) -> None:
    typer.echo(
        f"this shard's runs are done; the last shard to finish writes the {what} to {out}",
        err=True,
    )


@app.command()
def study(
    study_dir: Path = typer.Option(
        None, "--study", help="A study made by `extract study` (its folder or study.json)."
    ),
    features: list[Path] = typer.Option(
        None,
        "--features",
        help="Instead of --study: one feature file per backbone (repeatable); "
        "the probe axes alone are studied.",
    ),  # fmt: skip
    out: Path = typer.Option(None, "--out", help="Report folder (default: STUDY/report)."),
    window: str = typer.Option(None, help="Clips per window to compare, e.g. 10,30."),
    models: str = typer.Option(None, help="Temporal models to compare, e.g. savg,gru,divita."),
    design: str = typer.Option(None, help="axis or grid (default: the study's)."),
    splits: str = typer.Option("all", help="'all' or a list like 0,1,2."),
    seeds: int = typer.Option(3, help="Seeds per split (seed, seed+1, ...): the test's pairs."),
    seed: int = typer.Option(0, help="First seed."),
    alpha: float = typer.Option(0.05, help="Level of the paired test's verdict."),
    jobs: JobsOption = 1,
    cache: CacheOption = None,
    shard: ShardOption = None,
    lr: LrOption = _DEFAULT.lr,
    epochs: EpochsOption = _DEFAULT.epochs,
    batch_size: BatchSizeOption = _DEFAULT.batch_size,
    patience: PatienceOption = _DEFAULT.patience,
    scheduler_patience: SchedulerPatienceOption = _DEFAULT.scheduler_patience,
    device: DeviceOption = _DEFAULT.device,
    memory_budget_gb: MemoryBudgetOption = _DEFAULT.memory_budget_gb,
    mask_padding: MaskPaddingOption = _DEFAULT.mask_padding,
    threads: SharedThreadsOption = _DEFAULT.threads,
    print_: bool = typer.Option(False, "--print", help="Also print study.md to stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train every variant of a study and report each one's difference from the baseline with a
    paired test over the same splits and seeds.

    Runs are cached (shared with `probe matrix`): a rerun trains nothing new.
    """
    if seeds < 1:
        raise UserError("--seeds must be at least 1")
    plan = read_study(study_dir) if study_dir is not None else None
    if out is None:
        if plan is None:
            raise UserError("--out: give a report folder (with --features there is no study)")
        out = plan.path.parent / "report"
    split_list = _report_splits(splits)
    config = TrainConfig(
        lr=lr, epochs=epochs, batch_size=batch_size, patience=patience,
        scheduler_patience=scheduler_patience, device=device, memory_budget_gb=memory_budget_gb,
        mask_padding=mask_padding, threads=threads,
    )  # fmt: skip
    probe_axes = {"window": AXES["window"].values(window), "model": AXES["model"].values(models)}
    with _quiet_runs():
        result = run_study(
            out, plan, features or (), probe_axes, split_list, list(range(seed, seed + seeds)),
            config, design, alpha, jobs, progress=not quiet, cache=cache,
            shard=resolve_shard(shard),
        )  # fmt: skip
    if not result.complete:
        _shard_done("study report", out)
        return
    logging.getLogger(__name__).info(
        "study: %d variants, %d runs trained now; wrote %s",
        len(result.variants),
        result.trained,
        ", ".join(p.name for p in result.outputs.values()),
    )
    if print_:
        typer.echo(result.markdown)
    typer.echo(str(result.outputs["md"]))


@app.command()
def score(
    features: Path = typer.Option(..., "--features", help="Feature file (.h5)."),
    split: int = typer.Option(0, help="Split whose train videos are scored."),
    methods: str = typer.Option(",".join(SCORES), help=f"Any of {', '.join(SCORES)}."),
    max_videos: int = typer.Option(None, help="Score at most this many train videos."),
    knn_k: int = typer.Option(10, help="Neighbours of the kNN score."),
    out: Path = typer.Option(None, help="Also write the scores to this JSON file."),
) -> None:
    """Training-free transferability scores of a feature file (no probe trained)."""
    names = _names(methods)
    if not names:
        raise UserError(f"--methods: choose among {', '.join(SCORES)}")
    if out is not None:
        check_output_file(out)
    results = score_feature_file(features, split, names, max_videos=max_videos, knn_k=knn_k)
    for name, value in results.items():
        typer.echo(f"{name:>7}  {value:.6f}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {"features": str(features), "split": split, "max_videos": max_videos,
                  "knn_k": knn_k, "scores": results}  # fmt: skip
        out.write_text(json.dumps(record, indent=2) + "\n")
        typer.echo(f"wrote {out}")


@app.command("import-trailers12k")
def import_trailers12k_(
    features: Path = typer.Option(..., "--features", help="The reference's zarr store (folder)."),
    labels: Path = typer.Option(..., "--labels", help="The reference's mtgc.csv."),
    out: Path = typer.Option(..., "--out", help="Feature file to write (.h5)."),
    backbone: str = typer.Option("unknown", help="Backbone name recorded in the file."),
    pretrain: str = typer.Option("unknown", help="Pretraining recorded (in1k, k400, ...)."),
    kind: str = typer.Option("video", help="image (trailers_i_*) or video (trailers_k_*)."),
    family: str = typer.Option(None, help="Backbone family (default: the backbone)."),
    input_size: int = typer.Option(0, help="Backbone input size, if known (0: unknown)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Convert the reference work's published Trailers12k features into a vtl feature file."""
    if kind not in ("image", "video"):
        raise UserError(f"--kind {kind!r}: choose image or video")
    check_output_file(out)
    path = import_trailers12k(
        features,
        labels,
        out,
        backbone=backbone,
        pretrain=pretrain,
        kind=kind,
        family=family,
        input_size=input_size,
        progress=not quiet,
    )
    typer.echo(f"wrote {path}")


def main() -> None:
    """Console script entry point."""
    run_app(app)


if __name__ == "__main__":
    main()
