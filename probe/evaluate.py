"""Scoring trained probes: window logits, fusion, per-video scores, checkpoints, prediction.

A video is scored as in the reference (DIViTA `train.py`, `predict` + `mean_snippets`): its
clips are cut into consecutive `window`-clip windows (the last one zero-padded), each window gets
logits, and the video's score for a label is the mean over its windows of the sigmoid of those
logits. With several models (late fusion, one model per feature file), the models' window logits
are averaged first, as the reference's late fusion (`Stack` + `SimpleAvg` over model logits).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from probe.config import TrainConfig
from probe.data import (
    SUBSETS,
    ProbeData,
    Windows,
    check_same_clips,
    open_probe_data,
    open_store,
    sliding_windows,
)
from probe.metrics import compute_metrics, per_label_ap
from probe.models import build_probe
from vtl.errors import UserError

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "vtl-probe-checkpoint"
CHECKPOINT_VERSION = 1
EVAL_BATCH_WINDOWS = 512  # windows per forward pass when scoring (memory, not results)


@torch.no_grad()
def window_logits(
    model: nn.Module, store, windows: Windows, width: int, mask_padding: bool, device: str = "cpu"
) -> torch.Tensor:
    """Logits (windows, labels) of every window, in eval mode, on the CPU."""
    model.eval()
    out = []
    for a in range(0, len(windows), EVAL_BATCH_WINDOWS):
        x, mask = store.windows(windows.take(slice(a, a + EVAL_BATCH_WINDOWS)), width)
        out.append(model(x.to(device), _model_mask(mask, mask_padding, device)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def _model_mask(mask: torch.Tensor, mask_padding: bool, device: str) -> torch.Tensor | None:
    # Without padding the mask changes nothing; passing None takes the faster unmasked path.
    if not mask_padding or bool(mask.all()):
        return None
    return mask.to(device)


def video_scores(logits: torch.Tensor, windows: Windows, videos: np.ndarray) -> np.ndarray:
    """Per-video scores (len(videos), labels): mean over each video's windows of sigmoid(logits)."""
    position = np.full(int(max(videos.max(), windows.video.max())) + 1, -1, np.int64)
    position[videos] = np.arange(len(videos))
    owner = torch.from_numpy(position[windows.video])
    probs = torch.sigmoid(logits.double())
    total = torch.zeros(len(videos), probs.shape[1], dtype=torch.float64)
    total.index_add_(0, owner, probs)
    count = torch.bincount(owner, minlength=len(videos)).clamp_min(1)
    return (total / count.unsqueeze(1)).numpy()


def fused_window_logits(
    models: list[nn.Module],
    groups: list[list[int]],
    data: ProbeData,
    videos: np.ndarray,
    config: TrainConfig,
) -> tuple[torch.Tensor, Windows]:
    """Window logits of `videos`, averaged over the models (one per group of feature files)."""
    if len(data.files) > 1:
        check_same_clips(data)
    windows = sliding_windows(videos, data.clip_counts[0], config.window)
    total = None
    for model, group in zip(models, groups, strict=True):
        store = open_store(data, group, config.memory_budget_gb)
        model.to(config.device)
        logits = window_logits(
            model, store, windows, config.window, config.mask_padding, config.device
        )
        total = logits if total is None else total + logits
        del store
    return total / len(models), windows


# --- checkpoints


def save_checkpoint(
    path: Path, models: list[nn.Module], groups: list[list[int]], data: ProbeData, info: dict
) -> None:
    """Write the trained models with what is needed to rebuild and check them."""
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "groups": groups,
            "feature_dims": [sum(data.files[j].feature_dim for j in g) for g in groups],
            "label_names": list(data.label_names),
            "models": [m.state_dict() for m in models],
            **info,
        },
        path,
    )


def load_checkpoint(path: str | Path) -> tuple[dict, list[nn.Module]]:
    """The checkpoint dictionary and its models, rebuilt in eval mode on the CPU.

    Raises:
        UserError: the file is missing or not a probe checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling failure means "not one of ours"
        raise UserError(
            f"{path}: not a probe checkpoint ({type(error).__name__}); "
            "use the checkpoint.pt that `probe train` wrote"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a probe checkpoint; use the one `probe train` wrote")
    n_labels = len(ckpt["label_names"])
    models = []
    for dim, state in zip(ckpt["feature_dims"], ckpt["models"], strict=True):
        model = build_probe(ckpt["config"]["model"], dim, n_labels)
        model.load_state_dict(state)
        models.append(model.eval())
    return ckpt, models


def load_body(checkpoint: str | Path, model: nn.Module, model_name: str, where: str) -> dict:
    """Copy the body of a checkpoint's probe (every weight but its classifier `cls`) into
    `model`, a fresh probe of `model_name` whose own `cls` (its labels) is kept: fine-tuning a
    probe trained on another collection (A -> B). Returns the checkpoint dictionary.

    Raises:
        UserError: a checkpoint of a fusion, of another probe model or of another feature size
            (naming the checkpoint and `where`, the feature files).
    """
    with torch.random.fork_rng(devices=[]):  # rebuilding the checkpoint's probe draws weights
        ckpt, models = load_checkpoint(checkpoint)
    if len(models) != 1:
        raise UserError(
            f"--init-from {checkpoint}: holds {len(models)} models (a late fusion); fine-tuning "
            "starts from a probe trained on one feature file"
        )
    if ckpt["config"]["model"] != model_name:
        raise UserError(
            f"--init-from {checkpoint}: holds a {ckpt['config']['model']} probe, not "
            f"{model_name}; pass --model {ckpt['config']['model']}"
        )
    if ckpt["feature_dims"][0] != model.bn.num_features:
        raise UserError(
            f"--init-from {checkpoint}: trained on {ckpt['feature_dims'][0]}-d features, but "
            f"{where} holds {model.bn.num_features}-d ones; use the same backbone"
        )
    body = {k: v for k, v in models[0].state_dict().items() if not k.startswith("cls.")}
    model.load_state_dict(body, strict=False)
    return ckpt


def check_checkpoint_data(ckpt: dict, data: ProbeData, where: Path) -> None:
    """The feature files must match the checkpoint's in number, dimensions, backbones and
    labels."""
    n_files = sum(len(g) for g in ckpt["groups"])
    if len(data.files) != n_files:
        raise UserError(
            f"{where} was trained on {n_files} feature file(s), {len(data.files)} given; "
            "pass the same --features in the same order"
        )
    for group, dim in zip(ckpt["groups"], ckpt["feature_dims"], strict=True):
        have = sum(data.files[j].feature_dim for j in group)
        if have != dim:
            names = ", ".join(str(data.files[j].path) for j in group)
            raise UserError(f"{names}: {have}-d features, but {where} expects {dim}-d")
    trained_on = ckpt.get("features") or []  # each file's backbone (older checkpoints: none)
    for info, f in zip(trained_on, data.files, strict=False):
        want, have = info.get("backbone"), f.meta.backbone
        if want and have and "unknown" not in (want, have) and want != have:
            raise UserError(
                f"{f.path}: {have} features, but {where} was trained on {want} features; "
                "pass the feature files it was trained on (same backbones, same order)"
            )
    if list(data.label_names) != list(ckpt["label_names"]):
        raise UserError(
            f"{data.files[0].path}: labels {data.label_names} differ from the checkpoint's "
            f"{ckpt['label_names']}"
        )


def write_predictions(path: Path, video_ids: list[str], label_names: list[str], scores) -> None:
    """CSV `video_id,<label>...` with each label's score (probability) per video, each exactly
    (the shortest text that reads back as the same float: 6 decimals tied confident scores,
    0.9999996 and 0.9999998 both 1.000000, and the metrics recomputed from the file differed)."""
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["video_id", *label_names])
        for vid, row in zip(video_ids, scores, strict=True):
            writer.writerow([vid, *(repr(float(p)) for p in row)])


# --- scoring a checkpoint


def evaluate_checkpoint(
    checkpoint: str | Path,
    feature_paths: list[Path],
    split: int | None = None,
    subset: str = "test",
    memory_budget_gb: float | None = None,
) -> dict:
    """Score a trained checkpoint on the `subset` videos of `split` of the given feature files.

    `split` defaults to the split the checkpoint was trained on. Returns {"metrics", "per_label"}
    in percent plus the videos' scores (`"scores"`, a (videos, labels) array) and `"video_ids"`.

    Raises:
        UserError: a checkpoint or feature files that do not fit together.
    """
    if subset not in SUBSETS:
        raise UserError(f"--subset {subset!r}: choose one of {', '.join(SUBSETS)}")
    scored = _score(checkpoint, feature_paths, split, subset, memory_budget_gb)
    y_true, scores = scored["labels"], scored["scores"]
    aps = per_label_ap(y_true, scores)
    return {
        "metrics": {k: 100 * v for k, v in compute_metrics(y_true, scores).items()},
        "per_label": {
            label: (None if np.isnan(ap) else 100 * float(ap))
            for label, ap in zip(scored["label_names"], aps, strict=True)
        },
        "split": scored["split"],
        "subset": subset,
        # of the videos scored, those it trained or stopped on (0: a held-out measure)
        "seen_videos": scored["seen"],
        "videos": len(scored["video_ids"]),
        "video_ids": scored["video_ids"],
        "scores": scores,
    }


def predict(
    checkpoint: str | Path,
    feature_paths: list[Path],
    split: int | None = None,
    subset: str | None = None,
    memory_budget_gb: float | None = None,
) -> tuple[list[str], list[str], np.ndarray]:
    """Scores of a checkpoint for the videos of the feature files.

    All videos unless `subset` (train, val, test) of `split` is given.

    Returns:
        (video ids, label names, scores (videos, labels) in [0, 1]).
    """
    if subset is not None and subset not in SUBSETS:
        raise UserError(f"--subset {subset!r}: choose one of {', '.join(SUBSETS)}")
    scored = _score(checkpoint, feature_paths, split, subset, memory_budget_gb)
    return scored["video_ids"], scored["label_names"], scored["scores"]


def _score(checkpoint, feature_paths, split, subset, memory_budget_gb) -> dict:
    """A checkpoint's video scores on the `subset` videos of a split (every video for None),
    with their ids, true labels and the label names."""
    ckpt, models = load_checkpoint(checkpoint)
    config = _scoring_config(ckpt, split, memory_budget_gb)
    data = open_probe_data([Path(p) for p in feature_paths])
    try:
        check_checkpoint_data(ckpt, data, Path(checkpoint))
        if subset is None:
            videos = np.arange(len(data.video_ids))
        else:
            if not 0 <= config.split < data.n_splits:
                raise UserError(
                    f"{data.files[0].path}: split {config.split} does not exist "
                    f"(the file has splits 0..{data.n_splits - 1})"
                )
            videos = data.subset(config.split, subset)
            if videos.size == 0:
                raise UserError(
                    f"{data.files[0].path}: split {config.split} has no {subset} videos"
                )
        seen = 0
        if subset not in (None, "train"):
            seen = _warn_seen(ckpt, [data.video_ids[i] for i in videos], subset, config.split)
        logits, windows = fused_window_logits(models, ckpt["groups"], data, videos, config)
        return {
            "split": config.split,
            "video_ids": [data.video_ids[i] for i in videos],
            "label_names": list(data.label_names),
            "labels": data.labels[videos],
            "scores": video_scores(logits, windows, videos),
            "seen": seen,
        }
    finally:
        data.close()


def _warn_seen(ckpt: dict, videos: list[str], subset: str, split: int) -> int:
    """Warn when the videos scored as `subset` include videos the checkpoint trained or stopped
    on (another split of its own collection): their scores are no held-out measure. Returns
    how many."""
    seen = set(ckpt.get("seen_videos") or ())  # older checkpoints: not recorded
    shared = [v for v in videos if v in seen]
    if shared:
        log.warning(
            "%d of the %d %s videos of split %d (e.g. %r) trained or validated this checkpoint "
            "(it was trained on split %s): their scores are not held out; evaluate on its own "
            "split or on another collection",
            len(shared),
            len(videos),
            subset,
            split,
            shared[0],
            ckpt["config"].get("split"),
        )
    return len(shared)


def _scoring_config(ckpt: dict, split, memory_budget_gb) -> TrainConfig:
    values = dict(ckpt["config"], device="cpu")
    if split is not None:
        values["split"] = split
    if memory_budget_gb is not None:
        values["memory_budget_gb"] = memory_budget_gb
    return TrainConfig.from_dict(values)
