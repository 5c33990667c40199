"""A study's report: `study.csv`, `study.md`, `study.json` and `study.png` (`probe.plots`), from
the variants and comparisons `probe.study.run_study` computed. Rendering only: nothing here
trains or reads feature files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from probe.metrics import METRIC_NAMES
from probe.report import (
    PERCENT_NOTE,
    format_mean_std,
    markdown_table,
    number,
    videos_left_out_line,
    write_csv,
    write_json,
)
from probe.stats import smallest_p_value
from vtl.atomic import write_text
from vtl.study import AXES

if TYPE_CHECKING:
    from probe.study import StudyResult, Variant

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


@dataclass(frozen=True)
class StudySetup:
    """What a study compared and how (study.json records it; study.md explains it)."""

    design: str  # "axis" (one axis at a time around the baseline) or "grid"
    axes: dict[str, list]  # axis -> the values compared
    baseline: dict  # axis -> the baseline's value (`vtl.study.baseline_of`)
    splits: list[int]
    seeds: list[int]
    alpha: float  # level of the paired test's verdict


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
        row.update(
            p_value=test["p_value"],
            p_ttest=test["p_ttest"],
            verdict=test["verdict"],
            pairs=test["n"],
        )
    return row


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def write_outputs(
    out: Path,
    result: StudyResult,
    axes: dict[str, list],
    baseline: dict,
    design: str,
    splits: list[int],
    seeds: list[int],
    alpha: float,
) -> dict[str, Path]:
    """study.csv, study.md, study.json and study.png; returns their paths."""
    from probe.plots import plot_differences

    setup = StudySetup(design, axes, baseline, splits, seeds, alpha)
    records = [record(v) for v in result.variants]
    paths = {
        "csv": write_csv(out / "study.csv", CSV_COLUMNS, records),
        "md": write_text(out / "study.md", render_markdown(result, setup)),
        "json": write_json(
            out / "study.json",
            {
                **asdict(setup),
                "test": "two-sided sign-flip permutation test of the paired μAP differences",
                "units": PERCENT_NOTE,
                "variants": [
                    {**rec, "comparison": v.comparison}
                    for rec, v in zip(records, result.variants, strict=True)
                ],
                "left_out": [{"variant": k, "reason": v} for k, v in result.left_out.items()],
                "videos_left_out": list(result.videos_left_out),
                "co_train": result.co_train,
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


def render_markdown(result: StudyResult, setup: StudySetup) -> str:
    """study.md: how to read it, then one table per backbone."""
    axes, splits, seeds, alpha = setup.axes, setup.splits, setup.seeds, setup.alpha
    n = len(splits) * len(seeds)
    varied = {name: values for name, values in axes.items() if len(values) > 1}
    how = (
        "one axis at a time around the baseline" if setup.design == "axis" else "every combination"
    )
    shown_baseline = ", ".join(f"{k}={_show(v)}" for k, v in setup.baseline.items())
    shown_varied = "; ".join(f"{k} {', '.join(_show(x) for x in v)}" for k, v in varied.items())
    lines = [
        "# Study",
        "",
        f"Design: {how}. Baseline: {shown_baseline}. Varied: {shown_varied or 'nothing'}.",
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
    if result.co_train:
        shown = "; ".join(f"{b}: {', '.join(paths)}" for b, paths in result.co_train.items())
        lines += [
            "",
            f"Co-training (cotrain={', '.join(axes['cotrain'][1:])}): one probe trained on the "
            "target and the other collections at once (CoVeR: a head per collection, batches "
            "drawn in proportion to their training videos, early stopping on the target's "
            f"validation loss), scored on the target. Co-trained with {shown}.",
        ]
    lines += [
        "",
        "Cost: GFLOPs per video (the backbone's GFLOPs per clip as extracted, times the clips per "
        "video) and embedding seconds per video from the feature file; probe axes share the "
        "baseline's features. Training: seconds per run.",
    ]
    header = [
        "Variant",
        "μAP",
        "Δ μAP",
        "p",
        "Verdict",
        "GFLOPs/video",
        "Embed s/video",
        "Train s/run",
    ]
    for backbone in dict.fromkeys(v.backbone for v in result.variants):
        table = []
        for v in (v for v in result.variants if v.backbone == backbone):
            table.append(_table_row(v))
        lines += ["", f"## {backbone}", "", markdown_table(header, table, align="lrrrlrrr")]
    if result.videos_left_out:
        lines += ["", videos_left_out_line(result.videos_left_out, "study.json")]
    if result.left_out:
        lines += ["", "## Variants left out", ""]
        lines += [f"- {name}: {reason}" for name, reason in result.left_out.items()]
    lines += [
        "",
        "Every metric (mAP, wAP, sAP), their differences and the paired t-test's p: "
        "`study.csv`; the paired differences: `study.png`.",
    ]
    return "\n".join(lines) + "\n"


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _table_row(v: Variant) -> list[str]:
    """A variant's line of its backbone's table in study.md."""
    rec = record(v)
    uap = v.result["summary"]["test"]["uap"]
    delta = p_value = verdict = ""
    if v.comparison:
        delta = format_mean_std(v.comparison["delta"]["uap"], 2)
        delta = delta if delta.startswith("-") else "+" + delta
        test = v.comparison["test"]
        p_value, verdict = f"{test['p_value']:.3g}", test["verdict"]
    return [
        v.label,
        format_mean_std(uap),
        delta,
        p_value,
        verdict,
        number(rec["gflops_per_video"], 1),
        number(rec["embed_seconds_per_video"], 3),
        number(rec["train_seconds_per_run"], 1),
    ]
