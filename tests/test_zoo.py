"""The backbone zoo end to end: one `extract run` over the demo with a timm model by name, a
`transformers` video model by hub id and the 3D ShuffleNet from its authors' checkpoint (all
three written by tests/checkpoints.py: the first two into a private hub cache read offline, the
third passed with --weights), then `probe matrix` over the three feature files."""

from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from extract.backbones import build_model, get_spec
from tests.checkpoints import (
    TIMM_TINY,
    TINY_HF_VIDEO_MODELS,
    publish_hf,
    publish_timm,
    tiny_timm_model,
    write_efficient3d_checkpoint,
)
from vtl.features import FeatureFile, verify_features

TIMM = f"timm/{TIMM_TINY}"
HF = "hf/test-org/tiny-videomae"
SHUFFLENET = "shufflenetv2_3d_x2_0"
BACKBONES = (TIMM, HF, SHUFFLENET)

# The smallest run through every stage: fixed shots longer than any demo video (no TransNetV2),
# so one shot per video, and in it one clip of 16 frames at 3 fps (5.3 s; the demo videos last
# 5.5 to 6.7 s), of which the image model embeds one frame.
FEW_FRAMES = (
    "--segmentation fixed --shot-frames 1000 --frames-per-clip 16 --clip-fps 3 --image-frames 1"
)
# Linear probes for two epochs, and the scores that are quick on a 2048-wide file (H-score's
# full covariance is not).
QUICK_MATRIX = "--models linear --scores logme,knn --epochs 2 --patience 2 --threads 1 --quiet"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_one_extract_run_over_the_zoo_and_a_matrix_over_it(
    hub_home, demo_manifest: Path, tmp_path: Path, extract_cli, probe_cli
):
    timm_snapshot = publish_timm(tiny_timm_model(), TIMM, hub_home)
    torch.manual_seed(0)
    hf_snapshot = publish_hf(*TINY_HF_VIDEO_MODELS["videomae"](), HF.removeprefix("hf/"), hub_home)
    checkpoint = tmp_path / get_spec(SHUFFLENET).weights.filename
    write_efficient3d_checkpoint(build_model(SHUFFLENET), checkpoint, seed=0)
    weights = {
        TIMM: timm_snapshot / "model.safetensors",
        HF: hf_snapshot / "model.safetensors",
        SHUFFLENET: checkpoint,
    }

    out = tmp_path / "features"
    args = ["run", "--manifest", demo_manifest, "--backbone", ",".join(BACKBONES), "--out", out]
    args += [*FEW_FRAMES.split(), "--weights", f"{SHUFFLENET}={checkpoint}", "--quiet"]
    code, stdout, stderr = extract_cli(args)
    assert code == 0, stderr
    files = dict(line.split("\t") for line in stdout.splitlines())
    assert sorted(files) == sorted(BACKBONES)
    videos = len(demo_manifest.read_text().splitlines()) - 1  # the manifest's rows

    # One file per backbone, each of its width, from the checkpoint the test wrote.
    widths = {TIMM: 512, HF: 32, SHUFFLENET: 2048}
    for name, path in files.items():
        assert verify_features(path)["videos"] == videos, name
        with FeatureFile(path) as f:
            assert f.meta.backbone == name and f.feature_dim == widths[name]
            assert f.n_clips == f.n_videos == videos, name  # one clip per video, as asked
            assert f.meta.weights["sha256"] == sha256(weights[name]), name
            features = f.read_features()
        assert np.isfinite(features).all() and features.std(axis=0).max() > 0, name

    report = tmp_path / "report"
    code, _, stderr = probe_cli(
        ["matrix", "--features", out, *QUICK_MATRIX.split(), "--out", report]
    )
    assert code == 0, stderr
    with open(report / "matrix.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    cells = {(row["row"], row["probe"]): row for row in rows}
    assert set(cells) == {(b, p) for b in BACKBONES for p in ("linear", "logme", "knn")}
    for (name, method), row in cells.items():
        assert int(row["feature_dim"]) == widths[name]
        metric = "uap_mean" if method == "linear" else "score_mean"
        assert math.isfinite(float(row[metric])), (name, method)
    assert all(0 <= float(cells[(b, "linear")]["map_mean"]) <= 100 for b in BACKBONES)
    assert all(name in (report / "matrix.md").read_text() for name in BACKBONES)
