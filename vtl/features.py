"""The HDF5 feature file: one writer, one reader, one verifier (layout in docs/DESIGN.md).

Layout (V videos, N clips, S shots, D feature dims, L labels, K splits)::

    /                 attrs: format="vtl-features", version, backbone, family, pretrain, kind,
                      feature_dim, frames_per_clip, clip_fps, input_size, weights (JSON: name,
                      sha256), shot_detector, config (JSON), software_version, failures (JSON),
                      recipe, software (JSON; both absent from files made before 2026-12-05)
    /videos/id        (V,) str        /videos/offset (V+1,) int64: clips of video i are rows
    /videos/n_frames  (V,) int64                      offset[i]:offset[i+1] of /clips/*
    /videos/fps       (V,) float64
    /clips/features   (N, D) float16, chunked
    /clips/frames     (N, 2) int64    first/last source frame of the clip
    /clips/shot       (N,) int32      shot index within its video
    /shots/offset     (V+1,) int64    shots of video i are rows offset[i]:offset[i+1]
    /shots/frames     (S, 2) int64    first/last frame of each shot
    /labels           (V, L) uint8    attr names
    /splits           (V, K) uint8    0 train, 1 val, 2 test

Optional parts (absent from files that do not need them, and from files of earlier versions,
which still read):

    /clips/logits     (N, C) float16  each clip's source-head class logits (`extract run
                      --logits`), attr names: the C class names (ImageNet-1k, Kinetics-400...)
    /videos/concealed (V,) int64      frames of each video that could not be decoded and were
                      concealed by repeating the last good frame (0: a clean decode)
    root attr sample  JSON: which videos a sampled run (`--sample`) extracted and how they were
                      drawn

A shard's part file (`<name>.part-<i>-of-<n>.h5`) also has the root attribute `part` ("i/n") and
`/videos/manifest_index` (V,) int64, the manifest row of each video, which `extract merge` uses
to restore manifest order; a merged file equals a single-process run.

A file is written under a temporary name and renamed when complete, so a file at its final path
is always whole.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np

from vtl import __version__
from vtl.atomic import replacing, temporary_path, write_text
from vtl.errors import FeatureFileError
from vtl.manifest import special_file

FORMAT = "vtl-features"
# Every dataset of the layout above (a part file adds /videos/manifest_index).
DATASETS = tuple(
    "videos/id videos/offset videos/n_frames videos/fps clips/features clips/frames clips/shot "
    "shots/offset shots/frames labels splits".split()
)
VERSION = 1
_CHUNK_ROWS = 1024
# The entries of a file's `cost` that are sums over its videos (a merge adds its parts'), the
# seconds among them first.
COST_SECONDS = ("embed_seconds", "shared_seconds")
COST_TOTALS = (*COST_SECONDS, "videos", "clips")
_STR = h5py.string_dtype()


@dataclass
class FeatureMeta:
    """Root attributes of a feature file: what produced it and how."""

    backbone: str
    family: str
    pretrain: str
    kind: str  # "image" or "video"
    feature_dim: int
    frames_per_clip: int
    clip_fps: float
    input_size: int
    weights: dict  # {"name": ..., "sha256": ...}
    shot_detector: str
    config: dict = field(default_factory=dict)
    software_version: str = __version__
    failures: list = field(default_factory=list)  # [{"video_id", "path", "reason"}]
    # What the features cost to make: params_m, gflops_per_clip (as extracted: an image
    # backbone's FLOPs times the frames it embeds per clip), and the totals over the videos
    # (`COST_TOTALS`): embed_seconds (this backbone's embedding), shared_seconds (the rest of
    # the videos' wall time in the run: decoding, shot detection, preparing frames; shared by
    # the backbones extracted in one run), videos, clips.
    cost: dict = field(default_factory=dict)
    # A sampled run's record (`--sample`: method, seed, size, which videos); {} for a full run.
    sample: dict = field(default_factory=dict)
    # The revision of the code that computed the arrays, "C.B": C of decoding and cutting clips,
    # B of the backbone's preparation and network (`extract.outputs.recipe`); "" in files made
    # before it was recorded. A finished file of another recipe is never taken for a run's.
    recipe: str = ""
    # The versions of the libraries that computed the arrays (torch, timm, PyAV, FFmpeg ...):
    # what a paper's reader needs to reproduce them; recorded, not compared.
    software: dict = field(default_factory=dict)

    _JSON = ("weights", "config", "failures", "cost", "sample", "software")
    # Absent from files of earlier versions of this software.
    _OPTIONAL = ("cost", "sample", "recipe", "software")

    def to_attrs(self) -> dict:
        attrs = asdict(self)
        for key in self._JSON:
            attrs[key] = json.dumps(attrs[key], sort_keys=True)
        return attrs

    @classmethod
    def from_attrs(cls, attrs, where: str) -> FeatureMeta:
        values = {}
        for name in cls.__dataclass_fields__:
            if name not in attrs and name in cls._OPTIONAL:
                continue
            if name not in attrs:
                raise FeatureFileError(f"{where}: root attribute {name!r} is missing")
            value = attrs[name]
            if isinstance(value, bytes):
                value = value.decode()
            if name in cls._JSON:
                try:
                    value = json.loads(value)
                except (TypeError, ValueError):
                    raise FeatureFileError(f"{where}: attribute {name!r} is not JSON") from None
            elif isinstance(value, np.generic):
                value = value.item()
            values[name] = value
        return cls(**values)


@dataclass
class VideoFeatures:
    """Everything the file holds about one video."""

    video_id: str
    n_frames: int
    fps: float
    features: np.ndarray  # (C, D)
    frames: np.ndarray  # (C, 2) first/last source frame per clip
    shot: np.ndarray  # (C,) shot index per clip
    shots: np.ndarray  # (S, 2) first/last frame per shot
    labels: np.ndarray  # (L,) uint8
    splits: np.ndarray  # (K,) uint8
    manifest_index: int = -1  # row in the manifest (kept in part files only)
    logits: np.ndarray | None = None  # (C, classes) source-head logits, with --logits
    concealed: int = 0  # frames concealed while decoding (repeats of the last good frame)


def consecutive_clips(
    video_id: str,
    features: np.ndarray,
    labels: np.ndarray,
    splits: np.ndarray,
    frames_per_clip: int,
    fps: float,
) -> VideoFeatures:
    """A video whose clips come without frame positions (imported or synthetic features), laid
    out as consecutive clips of `frames_per_clip` frames at `fps` forming a single shot: clip i
    covers frames [i * frames_per_clip, (i + 1) * frames_per_clip - 1]."""
    n = len(features)
    starts = np.arange(n, dtype=np.int64) * frames_per_clip
    n_frames = n * frames_per_clip
    return VideoFeatures(
        video_id=video_id,
        n_frames=n_frames,
        fps=fps,
        features=features,
        frames=np.stack([starts, starts + frames_per_clip - 1], axis=1),
        shot=np.zeros(n, np.int32),
        shots=np.array([[0, n_frames - 1]], np.int64),
        labels=labels,
        splits=splits,
    )


class FeatureWriter:
    """Writes a feature file video by video; the file appears at `path` only on `close()`.

    Use as a context manager: an exception discards the temporary file, so nothing partial is
    ever left at the final path.
    """

    def __init__(
        self,
        path: str | Path,
        meta: FeatureMeta,
        label_names: list[str],
        n_splits: int,
        part: tuple[int, int] | None = None,
        logit_names: list[str] | None = None,
    ):
        self.path = Path(path)
        self.part = part
        self.logit_names = None if logit_names is None else list(logit_names)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.meta = meta
        self.label_names = list(label_names)
        if len(set(self.label_names)) < len(self.label_names):
            raise ValueError(f"{self.path}: label names repeat: {self.label_names}")
        self.n_splits = n_splits
        self._tmp = temporary_path(self.path)
        self._h5 = h5py.File(self._tmp, "w")
        self._features = self._float16_rows("clips/features", meta.feature_dim)
        self._clip_frames = self._growable("clips/frames", (0, 2), np.int64)
        self._clip_shot = self._growable("clips/shot", (0,), np.int32)
        self._shot_frames = self._growable("shots/frames", (0, 2), np.int64)
        self._logits = None
        if self.logit_names is not None:
            self._logits = self._float16_rows("clips/logits", len(self.logit_names))
        self._concealed: list[int] = []
        self._ids: list[str] = []
        self._n_frames: list[int] = []
        self._fps: list[float] = []
        self._clip_counts: list[int] = []
        self._shot_counts: list[int] = []
        self._labels: list[np.ndarray] = []
        self._splits: list[np.ndarray] = []
        self._manifest_index: list[int] = []

    def _float16_rows(self, name: str, width: int) -> h5py.Dataset:
        """A growable (clips, width) float16 dataset, chunked by rows of clips."""
        return self._h5.create_dataset(
            name,
            (0, width),
            np.float16,
            maxshape=(None, width),
            chunks=(_CHUNK_ROWS, width),
            fletcher32=True,  # a checksum per chunk: corrupted bytes fail the read
        )

    def _growable(self, name: str, shape: tuple, dtype) -> h5py.Dataset:
        chunks = (_CHUNK_ROWS * 4, *shape[1:])
        return self._h5.create_dataset(
            name, shape, dtype, maxshape=(None, *shape[1:]), chunks=chunks, fletcher32=True
        )

    def add(self, video: VideoFeatures) -> None:
        """Append one video (its clips and shots) after the ones already added."""
        n = len(video.features)
        if video.features.ndim != 2 or video.features.shape[1] != self.meta.feature_dim:
            raise ValueError(
                f"{video.video_id}: features {video.features.shape}, "
                f"expected (clips, {self.meta.feature_dim})"
            )
        if len(video.frames) != n or len(video.shot) != n:
            raise ValueError(f"{video.video_id}: clips, frames and shot disagree in length")
        for name in CODES:  # everything is checked before anything is appended
            problem = code_problem(name, np.asarray(getattr(video, name))[None], [video.video_id])
            if problem:
                raise ValueError(problem)
        features = _stored(video.video_id, "features", video.features)
        if self._logits is not None:
            logits = video.logits
            if logits is None or np.shape(logits) != (n, len(self.logit_names)):
                shape = None if logits is None else np.shape(logits)
                raise ValueError(
                    f"{video.video_id}: logits {shape}, expected ({n}, {len(self.logit_names)})"
                )
            _append(self._logits, _stored(video.video_id, "logits", logits))
        _append(self._features, features)
        _append(self._clip_frames, np.asarray(video.frames, np.int64).reshape(-1, 2))
        _append(self._clip_shot, np.asarray(video.shot, np.int32))
        _append(self._shot_frames, np.asarray(video.shots, np.int64).reshape(-1, 2))
        self._ids.append(video.video_id)
        self._n_frames.append(int(video.n_frames))
        self._fps.append(float(video.fps))
        self._clip_counts.append(n)
        self._shot_counts.append(len(video.shots))
        self._labels.append(np.asarray(video.labels, np.uint8))
        self._splits.append(np.asarray(video.splits, np.uint8))
        self._manifest_index.append(int(video.manifest_index))
        self._concealed.append(int(video.concealed))

    def close(self) -> Path:
        """Write the index datasets and attributes, then move the file to its final path.

        Raises:
            OSError: naming the final path, when the disk is full (or a file-size limit is
                reached); the temporary file is removed and nothing is left at the path.
        """
        try:
            self._finish()
        except Exception as error:
            self.discard()
            no_room = _no_room(error, self.path)
            if no_room is None:
                raise
            raise no_room from None
        os.replace(self._tmp, self.path)
        return self.path

    def _finish(self) -> None:
        h5 = self._h5
        # (HDF5 filters take no variable-length strings: the ids go unchecksummed)
        h5.create_dataset("videos/id", data=np.array(self._ids, dtype=object), dtype=_STR)
        _index_dataset(h5, "videos/offset", _offsets(self._clip_counts))
        _index_dataset(h5, "videos/n_frames", np.array(self._n_frames, np.int64))
        _index_dataset(h5, "videos/fps", np.array(self._fps, np.float64))
        _index_dataset(h5, "shots/offset", _offsets(self._shot_counts))
        n_labels, n_splits = len(self.label_names), self.n_splits
        labels = np.array(self._labels, np.uint8).reshape(-1, n_labels)
        splits = np.array(self._splits, np.uint8).reshape(-1, n_splits)
        _write_truth(h5, self.label_names, labels, splits)
        if any(self._concealed):
            _index_dataset(h5, "videos/concealed", np.array(self._concealed, np.int64))
        if self._logits is not None:
            self._logits.attrs["names"] = np.array(self.logit_names, dtype=object)
        if self.part is not None:
            _index_dataset(h5, "videos/manifest_index", np.array(self._manifest_index))
            h5.attrs["part"] = f"{self.part[0]}/{self.part[1]}"
        h5.attrs["format"] = FORMAT
        h5.attrs["version"] = VERSION
        for key, value in self.meta.to_attrs().items():
            h5.attrs[key] = value
        h5.flush()
        os.fsync(h5.id.get_vfd_handle())
        h5.close()

    def discard(self) -> None:
        """Drop the temporary file (an interrupted or failed write)."""
        if self._h5.id.valid:
            # HDF5 flushes cached chunks on close; after a failed write (a full disk) that fails
            # again and leaves the file open, and the library crashes at exit. The file is being
            # deleted, so its descriptor is pointed at /dev/null first: the flush goes nowhere.
            null = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(null, self._h5.id.get_vfd_handle())
            finally:
                os.close(null)
            try:
                self._h5.close()
            except (RuntimeError, OSError):  # HDF5 cannot resize /dev/null: the file is gone
                pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> FeatureWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
            no_room = _no_room(exc, self.path) if isinstance(exc, Exception) else None
            if no_room is not None:
                raise no_room from None


_NO_ROOM = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def _index_dataset(h5: h5py.File, name: str, data: np.ndarray) -> None:
    """A small dataset written whole, checksummed like the clips (a flipped bit in /labels or
    /splits would otherwise change a label or move a video between splits unseen); a checksum
    needs chunks, which an empty dataset cannot have."""
    checked = {"chunks": True, "fletcher32": True} if data.size else {}
    h5.create_dataset(name, data=data, **checked)


def _write_truth(h5: h5py.File, label_names: list[str], labels: np.ndarray, splits: np.ndarray):
    """/labels with its names and /splits (rows in the file's video order)."""
    _index_dataset(h5, "labels", np.asarray(labels, np.uint8))
    h5["labels"].attrs["names"] = np.array(list(label_names), dtype=object)
    _index_dataset(h5, "splits", np.asarray(splits, np.uint8))


def rewrite_truth(
    path: str | Path, label_names: list[str], labels: np.ndarray, splits: np.ndarray
) -> None:
    """Replace a finished file's labels (and their names) and splits, rows in the file's video
    order: the manifest's labels corrected after the extraction, which the features do not
    depend on. A copy is changed and renamed over the file, so a killed rewrite leaves it as it
    was."""
    path = Path(path)
    with replacing(path) as tmp:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+") as h5:
            del h5["labels"], h5["splits"]
            _write_truth(h5, label_names, labels, splits)
            h5.flush()
            os.fsync(h5.id.get_vfd_handle())


def _no_room(error: BaseException, path: Path) -> OSError | None:
    """An OSError(errno, strerror, path) when `error` is a write refused for lack of room; h5py
    reports those as OSError or RuntimeError with HDF5's 'errno = N' in the message."""
    number = getattr(error, "errno", None)
    if number not in _NO_ROOM:
        found = re.search(r"errno = (\d+)", str(error))
        number = int(found.group(1)) if found else None
    if number not in _NO_ROOM:
        return None
    return OSError(number, os.strerror(number), str(path))


FAILURE_COLUMNS = ("video_id", "path", "reason", "status")


def write_failures(
    feature_path: str | Path, failures: list[dict], warnings: list[dict] = ()
) -> Path | None:
    """Write `<stem>.failures.csv` next to a feature file: one row per unusable video (status
    "failed") and per video extracted with a warning (status "warning": frames concealed while
    decoding), each with video_id, path and reason; or remove a stale file when there are none.
    """
    path = Path(feature_path).with_suffix(".failures.csv")
    rows = [{**f, "status": "failed"} for f in failures]
    rows += [{**w, "status": "warning"} for w in warnings]
    if not rows:
        path.unlink(missing_ok=True)
        return None
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FAILURE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in FAILURE_COLUMNS})
    return write_text(path, buffer.getvalue())


# The codes /labels and /splits hold (another would count a video as a positive, or leave it
# out of every subset of a split), and how a message names them.
CODES = {
    "labels": (1, "0 (negative) or 1 (positive)"),
    "splits": (2, "0 (train), 1 (val) or 2 (test)"),
}


def code_problem(name: str, values: np.ndarray, video_ids: Sequence[str]) -> str | None:
    """What is wrong with the codes of /labels or /splits (`name`; rows: `video_ids`), or None."""
    top, allowed = CODES[name]
    values = np.asarray(values)
    bad = np.argwhere((values < 0) | (values > top)) if values.ndim == 2 else []
    if not len(bad):
        return None
    row, column = bad[0]
    video = video_ids[row] if row < len(video_ids) else row
    return (
        f"/{name} holds {values[row, column]} for video {video!r} (column {column}); its values "
        f"must be {allowed}"
    )


def _vector(values: np.ndarray) -> str:
    """A feature vector in a few words: "all 0", "all 1.5" or its first values."""
    if (values == values[0]).all():
        return f"all {float(values[0]):g}"
    return "[" + ", ".join(f"{float(v):g}" for v in values[:3]) + ", ...]"


def _stored(video_id: str, what: str, values) -> np.ndarray:
    """`values` as stored (float16); ValueError when some are NaN, infinite or beyond float16's
    range: readers refuse such a file, so it is never written."""
    with np.errstate(over="ignore"):
        stored = np.asarray(values).astype(np.float16)
    if not np.isfinite(stored).all():
        raise ValueError(
            f"{video_id}: {what} hold NaN, infinite values or values beyond float16's range "
            f"(±{np.finfo(np.float16).max:g}), in which they are stored"
        )
    return stored


def _append(dataset: h5py.Dataset, rows: np.ndarray) -> None:
    start = dataset.shape[0]
    dataset.resize(start + len(rows), axis=0)
    dataset[start:] = rows


def _offsets(counts: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


# The HDF5 library loops forever or crashes on some damaged metadata: a zeroed global heap (where
# the variable-length strings live: the attributes, the video ids) sends its reader
# (H5HG__cache_heap_deserialize, HDF5 2.0) round one object forever, holding the GIL. So a file's
# metadata is first read in a child process, once per file (path, size, time) and process: every
# attribute, every variable-length dataset and every chunk index; a child that does not finish
# in METADATA_SECONDS, or dies of a signal, makes the file one "damaged" line. (A child that
# fails otherwise has met an error the reader below meets too, and reports as usual.)
METADATA_SECONDS = 120.0
_METADATA_WALK = """
import sys, h5py
def quietly(read):  # an error is no hang: walk on, so that no later part goes unread
    try:
        read()
    except Exception:
        pass
def walk(name, obj):
    for key in list(obj.attrs):
        quietly(lambda: obj.attrs[key])
    if isinstance(obj, h5py.Dataset):
        if obj.dtype.kind == "O":
            quietly(lambda: obj[()])
        if obj.chunks:
            quietly(lambda: obj.id.chunk_iter(lambda info: None))
with h5py.File(sys.argv[1], "r") as h5:
    quietly(lambda: walk("/", h5))
    quietly(lambda: h5.visititems(lambda name, obj: quietly(lambda: walk(name, obj))))
"""
_METADATA_READ: set[tuple[str, int, int]] = set()


def _check_metadata_isolated(path: Path) -> None:
    """Raise FeatureFileError when reading `path`'s HDF5 metadata hangs or crashes a child."""
    status = path.stat()
    key = (str(path.resolve()), status.st_size, status.st_mtime_ns)
    if key in _METADATA_READ:
        return
    try:
        child = subprocess.run(
            [sys.executable, "-c", _METADATA_WALK, str(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=METADATA_SECONDS,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )
    except OSError:  # no interpreter to start (an embedded Python): read it here, unchecked
        return
    except subprocess.TimeoutExpired:
        raise FeatureFileError(
            f"{path}: damaged feature file: the HDF5 library hangs reading its metadata "
            f"(no answer in {METADATA_SECONDS:.0f} s); re-extract the file"
        ) from None
    if child.returncode < 0:
        raise FeatureFileError(
            f"{path}: damaged feature file: the HDF5 library crashed reading its metadata "
            f"(killed by {signal.Signals(-child.returncode).name}); re-extract the file"
        )
    _METADATA_READ.add(key)


# What h5py raises on a damaged file: OSError for most HDF5 errors (a failed checksum, an
# unreadable chunk), RuntimeError for some in its metadata (a B-tree or heap signature), KeyError
# for a link it cannot follow, ValueError/TypeError for values of the wrong kind.
H5_ERRORS = (KeyError, OSError, RuntimeError, ValueError, TypeError)


class FeatureFile:
    """Read access to a feature file. Small index arrays are loaded at open; features on demand."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        kind = special_file(self.path)
        if kind is not None:
            raise FeatureFileError(f"{self.path}: is {kind}, not a feature file (.h5)")
        if not self.path.is_file():
            raise FeatureFileError(f"{self.path}: feature file not found")
        _check_metadata_isolated(self.path)
        try:
            self._h5 = h5py.File(self.path, "r")
        except (OSError, RuntimeError) as error:
            raise FeatureFileError(
                f"{self.path}: not a readable HDF5 file ({_short(error)}); "
                "re-run extraction to rewrite it"
            ) from None
        try:
            self._load_index()
        except FeatureFileError:
            self._h5.close()
            raise
        except H5_ERRORS as error:
            self._h5.close()
            raise FeatureFileError(
                f"{self.path}: damaged feature file ({_short(error)}); re-run extraction"
            ) from None

    def _load_index(self) -> None:
        h5, where = self._h5, str(self.path)
        fmt = h5.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != FORMAT:
            raise FeatureFileError(
                f"{where}: not a vtl feature file (format attribute {fmt!r}); "
                "make one with `extract run`"
            )
        version = int(h5.attrs.get("version", -1))
        if version != VERSION:
            raise FeatureFileError(
                f"{where}: feature format version {version}, this software reads {VERSION}; "
                "re-extract or install the matching version"
            )
        for name in DATASETS:
            if name not in h5:
                raise FeatureFileError(f"{where}: dataset /{name} is missing")
        self.meta = FeatureMeta.from_attrs(h5.attrs, where)

        def read(name: str) -> np.ndarray:  # a failed checksum names the dataset
            return CheckedDataset(h5[name], self.path)[:]

        self.video_ids = [v.decode() if isinstance(v, bytes) else v for v in read("videos/id")]
        self.offsets = read("videos/offset")
        self.n_frames = read("videos/n_frames")
        self.fps = read("videos/fps")
        self.shot_offsets = read("shots/offset")
        self.labels = read("labels")
        names = h5["labels"].attrs.get("names", [])
        self.label_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        twice = sorted({n for n in self.label_names if self.label_names.count(n) > 1})
        if twice:  # each label's AP is reported under its name: one would hide the other
            raise FeatureFileError(f"{where}: /labels names the label {twice[0]!r} twice")
        self.splits = read("splits")
        for name in CODES:
            problem = code_problem(name, getattr(self, name), self.video_ids)
            if problem:
                raise FeatureFileError(f"{where}: {problem}")
        part = h5.attrs.get("part")
        self.part = part.decode() if isinstance(part, bytes) else part
        self.manifest_index = (
            read("videos/manifest_index") if "videos/manifest_index" in h5 else None
        )
        self.concealed = (
            read("videos/concealed")
            if "videos/concealed" in h5
            else np.zeros(len(self.video_ids), np.int64)
        )
        self.logit_names = None
        if "clips/logits" in h5:
            names = h5["clips/logits"].attrs.get("names", [])
            self.logit_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    # --- sizes
    @property
    def n_videos(self) -> int:
        return len(self.video_ids)

    @property
    def n_clips(self) -> int:
        return int(self.dataset("clips/features").shape[0])

    @property
    def feature_dim(self) -> int:
        return int(self.dataset("clips/features").shape[1])

    def clip_counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    # --- data
    def read_features(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Clip features rows [start, stop) as float32."""
        return self.dataset("clips/features")[start:stop].astype(np.float32)

    def video_features(self, i: int) -> np.ndarray:
        """The (clips, D) float32 features of video i."""
        return self.read_features(int(self.offsets[i]), int(self.offsets[i + 1]))

    @property
    def has_logits(self) -> bool:
        """True when the file stores each clip's source-head logits (`--logits`)."""
        return self.logit_names is not None

    def read_logits(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Clip logits rows [start, stop) as float32.

        Raises:
            FeatureFileError: the file has no logits (extract it with `--logits`).
        """
        if not self.has_logits:
            raise FeatureFileError(
                f"{self.path}: no class logits in this file; re-extract with --logits"
            )
        return self.dataset("clips/logits")[start:stop].astype(np.float32)

    def video_logits(self, i: int) -> np.ndarray:
        """The (clips, classes) float32 source logits of video i."""
        return self.read_logits(int(self.offsets[i]), int(self.offsets[i + 1]))

    def video(self, i: int) -> VideoFeatures:
        """Everything stored about video i (features kept in float16, as stored)."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        s, t = int(self.shot_offsets[i]), int(self.shot_offsets[i + 1])
        data = self.dataset  # reads that fail on damaged data
        return VideoFeatures(
            video_id=self.video_ids[i],
            n_frames=int(self.n_frames[i]),
            fps=float(self.fps[i]),
            features=data("clips/features")[a:b],
            frames=data("clips/frames")[a:b],
            shot=data("clips/shot")[a:b],
            shots=data("shots/frames")[s:t],
            labels=self.labels[i],
            splits=self.splits[i],
            manifest_index=-1 if self.manifest_index is None else int(self.manifest_index[i]),
            logits=data("clips/logits")[a:b] if self.has_logits else None,
            concealed=int(self.concealed[i]),
        )

    def dataset(self, name: str) -> CheckedDataset:
        """A dataset of the file whose reads raise FeatureFileError on damaged data."""
        try:
            dataset = self._h5[name]
        except H5_ERRORS as error:  # its header damaged (the file opened)
            raise FeatureFileError(
                f"{self.path}: damaged feature file, /{name} unreadable ({_short(error)}); "
                "re-extract the file"
            ) from None
        return CheckedDataset(dataset, self.path)

    def check_finite(
        self,
        features: np.ndarray | None = None,
        start: int = 0,
        chunk_rows: int = 65536,
        what: str = "features",
    ) -> None:
        """Raise FeatureFileError naming the first video with a NaN or infinite feature value.

        `features`: rows `start`, `start + 1`, ... of /clips/features (or of /clips/logits,
        `what="logits"`) already in memory (the whole file by default); without them the
        file's rows are read `chunk_rows` at a time."""
        if features is None:
            data = self.dataset(f"clips/{what}")
            for a in range(0, self.n_clips, chunk_rows):
                self.check_finite(data[a : a + chunk_rows], start=a, what=what)
            return
        bad = np.flatnonzero(~np.isfinite(features).all(axis=1))
        if bad.size:
            row = start + int(bad[0])
            video = int(np.searchsorted(self.offsets, row, side="right")) - 1
            kind = "feature" if what == "features" else "logit"
            raise FeatureFileError(
                f"{self.path}: non-finite {kind} values (NaN or infinity) in video "
                f"{self.video_ids[video]!r} (clip row {row}); re-extract the file ({what} "
                "written by this software are checked to be finite)"
            )

    def check_usable(self, chunk_rows: int = 65536) -> None:
        """`check_finite` over the whole file, and FeatureFileError when every clip holds the
        same vector (an export or a backbone that wrote constants): a probe has nothing to
        learn, and its tied scores rate above chance under the trapezoidal PR-AUC."""
        if not self.n_videos:
            raise FeatureFileError(f"{self.path}: holds no videos (every one failed?)")
        data = self.dataset("clips/features")
        first, varies = None, self.n_clips < 2
        for a in range(0, self.n_clips, chunk_rows):
            chunk = data[a : a + chunk_rows]
            self.check_finite(chunk, start=a)
            first = chunk[0] if first is None else first
            varies = varies or bool((chunk != first).any())
        if not varies:
            raise FeatureFileError(
                f"{self.path}: every clip has the same features ({_vector(first)}): nothing to "
                "probe; re-extract the file"
            )

    def video_mean(self, i: int, what: str = "features") -> np.ndarray:
        """Video i's clip features (or source logits, `what="logits"`) averaged, float64: what
        the quick probes and the training-free scores read. FeatureFileError on a NaN or an
        infinity, which would otherwise surface later as a failed fit."""
        rows = (self.video_logits if what == "logits" else self.video_features)(i)
        self.check_finite(rows, start=int(self.offsets[i]), what=what)
        return rows.mean(axis=0, dtype=np.float64)

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> FeatureFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CheckedDataset:
    """An h5py dataset whose failed reads (a chunk checksum that does not match: corrupted
    bytes; or an unreadable chunk: a cut file) raise FeatureFileError naming file and dataset.
    Everything else is the h5py dataset's own."""

    def __init__(self, dataset: h5py.Dataset, path: Path):
        self._dataset = dataset
        self._path = path

    def __getitem__(self, key) -> np.ndarray:
        try:
            return self._dataset[key]
        except (OSError, RuntimeError) as error:
            raise FeatureFileError(
                f"{self._path}: corrupted data in {self._dataset.name} ({_short(error)}); "
                "re-extract the file"
            ) from None

    def __len__(self) -> int:
        return len(self._dataset)

    def __getattr__(self, name: str):
        return getattr(self._dataset, name)


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:160] if str(error) else type(error).__name__


def verify_features(path: str | Path, chunk_rows: int = 65536) -> dict:
    """Check every invariant of the layout; return a short summary.

    Raises:
        FeatureFileError: naming the file and the first broken invariant.
    """
    with FeatureFile(path) as f:
        where = str(f.path)
        m = f.meta

        def fail(message: str):
            raise FeatureFileError(f"{where}: {message}; re-run extraction to rewrite the file")

        try:
            _check_layout(f, m, fail, chunk_rows)
        except H5_ERRORS as error:
            fail(f"unreadable data ({_short(error)})")
        return {
            "path": where,
            "videos": f.n_videos,
            "clips": f.n_clips,
            "shots": int(f.shot_offsets[-1]),
            "feature_dim": f.feature_dim,
            "labels": len(f.label_names),
            "splits": int(f.splits.shape[1]),
            "backbone": m.backbone,
            "pretrain": m.pretrain,
            "kind": m.kind,
            "weights": f"{m.weights.get('name')} sha256:{str(m.weights.get('sha256'))[:12]}",
            "failures": len(m.failures),
            "logits": len(f.logit_names) if f.has_logits else 0,
            "concealed": int(f.concealed.sum()),
            "sample": len(m.sample.get("video_ids", [])) if m.sample else None,
        }


def _check_layout(f: FeatureFile, m: FeatureMeta, fail, chunk_rows: int) -> None:
    v, n, d = f.n_videos, f.n_clips, f.feature_dim
    if m.kind not in ("image", "video"):
        fail(f"kind is {m.kind!r}, expected 'image' or 'video'")
    if m.feature_dim != d:
        fail(f"feature_dim attribute {m.feature_dim} but /clips/features has {d} columns")
    if not isinstance(m.weights, dict) or not {"name", "sha256"} <= set(m.weights):
        fail("weights attribute lacks name and sha256")
    if len(set(f.video_ids)) != v:
        fail("duplicate video ids in /videos/id")
    for name, arr in (("videos/n_frames", f.n_frames), ("videos/fps", f.fps)):
        if arr.shape != (v,):
            fail(f"/{name} has shape {arr.shape}, expected ({v},)")
    for name, offsets, total in (
        ("videos/offset", f.offsets, n),
        ("shots/offset", f.shot_offsets, f.dataset("shots/frames").shape[0]),
    ):
        if offsets.shape != (v + 1,) or offsets[0] != 0 or offsets[-1] != total:
            fail(f"/{name} must have {v + 1} entries from 0 to {total}")
        if np.any(np.diff(offsets) < 0):
            fail(f"/{name} is not non-decreasing")
    if np.any(np.diff(f.offsets) == 0):
        fail("a video has no clips")
    frames = f.dataset("clips/frames")[:]
    shot = f.dataset("clips/shot")[:]
    shots = f.dataset("shots/frames")[:]
    if frames.shape != (n, 2) or shot.shape != (n,):
        fail("/clips/frames or /clips/shot does not match /clips/features in length")
    video_of_clip = np.repeat(np.arange(v), np.diff(f.offsets))
    video_of_shot = np.repeat(np.arange(v), np.diff(f.shot_offsets))
    if np.any(frames[:, 0] > frames[:, 1]) or np.any(frames[:, 0] < 0):
        fail("a clip's first frame is after its last frame or negative")
    if np.any(frames[:, 1] >= f.n_frames[video_of_clip]):
        fail("a clip refers to a frame past its video's end")
    if np.any(shots[:, 0] > shots[:, 1]) or np.any(shots[:, 1] >= f.n_frames[video_of_shot]):
        fail("a shot's frames are out of order or past its video's end")
    n_shots = np.diff(f.shot_offsets)[video_of_clip]
    if np.any(shot < 0) or np.any(shot >= n_shots):
        fail("a clip's shot index is outside its video's shots")
    global_shot = f.shot_offsets[video_of_clip] + shot
    if n and (
        np.any(frames[:, 0] < shots[global_shot, 0]) or np.any(frames[:, 1] > shots[global_shot, 1])
    ):
        fail("a clip's frames fall outside its shot")
    # Their values are checked on opening (FeatureFile._load_index).
    if f.labels.shape != (v, len(f.label_names)):
        fail(f"/labels must be ({v}, {len(f.label_names)}): one name per column")
    if f.splits.ndim != 2 or f.splits.shape[0] != v:
        fail(f"/splits must be ({v}, K)")
    features = f.dataset("clips/features")
    if features.dtype != np.float16:
        fail(f"/clips/features is {features.dtype}, expected float16")
    if f.concealed.shape != (v,) or np.any(f.concealed < 0) or np.any(f.concealed > f.n_frames):
        fail(f"/videos/concealed must be ({v},) counts between 0 and each video's frames")
    f.check_finite(chunk_rows=chunk_rows)
    if f.has_logits:
        logits = f.dataset("clips/logits")
        if logits.shape != (n, len(f.logit_names)) or not f.logit_names:
            fail(f"/clips/logits must be ({n}, classes) with one name per class in attr names")
        for a in range(0, n, chunk_rows):
            if not np.isfinite(logits[a : a + chunk_rows]).all():
                fail("/clips/logits holds NaN or infinite values")
