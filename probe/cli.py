"""`probe`: train probes on cached clip features, score checkpoints, write predictions.

Thin commands over `probe.train` and `probe.evaluate`; results go to files and stdout, logs and
progress bars to stderr. User errors are one line and exit code 2 (`vtl.cli.run_app`).
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle worker threads sleep instead of spinning. On a shared machine
# (or several probe runs side by side) spinning threads make every parallel op wait for a
# descheduled peer, 10-100x slower; set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import typer  # noqa: E402

from probe.config import TrainConfig  # noqa: E402
from probe.data import open_probe_data  # noqa: E402
from probe.evaluate import evaluate_checkpoint, predict, write_predictions  # noqa: E402
from probe.metrics import METRIC_NAMES  # noqa: E402
from probe.train import run_grid, train_probe  # noqa: E402
from vtl.cli import run_app  # noqa: E402
from vtl.errors import UserError  # noqa: E402

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train probes on cached clip features and score them with the reference metrics.",
)

_DEFAULT = TrainConfig()
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
    lr: float = typer.Option(_DEFAULT.lr, help="AdamW learning rate."),
    epochs: int = typer.Option(_DEFAULT.epochs, help="Maximum epochs."),
    batch_size: int = typer.Option(_DEFAULT.batch_size, help="Videos per training batch."),
    patience: int = typer.Option(_DEFAULT.patience, help="Early stopping patience (epochs)."),
    scheduler_patience: int = typer.Option(
        _DEFAULT.scheduler_patience, help="ReduceLROnPlateau patience (epochs)."
    ),
    window: int = typer.Option(_DEFAULT.window, help="Clips per training sample / eval window."),
    device: str = typer.Option(_DEFAULT.device, help="torch device: cpu, cuda, cuda:1."),
    memory_budget_gb: float = typer.Option(
        _DEFAULT.memory_budget_gb, help="Hold features in memory up to this size, else stream."
    ),
    mask_padding: bool = typer.Option(
        _DEFAULT.mask_padding, help="Mask zero padding (--no-mask-padding: as the reference)."
    ),
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
    ids, labels, scores = predict(checkpoint, features, split, subset, memory_budget_gb)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_predictions(out, ids, labels, scores)
    typer.echo(f"wrote {len(ids)} videos to {out}")


def main() -> None:
    """Console script entry point."""
    run_app(app)


if __name__ == "__main__":
    main()
