"""`probe study`: the reference work's ablations on your videos, and whether a difference is real.

A study (`vtl.study`) varies how features are cut (segmentation, clip frame rate, frames per
clip: one feature file per value, made by `extract study`) and how clips are aggregated (clips
per window, temporal model: probe settings), around a baseline or as a full grid. Every variant
is trained over the same splits and seeds as the baseline (`probe.cells`: runs are cached and
shared with the matrix, and spread over shards), and compared with it run for run:

- the variant's test μAP (and mAP, wAP, sAP in the csv), mean ± std over splits x seeds;
- its difference from the baseline, paired over the same split and seed;
- a sign-flip permutation test of that difference (`probe.stats`) and a plain verdict,
  "distinguishable" (p < alpha) or "within noise";
- its cost beside its accuracy: GFLOPs per video and embedding seconds per video (from the
  feature file's `cost` attribute; extraction axes change them, probe axes do not) and training
  seconds per run.

Outputs under the report folder: `study.md` (one table per backbone), `study.csv` (one row per
backbone and variant, every metric), `study.json` and `study.png` (each variant's paired
differences with their mean and spread).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probe.cells import (
    Cache,
    FileInfo,
    Task,
    check_files,
    check_one_dataset,
    read_file_info,
    resolve_splits,
    run_task,
    run_tasks,
    summarize_cell,
)
from probe.config import TrainConfig
from probe.matrix import check_splits
from probe.metrics import METRIC_NAMES
from probe.models import PROBES
from probe.report import (
    PERCENT_NOTE,
    markdown_table,
    mean_std,
    number,
    write_csv,
    write_json,
    write_text,
)
from probe.stats import ALPHA, paired_test, smallest_p_value
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

    Raises:
        UserError: bad options, files that are missing or disagree, an unusable split or baseline
            (one line, before any training).
    """
    config = TrainConfig.from_dict((config or TrainConfig()).to_dict()).validate()
    out = check_output_dir(out)
    cache = cache if isinstance(cache, Cache) else Cache(cache)
    if (plan is None) == (not features):
        raise UserError("give a study (--study DIR, from `extract study`) or --features, not both")
    design = design or (plan.design if plan else "axis")
    if design not in DESIGNS:
        raise UserError(f"--design {design!r}: choose one of {', '.join(DESIGNS)}")
    if plan is not None and design == "grid" and plan.design != "grid":
        raise UserError(f"{plan.path}: a grid study needs every extraction variant; extract "
                        "them with `extract study --design grid`")  # fmt: skip
    if not 0 < alpha < 1:
        raise UserError(f"--alpha must be in (0, 1), got {alpha}")
    probe_axes = dict(probe_axes or {})
    bad = [m for m in probe_axes.get("model", []) if m not in PROBES]
    if bad:
        raise UserError(f"--models {bad[0]!r}: choose among {', '.join(PROBES)}")
    axes = dict(plan.axes) if plan else {}
    axes.update({name: list(probe_axes.get(name) or [getattr(config, name)])
                 for name in PROBE_AXES})  # fmt: skip
    files = _files(plan, features)
    infos = {path: read_file_info(path) for path in {p for f in files.values() for p in f.values()}}
    check_one_dataset(list(infos.values()))
    first = next(iter(infos.values()))
    split_list = resolve_splits(splits, first)
    seed_list = [int(s) for s in seeds]
    if not seed_list:
        raise UserError("--seeds must be at least 1")
    check_splits(first, split_list)
    bad_files = check_files(list(infos.values()), cache)

    baseline = baseline_of(axes)
    variants, left_out = [], {}
    for backbone in plan.backbones if plan else list(files[None]):
        for settings in design_variants(axes, design):
            label = changed(settings, baseline)
            path = files[_extraction_key(settings, plan)][backbone]
            info = infos[path]
            if info.path in bad_files:
                if label == "baseline":
                    raise UserError(f"the baseline of {backbone} cannot be probed: "
                                    f"{bad_files[info.path]}")  # fmt: skip
                left_out[f"{backbone}: {label}"] = bad_files[info.path]
                continue
            values = {**config.to_dict(), "model": settings["model"], "window": settings["window"]}
            cell = TrainConfig.from_dict(values)
            tasks = [run_task((info,), cell, s, seed) for s in split_list for seed in seed_list]
            variants.append(Variant(backbone, settings, label, info, tasks))
    for name, reason in left_out.items():
        log.warning("study variant %s left out: %s", name, reason)
    work = run_tasks([t for v in variants for t in v.tasks], cache, config, jobs, shard,
                     progress, "study")  # fmt: skip
    result = StudyResult(variants, left_out, len(work.trained), work.complete)
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
    result.outputs = write_outputs(out, result, axes, baseline, design, split_list, seed_list,
                                   alpha)  # fmt: skip
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
                raise UserError(f"--features: two files of backbone {info.backbone!r}; a study "
                                "compares settings, give one file per backbone")  # fmt: skip
            by_backbone[info.backbone] = info.path
        return {None: by_backbone}
    files = {}
    for extraction in plan.extractions:
        key = tuple(extraction["settings"][name] for name in EXTRACT_AXES)
        paths = {}
        for backbone, path in extraction["files"].items():
            path = Path(path)
            if not path.is_file():
                raise UserError(
                    f"{plan.path}: {path} is not there; finish the extraction with the same "
                    "`extract study` command (or wait for its last shard)"
                )
            paths[backbone] = path.resolve()
        files[key] = paths
    return files


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


# ------------------------------------------------------------------ outputs

CSV_COLUMNS = [
    "backbone",
    "variant",
    *AXES,
    *(f"{m}_{s}" for m in METRIC_NAMES for s in ("mean", "std")),
    *(f"delta_{m}_{s}" for m in METRIC_NAMES for s in ("mean", "std")),
    "p_value",
    "p_ttest",
    "verdict",
    "pairs",
    "gflops_per_video",
    "gflops_per_clip",
    "clips_per_video",
    "embed_seconds_per_video",
    "train_seconds_per_run",
    "file",
]


def record(variant: Variant) -> dict:
    """One study.csv row."""
    summary = variant.result["summary"]
    info = variant.info
    row = {
        "backbone": variant.backbone,
        "variant": variant.label,
        **variant.settings,
        "gflops_per_video": _round(info.gflops_per_video),
        "gflops_per_clip": info.gflops_per_clip,
        "clips_per_video": round(info.clips_per_video, 3),
        "embed_seconds_per_video": _round(info.embed_seconds_per_video),
        "train_seconds_per_run": round(variant.result["train_seconds"] / len(variant.tasks), 3),
        "file": str(info.path),
    }
    for m in METRIC_NAMES:
        row[f"{m}_mean"] = summary["test"][m]["mean"]
        row[f"{m}_std"] = summary["test"][m]["std"]
    if variant.comparison:
        for m in METRIC_NAMES:
            row[f"delta_{m}_mean"] = variant.comparison["delta"][m]["mean"]
            row[f"delta_{m}_std"] = variant.comparison["delta"][m]["std"]
        test = variant.comparison["test"]
        row.update(p_value=test["p_value"], p_ttest=test["p_ttest"], verdict=test["verdict"],
                   pairs=test["n"])  # fmt: skip
    return row


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def write_outputs(out, result, axes, baseline, design, splits, seeds, alpha) -> dict[str, Path]:
    """study.csv, study.md, study.json and study.png; returns their paths."""
    from probe.plots import plot_differences

    records = [record(v) for v in result.variants]
    paths = {
        "csv": write_csv(out / "study.csv", CSV_COLUMNS, records),
        "md": write_text(
            out / "study.md", render_markdown(result, axes, baseline, design, splits, seeds, alpha)
        ),  # fmt: skip
        "json": write_json(
            out / "study.json",
            {
                "design": design,
                "axes": axes,
                "baseline": baseline,
                "splits": splits,
                "seeds": seeds,
                "alpha": alpha,
                "test": "two-sided sign-flip permutation test of the paired μAP differences",
                "units": PERCENT_NOTE,
                "variants": [
                    {**rec, "comparison": v.comparison}
                    for rec, v in zip(records, result.variants, strict=True)
                ],
                "left_out": [{"variant": k, "reason": v} for k, v in result.left_out.items()],
            },
        ),
        "png": out / "study.png",
    }
    sections = []
    for backbone in dict.fromkeys(v.backbone for v in result.variants):
        rows = [
            (v.label, v.comparison["delta"]["uap"]["values"], v.comparison["test"]["verdict"])
            for v in result.variants
            if v.backbone == backbone and v.comparison
        ]
        sections.append((backbone, rows))
    plot_differences(paths["png"], sections)
    return paths


def render_markdown(result, axes, baseline, design, splits, seeds, alpha) -> str:
    """study.md: how to read it, then one table per backbone."""
    n = len(splits) * len(seeds)
    varied = {name: values for name, values in axes.items() if len(values) > 1}
    how = "one axis at a time around the baseline" if design == "axis" else "every combination"
    lines = [
        "# Study",
        "",
        f"Design: {how}. Baseline: "
        + ", ".join(f"{k}={_show(v)}" for k, v in baseline.items())
        + ". Varied: "
        + (
            "; ".join(f"{k} {', '.join(_show(x) for x in v)}" for k, v in varied.items())
            or "nothing"
        )  # fmt: skip
        + ".",
        "",
        f"Test μAP (%) mean ± std over {len(splits)} split(s) x {len(seeds)} seed(s) ({n} runs per "
        "variant). Δ: the variant minus the baseline, run by run over the same split and seed "
        "(mean ± std of the differences). p: two-sided sign-flip permutation test of those "
        f"differences (exact); distinguishable when p < {alpha:g}, else within noise.",
    ]
    if smallest_p_value(n) >= alpha:
        lines += [
            "",
            f"With {n} paired runs no p-value can fall below {smallest_p_value(n):.3g}: every "
            "variant reads 'within noise' whatever its Δ. Run more seeds (--seeds) to tell.",
        ]
    lines += [
        "",
        "Cost: GFLOPs per video (the backbone's GFLOPs per clip as extracted, times the clips per "
        "video) and embedding seconds per video from the feature file; probe axes share the "
        "baseline's features. Training: seconds per run.",
    ]
    header = ["Variant", "μAP", "Δ μAP", "p", "Verdict", "GFLOPs/video", "Embed s/video",
              "Train s/run"]  # fmt: skip
    for backbone in dict.fromkeys(v.backbone for v in result.variants):
        table = []
        for v in (v for v in result.variants if v.backbone == backbone):
            rec = record(v)
            uap = v.result["summary"]["test"]["uap"]
            delta = test = ""
            if v.comparison:
                delta = mean_std(v.comparison["delta"]["uap"], 2)
                delta = delta if delta.startswith("-") else "+" + delta
                test = v.comparison["test"]
            table.append([
                v.label, mean_std(uap), delta, f"{test['p_value']:.3g}" if test else "",
                test["verdict"] if test else "", number(rec["gflops_per_video"], 1),
                number(rec["embed_seconds_per_video"], 3), number(rec["train_seconds_per_run"], 1),
            ])  # fmt: skip
        lines += ["", f"## {backbone}", "", markdown_table(header, table, align="lrrrlrrr")]
    if result.left_out:
        lines += ["", "## Variants left out", ""]
        lines += [f"- {name}: {reason}" for name, reason in result.left_out.items()]
    lines += ["", "Every metric (mAP, wAP, sAP), their differences and the paired t-test's p: "
              "`study.csv`; the paired differences: `study.png`."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
