"""Merge shard part files into one feature file equal to a single-process run.

Streaming: videos are copied one at a time in manifest order (a k-way merge on each part's
`/videos/manifest_index`), so memory does not grow with the number of clips.
"""

from __future__ import annotations

import csv
import heapq
import logging
from collections.abc import Sequence
from pathlib import Path

from vtl.errors import FeatureFileError, UserError
from vtl.features import COST_TOTALS, FeatureFile, FeatureMeta, FeatureWriter, write_failures
from vtl.lock import OutputLock
from vtl.sample import drawn

log = logging.getLogger("extract")

# Attributes that must agree for parts to belong to one run.
_SAME = (
    "backbone",
    "family",
    "pretrain",
    "kind",
    "feature_dim",
    "frames_per_clip",
    "clip_fps",
    "input_size",
    "weights",
    "shot_detector",
    "config",
    "recipe",
)


def part_paths(final: Path, count: int) -> list[Path]:
    """Where the shards of `final` write their parts: `<stem>.part-<i>-of-<n>.h5`."""
    final = Path(final)
    return [final.with_name(f"{final.stem}.part-{i}-of-{count}.h5") for i in range(count)]


def _warnings(parts: Sequence[str | Path]) -> list[dict]:
    """The warning rows (frames concealed) of the parts' failures.csv files, in part order."""
    rows = []
    for part in parts:
        path = Path(part).with_suffix(".failures.csv")
        if path.is_file():
            try:
                with path.open(newline="") as handle:
                    rows += [r for r in csv.DictReader(handle) if r.get("status") == "warning"]
            except (OSError, UnicodeDecodeError, csv.Error) as error:  # a damaged sidecar
                log.warning("%s: unreadable (%s); its warning rows are left out", path, error)
    return rows


def merge_parts(parts: Sequence[str | Path], out: str | Path, remove_parts: bool = False) -> Path:
    """Combine part files (any order) into `out`, in manifest order.

    Raises:
        FeatureFileError: a part that is not a part, belongs to another run (backbone, weights,
            configuration), or a missing or repeated shard.
    """
    files = [FeatureFile(p) for p in parts]
    try:
        if not files:
            raise FeatureFileError("no part files given; pass the <name>.part-*-of-*.h5 files")
        first = files[0]
        for f in files:
            if f.part is None or f.manifest_index is None:
                raise FeatureFileError(f"{f.path}: not a shard's part file (no part attribute)")
            # The videos the run drew (every shard of one run draws the same; `--sample 0.3`
            # and `--sample 11` may draw the same 11).
            if _drawn_videos(f) != _drawn_videos(first):
                raise FeatureFileError(
                    f"{f.path} holds its shard of {drawn(f.meta.sample)}, {first.path} of "
                    f"{drawn(first.meta.sample)}, other videos: parts must come from one run; "
                    "delete the part of the draw you do not want and run its shard again with "
                    "the other's --sample and --sample-seed (or none)"
                )
            for name in _SAME:
                if getattr(f.meta, name) != getattr(first.meta, name):
                    raise FeatureFileError(
                        f"{f.path}: {name} differs from {first.path}; parts must come from one "
                        "run (same backbone, weights and configuration)"
                    )
            if f.label_names != first.label_names or f.splits.shape[1] != first.splits.shape[1]:
                raise FeatureFileError(f"{f.path}: labels or splits differ from {first.path}")
            if f.logit_names != first.logit_names:
                raise FeatureFileError(f"{f.path}: class logits differ from {first.path}")
        owner: dict[int, FeatureFile] = {}
        for f in files:  # a video in two parts would be written twice
            for index, video_id in zip(f.manifest_index, f.video_ids, strict=True):
                other = owner.setdefault(int(index), f)
                if other is not f:
                    raise FeatureFileError(
                        f"{other.path} and {f.path} both hold video {video_id!r}: parts must "
                        "come from one run; extract the shards again"
                    )
        count = int(first.part.split("/")[1])
        seen = sorted(int(f.part.split("/")[0]) for f in files)
        if seen != list(range(count)) or any(int(f.part.split("/")[1]) != count for f in files):
            raise FeatureFileError(
                f"parts {', '.join(f.part for f in files)} are not exactly shards 0..{count - 1} "
                "of one run; pass every part once"
            )
        failures = sorted(
            (failure for f in files for failure in f.meta.failures),
            key=lambda failure: failure.get("index", -1),
        )
        cost = dict(first.meta.cost)
        for key in COST_TOTALS:
            if all(key in f.meta.cost for f in files):
                cost[key] = round(sum(f.meta.cost[key] for f in files), 3)
        software = {  # shards may run on machines with other versions: each one they had
            key: ", ".join(
                sorted({str(f.meta.software[key]) for f in files if key in f.meta.software})
            )
            for key in dict.fromkeys(k for f in files for k in f.meta.software)
        }
        meta = FeatureMeta(
            **{**vars(first.meta), "failures": failures, "cost": cost, "software": software}
        )
        n_splits = first.splits.shape[1]
        logit_names = first.logit_names  # the same in every part (checked above)
        with FeatureWriter(
            out, meta, first.label_names, n_splits, logit_names=logit_names
        ) as writer:
            streams = [_rows(p, f) for p, f in enumerate(files)]
            for _, p, i in heapq.merge(*streams):
                writer.add(files[p].video(i))
        write_failures(out, failures, _warnings(parts))
    finally:
        for f in files:
            f.close()
    if remove_parts:
        for p in parts:
            Path(p).unlink(missing_ok=True)
            Path(p).with_suffix(".failures.csv").unlink(missing_ok=True)
    return Path(out)


def _drawn_videos(f: FeatureFile) -> tuple[str, ...]:
    """The videos a part's run drew: its sample's, or none for a run over every video."""
    return tuple(f.meta.sample.get("video_ids", ()))


def _rows(part: int, f: FeatureFile):
    """(manifest row, part, video) for each video of a part, in the part's (manifest) order."""
    return ((int(index), part, i) for i, index in enumerate(f.manifest_index))


def try_merge(final: Path, count: int) -> Path | None:
    """Merge `final`'s parts if all are present and no other shard is merging them.

    Called by every shard when it finishes: the last one to finish sees all parts and merges
    (the output's lock, `vtl.lock.OutputLock`, makes sure only one does), so shards never
    wait for each other.
    """
    parts = part_paths(final, count)
    if not all(p.is_file() for p in parts):
        return None
    lock = OutputLock(final)  # released by the kernel if this process dies mid-merge
    try:
        lock.acquire()
    except UserError as busy:  # another shard holds it and merges (or the folder is read-only)
        log.info("%s: not merged by this shard: %s", final, busy)
        return None
    try:
        if not all(p.is_file() for p in parts):  # another shard merged them meanwhile
            return None
        merged = merge_parts(parts, final, remove_parts=True)
        log.info("merged %d parts into %s", count, merged)
        return merged
    finally:
        lock.release()
