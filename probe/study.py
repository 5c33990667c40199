"""`probe study`: the reference work's ablations on your videos, and whether a difference is real.

A study (`vtl.study`) varies how features are cut (segmentation, clip frame rate, frames per
clip: one feature file per value, made by `extract study`) and how clips are aggregated (clips
per window, temporal model, and co-training with other collections, `--co-train` and
`probe.cotrain`: probe settings), around a baseline or as a full grid. Every variant is trained
over the same splits and seeds as the baseline (`probe.tasks`: runs are cached and shared with
the matrix, and spread over shards), and compared with it run for run:

- the variant's test μAP (and mAP, wAP, sAP in the csv), mean ± std over splits x seeds;
- its difference from the baseline, paired over the same split and seed;
- a sign-flip permutation test of that difference (`probe.stats`) and a plain verdict,
  "distinguishable" (p < alpha) or "within noise";
- its cost beside its accuracy: GFLOPs per video and embedding seconds per video (from the
  feature file's `cost` attribute; extraction axes change them, probe axes do not) and training
  seconds per run.

Outputs under the report folder, written by `probe.study_report`: `study.md` (one table per
backbone), `study.csv` (one row per backbone and variant, every metric), `study.json` and
`study.png` (each variant's paired differences with their mean and spread).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probe.catalogue import (
    FileInfo,
    check_splits,
    read_file_info,
    resolve_splits,
)
from probe.config import TrainConfig
from probe.metrics import METRIC_NAMES
from probe.models import PROBES
from probe.stats import ALPHA, paired_test
from probe.study_report import write_outputs
from probe.tasks import Cache, Task, checked_files, run_task, run_tasks, summarize_cell
from vtl.errors import UserError
from vtl.paths import check_output_dir
from vtl.shards import Shard
from vtl.study import (
    AXES,
    DESIGNS,
    EXTRACT_AXES,
    PROBE_AXES,
    StudyPlan,
    baseline_of,
    changed,
    design_variants,
)

log = logging.getLogger(__name__)


@dataclass
class Variant:
    """One backbone's variant: its settings, its file and probe config, its runs."""

    backbone: str
    settings: dict  # axis -> value
    label: str  # "baseline" or what changed
    info: FileInfo
    tasks: list[Task]
    result: dict = field(default_factory=dict)  # summarize_cell's
    comparison: dict = field(default_factory=dict)  # vs the baseline (empty for it)


@dataclass
class StudyResult:
    variants: list[Variant]
    left_out: dict[str, str]  # "backbone: variant" -> reason
    trained: int  # runs trained by this process
    complete: bool
    outputs: dict[str, Path] = field(default_factory=dict)
    markdown: str = ""
    co_train: dict[str, list[str]] = field(default_factory=dict)  # backbone -> co-train files
    videos_left_out: tuple[str, ...] = ()  # not in every file: no variant sees them


def check_study_inputs(plan, features) -> None:
    """Raises UserError unless exactly one of a study (`plan`, --study) and `features` is given."""
    if plan is not None and features:
        raise UserError("give a study (--study DIR) or --features, not both")
    if plan is None and not features:
        raise UserError(
            "give a study (--study DIR, from `extract study`) or --features (one file per backbone)"
        )


def run_study(
    out: str | Path,
    plan: StudyPlan | None = None,
    features: Sequence[str | Path] = (),
    probe_axes: dict[str, list] | None = None,
    splits: Sequence[int] | str = "all",
    seeds: Sequence[int] = (0, 1, 2),
    config: TrainConfig | None = None,
    design: str | None = None,
    alpha: float = ALPHA,
    jobs: int = 1,
    progress: bool = True,
    cache: Cache | str | Path | None = None,
    shard: Shard | None = None,
    co_train: Sequence[str | Path] = (),
) -> StudyResult:
    """Train every variant of a study (what is not cached) and write its report under `out`.

    Args:
        out: the report folder.
        plan: a study made by `extract study` (its extraction axes and files), or None with
            `features`: one feature file per backbone, for a study of the probe axes alone (the
            reference's published Trailers12k features, say).
        probe_axes: probe axis -> values (`vtl.study.PROBE_AXES`: window, model); an axis not
            given stays at `config`'s value.
        splits, seeds: every variant runs every split x seed; the pairs of the tests.
        config: the other training settings (the reference's by default).
        design: "axis" or "grid" (default: the plan's, else "axis").
        alpha: the test's level for the verdict.
        jobs, progress, cache, shard: as `probe.matrix.run_matrix`.
        co_train: feature files of other collections (`probe.cotrain`): the `cotrain` axis
            compares each backbone's probe trained on the target alone with one co-trained with
            the files of its backbone (named by `collection_name`).

    Raises:
        UserError: bad options, files that are missing or disagree, an unusable split or baseline
            (one line, before any training).
    """
    config = TrainConfig.from_dict((config or TrainConfig()).to_dict()).validate()
    out = check_output_dir(out)
    cache = cache if isinstance(cache, Cache) else Cache(cache)
    check_study_inputs(plan, features)
    design = design or (plan.design if plan else "axis")
    if design not in DESIGNS:
        raise UserError(f"--design {design!r}: choose one of {', '.join(DESIGNS)}")
    if plan is not None and design == "grid" and plan.design != "grid":
        raise UserError(
            f"{plan.path}: a grid study needs every extraction variant; extract them with "
            "`extract study --design grid`"
        )
    if not 0 < alpha < 1:
        raise UserError(f"--alpha must be in (0, 1), got {alpha}")
    probe_axes = dict(probe_axes or {})
    bad = [m for m in probe_axes.get("model", []) if m not in PROBES]
    if bad:
        raise UserError(f"--models {bad[0]!r}: choose among {', '.join(PROBES)}")
    axes = dict(plan.axes) if plan else {}
    files = _files(plan, features)
    co_files, co_name = _co_train_files(co_train, files)
    if co_files:
        probe_axes["cotrain"] = [AXES["cotrain"].default, co_name]
    for name in PROBE_AXES:
        if name == "cotrain" and not co_files:
            continue  # no other collection given: not an axis of this study
        axes[name] = list(probe_axes.get(name) or [getattr(config, name)])
    infos = {path: read_file_info(path) for path in {p for f in files.values() for p in f.values()}}
    # the variants that can be probed decide the videos every variant sees
    bad_files, first, excluded = checked_files(list(infos.values()), cache)
    split_list = resolve_splits(splits, first)
    seed_list = [int(s) for s in seeds]
    if not seed_list:
        raise UserError("--seeds must be at least 1")
    check_splits(first, split_list, excluded)

    baseline = baseline_of(axes)
    variants, left_out = [], {}
    for backbone in plan.backbones if plan else list(files[None]):
        for settings in design_variants(axes, design):
            label = changed(settings, baseline)
            path = files[_extraction_key(settings, plan)][backbone]
            info = infos[path]
            if info.path in bad_files:
                if label == "baseline":
                    reason = bad_files[info.path]
                    raise UserError(f"the baseline of {backbone} cannot be probed: {reason}")
                left_out[f"{backbone}: {label}"] = bad_files[info.path]
                continue
            values = {
                **config.to_dict(),
                "model": settings["model"],
                "window": settings["window"],
                "exclude_videos": excluded,
            }
            if settings.get("cotrain", AXES["cotrain"].default) != AXES["cotrain"].default:
                if config.protocol != "reference":  # probe.cotrain trains one setting
                    left_out[f"{backbone}: {label}"] = "co-training has no sweep protocol"
                    continue
                if backbone not in co_files:
                    left_out[f"{backbone}: {label}"] = f"no --co-train file of {backbone}"
                    continue
                values["co_train"] = tuple(str(p) for p in co_files[backbone])
            cell = TrainConfig.from_dict(values)
            tasks = [run_task((info,), cell, s, seed) for s in split_list for seed in seed_list]
            variants.append(Variant(backbone, settings, label, info, tasks))
    for name, reason in left_out.items():
        log.warning("study variant %s left out: %s", name, reason)
    tasks = [t for v in variants for t in v.tasks]
    work = run_tasks(tasks, cache, config, jobs, shard, progress, desc="study")
    result = StudyResult(
        variants, left_out, len(work.trained), work.complete, videos_left_out=excluded
    )
    result.co_train = {b: [str(p) for p in paths] for b, paths in co_files.items()}
    if not work.complete:
        return result
    for variant in variants:
        variant.result = summarize_cell(variant.tasks, work.results)
    for backbone in dict.fromkeys(v.backbone for v in variants):
        mine = [v for v in variants if v.backbone == backbone]
        base = mine[0]
        for variant in mine[1:]:
            variant.comparison = compare(base, variant, alpha)
    out.mkdir(parents=True, exist_ok=True)
    result.outputs = write_outputs(
        out, result, axes, baseline, design, split_list, seed_list, alpha
    )
    result.markdown = result.outputs["md"].read_text()
    return result


def _extraction_key(settings: dict, plan: StudyPlan | None):
    if plan is None:
        return None
    return tuple(settings[name] for name in EXTRACT_AXES)


def _files(plan: StudyPlan | None, features: Sequence[str | Path]) -> dict:
    """extraction key -> backbone -> feature file path (resolved), checked to exist."""
    if plan is None:
        by_backbone = {}
        for path in features:
            info = read_file_info(Path(path))
            if info.backbone in by_backbone:
                raise UserError(
                    f"--features: two files of backbone {info.backbone!r}; a study compares "
                    "settings, give one file per backbone"
                )
            by_backbone[info.backbone] = info.path
        return {None: by_backbone}
    files = {}
    for extraction in plan.extractions:
        key = tuple(extraction["settings"][name] for name in EXTRACT_AXES)
        paths = {}
        for backbone, path in extraction["files"].items():
            path = plan.file(path)
            if not path.is_file():
                raise UserError(
                    f"{plan.path}: {path} is not there; finish the extraction with the same "
                    "`extract study` command (or wait for its last shard)"
                )
            paths[backbone] = path.resolve()
        files[key] = paths
    return files


def _co_train_files(paths: Sequence[str | Path], files: dict) -> tuple[dict, str]:
    """backbone -> the co-train files of that backbone, and the collections' name (the `cotrain`
    axis's value), checked against the study's files (same backbone, same feature size)."""
    targets = {b: Path(p) for extraction in files.values() for b, p in extraction.items()}
    by_backbone: dict[str, list[Path]] = {}
    names = []
    for path in paths:
        info = read_file_info(Path(path))
        target = targets.get(info.backbone)
        if target is None:
            raise UserError(
                f"--co-train {path}: backbone {info.backbone!r} is none of the study's "
                f"({', '.join(sorted(targets))}); co-training needs the same backbone"
            )
        dim = read_file_info(target).feature_dim
        if info.feature_dim != dim:
            raise UserError(
                f"--co-train {path}: {info.feature_dim}-d features, but {target} holds {dim}-d "
                "ones; co-training needs the same backbone"
            )
        by_backbone.setdefault(info.backbone, []).append(info.path)
        names.append(collection_name(info.path, target.resolve()))
    return by_backbone, "+".join(dict.fromkeys(names))


def collection_name(path: Path, target: Path) -> str:
    """A co-trained collection's short name: the folder (or file name) where its path leaves
    the target's (`data/demo2/features/x.h5` beside `data/demo-features/x.h5`: `demo2`)."""
    for mine, theirs in zip(path.parts, target.parts, strict=False):
        if mine != theirs:
            return path.stem if mine == path.name else mine
    return path.stem


def compare(base: Variant, variant: Variant, alpha: float) -> dict:
    """A variant against the baseline over their common (split, seed) runs: the paired
    differences of every metric and the test of the μAP difference."""
    runs_a = {(r["split"], r["seed"]): r for r in base.result["summary"]["runs"]}
    runs_b = {(r["split"], r["seed"]): r for r in variant.result["summary"]["runs"]}
    common = sorted(set(runs_a) & set(runs_b))
    out = {"pairs": [list(k) for k in common], "delta": {}}
    for metric in METRIC_NAMES:
        a = np.array([runs_a[k]["test"][metric] for k in common], dtype=np.float64)
        b = np.array([runs_b[k]["test"][metric] for k in common], dtype=np.float64)
        d = b - a
        out["delta"][metric] = {
            "mean": float(d.mean()),
            "std": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
            "values": d.tolist(),
        }
        if metric == "uap":
            out["test"] = paired_test(a, b, alpha).to_dict()
    return out
