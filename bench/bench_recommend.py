"""Issue 20's measure: does a recommendation from a sample pick what the whole collection would?

Candidate banks whose true order is known: the demo's real features (when `--demo-features`
holds them), controlled degradations of one real file (Gaussian noise at set signal-to-noise
ratios, random projections to fewer dimensions, fewer clips per video; written with the shared
`FeatureWriter` and read back like any feature file) and synthetic banks (`probe.synthetic`),
one of them of a realistic size (2,000 videos: a 20% sample is 400).
Without demo features the degradations start from a synthetic file and the cost is not
measured (run `make demo-features` first).

For each bank, the truth is the full-data quick probe: test μAP over every split of the whole
collection. Then, for samples of 10/20/30/50% drawn as `extract run --sample` draws them
(`vtl.sample.stratified_sample`) over many sample seeds, the recommendation
(`probe.recommend.recommend`: training-free scores, the quick probes, a 200-resample
bootstrap) is compared with the truth: the right-pick rate (the pick's full-data μAP within 1
point of the best's), the same without the tie-breaks of candidates too close to call (the
source prior's and LogME's: "probes alone"), the same when "too close to call" counts as naming
its two candidates ("A or B right"), the top-3 rate, and each ranker's Kendall τ against the
full-data ranking, next to the source-accuracy prior's (the banks without published top-1s
have none). "Known best" is how often the pick is the best candidate by construction, where
the construction fixes one (the real file among its degraded copies; among synthetic
candidates, the one whose label directions separate the classes most, signal^2 x dim): on a
small collection the full-data probe's own order is noisy and may put a degraded copy first.
Two columns say what a rate rests on: "trained on rest", the pick of the same probe trained on
the videos the sample left out and tested on the sample's (what the sample's few
training videos cost, next to what testing on its videos alone allows), and "distinct", how
many different samples the seeds drew (a small collection's 10% sample has few choices, so its
rates move in steps). Where "too close to call" asks for a larger sample, the draw grows its
sample to that size as `extract run --sample` grows one (every sampled video kept) and
recommends again: "right if grown" is that second pick's rate, over the draws that asked.
A last table measures how far a ranker can go on each bank: the class-mean separation (each
label's, in units of the within-class spread, debiased; what sets the synthetic candidates
apart), its right-pick rate and the noise of its difference between the full data's top two.

The quick probe is `probe recommend`'s default, a closed-form ridge regression on mean-pooled
features (`probe.quick`): `--quick-probe cv` (`probe recommend`'s default) cross-validates it
over all the sample's videos (exact leave-one-out, the penalty picked by leave-one-out μAP);
`--quick-probe splits` (`--folds 0`) fits it on each of the sample's splits, its penalty picked
on the split's validation videos. The truth is the same ridge probe on the whole collection's
splits. The cost section runs the real `probe recommend` (its default quick probe, `--folds`
as the draws) on one sample of the demo and compares sample extraction + recommendation with
extracting every candidate on the whole collection in one run, from the files' `cost`: each
candidate's embedding seconds, and once the run's decoding and shot detection (`shared_seconds`;
files of one run record the same). Both scale with the frames, so the sample's extraction is
the frame share of the whole.

    .venv/bin/python bench/bench_recommend.py [--quick] [--seeds 50] [--demo-features DIR]
        [--quick-probe cv|splits] [--banks demo,same] [--fractions 0.1,0.2,0.3,0.5]
"""

from __future__ import annotations

import os

# One BLAS thread: the draws' many small decompositions run slower on several threads, far
# slower on a busy machine (set the variables yourself to override).
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from common import ROOT, machine, report_json, run_child, script, table  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from scipy import stats  # noqa: E402

from probe import quick  # noqa: E402
from probe import recommend as rec  # noqa: E402
from probe.synthetic import write_synthetic_features  # noqa: E402
from probe.transferability import SCORES  # noqa: E402
from vtl.features import COST_SECONDS, FeatureFile, FeatureWriter  # noqa: E402
from vtl.manifest import split_problem  # noqa: E402
from vtl.sample import sample_record, stratified_sample  # noqa: E402

FRACTIONS = (0.1, 0.2, 0.3, 0.5)
TARGET_FRACTION = 0.2  # the target: right pick in >= 90% of draws at a 20% sample
RIGHT = 1.0  # μAP points: a pick within this of the full-data best is right
RESPLITS = 100  # other splits of the whole collection, for the truth's own stability
# EfficientNet-Lite's published ImageNet top-1 (TensorFlow's EfficientNet-Lite README), the
# demo backbones' source-accuracy prior; a degraded copy keeps its source's.
LITE_TOP1 = {"efficientnet_lite0": 75.1, "efficientnet_lite1": 76.7, "efficientnet_lite2": 77.6}
SYNTHETIC = dict(n_videos=300, clips=(3, 8), n_labels=6, n_splits=3)
# A collection of a realistic size (Trailers12k has 12,000 videos; a 20% sample of this one is
# 400): candidates whose full-data gaps run from about 1 μAP to clear.
LARGE = dict(SYNTHETIC, n_videos=2000)
# The synthetic banks (--quick: the first): name, label directions' lengths, dims, dataset seed,
# dataset.
SYNTHETIC_BANKS = (
    ("synthetic, mixed dims", (0.3, 0.25, 0.21, 0.16, 0.1), (64, 384, 32, 128, 512), 1, SYNTHETIC),
    ("synthetic, same dims", (0.25, 0.22, 0.2, 0.17, 0.15), (64,) * 5, 2, SYNTHETIC),
    ("synthetic, 2,000 videos", (0.2, 0.19, 0.17, 0.15, 0.12), (64,) * 5, 3, LARGE),
)


@dataclasses.dataclass
class Bank:
    """Candidates on one whole collection, and their full-data quick-probe μAP (the truth)."""

    name: str
    names: list[str]
    features: list[np.ndarray]  # (V, D) mean-pooled per candidate
    labels: np.ndarray
    label_names: list[str]
    splits: np.ndarray
    priors: dict[str, float]
    paths: list[Path]
    truth: np.ndarray = None  # (C,) μAP in percent
    # The best candidate by construction, where the construction fixes one: a real file among
    # its degraded copies, the synthetic one whose label directions separate the classes most.
    designed: str | None = None


# ------------------------------------------------------------------ the truth


def full_truth(bank: Bank) -> np.ndarray:
    """Each candidate's quick-probe test μAP (percent) on the whole collection, over its splits."""
    y = bank.labels.astype(np.float64)
    usable = [
        k
        for k in range(bank.splits.shape[1])
        if split_problem(y, bank.splits, k, bank.label_names) is None
    ]
    values = []
    for x in bank.features:
        per_split = []
        for k in usable:
            train, val, test = (np.flatnonzero(bank.splits[:, k] == c) for c in range(3))
            scores = quick.ridge_scores(x, y, train, val, test)
            ones = np.ones((1, len(test)))
            per_split.append(100 * rec.weighted_micro_ap(y[test], scores, ones)[0])
        values.append(np.mean(per_split))
    return np.array(values)


def other_splits_right(bank: Bank, repeats: int = RESPLITS) -> float:
    """How often the full-data probe on other splits of the whole collection (each split
    column's assignment shuffled over the videos: the same sizes) picks a right candidate: the
    truth's own stability, a ceiling for what a sample can be asked to match."""
    right = bank.truth >= bank.truth.max() - RIGHT
    hits, usable = 0, 0
    for r in range(repeats):
        rng = np.random.default_rng([r, len(bank.labels)])
        splits = np.stack([rng.permutation(col) for col in bank.splits.T], axis=1)
        truth = full_truth(dataclasses.replace(bank, splits=splits))
        if np.isfinite(truth).all():  # else no split of the shuffle could train a probe
            usable += 1
            hits += bool(right[int(np.argmax(truth))])
    return hits / usable if usable else float("nan")


# ------------------------------------------------------------------ banks


def read_bank(name: str, paths: list[Path], names: list[str], priors: dict) -> Bank:
    data = rec.read_sample(paths, names)
    bank = Bank(
        name=name,
        names=names,
        features=[c.features for c in data.candidates],
        labels=data.labels,
        label_names=data.label_names,
        splits=data.splits,
        priors={n: priors[n] for n in names if n in priors},
        paths=list(paths),
    )
    bank.truth = full_truth(bank)
    return bank


def write_degraded(src: Path, dst: Path, how: str, value: float, seed: int) -> Path:
    """A copy of a feature file with one controlled degradation of its clip features:
    noise (Gaussian noise, value = signal-to-noise ratio of each dimension's variance),
    project (a random orthogonal projection to `value` dims), clips (every value-th clip)."""
    rng = np.random.default_rng(seed)
    with FeatureFile(src) as f:
        std = f.read_features().astype(np.float64).std(axis=0)
        dim = f.feature_dim
        basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0][:, : int(value)]
        meta = f.meta
        if how == "project":
            meta = dataclasses.replace(meta, feature_dim=int(value))
        meta = dataclasses.replace(meta, backbone=f"{meta.backbone}-{how}{value:g}")
        with FeatureWriter(dst, meta, f.label_names, f.splits.shape[1]) as writer:
            for i in range(f.n_videos):
                video = f.video(i)
                x = video.features.astype(np.float32)
                if how == "noise":
                    x = x + rng.standard_normal(x.shape) * (std / np.sqrt(value))
                    video = dataclasses.replace(video, features=x.astype(np.float32))
                elif how == "project":
                    video = dataclasses.replace(video, features=(x @ basis).astype(np.float32))
                else:  # fewer clips per video, at least one
                    keep = np.arange(0, len(x), int(value))
                    video = dataclasses.replace(
                        video,
                        features=x[keep],
                        frames=video.frames[keep],
                        shot=video.shot[keep],
                        logits=None if video.logits is None else video.logits[keep],
                    )
                writer.add(video)
    return dst


DEGRADATIONS = (("noise", 3.0), ("noise", 0.3), ("clips", 4))


def degraded_bank(base: Path, prior: float | None, work: Path) -> Bank:
    """The base file and its controlled degradations (noise at set SNRs, every 4th clip, a
    projection to 1/16 of its dims)."""
    with FeatureFile(base) as f:
        dim, backbone = f.feature_dim, f.meta.backbone
    steps = [*DEGRADATIONS, ("project", max(2, dim // 16))]
    paths, names = [base], [backbone]
    for k, (how, value) in enumerate(steps):
        name = f"{backbone}-{how}{value:g}"
        paths.append(write_degraded(base, work / f"{name}.h5", how, value, seed=k))
        names.append(name)
    priors = {} if prior is None else {n: prior for n in names}
    bank = read_bank(f"degraded {backbone}", paths, names, priors)
    bank.designed = backbone  # each degradation loses information: noise, clips or dims
    return bank


def synthetic_bank(name: str, work: Path, signals, dims, dataset_seed: int, dataset: dict) -> Bank:
    """Candidates of one synthetic dataset (`dataset`: its size, clips, labels and splits):
    label directions of the given lengths and dims."""
    paths, names = [], []
    for k, (signal, dim) in enumerate(zip(signals, dims, strict=True)):
        backbone = f"s{signal:g}-d{dim}"
        paths.append(
            write_synthetic_features(
                work / f"{name}-{backbone}.h5",
                feature_dim=dim,
                signal=signal,
                dataset_seed=dataset_seed,
                backbone_seed=k,
                backbone=backbone,
                **dataset,
            )
        )
        names.append(backbone)
    bank = read_bank(name, paths, names, {})
    # A label direction of length signal x sqrt(dim) over unit noise in every dimension
    # separates its classes by signal^2 x dim (squared, in units of the spread): with unlimited
    # videos the candidate with the largest one is best.
    bank.designed = names[int(np.argmax([s * s * d for s, d in zip(signals, dims, strict=True)]))]
    return bank


def class_separation(x: np.ndarray, labels: np.ndarray) -> float:
    """How far apart each label's class means lie in units of the within-class spread, less the
    part noise alone gives, averaged over the labels with two videos in each class:
    |m1 - m0|^2 / s^2 - (1/n1 + 1/n0), s^2 the pooled within-class variance summed over the
    dimensions. The synthetic banks' candidates differ only in their label directions' length,
    which sets this quantity; its noise from sample to sample says how far a ranker of class
    means can go."""
    values = []
    for column in labels.T.astype(bool):
        n1, n0 = column.sum(), (~column).sum()
        if n1 < 2 or n0 < 2:
            continue
        pos, neg = x[column], x[~column]
        gap = pos.mean(axis=0) - neg.mean(axis=0)
        within = ((pos - pos.mean(axis=0)) ** 2).sum() + ((neg - neg.mean(axis=0)) ** 2).sum()
        values.append(gap @ gap * (n1 + n0 - 2) / within - (1 / n1 + 1 / n0))
    return float(np.mean(values)) if values else float("nan")


# ------------------------------------------------------------------ draws


def recommend_on(
    bank: Bank, chosen: np.ndarray, resamples: int, seed: int, quick_probe: str
) -> tuple[rec.Recommendation, str, str] | None:
    """The recommendation on the sample `chosen`, its pick, and the pick without the
    tie-breaks; None when the sample has no label with both a positive and a negative."""
    labels, splits = bank.labels[chosen], bank.splits[chosen]
    candidates = [
        rec.Candidate(name, x[chosen], prior=bank.priors.get(name))
        for name, x in zip(bank.names, bank.features, strict=True)
    ]
    if quick_probe == "cv":
        runs = quick.cv_runs(candidates, labels, quick.FOLDS, quick.REPEATS, seed)
    else:
        runs, _ = quick.split_runs(
            candidates, labels, bank.label_names, splits, range(splits.shape[1])
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # labels left out: in the result's notes
            result = rec.recommend(
                candidates,
                labels,
                bank.label_names,
                runs,
                resamples=resamples,
                seed=seed,
                collection_videos=len(bank.labels),
            )
    except ValueError:
        return None
    if result.verdict is not None:
        return result, result.verdict.best, rec.verdict(result.bootstrap).best  # w/o tie-breaks
    # no split of the sample can train a probe: the scores' average rank decides
    pick = min(bank.names, key=lambda n: result.average_rank[n])
    return result, pick, pick


def draw(
    bank: Bank, fraction: float, seed: int, resamples: int, quick_probe: str = "splits"
) -> dict | None:
    """One sample's recommendation compared with the truth; None when the sample has no label
    with both a positive and a negative (nothing to score). The quick probes train on the
    sample's splits, as `probe recommend` does (`quick_probe` "splits"), or are cross-validated
    over all its videos ("cv": one run per repeat, every video held out once). When the
    recommendation is too close to call and asks for a larger sample, the sample is grown to
    that size as `extract run --sample` grows one (its videos kept) and recommended on again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # too small to cover every label
        chosen = stratified_sample(bank.labels, bank.splits, fraction, seed)
    found = recommend_on(bank, chosen, resamples, seed, quick_probe)
    if found is None:
        return None
    result, pick, alone = found
    grown_pick = None
    asks = result.verdict.videos_to_separate if result.verdict else None  # only when too close
    if asks:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            bigger = stratified_sample(bank.labels, bank.splits, asks, seed, keep=chosen)
        grown = recommend_on(bank, bigger, resamples, seed, quick_probe)
        grown_pick = None if grown is None else grown[1]
    truth = dict(zip(bank.names, bank.truth, strict=True))
    order = sorted(bank.names, key=lambda n: -truth[n])
    rankers = {m: values for m, values in result.scores.items()}
    rankers["average rank"] = {n: -r for n, r in result.average_rank.items()}
    separation = {
        n: class_separation(x[chosen].astype(np.float64), bank.labels[chosen])
        for n, x in zip(bank.names, bank.features, strict=True)
    }
    rankers["class-mean separation"] = separation
    if result.bootstrap is not None:
        rankers["quick probes"] = dict(
            zip(result.bootstrap.candidates, result.bootstrap.point.tolist(), strict=True)
        )
    taus = {}
    for ranker, values in rankers.items():
        shared = [n for n in bank.names if n in values and np.isfinite(values[n])]
        if len(shared) >= 2:
            taus[ranker] = stats.kendalltau(
                [values[n] for n in shared], [truth[n] for n in shared]
            ).statistic
    rest = rest_pick(bank, chosen)

    def right(name: str | None) -> bool | None:  # within RIGHT of the full-data best; None: none
        return None if name is None else bool(truth[order[0]] - truth[name] <= RIGHT)

    # "Extract A or B: too close to call" names two: right when either is.
    named = (
        [pick, result.verdict.runner_up] if result.verdict and result.verdict.too_close else [pick]
    )
    return {
        "right": right(pick),
        "right_alone": right(alone),
        # the pick is the best by construction (None: the bank's construction fixes none)
        "designed": None if bank.designed is None else pick == bank.designed,
        "named_right": any(right(n) for n in named),
        "top3": pick in order[:3],
        "regret": truth[order[0]] - truth[pick],
        "probed": result.verdict is not None,
        "too_close": bool(result.verdict and result.verdict.too_close),
        # the sample size "too close to call" asks for, when it estimates one
        "asks_for": asks,
        "p_best": result.verdict.p_best if result.verdict else float("nan"),
        "taus": taus,
        "rest_right": right(rest),
        # grown to the size "too close to call" asks for, and recommended on again
        "grown_right": right(grown_pick),
        "sample": tuple(int(i) for i in sorted(chosen)),
        # the class-mean separation's pick, and its difference between the full data's top two
        "separation_right": right(max(bank.names, key=lambda n: np.nan_to_num(separation[n]))),
        "separation_gap": separation[order[0]] - separation[order[1]],
    }


def rest_pick(bank: Bank, chosen: np.ndarray) -> str | None:
    """The candidate whose probe, trained on the videos the sample left out (the rest of the
    collection) and tested on the sample's, has the best μAP: how far the sample's own training
    videos hold its pick back, against what testing on its videos alone allows. None for a
    sample of the whole collection."""
    test = np.isin(np.arange(len(bank.labels)), chosen)
    if test.all():
        return None
    y = bank.labels[:, rec.informative_labels(bank.labels[chosen])].astype(np.float64)
    ones = np.ones((1, int(test.sum())))
    values = {
        # two folds: the ridge fit on the rest, its penalty by their leave-one-out μAP
        name: rec.weighted_micro_ap(y[test], quick.cv_scores(x, y, test.astype(int))[test], ones)
        for name, x in zip(bank.names, bank.features, strict=True)
    }
    return max(values, key=lambda name: values[name][0])


def prior_tau(bank: Bank) -> float | None:
    shared = [n for n in bank.names if n in bank.priors]
    if len(shared) < 2 or len({bank.priors[n] for n in shared}) < 2:
        return None  # no prior, or one that cannot tell the candidates apart
    truth = dict(zip(bank.names, bank.truth, strict=True))
    return float(
        stats.kendalltau([bank.priors[n] for n in shared], [truth[n] for n in shared]).statistic
    )


# ------------------------------------------------------------------ cost


def write_sample_file(src: Path, dst: Path, chosen: np.ndarray, fraction: float, seed: int):
    """The sample file `extract run --sample` would write: the chosen videos, the sample's
    record, and the seconds of its cost scaled to the sample's frames. Returns its frame
    share."""
    with FeatureFile(src) as f:
        share = float(f.n_frames[chosen].sum() / f.n_frames.sum())
        cost = dict(f.meta.cost)
        clips = int(f.clip_counts()[chosen].sum())
        for key in COST_SECONDS:
            if cost.get(key) is not None:
                cost[key] = float(cost[key]) * share
        cost.update(videos=len(chosen), clips=clips)
        record = sample_record(chosen, list(f.video_ids), fraction, seed)
        meta = dataclasses.replace(f.meta, sample=record, cost=cost)
        with FeatureWriter(dst, meta, f.label_names, f.splits.shape[1]) as writer:
            for i in chosen:
                writer.add(f.video(int(i)))
    return share


def measure_cost(files: list[Path], work: Path, seed: int, folds: int | None) -> dict | None:
    """Sample extraction + `probe recommend` against extracting every candidate on the whole
    collection, at the target's sample size (or the next on which the recommend command runs)."""
    embed, shared = 0.0, []
    with FeatureFile(files[0]) as f:
        labels, splits, names = f.labels, f.splits, list(f.label_names)
    for path in files:
        with FeatureFile(path) as f:
            if f.meta.cost.get("embed_seconds") is None:
                return None
            embed += float(f.meta.cost["embed_seconds"])
            if f.meta.cost.get("shared_seconds") is not None:
                shared.append(float(f.meta.cost["shared_seconds"]))
    # Decoding and shot detection once, as one run extracting every candidate does them (0 for
    # files of versions that did not record them: the share is then embedding's alone).
    shared_seconds = float(np.mean(shared)) if shared else 0.0
    full = embed + shared_seconds
    for fraction in (f for f in FRACTIONS if f >= TARGET_FRACTION):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            chosen = stratified_sample(labels, splits, fraction, seed)
        problems = [
            split_problem(labels[chosen], splits[chosen], k, names) for k in range(splits.shape[1])
        ]
        if folds == 0 and all(problems):
            continue
        folder = work / f"sample-{fraction:g}"
        folder.mkdir(parents=True, exist_ok=True)
        share = 0.0
        for path in files:
            share = write_sample_file(path, folder / path.name, chosen, fraction, seed)
        child = run_child(
            [
                *script("probe"),
                "recommend",
                "--features",
                str(folder),
                "--out",
                str(work / f"report-{fraction:g}"),
                "--cache",
                str(work / f"cache-{fraction:g}"),
                *([] if folds is None else ["--folds", str(folds)]),
                "--quiet",
            ],
            check=False,
        )
        if child.rc != 0:
            print(f"probe recommend on the {fraction:.0%} sample failed: {child.err.strip()}")
            continue
        return {
            "fraction": fraction,
            "videos": len(chosen),
            "frame_share": share,
            "full_embed_seconds": embed,
            "full_shared_seconds": shared_seconds,
            "sample_seconds": full * share,
            "recommend_seconds": child.seconds,
            "share": (full * share + child.seconds) / full,
            "line": child.out.strip().splitlines()[0],
        }
    return None


# ------------------------------------------------------------------ main


DEMO = "demo (real)"


def demo_files(folder: Path | None) -> list[Path]:
    """The demo's feature files (no shard part files), sorted."""
    if folder is None or not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*.h5") if ".part-" not in p.name)


def build_banks(demo: Path | None, work: Path, quick: bool) -> list[Bank]:
    banks = []
    files = demo_files(demo)
    if len(files) >= 2:
        names = []
        for path in files:
            with FeatureFile(path) as f:
                names.append(f.meta.backbone)
        banks.append(read_bank(DEMO, files, names, LITE_TOP1))
    if files:  # degradations of a real file: the demo's first
        base = files[0]
        with FeatureFile(base) as f:
            prior = LITE_TOP1.get(f.meta.backbone)
    else:
        print(f"no demo features in {demo}: degradations start from a synthetic file")
        base = write_synthetic_features(
            work / "base.h5", feature_dim=256, signal=0.25, dataset_seed=9, **SYNTHETIC
        )
        prior = None
    banks.append(degraded_bank(base, prior, work))
    for name, signals, dims, dataset_seed, dataset in SYNTHETIC_BANKS[: 1 if quick else None]:
        banks.append(synthetic_bank(name, work, signals, dims, dataset_seed, dataset))
    return banks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 seeds, fewer banks: a smoke run")
    parser.add_argument("--seeds", type=int, default=None, help="sample seeds (default 50)")
    parser.add_argument("--resamples", type=int, default=rec.RESAMPLES)
    parser.add_argument("--jobs", type=int, default=2, help="draws side by side (processes)")
    parser.add_argument(
        "--demo-features", type=Path, default=ROOT / "data" / "demo-features", help="real bank"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--quick-probe",
        choices=("cv", "splits"),
        default="cv",
        help="the ridge probe cross-validated over the sample (`probe recommend`'s default, "
        "leave-one-out) or on the sample's splits (--folds 0)",
    )
    parser.add_argument(
        "--fractions",
        default=",".join(f"{f:g}" for f in FRACTIONS),
        help="sample fractions to draw, comma-separated",
    )
    parser.add_argument(
        "--banks", default=None, help="only the banks whose names hold one of these, e.g. demo,same"
    )
    args = parser.parse_args()
    seeds = args.seeds or (5 if args.quick else 50)
    fractions = [float(f) for f in args.fractions.split(",")]
    print("\n".join(machine()))
    print(f"quick probe: {args.quick_probe}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-recommend-") as scratch:
        work = Path(scratch)
        banks = build_banks(args.demo_features, work, args.quick)
        if args.banks:
            banks = [b for b in banks if any(p in b.name for p in args.banks.split(","))]
        rows, stability = [], {}
        for bank in banks:
            order = np.argsort(-bank.truth)
            stability[bank.name] = other_splits_right(bank)
            rows.append(
                [
                    bank.name,
                    len(bank.names),
                    len(bank.labels),
                    f"{bank.names[order[0]]} {bank.truth[order[0]]:.2f}",
                    f"{bank.truth[order[0]] - bank.truth[order[1]]:.2f}",
                    f"{bank.truth.min():.2f}",
                    f"{stability[bank.name]:.0%}",
                    bank.designed or "n/a",
                ]
            )
        table(
            "Banks: full-data quick-probe test μAP (%); other splits: how often the full data "
            f"on {RESPLITS} other splits picks right; known best: the best by construction",
            [
                "bank",
                "candidates",
                "videos",
                "best",
                "gap to 2nd",
                "worst",
                "other splits",
                "known best",
            ],
            rows,
        )
        results = {}
        parallel = Parallel(n_jobs=args.jobs, max_nbytes=None)  # banks are small: no memmaps
        for bank in banks:
            for fraction in fractions:
                draws = parallel(
                    delayed(draw)(bank, fraction, s, args.resamples, args.quick_probe)
                    for s in range(seeds)
                )
                results[bank.name, fraction] = [d for d in draws if d is not None]
        # The cost of N candidates: the demo's files, else a real file and its degraded copies
        # (each costs what the real file cost to extract).
        real = [b for b in banks if b.name == DEMO or demo_files(args.demo_features)]
        folds = quick.FOLDS if args.quick_probe == "cv" else 0
        cost = measure_cost(real[0].paths, work / "cost", seed=0, folds=folds) if real else None
    figures = report(banks, results, seeds, cost)
    figures["other_splits_right"] = stability
    print(f"\nbench time {time.perf_counter() - started:.0f} s")
    report_json(args.json, figures)


def report(banks: list[Bank], results: dict, seeds: int, cost: dict | None) -> dict:
    rows, tau_rows, bound_rows, figures = [], [], [], {"draws": []}
    rankers: list[str] = []
    for values in results.values():
        for d in values:
            rankers += [r for r in d["taus"] if r not in rankers]
    for (name, fraction), draws in results.items():
        n = len(draws)
        if not n:
            rows.append([name, f"{fraction:.0%}", 0, *[""] * 14])
            continue
        right = np.mean([d["right"] for d in draws])
        # The right-pick rate's 95% Wilson interval: 50 draws leave it +-6-13 points wide.
        ci = stats.binomtest(sum(d["right"] for d in draws), n).proportion_ci(method="wilson")
        named = np.mean([d["named_right"] for d in draws])
        alone = np.mean([d["right_alone"] for d in draws])
        rest = [d["rest_right"] for d in draws if d["rest_right"] is not None]
        designed = [d["designed"] for d in draws if d["designed"] is not None]
        distinct = len({d["sample"] for d in draws})  # few: the rates move in steps
        top3 = np.mean([d["top3"] for d in draws])
        regret = np.mean([d["regret"] for d in draws])
        close = np.mean([d["too_close"] for d in draws])
        # How often a confident verdict (not "too close to call") is right.
        called = [d["right"] for d in draws if d["probed"] and not d["too_close"]]
        right_called = f"{np.mean(called):.0%} of {len(called)}" if called else ""
        probed = np.mean([d["probed"] for d in draws])
        asked = [d["asks_for"] for d in draws if d["too_close"] and d["asks_for"]]
        grown = [d["grown_right"] for d in draws if d["grown_right"] is not None]
        p_best = np.nanmean([d["p_best"] for d in draws]) if probed else float("nan")
        rows.append(
            [
                name,
                f"{fraction:.0%}",
                f"{n}/{seeds}",
                distinct,
                f"{right:.0%} ({ci.low:.0%}-{ci.high:.0%})",
                f"{alone:.0%}",
                f"{np.mean(rest):.0%}" if rest else "",
                f"{np.mean(designed):.0%}" if designed else "n/a",
                f"{named:.0%}",
                f"{top3:.0%}",
                f"{regret:.2f}",
                f"{p_best:.2f}",
                f"{close:.0%}",
                f"{np.median(asked):.0f} in {len(asked)}" if asked else "",
                f"{np.mean(grown):.0%} of {len(grown)}" if grown else "",
                right_called,
                f"{probed:.0%}",
            ]
        )
        # A ranker that rates every candidate alike has no τ (NaN): left out of its mean.
        taus = {
            r: [d["taus"][r] for d in draws if np.isfinite(d["taus"].get(r, np.nan))]
            for r in rankers
        }
        mean_tau = {r: float(np.mean(v)) if v else None for r, v in taus.items()}
        # A ranker whose top-two difference has this noise picks right in about Phi(z).
        gaps = np.array([d["separation_gap"] for d in draws])
        gaps = gaps[np.isfinite(gaps)]  # a sample without a label to separate has none
        z = gaps.mean() / gaps.std() if len(gaps) > 1 and gaps.std() > 0 else float("nan")
        separation_right = np.mean([d["separation_right"] for d in draws])
        bound_rows.append(
            [
                name,
                f"{fraction:.0%}",
                f"{separation_right:.0%}",
                f"{z:.2f}",
                f"{stats.norm.cdf(z):.0%}",
            ]
        )
        bank = next(b for b in banks if b.name == name)
        prior = prior_tau(bank)
        tau_rows.append(
            [name, f"{fraction:.0%}"]
            + [f"{mean_tau[r]:+.2f}" if mean_tau[r] is not None else "" for r in rankers]
            + [f"{prior:+.2f}" if prior is not None else "n/a"]
        )
        figures["draws"].append(
            {
                "bank": name,
                "fraction": fraction,
                "draws": n,
                "right_pick": right,
                "right_pick_ci95": [ci.low, ci.high],
                "right_pick_probes_alone": alone,
                "right_pick_trained_on_rest": float(np.mean(rest)) if rest else None,
                "known_best_picked": float(np.mean(designed)) if designed else None,
                "distinct_samples": distinct,
                "named_right": named,
                "top3": top3,
                "regret": regret,
                "too_close": close,
                "asks_for_median": float(np.median(asked)) if asked else None,
                "asks_for_draws": len(asked),
                "right_when_grown_as_asked": float(np.mean(grown)) if grown else None,
                "grown_draws": len(grown),
                "right_when_called": float(np.mean(called)) if called else None,
                "kendall_tau": mean_tau,
                "prior_tau": prior,
                "separation_right": separation_right,
                "separation_z": z,
            }
        )
    table(
        f"Right pick (full-data μAP within {RIGHT:g} of the best), over sample seeds",
        [
            "bank",
            "sample",
            "draws",
            "distinct",
            "right pick (95% CI)",
            "probes alone",
            "trained on rest",
            "known best",
            "A or B right",
            "top-3",
            "regret",
            "P(best)",
            "too close",
            "asks for (median in draws)",
            "right if grown",
            "right if called",
            "probed",
        ],
        rows,
    )
    labels = [SCORES[r].label if r in SCORES else r for r in rankers]
    table(
        "Kendall τ against the full-data ranking (mean over draws); the prior needs no sample",
        ["bank", "sample", *labels, "prior"],
        tau_rows,
    )
    table(
        "Class-mean separation (each label's, in units of the within-class spread, debiased): "
        "its right pick, and z = mean / std over draws of its difference between the full "
        "data's top two (a ranker with that noise picks right in about Phi(z))",
        ["bank", "sample", "right pick", "z (top two)", "Phi(z)"],
        bound_rows,
    )
    target = [d for d in figures["draws"] if d["fraction"] == TARGET_FRACTION]
    if target:
        worst = min(d["right_pick"] for d in target)
        print(f"\nright pick at a {TARGET_FRACTION:.0%} sample: {worst:.0%} in the worst bank")
    if cost is not None:
        table(
            "Cost of the recommendation on the demo (seconds from the files' cost)",
            [
                "sample",
                "videos",
                "sample extraction s",
                "recommend s",
                "full: embedding s",
                "full: decoding, shots s",
                "share",
            ],
            [
                [
                    f"{cost['fraction']:.0%}",
                    cost["videos"],
                    f"{cost['sample_seconds']:.1f}",
                    f"{cost['recommend_seconds']:.1f}",
                    f"{cost['full_embed_seconds']:.1f}",
                    f"{cost['full_shared_seconds']:.1f}",
                    f"{cost['share']:.0%}",
                ]
            ],
        )
        print(cost["line"])
    else:
        print("\ncost: not measured (no demo features with a `cost`)")
    figures["cost"] = cost
    return figures


if __name__ == "__main__":
    main()
