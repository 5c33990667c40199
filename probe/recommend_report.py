"""The recommendation's report: `recommendation.md`, `.csv` and `.png`, and its one line (which
backbone to extract, how sure, what it costs), from a `probe.recommend.Recommendation`.
Rendering only: nothing here scores, trains or resamples.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from probe.recommend import Recommendation
from probe.report import markdown_table, write_csv
from probe.transferability import SCORES
from vtl.atomic import write_text


def summary_line(result: Recommendation) -> str:
    """One line: which backbone to extract, how sure, what it costs."""
    choice, boot = result.verdict, result.bootstrap
    if choice is None:
        ranked = sorted(result.candidates, key=lambda c: result.average_rank[c])
        best = ranked[0]
        line = (
            f"Extract {best}: first by the average rank of {len(result.combined)} training-free "
            "scores (no quick probes to confirm it)"
        )
    elif choice.too_close:
        line = (
            f"Extract {choice.best} or {choice.runner_up}: too close to call on the "
            f"{boot.n_videos}-video sample ({choice.best} best in {_share(choice.p_best)} of "
            f"{len(boot.resampled)} resamples, expected regret {100 * choice.regret:.2f} μAP)"
        )
        if choice.by_prior:
            ahead = (result.priors[choice.best], result.priors[choice.runner_up])
            line += (
                f"; {choice.best} first for its higher source top-1 ({ahead[0]:g} vs {ahead[1]:g})"
            )
        if choice.by_evidence:
            ahead = (result.evidence[choice.best], result.evidence[choice.runner_up])
            line += (
                f"; {choice.best} first for its higher LogME on the sample ({ahead[0]:.3g} vs "
                f"{ahead[1]:.3g}, at least two videos per feature dimension)"
            )
        if choice.videos_to_separate is not None:
            line += (
                f"; a sample of about {choice.videos_to_separate} videos would separate them "
                "if the observed gap holds"
            )
            if result.sample_seed is not None:  # growing keeps every video extracted so far
                line += (
                    f" (grow this one: extract run --sample {choice.videos_to_separate} "
                    f"--sample-seed {result.sample_seed}, the same --manifest and --out)"
                )
        else:
            line += "; no sample within the collection would separate them"
        best = choice.best
    else:
        best = choice.best
        line = (
            f"Extract {best}: best in {_share(choice.p_best)} of {len(boot.resampled)} resamples "
            f"of the {boot.n_videos}-video sample (expected regret {100 * choice.regret:.2f} μAP)"
        )
    cost = _cost_text(result.costs.get(best))
    if cost:
        line += f"; the whole collection costs about {cost}"
    return line + "."


def _cost_text(cost: dict | None) -> str:
    """'12 min of extraction (8.1 min of it embedding) and 3.4 TFLOPs', in the units that read
    best ('12 min of embedding' for files that record no shared time)."""

    def duration(hours: float) -> str:
        seconds = hours * 3600
        unit = next((u for u in ((3600, "h"), (60, "min")) if seconds >= 2 * u[0]), (1, "s"))
        return f"{seconds / unit[0]:.3g} {unit[1]}"

    parts = []
    if cost and "hours" in cost:
        if cost["hours"] > cost["embed_hours"]:
            parts.append(
                f"{duration(cost['hours'])} of extraction "
                f"({duration(cost['embed_hours'])} of it embedding)"
            )
        else:
            parts.append(f"{duration(cost['hours'])} of embedding")
    if cost and "pflops" in cost:
        flops = cost["pflops"] * 1e15
        scale = next((u for u in ((1e15, "PFLOPs"), (1e12, "TFLOPs")) if flops >= u[0]), None)
        scale = scale or (1e9, "GFLOPs")
        parts.append(f"{flops / scale[0]:.3g} {scale[1]}")
    return " and ".join(parts)


def report_rows(result: Recommendation) -> list[dict]:
    """One record per candidate, best first: the csv's rows (μAP and regret in percent)."""
    boot = result.bootstrap
    index = {} if boot is None else {c: i for i, c in enumerate(boot.candidates)}
    rows = []
    for name in result.candidates:
        row: dict = {"candidate": name, "average_rank": result.average_rank.get(name)}
        if name in index:
            i = index[name]
            row |= {
                "uap": 100 * boot.point[i],
                "uap_low": 100 * boot.low[i],
                "uap_high": 100 * boot.high[i],
                "p_best": float(boot.p_best[i]),
                "regret": 100 * boot.regret[i],
            }
        for method, values in result.scores.items():
            row[method] = values.get(name)
        row["prior_top1"] = result.priors.get(name)
        row |= {f"collection_{k}": v for k, v in (result.costs.get(name) or {}).items()}
        rows.append(row)
    if boot is not None:
        rows.sort(key=lambda r: (r.get("regret", np.inf), -r.get("uap", -np.inf)))
    else:
        rows.sort(key=lambda r: r["average_rank"])
    return rows


def write_report(result: Recommendation, out: str | Path) -> dict[str, Path]:
    """recommendation.md, .csv and .png in folder `out`; returns their paths by suffix."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = report_rows(result)
    score_columns = list(result.scores)
    columns = ["candidate", "uap", "uap_low", "uap_high", "p_best", "regret", "average_rank"]
    columns += score_columns + ["prior_top1", "collection_hours", "collection_embed_hours"]
    columns += ["collection_pflops"]
    paths = {"csv": write_csv(out / "recommendation.csv", columns, rows)}
    paths["md"] = write_text(out / "recommendation.md", _markdown(result, rows, score_columns))
    paths["png"] = _plot(out / "recommendation.png", result, rows)
    return paths


def _share(p: float) -> str:
    """A share of resamples in whole percent, never rounded to a certainty it is not: 199.5 of
    200 reads ">99%", not "100%" (the table beside it says 0.99)."""
    if 0.995 <= p < 1:
        return ">99%"
    if 0 < p < 0.005:
        return "<1%"
    return f"{float(f'{p:.2f}'):.0%}"  # the table's two decimals: 0.735 reads 0.73 and 73%


def _markdown(result: Recommendation, rows: list[dict], score_columns: list[str]) -> str:
    def fmt(value, digits=2):
        return "" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"

    header = ["candidate", "μAP (95% interval)", "P(best)", "regret (μAP)", "avg rank"]
    header += [_label(m) for m in score_columns]
    header += ["prior top-1", "collection cost"]
    table = []
    for row in rows:
        interval = (
            f"{row['uap']:.2f} ({row['uap_low']:.2f}-{row['uap_high']:.2f})" if "uap" in row else ""
        )
        cells = [row["candidate"], interval, fmt(row.get("p_best")), fmt(row.get("regret"))]
        cells.append(fmt(row.get("average_rank"), 1))
        for method in score_columns:
            value = row.get(method)
            percent = method in SCORES and SCORES[method].percent
            cells.append(fmt(None if value is None else value * (100 if percent else 1), 3))
        cells += [fmt(row.get("prior_top1"), 1), _cost_text(result.costs.get(row["candidate"]))]
        table.append(cells)
    lines = [
        "# Backbone recommendation",
        "",
        summary_line(result),
        "",
        markdown_table(header, table),
        "",
        "μAP and regret in percent; P(best) and the intervals from "
        + (
            f"{len(result.bootstrap.resampled)} bootstrap resamples of the sample's videos."
            if result.bootstrap is not None
            else "no quick probes (none given)."
        ),
        f"Labels scored: {', '.join(result.kept_labels)}. "
        f"Average rank over: {', '.join(result.combined) or 'no score'}.",
    ]
    if result.agreement:
        lines += ["", "## Agreement with the quick probes (Kendall τ)", ""]
        agreement = [[_label(name), fmt(tau)] for name, tau in result.agreement.items()]
        lines.append(markdown_table(["ranker", "Kendall τ"], agreement))
    if result.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in result.notes]
    return "\n".join(lines) + "\n"


def _label(name: str) -> str:
    """A score's label in reports ("average rank" and "prior" are not scores)."""
    return SCORES[name].label if name in SCORES else name


def _plot(path: Path, result: Recommendation, rows: list[dict]) -> Path:
    """Each candidate's quick-probe μAP with its interval and P(best), best at the top; or its
    average rank when there are no quick probes."""
    from probe.plots import plt  # matplotlib as every report draws with it

    names = [row["candidate"] for row in rows][::-1]
    fig, ax = plt.subplots(figsize=(8.0, 1.8 + 0.45 * len(names)))
    if result.bootstrap is not None:
        by_name = {row["candidate"]: row for row in rows}
        values = [by_name[n]["uap"] for n in names]
        low = [by_name[n]["uap"] - by_name[n]["uap_low"] for n in names]
        high = [by_name[n]["uap_high"] - by_name[n]["uap"] for n in names]
        ax.errorbar(values, range(len(names)), xerr=[low, high], fmt="o", capsize=4)
        for y, name in enumerate(names):
            ax.annotate(
                f"P(best) {by_name[name]['p_best']:.2f}",
                (by_name[name]["uap_high"], y),
                xytext=(6, -3),
                textcoords="offset points",
                fontsize=8,
            )
        ax.set_xlabel("quick-probe test μAP (%) on the sample, 95% bootstrap interval")
        ax.margins(x=0.25)
    else:
        ax.barh(range(len(names)), [result.average_rank[n] for n in names])
        ax.set_xlabel("average rank of the training-free scores (1 best)")
    ax.set_yticks(range(len(names)), names)
    ax.set_title(textwrap.fill(summary_line(result), 100), fontsize=8, loc="left")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return path
