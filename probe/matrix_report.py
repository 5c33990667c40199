"""The transferability matrix's report: `matrix.csv`, `matrix.md`, `matrix.json`, and the
pictures `matrix.png` and `cost.png` (`probe.plots`), from the cells `probe.matrix.run_matrix`
computed. Rendering only: nothing here trains or reads feature files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from probe.metrics import METRIC_NAMES
from probe.report import (
    PERCENT_NOTE,
    markdown_table,
    number,
    videos_left_out_line,
    write_csv,
    write_json,
)
from probe.stats import ALPHA, RankedCell, compare_with_best, smallest_p_value
from probe.transferability import SCORES
from vtl.atomic import write_text

if TYPE_CHECKING:
    from probe.matrix import Cell, MatrixResult

CSV_COLUMNS = [
    "row",
    "backbone",
    "family",
    "pretrain",
    "kind",
    "probe",
    "type",
    *(f"{m}_{s}" for m in METRIC_NAMES for s in ("mean", "std")),
    "score_mean",
    "score_std",
    "best_in_column",
    "p_vs_best",
    "within_noise_of_best",
    "params_m",
    "gflops_per_clip",
    "feature_dim",
    "train_seconds",
    "runs",
    "splits",
    "seeds",
    "protocol",
    "pick_lr",
    "pick_weight_decay",
    "picks_at_edge",
    "files",
    "key",
]


# Marks a cell the column's best cannot be told apart from (matrix.md and matrix.png).
WITHIN_NOISE = "≈"


def noise_marks(cells: list[Cell], alpha: float = ALPHA) -> dict[tuple[str, str], RankedCell]:
    """(row name, probe) -> how the cell compares with its column's best: the paired sign-flip
    test of their runs over the same splits and seeds (`probe.stats.compare_with_best`)."""
    marks = {}
    for model in dict.fromkeys(c.method for c in cells if c.kind == "probe"):
        column = {
            c.row.name: {
                (r["split"], r["seed"]): r["test"]["uap"]
                for r in c.result["summary"]["runs"]
                if r["test"]["uap"] is not None
            }
            for c in cells
            if c.kind == "probe" and c.method == model
        }
        for name, ranked in compare_with_best(column, alpha).items():
            marks[(name, model)] = ranked
    return marks


def cell_record(cell: Cell, mark: RankedCell | None = None) -> dict:
    """One matrix.csv row (values as plain Python numbers and strings; None for blanks)."""
    row = cell.row
    record = {
        "row": row.name,
        "backbone": " + ".join(f.backbone for f in row.files),
        "family": row.family,
        "pretrain": row.pretrain,
        "kind": row.kind,
        "probe": cell.method,
        "type": cell.kind,
        "params_m": row.params_m,
        "gflops_per_clip": row.gflops_per_clip,
        "feature_dim": row.feature_dim,
        "train_seconds": round(cell.result.get("train_seconds", 0.0), 3),
        "files": " ".join(str(f.path) for f in row.files),
        "key": cell.key,
    }
    if cell.kind == "probe":
        summary = cell.result["summary"]
        for m in METRIC_NAMES:
            record[f"{m}_mean"] = summary["test"][m]["mean"]
            record[f"{m}_std"] = summary["test"][m]["std"]
        record["runs"] = len(summary["runs"])
        record["splits"] = " ".join(map(str, summary["splits"]))
        record["seeds"] = " ".join(map(str, summary["seeds"]))
        record.update(pick_fields(summary["runs"]))
        if mark is not None:
            record["best_in_column"] = mark.best
            record["p_vs_best"] = mark.p_vs_best
            record["within_noise_of_best"] = mark.within_noise and not mark.best
    else:
        record["score_mean"] = cell.result["score"]["mean"]
        record["score_std"] = cell.result["score"]["std"]
        record["runs"] = cell.result["score"]["n"]
    return record


def pick_fields(runs: list[dict]) -> dict:
    """The protocol of a probe cell's runs and, under the sweep protocol, each run's pick (lr and
    weight decay, in run order, space-separated) and how many picks lie at the grid's edge."""
    picks = [p for r in runs for p in r.get("sweep", [])]
    if not picks:
        return {"protocol": "reference"}
    return {
        "protocol": "sweep",
        "pick_lr": " ".join(f"{p['lr']:g}" for p in picks),
        "pick_weight_decay": " ".join(f"{p['weight_decay']:g}" for p in picks),
        "picks_at_edge": sum(bool(p["edges"]) for p in picks),
    }


def write_outputs(
    out: Path,
    result: MatrixResult,
    models: list[str],
    scores: list[str],
    splits: list[int],
    seeds: list[int],
) -> dict[str, Path]:
    """Write matrix.csv, matrix.md, matrix.json, matrix.png and cost.png; return their paths."""
    from probe.plots import plot_cost, plot_heatmap

    marks = noise_marks(result.cells)
    records = [cell_record(c, marks.get((c.row.name, c.method))) for c in result.cells]
    paths = {
        "csv": write_csv(out / "matrix.csv", CSV_COLUMNS, records),
        "md": write_text(
            out / "matrix.md", render_markdown(result, models, scores, splits, seeds, marks)
        ),
        "json": write_json(
            out / "matrix.json",
            {
                "splits": splits,
                "seeds": seeds,
                "protocol": protocol_of(result.cells),
                "models": models,
                "scores": scores,
                "units": PERCENT_NOTE,
                "cells": records,
                "correlations": result.correlations,
                "left_out": [{"row": k, "reason": v} for k, v in result.left_out.items()],
                "videos_left_out": list(result.videos_left_out),
            },
        ),
        "png": out / "matrix.png",
        "cost": out / "cost.png",
    }
    uap = {
        (c.row.name, c.method): c.result["summary"]["test"]["uap"]
        for c in result.cells
        if c.kind == "probe"
    }
    names = [r.name for r in result.rows]
    within = {key for key, mark in marks.items() if mark.within_noise and not mark.best}
    plot_heatmap(paths["png"], names, models, uap, within)
    plot_cost(paths["cost"], names, models, uap, {r.name: r.gflops_per_clip for r in result.rows})
    return paths


def render_markdown(
    result: MatrixResult,
    models: list[str],
    scores: list[str],
    splits: list[int],
    seeds: list[int],
    marks: dict[tuple[str, str], RankedCell] | None = None,
) -> str:
    """matrix.md: the μAP table (best per column in bold, cells within noise of it marked),
    scores, rank correlations."""
    marks = noise_marks(result.cells) if marks is None else marks
    by = {(c.row.name, c.kind, c.method): c for c in result.cells}
    columns: list[tuple[str, str]] = [("probe", m) for m in models]
    columns += [("score", s) for s in scores]
    values: dict[tuple[str, str, str], tuple[float, float]] = {}
    for row in result.rows:
        for kind, method in columns:
            cell = by.get((row.name, kind, method))
            if cell is None:
                continue
            value = _cell_value(cell)
            if value["mean"] is not None:
                values[(row.name, kind, method)] = (value["mean"], value["std"])
    best = {}
    for kind, method in columns:
        column = [v[0] for (_, k, m), v in values.items() if (k, m) == (kind, method)]
        if column:
            best[(kind, method)] = max(column)

    n_runs = len(splits) * len(seeds)
    lines = [
        "# Transferability matrix",
        "",
        f"Test μAP (%) of each probe, mean ± std over {len(splits)} split(s) x {len(seeds)} "
        f"seed(s) ({n_runs} run(s) per cell); the best of each column in **bold**; "
        f"{WITHIN_NOISE}: the column's best cannot be told apart from this cell (two-sided "
        f"sign-flip test of their paired runs, same split and seed, p ≥ {ALPHA:g}).",
    ]
    if smallest_p_value(n_runs) >= ALPHA:
        lines.append(
            f"With {n_runs} paired run(s) no p-value can fall below "
            f"{smallest_p_value(n_runs):.3g}, so every cell is marked: run more splits or seeds "
            "(--seeds) to separate rows."
        )
    if protocol_of(result.cells) == "sweep":
        lines.append(
            "Sweep protocol: each run's probe is the best, on validation μAP, of a grid of "
            "learning rates x weight decays trained at once (`probe.sweep`); each run's pick: "
            "`matrix.csv` (pick_lr, pick_weight_decay, picks_at_edge)."
        )
    if scores:
        lines.append(
            "Training-free scores (" + ", ".join(SCORES[s].label for s in scores) + ") on each "
            "split's train videos, mean ± std over splits; higher predicts better transfer."
        )
    header = ["Backbone", "Pretrain", "Kind", *models, *(SCORES[s].label for s in scores)]
    header += ["GFLOPs/clip", "Params (M)"]
    table = []
    for row in result.rows:
        entries = [row.name, row.pretrain, row.kind]
        for kind, method in columns:
            value = values.get((row.name, kind, method))
            if value is None:
                entries.append("")
                continue
            if kind == "probe":
                text = f"{value[0]:.2f} ± {value[1]:.2f}"
            else:
                text = SCORES[method].format(*value)
            mark = marks.get((row.name, method)) if kind == "probe" else None
            if value[0] == best[(kind, method)]:
                text = f"**{text}**"
            elif mark is not None and mark.within_noise:
                text = f"{text} {WITHIN_NOISE}"
            entries.append(text)
        entries += [number(row.gflops_per_clip), number(row.params_m)]
        table.append(entries)
    lines += ["", markdown_table(header, table, left=3)]
    chance = [
        c.result["summary"]["chance"]["uap"]["mean"]
        for c in result.cells
        if c.kind == "probe" and "chance" in c.result.get("summary", {})
    ]
    if chance:
        lines += [
            "",
            f"Chance level: μAP {chance[0]:.2f} (the share of positive video-label pairs among "
            "the test videos, mean over splits: what a ranking that knows nothing scores).",
        ]
    lines += [
        "",
        "GFLOPs per clip as extracted (an image backbone's FLOPs times the frames it embeds per "
        "clip; a fusion: the sum). Other metrics (mAP, wAP, sAP), training times and every "
        "cell's settings: `matrix.csv`.",
    ]
    if result.videos_left_out:
        lines += ["", videos_left_out_line(result.videos_left_out, "matrix.json")]
    if result.left_out:
        lines += ["", "## Rows left out", ""]
        lines += [f"- {name}: {reason}" for name, reason in result.left_out.items()]
    undefined = [
        (c.row.name, c.method, c.result["score"]["reason"])
        for c in result.cells
        if c.kind == "score" and c.result["score"].get("reason")
    ]
    if undefined:
        lines += ["", "## Scores that cannot be computed", ""]
        lines += [f"- {name}, {SCORES[m].label}: {why}" for name, m, why in undefined]
    if result.correlations:
        lines += [
            "",
            "## Do the training-free scores rank backbones as the probes do?",
            "",
            "Rank correlation across single backbones (fusion rows left out) between each score "
            "and each probe's μAP: 1 = same order, 0 = unrelated, -1 = reversed.",
            "",
        ]
        table = []
        for c in result.correlations:
            if c["kendall_tau"] is None:
                tau = rho = f"n/a ({c.get('note', '')})"
            else:
                tau, rho = f"{c['kendall_tau']:.2f}", f"{c['spearman_rho']:.2f}"
            table.append([SCORES[c["score"]].label, c["probe"], tau, rho, c["backbones"]])
        lines.append(
            markdown_table(["Score", "Probe", "Kendall τ", "Spearman ρ", "Backbones"], table, 2)
        )
    return "\n".join(lines) + "\n"


def protocol_of(cells: list[Cell]) -> str:
    """The protocol the probe cells were trained under: sweep or reference."""
    runs = [r for c in cells if c.kind == "probe" for r in c.result["summary"]["runs"]]
    return "sweep" if any(r.get("sweep") for r in runs) else "reference"


def _cell_value(cell: Cell) -> dict:
    """The {"mean", "std"} a cell shows: a probe's test μAP, or a score."""
    return cell.result["summary"]["test"]["uap"] if cell.kind == "probe" else cell.result["score"]
