"""The GPU path: CUDA + AMP + channels-last against CPU float32, TransNetV2 on CUDA against the
CPU, and a whole `extract run --device cuda`. Marked `gpu`: skipped where CUDA is absent
(`make test-gpu` runs them alone)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from extract.backbones import Backbone, build_model, create_backbone, get_spec
from extract.pipeline import ExtractConfig, run_extraction
from extract.shots import TransNetV2Shots
from extract.video import VideoSource
from extract.weights import expected_path
from vtl.features import FeatureFile, verify_features
from vtl.manifest import read_manifest

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda") if torch.cuda.is_available() else None


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1)


@pytest.fixture(scope="module")
def frames(demo_manifest) -> torch.Tensor:
    """96 decoded frames (4 clips of 24) of a demo video."""
    source = VideoSource(read_manifest(demo_manifest).paths[0])
    decoded = np.concatenate([chunk for _, chunk, _ in source.chunks()])[:96]
    return torch.from_numpy(decoded)


def clips_of(backbone: Backbone, frames: torch.Tensor) -> torch.Tensor:
    prepared = backbone.prepare(frames.to(backbone.device))
    return prepared.view(4, 24, *prepared.shape[1:])


def test_image_backbone_on_cuda_with_amp_matches_cpu_float32(frames):
    cpu = create_backbone("efficientnet_lite0")
    gpu = create_backbone("efficientnet_lite0", device=CUDA, amp=True, channels_last=True)
    assert gpu.amp and gpu.memory_format == torch.channels_last
    expected = cpu.embed(clips_of(cpu, frames))
    got = gpu.embed(clips_of(gpu, frames))
    assert got.shape == expected.shape == (4, 1280) and got.device.type == "cpu"
    assert cosine(got, expected).min() >= 0.999


def test_video_backbone_on_cuda_with_amp_matches_cpu_float32(frames, tmp_path):
    spec = get_spec("r2plus1d_18")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        state = build_model(spec).state_dict()
    checkpoint = expected_path(spec, tmp_path)
    checkpoint.parent.mkdir(parents=True)
    torch.save(state, checkpoint)
    cpu = create_backbone(spec, cache_dir=tmp_path)
    gpu = create_backbone(spec, cache_dir=tmp_path, device=CUDA, amp=True, channels_last=True)
    assert gpu.memory_format == torch.channels_last_3d
    expected = cpu.embed(clips_of(cpu, frames))
    got = gpu.embed(clips_of(gpu, frames))
    assert cosine(got, expected).min() >= 0.999


def test_amp_overflow_is_recomputed_in_float32():
    """A model whose float16 activations overflow but whose float32 ones do not: the embedding
    comes out finite and equal to the float32 one."""

    class Overflowing(torch.nn.Module):
        def forward(self, x):
            weight = torch.full((4, 8), 1e4, device=x.device)
            big = torch.nn.functional.linear(x.flatten(1)[:, :8], weight)
            return big / 1e4  # 1e4 * 8 * ~2 is far beyond float16's 65504, fine in float32

    spec = get_spec("efficientnet_lite0")
    backbone = Backbone(
        spec, Overflowing().to(CUDA), torch.nn.Identity(), {"name": "x"}, CUDA, amp=True
    )
    backbone.amp_dtype = torch.float16
    clips = torch.full((2, 2, 3, 224, 224), 255, dtype=torch.uint8)
    out = backbone.embed(clips)
    assert torch.isfinite(out).all()
    backbone.amp = False
    torch.testing.assert_close(out, backbone.embed(clips))


def test_transnetv2_shots_on_cuda_equal_the_cpu_shots(demo_manifest):
    cpu = TransNetV2Shots(device="cpu")
    gpu = TransNetV2Shots(device=CUDA)
    assert gpu.batch_windows == 8
    for path in read_manifest(demo_manifest).paths:
        source = VideoSource(path, small=True)
        small = torch.from_numpy(np.concatenate([chunk[2] for chunk in source.chunks()]))
        expected = cpu.detect(small)
        np.testing.assert_array_equal(gpu.detect(small.to(CUDA)), expected)
        stream = gpu.stream()
        shots = []
        for start in range(0, len(small), 32):
            shots += stream.push(small[start : start + 32].to(CUDA))
        shots += stream.finish()
        np.testing.assert_array_equal(np.array(shots).reshape(-1, 2), expected)


def test_extract_run_on_cuda_matches_the_cpu_run(demo_manifest, lite0_features, tmp_path):
    """The fixture's CPU run and the same run on CUDA: the same shots and clips, features with
    cosine >= 0.999 per clip."""
    config = ExtractConfig(image_frames=2, batch_size=8, device="cuda")
    result = run_extraction(demo_manifest, "efficientnet_lite0", tmp_path, config, progress=False)
    path = result.files["efficientnet_lite0"]
    verify_features(path)
    with FeatureFile(path) as gpu, FeatureFile(lite0_features) as cpu:
        assert gpu.meta.config["amp"] and gpu.meta.config["device"] == "cuda"
        for name in ("clips/frames", "clips/shot", "shots/frames"):
            np.testing.assert_array_equal(gpu.dataset(name)[:], cpu.dataset(name)[:])
        a = torch.from_numpy(gpu.dataset("clips/features")[:].astype(np.float32))
        b = torch.from_numpy(cpu.dataset("clips/features")[:].astype(np.float32))
        assert cosine(a, b).min() >= 0.999
