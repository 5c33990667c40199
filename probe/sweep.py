"""The tuned protocol: a grid of learning rates x weight decays trained at once, picked on val.

`--protocol sweep` trains one probe per (learning rate, weight decay) of a grid as *heads* that
share one pass over the data: the same batches, the same random windows, the same dropout
masks, one forward and one backward for all of them. Each head is exactly the run
`train_probe` would make with that setting and the same seed (`tests/test_sweep.py` checks
it): it starts from the weights `torch.manual_seed(seed)` gives, has its own AdamW (amsgrad)
state, its own ReduceLROnPlateau schedule and its own early stopping on its validation loss; a
head that stops is dropped from the stack (its best epoch kept), and training ends when every
head has stopped or at `epochs`. A head whose loss stops being finite is dropped as diverged
(the run alone would have failed) and cannot be picked.

How the heads share the work:

- the batch-norm statistics over the features come from the batch alone, the same for every
  head, so they are computed once (and the running statistics updated once); each head applies
  its own batch-norm scale and shift;
- the rest runs on parameters stacked along a new first axis (`probe.stacked`): linear, MLP
  and simple-average heads pool the clips once (their aggregation starts with a mean, which
  commutes with the per-channel scale and shift) and are one batched matrix product per layer;
  DIViTA and GRU heads fold the scale and shift into their first layer (one product of the
  shared features with every head's weights) and batch the rest over heads; dropout draws one
  mask per call, from the global RNG as a solo forward draws it, for all heads. A probe not
  written out there runs its own modules under `torch.vmap` (`randomness="same"`);
- AdamW is vectorised over the stacked parameters, written as torch's single-tensor
  `adamw` (amsgrad) with a learning rate and weight decay per head.

What sharing cannot remove is each head's own arithmetic: a linear or MLP head is cheap next
to the shared work, so a grid costs little more than one run; a DIViTA or GRU head costs what
a solo run's forward and backward cost, so on a CPU a grid of K such heads takes several times
one run (still less than K runs: `bench/bench_probe.py --grid`).

The grid (`TrainConfig.sweep_lrs` x `sweep_weight_decays`, by default `probe.config`'s
`SWEEP_LRS` x `SWEEP_WEIGHT_DECAYS`, 9 x 4 = 36 heads): learning rates in
half-decade steps from 1e-5 to 1e-1, the reference's 1e-4 among them (DINOv2's linear
evaluation sweeps 13 rates over a similar span); weight decays 0 (none), 0.01 (torch's default,
the reference's), 0.1 and 1 (AdamW decays by lr x wd per step, so smaller values barely differ
from 0). A pick at the lowest or highest learning rate, or at the highest weight decay, is at an
edge of the grid: the result says so, since a better setting may lie outside it (a weight decay
of 0 is no edge: it cannot go lower).

The pick: the head with the highest validation μAP (each head at its own best epoch), ties to
the lower validation loss. Validation loss decides *when* a head stops, as in the reference, but
the heads differ in weight decay and learning rate, which change the loss's scale and
calibration without changing the ranking the reported metrics measure; μAP is the quantity
reported, so it is the one the pick optimises (as DINOv2 picks on validation accuracy and
clip_benchmark on the validation metric). The picked head is scored on test exactly as
`train_probe` scores a run; the result records the pick and every head's validation values.
"""

from __future__ import annotations

import copy
import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from probe import stacked
from probe.config import TrainConfig
from probe.data import ClipStore, ProbeData, random_windows, sliding_windows
from probe.evaluate import (
    EVAL_BATCH_WINDOWS,
    _model_mask,
    video_scores,
)
from probe.metrics import micro_ap
from probe.models import Probe, masked_mean
from probe.train import EarlyStopping, TrainingError
from vtl.progress import progress_bar

log = logging.getLogger(__name__)

PICK_QUANTITY = "val_uap"  # the validation quantity the pick maximises (see the docstring)
# AdamW's defaults (torch.optim.AdamW), as the reference uses them.
BETAS = (0.9, 0.999)
EPS = 1e-8


def grid(lrs, weight_decays) -> list[tuple[float, float]]:
    """The (lr, weight decay) of every head, weight decay major."""
    return [(float(lr), float(wd)) for wd in weight_decays for lr in lrs]


class _AfterNorm(nn.Module):
    """A probe from its batch-normalized input on: BN scale and shift, aggregation, classifier.

    `xhat` is the batch-normalized features before the affine step (zero at padding when a mask
    is given, as `masked_batch_norm` leaves it).
    """

    def __init__(self, probe: Probe):
        super().__init__()
        self.probe = probe

    def forward(self, xhat: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bn = self.probe.bn
        x = xhat * bn.weight + bn.bias
        if mask is not None:
            x = x * mask.unsqueeze(-1)  # padding stays 0, as masked_batch_norm leaves it
        return self.probe.cls(self.probe.aggregate(x, mask))


def _normalize(bn: nn.BatchNorm1d, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """`masked_batch_norm` without the affine step (per head): the statistics part, shared.

    In training mode the running statistics are updated as `nn.BatchNorm1d` updates them; a
    single real clip uses the running statistics, as `probe.models._batch_norm_rows`.
    """
    b, s, f = x.shape
    rows = x.reshape(b * s, f) if mask is None else x[mask]
    training = bn.training and rows.shape[0] >= 2
    if training:
        bn.num_batches_tracked.add_(1)
    out = F.batch_norm(
        rows,
        bn.running_mean,
        bn.running_var,
        None,
        None,
        training,
        bn.momentum if training else 0.0,
        bn.eps,
    )
    if mask is None:
        return out.reshape(b, s, f)
    full = torch.zeros_like(x)
    full[mask] = out
    return full


class _StackedAdamW:
    """AdamW with amsgrad over parameters stacked on a head axis, one lr and weight decay per head.

    The arithmetic is torch's single-tensor `adam` with decoupled weight decay, operation for
    operation, so each head follows the trajectory `torch.optim.AdamW(amsgrad=True)` gives it.
    All heads in the stack have taken the same number of steps (heads only ever leave).
    """

    def __init__(self, params: dict[str, torch.Tensor]):
        self.steps = 0
        self.state = {
            name: [torch.zeros_like(p) for _ in range(3)]  # exp_avg, exp_avg_sq, max_exp_avg_sq
            for name, p in params.items()
        }
        # Scratch for the update's two temporaries, reused: fresh large tensors every step
        # would cost page faults (as much system time as the arithmetic, for a big grid).
        self.scratch = {name: [torch.empty_like(p) for _ in range(2)] for name, p in params.items()}

    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor], lrs: list[float], wds: list[float]) -> None:
        beta1, beta2 = BETAS
        self.steps += 1
        # Python floats (double) cast to float32 once, as torch passes its scalars to kernels.
        bias_correction1 = 1 - beta1**self.steps
        bias_correction2_sqrt = (1 - beta2**self.steps) ** 0.5
        device = next(iter(params.values())).device
        decay = torch.tensor([1 - lr * wd for lr, wd in zip(lrs, wds, strict=True)])
        neg_step = torch.tensor([-(lr / bias_correction1) for lr in lrs])
        decay, neg_step = decay.float().to(device), neg_step.float().to(device)
        for name, p in params.items():
            grad = p.grad
            exp_avg, exp_avg_sq, max_exp_avg_sq = self.state[name]
            shape = (-1,) + (1,) * (p.dim() - 1)
            p.mul_(decay.view(shape))
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
            denom, update = self.scratch[name]
            torch.sqrt(max_exp_avg_sq, out=denom).div_(bias_correction2_sqrt).add_(EPS)
            p.addcdiv_(torch.mul(exp_avg, neg_step.view(shape), out=update), denom)

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the heads at `index` (positions in the stack)."""
        self.state = {n: [t[index].clone() for t in ts] for n, ts in self.state.items()}
        self.scratch = {n: [t[index] for t in ts] for n, ts in self.scratch.items()}


class _HeadRecord(EarlyStopping):
    """One head's run: its schedule, early stopping (a solo run's), history and best epoch."""

    def __init__(self, lr: float, weight_decay: float, scheduler_patience: int, patience: int):
        super().__init__(patience)
        self.lr, self.weight_decay = lr, weight_decay
        # torch's own scheduler on a placeholder optimizer: the same plateau rule as a solo run.
        self._holder = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self._holder, patience=scheduler_patience
        )
        self.train_loss: list[float] = []
        self.val_loss: list[float] = []
        self.best_state: dict | None = None
        self.best_val_logits: torch.Tensor | None = None
        self.val_uap: float | None = None  # at the best epoch, in percent (after training)
        self.epochs_run = 0
        self.diverged: str | None = None  # "training" or "validation": which loss, if any

    @property
    def current_lr(self) -> float:
        return float(self._holder.param_groups[0]["lr"])


class _Stack:
    """The heads still training: stacked parameters, shared batch norm, vectorised AdamW."""

    def __init__(self, probe: Probe, model_name: str, n_heads: int, device: str):
        self.probe = probe.to(device)
        self.after = _AfterNorm(self.probe)
        self.model = model_name
        self.params = {
            name: p.detach().unsqueeze(0).repeat(n_heads, *([1] * p.dim()))
            for name, p in probe.named_parameters()
        }
        for p in self.params.values():
            p.requires_grad_(True)
        self.optimizer = _StackedAdamW(self.params)

    def __len__(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def train(self, mode: bool = True) -> None:
        self.probe.train(mode)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, generic: bool = False
    ) -> torch.Tensor:
        """Logits (heads, batch, labels) of windows x (batch, clips, features).

        Probes written out in `probe.stacked` run there; others (or all, with `generic`) run
        the probe's own modules on each head's parameters under `torch.vmap`.
        """
        xhat = _normalize(self.probe.bn, x, mask)
        training = self.probe.training
        if not generic and self.model in stacked.POOLED:
            return stacked.POOLED[self.model](masked_mean(xhat, mask), self.params, training)
        if not generic and self.model in stacked.WINDOWED:
            return stacked.WINDOWED[self.model](xhat, mask, self.params, training)
        return vmap(self._call, in_dims=(0, None, None), randomness="same")(self.params, xhat, mask)

    def _call(self, params, xhat, mask):
        params = {f"probe.{name}": p for name, p in params.items()}
        return functional_call(self.after, params, (xhat, mask))

    def step(self, lrs: list[float], wds: list[float]) -> None:
        self.optimizer.step(self.params, lrs, wds)
        for p in self.params.values():
            p.grad = None

    def keep(self, positions: list[int]) -> None:
        """Keep only the heads at `positions` (in stack order)."""
        index = torch.tensor(positions, dtype=torch.long, device=self.probe.bn.weight.device)
        self.params = {
            n: p.detach()[index].clone().requires_grad_(True) for n, p in self.params.items()
        }
        self.optimizer.keep(index)

    def state_of(self, position: int) -> dict[str, torch.Tensor]:
        """The `state_dict` of one head, as a solo probe would have it now (on the CPU)."""
        state = {n: p.detach()[position].cpu().clone() for n, p in self.params.items()}
        for name, buffer in self.probe.named_buffers():
            state[name] = buffer.detach().cpu().clone()
        return state

    @torch.no_grad()
    def window_logits(self, store: ClipStore, windows, width: int, mask_padding: bool, device):
        """Logits (heads, windows, labels) in eval mode, on the CPU (`window_logits` per head)."""
        self.train(False)
        # Windows per forward shrink with the heads: the per-head activations share the memory
        # one forward of EVAL_BATCH_WINDOWS windows takes (results do not depend on batching).
        pooled = self.model in stacked.POOLED
        step = EVAL_BATCH_WINDOWS if pooled else max(1, EVAL_BATCH_WINDOWS // len(self))
        out = []
        for a in range(0, len(windows), step):
            x, mask = store.windows(windows.take(slice(a, a + step)), width)
            out.append(self.forward(x.to(device), _model_mask(mask, mask_padding, device)).cpu())
        return torch.cat(out, dim=1)


def fit_sweep(
    probe: Probe,
    store: ClipStore,
    data: ProbeData,
    subsets: dict[str, np.ndarray],
    counts: np.ndarray,
    config: TrainConfig,
    lrs,
    weight_decays,
    progress: bool = True,
    desc: str = "sweep",
    where: str = "",
) -> tuple[list[_HeadRecord], dict]:
    """Train one head per (lr, weight decay) of the grid from `probe`'s weights, at once.

    Each head equals `probe.train.fit` run alone with that lr and weight decay (same seed: the
    caller builds `probe` and draws nothing else from the global RNG). Returns the heads'
    records in `grid(lrs, weight_decays)` order, each with its best epoch's state and its
    validation μAP there, and the sweep's per-epoch times (all heads together).

    Raises:
        TrainingError: every head's loss became non-finite.
    """
    device, width = config.device, config.window
    heads = [
        _HeadRecord(lr, wd, config.scheduler_patience, config.patience)
        for lr, wd in grid(lrs, weight_decays)
    ]
    stack = _Stack(probe, config.model, len(heads), device)
    alive = list(range(len(heads)))  # grid index of each head in the stack, in stack order
    generator = torch.Generator().manual_seed(config.seed)
    targets = torch.from_numpy(data.labels.astype(np.float32))
    train = subsets["train"]
    val_windows = sliding_windows(subsets["val"], counts, width)
    val_targets = targets[val_windows.video]
    val_videos = subsets["val"]
    history = {"train_seconds": [], "train_cpu_seconds": [], "val_seconds": []}
    with progress_bar(config.epochs, desc, "epoch", not progress) as bar:
        for epoch in range(config.epochs):
            started, started_cpu = time.perf_counter(), time.process_time()
            stack.train(True)
            order = train[torch.randperm(len(train), generator=generator).numpy()]
            total, seen = torch.zeros(len(alive), dtype=torch.float64), 0
            for a in range(0, len(order), config.batch_size):
                videos = order[a : a + config.batch_size]
                windows = random_windows(videos, counts, width, generator)
                x, mask = store.windows(windows, width)
                logits = stack.forward(x.to(device), _model_mask(mask, config.mask_padding, device))
                batch_targets = targets[videos].to(device).expand_as(logits)
                losses = F.binary_cross_entropy_with_logits(
                    logits, batch_targets, reduction="none"
                ).mean(dim=(1, 2))
                values = losses.detach().double().cpu()
                finite = torch.isfinite(values)
                # Heads are independent: the sum's gradient for each head is its own loss's.
                torch.where(finite.to(device), losses, 0.0).sum().backward()
                stack.step(
                    [heads[h].current_lr for h in alive], [heads[h].weight_decay for h in alive]
                )
                total += torch.where(finite, values, 0.0) * len(videos)
                seen += len(videos)
                if not bool(finite.all()):
                    for k in (~finite).nonzero().flatten().tolist():
                        heads[alive[k]].diverged = "training"
                    total, alive = _drop(stack, heads, alive, total, epoch)
                    if not alive:
                        break
            trained, trained_cpu = time.perf_counter(), time.process_time()
            if not alive:
                break
            logits = stack.window_logits(store, val_windows, width, config.mask_padding, device)
            stopped = []
            for k, h in enumerate(alive):
                head = heads[h]
                val_loss = float(F.binary_cross_entropy_with_logits(logits[k], val_targets))
                head.train_loss.append(float(total[k]) / seen)
                head.val_loss.append(val_loss)
                head.epochs_run = epoch + 1
                if not math.isfinite(val_loss):
                    head.diverged = "validation"
                    stopped.append(h)
                    continue
                head.scheduler.step(val_loss)
                if head.improves(val_loss, epoch):
                    head.best_state = stack.state_of(k)
                    head.best_val_logits = logits[k].clone()
                elif head.exhausted:
                    stopped.append(h)
            history["train_seconds"].append(trained - started)
            history["train_cpu_seconds"].append(trained_cpu - started_cpu)
            history["val_seconds"].append(time.perf_counter() - trained)
            bar.update(1)
            bar.set_postfix(heads=len(alive))
            if stopped:
                positions = [k for k, h in enumerate(alive) if h not in stopped]
                alive = [alive[k] for k in positions]
                if not alive:
                    break
                stack.keep(positions)
    if all(head.diverged or head.best_state is None for head in heads):
        raise TrainingError(
            f"{where}: the loss of every head of the sweep ({desc}) became non-finite; check "
            "the features with `extract verify` (extreme values)"
        )
    for head in heads:
        if head.best_val_logits is not None:
            scores = video_scores(head.best_val_logits, val_windows, val_videos)
            head.val_uap = 100 * micro_ap(data.labels[val_videos], scores)
    return heads, history


def _drop(stack, heads, alive, total, epoch):
    """Drop the diverged heads from the stack; return the kept totals and heads."""
    positions = [k for k, h in enumerate(alive) if heads[h].diverged is None]
    for h in alive:
        if heads[h].diverged is not None:
            heads[h].epochs_run = epoch + 1
    if positions:
        stack.keep(positions)
    return total[positions], [alive[k] for k in positions]


def pick_head(heads: list[_HeadRecord]) -> int:
    """Index of the head with the highest validation μAP, ties to the lower validation loss
    (then grid order); a diverged head is never picked (its run alone would have failed)."""
    eligible = [k for k, h in enumerate(heads) if h.diverged is None and h.val_uap is not None]

    def order(k: int) -> tuple:
        uap = heads[k].val_uap  # NaN when no validation pair is positive: the loss decides
        return (-uap if math.isfinite(uap) else math.inf, heads[k].best_loss, k)

    return min(eligible, key=order)


def edges(lr: float, weight_decay: float, lrs, weight_decays) -> list[str]:
    """Which edges of the grid the pick lies on ("lr_low", "lr_high", "weight_decay_high"...).

    A weight decay of 0 is no edge (it cannot go lower); a one-value axis has no edges.
    """
    out = []
    if len(lrs) > 1 and lr == min(lrs):
        out.append("lr_low")
    if len(lrs) > 1 and lr == max(lrs):
        out.append("lr_high")
    if len(weight_decays) > 1 and weight_decay == min(weight_decays) and weight_decay > 0:
        out.append("weight_decay_low")
    if len(weight_decays) > 1 and weight_decay == max(weight_decays):
        out.append("weight_decay_high")
    return out


def sweep_summary(heads: list[_HeadRecord], picked: int, lrs, weight_decays) -> dict:
    """The pick and every head's validation values, as the result records them."""
    head = heads[picked]
    at = edges(head.lr, head.weight_decay, lrs, weight_decays)
    return {
        "quantity": PICK_QUANTITY,
        "lrs": [float(v) for v in lrs],
        "weight_decays": [float(v) for v in weight_decays],
        "pick": {
            "lr": head.lr,
            "weight_decay": head.weight_decay,
            "val_uap": head.val_uap,
            "val_loss": head.best_loss,
            "best_epoch": head.best_epoch,
            "epochs_run": head.epochs_run,
            "at_edge": bool(at),
            "edges": at,
        },
        "heads": [
            {
                "lr": h.lr,
                "weight_decay": h.weight_decay,
                "val_uap": h.val_uap,
                "val_loss": None if math.isinf(h.best_loss) else h.best_loss,
                "best_epoch": h.best_epoch,
                "epochs_run": h.epochs_run,
                "diverged": h.diverged,
            }
            for h in heads
        ],
    }


def fit_grid(
    probe: Probe,
    store: ClipStore,
    data,
    subsets,
    counts,
    config: TrainConfig,
    progress: bool,
    desc: str,
    where: str,
) -> tuple[Probe, dict]:
    """`probe.train.fit` under the sweep protocol: the grid of `config`'s learning rates x
    weight decays trained at once from `probe`'s weights (`fit_sweep`), the head with the best
    validation μAP picked (`pick_head`).

    Returns (a probe with the pick's best weights, on the config's device; its history, with
    the sweep's record under "sweep"), as `fit` trains and returns them.
    """
    lrs, weight_decays = config.sweep_lrs, config.sweep_weight_decays
    heads, shared = fit_sweep(
        probe, store, data, subsets, counts, config, lrs, weight_decays, progress, desc, where
    )
    picked = pick_head(heads)
    head = heads[picked]
    model = copy.deepcopy(probe)
    model.load_state_dict(head.best_state)
    model.to(config.device)
    history = {
        "train_loss": head.train_loss,
        "val_loss": head.val_loss,
        "train_seconds": shared["train_seconds"],
        "train_cpu_seconds": shared["train_cpu_seconds"],
        "val_seconds": shared["val_seconds"],
        "best_epoch": head.best_epoch,
        "best_val_loss": head.best_loss,
        "epochs_run": head.epochs_run,
        "sweep_epochs": len(shared["train_seconds"]),  # until the last head stopped
        "sweep": sweep_summary(heads, picked, lrs, weight_decays),
    }
    log.info(
        "%s: %d heads, picked lr %g, weight decay %g (val μAP %.2f)%s",
        desc,
        len(heads),
        head.lr,
        head.weight_decay,
        head.val_uap,
        " at an edge of the grid" if history["sweep"]["pick"]["edges"] else "",
    )
    return model, history
