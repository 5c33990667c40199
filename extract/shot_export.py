"""`extract shots`: shot boundaries of every video of a manifest, without any backbone."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from extract.pipeline import resolve_device
from extract.shots import make_shot_detector, resize_for_shots
from extract.video import VideoError, VideoSource
from vtl.errors import UserError
from vtl.manifest import read_manifest

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
) -> ShotsResult:
    """Detect the shots of every video and write them to `out` (.json or .h5)."""
    out = Path(out)
    if out.suffix not in (".json", ".h5"):
        raise UserError(f"--out {out}: use a .json or .h5 file name")
    manifest = read_manifest(manifest_path)
    device = resolve_device(device)
    detector = make_shot_detector(
        segmentation, device=device, threshold=threshold, shot_frames=shot_frames
    )
    result = ShotsResult(out)
    for i in tqdm(range(len(manifest)), unit="video", desc="shots", disable=not progress):
        try:
            source = VideoSource(manifest.paths[i])
            stream = detector.stream()
            found = []
            for _, frames in source.chunks():
                frames = frames.to(device)
                found += stream.push(resize_for_shots(frames) if detector.needs_frames else frames)
            found += stream.finish()
            result.shots[manifest.video_ids[i]] = np.array(found, np.int64).reshape(-1, 2)
        except VideoError as error:
            log.warning("skipped %s: %s", manifest.paths[i], error)
            result.failures.append(
                {
                    "video_id": manifest.video_ids[i],
                    "path": str(manifest.paths[i]),
                    "reason": str(error),
                }  # fmt: skip
            )
    _write(out, result, detector.name)
    return result


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
