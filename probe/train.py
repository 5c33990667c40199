"""Training probes as the reference does, and running them over splits and seeds.

One run (`train_probe`) trains one probe per feature file (late fusion) or one probe on the
files' concatenated features (early fusion, `fusion="concat"`), as DIViTA's `train.py`:
AdamW (amsgrad), BCE with logits, one random `window`-clip run per training video and epoch,
validation loss over sliding windows after every epoch, ReduceLROnPlateau and early stopping on
that loss, and the best epoch's weights restored at the end. It then scores the test videos
(see `probe.evaluate`) and reports the reference's metrics. Under `protocol="sweep"` each
probe is instead the best on validation of a grid of learning rates x weight decays trained at
once (`probe.sweep`), scored the same way.

Determinism: weights, dropout and sampling all draw from `config.seed` (the global torch RNG is
forked, so callers' random state is left alone); the same seed gives the same weights and metrics.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from probe.config import TrainConfig
from probe.data import (
    ClipStore,
    ProbeData,
    check_same_clips,
    open_probe_data,
    open_store,
    random_windows,
    sliding_windows,
    split_indices,
)
from probe.evaluate import (
    _model_mask,
    load_body,
    save_checkpoint,
    video_scores,
    window_logits,
    write_predictions,
)
from probe.metrics import METRIC_NAMES, chance_metrics, compute_metrics, per_label_ap
from probe.models import build_probe
from vtl import __version__
from vtl.atomic import write_text
from vtl.errors import UserError
from vtl.paths import check_output_dir
from vtl.progress import progress_bar

log = logging.getLogger(__name__)


class TrainingError(UserError):
    """Training that cannot go on (a non-finite loss): one line naming the epoch and the files."""


def diverged(what: str, value: float, epoch: int, where: str, lr: float) -> str:
    """The message of a loss that is no longer finite."""
    return (
        f"{where}: the {what} became {value} at epoch {epoch + 1}; check the features with "
        f"`extract verify` (extreme values) or lower --lr ({lr:g})"
    )


class EarlyStopping:
    """The reference's early stopping on the validation loss: an epoch improves only on a
    strictly lower loss (as Lightning's ModelCheckpoint/EarlyStopping in mode "min"), and
    training stops after `patience` epochs without improvement."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best_loss, self.best_epoch, self.waited = math.inf, -1, 0

    def improves(self, loss: float, epoch: int) -> bool:
        """Record an epoch's validation loss; True when it is the best so far."""
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.waited = loss, epoch, 0
            return True
        self.waited += 1
        return False

    @property
    def exhausted(self) -> bool:
        """`patience` epochs without improvement: stop."""
        return self.waited >= self.patience


class EpochLog(EarlyStopping):
    """A training run's history, epoch by epoch (losses and seconds), with the reference's early
    stopping (`EarlyStopping`): the best epoch's weights are kept, and `finish` restores them.

    Per epoch: `start()`, train, `trained()`, validate, then `end(...)`.
    """

    def __init__(self, patience: int, cpu_seconds: bool = False):
        super().__init__(patience)
        self.cpu_seconds = cpu_seconds
        self.history = {"train_loss": [], "val_loss": [], "train_seconds": []}
        if cpu_seconds:  # process CPU time: the cost on a machine shared with others
            self.history["train_cpu_seconds"] = []
        self.history["val_seconds"] = []
        self.best_state = None
        self._started = self._trained = (0.0, 0.0)

    def start(self) -> None:
        """An epoch's training begins."""
        self._started = (time.perf_counter(), time.process_time())

    def trained(self) -> None:
        """An epoch's training ends (its validation begins)."""
        self._trained = (time.perf_counter(), time.process_time())

    def end(self, model: nn.Module, epoch: int, train_loss: float, val_loss: float) -> bool:
        """Record an epoch (keeping `model`'s weights when it improves); True: stop training."""
        history = self.history
        history["train_loss"].append(train_loss)
        history["val_loss"].append(val_loss)
        history["train_seconds"].append(self._trained[0] - self._started[0])
        if self.cpu_seconds:
            history["train_cpu_seconds"].append(self._trained[1] - self._started[1])
        history["val_seconds"].append(time.perf_counter() - self._trained[0])
        if self.improves(val_loss, epoch):
            self.best_state = copy.deepcopy(model.state_dict())
        return self.exhausted

    def finish(self, model: nn.Module, epochs_run: int) -> dict:
        """Restore the best epoch's weights into `model`; the history with the best epoch."""
        model.load_state_dict(self.best_state)
        self.history.update(
            best_epoch=self.best_epoch, best_val_loss=self.best_loss, epochs_run=epochs_run
        )
        return self.history


def train_epochs(
    model: nn.Module,
    config: TrainConfig,
    batches: Callable[[], Iterator[tuple[torch.Tensor, int, str]]],
    validate: Callable[[], float],
    progress: bool = True,
    desc: str = "train",
    where: str = "",
    cpu_seconds: bool = False,
) -> dict:
    """The reference's training loop, shared by `fit` and co-training: AdamW (amsgrad) at the
    config's lr and weight decay, ReduceLROnPlateau and early stopping (`EpochLog`) on the
    validation loss, the best epoch's weights restored.

    Args:
        batches: one epoch's batches, drawn as the epoch runs: each yields (its loss, its videos,
            what the loss is, for the message if it is not finite).
        validate: the validation loss after an epoch.
        desc: the progress bar's label; where: the feature files, for messages.

    Returns the history (`EpochLog.finish`).

    Raises:
        TrainingError: a training or validation loss that is not finite.
    """
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, amsgrad=True
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, patience=config.scheduler_patience
    )
    epochs = EpochLog(config.patience, cpu_seconds=cpu_seconds)
    with progress_bar(config.epochs, desc, "epoch", not progress) as bar:
        for epoch in range(config.epochs):
            epochs.start()
            model.train()
            total, seen = 0.0, 0
            for loss, videos, what in batches():
                value = loss.item()
                if not math.isfinite(value):
                    raise TrainingError(diverged(what, value, epoch, where, config.lr))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += value * videos
                seen += videos
            epochs.trained()
            val_loss = validate()
            if not math.isfinite(val_loss):
                what = f"validation loss of {desc}"
                raise TrainingError(diverged(what, val_loss, epoch, where, config.lr))
            scheduler.step(val_loss)
            stop = epochs.end(model, epoch, total / max(seen, 1), val_loss)
            bar.update(1)
            bar.set_postfix(loss=f"{total / max(seen, 1):.4f}", val=f"{val_loss:.4f}")
            if stop:
                break
    return epochs.finish(model, epoch + 1)


def fit(
    model: nn.Module,
    store: ClipStore,
    data: ProbeData,
    subsets: dict[str, np.ndarray],
    counts: np.ndarray,
    config: TrainConfig,
    progress: bool = True,
    desc: str = "train",
    where: str = "",
) -> dict:
    """Train `model` in place (`train_epochs`) and restore its best epoch (lowest validation
    loss): each epoch, one random window of every training video, in batches.

    Returns the training history: best epoch, its validation loss, per-epoch losses and times.

    Raises:
        TrainingError: a training or validation loss that is not finite (`where` names the
            feature files in the message).
    """
    device, width = config.device, config.window
    model.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    loss_fn = nn.BCEWithLogitsLoss()
    targets = torch.from_numpy(data.labels.astype(np.float32))
    train = subsets["train"]
    val_windows = sliding_windows(subsets["val"], counts, width)
    val_targets = targets[val_windows.video].to(device)

    def batches():
        order = train[torch.randperm(len(train), generator=generator).numpy()]
        for a in range(0, len(order), config.batch_size):
            videos = order[a : a + config.batch_size]
            windows = random_windows(videos, counts, width, generator)
            x, mask = store.windows(windows, width)
            logits = model(x.to(device), _model_mask(mask, config.mask_padding, device))
            yield (
                loss_fn(logits, targets[videos].to(device)),
                len(videos),
                f"training loss of {desc}",
            )

    def validate() -> float:
        logits = window_logits(model, store, val_windows, width, config.mask_padding, device)
        return float(loss_fn(logits.to(device), val_targets))

    return train_epochs(model, config, batches, validate, progress, desc, where, cpu_seconds=True)


def train_probe(
    feature_paths: list[Path],
    config: TrainConfig,
    out_dir: Path | None = None,
    progress: bool = True,
) -> dict:
    """Train and test one (feature files, probe, split, seed) cell.

    With `out_dir`, writes `metrics.json` (the returned dict), `predictions.csv` (test videos'
    scores) and `checkpoint.pt` there.

    Returns:
        {"metrics": {"val": {...}, "test": {...}} in percent, "per_label": same per label,
        "config", "features" (backbone, weights, ... of each file), "videos", "training"}.

    Raises:
        UserError: bad configuration or feature files (one line naming the file).
    """
    config.validate()
    if config.co_train:  # CoVeR-style co-training with other collections
        from probe.cotrain import train_cotrained

        return train_cotrained(feature_paths, config, out_dir, progress)
    if config.init_from and len(feature_paths) != 1:
        raise UserError("--init-from fine-tunes one probe: pass one --features file")
    if out_dir is not None:
        check_output_dir(out_dir)
    feature_paths = [Path(p) for p in feature_paths]
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    data = open_probe_data(feature_paths, exclude=config.exclude_videos)
    try:
        subsets = split_indices(data, config.split)
        if len(data.files) > 1:
            check_same_clips(data)
        if len(data.files) == 1 or config.fusion == "late":
            groups = [[j] for j in range(len(data.files))]
        else:
            groups = [list(range(len(data.files)))]
        eval_windows = {
            name: sliding_windows(subsets[name], data.clip_counts[0], config.window)
            for name in ("val", "test")
        }
        models, training, logits = [], [], []
        for group in groups:
            model, history, group_logits = _train_group(
                data, group, subsets, eval_windows, config, progress
            )
            models.append(model)
            logits.append(group_logits)
            training.append({"files": [str(data.files[j].path) for j in group], **history})
        # Late fusion: the models' window logits are averaged before the per-video pooling.
        scores = {
            name: video_scores(
                sum(lg[name] for lg in logits) / len(logits), eval_windows[name], subsets[name]
            )
            for name in ("val", "test")
        }
        result = _report(data, subsets, scores, config, training)
        if out_dir is not None:
            _write_run(Path(out_dir), data, models, groups, subsets, scores["test"], result)
    finally:
        data.close()
        torch.set_num_threads(threads)
    return result


def _train_group(data, group, subsets, eval_windows, config, progress):
    """One probe on the files of `group`: built under the run's seed, trained (`fit`, or under
    the sweep protocol `probe.sweep.fit_grid`, which returns its pick), then its val and test
    window logits. Returns (the model on the CPU in eval mode, its history, the logits)."""
    started = time.perf_counter()
    store = open_store(data, group, config.memory_budget_gb)
    loaded = time.perf_counter() - started
    name = "+".join(data.files[j].meta.backbone for j in group)
    where = ", ".join(str(data.files[j].path) for j in group)
    inputs = (store, data, subsets, data.clip_counts[group[0]], config, progress)
    with torch.random.fork_rng(devices=[]):
        # Same seed, same model: a file's model in a late fusion equals its single-file model,
        # and every head of a sweep starts as its setting's solo run.
        torch.manual_seed(config.seed)
        model = build_probe(config.model, store.feature_dim, len(data.label_names))
        if config.protocol == "sweep":  # a grid of (lr, weight decay) at once, the best on val
            from probe.sweep import fit_grid  # probe.sweep builds on this module

            model, history = fit_grid(model, *inputs, f"{config.model} {name} sweep", where)
        else:
            if config.init_from:  # fine-tuning (A -> B): another collection's body, a fresh head
                load_body(config.init_from, model, config.model, str(data.files[group[0]].path))
            history = fit(model, *inputs, desc=f"{config.model} {name}", where=where)
    started = time.perf_counter()
    # Score val and test while this file's features are loaded: late fusion holds one at a time.
    logits = {
        subset: window_logits(
            model, store, windows, config.window, config.mask_padding, config.device
        )
        for subset, windows in eval_windows.items()
    }
    history["load_seconds"] = loaded
    history["test_seconds"] = time.perf_counter() - started
    log.info(
        "%s on %s: best epoch %d of %d, val loss %.4f",
        config.model,
        name,
        history["best_epoch"] + 1,
        history["epochs_run"],
        history["best_val_loss"],
    )
    return model.cpu().eval(), history, logits


def _report(data, subsets, scores, config, training) -> dict:
    metrics, per_label = {}, {}
    for name in ("val", "test"):
        y_true = data.labels[subsets[name]]
        metrics[name] = {k: 100 * v for k, v in compute_metrics(y_true, scores[name]).items()}
        aps = per_label_ap(y_true, scores[name])
        per_label[name] = {
            label: (None if np.isnan(ap) else 100 * float(ap))
            for label, ap in zip(data.label_names, aps, strict=True)
        }
    chance = chance_metrics(data.labels[subsets["test"]])
    return {
        "metrics": metrics,
        "chance": {"test": {k: 100 * v for k, v in chance.items()}},
        "per_label": per_label,
        "units": "percent (PR-AUC x 100, as the reference's result tables)",
        "config": config.to_dict(),
        "features": [feature_info(f) for f in data.files],
        "labels": list(data.label_names),
        "videos": {name: int(len(index)) for name, index in subsets.items()},
        "training": training,
        "software_version": __version__,
    }


def feature_info(f) -> dict:
    """What identifies a feature file's representation: backbone, weights, pretraining, ..."""
    m = f.meta
    return {
        "path": str(f.path),
        "backbone": m.backbone,
        "family": m.family,
        "pretrain": m.pretrain,
        "kind": m.kind,
        "feature_dim": int(f.feature_dim),
        "weights": m.weights,
        "videos": int(f.n_videos),
        "clips": int(f.n_clips),
    }


def _write_run(out_dir, data, models, groups, subsets, test_scores, result) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    test_ids = [data.video_ids[i] for i in subsets["test"]]
    write_predictions(out_dir / "predictions.csv", test_ids, data.label_names, test_scores)
    save_checkpoint(
        out_dir / "checkpoint.pt",
        models,
        groups,
        data,
        {
            "config": result["config"],
            "features": result["features"],
            # the videos it learned from or stopped on: `probe eval` says when it tests on them
            "seen_videos": [data.video_ids[i] for n in ("train", "val") for i in subsets[n]],
        },
    )
    write_text(out_dir / "metrics.json", json.dumps(result, indent=2) + "\n")


def run_grid(
    feature_paths: list[Path],
    config: TrainConfig,
    splits: list[int],
    seeds: list[int],
    out_dir: Path | None = None,
    progress: bool = True,
) -> dict:
    """Train every (split, seed) cell and summarize the test metrics as mean ± std.

    Cells go to `out_dir/split{K}-seed{S}/`, the summary to `out_dir/summary.json`. The std is
    the sample std (ddof=1), 0 for a single run, as the reference's `compute_mean_std`.
    """
    if out_dir is not None:
        check_output_dir(out_dir)
    data = open_probe_data(feature_paths, exclude=config.exclude_videos)
    try:  # every split usable, before any training
        for split in splits:
            split_indices(data, split)
    finally:
        data.close()
    runs, collections = [], []
    for split in splits:
        for seed in seeds:
            cell = TrainConfig.from_dict({**config.to_dict(), "split": split, "seed": seed})
            cell_dir = None if out_dir is None else Path(out_dir) / f"split{split}-seed{seed}"
            result = train_probe(feature_paths, cell, cell_dir, progress)
            runs.append(
                {
                    "split": split,
                    "seed": seed,
                    "test": result["metrics"]["test"],
                    "chance": result["chance"]["test"],
                    "per_label": result["per_label"]["test"],
                    **sweep_picks(result),
                }
            )
            if "co_training" in result:
                collections.append(result["co_training"]["collections"])
    summary = {
        "config": config.to_dict(),
        **summarize_runs(runs),
        "features": result["features"],
    }
    if collections:  # each collection's own test metrics, scored with its own head
        from probe.cotrain import summarize_collections

        summary["co_training"] = summarize_collections(collections)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_text(Path(out_dir) / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def sweep_picks(result: dict) -> dict:
    """{"sweep": the (lr, weight decay) each model of a sweep-protocol run picked}, else {}."""
    picks = [t["sweep"]["pick"] for t in result["training"] if "sweep" in t]
    return {"sweep": picks} if picks else {}


def summarize_runs(runs: list[dict]) -> dict:
    """Mean ± std over runs ({"split", "seed", "test", "chance", "per_label"} each, test metrics
    and per-label APs in percent) of every metric, the chance level and each label's AP."""
    return {
        "splits": sorted({r["split"] for r in runs}),
        "seeds": sorted({r["seed"] for r in runs}),
        "test": {k: summarize_values([r["test"][k] for r in runs]) for k in METRIC_NAMES},
        "chance": {k: summarize_values([r["chance"][k] for r in runs]) for k in METRIC_NAMES},
        "per_label": {
            label: summarize_values([r["per_label"][label] for r in runs])
            for label in runs[0]["per_label"]
        },
        "runs": runs,
    }


def summarize_values(values: list[float | None]) -> dict:
    """{"mean", "std", "n"} of the defined values (sample std, 0 for fewer than two)."""
    defined = np.array([v for v in values if v is not None], dtype=np.float64)
    if defined.size == 0:
        return {"mean": None, "std": None, "n": 0}
    std = float(defined.std(ddof=1)) if defined.size > 1 else 0.0
    return {"mean": float(defined.mean()), "std": std, "n": int(defined.size)}
