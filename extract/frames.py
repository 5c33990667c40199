"""The decoded frames of one video, kept while a clip may still use them, prepared on demand.

Decoded frames (uint8 [H, W, 3] at the video's own size) wait here until clips are cut; a frame
is prepared for an input size (resized and cropped by a backbone's `prepare`) the first time a
clip of a backbone with that size asks for it, and only then. With `--image-frames 4`, 4 frames
of a 24-frame clip are prepared; with a 6 fps clip rate on a 24 fps video, one in four. Frames
before the low-water mark (the first frame any clip still to be cut may use, from the clip
cutters) are dropped, so what is held follows the clip and the shot detector's delay, never the
length of a shot or of the video.

Decoded frames are large at high resolutions (6 MB at 1080p). When they would exceed
`raw_budget` bytes, the oldest ones are prepared for every input size ahead of need and their
decoded copy dropped (a prepared frame is 150 kB at 224x224): memory stays bounded whatever the
resolution, at the price of preparing some frames no clip uses.
"""

from __future__ import annotations

import bisect

import numpy as np
import torch

# Decoded frames kept before the oldest are prepared ahead of need (see the module docstring).
RAW_BUDGET_CPU = 128 * 2**20
RAW_BUDGET_CUDA = 1024 * 2**20
PREPARE_GROUP = 16  # decoded frames gathered and prepared at once


class FrameStore:
    """Frames of one video by source index, decoded and prepared.

    Args:
        preparers: input key -> object with `prepare(uint8 [T, H, W, 3]) -> uint8
            [T, 3, S, S]` (a `Backbone`), one per input size in use.
        raw_budget: bytes of decoded frames held before frames are prepared ahead of need.
    """

    def __init__(self, preparers: dict, raw_budget: int = RAW_BUDGET_CPU) -> None:
        self.preparers = preparers
        self.raw_budget = raw_budget
        self._starts: list[int] = []  # first index of each decoded chunk held
        self._chunks: list[torch.Tensor] = []
        self._prepared: dict = {key: {} for key in preparers}  # key -> {index: [3, S, S]}
        self._low = 0  # frames before this are gone
        self.prepared_count = 0  # frames prepared (any input size), for tests and benchmarks
        self.peak_frames = 0  # most frames held at once (decoded + prepared), likewise

    # --- decoded frames

    def add(self, start: int, frames: torch.Tensor) -> None:
        """Hold decoded frames `start`, `start + 1`, ... (uint8 [T, H, W, 3])."""
        self._starts.append(start)
        self._chunks.append(frames)
        while len(self._chunks) > 1 and self._raw_bytes() > self.raw_budget:
            self._prepare_oldest()
        self._count()

    def _raw_bytes(self) -> int:
        return sum(chunk.numel() for chunk in self._chunks)

    def _prepare_oldest(self) -> None:
        """Prepare the oldest decoded chunk for every input size, then drop it."""
        start, chunk = self._starts[0], self._chunks[0]
        wanted = np.arange(max(start, self._low), start + len(chunk))
        for key in self.preparers:
            self._prepare(key, self._missing(key, wanted))
        self._starts.pop(0)
        self._chunks.pop(0)

    def _raw(self, indices: np.ndarray) -> torch.Tensor:
        picked = []
        for index in indices.tolist():
            c = bisect.bisect_right(self._starts, index) - 1
            if c < 0 or index - self._starts[c] >= len(self._chunks[c]):
                raise IndexError(f"frame {index} is not held (held from {self._low})")
            picked.append(self._chunks[c][index - self._starts[c]])
        return torch.stack(picked)

    def _missing(self, key, indices: np.ndarray) -> np.ndarray:
        """The `indices` not prepared for input `key` yet."""
        cache = self._prepared[key]
        return indices[[i not in cache for i in indices.tolist()]]

    def _prepare(self, key, indices: np.ndarray) -> None:
        # A few at a time: the decoded frames are gathered (copied) first, 6 MB each at 1080p.
        for a in range(0, len(indices), PREPARE_GROUP):
            group = indices[a : a + PREPARE_GROUP]
            prepared = self.preparers[key].prepare(self._raw(group))
            self._prepared[key].update(zip(group.tolist(), prepared.unbind(0), strict=True))
            self.prepared_count += len(group)

    # --- prepared frames

    def get(self, key, indices: np.ndarray) -> torch.Tensor:
        """Frames at `indices` (any shape, repeats allowed) prepared for input `key`:
        uint8 [*indices.shape, 3, S, S]."""
        flat = np.asarray(indices).reshape(-1)
        cache = self._prepared[key]
        self._prepare(key, np.unique(self._missing(key, flat)))
        self._count()
        frames = torch.stack([cache[i] for i in flat.tolist()])
        return frames.reshape(*np.shape(indices), *frames.shape[1:])

    def release_before(self, index: int) -> None:
        """No clip will use frames before `index` any more: drop them."""
        if index <= self._low:
            return
        self._low = index
        while self._chunks and self._starts[0] + len(self._chunks[0]) <= index:
            self._starts.pop(0)
            self._chunks.pop(0)
        for cache in self._prepared.values():
            for old in [i for i in cache if i < index]:
                del cache[old]

    def _count(self) -> None:
        held = sum(len(chunk) for chunk in self._chunks)
        held += sum(len(cache) for cache in self._prepared.values())
        self.peak_frames = max(self.peak_frames, held)
