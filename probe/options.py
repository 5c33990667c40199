"""The options several `probe` commands share, declared once, and how a command receives them.

`SHARED` names each shared option with its help and default; `shared_options(...)` gives a
command the ones it takes, listed in `--help` where its `shared` parameter stands, and hands
their values to it as one dict; `train_config` builds the run's `TrainConfig` from them. The
`...Option` annotations are options several commands take each in a place of its own. Light
on purpose: `probe --help` reads this module, and it loads no torch.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

from probe.config import TrainConfig
from vtl import cli as vtl_cli
from vtl import defaults

# Our own settings' defaults (device, memory budget, padding, threads); the reference's come
# from vtl.defaults.
DEFAULT_CONFIG = TrainConfig()


def _option(kind: type, default, help: str) -> tuple:
    """A shared option as `SHARED` holds it: its annotation (type and --help text), default."""
    return Annotated[kind, typer.Option(help=help)], default


# The options several commands share, declared once: name -> (annotation, default).
SHARED = {
    "jobs": _option(int, 1, "Runs trained side by side, in worker processes."),
    "cache": _option(
        Path,
        None,
        "Cache of finished runs (default: $VTL_CACHE_DIR/probe-runs or "
        "~/.cache/vtl/probe-runs), shared by matrices and studies.",
    ),
    "shard": _option(str, None, "Train shard i/n of the runs (default: from torchrun or SLURM)."),
    "lr": _option(float, defaults.LR, "AdamW learning rate."),
    "weight_decay": _option(float, DEFAULT_CONFIG.weight_decay, "AdamW weight decay."),
    "protocol": _option(
        str,
        DEFAULT_CONFIG.protocol,
        "reference: train the one setting above; sweep: train a grid of learning rates x "
        "weight decays at once and keep the head best on validation (probe.sweep).",
    ),
    "epochs": _option(int, defaults.EPOCHS, "Maximum epochs."),
    "batch_size": _option(int, defaults.BATCH_SIZE, "Videos per training batch."),
    "patience": _option(int, defaults.PATIENCE, "Early stopping patience (epochs)."),
    "scheduler_patience": _option(
        int, defaults.SCHEDULER_PATIENCE, "ReduceLROnPlateau patience (epochs)."
    ),
    "window": _option(int, defaults.WINDOW, "Clips per training sample / eval window."),
    "device": _option(str, DEFAULT_CONFIG.device, "torch device: cpu, cuda, cuda:1."),
    "memory_budget_gb": _option(
        float,
        DEFAULT_CONFIG.memory_budget_gb,
        "Hold features in memory up to this size, else stream.",
    ),
    "mask_padding": _option(
        bool,
        DEFAULT_CONFIG.mask_padding,
        "Mask zero padding (--no-mask-padding: as the reference).",
    ),
    "threads": _option(
        int,
        DEFAULT_CONFIG.threads,
        "torch threads in all, shared by the jobs (0: torch's default).",
    ),
}
REPORT_RUNS = ("jobs", "cache", "shard")  # how a report's runs are spread
FIT = ("protocol", "lr", "weight_decay", "epochs", "batch_size", "patience", "scheduler_patience")
HARDWARE = ("device", "memory_budget_gb", "mask_padding")

# Options several commands take in a place of their own (not with the `shared` ones).
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
WaitOption = Annotated[
    bool,
    typer.Option("--wait", help="Wait for another run writing the same report folder to end."),
]
ReportSplitsOption = Annotated[str, typer.Option(help="'all' or a list like 0,1,2.")]


def shared_options(*names: str):
    """Give a command the shared options `names` (of `SHARED`) where its `shared` parameter
    stands (`vtl.cli.shared_options`); the command receives their values as one dict."""
    return vtl_cli.shared_options(SHARED, names)


def train_config(shared: dict, **own) -> TrainConfig:
    """The TrainConfig of a command's shared training options and its own settings (`own`)."""
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in shared.items() if k in names}, **own)
