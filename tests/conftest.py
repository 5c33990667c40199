"""Shared fixtures: a small real demo collection and real features extracted from it, built once
per test session (real videos, real TransNetV2, real EfficientNet-Lite0 ImageNet weights)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Two cores here: keep torch from oversubscribing when tests run subprocesses too.
torch.set_num_threads(min(2, os.cpu_count() or 1))

DEMO_VIDEOS = 6


@pytest.fixture(scope="session")
def demo_manifest(tmp_path_factory) -> Path:
    """A 6-video demo collection (the smallest the generator makes) and its manifest."""
    from extract.demo_data import make_demo_data

    return make_demo_data(tmp_path_factory.mktemp("demo"), n_videos=DEMO_VIDEOS, progress=False)


@pytest.fixture(scope="session")
def lite0_features(demo_manifest, tmp_path_factory) -> Path:
    """EfficientNet-Lite0 features of the demo collection, TransNetV2 shots, 2 frames per clip."""
    from extract.pipeline import ExtractConfig, run_extraction

    out = tmp_path_factory.mktemp("features")
    config = ExtractConfig(image_frames=2, batch_size=8)
    result = run_extraction(demo_manifest, "efficientnet_lite0", out, config, progress=False)
    return result.files["efficientnet_lite0"]
