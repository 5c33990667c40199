"""The configuration of one probe run, with the reference work's defaults.

Defaults and their source (DIViTA repository, `train.py` and `experiment.py`):

- `lr=1e-4`, `epochs=100`: `experiment.py transfer`, the run that reproduces the paper's table
  (`train.py` alone defaults to 1e-3 and 10 epochs, a quick-look setting);
- `batch_size=32`, `window=30` (`--num_clips`), `patience=20` (early stopping on validation
  loss, `--stop_patience`), `scheduler_patience=10` (ReduceLROnPlateau on validation loss, its
  other arguments left at PyTorch's defaults: factor 0.1): `train.py`;
- AdamW with `amsgrad=True` and PyTorch's default weight decay (0.01), BCE with logits: `train.py`.

Our additions: `mask_padding` (True: zero padding is masked out of the batch-norm statistics,
attention keys and clip means; False: padding flows through the model as in the reference),
`memory_budget_gb` (features are held in memory when they fit, streamed otherwise; same results)
`fusion` for several feature files, and `threads` (several runs side by side want one each).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch

from probe.models import PROBES
from vtl.errors import UserError

FUSIONS = ("late", "concat")


@dataclass
class TrainConfig:
    """One probe run: which probe, how it is trained, on which split, with which seed."""

    model: str = "divita"
    lr: float = 1e-4
    epochs: int = 100
    batch_size: int = 32
    patience: int = 20
    scheduler_patience: int = 10
    window: int = 30
    seed: int = 0
    split: int = 0
    fusion: str = "late"  # several feature files: "late" (one model each) or "concat" (one model)
    device: str = "cpu"
    memory_budget_gb: float = 4.0
    mask_padding: bool = True
    threads: int = 0  # torch intra-op threads for this run; 0 keeps the process's setting

    def validate(self) -> TrainConfig:
        """Check every field; return self.

        Raises:
            UserError: naming the option and the bad value.
        """
        if self.model not in PROBES:
            raise UserError(f"--model {self.model!r}: choose one of {', '.join(PROBES)}")
        if self.fusion not in FUSIONS:
            raise UserError(f"--fusion {self.fusion!r}: choose one of {', '.join(FUSIONS)}")
        for name in ("epochs", "batch_size", "patience", "scheduler_patience", "window"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if not self.lr > 0:
            raise UserError(f"--lr must be positive, got {self.lr}")
        if self.split < 0:
            raise UserError(f"--split must be 0 or more, got {self.split}")
        if self.threads < 0:
            raise UserError(f"--threads must be 0 (torch's default) or more, got {self.threads}")
        if self.memory_budget_gb < 0:
            raise UserError("--memory-budget-gb must be 0 or more (0 streams from the file)")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise UserError(f"--device {self.device!r} is not a torch device") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {self.device}: CUDA is not available here; use cpu")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config from a dict (e.g. a checkpoint's), ignoring keys this version lacks."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
