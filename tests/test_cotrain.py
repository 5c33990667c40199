"""Co-training across collections, fine-tuning from another collection, their cache keys and
the study's `cotrain` axis, on real (synthetic, learnable) feature files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from probe.catalogue import read_file_info
from probe.cli import app
from probe.config import TrainConfig
from probe.cotrain import collection_draws, train_cotrained
from probe.evaluate import evaluate_checkpoint, load_body
from probe.models import build_probe
from probe.study import run_study
from probe.synthetic import write_synthetic_features
from probe.tasks import run_task
from probe.train import TrainingError, train_probe
from vtl.errors import UserError

DIM = 8
SMALL = {"model": "mlp", "epochs": 3, "window": 4, "batch_size": 8}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A target (4 labels, 2 splits) and another collection of the same backbone (3 other
    labels, 1 split, other videos), and one of another backbone."""
    root = tmp_path_factory.mktemp("cotrain")
    common = {"clips": (3, 8), "feature_dim": DIM}
    target = write_synthetic_features(
        root / "target" / "feat.h5", n_videos=40, n_labels=4, n_splits=2, **common
    )
    other = write_synthetic_features(
        root / "other" / "feat.h5",
        n_videos=50,
        n_labels=3,
        n_splits=1,
        dataset_seed=7,
        backbone_seed=1,
        **common,
    )
    foreign = write_synthetic_features(
        root / "foreign" / "feat.h5", n_videos=40, n_labels=4, backbone="other", **common
    )
    return {"target": target, "other": other, "foreign": foreign, "root": root}


def test_a_collection_never_drawn_changes_nothing(files) -> None:
    # The co-training loop with the other collection's weight at 0 is exactly plain training:
    # same initial weights, batches, windows and dropout masks (mlp draws dropout).
    plain = train_probe([files["target"]], TrainConfig(**SMALL, split=1), progress=False)
    config = TrainConfig(**SMALL, split=1, co_train=(str(files["other"]),))
    alone = train_cotrained([files["target"]], config, progress=False, weights=[1, 0])
    assert alone["training"][0]["val_loss"] == plain["training"][0]["val_loss"]
    assert alone["metrics"] == plain["metrics"]
    assert alone["co_training"]["collections"][1]["batches"] == 0
    # The other collection has one split: split 1 falls back to its split 0.
    assert alone["co_training"]["collections"][1]["split"] == 0


def test_a_diverging_cotraining_stops_with_one_line(files) -> None:
    # The largest learning rate allowed with an absurd weight decay: the weights overflow and
    # the loss is no longer finite. Co-training shares plain training's loop
    # (probe.train.train_epochs) and its message (test_bad_input checks plain training's).
    config = TrainConfig(**SMALL, lr=10.0, weight_decay=1e38, co_train=(str(files["other"]),))
    with pytest.raises(TrainingError) as error:
        train_probe([files["target"]], config, progress=False)
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(files["target"]))
    assert " loss of " in message and "became" in message and "at epoch " in message
    assert message.endswith("or lower --lr (10)")


def test_cotraining_scores_the_target_and_each_collection(files, tmp_path) -> None:
    config = TrainConfig(**SMALL, co_train=(str(files["other"]),))
    result = train_probe([files["target"]], config, tmp_path / "run", progress=False)
    target, other = result["co_training"]["collections"]
    assert (target["role"], other["role"]) == ("target", "co-train")
    assert other["labels"] == ["label0", "label1", "label2"] and len(result["labels"]) == 4
    assert target["test"] == result["metrics"]["test"]
    assert 0 < other["test"]["uap"] <= 100
    # Both collections were drawn, and every step drew one batch.
    steps = sum(-(-c["videos"]["train"] // SMALL["batch_size"]) for c in (target, other))
    assert target["batches"] > 0 and other["batches"] > 0
    assert target["batches"] + other["batches"] == steps * result["training"][0]["epochs_run"]
    # The checkpoint is the target's probe: `probe eval` scores it as training did.
    scored = evaluate_checkpoint(tmp_path / "run" / "checkpoint.pt", [files["target"]])
    for metric, value in result["metrics"]["test"].items():
        assert scored["metrics"][metric] == pytest.approx(value, abs=1e-9)


def test_batches_are_drawn_in_proportion_to_the_training_sets() -> None:
    draws = collection_draws([28, 35, 0], 20000, np.random.default_rng(0))
    share = np.bincount(draws, minlength=3) / len(draws)
    assert share[0] == pytest.approx(28 / 63, abs=0.01)
    assert share[1] == pytest.approx(35 / 63, abs=0.01)
    assert share[2] == 0


def test_fine_tuning_starts_from_another_collections_body(files, tmp_path) -> None:
    source = tmp_path / "source"
    train_probe([files["other"]], TrainConfig(**SMALL), source, progress=False)
    checkpoint = source / "checkpoint.pt"
    trained = torch.load(checkpoint, weights_only=True)["models"][0]

    torch.manual_seed(0)
    fresh = build_probe("mlp", DIM, 4)
    head = {k: v.clone() for k, v in fresh.state_dict().items() if k.startswith("cls.")}
    load_body(checkpoint, fresh, "mlp", "target")
    for name, value in fresh.state_dict().items():
        expected = head[name] if name.startswith("cls.") else trained[name]
        assert torch.equal(value, expected), name

    plain = train_probe([files["target"]], TrainConfig(**SMALL), progress=False)
    tuned = train_probe(
        [files["target"]], TrainConfig(**SMALL, init_from=str(checkpoint)), progress=False
    )
    assert tuned["training"][0]["val_loss"] != plain["training"][0]["val_loss"]
    assert tuned["config"]["init_from"] == str(checkpoint)

    with pytest.raises(UserError, match="--model mlp"):
        train_probe(
            [files["target"]],
            TrainConfig(**{**SMALL, "model": "linear"}, init_from=str(checkpoint)),
            progress=False,
        )

    # The command line: fine-tune and co-train at once, each collection's metrics printed.
    out = tmp_path / "cli"
    args = ["train", "--features", str(files["target"]), "--co-train", str(files["other"])]
    args += ["--init-from", str(checkpoint), "--out", str(out), "--model", "mlp", "--quiet"]
    args += ["--epochs", "2", "--window", "4", "--batch-size", "8"]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    assert "co-train" in run.output and str(files["other"]) in run.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["co_train"] == [str(files["other"])]


def test_collections_of_another_backbone_are_refused(files) -> None:
    config = TrainConfig(**SMALL, co_train=(str(files["foreign"]),))
    with pytest.raises(UserError, match="same backbone") as error:
        train_probe([files["target"]], config, progress=False)
    assert str(files["foreign"]) in str(error.value) and str(files["target"]) in str(error.value)
    config = TrainConfig(**SMALL, co_train=(str(files["other"]),))
    with pytest.raises(UserError, match="one --features file"):
        train_probe([files["target"], files["target"]], config, progress=False)


def test_cache_keys_name_the_cotrained_files_and_the_initial_checkpoint(files, tmp_path) -> None:
    info = read_file_info(files["target"])
    plain = run_task((info,), TrainConfig(**SMALL), 0, 0).key
    co = TrainConfig(**SMALL, co_train=(str(files["other"]),))
    assert run_task((info,), TrainConfig(**SMALL), 0, 0).key == plain
    assert run_task((info,), co, 0, 0).key != plain
    first = run_task((info,), co, 0, 0).key
    stat = files["other"].stat()
    os.utime(files["other"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert run_task((info,), co, 0, 0).key != first  # a changed co-train file: new runs

    checkpoint = tmp_path / "a.pt"
    checkpoint.write_bytes(b"one")
    tuned = TrainConfig(**SMALL, init_from=str(checkpoint))
    key = run_task((info,), tuned, 0, 0).key
    assert key != plain
    checkpoint.write_bytes(b"two")
    assert run_task((info,), tuned, 0, 0).key != key


def test_the_study_compares_cotraining_with_the_target_alone(files, tmp_path) -> None:
    result = run_study(
        tmp_path / "report",
        features=[files["target"]],
        probe_axes={"model": ["linear"]},
        splits="all",
        seeds=[0, 1],
        config=TrainConfig(**SMALL),
        progress=False,
        cache=tmp_path / "cache",
        co_train=[files["other"]],
    )
    base, cotrained = result.variants
    assert (base.label, cotrained.label) == ("baseline", "cotrain=other")
    assert cotrained.comparison["test"]["n"] == 4  # 2 splits x 2 seeds, paired
    assert cotrained.comparison["delta"]["uap"]["mean"] != 0
    markdown = (tmp_path / "report" / "study.md").read_text()
    assert "cotrain=other" in markdown and str(files["other"]) in markdown
    rows = (tmp_path / "report" / "study.csv").read_text().splitlines()
    assert rows[0].split(",").count("cotrain") == 1 and ",other," in rows[2]

    with pytest.raises(UserError, match="none of the study's"):
        run_study(
            tmp_path / "bad",
            features=[files["target"]],
            config=TrainConfig(**SMALL),
            progress=False,
            cache=tmp_path / "cache",
            co_train=[files["foreign"]],
        )


def test_the_second_demo_collection_has_other_videos_and_labels() -> None:
    from extract.cli import app as extract_app
    from extract.demo_data import COLLECTIONS, SECOND_LABEL_NAMES, load_shot_pool, plan_collection

    pool = load_shot_pool()
    first, _, _ = plan_collection(pool, 8, np.random.default_rng(0), COLLECTIONS[1])
    plans, labels, splits = plan_collection(pool, 8, np.random.default_rng([0, 2]), COLLECTIONS[2])
    assert [p.video_id for p in plans] == [f"scene_{v:03d}" for v in range(8)]
    assert [p.shots for p in plans] != [p.shots for p in first]
    spec = COLLECTIONS[2]
    for plan, row in zip(plans, labels, strict=True):
        shown = {pool[s.pool_index].category for s in plan.shots}
        expected = {label for c in shown for label in spec.category_labels[c]}
        assert {SECOND_LABEL_NAMES[j] for j in np.flatnonzero(row)} == expected
    assert splits.shape == (8, 3) and 0 < labels.mean(axis=0).min()

    run = CliRunner().invoke(extract_app, ["demo-data", "unused", "--collection", "3"])
    assert isinstance(run.exception, UserError) and "--collection 3" in str(run.exception)
