"""`extract study`: every extraction variant of a study from one decode of each video.

The extraction axes of a study (`vtl.study`: segmentation, clip frame rate, frames per clip)
make one feature file per variant and backbone, under `<out>/<variant>/<family>/`, the variants
named as the reference names its stores (`transnetv2_fps24_fpc24`). All of them come from one
pass over the videos (`extract.pipeline.extract_targets`): each video is decoded once and
TransNetV2 runs once for every variant that segments by shots. Files already finished, here or
in `reuse` folders (the demo's features, say), are used as they are. The plan, with every
variant's files, goes to `<out>/study.json` for `probe study`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from extract.config import ExtractConfig
from extract.outputs import target_outputs
from extract.pipeline import ExtractResult, extract_targets
from vtl.atomic import write_text
from vtl.shards import Shard
from vtl.study import EXTRACT_AXES, StudyPlan, check_axes, design_variants, extraction_name


@dataclass
class StudyExtraction:
    """A study's plan (its variants and their files), the run's result and where the plan is."""

    plan: StudyPlan
    result: ExtractResult
    path: Path  # study.json


def _recorded(path: Path, out_dir: Path) -> str:
    """A variant's file as study.json records it: relative to the study's folder when inside it
    (the folder may move), else absolute (never relative to where the command ran)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path(out_dir).resolve()))
    except ValueError:
        return str(path)


def extract_study(
    manifest_path: str | Path,
    backbones: str | list[str],
    out_dir: str | Path,
    axes: dict[str, list],
    design: str = "axis",
    config: ExtractConfig | None = None,
    reuse: list[Path] | tuple = (),
    weights=None,
    cache_dir: Path | None = None,
    shard: Shard | str | None = None,
    merge: bool = True,
    progress: bool = True,
) -> StudyExtraction:
    """Extract every extraction variant of a study and write its plan (`study.json`).

    Args:
        axes: extraction axis -> values (`vtl.study.EXTRACT_AXES`; an axis not given keeps the
            value of `config`).
        design: "axis" (one axis at a time around the baseline) or "grid".
        config: the other extraction settings, shared by every variant.
        reuse: folders holding finished feature files to use instead of extracting them again.
        The rest as `extract.pipeline.run_extraction`.
    """
    out_dir = Path(out_dir)
    config = config or ExtractConfig()
    check_axes(axes)
    full = {name: list(axes.get(name) or [getattr(config, name)]) for name in EXTRACT_AXES}
    variants = []
    for settings in design_variants(full, design):
        if settings not in variants:
            variants.append(settings)
    targets = [
        (replace(config, **settings), out_dir / extraction_name(settings)) for settings in variants
    ]
    result = extract_targets(
        manifest_path,
        backbones,
        targets,
        weights=weights,
        cache_dir=cache_dir,
        shard=shard,
        merge=merge,
        progress=progress,
        reuse=[Path(r) for r in reuse],
    )
    extractions = []
    for settings, (_, folder) in zip(variants, targets, strict=True):
        files = {
            key: _recorded(result.reused.get(final, final), out_dir)
            for key, final in target_outputs(folder, backbones).items()
        }
        extractions.append(
            {
                "name": extraction_name(settings),
                "settings": settings,
                "files": files,
            }
        )
    plan = StudyPlan(
        design=design,
        axes=full,
        backbones=list(target_outputs(out_dir, backbones)),
        manifest=str(Path(manifest_path).resolve()),
        extractions=extractions,
    )
    path = out_dir / "study.json"
    if not result.interrupted:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text(path, plan.to_json())
        plan.path = path
    return StudyExtraction(plan, result, path)
