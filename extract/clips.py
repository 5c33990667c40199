"""Clip sampling inside shots: which source frames make up each fixed-length clip.

A clip is ``frames_per_clip`` frames at ``clip_fps`` (24 frames at 24 fps by default, as in the
reference work). Clip frame ``k`` of a shot starting at source frame ``first`` is shown at time
``first / fps + k / clip_fps``; we take the source frame nearest to that time,
``first + floor(k * fps / clip_fps + 1/2)``: exact when ``fps == clip_fps`` (the ratio is then
1 up to float error far below one half), and ties (``25 -> 24`` at ``k = 12``, every other frame
for ``60 -> 24``) go to the later frame so the steps stay regular, unlike numpy's round-half-even.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from vtl.defaults import CLIP_FPS, FRAMES_PER_CLIP


@dataclass
class ClipPlan:
    """All clips of one video: source frame indices per clip frame and each clip's shot."""

    indices: np.ndarray  # (C, frames_per_clip) int64; padding repeats the clip's last frame
    shot: np.ndarray  # (C,) int32 index of the clip's shot within the video

    @property
    def frames(self) -> np.ndarray:
        """``(C, 2)`` int64 first/last source frame covered by each clip."""
        if len(self.indices) == 0:
            return np.zeros((0, 2), dtype=np.int64)
        return np.stack([self.indices.min(axis=1), self.indices.max(axis=1)], axis=1)

    def __len__(self) -> int:
        return len(self.indices)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_rate(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def _check_sampling(
    fps: object, frames_per_clip: object, clip_fps: object, min_tail: object
) -> tuple[float, int, float, int]:
    fps = _check_rate("fps", fps)
    clip_fps = _check_rate("clip_fps", clip_fps)
    frames_per_clip = _check_int("frames_per_clip", frames_per_clip, 1)
    if min_tail is None:
        min_tail = frames_per_clip // 2
    min_tail = _check_int("min_tail", min_tail, 0)
    if min_tail > frames_per_clip:
        raise ValueError(f"min_tail must be <= frames_per_clip ({frames_per_clip}), got {min_tail}")
    return fps, frames_per_clip, clip_fps, min_tail


def _offsets(k: np.ndarray, fps: float, clip_fps: float) -> np.ndarray:
    """Source frame offset from the shot start of clip frames `k` (see the module docstring)."""
    # (k * fps) / clip_fps, not k * (fps / clip_fps): exact products make ties exact halves.
    return np.floor(k.astype(np.float64) * fps / clip_fps + 0.5).astype(np.int64)


def _sample_shot(
    first: int, last: int, fps: float, frames_per_clip: int, clip_fps: float, min_tail: int
) -> np.ndarray:
    span = last - first
    # Offsets grow with k, so all k up to the one past the shot's end are enough; +2 covers
    # float error in the bound.
    n = int(math.floor((span + 0.5) * clip_fps / fps)) + 2
    offsets = _offsets(np.arange(n), fps, clip_fps)
    sampled = first + offsets[offsets <= span]  # never empty: offset 0 is the shot's first frame
    n_full, tail = divmod(len(sampled), frames_per_clip)
    if tail and (n_full == 0 or tail >= min_tail):
        # Pad the incomplete last clip by holding its last frame.
        pad = np.full(frames_per_clip - tail, sampled[-1], dtype=np.int64)
        sampled = np.concatenate([sampled, pad])
    else:
        sampled = sampled[: n_full * frames_per_clip]
    return sampled.reshape(-1, frames_per_clip)


def sample_shot_clips(
    first: int,
    last: int,
    fps: float,
    frames_per_clip: int = FRAMES_PER_CLIP,
    clip_fps: float = CLIP_FPS,
    min_tail: int | None = None,
) -> np.ndarray:
    """``(C, frames_per_clip)`` int64 source indices of the clips of one shot ``[first, last]``.

    Clips are consecutive and non-overlapping from the shot start, sampled at ``clip_fps`` from a
    source at ``fps`` (see the module docstring for the rounding). The last, incomplete clip is
    padded by repeating its last frame and kept if it is the shot's only clip or has at least
    ``min_tail`` sampled frames (default ``frames_per_clip // 2``); otherwise it is dropped.
    Every shot yields at least one clip.
    """
    fps, frames_per_clip, clip_fps, min_tail = _check_sampling(
        fps, frames_per_clip, clip_fps, min_tail
    )
    first = _check_int("first", first, 0)
    last = _check_int("last", last, 0)
    if last < first:
        raise ValueError(f"shot last frame {last} is before its first frame {first}")
    return _sample_shot(first, last, fps, frames_per_clip, clip_fps, min_tail)


def sample_clips(
    shots: np.ndarray,
    fps: float,
    frames_per_clip: int = FRAMES_PER_CLIP,
    clip_fps: float = CLIP_FPS,
    min_tail: int | None = None,
) -> ClipPlan:
    """All clips of a video, shot by shot, in order; ``shots`` is ``(S, 2)`` ``[first, last]``."""
    fps, frames_per_clip, clip_fps, min_tail = _check_sampling(
        fps, frames_per_clip, clip_fps, min_tail
    )
    shots = np.asarray(shots)
    if shots.ndim != 2 or shots.shape[1] != 2:
        raise ValueError(f"shots must have shape (S, 2), got {shots.shape}")
    if shots.size and not np.issubdtype(shots.dtype, np.integer):
        raise ValueError(f"shots must hold integer frame indices, got dtype {shots.dtype}")
    per_shot, shot_of_clip = [], []
    for i, (first, last) in enumerate(shots.tolist()):
        if first < 0 or last < first:
            raise ValueError(f"shot {i} is [{first}, {last}]: need 0 <= first <= last")
        clips = _sample_shot(first, last, fps, frames_per_clip, clip_fps, min_tail)
        per_shot.append(clips)
        shot_of_clip.append(np.full(len(clips), i, dtype=np.int32))
    if not per_shot:
        return ClipPlan(
            indices=np.zeros((0, frames_per_clip), dtype=np.int64),
            shot=np.zeros(0, dtype=np.int32),
        )
    return ClipPlan(indices=np.concatenate(per_shot), shot=np.concatenate(shot_of_clip))


class ClipCutter:
    """The clips of one video, cut while it is still being decoded.

    Clips are anchored at their shot's first frame, so a clip of a shot that is still open is
    final as soon as its last frame is known to belong to the shot: it is cut then, and only the
    shot's last clips wait for the shot to close. Over a whole video the clips equal
    `sample_clips` of its shots, in the same order.

    Feed it `update(closed, open_shot)` after each chunk: the shots that closed (in order) and the
    open shot as ``(first, last frame known to be in it)`` or None.
    """

    def __init__(
        self,
        fps: float,
        frames_per_clip: int = FRAMES_PER_CLIP,
        clip_fps: float = CLIP_FPS,
        min_tail: int | None = None,
    ) -> None:
        self.fps, self.frames_per_clip, self.clip_fps, self.min_tail = _check_sampling(
            fps, frames_per_clip, clip_fps, min_tail
        )
        self.shots: list[tuple[int, int]] = []
        self.clips: list[np.ndarray] = []  # (frames_per_clip,) source indices, in order
        self.clip_shot: list[int] = []
        self._open: int | None = None  # first frame of the open shot
        self._known = -1  # last frame known to be in the open shot
        self._cut = 0  # clips of the open shot cut so far

    def _clip(self, first: int, j: int) -> np.ndarray:
        t = self.frames_per_clip
        return first + _offsets(np.arange(j * t, (j + 1) * t), self.fps, self.clip_fps)

    def update(
        self, closed: list[tuple[int, int]], open_shot: tuple[int, int] | None
    ) -> list[np.ndarray]:
        """Record closed shots and the open one; return the clips that became final."""
        new: list[np.ndarray] = []
        for first, last in closed:
            plan = _sample_shot(
                first, last, self.fps, self.frames_per_clip, self.clip_fps, self.min_tail
            )
            done = self._cut if first == self._open else 0
            self._take(new, list(plan[done:]))
            self.shots.append((first, last))
            self._open, self._cut = None, 0
        if open_shot is not None:
            first, known = open_shot
            if first != self._open:
                self._open, self._cut = first, 0
            self._known = known
            while True:  # every full clip whose last frame is known to be in the shot
                clip = self._clip(first, self._cut)
                if clip[-1] > known:
                    break
                self._take(new, [clip])
                self._cut += 1
        return new

    def _take(self, new: list[np.ndarray], clips: list[np.ndarray]) -> None:
        new.extend(clips)
        self.clips.extend(clips)
        self.clip_shot.extend([len(self.shots)] * len(clips))

    def next_frame(self, pending_from: int) -> int:
        """The first source frame a clip still to be cut may use: the open shot's next clip, or
        the next shot, which may start right after the open shot's last known frame; with no open
        shot, `pending_from` (the first frame a shot still to come may include)."""
        if self._open is not None:
            return min(int(self._clip(self._open, self._cut)[0]), self._known + 1)
        return pending_from

    def plan(self) -> ClipPlan:
        """Every clip cut so far, as `sample_clips` would give them."""
        if not self.clips:
            return ClipPlan(
                indices=np.zeros((0, self.frames_per_clip), dtype=np.int64),
                shot=np.zeros(0, dtype=np.int32),
            )
        return ClipPlan(indices=np.stack(self.clips), shot=np.array(self.clip_shot, np.int32))
