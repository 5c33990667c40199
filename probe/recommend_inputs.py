"""What `probe recommend` gathers before it recommends: the candidates' names, their source
priors where a library records them, the size of the whole collection, and the quick probes'
per-video test predictions on the sample (the closed-form ridge probe's, and those of trained
probes through the run cache). The computation is `probe.recommend`, the report
`probe.recommend_report`; the command only wires them.
"""

from __future__ import annotations

import json
from pathlib import Path

from vtl.errors import UserError


def candidate_names(infos) -> list[str]:
    """Each file's backbone; files that share one are named by their path instead."""
    backbones = [i.backbone for i in infos]
    names = [
        b if backbones.count(b) == 1 else f"{i.path.parent.name}/{i.path.stem}"
        for b, i in zip(backbones, infos, strict=True)
    ]
    if len(set(names)) != len(names):
        names = [str(i.path) for i in infos]
    return names


def check_distinct(infos) -> None:
    """Refuse two files of one extraction (same backbone, weights, configuration and shot
    detector; a sample and the full run side by side in a folder): they would be ranked against
    each other as two candidates.

    Raises:
        UserError: naming both files.
    """
    seen = {}
    for info in infos:
        config = json.dumps(info.config, sort_keys=True, default=str)
        key = (info.backbone, info.weights_sha256, config, info.shot_detector)
        if key in seen:
            raise UserError(
                f"{seen[key]} and {info.path} are one extraction of {info.backbone} (same "
                "weights and configuration; a sample and a full run?): give one of them, e.g. "
                "the sample's folder or files"
            )
        seen[key] = info.path


def library_priors(infos, names: list[str]) -> dict[str, float]:
    """The ImageNet top-1 torchvision records for each file whose checkpoint is torchvision's
    (matched by the checkpoint's file name, which is the weights' URL's)."""
    import os

    checkpoints = [info.weights_name for info in infos]
    if not set(checkpoints) & torchvision_files():
        return {}  # no need to import torchvision (seconds)
    import torchvision

    from probe.recommend import torchvision_top1

    by_file = {}
    for model in torchvision.models.list_models():
        for weights in torchvision.models.get_model_weights(model):
            by_file[os.path.basename(weights.url)] = f"{type(weights).__name__}.{weights.name}"
    priors = {}
    for checkpoint, name in zip(checkpoints, names, strict=True):
        top1 = torchvision_top1(by_file[checkpoint]) if checkpoint in by_file else None
        if top1 is not None:
            priors[name] = top1
    return priors


def torchvision_files() -> set[str]:
    """The file names of the checkpoints torchvision's model builders download (the last part
    of their URLs), read from its sources: importing torchvision takes seconds (it imports
    torch._dynamo), and a recommendation needs it only for these checkpoints."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return set()
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    url = re.compile(r"https://download\.pytorch\.org/models/(?:[\w.-]+/)*([\w.-]+\.pth)")
    return {
        name for p in models.rglob("*.py") for name in url.findall(p.read_text("utf-8", "replace"))
    }


def collection_size(manifest: Path | None, path: Path, data) -> tuple[int, int, list[str]]:
    """The whole collection's videos and frames, and a note on where they come from: the
    manifest's videos (frames from their headers, `vtl.headers.fill_unknown`), else the
    sample's record (`of_videos`, the sample's frames per video extrapolated), else the files
    themselves (not a sample)."""
    from vtl.features import FeatureFile

    with FeatureFile(path) as f:  # all its videos: the ones other files lack count too
        sample, n, frames = dict(f.meta.sample), f.n_videos, int(f.n_frames.sum())
    if manifest is not None:
        from vtl.headers import fill_unknown, header_frames
        from vtl.manifest import read_manifest

        m = read_manifest(manifest)
        missing = set(data.video_ids) - set(m.video_ids)
        if missing:
            raise UserError(
                f"--manifest {manifest}: {len(missing)} sampled videos are not in it (e.g. "
                f"{sorted(missing)[0]!r}); pass the manifest the sample was drawn from"
            )
        counts, unknown = fill_unknown([header_frames(p) for p in m.paths], frames / n)
        total = round(sum(counts))
        if not unknown:
            return len(m), total, [f"collection: {len(m)} videos, {total} frames ({manifest})"]
        return (
            len(m),
            total,
            [
                f"collection: {len(m)} videos, about {total} frames ({manifest}; {unknown} of them "
                "raw streams whose headers give no frame count, each counted at the others' mean)"
            ],
        )
    if sample.get("of_videos"):
        videos = int(sample["of_videos"])
        total = round(frames * videos / n)
        note = f"collection: {videos} videos (the sample's record), about {total} frames"
        return videos, total, [note + " extrapolated from the sample's frames per video"]
    note = f"{path} is not a sample (no `sample` record): its {n} videos are the collection"
    return n, frames, [note]


def ridge_probes(data, splits: list[int], folds: int | None, seed: int):
    """The closed-form ridge probe of every candidate (`probe.quick`): cross-validated over the
    sampled videos (`folds` None: leave-one-out; >= 2: that many folds x `quick.REPEATS`,
    seeded by `seed`), else (`folds` 0) on the sample's `splits`.
    Returns ([recommend.ProbeRun], notes on splits left out, a line saying what ran)."""
    from probe import quick

    n = len(data.video_ids)
    if folds != 0:
        if n < 2:
            raise UserError(
                f"the sample holds {n} video: cross-validation needs at least 2; draw a larger "
                "sample"
            )
        runs = quick.cv_runs(data.candidates, data.labels, folds, quick.REPEATS, seed)
        if folds is None:
            return runs, [], f"ridge, leave-one-out over the {n} sampled videos"
        line = f"ridge, {min(folds, n)} folds x {quick.REPEATS} repeats over the sampled videos"
        return runs, [], line
    runs, notes = quick.split_runs(
        data.candidates, data.labels, data.label_names, data.splits, splits
    )
    if not runs:
        raise UserError(
            f"no split of the sample can train a probe ({notes[0]}); draw a larger sample or "
            "cross-validate the ridge probe (leave out --folds 0)"
        )
    return runs, notes, f"ridge on {len(runs) // len(data.candidates)} of the sample's splits"


def quick_probes(infos, names, video_ids, configs, splits, seeds, cache, progress=True):
    """Each candidate's quick probes on each usable split and seed, with their test videos'
    predictions, through the run cache (`probe.tasks.Cache`): a finished run is not trained
    again. Returns ([recommend.ProbeRun], runs trained now, notes on splits left out)."""
    import dataclasses
    import tempfile

    import numpy as np

    from probe.catalogue import check_splits
    from probe.recommend import ProbeRun
    from probe.tasks import run_task
    from vtl.progress import progress_bar

    # Every candidate trains and tests on the videos all files hold, as `probe matrix` does.
    excluded = tuple(sorted({v for info in infos for v in info.truth} - set(video_ids)))
    configs = [dataclasses.replace(config, exclude_videos=excluded) for config in configs]
    usable, notes = [], []
    for split in splits:
        try:
            check_splits(infos[0], [split], excluded)
            usable.append(split)
        except UserError as error:
            notes.append(f"split {split} left out of the quick probes: {error}")
    if not usable:
        raise UserError(
            f"--features {infos[0].path}: no split of the sample can train a probe ({notes[0]}); "
            "draw a larger sample"
        )
    index = {v: i for i, v in enumerate(video_ids)}
    work = [
        (info, name, config, split, seed)
        for info, name in zip(infos, names, strict=True)
        for config in configs
        for split in usable
        for seed in seeds
    ]
    runs, trained = [], 0
    bar = progress_bar(len(work), "quick probes", "run", not progress)
    with tempfile.TemporaryDirectory(prefix="vtl-recommend-") as scratch:
        for k, (info, name, config, split, seed) in enumerate(work):
            # The run's own cache key, kind "predictions": the test videos' scores, which the
            # bootstrap needs and a matrix run's cached metrics do not keep.
            task = dataclasses.replace(run_task([info], config, split, seed), kind="predictions")
            result = cache.get(task.key)
            if result is None:
                result = _train_predictions(info.path, config, split, seed, Path(scratch) / str(k))
                cache.folder.mkdir(parents=True, exist_ok=True)
                cache.put(task, result)
                trained += 1
            kept = [
                (index[v], scores)
                for v, scores in zip(result["video_ids"], result["scores"], strict=True)
                if v in index
            ]
            runs.append(
                ProbeRun(
                    candidate=name,
                    split=split,
                    seed=seed,
                    videos=np.array([row for row, _ in kept], dtype=np.int64),
                    scores=np.array([scores for _, scores in kept], dtype=np.float64),
                )
            )
            bar.update(1)
    bar.close()
    return runs, trained, notes


def _train_predictions(path: Path, config, split: int, seed: int, scratch: Path) -> dict:
    """Train one quick probe; its test videos' ids and label scores, and its test metrics."""
    import csv
    import dataclasses
    import time

    from probe.train import train_probe

    started = time.perf_counter()
    config = dataclasses.replace(config, split=split, seed=seed)
    result = train_probe([path], config, scratch, progress=False)
    with open(scratch / "predictions.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    return {
        "video_ids": [row[0] for row in rows],
        "scores": [[float(x) for x in row[1:]] for row in rows],
        "test": result["metrics"]["test"],
        "train_seconds": time.perf_counter() - started,
    }
