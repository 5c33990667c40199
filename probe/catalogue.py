"""The feature files behind reports: which files, what they hold, and whether they fit together.

`discover_feature_files` finds the files a report names (files, or folders searched for *.h5),
`read_file_info` reads what reports need of each (identity for the task cache, metadata, costs),
and the checks run before any training: the files describe one dataset (`check_one_dataset`),
the videos some file lacks are left out of every row (`videos_left_out`), the requested splits
exist (`resolve_splits`) and every one of them is usable (`check_splits`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vtl.errors import FeatureFileError, UserError
from vtl.features import FeatureFile

log = logging.getLogger(__name__)

_PART_FILE = re.compile(r"\.part-\d+-of-\d+\.h5$")


@dataclass(frozen=True)
class FileInfo:
    """What reports need to know about one feature file (read from its attributes)."""

    path: Path
    backbone: str
    family: str
    pretrain: str
    kind: str
    feature_dim: int
    weights_sha256: str
    n_videos: int
    n_clips: int
    n_splits: int
    label_names: tuple[str, ...]
    size: int
    mtime_ns: int
    cost: dict = field(default_factory=dict, hash=False, compare=False)
    config: dict = field(default_factory=dict, hash=False, compare=False)
    shot_detector: str = ""
    weights_name: str = field(default="", compare=False)  # the checkpoint's file name
    # video id -> its labels and splits (bytes): files of one dataset agree on every shared video
    truth: dict = field(default_factory=dict, hash=False, compare=False, repr=False)

    def identity(self) -> dict:
        """What names this file's content for the cache: a changed file gets new tasks."""
        return {
            "path": str(self.path),
            "backbone": self.backbone,
            "weights_sha256": self.weights_sha256,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
        }

    @property
    def params_m(self) -> float | None:
        return _number(self.cost.get("params_m"))

    @property
    def gflops_per_clip(self) -> float | None:
        """GFLOPs of the backbone per clip as extracted (the file's `cost` attribute)."""
        return _number(self.cost.get("gflops_per_clip"))

    @property
    def clips_per_video(self) -> float:
        return self.n_clips / max(1, self.n_videos)

    @property
    def gflops_per_video(self) -> float | None:
        per_clip = self.gflops_per_clip
        return None if per_clip is None else per_clip * self.clips_per_video

    @property
    def embed_seconds_per_video(self) -> float | None:
        seconds, videos = _number(self.cost.get("embed_seconds")), self.cost.get("videos")
        return None if seconds is None or not videos else seconds / videos


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def read_file_info(path: Path) -> FileInfo:
    """A feature file's identity, metadata and costs.

    Raises:
        FeatureFileError: not a readable vtl feature file.
    """
    with FeatureFile(path) as f:
        meta = f.meta
        stat = f.path.stat()
        return FileInfo(
            path=f.path.resolve(),
            backbone=meta.backbone,
            family=meta.family,
            pretrain=meta.pretrain,
            kind=meta.kind,
            feature_dim=int(f.feature_dim),
            weights_sha256=str((meta.weights or {}).get("sha256", "")),
            n_videos=int(f.n_videos),
            n_clips=int(f.n_clips),
            n_splits=int(f.splits.shape[1]),
            label_names=tuple(f.label_names),
            size=int(stat.st_size),
            mtime_ns=int(stat.st_mtime_ns),
            cost=dict(meta.cost or {}),
            config=dict(meta.config) if isinstance(meta.config, dict) else {},
            shot_detector=str(meta.shot_detector),
            weights_name=str((meta.weights or {}).get("name", "")),
            truth=file_truth(f),
        )


def file_truth(f: FeatureFile) -> dict[str, bytes]:
    """Each video's labels and splits (as bytes) by video id: what `check_same_truth` compares."""
    return {
        video: labels.tobytes() + splits.tobytes()
        for video, labels, splits in zip(f.video_ids, f.labels, f.splits, strict=True)
    }


def check_same_truth(first: Path, first_truth: dict, other: Path, other_truth: dict) -> None:
    """Raise UserError when two feature files label or split a video they share otherwise
    (extracted from two manifests: the labels corrected in between, or two collections whose
    ids coincide); a comparison would score each backbone on other labels."""
    differ = [v for v, truth in other_truth.items() if first_truth.get(v, truth) != truth]
    if differ:
        raise UserError(
            f"{first} and {other} give video {differ[0]!r} other labels or splits "
            f"({len(differ)} videos differ): files extracted from different manifests; "
            "extract every file to compare from one manifest"
        )


def discover_feature_files(paths: Sequence[str | Path]) -> list[Path]:
    """The feature files named by `paths`: files as given, folders searched recursively for *.h5.

    In folders, shard part files (`*.part-<i>-of-<n>.h5`, merged by `extract merge`) and files
    that are not vtl feature files are skipped with a warning. Explicit files are taken as they
    are (a bad one is reported when it is read).

    Raises:
        UserError: a path that does not exist, or no feature file found at all.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            for candidate in sorted(path.rglob("*.h5")):
                if _PART_FILE.search(candidate.name):
                    log.warning(
                        "skipping %s: a shard part file (merge it with `extract merge`)", candidate
                    )
                    continue
                try:
                    with FeatureFile(candidate) as f:
                        part = f.part
                except FeatureFileError as error:
                    log.warning("skipping %s", error)
                    continue
                if part is not None:
                    log.warning("skipping %s: a shard part file (part %s)", candidate, part)
                    continue
                found.append(candidate)
        else:
            raise UserError(f"--features {path}: no such file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        where = ", ".join(str(p) for p in paths) or "(nothing)"
        raise UserError(
            f"--features {where}: no feature files (*.h5) found; extract some with `extract run`"
        )
    return unique


def check_one_dataset(infos: list[FileInfo]) -> None:
    """Reports compare feature files of one dataset: same labels and splits, and the same
    labels and splits for every video the files share (`videos_left_out` says which videos
    some file lacks).

    Raises:
        UserError: naming both files and what differs.
    """
    first = infos[0]
    for other in infos[1:]:
        for what, a, b in (
            ("labels", first.label_names, other.label_names),
            ("number of splits", first.n_splits, other.n_splits),
        ):
            if a != b:
                raise UserError(
                    f"{first.path} and {other.path} disagree on {what} ({a} vs {b}); a report "
                    "compares backbones on one dataset, so pass the files of one dataset"
                )
        check_same_truth(first.path, first.truth, other.path, other.truth)


def videos_left_out(infos: list[FileInfo]) -> tuple[str, ...]:
    """The videos not in every file of `infos` (those of a report that can be probed), in the
    order the files name them: a video some file lacks (it failed with that backbone) is left
    out of every row, so that every file is trained and tested on the same videos; a warning
    says how many.

    Raises:
        UserError: files that share no video.
    """
    everywhere = set.intersection(*(set(i.truth) for i in infos))
    left_out = tuple(dict.fromkeys(v for i in infos for v in i.truth if v not in everywhere))
    if not everywhere:
        raise UserError(
            f"the feature files {', '.join(str(i.path) for i in infos)} share no video; "
            "extract every file to compare from one manifest"
        )
    if left_out:
        fewest = min(infos, key=lambda i: len(i.truth))
        log.warning(
            "%d videos left out: not in every feature file (%s holds the fewest, %d); every file "
            "is trained, tested and scored on the %d videos all hold",
            len(left_out),
            fewest.path,
            len(fewest.truth),
            len(everywhere),
        )
    return left_out


def resolve_splits(splits: Sequence[int] | str, info: FileInfo) -> list[int]:
    """'all' or split indices, checked against the files' splits."""
    if isinstance(splits, str):
        if splits.strip().lower() == "all":
            return list(range(info.n_splits))
        raise UserError(f"--splits {splits!r}: give 'all' or numbers like 0,1,2")
    split_list = [int(s) for s in splits]
    bad = [s for s in split_list if not 0 <= s < info.n_splits]
    if bad or not split_list:
        raise UserError(f"--splits {split_list}: the files have splits 0..{info.n_splits - 1}")
    return split_list


def check_splits(info: FileInfo, splits: list[int], exclude: Sequence[str] = ()) -> None:
    """Every requested split has train, val and test videos and a positive training video of
    every label, checked before any training (the files of one dataset share them), on the
    file's videos less `exclude` (those `videos_left_out` names).

    Raises:
        UserError: as `probe.data.split_indices`.
    """
    from probe.data import open_probe_data, split_indices  # torch: only to check splits

    data = open_probe_data([info.path], exclude=exclude)
    try:
        for split in splits:
            try:
                split_indices(data, split)
            except UserError as error:
                if not exclude:
                    raise
                raise UserError(
                    f"{error} (among the {len(data.video_ids)} videos every feature file holds: "
                    f"the {len(exclude)} some file lacks are left out)"
                ) from None
    finally:
        data.close()
