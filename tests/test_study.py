"""Studies: the paired test, the designs, every extraction variant from one decode, the report,
the shared run cache, and shards giving the report of one process."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from probe.config import TrainConfig
from probe.matrix import run_matrix
from probe.stats import EXACT_PAIRS, paired_t_test, paired_test, sign_flip_p_value
from probe.study import run_study
from probe.synthetic import write_synthetic_features
from probe.tasks import Cache
from probe.train import train_probe
from vtl.errors import UserError
from vtl.features import FeatureFile
from vtl.manifest import read_manifest, write_manifest
from vtl.study import baseline_of, design_variants, extraction_name, read_study

FAST = TrainConfig(epochs=2, lr=3e-3, patience=2, scheduler_patience=1, threads=1)
COMMON = dict(n_videos=40, clips=(3, 14), n_labels=3, n_splits=2, dataset_seed=11)


# ------------------------------------------------------------------ the paired test


def scipy_sign_flip(a, b) -> float:
    def mean_difference(x, y, axis):
        return np.mean(x - y, axis=axis)

    result = stats.permutation_test(
        (np.asarray(b), np.asarray(a)),
        mean_difference,
        permutation_type="samples",
        n_resamples=np.inf,
        alternative="two-sided",
        vectorized=True,
    )
    return float(result.pvalue)


def test_sign_flip_test_equals_scipy_and_hand_counts():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 9, 12):
        for shift in (0.0, 0.5, 2.0):
            a = rng.normal(90, 2, n)
            b = a + rng.normal(shift, 1.0, n)
            test = paired_test(a, b)
            assert test.p_value == pytest.approx(scipy_sign_flip(a, b), abs=1e-12)
            assert test.p_ttest == pytest.approx(stats.ttest_rel(b, a).pvalue, rel=1e-9)
            assert test.mean == pytest.approx(np.mean(b - a))
            assert test.std == pytest.approx(np.std(b - a, ddof=1))
    # By hand: 5 differences of the same sign: only the 2 all-same-sign flips reach |mean|.
    assert sign_flip_p_value([0] * 5, [1, 2, 3, 4, 5]) == 2 / 32
    # 3 pairs can never be distinguishable at 0.05: the smallest p is 2/8.
    assert paired_test([0, 0, 0], [5, 6, 7]).p_value == 0.25
    assert paired_test([0, 0, 0], [5, 6, 7]).verdict == "within noise"
    assert paired_test([0] * 9, [5, 6, 7, 5, 6, 7, 5, 6, 7]).verdict == "distinguishable"
    # +1 and -1 around 0: nothing to see.
    assert sign_flip_p_value([0, 0], [1, -1]) == 1.0
    assert paired_test([1, 2, 3], [1, 2, 3]).p_value == 1.0
    assert paired_t_test([1, 2], [2, 3]) is None  # no variance to test against
    assert paired_t_test([1], [2]) is None


def test_many_pairs_are_estimated_close_to_the_exact_value():
    """Beyond EXACT_PAIRS the p-value is estimated; with whole-number differences the exact
    value comes from the distribution of the signed sum, built one pair at a time."""
    rng = np.random.default_rng(1)
    d = rng.integers(-3, 6, EXACT_PAIRS + 10)
    offset = int(np.abs(d).sum())
    counts = np.zeros(2 * offset + 1)
    counts[offset] = 1.0
    for value in np.abs(d):  # each pair adds +value or -value
        counts = (np.roll(counts, value) + np.roll(counts, -value)) / 2
    sums = np.arange(-offset, offset + 1)
    exact = counts[np.abs(sums) >= abs(d.sum())].sum()
    a = np.zeros(len(d))
    assert sign_flip_p_value(a, d) == pytest.approx(exact, abs=0.005)


@pytest.mark.parametrize(
    "a, b, message",
    [
        ([1, 2], [1], "pairs must match"),
        ([], [], "no pairs"),
        ([np.nan], [1], "finite"),
        ([[1]], [[1]], "1-D"),
    ],
)
def test_paired_test_names_bad_input(a, b, message):
    with pytest.raises(ValueError, match=message):
        paired_test(a, b)


# ------------------------------------------------------------------ designs


def test_designs_vary_one_axis_at_a_time_or_every_combination():
    axes = {"segmentation": ["fixed", "transnetv2"], "clip_fps": [12.0, 24.0], "window": [10]}
    base = baseline_of(axes)  # the reference's values where they are offered, else the first
    assert base == {"segmentation": "transnetv2", "clip_fps": 24.0, "window": 10}
    axis = design_variants(axes, "axis")
    assert axis == [base, {**base, "segmentation": "fixed"}, {**base, "clip_fps": 12.0}]
    grid = design_variants(axes, "grid")
    assert grid[0] == base and len(grid) == 4
    assert {tuple(v.values()) for v in grid} == set(itertools.product(*axes.values()))
    assert extraction_name({"segmentation": "fixed", "clip_fps": 12.0, "frames_per_clip": 16}) == (
        "fixed_fps12_fpc16"
    )
    with pytest.raises(UserError, match="--design"):
        design_variants(axes, "random")


# ------------------------------------------------------------------ extraction


@pytest.fixture(scope="module")
def extracted(demo_manifest, tmp_path_factory):
    """A study of segmentation x clip rate, axis design, on 3 demo videos."""
    from extract.pipeline import ExtractConfig
    from extract.study import extract_study

    tmp = tmp_path_factory.mktemp("study")
    m = read_manifest(demo_manifest)
    paths, splits = [str(p) for p in m.paths[:3]], np.array([[0], [1], [2]], np.uint8)
    manifest = write_manifest(
        tmp / "three.csv", m.video_ids[:3], paths, m.label_names, m.labels[:3], splits
    )
    config = ExtractConfig(image_frames=2, batch_size=8, shot_frames=40)
    axes = {"segmentation": ["transnetv2", "fixed"], "clip_fps": [24.0, 8.0]}
    made = extract_study(
        manifest, "efficientnet_lite0", tmp / "study", axes, "axis", config, progress=False
    )
    return manifest, config, made


def test_every_variant_comes_from_one_decode(extracted, tmp_path, assert_same_features):
    """Three extraction variants (TransNetV2 at 24 fps, fixed segments, TransNetV2 at 8 fps):
    each video is decoded once, and each variant's file equals an `extract run` of its own."""
    from extract.pipeline import run_extraction

    manifest, config, made = extracted
    assert made.result.decoded == 3  # 3 videos, each decoded once for the 3 variants
    names = [e["name"] for e in made.plan.extractions]
    assert names == ["transnetv2_fps24_fpc24", "fixed_fps24_fpc24", "transnetv2_fps8_fpc24"]
    assert read_study(made.path).extractions == made.plan.extractions
    for extraction in made.plan.extractions:
        settings = extraction["settings"]
        alone = run_extraction(
            manifest,
            "efficientnet_lite0",
            tmp_path / extraction["name"],
            dataclasses.replace(config, **settings),
            progress=False,
        )
        path = made.plan.file(extraction["files"]["efficientnet_lite0"])
        with FeatureFile(path) as f:
            assert (f.meta.clip_fps, f.meta.config["segmentation"]) == (
                settings["clip_fps"],
                settings["segmentation"],
            )
        assert_same_features(alone.files["efficientnet_lite0"], path)


def test_finished_files_are_reused_and_nothing_is_decoded(extracted, tmp_path):
    from extract.study import extract_study

    manifest, config, made = extracted
    axes = {"segmentation": ["transnetv2", "fixed"], "clip_fps": [24.0, 8.0]}
    again = extract_study(
        manifest,
        "efficientnet_lite0",
        tmp_path / "other",
        axes,
        "axis",
        config,
        reuse=[made.path.parent],
        progress=False,
    )
    assert again.result.decoded == 0

    def files(plan):  # the same files, where they are
        return [{k: plan.file(v) for k, v in e["files"].items()} for e in plan.extractions]

    assert files(again.plan) == files(made.plan)
    # inside its folder a file is recorded relative to it (the folder may move), else absolute
    assert not Path(made.plan.extractions[0]["files"]["efficientnet_lite0"]).is_absolute()
    assert Path(again.plan.extractions[0]["files"]["efficientnet_lite0"]).is_absolute()
    assert not list((tmp_path / "other").rglob("*.h5"))


def test_bad_study_options_are_one_line(demo_manifest, tmp_path):
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "extract"),
            "study",
            "-m",
            str(demo_manifest),
            "-b",
            "efficientnet_lite0",
            "-o",
            str(tmp_path / "s"),
            "--clip-fps",
            "24,twelve",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    lines = [x for x in run.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "--clip-fps" in lines[0]


# ------------------------------------------------------------------ probe study


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("study-features")
    return write_synthetic_features(
        root / "b.h5", feature_dim=6, backbone="b", signal=0.6, **COMMON
    )


# Neither the reference's window (30) nor its model (divita) is offered: the first values are
# the baseline.
PROBE_AXES = {"model": ["linear", "savg"], "window": [5, 3]}


def probe_study(out: Path, features: Path, config: TrainConfig, cache, **more):
    """`run_study` of one feature file on `PROBE_AXES` over seeds 0 and 1, quietly."""
    return run_study(
        out,
        features=[features],
        probe_axes=PROBE_AXES,
        seeds=[0, 1],
        config=config,
        cache=cache,
        progress=False,
        **more,
    )


def test_study_of_probe_axes_reports_paired_differences(synthetic, tmp_path):
    torch.set_num_threads(1)
    cache = Cache(tmp_path / "cache")
    result = probe_study(tmp_path / "report", synthetic, FAST, cache)
    labels = [v.label for v in result.variants]
    assert labels == ["baseline", "window=3", "model=savg"]  # baseline: linear, 5 clips
    assert result.variants[0].settings == {"model": "linear", "window": 5}
    runs = {}
    for v in result.variants:
        config = dataclasses.replace(FAST, model=v.settings["model"], window=v.settings["window"])
        runs[v.label] = [
            train_probe(
                [synthetic], dataclasses.replace(config, split=s, seed=seed), progress=False
            )["metrics"]["test"]["uap"]
            for s in (0, 1)
            for seed in (0, 1)
        ]
    for v in result.variants[1:]:
        d = np.array(runs[v.label]) - np.array(runs["baseline"])
        assert v.comparison["delta"]["uap"]["mean"] == pytest.approx(d.mean(), abs=1e-9)
        assert (
            v.comparison["test"]["p_value"] == paired_test(runs["baseline"], runs[v.label]).p_value
        )
    rows = list(csv.DictReader((tmp_path / "report" / "study.csv").open()))
    assert [r["variant"] for r in rows] == labels
    assert rows[0]["p_value"] == "" and rows[1]["verdict"] in ("distinguishable", "within noise")
    markdown = (tmp_path / "report" / "study.md").read_text()
    assert "| baseline |" in markdown and "sign-flip" in markdown
    assert "no p-value can fall below 0.125" in markdown  # 4 pairs
    assert (tmp_path / "report" / "study.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((tmp_path / "report" / "study.json").read_text())
    assert data["baseline"] == {"model": "linear", "window": 5} and len(data["variants"]) == 3
    # A rerun trains nothing.
    again = probe_study(tmp_path / "report", synthetic, FAST, cache)
    assert again.trained == 0 and again.markdown == markdown


def test_runs_of_the_matrix_are_not_trained_again_for_a_study(synthetic, tmp_path):
    cache = Cache(tmp_path / "cache")
    config = dataclasses.replace(FAST, window=5)
    matrix = run_matrix(
        [synthetic],
        tmp_path / "matrix",
        ["linear"],
        "all",
        [0],
        config,
        [],
        progress=False,
        cache=cache,
    )
    assert matrix.runs_trained == 2  # 2 splits, seed 0
    study = probe_study(tmp_path / "report", synthetic, config, cache)
    assert study.trained == 3 * 4 - 2  # the baseline's seed-0 runs came from the matrix


def test_two_shards_give_the_report_of_one_process(synthetic, tmp_path, monkeypatch):
    def report(folder: Path) -> list[dict]:
        rows = list(csv.DictReader((folder / "study.csv").open()))
        for row in rows:
            del row["train_seconds_per_run"]  # measured, not computed
        return rows

    one = probe_study(tmp_path / "one", synthetic, FAST, tmp_path / "cache1")
    assert one.complete
    from vtl.shards import resolve_shard

    cache = tmp_path / "cache2"
    done = []
    for task in ("4", "5"):  # a SLURM array 4-5
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task)
        monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "4")
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
        shard = resolve_shard(None)
        done.append(probe_study(tmp_path / "two", synthetic, FAST, cache, shard=shard))
        # the first shard to finish leaves the report to the last
        assert (tmp_path / "two" / "study.md").exists() == (task == "5")
    assert not done[0].complete
    assert done[1].complete and done[0].trained + done[1].trained == 12
    assert 0 < done[0].trained < 12
    assert report(tmp_path / "two") == report(tmp_path / "one")


def test_study_cli(synthetic, tmp_path, probe_cli):
    options = "--models linear,savg --window 3,5 --seeds 2 --epochs 2 --lr 3e-3 --patience 2"
    options += " --scheduler-patience 1 --threads 1 --quiet"
    args = ["study", "--features", synthetic, *options.split()]
    args += ["--cache", tmp_path / "cache", "--out", tmp_path / "r"]  # the last two: --out DIR
    code, stdout, stderr = probe_cli(args)
    assert code == 0, stderr
    assert stdout.strip() == str(tmp_path / "r" / "study.md")
    code, _, stderr = probe_cli([*args[:-2], "--out", tmp_path / "r", "--models", "nope"])
    assert code == 2 and "--models" in stderr and stderr.strip().count("\n") == 0
    code, _, stderr = probe_cli(["study", "--study", tmp_path / "nothing", "--quiet"])
    assert code == 2 and "no study here" in stderr


def test_a_variant_whose_clip_is_longer_than_a_video_fails_it_as_alone(demo_manifest, tmp_path):
    """Clips of 24 and of 150 frames (6.25 s) in one study: three demo videos are shorter than
    6.25 s. The 150-frame variant held them as padded partial clips when the 24-frame variant
    was extracted with it (the decoder skipped only what was shorter than every clip), and
    failed them when extracted alone: two files for one setting. Now it fails them either way."""
    from extract.pipeline import ExtractConfig, run_extraction
    from extract.study import extract_study

    config = ExtractConfig(segmentation="fixed", shot_frames=200, image_frames=1, batch_size=8)
    made = extract_study(
        demo_manifest, "efficientnet_lite0", tmp_path / "study", {"frames_per_clip": [24, 150]},
        "axis", config, progress=False,
    )  # fmt: skip
    long = next(e for e in made.plan.extractions if e["settings"]["frames_per_clip"] == 150)
    alone = run_extraction(
        demo_manifest,
        "efficientnet_lite0",
        tmp_path / "alone",
        dataclasses.replace(config, frames_per_clip=150),
        progress=False,
    )
    assert len(alone.failures) == 3
    with (
        FeatureFile(alone.files["efficientnet_lite0"]) as a,
        FeatureFile(made.plan.file(long["files"]["efficientnet_lite0"])) as b,
    ):
        assert a.video_ids == b.video_ids and len(a.video_ids) == 3
        assert [x["video_id"] for x in a.meta.failures] == [x["video_id"] for x in b.meta.failures]
        assert a.meta.failures[0]["reason"] == b.meta.failures[0]["reason"]
        # the frames of both variants are embedded in shared batches, whose float32 sums may
        # differ in the last bits and so round to neighbouring float16 values: one unit in the
        # last place apart (1/1024 relative; a few subnormal units near zero), as test_extract
        np.testing.assert_allclose(
            a.video_features(0), b.video_features(0), rtol=2**-10, atol=2**-20
        )
    short = next(e for e in made.plan.extractions if e["settings"]["frames_per_clip"] == 24)
    with (
        FeatureFile(made.plan.file(short["files"]["efficientnet_lite0"])) as f,
        FeatureFile(made.plan.file(long["files"]["efficientnet_lite0"])) as g,
    ):
        assert f.n_videos == 6  # the short clips keep every video
        # The three videos both files hold carry one decode's shared seconds in each; the three
        # the long clips failed carry their own decode's wall time (a fraction of a second for
        # 4-6 s at 320x180, fixed segments), not the failed clip's 6.25 s that overwrote it.
        only_short = f.meta.cost["shared_seconds"] - g.meta.cost["shared_seconds"]
        assert 0 <= only_short < 3 * 6.25 / 2


def test_a_study_made_with_a_relative_out_is_read_from_anywhere(extracted, tmp_path, monkeypatch):
    """`extract study --out s1` recorded its files as s1/..., relative to where it ran: `probe
    study --study /abs/s1` from another folder said they were not there ("finish the
    extraction"). They are recorded relative to the study's folder now."""
    from extract.study import extract_study
    from probe.study import _files

    manifest, config, _ = extracted
    monkeypatch.chdir(tmp_path)
    extract_study(
        manifest, "efficientnet_lite0", Path("s1"), {"clip_fps": [24.0]}, "axis", config,
        progress=False,
    )  # fmt: skip
    monkeypatch.chdir("/")
    files = _files(read_study(tmp_path / "s1" / "study.json"), ())
    paths = [p for variant in files.values() for p in variant.values()]
    assert paths and all(p.is_file() and p.is_relative_to(tmp_path / "s1") for p in paths)
