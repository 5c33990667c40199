"""The configuration of one probe run, with the reference work's defaults (`vtl.defaults`).

Importing it loads no torch (the command line reads it for its defaults). Defaults and their
source (DIViTA repository, `train.py` and `experiment.py`):

- `lr=1e-4`, `epochs=100`: `experiment.py transfer`, the run that reproduces the paper's table
  (`train.py` alone defaults to 1e-3 and 10 epochs, a quick-look setting);
- `batch_size=32`, `window=30` (`--num_clips`), `patience=20` (early stopping on validation
  loss, `--stop_patience`), `scheduler_patience=10` (ReduceLROnPlateau on validation loss, its
  other arguments left at PyTorch's defaults: factor 0.1): `train.py`;
- AdamW with `amsgrad=True` and PyTorch's default weight decay (0.01), BCE with logits: `train.py`.

Our additions: `mask_padding` (True: zero padding is masked out of the batch-norm statistics,
attention keys and clip means; False: padding flows through the model as in the reference),
`memory_budget_gb` (features are held in memory when they fit, streamed otherwise; same results)
`fusion` for several feature files, `threads` (several runs side by side want one each),
and `co_train` / `init_from` (CoVeR-style co-training with other collections, fine-tuning a probe
trained on another collection: `probe.cotrain`), and `protocol`: "reference" trains the one
setting above, "sweep" a grid of learning rates (`sweep_lrs`) x weight decays
(`sweep_weight_decays`) at once and keeps the head best on validation (`probe.sweep`).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from vtl import defaults
from vtl.errors import UserError

FUSIONS = ("late", "concat")
PROTOCOLS = ("reference", "sweep")
# The sweep protocol's grid (why these: probe.sweep): half-decade learning rates over
# 1e-5..1e-1, the reference's 1e-4 among them, and weight decays from none to strong.
SWEEP_LRS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
SWEEP_WEIGHT_DECAYS = (0.0, 0.01, 0.1, 1.0)
# AdamW moves each weight by about lr a step: a larger one only overflows (torch then fails
# with "value cannot be converted to type float without overflow", not a loss message).
MAX_LR = 10.0
# Seeds seed torch's and numpy's generators: 0..2^32-1 holds for both. More seeds than
# MAX_SEEDS is no experiment, only a list too long to hold.
MAX_SEED = 2**32 - 1
MAX_SEEDS = 10_000
# Clips per window: a two-hour film is about 7,200 one-second clips; a longer window is padding
# only (held in memory for every video of a batch).
MAX_WINDOW = 10_000
# The devices a probe trains on (torch builds for others exist, but not for these models).
DEVICE_TYPES = ("cpu", "cuda", "mps")


@dataclass
class TrainConfig:
    """One probe run: which probe, how it is trained, on which split, with which seed."""

    model: str = defaults.PROBE_MODEL
    lr: float = defaults.LR
    weight_decay: float = defaults.WEIGHT_DECAY
    epochs: int = defaults.EPOCHS
    batch_size: int = defaults.BATCH_SIZE
    patience: int = defaults.PATIENCE
    scheduler_patience: int = defaults.SCHEDULER_PATIENCE
    window: int = defaults.WINDOW
    seed: int = 0
    split: int = 0
    fusion: str = "late"  # several feature files: "late" (one model each) or "concat" (one model)
    device: str = "cpu"
    memory_budget_gb: float = 4.0
    mask_padding: bool = True
    threads: int = 0  # torch intra-op threads for this run; 0 keeps the process's setting
    # Co-training (`probe.cotrain`): other collections' feature files (same backbone) whose
    # labels train heads of their own on the shared temporal model.
    co_train: tuple[str, ...] = ()
    init_from: str | None = None  # a checkpoint whose probe body starts training (A -> B)
    protocol: str = "reference"  # or "sweep": the grid below at once, picked on validation
    sweep_lrs: tuple[float, ...] = SWEEP_LRS
    sweep_weight_decays: tuple[float, ...] = SWEEP_WEIGHT_DECAYS
    # Video ids left out of training and testing: reports leave out those some file lacks
    # (`probe.catalogue.videos_left_out`), so that every backbone sees the same videos.
    exclude_videos: tuple[str, ...] = ()

    def validate(self) -> TrainConfig:
        """Check every field; return self.

        Raises:
            UserError: naming the option and the bad value.
        """
        # Here, not at import: `probe --help` and the CLI's defaults read this module, torch-free.
        import torch

        from probe.models import PROBES

        if self.model not in PROBES:
            raise UserError(f"--model {self.model!r}: choose one of {', '.join(PROBES)}")
        if self.fusion not in FUSIONS:
            raise UserError(f"--fusion {self.fusion!r}: choose one of {', '.join(FUSIONS)}")
        for name in ("epochs", "batch_size", "patience", "scheduler_patience", "window"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if self.window > MAX_WINDOW:
            raise UserError(f"--window must be at most {MAX_WINDOW:,} clips, got {self.window:,}")
        if not 0 < self.lr <= MAX_LR:
            raise UserError(f"--lr must be positive and at most {MAX_LR:g}, got {self.lr}")
        if not 0 <= self.weight_decay < math.inf:
            raise UserError(f"--weight-decay must be 0 or more, got {self.weight_decay}")
        self._validate_protocol()
        if self.split < 0:
            raise UserError(f"--split must be 0 or more, got {self.split}")
        check_seeds(self.seed, 1)
        cpus = os.cpu_count() or 1
        if not 0 <= self.threads <= cpus:
            raise UserError(
                f"--threads must be 0 (torch's default) to {cpus} (this machine's CPUs), "
                f"got {self.threads}"
            )
        self.co_train = tuple(str(p) for p in self.co_train)  # JSON gives a list
        self.exclude_videos = tuple(str(v) for v in self.exclude_videos)
        if self.init_from is not None and not Path(self.init_from).is_file():
            raise UserError(f"--init-from {self.init_from}: no such checkpoint file")
        if self.init_from is not None and self.protocol == "sweep":
            raise UserError("--protocol sweep does not apply to fine-tuning (--init-from)")
        check_memory_budget(self.memory_budget_gb)
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise UserError(f"--device {self.device!r} is not a torch device") from None
        if device.type not in DEVICE_TYPES:
            raise UserError(f"--device {self.device!r}: use cpu, cuda, cuda:N or mps")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {self.device}: CUDA is not available here; use cpu")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise UserError(f"--device {self.device}: MPS is not available here; use cpu")
        return self

    def _validate_protocol(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise UserError(f"--protocol {self.protocol!r}: choose one of {', '.join(PROTOCOLS)}")
        # JSON gives lists; the grid is a tuple of floats (it keys cached runs).
        self.sweep_lrs = tuple(float(v) for v in self.sweep_lrs)
        self.sweep_weight_decays = tuple(float(v) for v in self.sweep_weight_decays)
        if self.protocol != "sweep":
            return
        if self.co_train:
            raise UserError("--protocol sweep does not apply to co-training (--co-train)")
        lrs, wds = self.sweep_lrs, self.sweep_weight_decays
        if not lrs or not wds:
            raise UserError("the sweep needs at least one learning rate and one weight decay")
        if any(not 0 < lr <= MAX_LR for lr in lrs):
            raise UserError(
                f"sweep learning rates must be positive and at most {MAX_LR:g}, got {list(lrs)}"
            )
        if any(not 0 <= wd < math.inf for wd in wds):
            raise UserError(f"sweep weight decays must be 0 or more, got {list(wds)}")
        if len(set(lrs)) != len(lrs) or len(set(wds)) != len(wds):
            raise UserError("the sweep grid repeats a learning rate or a weight decay")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config from a dict (e.g. a checkpoint's), ignoring keys this version lacks."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def check_seeds(seed: int, seeds: int) -> list[int]:
    """The seeds `seed`, `seed` + 1, ... (`seeds` of them), checked.

    Raises:
        UserError: fewer than 1 or more than MAX_SEEDS seeds, or one outside 0..MAX_SEED.
    """
    if not 1 <= seeds <= MAX_SEEDS:
        raise UserError(f"--seeds must be 1 to {MAX_SEEDS:,}, got {seeds:,}")
    if not 0 <= seed <= MAX_SEED - seeds + 1:
        raise UserError(
            f"--seed must be 0 to {MAX_SEED - seeds + 1:,} (2^32 - --seeds), got {seed}"
        )
    return list(range(seed, seed + seeds))


def check_memory_budget(gigabytes: float | None) -> None:
    """Raises UserError unless `gigabytes` is None or a finite number >= 0."""
    if gigabytes is not None and not 0 <= gigabytes < math.inf:
        raise UserError(
            f"--memory-budget-gb must be 0 or more (0 streams from the file), got {gigabytes}"
        )
