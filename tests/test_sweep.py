"""The sweep protocol on real (synthetic, learnable) feature files: every head of a grid trained
at once equals the same setting trained alone, the pick is made on validation and reported."""

import json

import numpy as np
import pytest
import torch

from probe.config import TrainConfig
from probe.evaluate import load_checkpoint
from probe.models import build_probe
from probe.sweep import _Stack, _StackedAdamW, edges
from probe.synthetic import write_synthetic_features
from probe.train import TrainingError, train_probe
from vtl.errors import UserError

torch.set_num_threads(1)

# Short runs whose heads stop at different epochs and whose schedules reduce the lr.
FAST = dict(epochs=8, patience=3, scheduler_patience=1, threads=1)


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    path = tmp_path_factory.mktemp("features") / "synthetic.h5"
    return write_synthetic_features(path, n_videos=100, clips=(5, 45), feature_dim=24, signal=0.4)


def sweep(path, config, lrs, weight_decays, out_dir):
    """A sweep-protocol run of `config`'s probe over the grid: its result and picked model."""
    cell = TrainConfig.from_dict(
        {
            **config.to_dict(),
            "protocol": "sweep",
            "sweep_lrs": lrs,
            "sweep_weight_decays": weight_decays,
        }
    )
    result = train_probe([path], cell, out_dir, progress=False)
    _, models = load_checkpoint(out_dir / "checkpoint.pt")
    return result, models[0]


def solo(path, config, lr, weight_decay, out_dir):
    """A reference-protocol run of one setting: its result and trained weights."""
    cell = TrainConfig.from_dict({**config.to_dict(), "lr": lr, "weight_decay": weight_decay})
    result = train_probe([path], cell, out_dir, progress=False)
    _, models = load_checkpoint(out_dir / "checkpoint.pt")
    return result, models[0].state_dict()


@pytest.mark.parametrize(
    ("model", "lrs", "tolerance"),
    [
        ("linear", (1e-4, 1e-3, 1e-2), 1e-5),
        ("mlp", (3e-4, 3e-3), 1e-5),  # dropout: one mask for all heads, as a solo run draws it
        ("divita", (1e-4, 1e-3), 1e-4),  # dropout, attention, layer norm
        ("gru", (1e-3,), 1e-4),  # padded windows stop the state at the last real clip
    ],
)
def test_every_head_equals_its_solo_run(features, tmp_path, model, lrs, tolerance):
    """THE check of the protocol: each head of the grid is the run of its (lr, weight decay)
    alone, same seed, same batches; the pick is scored as that run is."""
    config = TrainConfig(model=model, **FAST)
    weight_decays = (0.0, 0.1) if model == "linear" else (0.01,)
    result, picked = sweep(features, config, lrs, weight_decays, tmp_path / "sweep")
    training = result["training"][0]
    record = training["sweep"]
    assert [(h["lr"], h["weight_decay"]) for h in record["heads"]] == [
        (lr, wd) for wd in weight_decays for lr in lrs
    ]
    for k, head in enumerate(record["heads"]):
        alone, weights = solo(
            features, config, head["lr"], head["weight_decay"], tmp_path / f"solo{k}"
        )
        run = alone["training"][0]
        assert head["best_epoch"] == run["best_epoch"]
        assert head["epochs_run"] == run["epochs_run"]
        assert head["val_loss"] == pytest.approx(run["best_val_loss"], rel=tolerance)
        assert head["val_uap"] == pytest.approx(alone["metrics"]["val"]["uap"], abs=1e-3)
        if (head["lr"], head["weight_decay"]) == (
            record["pick"]["lr"],
            record["pick"]["weight_decay"],
        ):
            assert_same_weights(picked.state_dict(), weights, model, config.seed)
            assert training["best_epoch"] == run["best_epoch"]
            for name, value in alone["metrics"]["test"].items():
                assert result["metrics"]["test"][name] == pytest.approx(value, abs=1e-3), name
    assert record["pick"]["val_uap"] == max(h["val_uap"] for h in record["heads"])
    assert record["quantity"] == "val_uap"


def assert_same_weights(got: dict, expected: dict, model: str, seed: int) -> None:
    """Equal to float tolerance: each tensor's difference is under 1e-3 of how far training
    moved it (Adam's normalized steps amplify rounding where gradients are near zero)."""
    torch.manual_seed(seed)
    start = build_probe(model, 24, 4).state_dict()
    for name, value in expected.items():
        if not value.dtype.is_floating_point:
            assert torch.equal(got[name], value), name
            continue
        moved = float((value - start[name]).norm())
        assert float((got[name] - value).norm()) <= 1e-3 * moved + 1e-7, name


def test_a_diverging_head_is_dropped_and_never_picked(features, tmp_path):
    config = TrainConfig(model="linear", **FAST)
    # An absurd weight decay overflows the weights (learning rates are capped: MAX_LR).
    result, _ = sweep(features, config, (1e-3,), (0.01, 1e38), tmp_path)
    record = result["training"][0]["sweep"]
    good, bad = record["heads"]
    assert bad["diverged"] == "training" and bad["val_uap"] is None and bad["epochs_run"] == 1
    assert good["diverged"] is None and good["epochs_run"] == FAST["epochs"]
    assert (record["pick"]["lr"], record["pick"]["weight_decay"]) == (1e-3, 0.01)
    assert record["pick"]["edges"] == ["weight_decay_low"] and record["pick"]["at_edge"]
    with pytest.raises(TrainingError, match="the loss of every head of the sweep"):
        sweep(features, config, (1e-3,), (1e37, 1e38), tmp_path / "all")


def test_stacked_adamw_is_torch_adamw():
    """Heads with their own lr and weight decay follow torch.optim.AdamW(amsgrad=True) exactly."""
    torch.manual_seed(0)
    settings = [(1e-3, 0.0), (1e-2, 0.01), (3e-2, 1.0)]
    start = torch.randn(5, 4)
    grads = [torch.randn(5, 4) for _ in range(6)]
    stacked = {"w": start.unsqueeze(0).repeat(3, 1, 1)}
    optimizer = _StackedAdamW(stacked)
    for grad in grads:
        stacked["w"].grad = grad.unsqueeze(0).repeat(3, 1, 1)
        optimizer.step(stacked, [lr for lr, _ in settings], [wd for _, wd in settings])
    for k, (lr, wd) in enumerate(settings):
        w = start.clone().requires_grad_(True)
        reference = torch.optim.AdamW([w], lr=lr, weight_decay=wd, amsgrad=True)
        for grad in grads:
            w.grad = grad.clone()
            reference.step()
        assert torch.equal(stacked["w"][k], w.detach()), (lr, wd)


def test_edges_of_the_grid():
    lrs, wds = (1e-4, 1e-3, 1e-2), (0.0, 0.01, 0.1)
    assert edges(1e-3, 0.01, lrs, wds) == []
    assert edges(1e-4, 0.0, lrs, wds) == ["lr_low"]  # no weight decay is not an edge
    assert edges(1e-2, 0.1, lrs, wds) == ["lr_high", "weight_decay_high"]
    assert edges(1e-3, 0.01, (1e-3,), (0.01,)) == []  # a one-value axis has no edge


@pytest.mark.parametrize(
    ("lrs", "weight_decays", "message"),
    [
        ((), (0.01,), "at least one"),
        ((1e-3, 0.0), (0.01,), "learning rates must be positive"),
        ((1e-3, 1e38), (0.01,), "learning rates must be positive and at most 10"),
        ((1e-3,), (-0.1,), "weight decays must be 0 or more"),
        ((1e-3,), (float("inf"),), "weight decays must be 0 or more"),
        ((1e-3, 1e-3), (0.01,), "repeats"),
    ],
)
def test_bad_grids_are_one_line(lrs, weight_decays, message):
    config = TrainConfig(protocol="sweep", sweep_lrs=lrs, sweep_weight_decays=weight_decays)
    with pytest.raises(UserError, match=message):
        config.validate()


def test_bad_protocol_and_weight_decay_are_one_line():
    with pytest.raises(UserError, match="--protocol 'tuned': choose one of reference, sweep"):
        TrainConfig(protocol="tuned").validate()
    with pytest.raises(UserError, match="--weight-decay must be 0 or more"):
        TrainConfig(weight_decay=-1.0).validate()
    for lr in (0.0, 1e38, float("nan")):  # 1e38: AdamW's step would overflow a float
        with pytest.raises(UserError, match="--lr must be positive and at most 10"):
            TrainConfig(lr=lr).validate()


def test_heads_start_from_the_solo_runs_weights(features, tmp_path):
    """Every head's first weights are those `torch.manual_seed(seed)` gives a solo probe."""
    config = TrainConfig(model="divita", epochs=1, patience=1, threads=1)
    torch.manual_seed(config.seed)
    expected = build_probe("divita", 24, 4).state_dict()
    lrs = (1e-9, 2e-9)  # too small to move the weights visibly in one epoch
    _, picked = sweep(features, config, lrs, (0.0,), tmp_path)
    for name, value in picked.state_dict().items():
        if value.dtype.is_floating_point and "running" not in name:
            assert np.allclose(value.numpy(), expected[name].numpy(), atol=1e-6), name


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # vmap of attention on CPU
@pytest.mark.parametrize("model", ["linear", "mlp", "savg", "divita", "gru"])
@pytest.mark.parametrize("training", [True, False])
def test_written_out_heads_equal_the_probe_under_vmap(model, training):
    """probe.stacked computes what each head's own probe modules compute (vmap over heads), on
    padded windows, dropout masks included; GRU has no vmap rule, so its heads go one by one."""
    torch.manual_seed(0)
    probe = build_probe(model, 12, 3).train(training)
    stack = _Stack(probe, model, 3, "cpu")
    with torch.no_grad():  # heads that differ, as after a few steps
        for p in stack.params.values():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(5, 7, 12)
    mask = torch.arange(7)[None, :] < torch.tensor([7, 3, 5, 1, 7])[:, None]
    x = x * mask.unsqueeze(-1)
    state = torch.random.get_rng_state()
    stats = [b.clone() for b in probe.bn.buffers()]
    written = stack.forward(x, mask)
    torch.random.set_rng_state(state)
    for b, saved in zip(probe.bn.buffers(), stats, strict=True):
        b.copy_(saved)
    if model == "gru":
        expected = []
        for k in range(3):
            probe.load_state_dict({**stack.state_of(k)})
            torch.random.set_rng_state(state)
            expected.append(probe(x, mask))
        expected = torch.stack(expected)
    else:
        expected = stack.forward(x, mask, generic=True)
    # Padded rows are never read: compare what the windows' real clips give.
    assert torch.allclose(written, expected, atol=1e-5), (written - expected).abs().max()


def test_matrix_under_the_sweep_protocol_records_each_cells_pick(features, tmp_path):
    """`probe matrix --protocol sweep`: matrix.csv/json carry every run's pick, matrix.md says
    which protocol, and the cache keys tell the protocols (and their grids) apart."""
    import csv

    from probe.matrix import run_matrix
    from probe.tasks import read_file_info, run_task

    folder = tmp_path / "features"
    for name, seed in (("a", 1), ("b", 2)):
        write_synthetic_features(
            folder / f"{name}.h5",
            n_videos=60,
            clips=(5, 30),
            backbone=f"synth-{name}",
            backbone_seed=seed,
        )
    config = TrainConfig(
        epochs=3, protocol="sweep", sweep_lrs=(1e-3, 1e-1), sweep_weight_decays=(0.0, 0.01)
    )
    cache = tmp_path / "cache"
    result = run_matrix(
        [folder], tmp_path / "m", ["linear"], [0, 1], [0], config, (), progress=False, cache=cache
    )
    rows = list(csv.DictReader((tmp_path / "m" / "matrix.csv").open()))
    assert len(rows) == 2
    for row in rows:
        assert row["protocol"] == "sweep"
        assert len(row["pick_lr"].split()) == 2  # one pick per run: splits 0 and 1
        assert set(row["pick_lr"].split()) <= {"0.001", "0.1"}
        assert set(row["pick_weight_decay"].split()) <= {"0", "0.01"}
    assert json.loads((tmp_path / "m" / "matrix.json").read_text())["protocol"] == "sweep"
    assert "Sweep protocol" in result.markdown
    # The reference protocol on the same cache trains its own runs and says nothing of picks.
    reference = TrainConfig(epochs=3)
    again = run_matrix(
        [folder],
        tmp_path / "r",
        ["linear"],
        [0, 1],
        [0],
        reference,
        (),
        progress=False,
        cache=cache,
    )
    assert len(again.trained) == 2 and "Sweep protocol" not in again.markdown
    info = read_file_info(folder / "a.h5")
    keys = {
        run_task([info], c, 0, 0).key
        for c in (
            reference,
            config,
            TrainConfig.from_dict({**config.to_dict(), "sweep_lrs": (1e-3,)}),
            TrainConfig(epochs=3, weight_decay=0.1),
        )
    }
    assert len(keys) == 4
    # Runs of the reference protocol at the default weight decay keep their keys.
    assert [name for name, _ in run_task([info], reference, 0, 0).settings] == REFERENCE_KEY


# What keys a reference-protocol run (lr, weight decay at their defaults) before the sweep existed.
REFERENCE_KEY = (
    "lr epochs batch_size patience scheduler_patience window fusion mask_padding".split()
)


def test_probe_train_protocol_sweep_writes_the_pick(features, tmp_path, probe_cli):
    args = ["train", "--features", features, "--model", "linear", "--epochs", "3", "-q"]
    code, out, err = probe_cli([*args, "--protocol", "sweep", "--out", tmp_path / "run"])
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert result["config"]["protocol"] == "sweep"
    record = result["training"][0]["sweep"]
    assert len(record["heads"]) == len(TrainConfig().sweep_lrs) * len(
        TrainConfig().sweep_weight_decays
    )
    pick = record["pick"]
    assert f"sweep pick: lr {pick['lr']:g}, weight decay {pick['weight_decay']:g}" in out
    code, out, err = probe_cli([*args, "--protocol", "tuned", "--out", tmp_path / "bad"])
    assert code == 2 and "--protocol 'tuned': choose one of reference, sweep" in err
