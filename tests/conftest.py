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


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run only where CUDA is (here they are reported as skipped)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _private_caches(tmp_path_factory):
    """Probe run caches and crash logs of the tests go to a temporary folder, not the user's."""
    folder = tmp_path_factory.mktemp("vtl-cache")
    saved = {k: os.environ.get(k) for k in ("VTL_CACHE_DIR", "VTL_LOG_DIR")}
    os.environ["VTL_CACHE_DIR"] = str(folder / "cache")
    os.environ["VTL_LOG_DIR"] = str(folder / "logs")
    yield folder
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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


def _console(capsys, name: str):
    """A console script run in-process: args -> (exit code, stdout, stderr)."""
    import importlib
    import sys

    main = importlib.import_module(f"{name}.cli").main

    def run(args):
        old = sys.argv
        sys.argv = [name, *map(str, args)]
        try:
            with pytest.raises(SystemExit) as stop:
                main()
        finally:
            sys.argv = old
        out = capsys.readouterr()
        return stop.value.code, out.out, out.err

    return run


@pytest.fixture
def probe_cli(capsys):
    """Run the `probe` console script in-process: args -> (exit code, stdout, stderr)."""
    return _console(capsys, "probe")


@pytest.fixture
def extract_cli(capsys):
    """Run the `extract` console script in-process: args -> (exit code, stdout, stderr)."""
    return _console(capsys, "extract")


@pytest.fixture
def assert_same_features():
    """Assert that two feature files hold equal datasets and the same failed videos."""
    import numpy as np

    from vtl.features import DATASETS, FeatureFile

    def arrays(path: Path) -> dict[str, np.ndarray]:
        with FeatureFile(path) as f:
            out = {name: f.dataset(name)[:] for name in DATASETS}
            out["failures"] = np.array([x["video_id"] for x in f.meta.failures])
            return out

    def check(a: Path, b: Path) -> None:
        left, right = arrays(a), arrays(b)
        assert left.keys() == right.keys()
        for name in left:
            np.testing.assert_array_equal(left[name], right[name], err_msg=name)

    return check


@pytest.fixture
def hub_home(monkeypatch, tmp_path: Path) -> Path:
    """A private, empty HF_HOME with the hub switched off and no socket able to connect."""
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    import socket

    def refuse(*args, **kwargs):
        raise OSError("the test allows no network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return home


@pytest.fixture
def one_blas_thread():
    """One BLAS thread for the test (`pytest.mark.usefixtures("one_blas_thread")`): for small
    matrices on shared cores, more threads only wait for each other."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield
