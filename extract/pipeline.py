"""The extraction run: decode each video once, feed shot detection and every output from the same
frames, commit each video as it finishes, and assemble one feature file per output.

    decoder process --chunks--> VideoProcessor (shots, clips, backbones; extract.processor)
                                      --> per-video commit (work store) --> feature files

An output is a backbone and a way of cutting clips; `run_extraction` builds one cutting (its
`ExtractConfig`) for each requested backbone, `extract_targets` several cuttings at once (the
variants of a study), still from one decode of each video.

Fault isolation: anything that goes wrong with one video (any exception while it is opened,
decoded, prepared, shot-detected or embedded; its decoder crashing or passing its time limit)
is that video's failure, recorded with its reason, and the run goes on (`extract.decoder`). A
stop request always stops (`extract.stop`). Everything that can be checked is checked before
any model loads or video opens.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from extract.backbones import (
    FAMILIES,
    REGISTRY,
    Backbone,
    BackboneSpec,
    count_params,
    create_backbone,
    expand_backbones,
    get_spec,
    gflops_per_clip,
)
from extract.decoder import Decoder, Failure, StopRequested, failure_reason
from extract.memory import tune_allocator
from extract.merge import try_merge
from extract.processor import Cutting, Output, VideoProcessor
from extract.shots import SHOT_DETECTORS, make_shot_detector, shot_detector_name
from extract.stop import RESUME_HINT, StopGuard
from extract.store import WorkStore
from extract.video import VideoInfo, header_frames
from extract.weights import require_weights, sha256_file
from vtl import __version__
from vtl.errors import FeatureFileError, UserError
from vtl.features import FeatureFile, FeatureMeta, FeatureWriter, VideoFeatures, write_failures
from vtl.manifest import Manifest, read_manifest
from vtl.paths import check_output_dir
from vtl.progress import progress_bar
from vtl.shards import Shard, assign_shards, resolve_shard

log = logging.getLogger("extract")

# --video-timeout's default: the seconds the run may wait on a video's decoder, in all (a floor
# and 0.25 s a frame: a software 4K HEVC decode runs at 20+ frames/s, a 320x180 one at 2,000; and
# 0.1 s a MB of the file while its index is read), and without a single chunk once its frames
# started (a decoder spinning or blocked fails after TIMEOUT_FLOOR, whatever the video's length).
TIMEOUT_FLOOR = 120.0
TIMEOUT_PER_FRAME = 0.25
TIMEOUT_PER_MB = 0.1


@dataclass
class ExtractConfig:
    """Everything that decides the numbers in a feature file (defaults: the reference work's),
    and `video_timeout`, which does not."""

    segmentation: str = "transnetv2"  # or "fixed"
    threshold: float = 0.5  # TransNetV2 transition probability
    shot_frames: int = 48  # fixed segmentation only
    frames_per_clip: int = 24
    clip_fps: float = 24.0
    min_tail: int | None = None  # frames a shot's last partial clip needs to be kept
    image_frames: int | None = None  # image backbones: embed this many frames per clip (CPU option)
    batch_size: int = 16  # clips per embedding call
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # autocast on CUDA
    channels_last: bool = True  # on CUDA
    video_timeout: float | None = None  # seconds of decoding per video; None: from its length

    def validate(self) -> ExtractConfig:
        """Check every field, as `extract run` options; return self.

        Raises:
            UserError: naming the option and the bad value.
        """
        if self.segmentation not in SHOT_DETECTORS:
            raise UserError(
                f"--segmentation {self.segmentation!r}: choose one of {', '.join(SHOT_DETECTORS)}"
            )
        if not 0.0 <= _number(self.threshold, "--threshold") <= 1.0:
            raise UserError(f"--threshold must be between 0 and 1, got {self.threshold}")
        for name in ("shot_frames", "batch_size"):
            _count(getattr(self, name), name)
        if self.image_frames is not None:
            _count(self.image_frames, "image_frames")
        _count(self.frames_per_clip, "frames_per_clip")
        if not _number(self.clip_fps, "--clip-fps") > 0:
            raise UserError(f"--clip-fps must be a positive frame rate, got {self.clip_fps}")
        if self.min_tail is not None and (
            isinstance(self.min_tail, bool)
            or not isinstance(self.min_tail, int)
            or not 0 <= self.min_tail <= self.frames_per_clip
        ):
            raise UserError(
                f"--min-tail must be a whole number between 0 and --frames-per-clip "
                f"({self.frames_per_clip}), got {self.min_tail!r}"
            )
        timeout = self.video_timeout
        if timeout is not None and not _number(timeout, "--video-timeout") > 0:
            raise UserError(
                f"--video-timeout must be a positive number of seconds, got {self.video_timeout}"
            )
        resolve_device(self.device, check=False)
        return self

    def cutting(self) -> Cutting:
        return Cutting(
            segmentation=self.segmentation,
            threshold=float(self.threshold),
            shot_frames=int(self.shot_frames),
            frames_per_clip=int(self.frames_per_clip),
            clip_fps=float(self.clip_fps),
            min_tail=self.min_tail,
        )

    def fingerprint(self, device: torch.device) -> dict:
        """The configuration a feature file records: what decides its numbers."""
        values = {k: v for k, v in asdict(self).items() if k != "video_timeout"}
        values["device"] = device.type  # shards on cuda:0 and cuda:1 compute the same numbers
        values["amp"] = self.amp and device.type == "cuda"
        values["channels_last"] = self.channels_last and device.type == "cuda"
        return values


CUTTING_FIELDS = tuple(f.name for f in fields(Cutting))


def _number(value, option: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(f"{option} must be a finite number, got {value!r}")
    return float(value)


def _count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"--{name.replace('_', '-')} must be a whole number >= 1, got {value!r}")
    return value


@dataclass
class ExtractResult:
    files: dict[str, Path] = field(default_factory=dict)  # output key -> file (final or part)
    merged: dict[str, Path] = field(default_factory=dict)  # output key -> merged file
    failures: list[dict] = field(default_factory=list)
    interrupted: bool = False
    videos_done: int = 0
    clips: int = 0
    seconds: float = 0.0
    decoded: int = 0  # videos decoded in this run (each once, whatever the outputs)
    reused: dict[Path, Path] = field(default_factory=dict)  # final path -> existing equal file


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


def resolve_device(device: str, check: bool = True) -> torch.device:
    """The torch device for `--device` (auto: CUDA when there is one)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"--device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if resolved.type not in ("cpu", "cuda"):
        raise UserError(f"--device {device!r}: use auto, cpu, cuda or cuda:N")
    if check and resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available here; use --device cpu or auto")
    return resolved


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class _Job:
    """One feature file being built in this run."""

    key: str  # the backbone's name (name@family if one run writes it to two families; with
    # several targets, prefixed by the target's folder)
    spec: BackboneSpec
    family: str  # the folder and the `family` attribute of the file
    config: ExtractConfig  # its target's: how it cuts clips
    final: Path  # the merged / single-process file
    output: Path  # what this process writes: the final file or its shard's part
    fingerprint: dict
    store: WorkStore | None = None
    backbone: Backbone | None = None


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
    Output keys in the result are backbone names (`name@family` when one name goes to two
    families).
    """
    return extract_targets(
        manifest_path, backbones, [(config or ExtractConfig(), Path(out_dir))], weights,
        cache_dir, shard, merge, progress,
    )  # fmt: skip


def _keyed(plan: list[tuple[BackboneSpec, str]]) -> list[tuple[str, BackboneSpec, str]]:
    """(output key, backbone, family) of a plan: the backbone's name, or name@family when one
    backbone goes to two families."""
    return [
        (spec.name if sum(s is spec for s, _ in plan) == 1 else f"{spec.name}@{family}", spec,
         family)
        for spec, family in plan
    ]  # fmt: skip


def target_outputs(out_dir: Path, backbones: str | list[str]) -> dict[str, Path]:
    """The final feature file of each requested backbone under `out_dir`, by output key."""
    return {
        key: feature_path(out_dir, spec, family)
        for key, spec, family in _keyed(output_plan(backbones))
    }


def extract_targets(
    manifest_path: str | Path,
    backbones: str | list[str],
    targets: list[tuple[ExtractConfig, Path]],
    weights: str | Path | dict | None = None,
    cache_dir: Path | None = None,
    shard: Shard | str | None = None,
    merge: bool = True,
    progress: bool = True,
    reuse: Sequence[Path] = (),
) -> ExtractResult:
    """`run_extraction` for several (config, output folder) targets at once, from one decode of
    each video. The configs may differ only in how they cut clips (`CUTTING_FIELDS`); with more
    than one target, output keys are `<output folder>/<backbone>`.

    `reuse`: folders searched for finished feature files made with the same backbone, weights and
    configuration from the same manifest; an output found there is not extracted again
    (`ExtractResult.reused` says where it is)."""
    started = time.perf_counter()
    configs = [config.validate() for config, _ in targets]
    base = configs[0]
    for config in configs[1:]:
        shared = {k: v for k, v in asdict(config).items() if k not in CUTTING_FIELDS}
        if shared != {k: v for k, v in asdict(base).items() if k not in CUTTING_FIELDS}:
            raise UserError("targets of one extraction may differ only in how they cut clips")
    for _, out_dir in targets:
        check_output_dir(out_dir)
    manifest = read_manifest(manifest_path)
    plan = output_plan(backbones)
    specs = list(dict.fromkeys(spec for spec, _ in plan))
    device = resolve_device(_local_device(base.device))
    weight_files = require_weights(specs, weights=weights, cache_dir=cache_dir)
    shard = shard if isinstance(shard, Shard) else resolve_shard(shard)
    mine = _shard_videos(manifest, shard)

    result = ExtractResult()
    jobs = _plan_jobs(targets, plan, weight_files, device, shard)
    candidates = _finished_files(reuse)
    todo_jobs = []
    for job in jobs:
        found = next((p for p, m in candidates if _same_output(m, job.fingerprint, manifest)), None)
        if found is not None and not job.final.exists():
            log.info("%s: reusing %s (same backbone, weights and configuration)", job.final, found)
            result.reused[job.final] = found
            continue
        if _already_written(job.output, job.fingerprint, manifest, mine):
            log.info("%s: already complete", job.output)
            result.files[job.key] = job.output
            with FeatureFile(job.output) as done:
                result.failures = done.meta.failures
            continue
        job.store = WorkStore(job.output.with_name(f".{job.output.stem}.work"), job.fingerprint)
        todo_jobs.append(job)

    with StopGuard() as guard:
        try:
            if todo_jobs:
                _extract_videos(manifest, mine, todo_jobs, base, device, weight_files, guard,
                                result, progress)  # fmt: skip
        except KeyboardInterrupt:
            guard.requested = True
    if guard.requested:
        result.interrupted = True
        log.warning(
            "stopped with %d of %d videos committed; %s",
            sum(todo_jobs[0].store.is_done(manifest.video_ids[i]) for i in mine),
            len(mine),
            RESUME_HINT,
        )
        return result

    for job in todo_jobs:
        result.files[job.key], result.failures = _assemble(manifest, mine, job, shard)
        job.store.remove()
    if shard.count > 1 and merge:
        for job in jobs:
            if job.final in result.reused:
                continue
            merged = try_merge(job.final, shard.count)
            if merged:
                result.merged[job.key] = merged
    result.seconds = time.perf_counter() - started
    return result


def _plan_jobs(targets, plan, weight_files, device, shard) -> list[_Job]:
    """A job per (target, backbone): its paths and fingerprint (no model is loaded)."""
    jobs = []
    for config, out_dir in targets:
        for key, spec, family in _keyed(plan):
            if len(targets) > 1:
                key = f"{out_dir}/{key}"
            final = feature_path(out_dir, spec, family)
            output = final if shard.count == 1 else final.with_name(f"{final.stem}.{shard.tag}.h5")
            path = weight_files[spec.name]
            fingerprint = {
                "backbone": spec.name,
                "family": family,
                "weights": {"name": path.name, "sha256": sha256_file(path)},
                "shot_detector": shot_detector_name(
                    config.segmentation, config.threshold, config.shot_frames
                ),
                "config": config.fingerprint(device),
                "software_version": __version__,
            }
            jobs.append(_Job(key, spec, family, config, final, output, fingerprint))
    return jobs


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


def _same_run(meta: FeatureMeta, fingerprint: dict) -> bool:
    """A file's metadata says it was made by a run with this fingerprint."""
    return (
        meta.backbone == fingerprint["backbone"]
        and meta.family == fingerprint["family"]
        and meta.weights == fingerprint["weights"]
        and meta.config == fingerprint["config"]
        and meta.shot_detector == fingerprint["shot_detector"]
    )


def _finished_files(folders: Sequence[Path]) -> list[tuple[Path, tuple[FeatureMeta, set]]]:
    """(path, (metadata, videos covered)) of the finished feature files under `folders`."""
    found = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.h5")):
            try:
                with FeatureFile(path) as f:
                    if f.part is None:
                        covered = set(f.video_ids) | {x["video_id"] for x in f.meta.failures}
                        found.append((path, (f.meta, covered)))
            except FeatureFileError:
                continue
    return found


def _same_output(found: tuple[FeatureMeta, set], fingerprint: dict, manifest: Manifest) -> bool:
    meta, covered = found
    return _same_run(meta, fingerprint) and covered == set(manifest.video_ids)


def _already_written(path: Path, fingerprint: dict, manifest: Manifest, mine: list[int]) -> bool:
    """True when `path` is this very run's finished output; refuses a different file there."""
    if not path.exists():
        return False
    try:
        with FeatureFile(path) as existing:
            same = _same_run(existing.meta, fingerprint)
            covered = set(existing.video_ids) | {f["video_id"] for f in existing.meta.failures}
    except FeatureFileError:
        same, covered = False, set()
    if same and covered == {manifest.video_ids[i] for i in mine}:
        return True
    raise UserError(
        f"{path} exists and was made with another configuration or manifest; "
        "delete it or choose another --out"
    )


def decode_limits(config: ExtractConfig, manifest: Manifest) -> dict:
    """The Decoder's `timeout` and `stall` arguments: `--video-timeout` alone when given, else
    a total from the video's frames (its size in MB before they are counted) and a limit on time
    without progress."""

    def limit(index: int, info: VideoInfo | None) -> float:
        if config.video_timeout is not None:
            return float(config.video_timeout)
        if info is not None:
            return TIMEOUT_FLOOR + TIMEOUT_PER_FRAME * info.n_frames
        try:
            size_mb = manifest.paths[index].stat().st_size / 2**20
        except OSError:
            size_mb = 0.0
        return TIMEOUT_FLOOR + TIMEOUT_PER_MB * size_mb

    return {"timeout": limit, "stall": None if config.video_timeout is not None else TIMEOUT_FLOOR}


def _extract_videos(
    manifest: Manifest,
    mine: list[int],
    jobs: list[_Job],
    config: ExtractConfig,
    device: torch.device,
    weight_files: dict[str, Path],
    guard: StopGuard,
    result: ExtractResult,
    progress: bool,
) -> None:
    todo = [i for i in mine if not all(j.store.is_done(manifest.video_ids[i]) for j in jobs)]
    if not todo:
        return
    tune_allocator()
    cuttings = list(dict.fromkeys(job.config.cutting() for job in jobs))
    detectors = {}
    for cutting in cuttings:
        if cutting.shot_key not in detectors:
            detectors[cutting.shot_key] = make_shot_detector(
                cutting.segmentation, device, cutting.threshold, cutting.shot_frames
            )
    models = {}
    for job in jobs:
        if job.spec.name not in models:
            models[job.spec.name] = create_backbone(
                job.spec, weights=weight_files[job.spec.name], device=device,
                image_frames=config.image_frames, amp=config.amp,
                channels_last=config.channels_last,
            )  # fmt: skip
        job.backbone = models[job.spec.name]

    def interrupt() -> None:
        if guard.requested:
            raise StopRequested

    min_seconds = min(c.frames_per_clip / c.clip_fps for c in cuttings)
    bar = progress_bar(len(mine), "extract", "video", not progress, len(mine) - len(todo))
    clock = time.perf_counter()
    decoder = Decoder(
        [(i, manifest.paths[i]) for i in todo],
        min_seconds,
        stop=guard.check,
        pin_memory=device.type == "cuda",
        **decode_limits(config, manifest),
    )
    try:
        for item in decoder:
            if isinstance(item, Failure):
                _record_failure(manifest, item.index, item.reason, jobs, result)
                bar.update(1)
                continue
            i, info = item.index, item.info
            video_id = manifest.video_ids[i]
            needed = [job for job in jobs if not job.store.is_done(video_id)]
            outputs = [Output(j.key, j.config.cutting(), j.backbone) for j in needed]
            keys = {o.cutting.shot_key for o in outputs}
            processor = VideoProcessor(
                outputs, {k: detectors[k] for k in keys}, config.batch_size, interrupt
            )
            try:
                arrays, _ = processor.run(info.fps, item.chunks(), device)
            except StopRequested:
                raise
            except Exception as error:  # any failure of any kind is this video's
                _record_failure(manifest, i, failure_reason(error), jobs, result)
                item.discard()
                bar.update(1)
                continue
            scalars = {"n_frames": np.array(info.n_frames), "fps": np.array(info.fps)}
            for job in needed:
                job.store.commit(video_id, {**arrays[job.key], **scalars})
            result.videos_done += 1
            result.clips += len(arrays[needed[0].key]["features"])
            bar.update(1)
            bar.set_postfix(clips_per_s=f"{result.clips / (time.perf_counter() - clock):.1f}")
    except StopRequested:
        guard.requested = True
    finally:
        result.decoded += decoder.opened
        decoder.close()
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


def _assemble(manifest: Manifest, mine: list[int], job: _Job, shard: Shard) -> tuple[Path, list]:
    """Write the job's feature file from its committed videos, in manifest order."""
    spec, store, config = job.spec, job.store, job.config
    failures: list[dict] = []
    # The frames an image backbone embeds per clip (a video backbone's figure is per clip).
    embedded = config.image_frames or config.frames_per_clip
    cost = {
        "params_m": round(count_params(spec) / 1e6, 4),
        "gflops_per_clip": round(gflops_per_clip(spec, embedded), 4),
        "embed_seconds": 0.0,
        "videos": 0,
        "clips": 0,
    }
    meta = FeatureMeta(
        backbone=spec.name,
        family=job.family,
        pretrain=spec.pretrain,
        kind=spec.kind,
        feature_dim=spec.feature_dim,
        frames_per_clip=config.frames_per_clip,
        clip_fps=config.clip_fps,
        input_size=spec.input_size,
        weights=job.fingerprint["weights"],
        shot_detector=job.fingerprint["shot_detector"],
        config=job.fingerprint["config"],
        software_version=__version__,
        failures=failures,
        cost=cost,
    )
    part = (shard.index, shard.count) if shard.count > 1 else None
    with FeatureWriter(job.output, meta, manifest.label_names, manifest.splits.shape[1], part) as w:
        for i in mine:
            video_id = manifest.video_ids[i]
            arrays = store.load(video_id)
            if arrays is None:
                failures.append(store.failure(video_id))
                continue
            cost["embed_seconds"] += float(arrays.get("embed_seconds", 0.0))
            cost["videos"] += 1
            cost["clips"] += len(arrays["features"])
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
        cost["embed_seconds"] = round(cost["embed_seconds"], 3)
        # The writer serialises meta (and so `failures` and `cost`, filled above) on close.
    write_failures(job.output, failures)
    return job.output, failures
