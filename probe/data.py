"""Feature files as probe data: open and cross-check them, pick a split, serve clip windows.

A video's clips are a variable-length sequence. Training takes one random run of `window`
consecutive clips per video; evaluation cuts each video into consecutive non-overlapping windows,
the last one zero-padded. Both are described by three integer arrays (video, first clip, length)
and served by a `ClipStore` as one (windows, width, features) tensor with a validity mask:

- `MemoryStore` holds a whole file's clip features in one float16 tensor, so a batch is a single
  gather; it is used when the file fits `memory_budget_gb`.
- `StreamingStore` reads a batch's windows from the file through the shared reader, in chunks of
  consecutive rows (windows that lie close together in the file share one read), so memory
  follows the batch and the chunk size, not the file. Both return bit-identical batches
  (float16 widened to float32).

Everything reads through `vtl.features.FeatureFile`, the one reader of the format.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vtl.errors import FeatureFileError, UserError
from vtl.features import FeatureFile
from vtl.manifest import SPLIT_NAMES, split_problem, split_subsets

log = logging.getLogger(__name__)

SUBSETS = {name: code for code, name in enumerate(SPLIT_NAMES)}
_READ_ROWS = 65536  # rows per read when loading a file into memory
# Streamed reads: at most 8192 rows (12 MiB of 768-d float16, ~80 Trailers12k videos) at once,
# merging windows at most 1024 rows apart (one HDF5 chunk of the writer). Each HDF5 read has a
# fixed cost, so evaluation's consecutive windows are read many at a time; scattered training
# windows are read one by one, since reading the rows between them costs more than it saves.
STREAM_CHUNK_ROWS = 8192
STREAM_MAX_GAP = 1024


@dataclass
class ProbeData:
    """One or more feature files that agree, aligned on the first file's video order.

    `rows[j][i]` is the index in file j of aligned video i.
    """

    files: list[FeatureFile]
    video_ids: list[str]
    labels: np.ndarray  # (V, L) uint8
    label_names: list[str]
    splits: np.ndarray  # (V, K) uint8
    clip_counts: list[np.ndarray]  # per file, (V,) aligned
    rows: list[np.ndarray]

    @property
    def n_splits(self) -> int:
        return int(self.splits.shape[1])

    def subset(self, split: int, name: str) -> np.ndarray:
        """Aligned indices of the videos in subset `name` (train, val, test) of split `split`."""
        return np.flatnonzero(self.splits[:, split] == SUBSETS[name])

    def close(self) -> None:
        for f in self.files:
            f.close()


def open_probe_data(paths: list[Path], exclude: Sequence[str] = ()) -> ProbeData:
    """Open feature files and check they describe the same videos, labels and splits.

    `exclude`: video ids to leave out (those some file of a report lacks,
    `probe.catalogue.videos_left_out`); the files must agree on every other video.

    Raises:
        FeatureFileError: a file that is not a vtl feature file, or two files that disagree
            (the message names both files and what differs).
    """
    if not paths:
        raise UserError("no feature file given; pass --features FILE.h5")
    seen = set()
    for path in paths:  # a fusion of a file with itself is the same features counted twice
        resolved = Path(path).resolve()
        if resolved in seen:
            raise UserError(f"{path}: given twice to --features; give each file once")
        seen.add(resolved)
    files: list[FeatureFile] = []
    try:
        for path in paths:
            files.append(FeatureFile(path))
        for f in files:
            _check_file(f)
        first = files[0]
        left_out = set(exclude)
        kept = np.array([i for i, v in enumerate(first.video_ids) if v not in left_out], np.int64)
        if not kept.size:
            raise FeatureFileError(f"{first.path}: no video left once {len(left_out)} are left out")
        rows = [kept]
        for other in files[1:]:
            rows.append(_align(first, kept, other, left_out))
        counts = [f.clip_counts()[r] for f, r in zip(files, rows, strict=True)]
    except BaseException:
        for f in files:
            f.close()
        raise
    return ProbeData(
        files=files,
        video_ids=[first.video_ids[i] for i in kept],
        labels=np.asarray(first.labels[kept], np.uint8),
        label_names=list(first.label_names),
        splits=np.asarray(first.splits[kept], np.uint8),
        clip_counts=counts,
        rows=rows,
    )


def _check_file(f: FeatureFile) -> None:
    v = f.n_videos
    if v == 0:
        raise FeatureFileError(f"{f.path}: holds no videos")
    if len(f.offsets) != v + 1 or f.offsets[0] != 0 or f.offsets[-1] != f.n_clips:
        raise FeatureFileError(f"{f.path}: /videos/offset does not index /clips/features")
    empty = np.flatnonzero(f.clip_counts() <= 0)
    if empty.size:
        raise FeatureFileError(
            f"{f.path}: video {f.video_ids[empty[0]]!r} has no clips; "
            "check it with `extract verify`"
        )
    if f.labels.ndim != 2 or f.labels.shape != (v, len(f.label_names)):
        raise FeatureFileError(f"{f.path}: /labels does not match its videos and label names")
    if f.splits.ndim != 2 or f.splits.shape[0] != v or f.splits.shape[1] == 0:
        raise FeatureFileError(f"{f.path}: /splits must be (videos, splits) with a split column")


def _align(first: FeatureFile, kept: np.ndarray, other: FeatureFile, left_out: set) -> np.ndarray:
    """Index in `other` of each of `first`'s videos `kept`; raise if anything disagrees (videos
    in `left_out` may be in either file or not)."""
    a, b = first.path, other.path
    if len(set(other.video_ids)) != other.n_videos:
        raise FeatureFileError(f"{b}: duplicate video ids")
    position = {vid: i for i, vid in enumerate(other.video_ids)}
    ids = [first.video_ids[i] for i in kept]
    missing = [vid for vid in ids if vid not in position]
    extra = set(other.video_ids) - set(first.video_ids) - left_out
    if missing or extra:
        example = missing[0] if missing else sorted(extra)[0]
        raise FeatureFileError(
            f"{a} and {b} disagree on videos: {len(missing)} of {a.name}'s videos are missing "
            f"from {b.name} and {len(extra)} are extra (e.g. {example!r}); fusion needs the "
            "same videos: extract both from the same manifest (videos that failed with one "
            "backbone? `probe matrix` compares and fuses the files on the videos both hold)"
        )
    rows = np.array([position[vid] for vid in ids], dtype=np.int64)
    if list(first.label_names) != list(other.label_names):
        raise FeatureFileError(
            f"{a} and {b} disagree on labels: {first.label_names} vs {other.label_names}"
        )
    if first.splits.shape[1] != other.splits.shape[1]:
        raise FeatureFileError(
            f"{a} and {b} disagree on splits: {first.splits.shape[1]} vs {other.splits.shape[1]}"
        )
    for what in ("labels", "splits"):
        mine = getattr(first, what)[kept]
        bad = np.flatnonzero((mine != getattr(other, what)[rows]).any(axis=1))
        if bad.size:
            raise FeatureFileError(
                f"{a} and {b} disagree on the {what} of video {ids[bad[0]]!r} "
                f"(and {bad.size - 1} more)"
            )
    return rows


def check_same_clips(data: ProbeData) -> None:
    """Fusion compares windows clip by clip: every file must cut each video into as many clips.

    Raises:
        FeatureFileError: naming both files and the first video whose clip counts differ.
    """
    for j in range(1, len(data.files)):
        bad = np.flatnonzero(data.clip_counts[0] != data.clip_counts[j])
        if bad.size:
            i = bad[0]
            raise FeatureFileError(
                f"{data.files[0].path} and {data.files[j].path} disagree on clips: video "
                f"{data.video_ids[i]!r} has {data.clip_counts[0][i]} clips in one and "
                f"{data.clip_counts[j][i]} in the other ({bad.size} videos differ); fusion needs "
                "the same clips, so extract both backbones in one run"
            )


def split_indices(data: ProbeData, split: int) -> dict[str, np.ndarray]:
    """Train, val and test video indices of one split, checked for use.

    Raises:
        UserError: a split the files lack, a subset with no videos, or a label with no positive
            training video.
    """
    where = ", ".join(str(f.path) for f in data.files)
    if not 0 <= split < data.n_splits:
        raise UserError(
            f"{where}: split {split} does not exist (the file has splits 0..{data.n_splits - 1})"
        )
    problem = split_problem(data.labels, data.splits, split, data.label_names)
    if problem is not None:
        raise UserError(
            f"{where}: split {split} has {problem}; every split needs train, val and test videos "
            "and a positive training video of every label (fix the split column of the manifest "
            "and re-extract, or drop the label)"
        )
    subsets = split_subsets(data.splits, split)
    for name in ("val", "test"):
        absent = np.flatnonzero(data.labels[subsets[name]].sum(axis=0) == 0)
        labels = tuple(data.label_names[j] for j in absent)
        # Said once per process and dataset (its split column): a matrix or study meets the same
        # split in every run of every file.
        said = (data.splits[:, split].tobytes(), name, labels)
        if labels and said not in _WARNED:
            _WARNED.add(said)
            log.warning(
                "split %d: labels %s have no positive %s video; their AP counts as 0",
                split,
                list(labels),
                name,
            )
    return subsets


_WARNED: set[tuple] = set()


# --- windows


@dataclass
class Windows:
    """A set of clip windows: window k is clips [start[k], start[k] + length[k]) of video[k]."""

    video: np.ndarray  # (W,) aligned video index
    start: np.ndarray  # (W,) first clip within the video
    length: np.ndarray  # (W,) real clips, 1..width

    def __len__(self) -> int:
        return len(self.video)

    def take(self, index) -> Windows:
        return Windows(self.video[index], self.start[index], self.length[index])


def random_windows(
    videos: np.ndarray, counts: np.ndarray, width: int, generator: torch.Generator
) -> Windows:
    """One random run of `width` consecutive clips per video (all clips of a shorter video).

    The start is uniform over the `count - width + 1` possible runs, as the reference's
    `random.randint(0, count - width)`.
    """
    n_clips = counts[videos]
    choices = np.maximum(n_clips - width + 1, 1)
    u = torch.rand(len(videos), generator=generator, dtype=torch.float64).numpy()
    start = np.minimum((u * choices).astype(np.int64), choices - 1)
    return Windows(videos, start, np.minimum(n_clips, width))


def sliding_windows(videos: np.ndarray, counts: np.ndarray, width: int) -> Windows:
    """Consecutive non-overlapping windows covering each video; the last one may be short."""
    n_windows = -(-counts[videos] // width)
    video = np.repeat(videos, n_windows)
    first = np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
    start = (np.arange(len(video)) - first) * width
    return Windows(video, start, np.minimum(counts[video] - start, width))


# --- clip stores


class ClipStore:
    """Serves windows of one or more aligned files as (B, width, D) float32 plus a (B, width) mask.

    Padding rows are zero and their mask is False.
    """

    feature_dim: int

    def windows(self, w: Windows, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @staticmethod
    def mask(w: Windows, width: int) -> torch.Tensor:
        return torch.from_numpy(np.arange(width)[None, :] < w.length[:, None])


class MemoryStore(ClipStore):
    """A whole file's clip features in one float16 tensor; a batch is one gather."""

    def __init__(self, f: FeatureFile, rows: np.ndarray):
        self.feature_dim = f.feature_dim
        dataset = f.dataset("clips/features")
        flat = np.empty(dataset.shape, np.float16)
        for a in range(0, len(flat), _READ_ROWS):
            flat[a : a + _READ_ROWS] = dataset[a : a + _READ_ROWS]
        f.check_finite(flat)  # a NaN would only surface later, as a NaN loss
        self.flat = torch.from_numpy(flat)
        self.first_row = f.offsets[:-1][rows].astype(np.int64)  # aligned video -> file row

    def windows(self, w, width):
        mask = self.mask(w, width)
        first = self.first_row[w.video] + w.start
        last = first + w.length - 1
        index = np.minimum(first[:, None] + np.arange(width)[None, :], last[:, None])
        x = self.flat[torch.from_numpy(index)].float()
        return x.mul_(mask.unsqueeze(-1)), mask


class StreamingStore(ClipStore):
    """Reads a batch's windows from the file when asked: memory follows the batch.

    Windows are read in file order; windows at most `max_gap` rows apart whose rows fit in one
    span of at most `chunk_rows` rows share a single read (the gaps are read and dropped).
    Evaluation's consecutive windows thus cost one read per chunk instead of one per window,
    while a training batch of scattered videos still reads only its own windows.
    """

    def __init__(
        self,
        f: FeatureFile,
        rows: np.ndarray,
        chunk_rows: int = STREAM_CHUNK_ROWS,
        max_gap: int = STREAM_MAX_GAP,
    ):
        if chunk_rows < 1 or max_gap < 0:
            raise ValueError(f"need chunk_rows >= 1 and max_gap >= 0, got {chunk_rows}, {max_gap}")
        self.file = f
        self.feature_dim = f.feature_dim
        self.dataset = f.dataset("clips/features")
        self.first_row = f.offsets[:-1][rows].astype(np.int64)
        self.chunk_rows, self.max_gap = int(chunk_rows), int(max_gap)

    def windows(self, w, width):
        x = np.zeros((len(w), width, self.feature_dim), np.float32)
        first = self.first_row[w.video] + w.start
        end = first + w.length
        for a, b, members in _read_spans(first, end, self.chunk_rows, self.max_gap):
            chunk = self.dataset[a:b]
            self.file.check_finite(chunk, start=a)  # every row a run reads, as it reads it
            for k in members:
                x[k, : end[k] - first[k]] = chunk[first[k] - a : end[k] - a]
        return torch.from_numpy(x), self.mask(w, width)


def _read_spans(first: np.ndarray, end: np.ndarray, chunk_rows: int, max_gap: int):
    """Group row ranges [first[k], end[k]) into reads of at most `chunk_rows` rows, merging a
    range into the current read when it starts at most `max_gap` rows after the read's end.

    Yields (start, stop, window indices) in file order; a range longer than `chunk_rows` is
    read on its own.
    """
    order = np.argsort(first, kind="stable").tolist()
    first, end = first.tolist(), end.tolist()
    k = 0
    while k < len(order):
        a, b = first[order[k]], end[order[k]]
        j = k + 1
        while (
            j < len(order)
            and first[order[j]] - b <= max_gap
            and max(b, end[order[j]]) - a <= chunk_rows
        ):
            b = max(b, end[order[j]])
            j += 1
        yield a, b, order[k:j]
        k = j


class ConcatStore(ClipStore):
    """Early fusion: the windows of several stores concatenated along the feature axis."""

    def __init__(self, stores: list[ClipStore]):
        self.stores = stores
        self.feature_dim = sum(s.feature_dim for s in stores)

    def windows(self, w, width):
        parts = [s.windows(w, width) for s in self.stores]
        return torch.cat([x for x, _ in parts], dim=-1), parts[0][1]


def open_store(data: ProbeData, file_indices: list[int], memory_budget_gb: float) -> ClipStore:
    """A store over the given files (concatenated if several), in memory when it fits the budget."""
    need = sum(data.files[j].n_clips * data.files[j].feature_dim * 2 for j in file_indices)
    in_memory = need <= memory_budget_gb * 2**30
    if not in_memory:
        log.info(
            "features need %.1f GiB, over the %.1f GiB budget: streaming from the file",
            need / 2**30,
            memory_budget_gb,
        )
    kind = MemoryStore if in_memory else StreamingStore
    stores = [kind(data.files[j], data.rows[j]) for j in file_indices]
    return stores[0] if len(stores) == 1 else ConcatStore(stores)
