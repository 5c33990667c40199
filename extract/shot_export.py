"""`extract shots`: shot boundaries of every video of a manifest, without any backbone."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from extract.decoder import Decoder, Failure, StopRequested, failure_reason
from extract.pipeline import ExtractConfig, decode_limits, resolve_device
from extract.processor import VideoProcessor
from extract.shots import make_shot_detector
from extract.stop import StopGuard
from vtl.errors import UserError
from vtl.manifest import read_manifest
from vtl.paths import check_output_file
from vtl.progress import progress_bar

log = logging.getLogger("extract")


@dataclass
class ShotsResult:
    path: Path
    shots: dict[str, np.ndarray] = field(default_factory=dict)  # video id -> (S, 2) first/last
    failures: list[dict] = field(default_factory=list)


def detect_manifest_shots(
    manifest_path: str | Path,
    out: str | Path,
    segmentation: str = "transnetv2",
    threshold: float = 0.5,
    shot_frames: int = 48,
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
        segmentation=segmentation, threshold=threshold, shot_frames=shot_frames, device=device,
        video_timeout=video_timeout,
    ).validate()  # fmt: skip
    check_output_file(out)
    manifest = read_manifest(manifest_path)
    device = resolve_device(device)
    detector = make_shot_detector(
        segmentation, device=device, threshold=threshold, shot_frames=shot_frames
    )
    key = config.cutting().shot_key
    processor = VideoProcessor([], {key: detector})
    result = ShotsResult(out)
    bar = progress_bar(len(manifest), "shots", "video", not progress)
    with StopGuard() as guard:
        decoder = Decoder(
            [(i, manifest.paths[i]) for i in range(len(manifest))],
            min_seconds=0.0,
            stop=guard.check,
            **decode_limits(config, manifest),
        )
        try:
            for item in decoder:
                if isinstance(item, Failure):
                    _failed(result, manifest, item.index, item.reason)
                else:
                    try:
                        _, shots = processor.run(item.info.fps, item.chunks(), device)
                        result.shots[manifest.video_ids[item.index]] = shots[key]
                    except StopRequested:
                        raise
                    except Exception as error:  # any failure is this video's
                        _failed(result, manifest, item.index, failure_reason(error))
                bar.update(1)
        except StopRequested:
            stopped = f"stopped before every video was done; nothing written to {out}"
            raise UserError(stopped) from None
        finally:
            decoder.close()
            bar.close()
    _write(out, result, detector.name)
    return result


def _failed(result: ShotsResult, manifest, i: int, reason: str) -> None:
    log.warning("skipped %s: %s", manifest.paths[i], reason)
    failure = {"video_id": manifest.video_ids[i], "path": str(manifest.paths[i]), "reason": reason}
    result.failures.append(failure)


def _write(out: Path, result: ShotsResult, detector: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if out.suffix == ".json":
        payload = {
            "shot_detector": detector,
            "videos": {k: v.tolist() for k, v in result.shots.items()},
            "failures": result.failures,
        }
        tmp.write_text(json.dumps(payload, indent=1))
    else:
        ids = list(result.shots)
        counts = [len(result.shots[k]) for k in ids]
        with h5py.File(tmp, "w") as h5:
            h5.attrs["shot_detector"] = detector
            h5.attrs["failures"] = json.dumps(result.failures)
            h5.create_dataset("videos/id", data=np.array(ids, dtype=object),
                              dtype=h5py.string_dtype())  # fmt: skip
            h5["shots/offset"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            h5["shots/frames"] = (
                np.concatenate([result.shots[k] for k in ids]) if ids else np.zeros((0, 2))
            ).astype(np.int64)
    os.replace(tmp, out)
