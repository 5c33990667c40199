"""The transferability matrix: every (feature file x probe) cell, family fusions and scores.

`run_matrix` finds the feature files, lays out the cells and trains what is not cached yet:

- one probe cell per (feature file, probe model), trained over every requested split and seed by
  `probe.train.run_grid` (its summary, mean ± std over split x seed runs, is the cell's result);
- one late-fusion cell per (family, probe model) where a family has exactly one image file
  (ImageNet, per frame) and one video file (Kinetics, per clip), as the reference's fusion rows;
- one score cell per (feature file, training-free score) from `probe.transferability`, the mean
  over the requested splits of the score on each split's train videos.

Each finished cell is a JSON file `cells/<key>.json` under the output folder, keyed by a hash of
everything that decides its result (the files' identity, the probe, the settings that change
results, splits and seeds), so a rerun loads finished cells and trains only new or changed ones.
The matrix is then written as `matrix.csv` (one row per cell), `matrix.md` (rows backbones,
columns probes, μAP mean ± std, best per column in bold, scores and their rank correlation with
the probes), `matrix.json`, and the pictures `matrix.png` and `cost.png` (`probe.plots`).

Cost figures (parameters, GFLOPs per clip) come from the file's `config` when it carries them
(`params_m`, `gflops_per_clip`), else from `BACKBONE_COSTS`; probing never imports the extraction
stack, so that table is kept here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from probe.config import TrainConfig
from probe.metrics import METRIC_NAMES
from probe.models import PROBES
from probe.train import run_grid
from probe.transferability import METHODS, rank_correlation, score_feature_file
from vtl import __version__
from vtl.errors import FeatureFileError, UserError
from vtl.features import FeatureFile

log = logging.getLogger(__name__)

# Bump when a cell's stored result changes meaning: old cells are then retrained, not reused.
CACHE_VERSION = 1

# (parameters in millions incl. the classifier, GFLOPs per 24-frame clip: FlopCounterMode FLOPs
# / 1e9, 2 per multiply-add), as `extract backbones` prints them. Used when a feature file does
# not carry its own figures.
BACKBONE_COSTS: dict[str, tuple[float, float]] = {
    "efficientnet_lite0": (4.65, 18.43),
    "efficientnet_lite1": (5.42, 28.75),
    "efficientnet_lite2": (6.09, 41.21),
    "resnet18": (11.69, 87.05),
    "resnet50": (25.56, 196.18),
    "shufflenet_v2_x2_0": (7.39, 27.90),
    "swin_t": (28.29, 215.51),
    "r2plus1d_18": (31.51, 121.56),
    "swin3d_t": (28.16, 151.71),
    "mvit_v2_s": (34.54, 128.45),
    "s3d": (8.32, 53.94),
    "x3d_xs": (3.79, 1.21),
    "x3d_s": (3.79, 3.92),
    "x3d_m": (3.79, 9.46),
}

# The TrainConfig fields that change a cell's result (seed and split come from the grid; device,
# memory budget and threads change speed, not results).
RESULT_FIELDS = (
    "model",
    "lr",
    "epochs",
    "batch_size",
    "patience",
    "scheduler_patience",
    "window",
    "fusion",
    "mask_padding",
)
SCORE_NAMES = {"logme": "LogME", "hscore": "H-score", "knn": "kNN μAP"}
_PART_FILE = re.compile(r"\.part-\d+-of-\d+\.h5$")


# ------------------------------------------------------------------ feature files


@dataclass(frozen=True)
class FileInfo:
    """What the matrix needs to know about one feature file (read from its attributes)."""

    path: Path
    backbone: str
    family: str
    pretrain: str
    kind: str
    feature_dim: int
    weights_sha256: str
    params_m: float | None
    gflops_per_clip: float | None
    n_videos: int
    n_splits: int
    label_names: tuple[str, ...]
    size: int
    mtime_ns: int

    def identity(self) -> dict:
        """What names this file's content for the cache: a changed file gets new cells."""
        return {
            "path": str(self.path),
            "backbone": self.backbone,
            "weights_sha256": self.weights_sha256,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
        }


def discover_feature_files(paths: Sequence[str | Path]) -> list[Path]:
    """The feature files named by `paths`: files as given, folders searched recursively for *.h5.

    In folders, shard part files (`*.part-<i>-of-<n>.h5`, merged by `extract merge`) and files
    that are not vtl feature files are skipped with a warning. Explicit files are taken as they
    are (a bad one fails when it is read).

    Raises:
        UserError: a path that does not exist, or no feature file found at all.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            for candidate in sorted(path.rglob("*.h5")):
                if _PART_FILE.search(candidate.name):
                    log.warning("skipping %s: a shard part file (merge it with `extract merge`)",
                                candidate)  # fmt: skip
                    continue
                try:
                    with FeatureFile(candidate) as f:
                        part = f.part
                except FeatureFileError as error:
                    log.warning("skipping %s", error)
                    continue
                if part is not None:
                    log.warning("skipping %s: a shard part file (part %s)", candidate, part)
                    continue
                found.append(candidate)
        else:
            raise UserError(f"--features {path}: no such file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        where = ", ".join(str(p) for p in paths) or "(nothing)"
        raise UserError(
            f"--features {where}: no feature files (*.h5) found; extract some with `extract run`"
        )
    return unique


def read_file_info(path: Path) -> FileInfo:
    """A feature file's identity, metadata and cost figures.

    Raises:
        FeatureFileError: not a readable vtl feature file.
    """
    with FeatureFile(path) as f:
        meta = f.meta
        config = meta.config if isinstance(meta.config, dict) else {}
        table = BACKBONE_COSTS.get(meta.backbone, (None, None))
        stat = f.path.stat()
        return FileInfo(
            path=f.path,
            backbone=meta.backbone,
            family=meta.family,
            pretrain=meta.pretrain,
            kind=meta.kind,
            feature_dim=int(f.feature_dim),
            weights_sha256=str((meta.weights or {}).get("sha256", "")),
            params_m=_number(config.get("params_m", table[0])),
            gflops_per_clip=_number(config.get("gflops_per_clip", table[1])),
            n_videos=int(f.n_videos),
            n_splits=int(f.splits.shape[1]),
            label_names=tuple(f.label_names),
            size=int(stat.st_size),
            mtime_ns=int(stat.st_mtime_ns),
        )


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _check_one_dataset(infos: list[FileInfo]) -> None:
    """A matrix compares backbones on one dataset: same videos count, labels and splits."""
    first = infos[0]
    for other in infos[1:]:
        for what, a, b in (
            ("labels", first.label_names, other.label_names),
            ("number of videos", first.n_videos, other.n_videos),
            ("number of splits", first.n_splits, other.n_splits),
        ):
            if a != b:
                raise UserError(
                    f"{first.path} and {other.path} disagree on {what} ({a} vs {b}); a matrix "
                    "compares backbones on one dataset, so pass the files of one dataset"
                )


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


# ------------------------------------------------------------------ cells


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
    method: str  # probe model name or score method
    key: str = ""
    result: dict = field(default_factory=dict)


def cell_key(
    row: Row, kind: str, method: str, config: TrainConfig, splits, seeds, score_options: dict
) -> str:
    """Hash of everything that decides a cell's result (see the module docstring)."""
    spec: dict = {
        "version": CACHE_VERSION,
        "kind": kind,
        "method": method,
        "files": [f.identity() for f in row.files],
        "splits": list(splits),
    }
    if kind == "probe":
        values = config.to_dict()
        spec["config"] = {name: values[name] for name in RESULT_FIELDS if name != "model"}
        spec["seeds"] = list(seeds)
    else:
        spec["score"] = score_options
    text = json.dumps(spec, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _train_cell(files: list[str], config: dict, splits: list[int], seeds: list[int]) -> dict:
    """Worker: one probe cell over every split and seed (top level, so processes can run it)."""
    started, started_cpu = time.perf_counter(), time.process_time()
    summary = run_grid(
        [Path(p) for p in files], TrainConfig.from_dict(config), splits, seeds, progress=False
    )
    return {
        "summary": summary,
        "train_seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - started_cpu,
    }


def _score_cell(path: str, method: str, splits: list[int], options: dict) -> dict:
    """Worker: one training-free score, its mean and std over the splits' train videos."""
    started, started_cpu = time.perf_counter(), time.process_time()
    values = [
        score_feature_file(
            path,
            split=split,
            methods=(method,),
            max_videos=options["max_videos"],
            knn_k=options["knn_k"],
        )[method]
        for split in splits
    ]
    mean = sum(values) / len(values)
    std = (
        math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        if len(values) > 1
        else 0.0
    )
    return {
        "score": {"mean": mean, "std": std, "n": len(values), "per_split": values},
        "train_seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - started_cpu,
    }


def _run_cell(job: tuple, threads: int) -> dict:
    """Run one cell's job with `threads` torch threads (0: as they are), then restore them."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        function, args = job
        return function(*args)
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ the matrix


@dataclass
class MatrixResult:
    """What `run_matrix` did: the cells (with results), which were trained, and the outputs."""

    rows: list[Row]
    cells: list[Cell]
    trained: list[str]  # keys of the cells trained in this run (the rest came from the cache)
    correlations: list[dict]
    outputs: dict[str, Path]
    markdown: str


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
) -> MatrixResult:
    """Train (or load) every cell of the matrix and write its outputs under `out`.

    Args:
        features: feature files and/or folders (searched recursively, see
            `discover_feature_files`).
        out: the report folder: matrix.csv, matrix.md, matrix.json, matrix.png, cost.png and the
            cell cache `cells/`.
        models: probe models (names of `probe.models.PROBES`), the matrix's columns.
        splits: "all" (every split of the files) or split indices.
        seeds: seeds; each cell runs every split x seed and reports mean ± std.
        config: training settings (its model, split and seed are set per cell); defaults to
            `TrainConfig()`, the reference's.
        scores: training-free scores among `probe.transferability.METHODS`; may be empty.
        score_max_videos: score at most this many train videos per split (None: all).
        knn_k: neighbours of the kNN score.
        jobs: cells trained side by side in worker processes, each with its share of the
            torch threads; results equal a run with `jobs=1`.
        progress: a tqdm bar over the cells (on stderr).

    Raises:
        UserError: bad options or feature files (one line naming what and where).
    """
    config = TrainConfig.from_dict((config or TrainConfig()).to_dict())
    config.fusion = "late"  # the matrix's fusion rows are the reference's late fusion
    models, scores = list(models), list(scores)
    _check_options(models, scores, seeds, jobs, score_max_videos, knn_k)
    config.validate()
    out = Path(out)
    infos = [read_file_info(p) for p in discover_feature_files(features)]
    _check_one_dataset(infos)
    split_list = _resolve_splits(splits, infos[0])
    seed_list = [int(s) for s in seeds]

    rows = _layout_rows(infos)
    score_options = {"max_videos": score_max_videos, "knn_k": knn_k}
    cells: list[Cell] = []
    for row in rows:
        for model in models:
            cells.append(Cell(row, "probe", model))
        if not row.fused:
            cells.extend(Cell(row, "score", method) for method in scores)
    for cell in cells:
        cell_config = TrainConfig.from_dict({**config.to_dict(), "model": cell.method})
        cell.key = cell_key(
            cell.row, cell.kind, cell.method, cell_config, split_list, seed_list, score_options
        )

    cache = out / "cells"
    todo = []
    for cell in cells:
        cached = _load_cell(cache / f"{cell.key}.json")
        if cached is not None:
            cell.result = cached
        else:
            todo.append(cell)
    log.info(
        "matrix: %d rows, %d cells, %d cached, %d to train",
        len(rows),
        len(cells),
        len(cells) - len(todo),
        len(todo),
    )
    _train_cells(todo, config, split_list, seed_list, score_options, cache, jobs, progress)

    correlations = correlate(cells, models, scores)
    out.mkdir(parents=True, exist_ok=True)
    outputs = write_outputs(out, rows, cells, models, scores, correlations, split_list, seed_list)
    return MatrixResult(
        rows=rows,
        cells=cells,
        trained=[c.key for c in todo],
        correlations=correlations,
        outputs=outputs,
        markdown=outputs["md"].read_text(),
    )


def _check_options(models, scores, seeds, jobs, score_max_videos, knn_k) -> None:
    unknown = [m for m in models if m not in PROBES]
    if unknown or not models:
        raise UserError(f"--models {','.join(models)!r}: choose among {', '.join(PROBES)}")
    if len(set(models)) != len(models):
        raise UserError(f"--models {','.join(models)!r}: a model is named twice")
    unknown = [s for s in scores if s not in METHODS]
    if unknown or len(set(scores)) != len(scores):
        raise UserError(
            f"--scores {','.join(scores)!r}: choose among {', '.join(METHODS)} (or none)"
        )
    if not seeds:
        raise UserError("--seeds must be at least 1")
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if score_max_videos is not None and score_max_videos < 2:
        raise UserError(f"--score-max-videos must be at least 2, got {score_max_videos}")
    if knn_k < 1:
        raise UserError(f"--knn-k must be at least 1, got {knn_k}")


def _resolve_splits(splits: Sequence[int] | str, info: FileInfo) -> list[int]:
    if isinstance(splits, str):
        if splits.strip().lower() == "all":
            return list(range(info.n_splits))
        raise UserError(f"--splits {splits!r}: give 'all' or numbers like 0,1,2")
    split_list = [int(s) for s in splits]
    bad = [s for s in split_list if not 0 <= s < info.n_splits]
    if bad or not split_list:
        raise UserError(f"--splits {split_list}: the files have splits 0..{info.n_splits - 1}")
    return split_list


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


def _load_cell(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("%s: unreadable cached cell, training it again", path)
        return None
    return stored.get("result")


def _train_cells(todo, config, splits, seeds, score_options, cache, jobs, progress) -> None:
    """Train the cells of `todo`, storing each in `cache` as soon as it finishes."""
    if not todo:
        return
    cache.mkdir(parents=True, exist_ok=True)
    jobs = min(jobs, len(todo))
    # Each worker gets its share of the threads this process would use: N side-by-side cells on
    # all threads each would oversubscribe the cores.
    total = config.threads or torch.get_num_threads()
    threads = max(1, total // jobs) if jobs > 1 else config.threads
    work = [(cell, _job(cell, config, splits, seeds, score_options)) for cell in todo]
    bar = tqdm(total=len(todo), desc="matrix", unit="cell", disable=not progress, file=sys.stderr)
    try:
        if jobs == 1:
            results = ((cell, _run_cell(job, threads)) for cell, job in work)
        else:
            from joblib import Parallel, delayed

            parallel = Parallel(n_jobs=jobs, backend="loky", return_as="generator")
            results = zip(
                (cell for cell, _ in work),
                parallel(delayed(_run_cell)(job, threads) for _, job in work),
                strict=True,
            )
        for cell, result in results:
            cell.result = result
            _store_cell(cache / f"{cell.key}.json", cell)
            bar.set_postfix_str(f"{cell.row.name} {cell.method}"[:60])
            bar.update()
    finally:
        bar.close()


def _job(cell: Cell, config: TrainConfig, splits, seeds, score_options) -> tuple:
    files = [str(f.path) for f in cell.row.files]
    if cell.kind == "probe":
        values = {**config.to_dict(), "model": cell.method, "threads": 0}
        return _train_cell, (files, values, list(splits), list(seeds))
    return _score_cell, (files[0], cell.method, list(splits), score_options)


def _store_cell(path: Path, cell: Cell) -> None:
    stored = {
        "key": cell.key,
        "kind": cell.kind,
        "method": cell.method,
        "row": cell.row.name,
        "files": [f.identity() for f in cell.row.files],
        "software_version": __version__,
        "result": cell.result,
    }
    # Written whole under a temporary name, then renamed: a killed run never leaves half a cell.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(stored, indent=2) + "\n")
    os.replace(tmp, path)


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
        (c.row.name, c.method): c.result["score"]["mean"] for c in cells if c.kind == "score"
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


# ------------------------------------------------------------------ outputs

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
    "params_m",
    "gflops_per_clip",
    "feature_dim",
    "train_seconds",
    "runs",
    "splits",
    "seeds",
    "files",
    "key",
]


def cell_record(cell: Cell) -> dict:
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
    else:
        record["score_mean"] = cell.result["score"]["mean"]
        record["score_std"] = cell.result["score"]["std"]
        record["runs"] = cell.result["score"]["n"]
    return record


def write_outputs(
    out: Path,
    rows: list[Row],
    cells: list[Cell],
    models: list[str],
    scores: list[str],
    correlations: list[dict],
    splits: list[int],
    seeds: list[int],
) -> dict[str, Path]:
    """Write matrix.csv, matrix.md, matrix.json, matrix.png and cost.png; return their paths."""
    from probe.plots import plot_cost, plot_heatmap

    records = [cell_record(c) for c in cells]
    paths = {
        "csv": out / "matrix.csv",
        "md": out / "matrix.md",
        "json": out / "matrix.json",
        "png": out / "matrix.png",
        "cost": out / "cost.png",
    }
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if record.get(k) is None else record[k] for k in CSV_COLUMNS})
    paths["csv"].write_text(buffer.getvalue())
    paths["md"].write_text(
        render_markdown(rows, cells, models, scores, correlations, splits, seeds)
    )
    summary = {
        "splits": splits,
        "seeds": seeds,
        "models": models,
        "scores": scores,
        "units": "probe metrics in percent (PR-AUC x 100); scores in their own units",
        "cells": records,
        "correlations": correlations,
    }
    paths["json"].write_text(json.dumps(summary, indent=2) + "\n")
    uap = {
        (c.row.name, c.method): c.result["summary"]["test"]["uap"]
        for c in cells
        if c.kind == "probe"
    }
    names = [r.name for r in rows]
    plot_heatmap(paths["png"], names, models, uap)
    costs = {r.name: r.gflops_per_clip for r in rows}
    plot_cost(paths["cost"], names, models, uap, costs)
    return paths


def render_markdown(
    rows: list[Row],
    cells: list[Cell],
    models: list[str],
    scores: list[str],
    correlations: list[dict],
    splits: list[int],
    seeds: list[int],
) -> str:
    """matrix.md: the μAP table (best per column in bold), scores, rank correlations."""
    by = {(c.row.name, c.kind, c.method): c for c in cells}
    columns: list[tuple[str, str]] = [("probe", m) for m in models]
    columns += [("score", s) for s in scores]
    values: dict[tuple[str, str, str], tuple[float, float]] = {}
    for row in rows:
        for kind, method in columns:
            cell = by.get((row.name, kind, method))
            if cell is None:
                continue
            if kind == "probe":
                uap = cell.result["summary"]["test"]["uap"]
                if uap["mean"] is not None:
                    values[(row.name, kind, method)] = (uap["mean"], uap["std"])
            else:
                score = cell.result["score"]
                values[(row.name, kind, method)] = (score["mean"], score["std"])
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
        f"seed(s) ({n_runs} run(s) per cell); the best of each column in **bold**.",
    ]
    if scores:
        lines.append(
            "Training-free scores (" + ", ".join(SCORE_NAMES[s] for s in scores) + ") on each "
            "split's train videos, mean ± std over splits; higher predicts better transfer."
        )
    header = ["Backbone", "Pretrain", "Kind"]
    header += [m for m in models] + [SCORE_NAMES[s] for s in scores]
    header += ["GFLOPs/clip", "Params (M)"]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["--:"] * (
        len(header) - 3)) + "|"]  # fmt: skip
    for row in rows:
        entries = [row.name, row.pretrain, row.kind]
        for kind, method in columns:
            value = values.get((row.name, kind, method))
            if value is None:
                entries.append("")
                continue
            digits = 2 if kind == "probe" or method == "knn" else 3
            scale = 100 if method == "knn" else 1  # kNN μAP is in [0, 1]: show it in % too
            text = f"{value[0] * scale:.{digits}f} ± {value[1] * scale:.{digits}f}"
            entries.append(f"**{text}**" if value[0] == best[(kind, method)] else text)
        entries.append(_fmt(row.gflops_per_clip))
        entries.append(_fmt(row.params_m))
        lines.append("| " + " | ".join(entries) + " |")
    chance = [c.result["summary"]["chance"]["uap"]["mean"] for c in cells
              if c.kind == "probe" and "chance" in c.result.get("summary", {})]  # fmt: skip
    if chance:
        lines += [
            "",
            f"Chance level: μAP {chance[0]:.2f} (the share of positive video-label pairs among "
            "the test videos, mean over splits: what a ranking that knows nothing scores).",
        ]
    lines += [
        "",
        "Other metrics (mAP, wAP, sAP), training times and every cell's settings: `matrix.csv`.",
    ]
    if correlations:
        lines += [
            "",
            "## Do the training-free scores rank backbones as the probes do?",
            "",
            "Rank correlation across single backbones (fusion rows left out) between each score "
            "and each probe's μAP: 1 = same order, 0 = unrelated, -1 = reversed.",
            "",
            "| Score | Probe | Kendall τ | Spearman ρ | Backbones |",
            "|---|---|--:|--:|--:|",
        ]
        for c in correlations:
            if c["kendall_tau"] is None:
                tau = rho = f"n/a ({c.get('note', '')})"
            else:
                tau, rho = f"{c['kendall_tau']:.2f}", f"{c['spearman_rho']:.2f}"
            lines.append(
                f"| {SCORE_NAMES[c['score']]} | {c['probe']} | {tau} | {rho} | {c['backbones']} |"
            )
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"
