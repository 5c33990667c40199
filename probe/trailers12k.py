"""Import the reference work's published Trailers12k features into a vtl feature file.

The reference (DIViTA, Montalvo-Lezama et al. 2023; data on Zenodo, doi 10.5281/zenodo.5716409)
ships clip embeddings as zarr stores, e.g. `trailers_k_r2plus1d_fps24_fpc24.zarr`: a group with
one (clips, D) array per trailer, keyed by the trailer id `mid` (an IMDb id such as `tt0347149`),
float16 or float32. Its `mtgc.csv` holds `mid`, the ten genre columns (0/1) and `split0..split2`
coded 0 train / 1 val / 2 test. `import_trailers12k` turns a store plus that CSV into one HDF5
feature file (docs/DESIGN.md, "Feature file") through `vtl.features.FeatureWriter`, so every
probe, metric and transferability score runs on the reference features unchanged.

The store keeps no frame positions or shots, so the file gets synthetic ones that satisfy the
format's invariants: clips are consecutive 24-frame ranges at 24 fps (clip i covers frames
[24 i, 24 i + 23], n_frames = 24 x clips) forming one shot per trailer. Nothing in the probe
stage reads them; they are recorded as synthetic in the file's `config` attribute.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from vtl.errors import UserError
from vtl.features import FeatureMeta, FeatureWriter, consecutive_clips, write_failures
from vtl.manifest import SPLIT_CODES, read_csv_rows, row_cells
from vtl.progress import progress_bar

log = logging.getLogger(__name__)

FRAMES_PER_CLIP = 24  # the reference's clips: 24 frames sampled at 24 fps ("fps24_fpc24")
CLIP_FPS = 24.0
SHOT_DETECTOR = "reference (imported)"
_SPLIT_COLUMN = re.compile(r"^split(\d+)$")
# zarr 3 raises BaseZarrError subclasses; zarr 2 raised ValueError/KeyError subclasses.
_ZARR_ERRORS = (OSError, ValueError, KeyError, getattr(zarr.errors, "BaseZarrError", ValueError))


@dataclass(frozen=True)
class MtgcTable:
    """The validated MTGC CSV: labels and splits per trailer, in CSV order."""

    path: Path
    mids: list[str]
    label_names: list[str]
    labels: np.ndarray  # (V, L) uint8
    splits: np.ndarray  # (V, K) uint8: 0 train, 1 val, 2 test


def read_mtgc(path: str | Path) -> MtgcTable:
    """Read and validate the reference's `mtgc.csv`.

    Every column other than `mid` and `splitK` is a 0/1 label, in CSV order. Split cells hold
    0 (train), 1 (val) or 2 (test); train/val/test are accepted too.

    Raises:
        UserError: one line naming the file, row (line number) and column of the first problem.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: labels CSV not found; pass the reference's mtgc.csv")
    rows = read_csv_rows(path, UserError)
    if len(rows) < 2:
        raise UserError(f"{path}: needs a header row and at least one trailer row")
    header = [column.strip() for column in rows[0][1]]
    where = f"{path}, row {rows[0][0]}"
    if "mid" not in header:
        raise UserError(f"{where}: missing column 'mid' (the trailer id); header is {header}")
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates or "" in header:
        raise UserError(f"{where}: duplicate or empty column name {(duplicates or [''])[0]!r}")
    split_columns = sorted(
        (c for c in header if _SPLIT_COLUMN.match(c)),
        key=lambda c: int(_SPLIT_COLUMN.match(c).group(1)),
    )
    label_names = [c for c in header if c != "mid" and c not in split_columns]
    if not split_columns:
        raise UserError(f"{where}: no split column; expected split0, split1, split2")
    if not label_names:
        raise UserError(f"{where}: no label column; expected one 0/1 column per genre")
    index = {column: i for i, column in enumerate(header)}

    mids: list[str] = []
    labels = np.zeros((len(rows) - 1, len(label_names)), np.uint8)
    splits = np.zeros((len(rows) - 1, len(split_columns)), np.uint8)
    first_line: dict[str, int] = {}
    for v, (line, row) in enumerate(rows[1:]):
        where = f"{path}, row {line}"
        cells = row_cells(path, line, row, header, "mid", first_line, UserError)
        mids.append(cells[index["mid"]])
        for j, name in enumerate(label_names):
            value = cells[index[name]]
            if value not in ("0", "1"):
                raise UserError(f"{where}, column {name}: label {value!r} is not 0 or 1")
            labels[v, j] = int(value)
        for k, name in enumerate(split_columns):
            value = cells[index[name]]
            if value.lower() not in SPLIT_CODES:
                raise UserError(
                    f"{where}, column {name}: split code {value!r} is not 0 (train), "
                    "1 (val) or 2 (test)"
                )
            splits[v, k] = SPLIT_CODES[value.lower()]
    return MtgcTable(path, mids, label_names, labels, splits)


def open_zarr_group(path: str | Path):
    """Open a zarr store (a directory, zarr v2 or v3 format) read-only as a group.

    Raises:
        UserError: the path is missing, is not a zarr group, or holds no arrays.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: features store not found; pass the reference's .zarr folder")
    try:
        group = zarr.open_group(str(path), mode="r")
        keys = list(group.array_keys())
    except _ZARR_ERRORS as error:
        raise UserError(
            f"{path}: not a zarr group of per-trailer arrays ({_first_line(error)}); pass the "
            "extracted .zarr folder, e.g. trailers_k_r2plus1d_fps24_fpc24.zarr"
        ) from None
    if not keys:
        raise UserError(f"{path}: the zarr store holds no arrays (expected one per trailer)")
    return group


def import_trailers12k(
    features: str | Path,
    labels_csv: str | Path,
    out: str | Path,
    backbone: str = "unknown",
    pretrain: str = "unknown",
    kind: str = "video",
    family: str | None = None,
    input_size: int = 0,
    progress: bool = True,
) -> Path:
    """Convert a reference Trailers12k zarr store and its `mtgc.csv` into a vtl feature file.

    One video per CSV row, in CSV order, with the CSV's labels and splits. A trailer missing
    from the store (or whose array is unusable: not 2-D, wrong width, no clips, non-finite in
    float16) is left out and listed in the file's `failures` attribute and in
    `<out stem>.failures.csv`, with a warning; store arrays not named in the CSV are ignored and
    counted in the log. Trailers are read one at a time, so memory follows one trailer.

    Args:
        features: the zarr store (folder), e.g. `trailers_k_r2plus1d_fps24_fpc24.zarr`.
        labels_csv: the reference's `mtgc.csv`.
        out: the feature file to write (.h5); written under a temporary name, then renamed,
            replacing any file already there.
        backbone, pretrain, kind: recorded in the file's attributes; kind is "image" (the
            store's `trailers_i_*` frame-level features) or "video" (`trailers_k_*`, `_ik_`).
        family: the backbone family attribute; defaults to `backbone`.
        input_size: the backbone's input size if known; 0 records "unknown".
        progress: show a tqdm bar over trailers on stderr.

    Returns:
        The path of the written file (it passes `vtl.features.verify_features`).

    Raises:
        UserError: bad arguments, a bad CSV (naming file, row and column), a path that is not
            a zarr store, or no trailer usable at all.
    """
    described = _described_backbone(backbone, pretrain, kind, family, input_size)
    features, out = Path(features), Path(out)
    table = read_mtgc(labels_csv)
    group = open_zarr_group(features)
    store_keys = sorted(group.array_keys())
    in_csv = set(table.mids)
    ignored = [key for key in store_keys if key not in in_csv]
    if ignored:
        log.info(
            "%s: ignoring %d store arrays not listed in %s",
            features.name,
            len(ignored),
            table.path.name,
        )
    dim = _feature_dim(group, table.mids, store_keys, features)

    digests: dict[str, bytes] = {}  # per-array sha256, combined into the store's hash at the end
    failures: list[dict] = []
    present = set(store_keys)
    meta = FeatureMeta(
        **described,
        feature_dim=dim,
        frames_per_clip=FRAMES_PER_CLIP,
        clip_fps=CLIP_FPS,
        weights={"name": features.name, "sha256": ""},
        shot_detector=SHOT_DETECTOR,
    )
    writer = FeatureWriter(out, meta, table.label_names, table.splits.shape[1])
    written = 0
    try:
        with progress_bar(len(table.mids), "import", "trailer", not progress) as bar:
            for v, mid in enumerate(table.mids):
                bar.update(1)
                if mid not in present:
                    failures.append(_failure(features, mid, "not in the features store"))
                    continue
                array = np.asarray(group[mid][...])  # one trailer in memory at a time
                digests[mid] = _array_digest(mid, array)
                reason = _unusable(array, dim)
                if reason:
                    failures.append(_failure(features, mid, reason))
                    continue
                labels, splits = table.labels[v], table.splits[v]
                writer.add(consecutive_clips(mid, array, labels, splits, FRAMES_PER_CLIP, CLIP_FPS))
                written += 1
        if written == 0:
            raise UserError(
                f"{features}: none of the {len(table.mids)} trailers of {table.path} could be "
                f"imported (first problem: {failures[0]['reason'] if failures else 'none'}); "
                "check that the store and the CSV belong together"
            )
        for mid in ignored:  # hash the whole store, not just the imported trailers
            digests[mid] = _array_digest(mid, np.asarray(group[mid][...]))
        meta.weights = {"name": features.name, "sha256": _store_digest(digests)}
        meta.failures = failures
        meta.config = {
            "imported_from": str(features.resolve()),
            "labels_csv": str(table.path.resolve()),
            "store_attrs": _jsonable(dict(group.attrs)),
            "store_arrays": len(store_keys),
            "ignored_store_arrays": len(ignored),
            "frames": (
                f"synthetic (the store has no frame positions or shots): clip i covers frames "
                f"[{FRAMES_PER_CLIP}i, {FRAMES_PER_CLIP}i+{FRAMES_PER_CLIP - 1}], n_frames = "
                f"{FRAMES_PER_CLIP} x clips, fps {CLIP_FPS:g}, one shot per trailer"
            ),
            "frames_per_clip": FRAMES_PER_CLIP,
            "clip_fps": CLIP_FPS,
        }
        writer.meta = meta
        path = writer.close()
    except BaseException:
        writer.discard()
        raise
    write_failures(path, failures)
    if failures:
        log.warning(
            "%s: %d of %d trailers not imported (listed in %s); first: %s: %s",
            path.name,
            len(failures),
            len(table.mids),
            path.with_suffix(".failures.csv").name,
            failures[0]["video_id"],
            failures[0]["reason"],
        )
    log.info("%s: imported %d trailers, %d-d features", path, written, dim)
    return path


def _described_backbone(
    backbone: str, pretrain: str, kind: str, family: str | None, input_size: int
) -> dict:
    """The file's attributes that describe the store's backbone, as the caller gives them
    (checked here: the store itself records none of them)."""
    if kind not in ("image", "video"):
        raise UserError(f"kind must be 'image' or 'video', got {kind!r}")
    for name, value in (("backbone", backbone), ("pretrain", pretrain)):
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"{name} must be a non-empty string, got {value!r}")
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 0:
        raise UserError(f"input_size must be an integer >= 0, got {input_size!r}")
    return {
        "backbone": backbone,
        "family": family or backbone,
        "pretrain": pretrain,
        "kind": kind,
        "input_size": input_size,
    }


def _feature_dim(group, mids: list[str], store_keys: list[str], where: Path) -> int:
    """Feature width: the store's `num_features` attribute (the reference sets it) when some
    trailer has it, else the most common width among the CSV's trailers (metadata only)."""
    present = set(store_keys)
    widths: dict[int, int] = {}
    for mid in mids:
        shape = group[mid].shape if mid in present else ()
        if len(shape) == 2 and shape[1] > 0:
            widths[int(shape[1])] = widths.get(int(shape[1]), 0) + 1
    if not widths:
        raise UserError(
            f"{where}: no (clips, features) array for any trailer id of the CSV; check that the "
            "store and the CSV belong together"
        )
    declared = group.attrs.get("num_features")
    if isinstance(declared, int) and declared in widths:
        return declared
    dim = max(widths, key=widths.get)
    if declared is not None:
        log.warning("%s: num_features is %r but most arrays are %d-d", where, declared, dim)
    return dim


def _unusable(array: np.ndarray, dim: int) -> str:
    """Why a trailer's array cannot be imported ('' if it can)."""
    if array.ndim != 2 or array.shape[1] != dim:
        return f"array of shape {array.shape}, expected (clips, {dim})"
    if array.shape[0] == 0:
        return "no clips"
    if not np.issubdtype(array.dtype, np.number):
        return f"array of dtype {array.dtype}, expected floats"
    # The file stores float16: values beyond its range would become inf.
    with np.errstate(over="ignore"):
        finite = np.isfinite(array.astype(np.float16)).all()
    if not finite:
        return "non-finite features (or values beyond the float16 range)"
    return ""


def _array_digest(key: str, array: np.ndarray) -> bytes:
    """sha256 of one array: its key, dtype, shape and little-endian C-order bytes."""
    h = hashlib.sha256()
    h.update(key.encode())
    h.update(array.dtype.newbyteorder("<").str.encode())
    h.update(json.dumps(list(array.shape)).encode())
    h.update(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())
    return h.digest()


def _store_digest(digests: dict[str, bytes]) -> str:
    """sha256 over the per-array digests in sorted key order.

    Hashing each array as it is read (in CSV order) and combining in key order identifies the
    store's content with a single streaming pass.
    """
    h = hashlib.sha256()
    for key in sorted(digests):
        h.update(digests[key])
    return h.hexdigest()


def store_sha256(path: str | Path) -> str:
    """The content hash that `import_trailers12k` records as `weights.sha256` for a store."""
    group = open_zarr_group(path)
    return _store_digest(
        {key: _array_digest(key, np.asarray(group[key][...])) for key in group.array_keys()}
    )


def _failure(store: Path, mid: str, reason: str) -> dict:
    return {"video_id": mid, "path": f"{store}/{mid}", "reason": reason}


def _jsonable(value):
    """Store attributes as plain JSON (numpy scalars and the like turned into strings)."""
    return json.loads(json.dumps(value, default=str))


def _first_line(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:160]
