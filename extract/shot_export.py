"""`extract shots`: shot boundaries of every video of a manifest, without any backbone."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from extract.config import ExtractConfig, decode_limits, resolve_device
from extract.decoder import StopRequested
from extract.processor import VideoProcessor
from extract.shots import make_shot_detector
from extract.stop import StopGuard
from extract.video import VideoInfo
from extract.video_loop import Processed, VideoLoop
from vtl.atomic import replacing, write_text
from vtl.defaults import SEGMENTATION, SHOT_FRAMES, SHOT_THRESHOLD
from vtl.errors import UserError
from vtl.manifest import read_manifest
from vtl.paths import check_output_file
from vtl.progress import progress_bar


@dataclass
class ShotsResult:
    """The shots found (first and last frame of each) and the videos that failed."""

    path: Path
    shots: dict[str, np.ndarray] = field(default_factory=dict)  # video id -> (S, 2) first/last
    failures: list[dict] = field(default_factory=list)


def detect_manifest_shots(
    manifest_path: str | Path,
    out: str | Path,
    segmentation: str = SEGMENTATION,
    threshold: float = SHOT_THRESHOLD,
    shot_frames: int = SHOT_FRAMES,
    device: str = "auto",
    progress: bool = True,
    video_timeout: float | None = None,
) -> ShotsResult:
    """Detect the shots of every video and write them to `out` (.json or .h5).

    Decoding runs in a decoder process and every video's failure is its own, as in
    `extract run` (`extract.decoder`)."""
    out = Path(out)
    if out.suffix not in (".json", ".h5"):
        raise UserError(f"--out {out}: use a .json or .h5 file name")
    config = ExtractConfig(
        segmentation=segmentation,
        threshold=threshold,
        shot_frames=shot_frames,
        device=device,
        video_timeout=video_timeout,
    ).validate()
    check_output_file(out)
    manifest = read_manifest(manifest_path)
    device = resolve_device(device)
    detector = make_shot_detector(
        segmentation, device=device, threshold=threshold, shot_frames=shot_frames
    )
    key = config.cutting().shot_key
    processor = VideoProcessor([], {key: detector})

    def shots_of(index: int, info: VideoInfo, chunks) -> np.ndarray:
        return processor.run(info.fps, chunks, device)[1][key]

    result = ShotsResult(out)
    bar = progress_bar(len(manifest), "shots", "video", not progress)
    with StopGuard() as guard:
        videos = VideoLoop(
            manifest,
            range(len(manifest)),
            shots_of,
            bar,
            min_seconds=0.0,
            stop=guard.check,
            small=processor.needs_small,
            **decode_limits(config, manifest),
        )
        try:
            with videos:
                for outcome in videos:
                    if isinstance(outcome, Processed):
                        result.shots[manifest.video_ids[outcome.index]] = outcome.value
                    else:  # shots files list failures without the manifest index
                        result.failures.append({k: v for k, v in outcome.items() if k != "index"})
        except StopRequested:
            stopped = f"stopped before every video was done; nothing written to {out}"
            raise UserError(stopped) from None
    _write(out, result, detector.name)
    return result


def _write(out: Path, result: ShotsResult, detector: str) -> None:
    """Write the shots file whole (temporary name, then rename: `vtl.atomic`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".json":
        payload = {
            "shot_detector": detector,
            "videos": {k: v.tolist() for k, v in result.shots.items()},
            "failures": result.failures,
        }
        write_text(out, json.dumps(payload, indent=1))
        return
    ids = list(result.shots)
    counts = [len(result.shots[k]) for k in ids]
    frames = np.concatenate([result.shots[k] for k in ids]) if ids else np.zeros((0, 2))
    with replacing(out) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["shot_detector"] = detector
        h5.attrs["failures"] = json.dumps(result.failures)
        h5.create_dataset(
            "videos/id",
            data=np.array(ids, dtype=object),
            dtype=h5py.string_dtype(),
        )
        h5["shots/offset"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        h5["shots/frames"] = frames.astype(np.int64)
