"""Co-training across collections (CoVeR) and fine-tuning a probe trained on another collection.

CoVeR ("Co-training Transformer with Videos and Images", Zhang et al., 2021) trains one model on
several datasets at once, a classification head per dataset, and reports that it transfers
better than training on one. On cached features the same question is cheap: does a temporal
probe trained on several labelled collections embedded with the same backbone beat one trained
on the target alone? `train_cotrained` (`probe train --features T.h5 --co-train O.h5 ...`):

- the model: every probe is a batch norm over the features, a clip aggregation and a linear
  classifier `cls` (`probe.models.Probe`). The batch norm and the aggregation (the *body*) are
  shared by every collection; each collection has a classifier of its own over its own labels.
  The target's classifier is the probe's `cls`, so the trained target model is an ordinary
  probe: its checkpoint is read by `probe eval`, `probe predict` and `--init-from`.
- batches: each step draws which collection its batch comes from, with probability proportional
  to the collections' numbers of training videos (a seeded draw). A batch holds `batch_size`
  videos of that one collection, the next ones of a shuffle of its training videos (shuffled
  again when used up), each with one random run of `window` clips, as `probe.train.fit` draws
  them. An epoch is as many steps as the collections have batches in one pass over all their
  training videos, so each is seen about once per epoch.
- loss and updates: BCE with logits of the drawn collection's head on its labels; AdamW
  (amsgrad, `config.weight_decay`) over every parameter (a head not drawn in a step has no
  gradient and is left alone).
- model selection: the *target's* validation loss after each epoch drives ReduceLROnPlateau and
  early stopping, and the best epoch's weights (body and heads) are restored, as in `fit`.
- scoring: the target's test videos exactly as `train_probe` scores them (window logits, the
  per-video mean of their sigmoids, the reference's metrics); `result["co_training"]` adds each
  collection's own test metrics, scored with its own head.

Each collection uses its own split column `config.split`; a collection with fewer split columns
uses its split 0 (logged and recorded). Every collection must come from the same backbone (name
and feature size): the body reads one feature space.

`--init-from CHECKPOINT` (A -> B fine-tuning, alone or with co-training) starts the body from a
probe trained on another collection (`probe.evaluate.load_body`) and the target's head afresh.

Determinism: the target's batches and windows come from the generator `fit` uses
(`config.seed`), the probe is built under that seed, and the other heads and batches from seeds
of their own; so a collection whose batches are never drawn changes nothing, and the run equals
`train_probe` without it (`tests/test_cotrain.py` checks this).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from probe.config import TrainConfig
from probe.data import (
    ClipStore,
    ProbeData,
    Windows,
    open_probe_data,
    open_store,
    random_windows,
    sliding_windows,
    split_indices,
)
from probe.evaluate import _model_mask, load_body, video_scores, window_logits
from probe.metrics import compute_metrics
from probe.models import Probe, build_probe, masked_batch_norm
from probe.train import _report, _write_run, summarize_values, train_epochs
from vtl.errors import UserError
from vtl.paths import check_output_dir

log = logging.getLogger(__name__)

# Streams of random numbers besides the target's (which is `fit`'s, seeded by config.seed alone):
# collection k's shuffles and windows, its head's initial weights, and the draw of collections.
_BATCHES, _HEAD, _DRAW = 1, 2, 3


def _seed(seed: int, stream: int, k: int = 0) -> int:
    """An independent seed for one stream of one run (a 32-bit draw of a SeedSequence)."""
    return int(np.random.SeedSequence([int(seed), stream, k]).generate_state(1)[0])


@dataclass
class Collection:
    """One collection's feature file, split, clips and a stream of training batches."""

    path: Path
    data: ProbeData
    split: int
    subsets: dict[str, np.ndarray]
    store: ClipStore
    targets: torch.Tensor  # (videos, labels) float32
    generator: torch.Generator
    _order: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _next: int = 0

    @property
    def counts(self) -> np.ndarray:
        return self.data.clip_counts[0]

    @property
    def n_train(self) -> int:
        return len(self.subsets["train"])

    def batch(self, size: int, width: int) -> tuple[np.ndarray, Windows]:
        """The next `size` training videos (fewer at the end of a pass) and a random window of
        each, drawn as `probe.train.fit` draws an epoch's batches."""
        if self._next >= len(self._order):
            train = self.subsets["train"]
            self._order = train[torch.randperm(len(train), generator=self.generator).numpy()]
            self._next = 0
        videos = self._order[self._next : self._next + size]
        self._next += size
        return videos, random_windows(videos, self.counts, width, self.generator)


class HeadView(nn.Module):
    """The shared body of a probe with another collection's classifier: a probe of its own."""

    def __init__(self, body: Probe, head: nn.Linear):
        super().__init__()
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        features = masked_batch_norm(self.body.bn, x, mask)
        return self.head(self.body.aggregate(features, mask))


class CoTrainedProbe(nn.Module):
    """A probe (the target's, its `cls` the target's head) and one more head per collection."""

    def __init__(self, body: Probe, heads: Sequence[nn.Linear]):
        super().__init__()
        self.body = body
        self.heads = nn.ModuleList(heads)

    def view(self, k: int) -> nn.Module:
        """Collection k's model: the probe itself for the target (k = 0), else a HeadView."""
        return self.body if k == 0 else HeadView(self.body, self.heads[k - 1])


def collection_draws(weights: Sequence[float], steps: int, rng: np.random.Generator) -> np.ndarray:
    """Which collection each of `steps` batches comes from, with probabilities proportional to
    `weights` (a collection of weight 0 is never drawn)."""
    p = np.asarray(weights, np.float64)
    return rng.choice(len(p), size=steps, p=p / p.sum())


def train_cotrained(
    feature_paths: Sequence[str | Path],
    config: TrainConfig,
    out_dir: Path | None = None,
    progress: bool = True,
    weights: Sequence[float] | None = None,
) -> dict:
    """Train one probe on the target (`feature_paths`, one file) and the `config.co_train`
    collections at once, and test it on the target; see the module's docstring.

    With `out_dir`, writes `metrics.json`, `predictions.csv` and `checkpoint.pt` (the target's
    probe) as `probe.train.train_probe` does.

    Args:
        weights: relative draw weights of the collections, target first (default: their
            numbers of training videos, CoVeR's proportional sampling).

    Returns:
        `train_probe`'s result with `"co_training"`: each collection's file, split, labels,
        videos, batches drawn and test metrics (percent).

    Raises:
        UserError: more than one target file, collections of another backbone or feature size,
            unusable splits (one line naming the files).
    """
    config.validate()
    if out_dir is not None:
        check_output_dir(out_dir)
    if len(feature_paths) != 1:
        raise UserError(
            "--co-train and --init-from train one probe: pass one --features file (the target "
            f"collection), not {len(feature_paths)}"
        )
    paths = [Path(feature_paths[0]), *(Path(p) for p in config.co_train)]
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    opened: list[ProbeData] = []
    collections: list[Collection] = []
    try:
        for k, path in enumerate(paths):  # the videos a report leaves out are the target's
            opened.append(open_probe_data([path], exclude=() if k else config.exclude_videos))
        _check_compatible(opened)  # before any features are read
        for k, data in enumerate(opened):
            collections.append(_collection(data, k, config))
        if weights is None:
            weights = [c.n_train for c in collections]
        if len(weights) != len(collections) or min(weights) < 0 or not weights[0] > 0:
            raise ValueError(f"need a weight >= 0 per collection, the target's > 0: {weights}")
        result, model, test_scores = _train(collections, config, list(weights), progress)
        if out_dir is not None:
            target = collections[0]
            _write_run(
                Path(out_dir), target.data, [model], [[0]], target.subsets, test_scores, result
            )
    finally:
        for data in opened:
            data.close()
        torch.set_num_threads(threads)
    return result


def _collection(data: ProbeData, k: int, config: TrainConfig) -> Collection:
    path = data.files[0].path
    split = config.split
    if k > 0 and split >= data.n_splits:
        if (str(path), split) not in _WARNED:  # once per process: a grid meets it every run
            _WARNED.add((str(path), split))
            log.warning(
                "%s has %d split column(s), no split %d: co-training uses its split 0",
                path,
                data.n_splits,
                split,
            )
        split = 0
    subsets = split_indices(data, split)
    store = open_store(data, [0], config.memory_budget_gb)
    seed = config.seed if k == 0 else _seed(config.seed, _BATCHES, k)
    return Collection(
        path=path,
        data=data,
        split=split,
        subsets=subsets,
        store=store,
        targets=torch.from_numpy(data.labels.astype(np.float32)),
        generator=torch.Generator().manual_seed(seed),
    )


_WARNED: set[tuple[str, int]] = set()


def _check_compatible(opened: list[ProbeData]) -> None:
    target = opened[0].files[0]
    for data in opened[1:]:
        other = data.files[0]
        if other.path.resolve() == target.path.resolve():
            raise UserError(f"--co-train {other.path}: is the target (--features) itself")
        if (other.meta.backbone, other.feature_dim) != (target.meta.backbone, target.feature_dim):
            raise UserError(
                f"{other.path} ({other.meta.backbone}, {other.feature_dim}-d) and {target.path} "
                f"({target.meta.backbone}, {target.feature_dim}-d): co-training shares one model, "
                "so every collection must be embedded with the same backbone"
            )


def _train(collections: list[Collection], config: TrainConfig, weights, progress):
    """Build, co-train and score: (the result, the target's probe, its test videos' scores)."""
    target = collections[0]
    width = config.window
    name = target.data.files[0].meta.backbone
    with torch.random.fork_rng(devices=[]):
        # As `probe.train`: the same seed builds the same probe, so the target's model starts as
        # it would alone; the other heads come from streams of their own.
        torch.manual_seed(config.seed)
        body = build_probe(config.model, target.store.feature_dim, len(target.data.label_names))
        if config.init_from:
            load_body(config.init_from, body, config.model, str(target.path))
        heads = []
        for k, c in enumerate(collections[1:], start=1):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_seed(config.seed, _HEAD, k))
                heads.append(nn.Linear(body.cls.in_features, len(c.data.label_names)))
        model = CoTrainedProbe(body, heads)
        history = _fit(model, collections, weights, config, progress, f"{config.model} {name}")
    model.cpu().eval()
    started = time.perf_counter()
    scores, report = {}, []
    for k, c in enumerate(collections):
        names = ("val", "test") if k == 0 else ("test",)
        for subset in names:
            windows = sliding_windows(c.subsets[subset], c.counts, width)
            logits = window_logits(model.view(k), c.store, windows, width, config.mask_padding)
            video = video_scores(logits, windows, c.subsets[subset])
            if k == 0:
                scores[subset] = video
        report.append(
            {
                "path": str(c.path),
                "role": "target" if k == 0 else "co-train",
                "split": c.split,
                "labels": list(c.data.label_names),
                "videos": {s: int(len(i)) for s, i in c.subsets.items()},
                "weight": float(weights[k]),
                "batches": int(history["batches"][k]),
                "test": {
                    m: 100 * v
                    for m, v in compute_metrics(c.data.labels[c.subsets["test"]], video).items()
                },
            }
        )
    history["test_seconds"] = time.perf_counter() - started
    training = [{"files": [str(target.path)], **history}]
    result = _report(target.data, target.subsets, scores, config, training)
    result["co_training"] = {
        "collections": report,
        "sampling": "each batch from one collection, drawn with probability proportional to its "
        "weight (default: its training videos)",
        "selection": "early stopping and best epoch on the target's validation loss",
    }
    log.info(
        "%s co-trained on %d collections: best epoch %d of %d, target val loss %.4f",
        config.model,
        len(collections),
        history["best_epoch"] + 1,
        history["epochs_run"],
        history["best_val_loss"],
    )
    return result, model.body, scores["test"]


def _fit(model, collections, weights, config, progress, desc) -> dict:
    """`probe.train.fit` over several collections (`train_epochs`): batches drawn by
    collection, the target's validation loss for the schedule, early stopping and the best
    epoch (restored)."""
    device, width = config.device, config.window
    model.to(device)
    views = [model.view(k) for k in range(len(collections))]
    loss_fn = nn.BCEWithLogitsLoss()
    target = collections[0]
    val_windows = sliding_windows(target.subsets["val"], target.counts, width)
    val_targets = target.targets[val_windows.video].to(device)
    steps = sum(
        math.ceil(c.n_train / config.batch_size)
        for c, w in zip(collections, weights, strict=True)
        if w > 0
    )
    draw = np.random.default_rng(_seed(config.seed, _DRAW))
    drawn = np.zeros(len(collections), np.int64)  # batches per collection

    def batches():
        for k in collection_draws(weights, steps, draw).tolist():
            c = collections[k]
            videos, windows = c.batch(config.batch_size, width)
            x, mask = c.store.windows(windows, width)
            logits = views[k](x.to(device), _model_mask(mask, config.mask_padding, device))
            drawn[k] += 1
            yield (
                loss_fn(logits, c.targets[videos].to(device)),
                len(videos),
                f"training loss of {c.path}",
            )

    def validate() -> float:
        logits = window_logits(
            views[0], target.store, val_windows, width, config.mask_padding, device
        )
        return float(loss_fn(logits.to(device), val_targets))

    where = ", ".join(str(c.path) for c in collections)
    history = train_epochs(model, config, batches, validate, progress, desc, where)
    history["batches"] = drawn.tolist()
    return history


def summarize_collections(runs: list[list[dict]]) -> list[dict]:
    """Each collection's test metrics over runs (each run a `co_training["collections"]` list):
    {"path", "role", "labels", "test": metric -> {"mean", "std", "n"}} per collection."""
    out = []
    for k, first in enumerate(runs[0]):
        metrics = first["test"].keys()
        out.append(
            {
                "path": first["path"],
                "role": first["role"],
                "labels": first["labels"],
                "test": {m: summarize_values([run[k]["test"][m] for run in runs]) for m in metrics},
            }
        )
    return out
