"""The options several `probe` commands share, declared once, and how a command receives them.

`SHARED` names each shared option with its help and default; `shared_options(...)` gives a
command the ones it takes, listed in `--help` where its `shared` parameter stands, and hands
their values to it as one dict; `train_config` builds the run's `TrainConfig` from them. Light
on purpose: `probe --help` reads this module, and it loads no torch.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

from probe.config import TrainConfig
from vtl import defaults

# Our own settings' defaults (device, memory budget, padding, threads); the reference's come
# from vtl.defaults.
DEFAULT_CONFIG = TrainConfig()

LrOption = Annotated[float, typer.Option(help="AdamW learning rate.")]
WeightDecayOption = Annotated[float, typer.Option(help="AdamW weight decay.")]
ProtocolOption = Annotated[
    str,
    typer.Option(
        help="reference: train the one setting above; sweep: train a grid of learning rates x "
        "weight decays at once and keep the head best on validation (probe.sweep)."
    ),
]
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
    ),
]
ShardOption = Annotated[
    str, typer.Option(help="Train shard i/n of the runs (default: from torchrun or SLURM).")
]

# The options several commands share, declared once: name -> (option, default).
SHARED = {
    "jobs": (JobsOption, 1),
    "cache": (CacheOption, None),
    "shard": (ShardOption, None),
    "lr": (LrOption, defaults.LR),
    "weight_decay": (WeightDecayOption, DEFAULT_CONFIG.weight_decay),
    "protocol": (ProtocolOption, DEFAULT_CONFIG.protocol),
    "epochs": (EpochsOption, defaults.EPOCHS),
    "batch_size": (BatchSizeOption, defaults.BATCH_SIZE),
    "patience": (PatienceOption, defaults.PATIENCE),
    "scheduler_patience": (SchedulerPatienceOption, defaults.SCHEDULER_PATIENCE),
    "window": (WindowOption, defaults.WINDOW),
    "device": (DeviceOption, DEFAULT_CONFIG.device),
    "memory_budget_gb": (MemoryBudgetOption, DEFAULT_CONFIG.memory_budget_gb),
    "mask_padding": (MaskPaddingOption, DEFAULT_CONFIG.mask_padding),
    "threads": (SharedThreadsOption, DEFAULT_CONFIG.threads),
}
REPORT_RUNS = ("jobs", "cache", "shard")  # how a report's runs are spread
FIT = ("protocol", "lr", "weight_decay", "epochs", "batch_size", "patience", "scheduler_patience")
HARDWARE = ("device", "memory_budget_gb", "mask_padding")


def shared_options(*names: str):
    """Give a command the shared options `names` (of `SHARED`) where its `shared` parameter
    stands, so `--help` lists them in that place; the command receives their values as one
    dict, `shared`."""

    def decorate(command):
        signature = inspect.signature(command, eval_str=True)
        params = []
        for param in signature.parameters.values():
            if param.name != "shared":
                params.append(param)
                continue
            for name in names:
                annotation, default = SHARED[name]
                params.append(param.replace(name=name, default=default, annotation=annotation))

        @functools.wraps(command)
        def wrapper(**values):
            shared = {name: values.pop(name) for name in names}
            return command(**values, shared=shared)

        wrapper.__signature__ = signature.replace(parameters=params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


def train_config(shared: dict, **own) -> TrainConfig:
    """The TrainConfig of a command's shared training options and its own settings (`own`)."""
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in shared.items() if k in names}, **own)
