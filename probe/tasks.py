"""The work behind `probe matrix` and `probe study`: tasks, their cache, and who runs them.

A task is the smallest result worth keeping: one probe run (feature files, probe model, the
training settings that change results, one split, one seed), one training-free score on one
split, or the check that a feature file is readable and finite. Its key is a hash of everything
that decides its result, the files' identity included (`probe.catalogue.FileInfo`: path, size,
modification time, weights), so a changed file gets new tasks. Finished tasks are JSON files in
a cache folder shared by every report (`--cache`; default `$VTL_CACHE_DIR/probe-runs`, else
`~/.cache/vtl/probe-runs`): a run trained for a matrix is not trained again for a study that
needs it, a rerun trains nothing, and more seeds train only the new ones.

`run_tasks` trains what is not cached yet, side by side in worker processes (`jobs`) and spread
over shards (`vtl.shards`: `--shard i/n`, torchrun or a SLURM array): every shard works out the
same assignment of tasks, trains its own, and the one that finds every task done writes the
report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from probe.catalogue import FileInfo, check_one_dataset, read_file_info, videos_left_out
from probe.config import TrainConfig
from probe.train import summarize_runs, sweep_picks, train_probe
from probe.transferability import SCORES, score_feature_file
from vtl.atomic import write_text
from vtl.defaults import WEIGHT_DECAY
from vtl.errors import FeatureFileError
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


def default_runs_dir() -> Path:
    """Where finished tasks are cached by default: $VTL_CACHE_DIR/probe-runs, else the user's
    cache folder (vtl/probe-runs)."""
    if os.environ.get("VTL_CACHE_DIR"):
        return Path(os.environ["VTL_CACHE_DIR"]) / "probe-runs"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "vtl" / "probe-runs"


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
    return Task(
        "run",
        tuple(files),
        config.model,
        int(split),
        int(seed),
        settings + _cotrain(config) + _protocol(config) + _excluded(config.exclude_videos),
    )


def _excluded(videos: Sequence[str]) -> tuple:
    """The videos left out, sorted (none: other runs keep their keys)."""
    return (("exclude_videos", tuple(sorted(videos))),) if videos else ()


def _protocol(config: TrainConfig) -> tuple:
    """The weight decay when it is not AdamW's default, and the sweep protocol with its grid
    (none for the reference protocol at the default weight decay, so those runs keep their
    keys)."""
    settings = ()
    if config.weight_decay != WEIGHT_DECAY:
        settings += (("weight_decay", float(config.weight_decay)),)
    if config.protocol != "reference":
        settings += (
            ("protocol", config.protocol),
            ("sweep_lrs", tuple(float(v) for v in config.sweep_lrs)),
            ("sweep_weight_decays", tuple(float(v) for v in config.sweep_weight_decays)),
        )
    return settings


def _cotrain(config: TrainConfig) -> tuple:
    """The settings of co-training and fine-tuning (none without them, so other runs keep their
    keys): the co-train files (their paths, for the run, and their identities, for the key) and
    the initial checkpoint (its path and its content's sha256)."""
    settings = ()
    if config.co_train:
        infos = [read_file_info(Path(p)) for p in config.co_train]
        settings += (
            ("co_train", tuple(str(i.path) for i in infos)),
            ("co_train_files", json.dumps([i.identity() for i in infos], sort_keys=True)),
        )
    if config.init_from:
        digest = hashlib.sha256(Path(config.init_from).read_bytes()).hexdigest()
        settings += (("init_from", str(Path(config.init_from).resolve())), ("init_sha256", digest))
    return settings


def score_task(
    info: FileInfo, method: str, split: int, options: dict, exclude: Sequence[str] = ()
) -> Task:
    """The task of one training-free score on the train videos of `split`, less `exclude`
    (keyed by the score's revision after its first, so that other scores keep their keys)."""
    settings = tuple(sorted(options.items())) + _excluded(exclude)
    if SCORES[method].revision > 1:
        settings += (("revision", SCORES[method].revision),)
    return Task("score", (info,), method, int(split), 0, settings)


def check_task(info: FileInfo) -> Task:
    # "usable": finite and not constant (a new name: files checked for finite values alone
    # are checked again)
    return Task("check", (info,), "usable")


class Cache:
    """Finished tasks, one JSON file each, written whole (temporary name, then rename)."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_runs_dir()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())["result"]
        except (OSError, ValueError, KeyError, TypeError):  # TypeError: JSON, but no record
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
        write_text(path, json.dumps(record, indent=1) + "\n")


def _run_one(task: Task, config: dict) -> dict:
    """Compute one task (top level, so worker processes can run it)."""
    started, started_cpu = time.perf_counter(), time.process_time()
    paths = [str(f.path) for f in task.files]
    if task.kind == "run":
        values = {
            **config,
            **dict(task.settings),
            "model": task.method,
            "split": task.split,
            "seed": task.seed,
            "threads": 0,
        }
        result = train_probe(paths, TrainConfig.from_dict(values), progress=False)
        out = {
            "test": result["metrics"]["test"],
            "val": result["metrics"]["val"],
            "chance": result["chance"]["test"],
            "per_label": result["per_label"]["test"],
            "epochs_run": [t["epochs_run"] for t in result["training"]],
            "best_epoch": [t["best_epoch"] for t in result["training"]],
        }
        if "co_training" in result:  # each collection's own test metrics
            out["co_training"] = result["co_training"]["collections"]
        out.update(sweep_picks(result))  # the sweep protocol: each model's pick on val
    elif task.kind == "score":
        options = dict(task.settings)
        failed: dict[str, str] = {}
        scores = score_feature_file(
            paths[0],
            split=task.split,
            methods=(task.method,),
            max_videos=options["max_videos"],
            knn_k=options["knn_k"],
            exclude=options.get("exclude_videos", ()),
            failed=failed,
        )
        # None: it needs logits the file lacks, or it cannot be computed on these features
        out = {"score": scores.get(task.method)}
        if task.method in failed:
            out["reason"] = failed[task.method]
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
    """Files that cannot be probed (unreadable, non-finite or constant features) -> the reason;
    each file is read once and its verdict cached with its identity."""
    bad = {}
    for info in infos:
        task = check_task(info)
        verdict = cache.get(task.key)
        if verdict is None:
            try:
                with FeatureFile(info.path) as f:
                    f.check_usable()
                verdict = {"ok": True}
            except FeatureFileError as error:
                verdict = {"ok": False, "reason": str(error)}
            cache.folder.mkdir(parents=True, exist_ok=True)
            cache.put(task, verdict)
        if not verdict["ok"]:
            bad[info.path] = verdict["reason"]
    return bad


def checked_files(
    infos: Sequence[FileInfo], cache: Cache
) -> tuple[dict[Path, str], FileInfo, tuple[str, ...]]:
    """A report's files checked before any training: they describe one dataset
    (`check_one_dataset`, before any file is read through); the files that cannot be probed
    (`check_files`: path -> reason); the first that can, whose splits every run uses; and the
    videos every run leaves out, those some file that can be probed lacks (`videos_left_out`)."""
    check_one_dataset(list(infos))
    bad = check_files(infos, cache)
    usable = [i for i in infos if i.path not in bad] or list(infos)
    return bad, usable[0], videos_left_out(usable)


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
    fields = {"test": result["test"], "chance": result["chance"], "per_label": result["per_label"]}
    if "sweep" in result:
        fields["sweep"] = result["sweep"]
    return fields
