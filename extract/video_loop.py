"""The per-video loop that `extract run` and `extract shots` share: decode each video once (a
decoder process, `extract.decoder`), hand its chunks to the caller's processing, and turn any
failure of one video into that video's failure record, so the run goes on.

    with VideoLoop(manifest, indices, process, bar, **decoder_options) as videos:
        for outcome in videos:  # a Processed, or a failure record (dict)
            ...

A stop request (`StopRequested`, raised by `process` or the decoder) always ends the loop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extract.decoder import Decoder, Failure, StopRequested, failure_reason
from extract.video import VideoInfo
from vtl.manifest import Manifest

log = logging.getLogger("extract")

# process(manifest index, video info, chunks (first frame, frames)) -> the caller's result
Process = Callable[[int, VideoInfo, Iterable[tuple[int, Any]]], Any]


@dataclass(frozen=True)
class Processed:
    """A video `process` finished: its manifest index, header and what `process` returned."""

    index: int
    info: VideoInfo
    value: Any
    concealed: int = 0  # frames concealed while decoding (a damaged stream decoded around)


def failure_record(manifest: Manifest, index: int, reason: str) -> dict:
    """The record of a video that could not be used (feature files and failures.csv list these),
    logged as 'skipped PATH: REASON'."""
    log.warning("skipped %s: %s", manifest.paths[index], reason)
    return {
        "video_id": manifest.video_ids[index],
        "path": str(manifest.paths[index]),
        "reason": reason,
        "index": index,
        "file": file_stamp(manifest.paths[index]),
    }


def file_stamp(path: Path) -> dict | None:
    """A video file's size and modification time, kept with its failure: a rerun tries the
    video again when they change (the file replaced or repaired); None when it cannot be read."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}


class VideoLoop:
    """Each video of `indices` (manifest order) decoded and processed, one outcome per video.

    Iterating yields a `Processed` for each video `process` finished and a failure record
    (`failure_record`) for each video that failed to open, decode or process: any exception
    but `StopRequested` is that video's failure. The progress `bar` advances by one per video;
    leaving the `with` block closes the decoder and the bar.

    Args:
        manifest: the videos' paths and ids.
        indices: the manifest indices to decode.
        process: the work on one video (see `Process`).
        bar: a `vtl.progress.progress_bar`.
        **decoder_options: the `Decoder`'s (min_seconds, stop, timeout, stall, pin_memory,
            small).
    """

    def __init__(
        self,
        manifest: Manifest,
        indices: Iterable[int],
        process: Process,
        bar,
        **decoder_options,
    ) -> None:
        self.manifest = manifest
        self.process = process
        self.bar = bar
        self.decoder = Decoder([(i, manifest.paths[i]) for i in indices], **decoder_options)

    def __enter__(self) -> VideoLoop:
        return self

    def __exit__(self, *exc) -> None:
        self.decoder.close()
        self.bar.close()

    def __iter__(self) -> Iterator[Processed | dict]:
        for item in self.decoder:
            if isinstance(item, Failure):
                yield failure_record(self.manifest, item.index, item.reason)
            else:
                yield self._run(item)
            self.bar.update(1)

    def _run(self, item) -> Processed | dict:
        try:
            value = self.process(item.index, item.info, item.chunks())
        except StopRequested:
            raise
        except Exception as error:  # any failure of any kind is this video's
            failure = failure_record(self.manifest, item.index, failure_reason(error))
            item.discard()
            return failure
        item.discard()  # read to its "end" message (if `process` stopped at the last chunk)
        return Processed(item.index, item.info, value, item.concealed)
