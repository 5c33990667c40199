"""The extraction run: decode each video once, feed shot detection and every backbone from the
same frames, commit each video as it finishes, and assemble one feature file per backbone.

Flow of one video (memory bounded by the longest shot, not by the video):

    decoder thread --chunks--> shot stream (48x27) --closed shots--> clip plan
                          \\--> prepared frames per input size --> clips --> backbones --> store
"""

from __future__ import annotations

import bisect
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from extract.backbones import (
    FAMILIES,
    REGISTRY,
    Backbone,
    BackboneSpec,
    create_backbone,
    expand_backbones,
    get_spec,
)
from extract.clips import sample_shot_clips
from extract.merge import try_merge
from extract.shards import Shard, assign_shards, resolve_shard
from extract.shots import make_shot_detector, resize_for_shots
from extract.store import WorkStore
from extract.video import VideoError, VideoSource, header_frames
from extract.weights import require_weights
from vtl import __version__
from vtl.errors import FeatureFileError, UserError
from vtl.features import FeatureFile, FeatureMeta, FeatureWriter, VideoFeatures, write_failures
from vtl.manifest import Manifest, read_manifest

log = logging.getLogger("extract")

DECODE_AHEAD = 3  # decoded chunks queued for the models (decoding is far faster than they are)


@dataclass
class ExtractConfig:
    """Everything that decides the numbers in a feature file (defaults: the reference work's)."""

    segmentation: str = "transnetv2"  # or "fixed"
    threshold: float = 0.5  # TransNetV2 transition probability
    shot_frames: int = 48  # fixed segmentation only
    frames_per_clip: int = 24
    clip_fps: float = 24.0
    min_tail: int | None = None  # frames a shot's last partial clip needs to be kept
    image_frames: int | None = None  # image backbones: embed this many frames per clip (CPU option)
    batch_size: int = 16  # clips per forward
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # autocast on CUDA
    channels_last: bool = True  # on CUDA

    def fingerprint(self, device: torch.device) -> dict:
        values = asdict(self)
        values["device"] = device.type  # shards on cuda:0 and cuda:1 compute the same numbers
        values["amp"] = self.amp and device.type == "cuda"
        values["channels_last"] = self.channels_last and device.type == "cuda"
        return values


@dataclass
class ExtractResult:
    files: dict[str, Path] = field(default_factory=dict)  # backbone -> file written (final or part)
    merged: dict[str, Path] = field(default_factory=dict)  # backbone -> merged file, when merged
    failures: list[dict] = field(default_factory=list)
    interrupted: bool = False
    videos_done: int = 0
    clips: int = 0
    seconds: float = 0.0


def output_plan(backbones: str | list[str]) -> list[tuple[BackboneSpec, str]]:
    """(backbone, family folder) for each requested name: a family name puts its members in its
    own folder (`shufflenet` puts x3d_xs in shufflenet/), a backbone name in its spec's family."""
    tokens = [backbones] if isinstance(backbones, str) else list(backbones)
    plan: list[tuple[BackboneSpec, str]] = []
    for token in (t.strip() for item in tokens for t in item.split(",")):
        if not token:
            continue
        family = token if token in FAMILIES and token not in REGISTRY else None
        for spec in expand_backbones(token):
            entry = (spec, family or spec.family)
            if entry not in plan:
                plan.append(entry)
    if not plan:
        expand_backbones("")  # raises the error that lists the valid names
    return plan


def feature_path(out_dir: Path, spec: BackboneSpec, family: str | None = None) -> Path:
    """`<out>/<family>/<pretrain>.h5` for a family member with a pretraining set of its own in
    that family (swin/in1k.h5, swin/k400.h5), else `<out>/<family>/<name>.h5` (the three
    efficientnet-lite models, or a backbone outside its family's pair)."""
    family = family or spec.family
    members = [get_spec(name) for name in FAMILIES.get(family, ())]
    unique = spec in members and sum(m.pretrain == spec.pretrain for m in members) == 1
    return Path(out_dir) / family / f"{spec.pretrain if unique else spec.name}.h5"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available here; use --device cpu or auto")
    return resolved


# --------------------------------------------------------------------------------------------
# Frames of the current shot, per input size


class FrameBuffer:
    """Prepared frames of one video kept while clips may still need them, as (start, chunk)."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._chunks: list[torch.Tensor] = []

    def append(self, start: int, frames: torch.Tensor) -> None:
        self._starts.append(start)
        self._chunks.append(frames)

    def __len__(self) -> int:
        return sum(len(chunk) for chunk in self._chunks)

    def gather(self, indices: np.ndarray) -> torch.Tensor:
        """Frames at the given source indices, stacked in that order."""
        flat = indices.reshape(-1)
        picked = []
        for index in flat:
            c = bisect.bisect_right(self._starts, int(index)) - 1
            picked.append(self._chunks[c][int(index) - self._starts[c]])
        return torch.stack(picked).reshape(*indices.shape, *picked[0].shape)

    def drop_before(self, index: int) -> None:
        """Forget chunks that hold only frames before `index`."""
        while len(self._starts) > 1 and self._starts[1] <= index:
            self._starts.pop(0)
            self._chunks.pop(0)
        if self._chunks and self._starts[0] + len(self._chunks[0]) <= index:
            self._starts.pop(0)
            self._chunks.pop(0)


class VideoProcessor:
    """Turns one video's decoded chunks into per-backbone clip features."""

    def __init__(self, backbones: list[Backbone], shot_detector, config: ExtractConfig):
        self.backbones = backbones
        self.shot_detector = shot_detector
        self.config = config
        # Backbones with the same input size share prepared frames: prepare each chunk once.
        self.preparers = {}
        for backbone in backbones:
            self.preparers.setdefault(backbone.prepare_key, backbone)
        # The most prepared frames buffered and clips waiting at once in the last run: what
        # bounds this stage's memory (the open shot, a batch), whatever the video's length.
        self.peak_frames = self.peak_clips = 0

    def run(self, fps: float, chunks: Iterator[tuple[int, torch.Tensor]], device) -> dict:
        """Process a whole video; returns backbone name -> arrays for the work store.

        When a shot closes, the frames its clips use are cut out of the buffers at once, so the
        buffers hold only the open shot; the cut clips wait until a batch is full."""
        cfg = self.config
        stream = self.shot_detector.stream()
        self.peak_frames = self.peak_clips = 0
        buffers = {key: FrameBuffer() for key in self.preparers}
        shots: list[tuple[int, int]] = []
        clip_indices: list[np.ndarray] = []  # (C, T) source frames, per closed shot
        clip_shot: list[np.ndarray] = []
        features: dict[str, list[np.ndarray]] = {b.spec.name: [] for b in self.backbones}
        # backbone name -> prepared clips [k, 3, S, S] (only the frames it uses) not embedded yet
        pending: dict[str, list[torch.Tensor]] = {b.spec.name: [] for b in self.backbones}
        lead = self.backbones[0].spec.name  # every backbone has the same clips pending
        used = {b.spec.name: b.clip_frames(cfg.frames_per_clip).numpy() for b in self.backbones}

        def embed(count: int) -> None:
            for backbone in self.backbones:
                clips = pending[backbone.spec.name]
                batch = torch.stack(clips[:count])
                del clips[:count]
                features[backbone.spec.name].append(backbone.embed(batch).numpy())

        def close(new_shots: list[tuple[int, int]]) -> None:
            for first, last in new_shots:
                plan = sample_shot_clips(
                    first, last, fps, cfg.frames_per_clip, cfg.clip_fps, cfg.min_tail
                )
                clip_indices.append(plan)
                clip_shot.append(np.full(len(plan), len(shots), np.int32))
                shots.append((first, last))
                for backbone in self.backbones:
                    frames = buffers[backbone.prepare_key].gather(plan[:, used[backbone.spec.name]])
                    pending[backbone.spec.name].extend(frames.unbind(0))
            self.peak_clips = max(self.peak_clips, len(pending[lead]))
            while len(pending[lead]) >= cfg.batch_size:
                embed(cfg.batch_size)
            # Frames before the next shot are never needed again.
            if shots:
                for buffer in buffers.values():
                    buffer.drop_before(shots[-1][1] + 1)

        for start, frames in chunks:
            frames = frames.to(device, non_blocking=True)
            for key, backbone in self.preparers.items():
                buffers[key].append(start, backbone.prepare(frames))
            self.peak_frames = max(self.peak_frames, *(len(b) for b in buffers.values()))
            detector_input = resize_for_shots(frames) if self.shot_detector.needs_frames else frames
            close(stream.push(detector_input))
        close(stream.finish())
        if pending[lead]:
            embed(len(pending[lead]))

        indices = np.concatenate(clip_indices)
        common = {
            "frames": np.stack([indices.min(axis=1), indices.max(axis=1)], axis=1),
            "shot": np.concatenate(clip_shot),
            "shots": np.array(shots, np.int64).reshape(-1, 2),
        }
        return {
            name: {"features": np.concatenate(parts).astype(np.float16), **common}
            for name, parts in features.items()
        }


# --------------------------------------------------------------------------------------------
# The run


class _Interrupt:
    """SIGTERM / SIGINT: finish the video in hand, commit it, then stop."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict = {}

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True
        log.warning("%s: finishing the current video, then stopping", signal.Signals(signum).name)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class _Job:
    """One feature file being built in this run."""

    key: str  # the backbone's name (name@family if one run writes it to two families)
    backbone: Backbone
    family: str  # the folder and the `family` attribute of the file
    final: Path  # the merged / single-process file
    output: Path  # what this process writes: the final file or its shard's part
    store: WorkStore


def run_extraction(
    manifest_path: str | Path,
    backbones: str | list[str],
    out_dir: str | Path,
    config: ExtractConfig | None = None,
    weights: str | Path | dict | None = None,
    cache_dir: Path | None = None,
    shard: Shard | str | None = None,
    merge: bool = True,
    progress: bool = True,
) -> ExtractResult:
    """Extract clip features of every video in the manifest (or this shard's share of it).

    Writes `feature_path(out_dir, spec, family)` per backbone (a part file per shard; the last
    shard to finish merges the parts when `merge`). Resumable: rerunning the same command continues
    where a killed run stopped. Videos that cannot be used are listed as failures, not fatal.
    """
    started = time.perf_counter()
    config = config or ExtractConfig()
    out_dir = Path(out_dir)
    manifest = read_manifest(manifest_path)
    plan = output_plan(backbones)
    specs = list(dict.fromkeys(spec for spec, _ in plan))
    device = resolve_device(_local_device(config.device))
    weight_files = require_weights(specs, weights=weights, cache_dir=cache_dir)
    shard = shard if isinstance(shard, Shard) else resolve_shard(shard)
    mine = _shard_videos(manifest, shard)

    shot_detector = make_shot_detector(
        config.segmentation,
        device=device,
        threshold=config.threshold,
        shot_frames=config.shot_frames,
    )
    models = {
        spec.name: create_backbone(
            spec,
            weights=weight_files[spec.name],
            device=device,
            image_frames=config.image_frames,
            amp=config.amp,
            channels_last=config.channels_last,
        )
        for spec in specs
    }
    result = ExtractResult()
    jobs: list[_Job] = []
    keys = [spec.name if sum(s is spec for s, _ in plan) == 1 else f"{spec.name}@{family}"
            for spec, family in plan]  # fmt: skip
    for key, (spec, family) in zip(keys, plan, strict=True):
        backbone = models[spec.name]
        final = feature_path(out_dir, spec, family)
        output = final if shard.count == 1 else final.with_name(f"{final.stem}.{shard.tag}.h5")
        fingerprint = {
            "backbone": spec.name,
            "family": family,
            "weights": backbone.weights_info,
            "shot_detector": shot_detector.name,
            "config": config.fingerprint(device),
            "software_version": __version__,
        }
        if _already_written(output, fingerprint, manifest, mine):
            log.info("%s: already complete", output)
            result.files[key] = output
            with FeatureFile(output) as done:
                result.failures = done.meta.failures
            continue
        store = WorkStore(output.with_name(f".{output.stem}.work"), fingerprint)
        jobs.append(_Job(key, backbone, family, final, output, store))

    with _Interrupt() as interrupt:
        if jobs:
            _extract_videos(
                manifest, mine, jobs, shot_detector, config, device, interrupt, result, progress
            )
    if interrupt.requested:
        result.interrupted = True
        log.warning(
            "stopped with %d of %d videos committed; rerun the same command to resume",
            sum(jobs[0].store.is_done(manifest.video_ids[i]) for i in mine),
            len(mine),
        )
        return result

    for job in jobs:
        result.files[job.key], result.failures = _assemble(
            manifest, mine, job, shot_detector, config, device, shard
        )
        job.store.remove()
    if shard.count > 1 and merge:
        for key, (spec, family) in zip(keys, plan, strict=True):
            merged = try_merge(feature_path(out_dir, spec, family), shard.count)
            if merged:
                result.merged[key] = merged
    result.seconds = time.perf_counter() - started
    return result


def _local_device(device: str) -> str:
    # Under torchrun each process takes the GPU of its LOCAL_RANK.
    if device == "auto" and "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        return f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    return device


def _shard_videos(manifest: Manifest, shard: Shard) -> list[int]:
    if shard.count == 1:
        return list(range(len(manifest)))
    lengths = [header_frames(path) for path in manifest.paths]
    assignment = assign_shards(lengths, shard.count)
    return [i for i, s in enumerate(assignment) if s == shard.index]


def _already_written(path: Path, fingerprint: dict, manifest: Manifest, mine: list[int]) -> bool:
    """True when `path` is this very run's finished output; refuses a different file there."""
    if not path.is_file():
        return False
    try:
        with FeatureFile(path) as existing:
            meta = existing.meta
            same = (
                meta.backbone == fingerprint["backbone"]
                and meta.family == fingerprint["family"]
                and meta.weights == fingerprint["weights"]
                and meta.config == fingerprint["config"]
                and meta.shot_detector == fingerprint["shot_detector"]
            )
            covered = set(existing.video_ids) | {f["video_id"] for f in meta.failures}
    except FeatureFileError:
        same, covered = False, set()
    if same and covered == {manifest.video_ids[i] for i in mine}:
        return True
    raise UserError(
        f"{path} exists and was made with another configuration or manifest; "
        "delete it or choose another --out"
    )


def _decode(
    manifest: Manifest,
    order: list[int],
    min_seconds: float,
    out: queue.Queue,
    stop: threading.Event,
) -> None:
    """Producer thread: decode videos in order into a bounded queue, so that decoding the next
    chunk overlaps with the models working on this one. Messages: ("video", i, info),
    ("chunk", start, frames), ("end", i, None), ("failed", i, reason), ("done", None, None)."""
    pin = torch.cuda.is_available()
    for i in order:
        if stop.is_set():
            break
        try:
            source = VideoSource(manifest.paths[i])
            if source.info.seconds < min_seconds:
                raise VideoError(
                    f"shorter than one clip ({source.info.n_frames} frames at "
                    f"{source.info.fps:g} fps < {min_seconds:g} s)"
                )
            out.put(("video", i, source.info))
            for start, frames in source.chunks():
                if stop.is_set():
                    break
                out.put(("chunk", start, frames.pin_memory() if pin else frames))
            out.put(("end", i, None))
        except VideoError as error:
            out.put(("failed", i, str(error)))
    out.put(("done", None, None))


class _VideoFailed(Exception):
    """Decoding broke in the middle of a video."""


def _chunks_of_video(messages: queue.Queue) -> Iterator[tuple[int, torch.Tensor]]:
    while True:
        kind, first, payload = messages.get()
        if kind == "chunk":
            yield first, payload
        elif kind == "end":
            return
        elif kind == "failed":
            raise _VideoFailed(payload)
        else:
            raise RuntimeError(f"unexpected message {kind!r} inside a video")


def _extract_videos(
    manifest: Manifest,
    mine: list[int],
    jobs: list[_Job],
    shot_detector,
    config: ExtractConfig,
    device: torch.device,
    interrupt: _Interrupt,
    result: ExtractResult,
    progress: bool,
) -> None:
    todo = [i for i in mine if not all(j.store.is_done(manifest.video_ids[i]) for j in jobs)]
    messages: queue.Queue = queue.Queue(maxsize=DECODE_AHEAD)
    stop = threading.Event()
    min_seconds = config.frames_per_clip / config.clip_fps
    producer = threading.Thread(
        target=_decode, args=(manifest, todo, min_seconds, messages, stop), daemon=True
    )
    producer.start()
    bar = tqdm(
        total=len(mine),
        initial=len(mine) - len(todo),
        unit="video",
        desc="extract",
        disable=not progress,
        dynamic_ncols=True,
    )
    clock = time.perf_counter()
    try:
        while not interrupt.requested:
            kind, i, payload = messages.get()
            if kind == "done":
                break
            video_id = manifest.video_ids[i]
            if kind == "failed":
                _record_failure(manifest, i, payload, jobs, result)
                bar.update(1)
                continue
            info = payload
            needed = [job for job in jobs if not job.store.is_done(video_id)]
            unique = list({id(j.backbone): j.backbone for j in needed}.values())
            processor = VideoProcessor(unique, shot_detector, config)
            try:
                arrays = processor.run(info.fps, _chunks_of_video(messages), device)
            except _VideoFailed as failed:
                _record_failure(manifest, i, str(failed), jobs, result)
                bar.update(1)
                continue
            extra = {"n_frames": np.array(info.n_frames), "fps": np.array(info.fps)}
            for job in needed:
                job.store.commit(video_id, {**arrays[job.backbone.spec.name], **extra})
            result.videos_done += 1
            result.clips += len(next(iter(arrays.values()))["features"])
            bar.update(1)
            bar.set_postfix(clips_per_s=f"{result.clips / (time.perf_counter() - clock):.1f}")
    finally:
        stop.set()
        while producer.is_alive():  # drain so a producer blocked on put() sees the stop
            try:
                messages.get(timeout=0.05)
            except queue.Empty:
                pass
        bar.close()


def _record_failure(manifest: Manifest, i: int, reason: str, jobs: list[_Job], result) -> None:
    failure = {
        "video_id": manifest.video_ids[i],
        "path": str(manifest.paths[i]),
        "reason": reason,
        "index": i,
    }
    log.warning("skipped %s: %s", manifest.paths[i], reason)
    for job in jobs:
        if not job.store.is_done(failure["video_id"]):
            job.store.commit_failure(failure["video_id"], failure)
    result.failures.append(failure)


def _assemble(
    manifest: Manifest,
    mine: list[int],
    job: _Job,
    shot_detector,
    config: ExtractConfig,
    device: torch.device,
    shard: Shard,
) -> tuple[Path, list]:
    """Write the job's feature file from its committed videos, in manifest order."""
    spec, store = job.backbone.spec, job.store
    failures: list[dict] = []
    meta = FeatureMeta(
        backbone=spec.name,
        family=job.family,
        pretrain=spec.pretrain,
        kind=spec.kind,
        feature_dim=spec.feature_dim,
        frames_per_clip=config.frames_per_clip,
        clip_fps=config.clip_fps,
        input_size=spec.input_size,
        weights=job.backbone.weights_info,
        shot_detector=shot_detector.name,
        config=config.fingerprint(device),
        software_version=__version__,
        failures=failures,
    )
    part = (shard.index, shard.count) if shard.count > 1 else None
    with FeatureWriter(job.output, meta, manifest.label_names, manifest.splits.shape[1], part) as w:
        for i in mine:
            video_id = manifest.video_ids[i]
            arrays = store.load(video_id)
            if arrays is None:
                failures.append(store.failure(video_id))
                continue
            w.add(
                VideoFeatures(
                    video_id=video_id,
                    n_frames=int(arrays["n_frames"]),
                    fps=float(arrays["fps"]),
                    features=arrays["features"],
                    frames=arrays["frames"],
                    shot=arrays["shot"],
                    shots=arrays["shots"],
                    labels=manifest.labels[i],
                    splits=manifest.splits[i],
                    manifest_index=i,
                )
            )
        # The writer serialises meta (and so `failures`, filled above) when the block closes.
    write_failures(job.output, failures)
    return job.output, failures
