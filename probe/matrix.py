"""The transferability matrix: every (feature file x probe) cell, family fusions and scores.

`run_matrix` finds the feature files, lays out the rows and cells, checks everything it can
before any training, and trains (`probe.tasks`) what is not cached yet:

- one probe cell per (feature file, probe model), every requested split and seed; its result is
  the mean ± std over those runs;
- one late-fusion cell per (family, probe model) where a family has exactly one image file
  (ImageNet, per frame) and one video file (Kinetics, per clip), as the reference's fusion rows;
- one score cell per (feature file, training-free score of `probe.transferability.SCORES`), the
  mean over the requested splits of the score on each split's train videos.

Before training: the files must describe one dataset and every requested split must be usable
(else one line, nothing trained); a file that cannot be read through or holds non-finite values,
and a fusion of files whose clips differ, cannot make a row: such rows are reported (on stderr,
in `matrix.md` and `matrix.json`) and left out while the rest of the matrix is trained and
written.

Outputs, written by `probe.matrix_report`: `matrix.csv` (one row per cell), `matrix.md` (rows
backbones, columns probes, μAP mean ± std, best per column in bold, scores and their rank
correlation with the probes), `matrix.json`, and the pictures `matrix.png` and `cost.png`
(`probe.plots`). Backbone costs (parameters, GFLOPs per clip as extracted) come from each
feature file's `cost` attribute.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from probe.catalogue import (
    FileInfo,
    check_splits,
    discover_feature_files,
    read_file_info,
    resolve_splits,
)
from probe.config import TrainConfig
from probe.data import check_same_clips, open_probe_data
from probe.matrix_report import write_outputs
from probe.models import PROBES
from probe.tasks import (
    Cache,
    Task,
    checked_files,
    run_task,
    run_tasks,
    score_task,
    summarize_cell,
)
from probe.transferability import SCORES, rank_correlation
from vtl.errors import FeatureFileError, UserError
from vtl.paths import check_output_dir
from vtl.shards import Shard

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ rows and cells


def fusion_pairs(infos: list[FileInfo]) -> list[tuple[FileInfo, FileInfo]]:
    """(image file, video file) of each family that has exactly one of each kind."""
    pairs = []
    for family in sorted({i.family for i in infos}):
        members = [i for i in infos if i.family == family]
        images = [i for i in members if i.kind == "image"]
        videos = [i for i in members if i.kind == "video"]
        if len(images) == 1 and len(videos) == 1:
            pairs.append((images[0], videos[0]))
        elif images and videos:
            log.info(
                "family %s: %d image and %d video files, no fusion (it needs one of each)",
                family,
                len(images),
                len(videos),
            )
    return pairs


@dataclass
class Row:
    """One row of the matrix: a feature file, or a family's fused image and video files."""

    files: tuple[FileInfo, ...]

    @property
    def fused(self) -> bool:
        return len(self.files) > 1

    @property
    def name(self) -> str:
        names = " + ".join(f.backbone for f in self.files)
        return f"{names} (late fusion)" if self.fused else names

    @property
    def pretrain(self) -> str:
        return " + ".join(f.pretrain for f in self.files)

    @property
    def kind(self) -> str:
        return " + ".join(f.kind for f in self.files)

    @property
    def family(self) -> str:
        return self.files[0].family

    @property
    def params_m(self) -> float | None:
        return _sum([f.params_m for f in self.files])

    @property
    def gflops_per_clip(self) -> float | None:
        return _sum([f.gflops_per_clip for f in self.files])

    @property
    def feature_dim(self) -> int:
        return sum(f.feature_dim for f in self.files)


def _sum(values: list[float | None]) -> float | None:
    # A fusion's cost is the sum of its backbones'; unknown if any part is unknown.
    return None if any(v is None for v in values) else round(sum(values), 4)


@dataclass
class Cell:
    """One entry of the matrix: a row and a probe model (kind "probe") or a score ("score")."""

    row: Row
    kind: str  # "probe" or "score"
    method: str  # probe model name or score name
    tasks: list[Task] = field(default_factory=list)
    result: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The cell's identity: a hash of its tasks' keys."""
        joined = ",".join(t.key for t in self.tasks)
        return hashlib.sha256(joined.encode()).hexdigest()[:20]


def _layout_rows(infos: list[FileInfo]) -> list[Row]:
    """Rows grouped by family as the reference's table: image files, video files, then fusion."""
    pairs = {a.family: (a, b) for a, b in fusion_pairs(infos)}
    names = [i.backbone for i in infos]
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise UserError(
            f"backbone {duplicated[0]!r} appears in several feature files; pass one file per "
            "backbone (e.g. the files of one extraction folder)"
        )
    rows = []
    for family in sorted({i.family for i in infos}):
        members = sorted(
            (i for i in infos if i.family == family), key=lambda i: (i.kind != "image", i.backbone)
        )
        rows.extend(Row((i,)) for i in members)
        if family in pairs:
            rows.append(Row(pairs[family]))
    return rows


def rows_left_out(
    rows: list[Row], bad_files: dict[Path, str], exclude: Sequence[str] = ()
) -> dict[str, str]:
    """Row name -> why it cannot be built: a file that cannot be probed, or a fusion of files
    whose clips differ on the videos kept (fusion compares windows clip by clip)."""
    out = {}
    for row in rows:
        reasons = [bad_files[f.path] for f in row.files if f.path in bad_files]
        if reasons:
            out[row.name] = reasons[0]
        elif row.fused:
            try:
                data = open_probe_data([f.path for f in row.files], exclude=exclude)
                try:
                    check_same_clips(data)
                finally:
                    data.close()
            except FeatureFileError as error:
                out[row.name] = str(error)
    return out


# ------------------------------------------------------------------ the matrix


@dataclass
class MatrixResult:
    """What `run_matrix` did: the cells (with results), which were trained, and the outputs."""

    rows: list[Row]
    cells: list[Cell]
    trained: list[str]  # keys of the cells that trained something in this run
    correlations: list[dict]
    outputs: dict[str, Path]
    markdown: str
    left_out: dict[str, str] = field(default_factory=dict)  # row name -> reason
    videos_left_out: tuple[str, ...] = ()  # not in every file: no row sees them
    complete: bool = True  # False: other shards' runs are missing, no outputs written
    runs_trained: int = 0  # tasks (runs, scores) computed by this process


def run_matrix(
    features: Sequence[str | Path],
    out: str | Path,
    models: Sequence[str] = ("linear", "mlp", "divita"),
    splits: Sequence[int] | str = "all",
    seeds: Sequence[int] = (0,),
    config: TrainConfig | None = None,
    scores: Sequence[str] = ("logme", "hscore", "knn"),
    score_max_videos: int | None = None,
    knn_k: int = 10,
    jobs: int = 1,
    progress: bool = True,
    cache: Cache | str | Path | None = None,
    shard: Shard | None = None,
) -> MatrixResult:
    """Train (or load) every cell of the matrix and write its outputs under `out`.

    Args:
        features: feature files and/or folders (searched recursively, see
            `probe.catalogue.discover_feature_files`).
        out: the report folder: matrix.csv, matrix.md, matrix.json, matrix.png, cost.png.
        models: probe models (names of `probe.models.PROBES`), the matrix's columns.
        splits: "all" (every split of the files) or split indices.
        seeds: seeds; each cell runs every split x seed and reports mean ± std.
        config: training settings (its model, split and seed are set per cell); defaults to
            `TrainConfig()`, the reference's.
        scores: training-free scores among `probe.transferability.SCORES`; may be empty.
        score_max_videos: score at most this many train videos per split (None: all).
        knn_k: neighbours of the kNN score.
        jobs: runs trained side by side in worker processes (results equal `jobs=1`).
        progress: a progress bar over the runs (on stderr).
        cache: the task cache (`probe.tasks.Cache` or its folder; default: the user's).
        shard: this process's share of the runs (`vtl.shards`); the shard that finds every run
            done writes the outputs.

    Raises:
        UserError: bad options or feature files (one line naming what and where).
    """
    config = TrainConfig.from_dict((config or TrainConfig()).to_dict())
    config.fusion = "late"  # the matrix's fusion rows are the reference's late fusion
    models, scores = list(models), list(scores)
    _check_options(models, scores, seeds, jobs, score_max_videos, knn_k)
    config.validate()
    out = check_output_dir(out)
    cache = cache if isinstance(cache, Cache) else Cache(cache)
    infos = [read_file_info(p) for p in discover_feature_files(features)]
    bad_files, first, excluded = checked_files(infos, cache)  # rows' files decide the videos
    config.exclude_videos = excluded
    split_list = resolve_splits(splits, first)
    seed_list = [int(s) for s in seeds]
    check_splits(first, split_list, excluded)

    rows = _layout_rows(infos)
    left_out = rows_left_out(rows, bad_files, excluded)
    for name, reason in left_out.items():
        log.warning("matrix row %s left out: %s", name, reason)
    rows = [r for r in rows if r.name not in left_out]
    options = {"max_videos": score_max_videos, "knn_k": knn_k}
    cells: list[Cell] = []
    for row in rows:
        for model in models:
            cell_config = TrainConfig.from_dict({**config.to_dict(), "model": model})
            tasks = [
                run_task(row.files, cell_config, split, seed)
                for split in split_list
                for seed in seed_list
            ]
            cells.append(Cell(row, "probe", model, tasks))
        if not row.fused:
            for name in scores:
                tasks = [score_task(row.files[0], name, s, options, excluded) for s in split_list]
                cells.append(Cell(row, "score", name, tasks))
    tasks = [t for c in cells for t in c.tasks]
    work = run_tasks(tasks, cache, config, jobs, shard, progress, desc="matrix")
    trained = set(work.trained)
    result = MatrixResult(
        rows=rows,
        cells=cells,
        trained=[c.key for c in cells if any(t.key in trained for t in c.tasks)],
        correlations=[],
        outputs={},
        markdown="",
        left_out=left_out,
        videos_left_out=excluded,
        complete=work.complete,
        runs_trained=len(work.trained),
    )
    log.info(
        "matrix: %d rows, %d cells, %d runs trained here", len(rows), len(cells), len(work.trained)
    )
    if not work.complete:
        return result
    for cell in cells:
        cell.result = (
            summarize_cell(cell.tasks, work.results)
            if cell.kind == "probe"
            else _score_result(cell.tasks, work.results)
        )
    result.correlations = correlate(cells, models, scores)
    out.mkdir(parents=True, exist_ok=True)
    result.outputs = write_outputs(out, result, models, scores, split_list, seed_list)
    result.markdown = result.outputs["md"].read_text()
    return result


def _score_result(tasks: list[Task], results: dict[str, dict]) -> dict:
    ordered = [results[t.key] for t in sorted(tasks, key=lambda t: t.split)]
    values = [r["score"] for r in ordered]
    if None in values:  # it needs class logits the file lacks, or these features defeat it
        reasons = list(dict.fromkeys(r["reason"] for r in ordered if r.get("reason")))
        score = {"mean": None, "std": None, "n": 0, "per_split": values}
        if reasons:
            score["reason"] = "; ".join(reasons)
        return {
            "score": score,
            "train_seconds": sum(results[t.key]["train_seconds"] for t in tasks),
        }
    mean = sum(values) / len(values)
    std = (
        math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        if len(values) > 1
        else 0.0
    )
    return {
        "score": {"mean": mean, "std": std, "n": len(values), "per_split": values},
        "train_seconds": sum(results[t.key]["train_seconds"] for t in tasks),
    }


def _check_options(models, scores, seeds, jobs, score_max_videos, knn_k) -> None:
    unknown = [m for m in models if m not in PROBES]
    if unknown or not models:
        raise UserError(f"--models {','.join(models)!r}: choose among {', '.join(PROBES)}")
    if len(set(models)) != len(models):
        raise UserError(f"--models {','.join(models)!r}: a model is named twice")
    unknown = [s for s in scores if s not in SCORES]
    if unknown or len(set(scores)) != len(scores):
        raise UserError(
            f"--scores {','.join(scores)!r}: choose among {', '.join(SCORES)} (or none)"
        )
    if not seeds:
        raise UserError("--seeds must be at least 1")
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if score_max_videos is not None and score_max_videos < 2:
        raise UserError(f"--score-max-videos must be at least 2, got {score_max_videos}")
    if knn_k < 1:
        raise UserError(f"--knn-k must be at least 1, got {knn_k}")


# ------------------------------------------------------------------ correlation


def correlate(cells: list[Cell], models: list[str], scores: list[str]) -> list[dict]:
    """Rank correlation of each score with each probe's μAP across single-backbone rows.

    Fewer than 3 backbones give no meaningful ranking: those entries hold None and a note.
    """
    probe_uap = {
        (c.row.name, c.method): c.result["summary"]["test"]["uap"]["mean"]
        for c in cells
        if c.kind == "probe" and not c.row.fused
    }
    score_value = {
        (c.row.name, c.method): c.result["score"]["mean"]
        for c in cells
        if c.kind == "score" and c.result["score"]["mean"] is not None
    }
    out = []
    for score in scores:
        for model in models:
            names = [
                name
                for (name, method) in score_value
                if method == score and probe_uap.get((name, model)) is not None
            ]
            entry = {"score": score, "probe": model, "backbones": len(names)}
            if len(names) < 3:
                entry.update(kendall_tau=None, spearman_rho=None, note="fewer than 3 backbones")
            else:
                corr = rank_correlation(
                    [score_value[(n, score)] for n in names],
                    [probe_uap[(n, model)] for n in names],
                )
                defined = {k: (None if math.isnan(v) else v) for k, v in corr.items()}
                entry.update(defined)
                if None in defined.values():
                    entry["note"] = "a constant score or μAP, no ranking"
            out.append(entry)
    return out
