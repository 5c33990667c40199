"""`probe recommend` end to end on small synthetic sample files: the report, the one line, the
run cache (a rerun trains nothing), and bad options as one line with exit code 2."""

import csv
import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from probe.synthetic import write_synthetic_features
from vtl.features import FeatureFile, FeatureWriter
from vtl.sample import sample_record, stratified_sample

torch.set_num_threads(1)

QUICK = ["--models", "linear", "--epochs", "3", "--threads", "1", "--quiet"]
COMMON = dict(n_videos=80, clips=(2, 6), n_labels=3, n_splits=2, dataset_seed=7, feature_dim=8)
# Three candidates whose true order is known: the label directions' length against the noise.
SIGNALS = {"strong": 2.0, "medium": 0.7, "weak": 0.1}
EMBED_SECONDS = 20.0  # each candidate's embedding time on the sample, in its `cost`
SHARED_SECONDS = 5.0  # and its run's decoding and shot detection


def write_sample(full, dst, fraction=0.5, seed=0):
    """A sample feature file as `extract run --sample` writes it: the sampled videos of a full
    file, with the sample's record and a cost attribute."""
    with FeatureFile(full) as f:
        ids = list(f.video_ids)
        chosen = stratified_sample(f.labels, f.splits, fraction, seed)
        clips = int(f.clip_counts()[chosen].sum())
        meta = dataclasses.replace(
            f.meta,
            sample=sample_record(chosen, ids, fraction, seed),
            cost={
                "params_m": 1.0,
                "gflops_per_clip": 2.0,
                "embed_seconds": EMBED_SECONDS,
                "shared_seconds": SHARED_SECONDS,
                "videos": len(chosen),
                "clips": clips,
            },
        )
        with FeatureWriter(dst, meta, f.label_names, f.splits.shape[1]) as writer:
            for i in chosen:
                writer.add(f.video(int(i)))
        frames = (int(f.n_frames[chosen].sum()), int(f.n_frames.sum()))
    return dst, frames


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("recommend")
    frames = None
    for k, (name, signal) in enumerate(SIGNALS.items()):
        full = write_synthetic_features(
            root / f"full-{name}.h5", backbone=name, backbone_seed=k, signal=signal, **COMMON
        )
        (root / "sample").mkdir(exist_ok=True)
        _, frames = write_sample(full, root / "sample" / f"{name}.h5")
    return root / "sample", frames


def test_recommend_end_to_end_and_rerun_trains_nothing(sample_dir, tmp_path, probe_cli):
    folder, (sample_frames, all_frames) = sample_dir
    cache = tmp_path / "cache"
    args = ["recommend", "--features", folder, "--out", tmp_path / "rec", "--cache", cache]
    code, stdout, stderr = probe_cli([*args, *QUICK])
    assert code == 0, stderr
    line, md = stdout.strip().splitlines()[-2:]
    # Three epochs may leave strong and medium too close to call; strong is named first either way.
    assert (
        line.startswith("Extract strong") and "40-video sample" in line and "200 resamples" in line
    )
    assert "the whole collection costs about" in line
    assert md == str(tmp_path / "rec" / "recommendation.md")
    for suffix in ("md", "csv", "png"):
        assert (tmp_path / "rec" / f"recommendation.{suffix}").stat().st_size > 0
    # 3 candidates x 1 probe x 2 splits x 1 seed
    assert "quick probes: linear on the sample's splits x 1 seed (6 trained, 0 from" in stderr
    text = (tmp_path / "rec" / "recommendation.md").read_text()
    assert line in text and "Agreement with the quick probes" in text
    assert "collection: 80 videos (the sample's record)" in text
    # No checkpoint of torchvision's, no --prior: the report says how to give the baseline.
    note = next(line for line in text.splitlines() if "no source prior for" in line)
    assert all(name in note for name in SIGNALS) and "--prior NAME=TOP1" in note

    with open(tmp_path / "rec" / "recommendation.csv", newline="") as f:
        rows = {row["candidate"]: row for row in csv.DictReader(f)}
    assert set(rows) == set(SIGNALS)
    assert float(rows["strong"]["uap"]) > float(rows["weak"]["uap"])
    # The cost on the whole collection: the sample's extraction time x the collection's frames
    # (extrapolated from the sample's frames per video) / the sample's frames.
    scale = round(sample_frames * 80 / 40) / sample_frames / 3600
    hours = float(rows["weak"]["collection_hours"])
    assert hours == pytest.approx((EMBED_SECONDS + SHARED_SECONDS) * scale, rel=1e-6)
    assert float(rows["weak"]["collection_embed_hours"]) == pytest.approx(EMBED_SECONDS * scale)
    assert all_frames > sample_frames

    code, stdout2, stderr = probe_cli([*args, *QUICK])
    assert code == 0, stderr
    assert "(0 trained, 6 from the cache)" in stderr
    assert stdout2 == stdout  # the same runs and bootstrap seed: the same recommendation

    # More seeds train only the new ones.
    priors = ["--prior", "strong=80", "--prior", "medium=70", "--prior", "weak=60"]
    code, _, stderr = probe_cli([*args, *QUICK, "--seeds", "2", "--scores", "logme,knn", *priors])
    assert code == 0, stderr
    assert "(6 trained, 6 from the cache)" in stderr
    assert "no source prior" not in (tmp_path / "rec" / "recommendation.md").read_text()


def test_ridge_quick_probe_by_default_cross_validated_or_on_the_splits(sample_dir, tmp_path):
    """The default quick probe is the closed-form ridge, cross-validated: no torch, no cache.
    Run in a fresh interpreter to see what it imports."""
    folder, _ = sample_dir
    code = (
        "import json, sys\n"
        "from probe.cli import main\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    print(json.dumps([m for m in ('torch', 'torchvision') if m in sys.modules]), "
        "file=sys.stderr)\n"
    )
    cache = tmp_path / "cache"
    ran = {
        "default": "quick probes: ridge, leave-one-out over the 40 sampled videos",
        "5": "quick probes: ridge, 5 folds x 5 repeats over the sampled videos",
        "0": "quick probes: ridge on 2 of the sample's splits",
    }
    for folds, what in ran.items():
        args = ["recommend", "--features", str(folder), "--out", str(tmp_path / folds)]
        done = subprocess.run(
            [sys.executable, "-c", code, *args, "--cache", str(cache)]
            + ([] if folds == "default" else ["--folds", folds]),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stderr.strip().splitlines()[-1]) == []  # torch-free
        assert what in done.stderr and what in (tmp_path / folds / "recommendation.md").read_text()
        line = done.stdout.strip().splitlines()[0]
        assert line.startswith("Extract strong") and "40-video sample" in line, line
        with open(tmp_path / folds / "recommendation.csv", newline="") as f:
            rows = {row["candidate"]: float(row["uap"]) for row in csv.DictReader(f)}
        assert rows["strong"] > rows["medium"] > rows["weak"]
    assert not cache.exists()  # nothing trained, nothing cached


def test_the_folds_default_is_the_quick_probes():
    """The CLI declares --folds without importing probe.quick (scipy): the same default, and the
    bench's `--quick-probe cv`, which uses probe.quick's, measures the command's."""
    import inspect

    from probe import quick
    from probe.cli import recommend

    assert inspect.signature(recommend).parameters["folds"].default.default == quick.FOLDS


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seeds", "0"], "--seeds must be 1 to 10,000, got 0"),
        (["--folds", "1"], "--folds must be 0 (the sample's splits) or at least 2"),
        (["--resamples", "0"], "--resamples must be 1 to 100,000, got 0"),
        (["--models", "none"], "--models: give at least one quick probe"),
        (["--models", "lstm"], "--models 'lstm': choose among ridge, "),
        (["--prior", "strong"], "--prior 'strong': give NAME=TOP1"),
        (["--prior", "strong=180"], "--prior 'strong=180'"),
        (["--prior", "nosuch=70"], "--prior nosuch: no such candidate"),
        (["--scores", "bogus"], "--scores 'bogus': choose among"),
        (["--splits", "5"], "--splits [5]"),
    ],
)
def test_bad_options_are_one_line(sample_dir, tmp_path, probe_cli, extra, message):
    folder, _ = sample_dir
    args = ["recommend", "--features", folder, "--out", tmp_path / "rec", *QUICK, *extra]
    code, _, stderr = probe_cli(args)
    assert code == 2
    assert message in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_one_candidate_or_a_file_as_out(sample_dir, tmp_path, probe_cli):
    folder, _ = sample_dir
    one = ["recommend", "--features", folder / "strong.h5", "--out", tmp_path / "r", *QUICK]
    code, _, stderr = probe_cli(one)
    assert code == 2 and "at least two candidates" in stderr
    (tmp_path / "file").write_text("x")
    code, _, stderr = probe_cli(
        ["recommend", "--features", folder, "--out", tmp_path / "file", *QUICK]
    )
    assert code == 2 and "--out" in stderr and len(stderr.strip().splitlines()) == 1


def test_manifest_must_hold_the_sample(sample_dir, tmp_path, probe_cli):
    folder, _ = sample_dir
    manifest = tmp_path / "m.csv"
    (tmp_path / "x.mp4").write_bytes(b"")
    rows = [f"other{i},x.mp4,1,{split}" for i, split in enumerate(("train", "val", "test"))]
    manifest.write_text("\n".join(["video_id,path,a,split0", *rows]) + "\n")
    args = ["recommend", "--features", folder, "--out", tmp_path / "r", "--manifest", manifest]
    code, _, stderr = probe_cli([*args, *QUICK])
    assert code == 2 and "sampled videos are not in it" in stderr, stderr


@pytest.mark.filterwarnings("ignore:.*rows name the same video file")  # on purpose
def test_videos_whose_headers_give_no_frame_count_cost_the_others_mean(sample_dir, tmp_path):
    """The collection's frames come from the manifest's video headers; a raw H.264 stream's
    header gives none (no index, no duration), and it counts at the other videos' mean rather
    than as free."""
    from probe import recommend as rec
    from probe.recommend_inputs import collection_size
    from tests.test_bad_input import pattern_video
    from vtl.manifest import SPLIT_NAMES

    folder, _ = sample_dir
    mp4 = pattern_video(tmp_path / "v.mp4", n=24)
    raw = pattern_video(tmp_path / "v.h264", n=30, format="h264")
    with FeatureFile(folder.parent / "full-strong.h5") as f:
        ids, names, labels, splits = f.video_ids, f.label_names, f.labels, f.splits[:, 0]
    header = ["video_id", "path", *names, "split0"]
    rows = [
        [vid, raw if i == 0 else mp4, *map(int, labels[i]), SPLIT_NAMES[int(splits[i])]]
        for i, vid in enumerate(ids)
    ]
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n")
    paths = sorted(folder.glob("*.h5"))
    data = rec.read_sample(paths, [p.stem for p in paths])
    videos, frames, notes = collection_size(manifest, paths[0], data)
    assert (videos, frames) == (80, 80 * 24)
    assert "1 of them raw streams whose headers give no frame count" in notes[0], notes


def test_the_sample_seed_is_read_when_every_file_shares_it(sample_dir):
    """The seed the one line's "grow this one" command names: the files' common sample seed,
    none when a file is not a sample (or the files' seeds differ)."""
    from probe import recommend as rec

    folder, _ = sample_dir
    paths = sorted(folder.glob("*.h5"))
    assert rec.read_sample(paths).sample_seed == 0
    full = folder.parent / "full-strong.h5"
    assert rec.read_sample([*paths, full], [*(p.stem for p in paths), "full"]).sample_seed is None


def test_a_prior_for_a_name_holding_an_equals_sign():
    """The value follows the last "=" (before, the first: `a=b=70` was refused)."""
    from probe.cli import _parse_priors

    assert _parse_priors(["a=b=70", "plain = 61.5"]) == {"a=b": 70.0, "plain": 61.5}


def test_one_extraction_twice_is_refused(sample_dir, tmp_path, probe_cli):
    """A sample and the full run of one backbone side by side in a folder: they were two
    candidates, ranked against each other ("Extract .../full/... or .../sample/...: too close
    to call") on features equal on every shared video."""
    folder, _ = sample_dir
    both = tmp_path / "both"
    both.mkdir()
    for name in ("strong", "weak"):
        (both / f"{name}.h5").symlink_to(folder / f"{name}.h5")
    (both / "full-strong.h5").symlink_to(folder.parent / "full-strong.h5")
    code, _, stderr = probe_cli(["recommend", "--features", both, "--out", tmp_path / "r", *QUICK])
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert "are one extraction of strong" in stderr and "full-strong.h5" in stderr


def test_the_collection_is_the_first_files_videos_when_files_differ(sample_dir, caplog):
    """Files of a full run, one missing videos the other holds (they failed with it): the
    collection is the first file's videos and frames. Before, its count was the videos both
    hold and its frames every video's: "its 58 videos are the collection" of a 60-video file,
    and a cost extrapolated from the wrong ratio."""
    from probe import recommend as rec
    from probe.recommend_inputs import collection_size

    folder, _ = sample_dir
    full = folder.parent / "full-strong.h5"
    paths = [full, folder / "weak.h5"]  # a sample of 40: the collection is not the overlap
    data = rec.read_sample(paths, ["full", "weak"])
    assert len(data.video_ids) == 40 and "40 videos left out" in caplog.text
    with FeatureFile(full) as f:
        expected = (f.n_videos, int(f.n_frames.sum()))
    videos, frames, notes = collection_size(None, full, data)
    assert (videos, frames) == expected == (80, expected[1])
    assert "its 80 videos are the collection" in notes[0]
