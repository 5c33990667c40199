"""`probe`: train probes on cached clip features, score checkpoints, write predictions.

Thin commands over `probe.train`, `probe.evaluate`, `probe.matrix`, `probe.study`,
`probe.transferability` and `probe.trailers12k`, each imported when its command runs (so
`--help` loads no torch); shared options come from `probe.options`. Results go to files and
stdout, logs and progress bars to stderr. User errors are one line and exit code 2
(`vtl.cli.run_app`).
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle worker threads sleep instead of spinning. On a shared machine
# (or several probe runs side by side) spinning threads make every parallel op wait for a
# descheduled peer, 10-100x slower; set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import typer  # noqa: E402

# Only light modules here: `probe --help` must not wait for torch, sklearn or matplotlib (the
# commands import their machinery when they run). probe.options and probe.transferability's
# registry load neither.
from probe.config import check_memory_budget, check_seeds  # noqa: E402
from probe.options import (  # noqa: E402
    DEFAULT_CONFIG,
    FIT,
    HARDWARE,
    REPORT_RUNS,
    QuietOption,
    ReportSplitsOption,
    WaitOption,
    shared_options,
    train_config,
)
from probe.transferability import DEFAULT_SCORES, SCORES  # noqa: E402
from vtl import defaults  # noqa: E402
from vtl.atomic import write_text  # noqa: E402
from vtl.cli import run_app  # noqa: E402
from vtl.errors import UserError  # noqa: E402
from vtl.paths import check_output_dir, check_output_file  # noqa: E402
from vtl.shards import resolve_shard  # noqa: E402
from vtl.study import AXES, read_study  # noqa: E402

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train probes on cached clip features and score them with the reference metrics.",
)

RIDGE = "ridge"  # `probe recommend`'s closed-form quick probe (probe.quick): fit here, not cached
# Bootstrap resamples: past 100,000 the estimates move by less than they are worth, and each
# resample holds a row of the sample's videos.
MAX_RESAMPLES = 100_000
_HEADER = {"uap": "uAP", "map": "mAP", "wap": "wAP", "sap": "sAP"}


@app.command()
@shared_options(*FIT, "window", *HARDWARE)
def train(
    features: list[Path] = typer.Option(
        ..., "--features", help="Feature file (.h5); twice or more for fusion."
    ),
    out: Path = typer.Option(..., "--out", help="Run folder (metrics.json, predictions.csv, ...)."),
    model: str = typer.Option(defaults.PROBE_MODEL, help="divita, linear, mlp, savg or gru."),
    split: int = typer.Option(DEFAULT_CONFIG.split, help="Split column to train and test on."),
    seed: int = typer.Option(DEFAULT_CONFIG.seed, help="Random seed (first seed with --seeds)."),
    splits: str = typer.Option(None, help="'all' or a list like 0,1,2: run every split."),
    seeds: int = typer.Option(None, help="Run this many seeds (seed, seed+1, ...)."),
    fusion: str = typer.Option(
        DEFAULT_CONFIG.fusion,
        help="Several files: late (model per file, logits averaged) or concat.",
    ),
    co_train: list[Path] = typer.Option(
        None,
        help="Co-train with another collection's features (same backbone; repeatable): one "
        "model, a head per collection, tested on --features.",
    ),
    init_from: Path = typer.Option(
        None, help="Fine-tune: start from this checkpoint's probe (trained on another collection)."
    ),
    shared: dict = None,
    threads: int = typer.Option(DEFAULT_CONFIG.threads, help="torch threads (0: torch's default)."),
    quiet: QuietOption = False,
) -> None:
    """Train a probe on one split and seed (or on every split and seed) and test it."""
    from probe.train import run_grid, sweep_picks, train_probe

    own = {"seed": seed, "split": split, "fusion": fusion, "threads": threads}
    own["co_train"] = tuple(str(p) for p in co_train or ())
    own["init_from"] = None if init_from is None else str(init_from)
    config = train_config(shared, model=model, **own).validate()
    if splits is None and seeds is None:
        result = train_probe(features, config, out, progress=not quiet)
        _print_table(["split", "seed"], [[split, seed, result["metrics"]["test"]]])
        _print_chance(result["chance"]["test"])
        _print_collections(result.get("co_training", {}).get("collections", []))
        _print_picks(sweep_picks(result).get("sweep", []))
        typer.echo(
            f"wrote {out / 'metrics.json'}, {out / 'predictions.csv'}, {out / 'checkpoint.pt'}"
        )
        return
    split_list = _parse_splits(splits, features) if splits is not None else [split]
    seed_list = check_seeds(seed, 1 if seeds is None else seeds)
    summary = run_grid(features, config, split_list, seed_list, out, progress=not quiet)
    rows = [[r["split"], r["seed"], r["test"]] for r in summary["runs"]]
    _print_table(["split", "seed"], rows, summary["test"])
    _print_chance({k: v["mean"] for k, v in summary["chance"].items()})
    _print_collections(
        [
            {**c, "test": {m: v["mean"] for m, v in c["test"].items()}}
            for c in summary.get("co_training", [])
        ]
    )
    for r in summary["runs"]:
        if r.get("sweep"):
            typer.echo(f"split {r['split']} seed {r['seed']} ", nl=False)
            _print_picks(r["sweep"])
    typer.echo(f"wrote {out / 'summary.json'} and one folder per run")


def _parse_splits(text: str, features: list[Path]) -> list[int]:
    if text.strip().lower() == "all":
        from probe.data import open_probe_data

        data = open_probe_data(features)
        try:
            return list(range(data.n_splits))
        finally:
            data.close()
    try:
        numbers = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        numbers = []
    if not numbers:
        raise UserError(f"--splits {text!r}: give 'all' or numbers like 0,1,2")
    if len(set(numbers)) < len(numbers):
        raise UserError(f"--splits {text!r}: a split is named twice")
    return numbers


def _report_splits(text: str) -> str | list[int]:
    """--splits of a report: 'all' (resolved against the files later) or split numbers."""
    return "all" if text.strip().lower() == "all" else _parse_splits(text, [])


def _print_table(keys: list[str], rows: list[list], summary: dict | None = None) -> None:
    from probe.metrics import METRIC_NAMES

    header = [*keys, *(_HEADER[m] for m in METRIC_NAMES)]
    typer.echo("  ".join(f"{h:>7}" for h in header))
    for *ids, metrics in rows:
        cells = [f"{i:>7}" for i in ids] + [f"{metrics[m]:7.2f}" for m in METRIC_NAMES]
        typer.echo("  ".join(cells))
    if summary is not None:
        cells = [f"{'mean':>7}", f"{'±std':>7}"]
        cells += [f"{summary[m]['mean']:.2f}±{summary[m]['std']:.2f}" for m in METRIC_NAMES]
        typer.echo("  ".join(cells))


def _print_collections(collections: list[dict]) -> None:
    """Co-training: each collection's own test metrics (mean over runs), scored with its head."""
    from probe.metrics import METRIC_NAMES

    for c in collections:
        cells = [f"{c['role']:>16}"] + [f"{c['test'][m]:7.2f}" for m in METRIC_NAMES]
        typer.echo("  ".join(cells) + f"  {c['path']}")


def _print_picks(picks: list[dict]) -> None:
    """The sweep protocol: the (lr, weight decay) each model picked on validation."""
    for pick in picks:
        edge = f"; at the grid's edge ({', '.join(pick['edges'])})" if pick["edges"] else ""
        typer.echo(
            f"sweep pick: lr {pick['lr']:g}, weight decay {pick['weight_decay']:g} "
            f"(val uAP {pick['val_uap']:.2f}, best epoch {pick['best_epoch'] + 1}{edge})"
        )


def _print_chance(chance: dict) -> None:
    """The chance level of each metric on the test labels (what an uninformed ranking scores)."""
    from probe.metrics import METRIC_NAMES

    cells = [f"{'chance':>7}", f"{'':>7}"] + [f"{chance[m]:7.2f}" for m in METRIC_NAMES]
    typer.echo("  ".join(cells))


@app.command("eval")
def eval_(
    checkpoint: Path = typer.Option(..., help="checkpoint.pt written by `probe train`."),
    features: list[Path] = typer.Option(..., "--features", help="Feature file(s), as in training."),
    split: int = typer.Option(None, help="Split (default: the one trained on)."),
    subset: str = typer.Option("test", help="train, val or test."),
    out: Path = typer.Option(None, help="Also write the metrics to this JSON file."),
    memory_budget_gb: float = typer.Option(None, help="Override the checkpoint's budget."),
) -> None:
    """Score a checkpoint on a split of feature files with the reference metrics."""
    if out is not None:
        check_output_file(out)
    check_memory_budget(memory_budget_gb)
    from probe.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(checkpoint, features, split, subset, memory_budget_gb)
    result.pop("scores")
    result.pop("video_ids")
    _print_table(["split", "subset"], [[result["split"], subset, result["metrics"]]])
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text(out, json.dumps(result, indent=2) + "\n")
        typer.echo(f"wrote {out}")


@app.command("predict")
def predict_(
    checkpoint: Path = typer.Option(..., help="checkpoint.pt written by `probe train`."),
    features: list[Path] = typer.Option(..., "--features", help="Feature file(s), as in training."),
    out: Path = typer.Option(..., help="CSV to write: video_id,<label scores>."),
    split: int = typer.Option(None, help="With --subset: the split (default: trained on)."),
    subset: str = typer.Option(None, help="Only train, val or test videos (default: all)."),
    memory_budget_gb: float = typer.Option(None, help="Override the checkpoint's budget."),
) -> None:
    """Write a checkpoint's per-label scores for the videos of feature files."""
    check_output_file(out)
    check_memory_budget(memory_budget_gb)
    from probe.evaluate import predict, write_predictions

    ids, labels, scores = predict(checkpoint, features, split, subset, memory_budget_gb)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_predictions(out, ids, labels, scores)
    typer.echo(f"wrote {len(ids)} videos to {out}")


def _names(text: str) -> list[str]:
    """A comma-separated option as a list; "none" or "" is the empty list."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    return [] if names == ["none"] else names


@app.command()
@shared_options(*REPORT_RUNS, *FIT, "window", *HARDWARE, "threads")
def matrix(
    features: list[Path] = typer.Option(
        ..., "--features", help="Feature files and/or folders (searched for *.h5); repeatable."
    ),
    out: Path = typer.Option(..., "--out", help="Report folder, e.g. reports/NAME."),
    models: str = typer.Option("linear,mlp,divita", help="Probe models, the matrix's columns."),
    splits: ReportSplitsOption = "all",
    seeds: int = typer.Option(1, help="Seeds per split (seed, seed+1, ...)."),
    seed: int = typer.Option(0, help="First seed."),
    scores: str = typer.Option(
        ",".join(DEFAULT_SCORES), help=f"Training-free scores: {','.join(SCORES)} or none."
    ),
    score_max_videos: int = typer.Option(None, help="Score at most this many train videos."),
    shared: dict = None,
    print_: bool = typer.Option(False, "--print", help="Also print matrix.md to stdout."),
    wait: WaitOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train every (feature file x probe) cell, family fusions and scores; write the matrix.

    Finished runs are cached (--cache, shared with `probe study`): a rerun trains only new or
    changed runs.
    """
    seed_list = check_seeds(seed, seeds)
    from probe.matrix import run_matrix

    split_list = _report_splits(splits)
    with _report_lock(out, shared["shard"], wait), _quiet_runs():
        result = run_matrix(
            features,
            out,
            models=_names(models),
            splits=split_list,
            seeds=seed_list,
            scores=_names(scores),
            score_max_videos=score_max_videos,
            **_report_runs(shared, quiet),
        )
    cached = len(result.cells) - len(result.trained)
    trained = f"trained {len(result.trained)} cells, {cached} from the cache"
    _report_written(result, "matrix", out, trained, print_)


@contextlib.contextmanager
def _quiet_runs():
    """One line per run under a bar over runs is noise; warnings still show."""
    quieter = [logging.getLogger(n) for n in ("probe.train", "probe.transferability")]
    levels = [logger.level for logger in quieter]
    for logger in quieter:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(quieter, levels, strict=True):
            logger.setLevel(level)


def _report_runs(shared: dict, quiet: bool) -> dict:
    """How a report (`matrix`, `study`) trains its runs: the training settings, and where and
    how the runs are spread (`REPORT_RUNS`)."""
    return {
        "config": train_config(shared),
        "jobs": shared["jobs"],
        "cache": _cache_dir(shared["cache"]),
        "shard": resolve_shard(shared["shard"]),
        "progress": not quiet,
    }


def _cache_dir(cache: Path | None) -> Path | None:
    """--cache, checked: a folder that can be made or written in (None: the default)."""
    return None if cache is None else check_output_dir(cache, "--cache")


def _report_lock(out: Path, shard: str | None, wait: bool):
    """One owner per report folder (`vtl.lock`); shards of one run lock a name of their own."""
    from vtl.lock import OutputLock

    shard = resolve_shard(shard)
    if shard.count > 1:
        out = out.with_name(f"{out.name}.shard-{shard.index}-of-{shard.count}")
    return OutputLock(out, wait=wait)


def _report_written(result, what: str, out: Path, trained: str, print_: bool) -> None:
    """How `matrix` and `study` end. A shard whose runs are done while others still train says
    so; the run that wrote the report logs what it trained (`trained`) and the files, prints the
    report with --print, and its path."""
    if not result.complete:
        typer.echo(
            f"this shard's runs are done; the last shard to finish writes the {what} to {out}",
            err=True,
        )
        return
    written = ", ".join(p.name for p in result.outputs.values())
    logging.getLogger(__name__).info("%s; wrote %s", trained, written)
    if print_:
        typer.echo(result.markdown)
    typer.echo(str(result.outputs["md"]))


@app.command()
@shared_options(*REPORT_RUNS, *FIT, *HARDWARE, "threads")
def study(
    study_dir: Path = typer.Option(
        None, "--study", help="A study made by `extract study` (its folder or study.json)."
    ),
    features: list[Path] = typer.Option(
        None,
        "--features",
        help="Instead of --study: one feature file per backbone (repeatable); "
        "the probe axes alone are studied.",
    ),
    out: Path = typer.Option(None, "--out", help="Report folder (default: STUDY/report)."),
    window: str = typer.Option(None, help="Clips per window to compare, e.g. 10,30."),
    models: str = typer.Option(None, help="Temporal models to compare, e.g. savg,gru,divita."),
    co_train: list[Path] = typer.Option(
        None,
        help="Compare each probe alone with one co-trained with these features of other "
        "collections (same backbones; repeatable): the cotrain axis.",
    ),
    design: str = typer.Option(None, help="axis or grid (default: the study's)."),
    splits: ReportSplitsOption = "all",
    seeds: int = typer.Option(3, help="Seeds per split (seed, seed+1, ...): the test's pairs."),
    seed: int = typer.Option(0, help="First seed."),
    alpha: float = typer.Option(0.05, help="Level of the paired test's verdict."),
    shared: dict = None,
    print_: bool = typer.Option(False, "--print", help="Also print study.md to stdout."),
    wait: WaitOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train every variant of a study and report each one's difference from the baseline with a
    paired test over the same splits and seeds.

    Runs are cached (shared with `probe matrix`): a rerun trains nothing new.
    """
    seed_list = check_seeds(seed, seeds)
    from probe.study import check_study_inputs, run_study

    check_study_inputs(study_dir, features)
    plan = read_study(study_dir) if study_dir is not None else None
    if out is None:
        if plan is None:
            raise UserError("--out: give a report folder (with --features there is no study)")
        out = plan.path.parent / "report"
    split_list = _report_splits(splits)
    probe_axes = {"window": AXES["window"].values(window), "model": AXES["model"].values(models)}
    with _report_lock(out, shared["shard"], wait), _quiet_runs():
        result = run_study(
            out,
            plan,
            features or (),
            probe_axes,
            split_list,
            seed_list,
            design=design,
            alpha=alpha,
            co_train=co_train or (),
            **_report_runs(shared, quiet),
        )
    trained = f"study: {len(result.variants)} variants, {result.trained} runs trained now"
    _report_written(result, "study report", out, trained, print_)


@app.command()
def score(
    features: Path = typer.Option(..., "--features", help="Feature file (.h5)."),
    split: int = typer.Option(0, help="Split whose train videos are scored."),
    methods: str = typer.Option(",".join(SCORES), help=f"Any of {', '.join(SCORES)}."),
    max_videos: int = typer.Option(None, help="Score at most this many train videos."),
    knn_k: int = typer.Option(10, help="Neighbours of the kNN score."),
    out: Path = typer.Option(None, help="Also write the scores to this JSON file."),
) -> None:
    """Training-free transferability scores of a feature file (no probe trained)."""
    names = _names(methods)
    unknown = [n for n in names if n not in SCORES]
    if not names or unknown:
        shown = f" {unknown[0]!r}" if unknown else ""
        raise UserError(f"--methods{shown}: choose among {', '.join(SCORES)}")
    if max_videos is not None and max_videos < 2:
        raise UserError(f"--max-videos must be at least 2, got {max_videos}")
    if knn_k < 1:
        raise UserError(f"--knn-k must be at least 1, got {knn_k}")
    if out is not None:
        check_output_file(out)
    from probe.transferability import score_feature_file
    from vtl.features import FeatureFile

    with FeatureFile(features) as f:  # the whole file, as `probe matrix` checks it
        f.check_usable()
    failed: dict[str, str] = {}  # a score these features defeat: said, the others computed
    results = score_feature_file(
        features, split, names, max_videos=max_videos, knn_k=knn_k, failed=failed
    )
    if failed and not results:
        reasons = "; ".join(f"{name}: {why}" for name, why in failed.items())
        raise UserError(f"{features}: no score could be computed on split {split} ({reasons})")
    for name, value in results.items():
        typer.echo(f"{name:>7}  {value:.6f}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "features": str(features),
            "split": split,
            "max_videos": max_videos,
            "knn_k": knn_k,
            "scores": results,
        }
        if failed:
            record["failed"] = failed
        write_text(out, json.dumps(record, indent=2) + "\n")
        typer.echo(f"wrote {out}")


@app.command("import-trailers12k")
def import_trailers12k_(
    features: Path = typer.Option(..., "--features", help="The reference's zarr store (folder)."),
    labels: Path = typer.Option(..., "--labels", help="The reference's mtgc.csv."),
    out: Path = typer.Option(..., "--out", help="Feature file to write (.h5)."),
    backbone: str = typer.Option("unknown", help="Backbone name recorded in the file."),
    pretrain: str = typer.Option("unknown", help="Pretraining recorded (in1k, k400, ...)."),
    kind: str = typer.Option("video", help="image (trailers_i_*) or video (trailers_k_*)."),
    family: str = typer.Option(None, help="Backbone family (default: the backbone)."),
    input_size: int = typer.Option(0, help="Backbone input size, if known (0: unknown)."),
    quiet: QuietOption = False,
) -> None:
    """Convert the reference work's published Trailers12k features into a vtl feature file."""
    if kind not in ("image", "video"):
        raise UserError(f"--kind {kind!r}: choose image or video")
    check_output_file(out)
    from probe.trailers12k import import_trailers12k

    path = import_trailers12k(
        features,
        labels,
        out,
        backbone=backbone,
        pretrain=pretrain,
        kind=kind,
        family=family,
        input_size=input_size,
        progress=not quiet,
    )
    typer.echo(f"wrote {path}")


@app.command()
@shared_options("cache", *FIT, "window", *HARDWARE, "threads")
def recommend(
    features: list[Path] = typer.Option(
        ...,
        "--features",
        help="The candidates' sample feature files and/or folders (searched for *.h5), one file "
        "per backbone, e.g. from `extract run --sample 0.2`; repeatable.",
    ),
    out: Path = typer.Option(..., "--out", help="Report folder, e.g. reports/recommend."),
    manifest: Path = typer.Option(
        None,
        help="The whole collection's manifest: its videos' frame counts give each candidate's "
        "cost (default: the sample's size extrapolated to the collection it was drawn from).",
    ),
    models: str = typer.Option(
        "ridge",
        help="Quick probes: ridge (closed form: a ridge regression on each video's mean "
        "features, its penalty picked on held-out videos) and/or trained probes (linear, mlp, "
        "...: through the run cache, on the sample's splits).",
    ),
    folds: int = typer.Option(
        None,
        help="The ridge probe: cross-validated over every sampled video, leave-one-out "
        "(default: exact, one fit per candidate) or with this many folds x 5 repeats; 0: on "
        "the sample's splits instead, as the trained probes.",
    ),
    splits: ReportSplitsOption = "all",
    seeds: int = typer.Option(1, help="Seeds per split of the trained probes (seed, seed+1, ...)."),
    seed: int = typer.Option(0, help="First seed (also the bootstrap's seed)."),
    scores: str = typer.Option(
        "all", help="Training-free scores, comma-separated, 'all' (every registered) or none."
    ),
    prior: list[str] = typer.Option(
        None,
        help="NAME=TOP1: a candidate's published source top-1 in percent, where its library "
        "records none (torchvision's are found by themselves); repeatable.",
    ),
    resamples: int = typer.Option(
        None, help="Bootstrap resamples of the sample's videos (default: 200, the fewest advised)."
    ),
    shared: dict = None,
    print_: bool = typer.Option(False, "--print", help="Also print recommendation.md."),
    quiet: QuietOption = False,
) -> None:
    """Recommend the backbone to extract on the whole collection, from a sample of it.

    Reads each candidate's sample file, fits the quick probes (the ridge probe cross-validated
    over the sampled videos, or on the sample's splits; trained probes on the splits and seeds,
    kept in the probe run cache, --cache: a rerun trains nothing), computes the training-free
    scores and the source-accuracy prior, bootstraps the sample's videos, and writes
    recommendation.md, .csv and .png; prints the one-line verdict and the report's path.
    """
    seed_list = check_seeds(seed, seeds)
    if resamples is not None and not 1 <= resamples <= MAX_RESAMPLES:
        raise UserError(f"--resamples must be 1 to {MAX_RESAMPLES:,}, got {resamples:,}")
    if folds is not None and (folds < 0 or folds == 1):
        raise UserError(f"--folds must be 0 (the sample's splits) or at least 2, got {folds}")
    model_list = _names(models)
    if not model_list:
        raise UserError("--models: give at least one quick probe, e.g. ridge or linear,mlp")
    given_priors = _parse_priors(prior or [])
    check_output_dir(out)
    trained_models = [m for m in model_list if m != RIDGE]
    if trained_models:  # (the ridge probe alone needs no torch)
        from probe.models import PROBES

        unknown = [m for m in trained_models if m not in PROBES]
        if unknown:
            raise UserError(f"--models {unknown[0]!r}: choose among {RIDGE}, {', '.join(PROBES)}")
    configs = [train_config(shared, model=m).validate() for m in trained_models]
    from probe import recommend as rec
    from probe import recommend_inputs as inputs
    from probe import recommend_report
    from probe.catalogue import discover_feature_files, read_file_info, resolve_splits

    methods = _recommend_scores(scores)
    paths = discover_feature_files(features)
    if len(paths) < 2:
        raise UserError(
            f"--features: found {len(paths)} feature file ({paths[0]}); a recommendation "
            "compares at least two candidates' files of the same sample"
        )
    infos = [read_file_info(p) for p in paths]
    inputs.check_distinct(infos)
    names = inputs.candidate_names(infos)
    data = rec.read_sample(paths, names)
    rec.set_priors(data.candidates, {**inputs.library_priors(infos, names), **given_priors})
    unknown = sorted(set(given_priors) - set(names))
    if unknown:
        raise UserError(f"--prior {unknown[0]}: no such candidate; the candidates are {names}")
    split_list = resolve_splits(_report_splits(splits), infos[0])
    collection_videos, collection_frames, notes = inputs.collection_size(manifest, paths[0], data)
    runs, probe_notes, done, cached = [], [], [], ""
    if RIDGE in model_list:
        runs, probe_notes, line = inputs.ridge_probes(data, split_list, folds, seed)
        done.append(line)
    if configs:
        from probe.tasks import Cache

        with _quiet_runs():
            trained_runs, trained, trained_notes = inputs.quick_probes(
                infos,
                names,
                data.video_ids,
                configs,
                split_list,
                seed_list,
                Cache(_cache_dir(shared["cache"])),
                progress=not quiet,
            )
        runs += trained_runs
        probe_notes += [n for n in trained_notes if n not in probe_notes]
        plural = "s" if seeds > 1 else ""
        done.append(f"{', '.join(trained_models)} on the sample's splits x {seeds} seed{plural}")
        cached = f" ({trained} trained, {len(trained_runs) - trained} from the cache)"
    result = rec.recommend(
        data.candidates,
        data.labels,
        data.label_names,
        runs,
        methods=methods,
        resamples=rec.RESAMPLES if resamples is None else resamples,
        seed=seed,
        collection_videos=collection_videos,
        collection_frames=collection_frames,
    )
    probes = f"quick probes: {'; '.join(done)}"
    result.notes[:0] = [*data.notes, *notes, probes, *probe_notes]
    result.sample_seed = data.sample_seed
    outputs = recommend_report.write_report(result, out)
    typer.echo(probes + cached, err=True)  # the cache's counts vary from run to run
    if print_:
        typer.echo(outputs["md"].read_text())
    typer.echo(recommend_report.summary_line(result))
    typer.echo(str(outputs["md"]))


def _parse_priors(items: list[str]) -> dict[str, float]:
    """--prior NAME=TOP1 options as {name: top-1 in percent}."""
    priors = {}
    for item in items:
        name, sep, value = item.rpartition("=")  # the last "=": a name may hold one
        try:
            top1 = float(value) if sep and name.strip() else float("nan")
        except ValueError:
            top1 = float("nan")
        if not 0 < top1 <= 100:
            raise UserError(f"--prior {item!r}: give NAME=TOP1 with TOP1 in (0, 100], e.g. x=75.1")
        priors[name.strip()] = top1
    return priors


def _recommend_scores(text: str) -> list[str]:
    """The scores of `probe recommend --scores` ('all': every registered score)."""
    from probe.transferability import SCORES as registered  # with recommend's scores added

    if text.strip().lower() == "all":
        return list(registered)
    methods = _names(text)
    unknown = [m for m in methods if m not in registered]
    if unknown:
        raise UserError(f"--scores {unknown[0]!r}: choose among {', '.join(registered)} or none")
    return methods


def main() -> None:
    """Console script entry point."""
    run_app(app)


if __name__ == "__main__":
    main()
