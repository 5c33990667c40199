"""The extraction run: decode each video once, feed shot detection and every output from the same
frames, commit each video as it finishes, and assemble one feature file per output.

    decoder process --chunks--> VideoProcessor (shots, clips, backbones; extract.processor)
                                      --> per-video commit (work store) --> feature files

An output is a backbone and a way of cutting clips; `run_extraction` builds one cutting (its
`ExtractConfig`, `extract.config`) for each requested backbone, `extract_targets` several
cuttings at once (the variants of a study), still from one decode of each video. Which files a
run writes, and whether they are already there, is `extract.outputs`.

Fault isolation: anything that goes wrong with one video (any exception while it is opened,
decoded, prepared, shot-detected or embedded; its decoder crashing or passing its time limit)
is that video's failure, recorded with its reason, and the run goes on (`extract.video_loop`).
A stop request always stops (`extract.stop`). Everything that can be checked is checked before
any model loads or video opens.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from extract.backbones import create_backbone
from extract.config import CUTTING_FIELDS, ExtractConfig, decode_limits, resolve_device
from extract.decoder import StopRequested
from extract.memory import tune_allocator
from extract.merge import try_merge
from extract.outputs import (
    OutputJob,
    already_written,
    assemble,
    changed_failures,
    check_no_sample_lost,
    feature_path,
    finished_files,
    finished_over,
    finished_samples,
    full_output,
    output_plan,
    plan_jobs,
    refresh_truth,
    samples_to_grow,
    seed_from_finished,
    seed_from_sample,
    sibling_samples,
    target_outputs,
)
from extract.processor import Output, VideoProcessor
from extract.shots import make_shot_detector
from extract.stop import RESUME_HINT, StopGuard
from extract.store import WorkStore, work_folder
from extract.video_loop import Processed, VideoLoop, failure_record
from extract.weights import require_weights
from vtl.errors import UserError
from vtl.features import FeatureFile
from vtl.headers import fill_unknown, header_frames
from vtl.lock import lock_outputs
from vtl.manifest import Manifest, read_manifest
from vtl.paths import check_output_dir
from vtl.progress import progress_bar
from vtl.sample import sample_count, sample_record, stratified_sample
from vtl.shards import Shard, assign_shards, resolve_shard

__all__ = [
    "ExtractConfig",
    "ExtractResult",
    "extract_targets",
    "feature_path",
    "output_plan",
    "resolve_device",
    "run_extraction",
    "target_outputs",
]

log = logging.getLogger("extract")


@dataclass
class ExtractResult:
    """What a run did: the files it wrote or reused, the videos that failed, and its counts."""

    files: dict[str, Path] = field(default_factory=dict)  # output key -> file (final or part)
    merged: dict[str, Path] = field(default_factory=dict)  # output key -> merged file
    failures: list[dict] = field(default_factory=list)
    interrupted: bool = False
    videos_done: int = 0
    clips: int = 0
    seconds: float = 0.0
    decoded: int = 0  # videos decoded in this run (each once, whatever the outputs)
    reused: dict[Path, Path] = field(default_factory=dict)  # final path -> existing equal file
    from_sample: int = 0  # videos taken from an earlier sample's file instead of decoded
    sample: dict = field(default_factory=dict)  # the record of a sampled run (`sample=`)


def run_extraction(
    manifest_path: str | Path,
    backbones: str | list[str],
    out_dir: str | Path,
    config: ExtractConfig | None = None,
    **options,
) -> ExtractResult:
    """Extract clip features of every video in the manifest (or this shard's share of it):
    `extract_targets` with the one target (`config`, `out_dir`); `options` as there (`weights`,
    `cache_dir`, `shard`, `merge`, `progress`, `sample`, `sample_seed`).

    Writes `feature_path(out_dir, spec, family)` per backbone (a part file per shard; the last
    shard to finish merges the parts when `merge`). Resumable: rerunning the same command continues
    where a killed run stopped. Videos that cannot be used are listed as failures, not fatal.
    Output keys in the result are backbone names (`name@family` when one name goes to two
    families).
    """
    return extract_targets(
        manifest_path, backbones, [(config or ExtractConfig(), Path(out_dir))], **options
    )


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
    sample: int | float | None = None,
    sample_seed: int = 0,
) -> ExtractResult:
    """`run_extraction` for several (config, output folder) targets at once, from one decode of
    each video. The configs may differ only in how they cut clips (`CUTTING_FIELDS`); with more
    than one target, output keys are `<output folder>/<backbone>`.

    `reuse`: folders searched for finished feature files made with the same backbone, weights and
    configuration from the same manifest; an output found there is not extracted again
    (`ExtractResult.reused` says where it is).

    `sample`: extract only a sample of the videos, a count or a fraction in (0, 1], drawn by
    `vtl.sample.stratified_sample` with `sample_seed` (every shard draws the same sample, then
    takes its share) and recorded in the file's `sample` attribute. It is not part of the
    configuration: a later run with the same settings over more videos (the full collection, a
    larger sample) takes the sample file's videos and decodes only the others; a larger sample
    with the same `sample_seed` is grown from it (`samples_to_grow`), so it holds all of them.
    """
    started = time.perf_counter()
    configs = [config.validate() for config, _ in targets]
    base = configs[0]
    for config in configs[1:]:
        if _shared_settings(config) != _shared_settings(base):
            raise UserError("targets of one extraction may differ only in how they cut clips")
    for _, out_dir in targets:
        check_output_dir(out_dir)
    manifest = read_manifest(manifest_path)
    _check_sample(manifest, sample, sample_seed)
    unresolved: dict[str, str] = {}  # hub names offline: said with every missing checkpoint
    plan = output_plan(backbones, unresolved)
    specs = list(dict.fromkeys(spec for spec, _ in plan))
    device = resolve_device(_local_device(base.device))
    weight_files = require_weights(specs, weights, cache_dir, unresolved=unresolved)
    shard = shard if isinstance(shard, Shard) else resolve_shard(shard)

    result = ExtractResult()
    jobs = plan_jobs(targets, plan, weight_files, device, shard)
    # One owner per output: every work folder is locked before anything is read or written
    # there (a second run stops with one line, or waits with --wait; a --wait run then finds
    # the finished file complete), until the files are assembled and merged.
    with lock_outputs([work_folder(job.output) for job in jobs], wait=base.wait):
        folders = [out_dir for _, out_dir in targets]
        chosen, kept = _sample_videos(manifest, sample, sample_seed, jobs, folders)
        mine = _shard_videos(manifest, shard, chosen)
        if sample is not None:
            result.sample = sample_record(
                chosen, manifest.video_ids, sample, sample_seed, grown_from=kept or None
            )
        candidates = finished_files(reuse)
        todo_jobs = []
        pending: list = []  # (job, failed videos to try again) that have work to do
        conflicts: list[str] = []  # files at the output made otherwise

        def _finished(path: Path, key: str, why: str) -> None:
            # a finished file this run adds nothing to: its labels brought up to the
            # manifest's, its failures reported as this run's
            log.info("%s: %s", path, why)
            _refresh_truth(path, manifest)
            result.files[key] = path
            with FeatureFile(path) as done:
                result.failures = done.meta.failures

        for job in jobs:
            found = next(
                (p for p, f in candidates if f.is_output_of(job.fingerprint, manifest)), None
            )
            if found is not None and not job.final.exists():
                log.info(
                    "%s: reusing %s (same backbone, weights and configuration)", job.final, found
                )
                _refresh_truth(found, manifest)
                result.reused[job.final] = found
                continue
            if sample is not None and full_output(job.final, job.fingerprint, manifest):
                _finished(job.final, job.key, "already holds every video; no sample is needed")
                continue
            if shard.count > 1 and finished_over(job.final, job.fingerprint, manifest, chosen):
                _finished(job.final, job.key, "already complete (its shards merged)")
                continue
            retry: list[str] = []
            try:
                written = already_written(job.output, job.fingerprint, manifest, mine)
            except UserError as error:  # every such file named at once, before any work
                conflicts.append(str(error))
                continue
            if written:
                retry = changed_failures(job.output, manifest, mine)
                if not retry:
                    _finished(job.output, job.key, "already complete")
                    continue
                log.warning(
                    "%s: trying again %d failed videos whose files changed since (%s)",
                    job.output,
                    len(retry),
                    ", ".join(retry[:3]) + (" ..." if len(retry) > 3 else ""),
                )
            pending.append((job, retry))
        if conflicts:
            raise UserError("\nerror: ".join(conflicts))
        for job, retry in pending:
            job.store = WorkStore(work_folder(job.output), job.fingerprint)
            if retry:
                seed_from_finished(job, manifest, mine, retry)
            seeded = seed_from_sample(job, manifest, mine)
            if seeded:
                log.info("%s: %d videos taken from the sample in %s", job.key, seeded, job.final)
                result.from_sample += seeded
            todo_jobs.append(job)

        with StopGuard() as guard:
            try:
                if todo_jobs:
                    run = _Run(manifest, todo_jobs, base, device, guard, result)
                    run.extract(mine, weight_files, progress)
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
            result.files[job.key], result.failures = assemble(
                manifest, mine, job, shard, sample=result.sample
            )
            others = job.store.others(manifest.video_ids[i] for i in mine)
            if others:  # an interrupted run over more videos: kept for when it resumes
                log.info(
                    "%s: %d finished videos of an interrupted run over more videos kept in %s "
                    "(a full run takes them)",
                    job.key,
                    others,
                    job.store.folder,
                )
            else:
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


def _clip_seconds(job: OutputJob) -> float:
    """How long a video must be for one clip of the job's cutting (the decoder's bound)."""
    return job.config.frames_per_clip / job.config.clip_fps


def _shared_settings(config: ExtractConfig) -> dict:
    """The settings every target of one extraction must agree on: all but the cutting."""
    return {k: v for k, v in asdict(config).items() if k not in CUTTING_FIELDS}


def _local_device(device: str) -> str:
    # Under torchrun each process takes the GPU of its LOCAL_RANK.
    if device == "auto" and "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        return f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    return device


def _refresh_truth(path: Path, manifest: Manifest) -> None:
    """A finished file's labels and splits brought up to the manifest's, said in one line."""
    changed = refresh_truth(path, manifest)
    if changed:
        log.warning(
            "%s: labels or splits of %d videos updated from %s (corrected since the file was "
            "written; the features do not depend on them)",
            path,
            changed,
            manifest.path,
        )


def _check_sample(manifest: Manifest, sample: int | float | None, seed: int) -> None:
    """`--sample` and `--sample-seed` checked before any model loads or video opens."""
    if sample is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"--sample-seed must be a whole number >= 0, got {seed!r}")
    sample_count(sample, len(manifest))  # a size the collection cannot give is one line


def _sample_videos(
    manifest: Manifest,
    sample: int | float | None,
    seed: int,
    jobs: list[OutputJob],
    folders: Sequence[Path],
) -> tuple[list[int], int]:
    """The manifest rows a run extracts: all of them, or the stratified sample, and how many of
    them it keeps from finished samples drawn with this seed (`samples_to_grow`): its own
    smaller one (growing a sample re-extracts none of its videos) and other backbones' in the
    output `folders` (every candidate of one comparison holds the same videos). Every shard
    draws the same.

    Raises:
        UserError: another backbone's sample of this seed is larger than the one asked for.
    """
    if sample is None:
        return list(range(len(manifest))), 0
    n = sample_count(sample, len(manifest))
    samples = finished_samples(jobs)  # read once: grown from, and checked against
    siblings = sibling_samples(folders, jobs)
    other_seeds = sorted({r.get("seed") for _, r in siblings} - {seed}, key=str)
    if other_seeds:
        log.warning(
            "%s holds other backbones' samples of seed %s; this one draws seed %d: `probe "
            "recommend` compares candidates on the videos all of them hold",
            folders[0],
            ", ".join(map(str, other_seeds)),
            seed,
        )
    theirs = samples_to_grow(siblings, manifest, seed)
    if len(theirs) > n:
        path = next(p for p, record in siblings if record.get("seed") == seed)
        raise UserError(
            f"{path} holds a sample of {len(theirs)} videos (seed {seed}) of another backbone, "
            f"more than the {n} asked for: the candidates of one comparison need the same "
            f"videos; ask for --sample {len(theirs)} (or more), or use another --sample-seed "
            "or --out"
        )
    keep = sorted(set(samples_to_grow(samples, manifest, seed)) | set(theirs))
    if len(keep) > n:  # a smaller sample than the finished one: refused below
        keep = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        picked = stratified_sample(manifest.labels, manifest.splits, sample, seed, keep=keep)
    for warning in caught:  # a sample too small for every label: one log line, not a traceback
        log.warning("%s", warning.message)
    check_no_sample_lost(samples, {manifest.video_ids[i] for i in picked})
    if len(keep) == n:
        held = ", the videos of the finished samples with this seed"
    else:
        held = f", growing the finished samples of {len(keep)} with this seed" if keep else ""
    log.info("a sample of %d of %d videos (seed %d%s)", len(picked), len(manifest), seed, held)
    return [int(i) for i in picked], len(keep)


def _shard_videos(manifest: Manifest, shard: Shard, videos: list[int]) -> list[int]:
    """This shard's share of `videos` (manifest rows), balanced by frame count."""
    if shard.count == 1:
        return videos
    lengths, _ = fill_unknown([header_frames(manifest.paths[i]) for i in videos], 1.0)
    assignment = assign_shards(lengths, shard.count)
    return [i for i, s in zip(videos, assignment, strict=True) if s == shard.index]


@dataclass(eq=False)
class _Run:
    """The videos still to do, each decoded once and processed for every output that needs it,
    committed to the outputs' work stores as it finishes."""

    manifest: Manifest
    jobs: list[OutputJob]
    config: ExtractConfig
    device: torch.device
    guard: StopGuard
    result: ExtractResult
    detectors: dict = field(default_factory=dict)  # shot key -> detector (`_load_models`)

    def extract(self, mine: list[int], weight_files: dict[str, Path], progress: bool) -> None:
        """Process every video of `mine` not yet committed by every job."""
        manifest, jobs, config, result = self.manifest, self.jobs, self.config, self.result
        todo = [i for i in mine if not all(j.store.is_done(manifest.video_ids[i]) for j in jobs)]
        if not todo:
            return
        tune_allocator()
        cuttings = list(dict.fromkeys(job.config.cutting() for job in jobs))
        self._load_models(cuttings, weight_files)
        min_seconds = min(map(_clip_seconds, jobs))  # the decoder skips only shorter videos
        bar = progress_bar(len(mine), "extract", "video", not progress, len(mine) - len(todo))
        clock = mark = time.perf_counter()
        videos = VideoLoop(
            manifest,
            todo,
            self._process,
            bar,
            min_seconds=min_seconds,
            stop=self.guard.check,
            pin_memory=self.device.type == "cuda",
            small=any(d.needs_frames for d in self.detectors.values()),
            **decode_limits(config, manifest),
        )
        try:
            with videos:
                for outcome in videos:
                    # The video's wall time in this run: waiting for its frames, shot
                    # detection, preparing frames and the embeddings.
                    seconds = time.perf_counter() - mark
                    if not isinstance(outcome, Processed):
                        self._fail(outcome)
                    else:
                        self._commit(outcome, seconds)
                        speed = result.clips / (time.perf_counter() - clock)
                        bar.set_postfix(clips_per_s=f"{speed:.1f}")
                    mark = time.perf_counter()
        except StopRequested:
            self.guard.requested = True
        finally:
            result.decoded += videos.decoder.opened

    def _load_models(self, cuttings: list, weight_files: dict[str, Path]) -> None:
        """One shot detector per shot stream and one model per backbone, shared by the jobs."""
        for cutting in cuttings:
            if cutting.shot_key not in self.detectors:
                self.detectors[cutting.shot_key] = make_shot_detector(
                    cutting.segmentation, self.device, cutting.threshold, cutting.shot_frames
                )
        models = {}
        for job in self.jobs:
            if job.spec.name not in models:
                models[job.spec.name] = create_backbone(
                    job.spec,
                    weights=weight_files[job.spec.name],
                    device=self.device,
                    image_frames=self.config.image_frames,
                    amp=self.config.amp,
                    channels_last=self.config.channels_last,
                )
            job.backbone = models[job.spec.name]

    def _interrupt(self) -> None:
        if self.guard.requested:
            raise StopRequested

    def _process(self, index: int, info, chunks) -> tuple[list[OutputJob], dict]:
        """One video's arrays for every job that still needs it."""
        video_id = self.manifest.video_ids[index]
        needed = [job for job in self.jobs if not job.store.is_done(video_id)]
        # A target whose clip is longer than the video fails it, as a run of that target alone
        # does before decoding (the decoder skips only what is shorter than every clip).
        short = [job for job in needed if info.seconds < _clip_seconds(job)]
        needed = [job for job in needed if job not in short]
        if not needed:
            for _ in chunks:  # the decoder's frames, read to the end of the video
                pass
            return needed, {}, short
        outputs = [Output(j.key, j.config.cutting(), j.backbone, j.config.logits) for j in needed]
        keys = {o.cutting.shot_key for o in outputs}
        processor = VideoProcessor(
            outputs,
            {k: self.detectors[k] for k in keys},
            self.config.batch_size,
            self._interrupt,
        )
        arrays, _ = processor.run(info.fps, chunks, self.device)
        return needed, arrays, short

    def _commit(self, video: Processed, seconds: float) -> None:
        """Commit a processed video to the work store of every job that needed it; `seconds`
        is its wall time in this run, of which what the embeddings did not take (decoding,
        shot detection, preparing frames) is shared by the run's backbones."""
        needed, arrays, short = video.value
        video_id = self.manifest.video_ids[video.index]
        failures = {}  # one per clip length: its backbones share it, and the run counts it once
        for job in short:
            clip = _clip_seconds(job)
            if clip not in failures:
                reason = (
                    f"shorter than one clip ({video.info.n_frames} frames at "
                    f"{video.info.fps:g} fps < {clip:g} s)"
                )
                failures[clip] = failure_record(self.manifest, video.index, reason)
            job.store.commit_failure(video_id, failures[clip])
        self.result.failures += list(failures.values())
        if not needed:
            return
        embedding = sum(float(arrays[job.key]["embed_seconds"]) for job in needed)
        scalars = {
            "n_frames": np.array(video.info.n_frames),
            "fps": np.array(video.info.fps),
            "concealed": np.array(video.concealed),
            "shared_seconds": np.array(max(0.0, seconds - embedding)),
        }
        if video.concealed:
            log.warning(
                "%s: %d of %d frames concealed (a damaged stream decoded around)",
                self.manifest.paths[video.index],
                video.concealed,
                video.info.n_frames,
            )
        for job in needed:
            job.store.commit(video_id, {**arrays[job.key], **scalars})
        self.result.videos_done += 1
        self.result.clips += len(arrays[needed[0].key]["features"])

    def _fail(self, failure: dict) -> None:
        for job in self.jobs:
            if not job.store.is_done(failure["video_id"]):
                job.store.commit_failure(failure["video_id"], failure)
        self.result.failures.append(failure)
