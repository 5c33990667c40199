"""`probe` on the command line: train/eval/predict, and bad input as one line with exit code 2."""

import json

import h5py
import numpy as np
import pytest
import torch

from probe.config import TrainConfig
from probe.evaluate import evaluate_checkpoint
from probe.synthetic import write_synthetic_features
from probe.train import train_probe
from vtl.errors import UserError
from vtl.features import FeatureFile, FeatureWriter

torch.set_num_threads(1)

QUICK = ["--epochs", "2", "--threads", "1", "--quiet"]
COMMON = dict(n_videos=60, clips=(3, 40), n_labels=3, n_splits=2, dataset_seed=3, signal=0.5)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    a = write_synthetic_features(root / "a.h5", feature_dim=8, backbone="img", **COMMON)
    b = write_synthetic_features(
        root / "b.h5", feature_dim=12, backbone_seed=5, backbone="vid", kind="video", **COMMON
    )
    return a, b


def rewrite(src, dst, edit):
    """Copy a feature file through the shared reader and writer, editing each video on the way."""
    with FeatureFile(src) as f:
        with FeatureWriter(dst, f.meta, f.label_names, f.splits.shape[1]) as w:
            for i in range(f.n_videos):
                video = edit(i, f.video(i))
                if video is not None:
                    w.add(video)
    return dst


def test_train_eval_predict(good, tmp_path, probe_cli):
    out = tmp_path / "run"
    both = ["--features", good[0], "--features", good[1]]  # late fusion of the two files
    code, stdout, _ = probe_cli(["train", *both, "--model", "linear", "--out", out, *QUICK])
    assert code == 0 and "uAP" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert [f["backbone"] for f in metrics["features"]] == ["img", "vid"]
    assert metrics["features"][0]["weights"] == {"name": "synthetic-0", "sha256": "0" * 64}
    labels = set(metrics["per_label"]["test"])
    assert metrics["config"]["model"] == "linear" and labels == {"label0", "label1", "label2"}

    code, stdout, _ = probe_cli(["eval", "--checkpoint", out / "checkpoint.pt", *both])
    assert code == 0 and f"{metrics['metrics']['test']['uap']:.2f}" in stdout

    preds = tmp_path / "preds.csv"
    code, stdout, _ = probe_cli(
        ["predict", "--checkpoint", out / "checkpoint.pt", *both, "--out", preds]
    )
    assert code == 0 and len(preds.read_text().splitlines()) == 61


def test_grid_over_all_splits_and_seeds(good, tmp_path, probe_cli):
    code, stdout, _ = probe_cli(
        [
            "train",
            "--features",
            good[0],
            "--model",
            "linear",
            "--out",
            tmp_path,
            "--splits",
            "all",
            "--seeds",
            "2",
            *QUICK,
        ],
    )
    assert code == 0 and "±" in stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["split"], r["seed"]) for r in summary["runs"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]


def bad_files(good, root):
    """(name, feature files, substring of the one-line message)."""
    plain = root / "plain.h5"
    with h5py.File(plain, "w") as h5:
        h5["x"] = np.zeros(3)
    text = root / "notes.h5"
    text.write_text("not hdf5\n")
    fewer = write_synthetic_features(root / "fewer.h5", feature_dim=8, **{**COMMON, "n_videos": 50})
    relabel = rewrite(
        good[0], root / "relabel.h5", lambda i, v: v if i != 4 else _with(v, labels=1 - v.labels)
    )
    resplit = rewrite(
        good[0],
        root / "resplit.h5",
        lambda i, v: v if i != 9 else _with(v, splits=(v.splits + 1) % 3),
    )
    clipped = rewrite(
        good[1],
        root / "clipped.h5",
        lambda i, v: (
            v
            if i != 2
            else _with(v, features=v.features[:-1], frames=v.frames[:-1], shot=v.shot[:-1])
        ),
    )
    no_val = rewrite(
        good[0],
        root / "noval.h5",
        lambda i, v: _with(v, splits=np.where(v.splits == 1, 0, v.splits)),
    )
    no_pos = rewrite(
        good[0],
        root / "nopos.h5",
        lambda i, v: _with(v, labels=v.labels * np.array([1, 0, 1], np.uint8)),
    )
    return [
        ("not-hdf5", [text], "notes.h5: not a readable HDF5 file"),
        ("not-ours", [plain], "plain.h5: not a vtl feature file"),
        ("missing", [root / "absent.h5"], "absent.h5: feature file not found"),
        ("videos", [good[0], fewer], "disagree on videos"),
        ("labels", [good[0], relabel], "disagree on the labels of video 'v00004'"),
        ("splits", [good[0], resplit], "disagree on the splits of video 'v00009'"),
        ("clips", [good[0], clipped], "disagree on clips: video 'v00002'"),
        ("empty-split", [no_val], "noval.h5: split 0 has no val videos"),
        ("no-positives", [no_pos], "split 0 has no positive training video of label 'label1'"),
        ("folder", [root], "is a folder, not a feature file (.h5)"),  # was "not found"
        ("twice", [good[0], good[0]], "given twice to --features"),  # was fused with itself
    ]


def _with(video, **changes):
    for key, value in changes.items():
        setattr(video, key, value)
    return video


def test_bad_input_is_one_line_naming_the_file(good, tmp_path, probe_cli):
    for name, paths, message in bad_files(good, tmp_path):
        args = ["train", "--model", "linear", "--out", tmp_path / name, *QUICK]
        for p in paths:
            args += ["--features", p]
        code, stdout, stderr = probe_cli(args)
        assert code == 2, (name, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, stderr)
        assert message in lines[0], (name, lines[0])
        assert "Traceback" not in stderr
        with pytest.raises(UserError, match=message.split(": ")[-1][:30]):
            train_probe(paths, TrainConfig(model="linear", epochs=1, threads=1), progress=False)


BAD_OPTIONS = {  # `probe train` option -> its error
    "--split 5": "split 5 does not exist",
    "--model resnet": "--model 'resnet': choose one of divita",
    "--fusion mean": "--fusion 'mean'",
    "--epochs 0": "--epochs must be at least 1",
    "--splits x,y": "--splits 'x,y'",
    # Before, each of these failed unexpectedly (exit 70) or ran with the value as given:
    "--splits ,": "--splits ',': give 'all' or numbers",  # IndexError
    "--splits 0,0": "--splits '0,0': a split is named twice",  # split 0 counted twice
    "--seeds 1000000000000": "--seeds must be 1 to 10,000",  # MemoryError
    "--seed 18446744073709551616": "--seed must be 0 to",  # OverflowError in torch
    "--threads 100000": "--threads must be 0 (torch's default) to",  # ImportError from OpenMP
    "--device meta": "--device 'meta': use cpu, cuda, cuda:N or mps",  # NotImplementedError
    "--window 100000000": "--window must be at most 10,000 clips",  # MemoryError
    "--memory-budget-gb nan": "--memory-budget-gb must be 0 or more",  # accepted
}


@pytest.mark.parametrize("option, message", BAD_OPTIONS.items())
def test_bad_options_are_one_line(good, tmp_path, probe_cli, option, message):
    args = ["train", "--features", good[0], "--out", tmp_path, *QUICK, *option.split()]
    code, _, stderr = probe_cli(args)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1


def test_checkpoint_and_features_must_match(good, tmp_path, probe_cli):
    train_probe(
        [good[0]], TrainConfig(model="linear", epochs=1, threads=1), tmp_path, progress=False
    )
    code, _, stderr = probe_cli(
        ["eval", "--checkpoint", tmp_path / "checkpoint.pt", "--features", good[1]]
    )
    assert code == 2 and "12-d features" in stderr
    code, _, stderr = probe_cli(["eval", "--checkpoint", good[0], "--features", good[0]])
    assert code == 2 and "not a probe checkpoint" in stderr
    # Features of another backbone with the same dimension: before, scored as if they fit
    other = write_synthetic_features(
        tmp_path / "other.h5", feature_dim=8, backbone_seed=9, backbone="other", **COMMON
    )
    code, _, stderr = probe_cli(
        ["eval", "--checkpoint", tmp_path / "checkpoint.pt", "--features", other]
    )
    assert code == 2 and "other features, but" in stderr and "trained on img features" in stderr
    code, _, stderr = probe_cli(
        ["eval", "--checkpoint", tmp_path / "checkpoint.pt", "--features", good[0]]
        + ["--memory-budget-gb", "-1"]
    )
    assert code == 2 and "--memory-budget-gb must be 0 or more" in stderr


def test_other_commands_bad_options_are_one_line(good, tmp_path, probe_cli):
    """Options of `score`, `recommend`, `matrix` and `study` named as options; before, the
    cache given as a file and a million-fold bootstrap failed unexpectedly (exit 70), and
    `--knn-k 0` was read as 1."""
    folder = good[0].parent
    (tmp_path / "file").write_text("x")
    cases = [
        (["score", "--features", good[0], "--methods", "bogus"], "--methods 'bogus': choose"),
        (["score", "--features", good[0], "--max-videos", "1"], "--max-videos must be at least 2"),
        (["score", "--features", good[0], "--knn-k", "0"], "--knn-k must be at least 1"),
        (
            ["recommend", "--features", folder, "--out", tmp_path / "r", "--resamples", "10000000"],
            "--resamples must be 1 to 100,000",
        ),
        (
            ["recommend", "--features", folder, "--out", tmp_path / "r", "--models", "ridge,nope"],
            "--models 'nope': choose among ridge, ",
        ),
        (
            ["matrix", "--features", good[0], "--features", good[1], "--out", tmp_path / "m"]
            + ["--cache", tmp_path / "file"],
            "--cache " + str(tmp_path / "file") + ": is a file, not a folder",
        ),
        (["study", "--out", tmp_path / "s"], "give a study (--study DIR, from `extract study`) or"),
    ]
    for args, message in cases:
        code, _, stderr = probe_cli([*map(str, args), "--quiet"] if args[0] != "score" else args)
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (args, stderr)


@pytest.mark.parametrize("command", ["recommend", "matrix"])
def test_help_paragraphs_fill_the_terminal_width(command, probe_cli, monkeypatch):
    """A command's description wraps at the terminal's width, each paragraph filled: before,
    typer kept the docstring's own line breaks, and at 80 columns they broke again."""
    monkeypatch.setenv("COLUMNS", "80")
    code, shown, _ = probe_cli([command, "--help"])
    assert code == 0
    description = shown.split("Usage:")[1].split("╭")[0].splitlines()[1:]
    paragraphs = "\n".join(line.strip() for line in description).strip().split("\n\n")
    assert len(paragraphs) == 2
    for paragraph in paragraphs:
        lines = paragraph.splitlines()
        for line, after in zip(lines, lines[1:], strict=False):
            # a line ends only where the next word would not fit on it
            assert len(line) + 1 + len(after.split()[0]) > 78 - 2, (line, after)


def test_score_refuses_a_file_with_nan_outside_the_scored_videos(good, tmp_path, probe_cli):
    """`probe score` reads only the split's train videos; a NaN in another video was scored
    past (exit 0), where every other probe command refuses the file."""
    with FeatureFile(good[0]) as f:
        held_out = int(np.flatnonzero(f.splits[:, 0] != 0)[0])
        video_id, row = f.video_ids[held_out], int(f.offsets[held_out])
    nan = rewrite(good[0], tmp_path / "nan.h5", lambda i, video: video)
    with h5py.File(nan, "r+") as h5:  # our writer refuses NaN: another tool's file
        h5["clips/features"][row, 0] = np.nan
    code, _, stderr = probe_cli(["score", "--features", nan, "--methods", "logme"])
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, stderr
    assert f"non-finite feature values (NaN or infinity) in video {video_id!r}" in lines[0]


def test_eval_on_another_split_of_its_collection_says_the_videos_are_not_held_out(
    good, tmp_path, probe_cli, caplog
):
    """A checkpoint trained on split 0, evaluated on split 1 of the same file: most of split 1's
    test videos trained or validated it. Before, their μAP was printed as a test score without
    a word; now a warning says how many, and the result records them."""
    out = tmp_path / "run"
    train = ["train", "--features", good[0], "--model", "linear", "--out", out, *QUICK]
    code, _, _ = probe_cli(train)
    assert code == 0
    checkpoint = out / "checkpoint.pt"
    with FeatureFile(good[0]) as f:
        seen = {v for v, s in zip(f.video_ids, f.splits[:, 0], strict=True) if s != 2}
        tests = [v for v, s in zip(f.video_ids, f.splits[:, 1], strict=True) if s == 2]
    shared = sum(v in seen for v in tests)
    assert shared > 0
    result = evaluate_checkpoint(checkpoint, [good[0]], split=1)
    assert result["seen_videos"] == shared
    assert f"{shared} of the {len(tests)} test videos of split 1" in caplog.text
    assert "trained or validated this checkpoint (it was trained on split 0)" in caplog.text
    assert evaluate_checkpoint(checkpoint, [good[0]])["seen_videos"] == 0  # its own split


def test_a_grid_checks_every_split_before_training_any(good, tmp_path, probe_cli):
    """Split 1 without validation videos: `probe train --splits all` trained split 0 first and
    then stopped; now it stops before training anything."""

    def no_val(i, video):  # split 1's validation videos train instead
        video.splits = video.splits.copy()
        video.splits[1] = 0 if video.splits[1] == 1 else video.splits[1]
        return video

    broken = rewrite(good[0], tmp_path / "noval.h5", no_val)
    out = tmp_path / "grid"
    grid = ["train", "--features", broken, "--model", "linear", "--splits", "all", "--out", out]
    code, _, stderr = probe_cli([*grid, *QUICK])
    assert code == 2 and "split 1 has no val videos" in stderr
    assert not out.exists() or not list(out.iterdir())
