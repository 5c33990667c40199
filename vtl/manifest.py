"""The manifest: one CSV row per video, `video_id,path,<label columns...>,split0[,split1,...]`
(columns separated by commas; semicolons or tabs are read too, told by the header row).

Read and validated here, once, for both stages. Every problem is reported as one line naming the
file, the row (its line number in the file) and the column, before any expensive work starts.
"""

from __future__ import annotations

import codecs
import csv
import errno
import io
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vtl.errors import ManifestError, UserError

# split values (any case): the names, the reference's codes, and the other names datasets give
# val (Hugging Face's "validation"; "valid", "dev")
SPLIT_CODES = {
    "train": 0,
    "val": 1,
    "test": 2,
    "validation": 1,
    "valid": 1,
    "dev": 1,
    "0": 0,
    "1": 1,
    "2": 2,
}
SPLIT_NAMES = ("train", "val", "test")
_SPLIT_COLUMN = re.compile(r"^split(\d+)$")


def special_file(path: str | Path) -> str | None:
    """What `path` is when it exists but is not a regular file (links followed): "a named pipe
    (FIFO)", "a device (/dev/zero)", "a socket" or "a folder"; None for a regular file or a
    path that does not exist (or cannot be looked at). Only stat() is used: opening a named
    pipe blocks until a writer comes, and a device such as /dev/zero never ends."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, a broken link, unreadable folder, NUL in the name
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return f"a device ({os.path.realpath(path)})"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a special file"


@dataclass(frozen=True)
class Manifest:
    """A validated manifest. Arrays are aligned with `video_ids` (manifest order)."""

    path: Path
    video_ids: list[str]
    paths: list[Path]  # absolute
    label_names: list[str]
    labels: np.ndarray  # (V, L) uint8, 0/1
    splits: np.ndarray  # (V, K) uint8: 0 train, 1 val, 2 test

    def __len__(self) -> int:
        return len(self.video_ids)

    def subset(self, indices: list[int]) -> Manifest:
        """The manifest restricted to `indices` (kept in the given order)."""
        return Manifest(
            path=self.path,
            video_ids=[self.video_ids[i] for i in indices],
            paths=[self.paths[i] for i in indices],
            label_names=self.label_names,
            labels=self.labels[indices],
            splits=self.splits[indices],
        )


def _label(value: str) -> int | None:
    """A label cell's 0 or 1: `0`/`1` as the format writes them, also a number equal to either
    (`1.0`: pandas writes a label column with a missing value as floats) or `true`/`false` in
    any case (pandas' and spreadsheets' booleans); None for anything else (an empty cell is no
    label: missing is not negative)."""
    word = value.lower()
    if word in ("true", "false"):
        return int(word == "true")
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number in (0.0, 1.0) else None


def _video_path(folder: Path, raw: str) -> Path:
    """A row's video path: `~` expanded, relative to the manifest's `folder` unless absolute.
    One written with Windows' backslashes (a manifest made on Windows) is read with slashes
    where the file is there so and not under the name as written (a backslash is a legal
    character of a file name here)."""

    def resolved(text: str) -> Path:
        video = Path(text).expanduser()
        return video if video.is_absolute() else folder / video

    video = resolved(raw)
    if "\\" in raw and not os.path.exists(video):
        slashed = resolved(raw.replace("\\", "/"))
        if os.path.exists(slashed):
            return slashed
    return video


# Why a path cannot be looked at, by errno, in the words of an error line.
_STAT_PROBLEMS = {
    errno.ENOENT: "video file not found",
    errno.ENOTDIR: "video file not found (a part of its path is a file, not a folder)",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "a loop of symbolic links",
    errno.EACCES: "permission denied (a folder on the path cannot be searched)",
}


def _stat_problem(path: Path) -> str | None:
    """Why `path` cannot be looked at (missing, a name too long, a link loop, ...), or None."""
    try:
        os.stat(path)
    except ValueError:
        return "its path holds a NUL character"
    except OSError as error:
        return _STAT_PROBLEMS.get(error.errno, error.strerror or "cannot be read")
    return None


def _shown(path: Path) -> str:
    """A path for an error line: as it is, or its repr when it holds control characters, cut
    in the middle past 200 characters."""
    text = str(path)
    if not text.isprintable():
        text = repr(text)
    return text if len(text) <= 200 else f"{text[:100]}...{text[-60:]} ({len(text)} characters)"


def _delimiter(text: str) -> str:
    """The manifest's column separator: a comma, unless its header row holds none but holds
    semicolons (a spreadsheet's CSV in a locale whose decimal mark is the comma) or tabs (TSV)."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    if "," not in header:
        for other in ";\t":
            if other in header:
                return other
    return ","


_BOMS = (  # UTF-32 first: its little-endian mark begins with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def read_csv_rows(
    path: Path, error: type[UserError] = ManifestError
) -> list[tuple[int, list[str]]]:
    """The non-blank rows of a CSV file as (line number, cells), for the manifest and the
    reference's mtgc.csv alike. UTF-8 unless a byte-order mark says UTF-16 or UTF-32 (a
    spreadsheet's "Unicode text"); the separator as `_delimiter` tells it; columns with no name
    and no value (the empty columns a spreadsheet writes after the last one) dropped.

    Raises:
        `error`: one line naming the file (and the row of a byte that is not UTF-8) and the fix.
    """
    data = path.read_bytes()
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as problem:
        line = data[: problem.start].count(b"\n") + 1
        raise error(
            f"{path}, row {line}: not {encoding.upper()} text (byte 0x{data[problem.start]:02x}: "
            "another encoding, such as a spreadsheet's Windows or Latin-1 CSV); save it as "
            'UTF-8 ("CSV UTF-8")'
        ) from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise error(
            f"{path}, row {line}: a NUL character (not text: a binary file, or UTF-16 text "
            'without a byte-order mark); save it as UTF-8 ("CSV UTF-8")'
        )
    text = text.lstrip("\ufeff")  # a byte-order mark written twice (a file saved twice so)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    rows, line = [], 1  # each row with the line it starts on (a quoted field may span lines)
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((line, row))
            line = reader.line_num + 1
    except csv.Error as problem:
        hint = (
            ': a quote (") opened there and never closed?'
            if "field larger than field limit" in str(problem)
            else ""
        )
        raise error(f"{path}, row {line}: not readable as CSV ({problem}){hint}") from None
    if rows:
        header = rows[0][1]
        empty = {
            i
            for i, name in enumerate(header)
            if not name.strip() and all(i >= len(row) or not row[i].strip() for _, row in rows)
        }
        if empty:
            rows = [(line, [c for i, c in enumerate(row) if i not in empty]) for line, row in rows]
    return rows


def read_manifest(path: str | Path, check_files: bool = True) -> Manifest:
    """Read and validate a manifest CSV.

    Args:
        path: the CSV file. Video paths in it are relative to its folder (absolute allowed).
        check_files: also require every video file to exist (extraction needs them; probing
            does not).

    Raises:
        ManifestError: one line naming the file, row and column of the first problem.
    """
    path = Path(path)
    kind = special_file(path)
    if kind is not None:
        raise ManifestError(f"{path}: is {kind}, not a manifest; pass the path of a CSV file")
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found; pass the path of a CSV file")
    rows = read_csv_rows(path, ManifestError)
    if not rows:
        raise ManifestError(f"{path}: the manifest is empty; it needs a header row and videos")
    _, header = rows[0]
    header = [column.strip() for column in header]
    _check_header(path, header)
    if len(rows) == 1:
        raise ManifestError(f"{path}: the manifest has a header but no videos")

    split_columns = [c for c in header if _SPLIT_COLUMN.match(c)]
    split_columns.sort(key=lambda c: int(_SPLIT_COLUMN.match(c).group(1)))
    label_names = [c for c in header if c not in ("video_id", "path") and c not in split_columns]
    index = {column: i for i, column in enumerate(header)}

    video_ids: list[str] = []
    paths: list[Path] = []
    labels = np.zeros((len(rows) - 1, len(label_names)), dtype=np.uint8)
    splits = np.zeros((len(rows) - 1, len(split_columns)), dtype=np.uint8)
    first_row_of: dict[str, int] = {}
    for v, (line, row) in enumerate(rows[1:]):
        where = f"{path}, row {line}"
        cells = row_cells(path, line, row, header, "video_id", first_row_of)
        video_id = cells[index["video_id"]]
        raw_path = cells[index["path"]]
        if not raw_path:
            raise ManifestError(f"{where}, column path: empty path for video {video_id!r}")
        video_path = _video_path(path.parent, raw_path)
        kind = special_file(video_path) if check_files else None
        if kind is not None:
            raise ManifestError(
                f"{where}, column path: {video_path} is {kind}, not a video file; "
                "give the path of a video file"
            )
        problem = _stat_problem(video_path) if check_files else None
        if problem is not None:
            raise ManifestError(
                f"{where}, column path: {problem}: {_shown(video_path)}; "
                "paths are relative to the manifest's folder"
            )
        video_ids.append(video_id)
        paths.append(video_path.resolve() if os.path.exists(video_path) else video_path.absolute())
        for j, name in enumerate(label_names):
            value = cells[index[name]]
            label = _label(value)
            if label is None:
                raise ManifestError(
                    f"{where}, column {name}: label {value!r} is not 0 or 1 "
                    "(every column that is not video_id, path or splitK is a label)"
                )
            labels[v, j] = label
        for k, name in enumerate(split_columns):
            value = cells[index[name]].lower()
            if value not in SPLIT_CODES:
                raise ManifestError(
                    f"{where}, column {name}: unknown split {cells[index[name]]!r}; "
                    "use train, val or test (or 0, 1, 2)"
                )
            splits[v, k] = SPLIT_CODES[value]

    for k, name in enumerate(split_columns):
        for split_name, rows in split_subsets(splits, k).items():
            if not rows.size:
                raise ManifestError(
                    f"{path}, column {name}: no {split_name} videos; "
                    "every split needs train, val and test videos"
                )
    _warn_shared_files(path, video_ids, paths)
    _warn_empty_labels(path, label_names, labels)
    return Manifest(path.resolve(), video_ids, paths, label_names, labels, splits)


def _warn_shared_files(path: Path, video_ids: list[str], paths: list[Path]) -> None:
    """A warning when rows name the same file: the video is extracted and scored twice, and
    in two splits it leaks its test labels into training."""
    ids_of: dict[object, list[str]] = {}
    for video_id, video_path in zip(video_ids, paths, strict=True):
        try:  # one file under two names (hard links) is one file too
            status = os.stat(video_path)
            # (a file system that numbers no inode, some FUSE mounts, gives 0 to all)
            same = (status.st_dev, status.st_ino) if status.st_ino else video_path
        except (OSError, ValueError):
            same = video_path
        ids_of.setdefault(same, []).append(video_id)
    shared = [ids for ids in ids_of.values() if len(ids) > 1]
    if shared:
        named = "; ".join(
            ", ".join(ids[:4]) + (f" and {len(ids) - 4} more" if len(ids) > 4 else "")
            for ids in shared[:3]
        )
        more = f"; {len(shared) - 3} more files" if len(shared) > 3 else ""
        warnings.warn(
            f"{path}: rows name the same video file ({named}{more}): it is extracted and scored "
            "twice, and in two splits it leaks test labels into training; give each video one "
            "row",
            UserWarning,
            stacklevel=3,
        )


def _warn_empty_labels(path: Path, label_names: list[str], labels: np.ndarray) -> None:
    """A warning for labels no video has (a column of zeros): no probe can learn them, and
    their AP is 0 in every mean."""
    empty = [name for j, name in enumerate(label_names) if not labels[:, j].any()]
    if empty:
        named = ", ".join(repr(name) for name in empty[:5])
        more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
        warnings.warn(
            f"{path}: no video has label{'s' * (len(empty) > 1)} {named}{more} (every value 0): "
            "no probe can learn it; check the label columns",
            UserWarning,
            stacklevel=3,
        )


def split_subsets(splits: np.ndarray, split: int) -> dict[str, np.ndarray]:
    """The rows of each subset (train, val, test) of split column `split` of (V, K) codes."""
    return {name: np.flatnonzero(splits[:, split] == code) for code, name in enumerate(SPLIT_NAMES)}


def split_problem(
    labels: np.ndarray, splits: np.ndarray, split: int, label_names: list[str]
) -> str | None:
    """Why split column `split` cannot train and test a probe, as a phrase ("no val videos",
    "no positive training video of label 'x'"), or None when it can. The rule of every probe
    (`probe.data.split_indices`, `probe recommend`'s quick probes): train, val and test each
    need videos, and every label a positive training video.

    Args:
        labels: (V, L) 0/1; splits: (V, K) split codes; label_names: the L labels' names.
    """
    subsets = split_subsets(splits, split)
    for name, rows in subsets.items():
        if not rows.size:
            return f"no {name} videos"
    missing = np.flatnonzero(~np.asarray(labels)[subsets["train"]].any(axis=0))
    if not missing.size:
        return None
    named = ", ".join(repr(label_names[j]) for j in missing[:3])
    more = f" and {missing.size - 3} more" if missing.size > 3 else ""
    return f"no positive training video of label{'s' * (missing.size > 1)} {named}{more}"


def row_cells(
    path: Path,
    line: int,
    row: list[str],
    header: list[str],
    id_column: str,
    first_row_of: dict[str, int],
    error: type[UserError] = ManifestError,
) -> list[str]:
    """The stripped cells of one data row of a CSV with one row per video (a manifest, the
    reference's mtgc.csv), after the checks such rows share: as many fields as the header, and
    an id in `id_column` that is neither empty nor already on an earlier row (`first_row_of`:
    id -> its row, which this adds the row's id to).

    Raises:
        `error`: one line naming the file, the row (`line`) and the column.
    """
    where = f"{path}, row {line}"
    if len(row) != len(header):
        quotes = (
            "; a field spans lines: check the row's quotes (one opened and not closed?)"
            if any("\n" in cell or "\r" in cell for cell in row)
            else ""
        )
        raise error(
            f"{where}: {len(row)} fields but the header has {len(header)}; fix the row's "
            "separators (a field holding the separator, such as a path with a comma, needs "
            f"quotes){quotes}"
        )
    cells = [cell.strip() for cell in row]
    video_id = cells[header.index(id_column)]
    if not video_id:
        raise error(f"{where}, column {id_column}: empty id; give every video an id")
    if video_id in first_row_of:
        raise error(
            f"{where}, column {id_column}: duplicate id {video_id!r} "
            f"(first on row {first_row_of[video_id]}); ids must be unique"
        )
    first_row_of[video_id] = line
    return cells


def _check_header(path: Path, header: list[str]) -> None:
    for required in ("video_id", "path"):
        if required not in header:
            raise ManifestError(
                f"{path}, row 1: missing column {required!r}{_other_case(header, required)}; "
                "the header must start video_id,path,<labels...>,split0"
            )
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise ManifestError(f"{path}, row 1: duplicate column {duplicates[0]!r}")
    if "" in header:
        raise ManifestError(f"{path}, row 1: a column has an empty name")
    if not any(_SPLIT_COLUMN.match(c) for c in header):
        cased = next((c for c in header if _SPLIT_COLUMN.match(c.lower())), None)
        hint = f" ({cased!r} is one in another case: names are lower case)" if cased else ""
        raise ManifestError(f"{path}, row 1: no split column{hint}; add split0 (train/val/test)")
    if all(c in ("video_id", "path") or _SPLIT_COLUMN.match(c) for c in header):
        raise ManifestError(f"{path}, row 1: no label column; add one 0/1 column per label")


def _other_case(header: list[str], name: str) -> str:
    """A hint when the header holds `name` in another case."""
    cased = next((c for c in header if c.lower() == name), None)
    return f" (the header has {cased!r}: column names are case-sensitive)" if cased else ""


def write_manifest(
    path: str | Path,
    video_ids: list[str],
    paths: list[str],
    label_names: list[str],
    labels: np.ndarray,
    splits: np.ndarray,
) -> Path:
    """Write a manifest CSV (splits as train/val/test). `paths` are written as given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        n_splits = splits.shape[1]
        writer.writerow(["video_id", "path", *label_names, *(f"split{k}" for k in range(n_splits))])
        for v, video_id in enumerate(video_ids):
            writer.writerow(
                [
                    video_id,
                    paths[v],
                    *(int(x) for x in labels[v]),
                    *(SPLIT_NAMES[int(s)] for s in splits[v]),
                ]
            )
    return path
