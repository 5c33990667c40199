"""Report files shared by `probe matrix` and `probe study`: csv, json and Markdown, each written
whole under a temporary name and renamed (`vtl.atomic`), so a report on disk is never half
written (shards finishing together may both write it; the last rename wins with the same
content)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from vtl.atomic import write_text

# Units every report states once: probe metrics are the reference's tables' percent.
PERCENT_NOTE = "probe metrics in percent (PR-AUC x 100); scores in their own units"


def write_csv(path: Path, columns: Sequence[str], records: Sequence[dict]) -> Path:
    """One row per record; None and missing values are blank."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if record.get(k) is None else record[k] for k in columns})
    return write_text(path, buffer.getvalue())


def write_json(path: Path, data: dict) -> Path:
    return write_text(path, json.dumps(data, indent=2) + "\n")


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, align: str = ""
) -> str:
    """A Markdown table, its first `left` columns left-aligned and the others right-aligned, or
    aligned by `align`, one letter per column (l or r)."""
    align = align or "l" * left + "r" * (len(header) - left)
    align = ["---" if a == "l" else "--:" for a in align]
    lines = ["| " + " | ".join(map(table_cell, header)) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(map(table_cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def table_cell(value) -> str:
    """A value as one Markdown table cell: a `|` escaped, line breaks and tabs as spaces (a
    name holding them kept its row from lining up with the header)."""
    text = str(value).replace("|", "\\|")
    return " ".join(text.replace("\t", " ").splitlines()) if not text.isprintable() else text


def format_mean_std(value: dict | None, digits: int = 2, scale: float = 1.0) -> str:
    """'mean ± std' of a {"mean", "std"} summary; blank when there is none."""
    if not value or value.get("mean") is None:
        return ""
    return f"{value['mean'] * scale:.{digits}f} ± {value['std'] * scale:.{digits}f}"


def number(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def videos_left_out_line(videos: Sequence[str], json_name: str) -> str:
    """The sentence a report gives the videos it left out because some feature file lacks
    them (`probe.catalogue.videos_left_out`); their ids are in `json_name`."""
    n = len(videos)
    return (
        f"{n} video{'s' if n > 1 else ''} left out everywhere, not in every feature file "
        f"(e.g. {videos[0]!r}): every backbone is trained, tested and scored on the same videos "
        f"(`{json_name}`: videos_left_out)."
    )
