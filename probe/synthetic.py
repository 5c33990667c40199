"""Synthetic but learnable feature files, for tests and benchmarks of the probe stage.

Each label j has a hidden direction in feature space; a video's clips are Gaussian noise plus,
for each of its positive labels, that direction added to a random part of its clips. A probe can
learn the labels only by finding the directions, and an aggregation over clips helps because
any single clip may miss them. Files are written with the shared `FeatureWriter`, so they are
real feature files in every respect (`extract verify` accepts them).

Several backbones of one synthetic dataset (same videos, labels, splits and clips; different
features) come from the same `dataset_seed` with different `backbone_seed`s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vtl.features import FeatureMeta, FeatureWriter, consecutive_clips

FRAMES_PER_CLIP = 24
CLIP_FPS = 24.0


def synthetic_dataset(
    n_videos: int, clips: tuple[int, int], n_labels: int, n_splits: int, dataset_seed: int
) -> dict:
    """Video ids, clip counts, labels (every video has a label) and 70/10/20 splits."""
    rng = np.random.default_rng(dataset_seed)
    counts = rng.integers(clips[0], clips[1] + 1, size=n_videos)
    labels = (rng.random((n_videos, n_labels)) < 0.3).astype(np.uint8)
    labels[np.arange(n_videos), rng.integers(0, n_labels, n_videos)] = 1
    splits = np.zeros((n_videos, n_splits), np.uint8)
    for k in range(n_splits):
        order = rng.permutation(n_videos)
        n_train, n_val = int(0.7 * n_videos), int(0.1 * n_videos)
        splits[order[n_train : n_train + n_val], k] = 1
        splits[order[n_train + n_val :], k] = 2
    ids = [f"v{i:05d}" for i in range(n_videos)]
    return {"ids": ids, "counts": counts, "labels": labels, "splits": splits}


def write_synthetic_features(
    path: str | Path,
    n_videos: int = 120,
    clips: tuple[int, int] = (10, 60),
    feature_dim: int = 32,
    n_labels: int = 4,
    n_splits: int = 2,
    dataset_seed: int = 0,
    backbone_seed: int = 0,
    signal: float = 1.0,
    backbone: str = "synthetic",
    kind: str = "image",
) -> Path:
    """Write a synthetic feature file; return its path.

    Args:
        clips: (min, max) clips per video, drawn uniformly.
        signal: length of the label directions relative to the per-dimension noise (1.0).
        dataset_seed: videos, clip counts, labels and splits (share it across backbones).
        backbone_seed: the label directions and the noise.
    """
    data = synthetic_dataset(n_videos, clips, n_labels, n_splits, dataset_seed)
    rng = np.random.default_rng([dataset_seed, backbone_seed, feature_dim])
    directions = rng.standard_normal((n_labels, feature_dim)).astype(np.float32)
    directions *= signal * np.sqrt(feature_dim) / np.linalg.norm(directions, axis=1, keepdims=True)
    meta = synthetic_meta(
        feature_dim,
        backbone=backbone,
        kind=kind,
        weights={"name": f"synthetic-{backbone_seed}", "sha256": "0" * 64},
        config={"synthetic": {"dataset_seed": dataset_seed, "backbone_seed": backbone_seed}},
    )
    names = [f"label{j}" for j in range(n_labels)]
    with FeatureWriter(path, meta, names, n_splits) as writer:
        for i, vid in enumerate(data["ids"]):
            c = int(data["counts"][i])
            x = rng.standard_normal((c, feature_dim), dtype=np.float32)
            for j in np.flatnonzero(data["labels"][i]):
                x += (rng.random(c) < 0.5)[:, None] * directions[j]
            labels, splits = data["labels"][i], data["splits"][i]
            writer.add(consecutive_clips(vid, x, labels, splits, FRAMES_PER_CLIP, CLIP_FPS))
    return Path(path)


def synthetic_meta(feature_dim: int = 8, **changes) -> FeatureMeta:
    """The root attributes of a synthetic feature file (no real backbone, weights or shot
    detector); `changes` replace any of them (FeatureMeta's fields). Tests that write small
    feature files of their own take their metadata from here."""
    values = {
        "backbone": "synthetic",
        "family": "synthetic",
        "pretrain": "none",
        "kind": "image",
        "feature_dim": feature_dim,
        "frames_per_clip": FRAMES_PER_CLIP,
        "clip_fps": CLIP_FPS,
        "input_size": 0,
        "weights": {"name": "synthetic-0", "sha256": "0" * 64},
        "shot_detector": "none",
    }
    return FeatureMeta(**{**values, **changes})
