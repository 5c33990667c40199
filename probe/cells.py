"""The work behind `probe matrix` and `probe study`: tasks, their cache, and who runs them.

A task is the smallest result worth keeping: one probe run (feature files, probe model, the
training settings that change results, one split, one seed), one training-free score on one
split, or the check that a feature file is readable and finite. Its key is a hash of everything
that decides its result, the files' identity included (path, size, modification time, weights),
so a changed file gets new tasks. Finished tasks are JSON files in a cache folder shared by every
report (`--cache`; default `$VTL_CACHE_DIR/probe-runs`, else `~/.cache/vtl/probe-runs`): a run
trained for a matrix is not trained again for a study that needs it, a rerun trains nothing, and
more seeds train only the new ones.

`run_tasks` trains what is not cached yet, side by side in worker processes (`jobs`) and spread
over shards (`vtl.shards`: `--shard i/n`, torchrun or a SLURM array): every shard works out the
same assignment of tasks, trains its own, and the one that finds every task done writes the
report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from probe.config import TrainConfig
from probe.train import summarize_runs, train_probe
from probe.transferability import score_feature_file
from vtl.errors import FeatureFileError, UserError
from vtl.features import FeatureFile
from vtl.progress import progress_bar
from vtl.shards import Shard, assign_shards

log = logging.getLogger(__name__)

# Bump when a task's stored result changes meaning: old results are then recomputed, not reused.
CACHE_VERSION = 2
# The TrainConfig fields that change a run's result (seed and split are the task's own; device,
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
_PART_FILE = re.compile(r"\.part-\d+-of-\d+\.h5$")


def default_cache_dir() -> Path:
    """$VTL_CACHE_DIR/probe-runs, else the user's cache folder (vtl/probe-runs)."""
    if os.environ.get("VTL_CACHE_DIR"):
        return Path(os.environ["VTL_CACHE_DIR"]) / "probe-runs"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "vtl" / "probe-runs"


# ------------------------------------------------------------------ feature files


@dataclass(frozen=True)
class FileInfo:
    """What reports need to know about one feature file (read from its attributes)."""

    path: Path
    backbone: str
    family: str
    pretrain: str
    kind: str
    feature_dim: int
    weights_sha256: str
    n_videos: int
    n_clips: int
    n_splits: int
    label_names: tuple[str, ...]
    size: int
    mtime_ns: int
    cost: dict = field(default_factory=dict, hash=False, compare=False)
    config: dict = field(default_factory=dict, hash=False, compare=False)
    shot_detector: str = ""

    def identity(self) -> dict:
        """What names this file's content for the cache: a changed file gets new tasks."""
        return {
            "path": str(self.path),
            "backbone": self.backbone,
            "weights_sha256": self.weights_sha256,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
        }

    @property
    def params_m(self) -> float | None:
        return _number(self.cost.get("params_m"))

    @property
    def gflops_per_clip(self) -> float | None:
        """GFLOPs of the backbone per clip as extracted (the file's `cost` attribute)."""
        return _number(self.cost.get("gflops_per_clip"))

    @property
    def clips_per_video(self) -> float:
        return self.n_clips / max(1, self.n_videos)

    @property
    def gflops_per_video(self) -> float | None:
        per_clip = self.gflops_per_clip
        return None if per_clip is None else per_clip * self.clips_per_video

    @property
    def embed_seconds_per_video(self) -> float | None:
        seconds, videos = _number(self.cost.get("embed_seconds")), self.cost.get("videos")
        return None if seconds is None or not videos else seconds / videos


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def read_file_info(path: Path) -> FileInfo:
    """A feature file's identity, metadata and costs.

    Raises:
        FeatureFileError: not a readable vtl feature file.
    """
    with FeatureFile(path) as f:
        meta = f.meta
        stat = f.path.stat()
        return FileInfo(
            path=f.path.resolve(),
            backbone=meta.backbone,
            family=meta.family,
            pretrain=meta.pretrain,
            kind=meta.kind,
            feature_dim=int(f.feature_dim),
            weights_sha256=str((meta.weights or {}).get("sha256", "")),
            n_videos=int(f.n_videos),
            n_clips=int(f.n_clips),
            n_splits=int(f.splits.shape[1]),
            label_names=tuple(f.label_names),
            size=int(stat.st_size),
            mtime_ns=int(stat.st_mtime_ns),
            cost=dict(meta.cost or {}),
            config=dict(meta.config) if isinstance(meta.config, dict) else {},
            shot_detector=str(meta.shot_detector),
        )


def discover_feature_files(paths: Sequence[str | Path]) -> list[Path]:
    """The feature files named by `paths`: files as given, folders searched recursively for *.h5.

    In folders, shard part files (`*.part-<i>-of-<n>.h5`, merged by `extract merge`) and files
    that are not vtl feature files are skipped with a warning. Explicit files are taken as they
    are (a bad one is reported when it is read).

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


def check_one_dataset(infos: list[FileInfo]) -> None:
    """Reports compare feature files of one dataset: same number of videos, labels and splits.

    Raises:
        UserError: naming both files and what differs.
    """
    first = infos[0]
    for other in infos[1:]:
        for what, a, b in (
            ("labels", first.label_names, other.label_names),
            ("number of videos", first.n_videos, other.n_videos),
            ("number of splits", first.n_splits, other.n_splits),
        ):
            if a != b:
                raise UserError(
                    f"{first.path} and {other.path} disagree on {what} ({a} vs {b}); a report "
                    "compares backbones on one dataset, so pass the files of one dataset"
                )


def resolve_splits(splits: Sequence[int] | str, info: FileInfo) -> list[int]:
    """'all' or split indices, checked against the files' splits."""
    if isinstance(splits, str):
        if splits.strip().lower() == "all":
            return list(range(info.n_splits))
        raise UserError(f"--splits {splits!r}: give 'all' or numbers like 0,1,2")
    split_list = [int(s) for s in splits]
    bad = [s for s in split_list if not 0 <= s < info.n_splits]
    if bad or not split_list:
        raise UserError(f"--splits {split_list}: the files have splits 0..{info.n_splits - 1}")
    return split_list


# ------------------------------------------------------------------ tasks


@dataclass(frozen=True)
class Task:
    """One cached result: a probe run, a score on one split, or a file check."""

    kind: str  # "run", "score" or "check"
    files: tuple[FileInfo, ...]
    method: str = ""  # the probe model or the score
    split: int = 0
    seed: int = 0
    settings: tuple = ()  # (name, value) pairs that decide the result

    @property
    def key(self) -> str:
        spec = {
            "version": CACHE_VERSION,
            "kind": self.kind,
            "files": [f.identity() for f in self.files],
            "method": self.method,
            "split": self.split,
            "seed": self.seed,
            "settings": [list(item) for item in self.settings],
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]

    @property
    def weight(self) -> int:
        """Its share of the work, to balance shards: the clips it reads."""
        return sum(f.n_clips for f in self.files)


def run_task(files: Sequence[FileInfo], config: TrainConfig, split: int, seed: int) -> Task:
    """The task of one probe run of `config` (its result fields) on `files`."""
    values = config.to_dict()
    settings = tuple((name, values[name]) for name in RESULT_FIELDS if name != "model")
    return Task("run", tuple(files), config.model, int(split), int(seed), settings)


def score_task(info: FileInfo, method: str, split: int, options: dict) -> Task:
    return Task("score", (info,), method, int(split), 0, tuple(sorted(options.items())))


def check_task(info: FileInfo) -> Task:
    return Task("check", (info,))


class Cache:
    """Finished tasks, one JSON file each, written whole (temporary name, then rename)."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_dir()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())["result"]
        except (OSError, ValueError, KeyError):
            log.warning("%s: unreadable cached result, computing it again", path)
            return None

    def put(self, task: Task, result: dict) -> None:
        path = self.path(task.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "key": task.key,
            "kind": task.kind,
            "method": task.method,
            "split": task.split,
            "seed": task.seed,
            "settings": [list(item) for item in task.settings],
            "files": [f.identity() for f in task.files],
            "result": result,
        }
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, path)


def _run_one(task: Task, config: dict) -> dict:
    """Compute one task (top level, so worker processes can run it)."""
    started, started_cpu = time.perf_counter(), time.process_time()
    paths = [str(f.path) for f in task.files]
    if task.kind == "run":
        values = {**config, **dict(task.settings), "model": task.method, "split": task.split,
                  "seed": task.seed, "threads": 0}  # fmt: skip
        result = train_probe(paths, TrainConfig.from_dict(values), progress=False)
        out = {
            "test": result["metrics"]["test"],
            "val": result["metrics"]["val"],
            "chance": result["chance"]["test"],
            "per_label": result["per_label"]["test"],
            "epochs_run": [t["epochs_run"] for t in result["training"]],
            "best_epoch": [t["best_epoch"] for t in result["training"]],
        }
    elif task.kind == "score":
        options = dict(task.settings)
        value = score_feature_file(paths[0], split=task.split, methods=(task.method,),
                                   max_videos=options["max_videos"], knn_k=options["knn_k"],
                                   )[task.method]  # fmt: skip
        out = {"score": value}
    else:
        raise ValueError(f"unknown task kind {task.kind!r}")
    out["train_seconds"] = time.perf_counter() - started
    out["cpu_seconds"] = time.process_time() - started_cpu
    return out


def _run_with_threads(task: Task, config: dict, threads: int, worker: bool = False) -> dict:
    if worker:  # the main process has said what the data's warnings say, once
        logging.getLogger("probe").setLevel(logging.ERROR)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run_one(task, config)
    finally:
        torch.set_num_threads(before)


@dataclass
class TaskRun:
    """What `run_tasks` did."""

    results: dict[str, dict]  # key -> result, for every task found done
    trained: list[str]  # keys computed by this process
    missing: list[str]  # keys neither cached nor computed here (other shards' share, not done)

    @property
    def complete(self) -> bool:
        return not self.missing


def run_tasks(
    tasks: Sequence[Task],
    cache: Cache,
    config: TrainConfig,
    jobs: int = 1,
    shard: Shard | None = None,
    progress: bool = True,
    desc: str = "runs",
) -> TaskRun:
    """Compute the tasks that are not in `cache` and are this shard's, storing each as it ends.

    Args:
        tasks: the work (run and score tasks; duplicates are computed once).
        cache: where finished tasks are kept.
        config: training settings besides the tasks' own (device, memory budget, threads).
        jobs: tasks side by side in worker processes, each with its share of the torch threads;
            results equal `jobs=1`.
        shard: this process's share (None: all); the assignment balances the clips read and is
            the same in every shard.
        progress: a progress bar on stderr.
    """
    unique = list({t.key: t for t in tasks}.values())
    shard = shard or Shard(0, 1)
    order = sorted(unique, key=lambda t: t.key)
    if shard.count > 1:
        assignment = assign_shards([t.weight for t in order], shard.count)
        ours = {t.key for t, s in zip(order, assignment, strict=True) if s == shard.index}
    else:
        ours = {t.key for t in order}
    results = {t.key: r for t in unique if (r := cache.get(t.key)) is not None}
    todo = [t for t in unique if t.key not in results and t.key in ours]
    trained: list[str] = []
    if todo:
        cache.folder.mkdir(parents=True, exist_ok=True)
        jobs = max(1, min(jobs, len(todo)))
        # Each worker gets its share of the threads this process would use: N tasks side by side
        # on all threads each would oversubscribe the cores.
        total = config.threads or torch.get_num_threads()
        threads = max(1, total // jobs) if jobs > 1 else config.threads
        values = config.to_dict()
        bar = progress_bar(len(todo), desc, "run", not progress)
        try:
            if jobs == 1:
                done = ((t, _run_with_threads(t, values, threads)) for t in todo)
            else:
                from joblib import Parallel, delayed

                parallel = Parallel(n_jobs=jobs, backend="loky", return_as="generator")
                done = zip(
                    todo,
                    parallel(delayed(_run_with_threads)(t, values, threads, True) for t in todo),
                    strict=True,
                )
            for task, result in done:
                cache.put(task, result)
                results[task.key] = result
                trained.append(task.key)
                bar.set_postfix_str(f"{task.files[0].backbone} {task.method}"[:50])
                bar.update(1)
        finally:
            bar.close()
    missing = [t.key for t in unique if t.key not in results]
    return TaskRun(results, trained, missing)


def check_files(infos: Sequence[FileInfo], cache: Cache) -> dict[Path, str]:
    """Files that cannot be probed (unreadable or non-finite features) -> the reason; each file
    is read once and its verdict cached with its identity."""
    bad = {}
    for info in infos:
        task = check_task(info)
        verdict = cache.get(task.key)
        if verdict is None:
            try:
                with FeatureFile(info.path) as f:
                    f.check_finite()
                verdict = {"ok": True}
            except FeatureFileError as error:
                verdict = {"ok": False, "reason": str(error)}
            cache.folder.mkdir(parents=True, exist_ok=True)
            cache.put(task, verdict)
        if not verdict["ok"]:
            bad[info.path] = verdict["reason"]
    return bad


def summarize_cell(tasks: Sequence[Task], results: dict[str, dict]) -> dict:
    """A probe cell (runs over splits x seeds) as `probe.train.summarize_runs` summarizes it,
    with its total training time."""
    runs = [
        {"split": t.split, "seed": t.seed, **_run_fields(results[t.key])}
        for t in sorted(tasks, key=lambda t: (t.split, t.seed))
    ]
    return {
        "summary": summarize_runs(runs),
        "train_seconds": sum(results[t.key]["train_seconds"] for t in tasks),
        "cpu_seconds": sum(results[t.key]["cpu_seconds"] for t in tasks),
    }


def _run_fields(result: dict) -> dict:
    return {"test": result["test"], "chance": result["chance"], "per_label": result["per_label"]}
