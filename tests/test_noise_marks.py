"""Cells a column's best cannot be told apart from: the paired sign-flip test of each cell's runs
against the best's, over the same splits and seeds."""

import numpy as np

from probe.stats import compare_with_best, sign_flip_p_value


def runs(values):
    return {(k // 3, k % 3): float(v) for k, v in enumerate(values)}


def test_two_rows_indistinguishable_and_one_not():
    rng = np.random.default_rng(0)
    base = 70 + rng.normal(0, 2, size=9)  # 3 splits x 3 seeds
    column = {
        "a": runs(base + 0.5),
        # below a in some runs and above it in others: within noise
        "b": runs(base + 0.5 + np.array([1, -1.2, 0.5, -0.6, 1, -1.1, 0.2, -0.3, 0.1])),
        "c": runs(base - 5),  # below a in every run: p = 2 / 2^9
    }
    ranked = compare_with_best(column)
    assert ranked["a"].best and ranked["a"].p_vs_best is None
    assert not ranked["b"].best and ranked["b"].within_noise and ranked["b"].p_vs_best >= 0.05
    assert not ranked["c"].within_noise
    assert ranked["c"].p_vs_best == sign_flip_p_value(
        list(column["a"].values()), list(column["c"].values())
    )
    assert ranked["c"].p_vs_best == 2 / 2**9 and ranked["c"].pairs == 9


def test_few_runs_can_never_separate_rows():
    # 3 splits x 1 seed: the smallest two-sided p is 2 / 2^3 = 0.25, so every cell stays marked.
    column = {"a": runs([90, 91, 92]), "b": runs([10, 11, 12])}
    ranked = compare_with_best(column)
    assert ranked["b"].p_vs_best == 0.25 and ranked["b"].within_noise


def test_only_shared_runs_are_paired():
    column = {"a": {(0, 0): 80.0, (0, 1): 81.0}, "b": {(1, 0): 10.0}}
    ranked = compare_with_best(column)
    assert ranked["b"].pairs == 0 and ranked["b"].within_noise and ranked["b"].p_vs_best is None


def test_matrix_marks_the_rows_noise_cannot_separate(tmp_path):
    """Two backbones with equally strong features cannot be told apart; a weak one can (3 splits x 3
    seeds: p = 2/2^9 when it loses every run). matrix.md, matrix.csv and matrix.json say so."""
    import csv

    from probe.config import TrainConfig
    from probe.matrix import run_matrix
    from probe.synthetic import write_synthetic_features
    from probe.tasks import Cache

    common = dict(n_videos=60, clips=(3, 10), n_labels=3, n_splits=3, dataset_seed=5)
    feats = tmp_path / "features"
    for name, seed, signal in (("strong", 1, 2.0), ("twin", 3, 2.0), ("weak", 2, 0.05)):
        path = feats / f"{name}.h5"
        write_synthetic_features(
            path, feature_dim=8, backbone=name, backbone_seed=seed, signal=signal, **common
        )
    config = TrainConfig(epochs=3, lr=3e-3, patience=2, scheduler_patience=1, threads=1)
    out = tmp_path / "report"
    cache = Cache(tmp_path / "cache")
    run_matrix([feats], out, ["linear"], "all", [0, 1, 2], config, [], progress=False, cache=cache)
    with (out / "matrix.csv").open() as handle:
        rows = {r["row"]: r for r in csv.DictReader(handle)}
    best = next(name for name, r in rows.items() if r["best_in_column"] == "True")
    assert best in ("strong", "twin")
    twin = "twin" if best == "strong" else "strong"
    assert rows[twin]["within_noise_of_best"] == "True" and float(rows[twin]["p_vs_best"]) >= 0.05
    assert rows["weak"]["within_noise_of_best"] == "False"
    assert float(rows["weak"]["p_vs_best"]) < 0.05
    table = (out / "matrix.md").read_text()
    line = {row.split("|")[1].strip(): row for row in table.splitlines() if row.startswith("| ")}
    assert "≈" in line[twin] and "≈" not in line["weak"] and "**" in line[best]
