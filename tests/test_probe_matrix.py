"""The transferability matrix on real (synthetic, learnable) feature files: outputs, bold best,
cache (a rerun trains nothing), fusion, parallel jobs, folder discovery, chunked streaming, and
the `probe matrix`, `probe score` and `probe import-trailers12k` commands."""

import csv
import dataclasses
import json
import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import zarr

from probe.catalogue import discover_feature_files
from probe.config import TrainConfig
from probe.data import MemoryStore, StreamingStore, open_probe_data, random_windows, sliding_windows
from probe.matrix import run_matrix
from probe.matrix_report import CSV_COLUMNS
from probe.synthetic import write_synthetic_features
from probe.tasks import Cache
from probe.train import train_probe
from probe.transferability import score_feature_file
from vtl.errors import UserError
from vtl.features import FeatureFile, FeatureWriter

torch.set_num_threads(1)

FAST = TrainConfig(epochs=2, lr=3e-3, patience=2, scheduler_patience=1, threads=1)
COMMON = dict(n_videos=40, clips=(3, 14), n_labels=3, n_splits=2, dataset_seed=11)
MODELS = ["linear", "mlp"]
SCORES = ["logme", "hscore", "knn"]


def with_meta(path, **changes):
    """Rewrite a feature file through the shared reader and writer with other root attributes."""
    tmp = path.with_name(f"src-{path.name}")
    path.rename(tmp)
    with FeatureFile(tmp) as f:
        meta = dataclasses.replace(f.meta, **changes)
        with FeatureWriter(path, meta, f.label_names, f.splits.shape[1]) as w:
            for i in range(f.n_videos):
                w.add(f.video(i))
    tmp.unlink()
    return path


def synthetic(path, backbone: str, dim: int, seed: int, **more):
    """A synthetic feature file of the `COMMON` videos (`more` overrides or adds arguments)."""
    return write_synthetic_features(
        path, feature_dim=dim, backbone=backbone, backbone_seed=seed, **{**COMMON, **more}
    )


def make_files(root):
    """A family `fam` with an image and a video file (a fusion pair), and one more backbone."""
    lite0 = "efficientnet_lite0"
    image = synthetic(root / "fam" / f"{lite0}.h5", lite0, dim=6, seed=1, signal=0.4)
    video = synthetic(root / "fam" / "x3d_xs.h5", "x3d_xs", dim=8, seed=2, signal=0.8, kind="video")
    other = synthetic(root / "mystery.h5", "mystery", dim=10, seed=3, signal=1.2)
    # Costs as extraction records them (`extract backbones` figures, 4 frames per image clip).
    with_meta(
        image, family="fam", pretrain="in1k", cost={"params_m": 4.65, "gflops_per_clip": 3.07}
    )
    with_meta(
        video, family="fam", pretrain="k400", cost={"params_m": 3.79, "gflops_per_clip": 1.21}
    )
    with_meta(other, family="other", pretrain="in1k")
    return image, video, other


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("matrix-features")
    make_files(root)
    # What a folder search must skip: a shard part file and an HDF5 file that is not ours.
    write_synthetic_features(root / "fam" / "shard.part-0-of-2.h5", feature_dim=4, **COMMON)
    with h5py.File(root / "other.h5", "w") as h5:
        h5["x"] = np.zeros(3)
    return root


@pytest.fixture(scope="module")
def first(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    cache = Cache(out / "cache")
    result = run_matrix(
        [folder], out, MODELS, "all", [0], FAST, SCORES, progress=False, cache=cache
    )
    return out, result


def read_csv(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def table(markdown):
    """The first Markdown table as (header, rows of cells)."""
    block = next(b for b in markdown.split("\n\n") if b.startswith("|"))
    split = [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()]
    return split[0], split[2:]


def test_matrix_writes_four_outputs_with_the_right_rows(first):
    out, result = first
    for name in ("matrix.csv", "matrix.md", "matrix.png", "cost.png", "matrix.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "matrix.png").read_bytes()[:4] == b"\x89PNG"
    rows = read_csv(out / "matrix.csv")
    assert list(rows[0]) == CSV_COLUMNS
    names = ["efficientnet_lite0", "x3d_xs", "efficientnet_lite0 + x3d_xs (late fusion)", "mystery"]
    # 4 rows x 2 probes, plus 3 scores for each of the 3 single files; the part file and the
    # foreign HDF5 file are not among them.
    assert len(rows) == 4 * 2 + 3 * 3
    assert [r.name for r in result.rows] == names
    assert {r["row"] for r in rows} == set(names)
    assert not any("shard" in r["files"] or "other.h5" in r["files"] for r in rows)
    probes = [r for r in rows if r["type"] == "probe"]
    assert {(r["row"], r["probe"]) for r in probes} == {(n, m) for n in names for m in MODELS}
    for r in probes:
        assert 0 <= float(r["uap_mean"]) <= 100 and float(r["uap_std"]) >= 0
        assert r["runs"] == "2" and r["splits"] == "0 1" and r["seeds"] == "0"
        assert r["score_mean"] == ""
    scores = [r for r in rows if r["type"] == "score"]
    assert {r["probe"] for r in scores} == set(SCORES) and all(r["uap_mean"] == "" for r in scores)
    # Costs: from each file's `cost` attribute, summed for the fusion, blank when unknown.
    by_row = {r["row"]: r for r in probes}
    assert float(by_row["x3d_xs"]["gflops_per_clip"]) == 1.21
    fused = by_row[names[2]]
    assert float(fused["gflops_per_clip"]) == pytest.approx(3.07 + 1.21)
    assert float(fused["params_m"]) == pytest.approx(4.65 + 3.79)
    assert fused["feature_dim"] == "14" and fused["pretrain"] == "in1k + k400"
    assert by_row["mystery"]["gflops_per_clip"] == "" and by_row["mystery"]["params_m"] == ""
    # Markdown: rows backbones, columns probes then scores, μAP mean ± std in percent.
    header, body = table(result.markdown)
    assert header[:5] == ["Backbone", "Pretrain", "Kind", "linear", "mlp"]
    assert header[5:8] == ["LogME", "H-score", "kNN μAP"]
    assert [b[0] for b in body] == names
    linear = {r["row"]: r for r in probes if r["probe"] == "linear"}
    for line in body:
        r = linear[line[0]]
        shown = line[3].strip("*").removesuffix(" ≈")  # ≈: within noise of the column's best
        assert shown == f"{float(r['uap_mean']):.2f} ± {float(r['uap_std']):.2f}"
    assert body[2][5] == ""  # no score for a fusion row
    summary = json.loads((out / "matrix.json").read_text())
    assert len(summary["cells"]) == len(rows) and summary["splits"] == [0, 1]


def test_best_of_each_column_is_bold(first):
    _, result = first
    header, body = table(result.markdown)
    for j in range(3, 8):
        column = [row[j] for row in body if row[j]]
        values = [float(c.strip("*").split(" ± ")[0]) for c in column]
        bold = [c.startswith("**") and c.endswith("**") for c in column]
        assert any(bold), header[j]
        assert all(b == (v == max(values)) for b, v in zip(bold, values, strict=True)), column


def test_fusion_cell_equals_train_probe_on_both_files(folder, first):
    _, result = first
    image, video = folder / "fam" / "efficientnet_lite0.h5", folder / "fam" / "x3d_xs.h5"
    cell = next(c for c in result.cells if c.row.fused and c.method == "linear")
    uaps = [
        train_probe(
            [image, video], dataclasses.replace(FAST, model="linear", split=s), progress=False
        )["metrics"]["test"]["uap"]
        for s in (0, 1)
    ]
    assert cell.result["summary"]["test"]["uap"]["mean"] == pytest.approx(np.mean(uaps), abs=1e-9)


def test_scores_and_rank_correlation(folder, first):
    _, result = first
    cell = next(
        c
        for c in result.cells
        if c.kind == "score" and c.method == "logme" and c.row.name == "mystery"
    )
    values = [score_feature_file(folder / "mystery.h5", s, ["logme"])["logme"] for s in (0, 1)]
    assert cell.result["score"]["mean"] == pytest.approx(np.mean(values))
    assert len(result.correlations) == len(SCORES) * len(MODELS)
    # Lite0's 6 dims on 28 videos look isotropic to Ledoit-Wolf (shrinkage 1): its regularised
    # H-score would be 0 whatever the labels, so it has none, and says why.
    hscore = next(
        c for c in result.cells if c.method == "hscore" and c.row.name == "efficientnet_lite0"
    )
    assert hscore.result["score"]["mean"] is None
    assert "shrinkage is 1" in hscore.result["score"]["reason"]
    assert "## Scores that cannot be computed" in result.markdown
    assert "- efficientnet_lite0, H-score: Ledoit-Wolf shrinkage is 1" in result.markdown
    for c in result.correlations:
        # the fusion row is not a backbone of the ranking
        assert c["backbones"] == (2 if c["score"] == "hscore" else 3)
        if c["kendall_tau"] is not None:
            assert -1 <= c["kendall_tau"] <= 1 and -1 <= c["spearman_rho"] <= 1
    assert "Kendall τ" in result.markdown


def test_second_run_trains_nothing_and_writes_the_same(folder, first):
    out, _ = first
    cached = sorted((out / "cache").rglob("*.json"))
    # 4 rows x 2 probes x 2 splits runs, 3 files x 3 scores x 2 splits, 3 file checks
    assert len(cached) == 16 + 18 + 3
    stamps = [p.stat().st_mtime_ns for p in cached]
    before = {n: (out / n).read_bytes() for n in ("matrix.csv", "matrix.md", "matrix.json")}
    again = run_matrix(
        [folder], out, MODELS, "all", [0], FAST, SCORES, progress=False, cache=out / "cache"
    )
    assert again.trained == []
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    for name, data in before.items():
        assert (out / name).read_bytes() == data, name


def test_changes_retrain_only_the_affected_cells(folder, first, tmp_path):
    out, result = first
    # Copy the cache, so the shared report stays as it was for the other tests.
    work = tmp_path / "report"
    shutil.copytree(out / "cache", work / "cache")
    cache = Cache(work / "cache")
    # More epochs: every probe cell is new, no score cell is.
    longer = dataclasses.replace(FAST, epochs=3)
    changed = run_matrix(
        [folder], work, MODELS, "all", [0], longer, SCORES, progress=False, cache=cache
    )
    trained = {c.key for c in changed.cells if c.key in changed.trained}
    assert trained == {c.key for c in changed.cells if c.kind == "probe"}
    # A new probe column on the first settings: only its cells train.
    more = run_matrix(
        [folder], work, [*MODELS, "savg"], "all", [0], FAST, SCORES, progress=False, cache=cache
    )
    assert {c.method for c in more.cells if c.key in more.trained} == {"savg"}
    assert len(more.trained) == 4
    # Another seed: only the runs of the new seed train, the first seed's come from the cache.
    seeds = run_matrix([folder], work, MODELS, "all", [0, 1], FAST, [], progress=False, cache=cache)
    assert len(seeds.trained) == 8  # every probe cell trained something new: seed 1's runs
    assert seeds.runs_trained == 4 * 2 * 2  # rows x probes x splits, of seed 1 only
    cached = {f.stem for f in (work / "cache").rglob("*.json")}
    assert all(t.key in cached for c in seeds.cells for t in c.tasks)


def test_jobs_2_equals_jobs_1(folder, tmp_path):
    def split0(out: str, cache: str, scores=(), jobs=1):
        """The matrix of one file on split 0, seed 0, into tmp_path / out."""
        files = [folder / "mystery.h5"]
        return run_matrix(
            files,
            tmp_path / out,
            MODELS,
            [0],
            [0],
            FAST,
            list(scores),
            jobs=jobs,
            progress=False,
            cache=tmp_path / cache,
        )

    one = split0("one", "cache1")
    two = split0("two", "cache2", jobs=2)
    assert len(one.trained) == len(two.trained) == 2
    for a, b in zip(one.cells, two.cells, strict=True):
        assert a.key == b.key
        assert a.result["summary"]["test"] == b.result["summary"]["test"]
        assert a.result["summary"]["runs"] == b.result["summary"]["runs"]
    assert one.markdown == two.markdown
    # Two backbones cannot be ranked: the correlation is n/a, not an error.
    assert "n/a" not in one.markdown  # no scores asked for, no correlation table
    few = split0("one", "cache1", scores=["logme"])
    assert few.correlations[0]["kendall_tau"] is None and "n/a (fewer than 3" in few.markdown


def test_discovery_skips_part_and_foreign_files(folder, tmp_path, caplog):
    found = discover_feature_files([folder])
    assert sorted(p.name for p in found) == ["efficientnet_lite0.h5", "mystery.h5", "x3d_xs.h5"]
    assert "shard.part-0-of-2.h5" in caplog.text and "other.h5" in caplog.text
    # A file named twice (directly and through its folder) counts once.
    assert len(discover_feature_files([folder, folder / "mystery.h5"])) == 3
    with pytest.raises(UserError, match="no feature files"):
        discover_feature_files([tmp_path])
    with pytest.raises(UserError, match="no such file or folder"):
        discover_feature_files([tmp_path / "missing"])


def test_chunked_streaming_equals_memory(folder):
    data = open_probe_data([folder / "mystery.h5"])
    try:
        counts = data.clip_counts[0]
        memory = MemoryStore(data.files[0], data.rows[0])
        videos = np.arange(len(counts))
        generator = torch.Generator().manual_seed(0)
        cases = [sliding_windows(videos, counts, 5), random_windows(videos, counts, 5, generator)]
        for chunk_rows, max_gap in [(1, 0), (7, 0), (16, 3), (10_000, 10_000)]:
            stream = StreamingStore(data.files[0], data.rows[0], chunk_rows, max_gap)
            for windows in cases:
                x, mask = stream.windows(windows, 5)
                y, mask_y = memory.windows(windows, 5)
                assert torch.equal(x, y) and torch.equal(mask, mask_y)
    finally:
        data.close()


def test_streaming_train_run_equals_memory(folder):
    config = dataclasses.replace(FAST, model="linear")
    in_memory = train_probe([folder / "mystery.h5"], config, progress=False)
    streamed = train_probe(
        [folder / "mystery.h5"], dataclasses.replace(config, memory_budget_gb=0.0), progress=False
    )
    assert in_memory["metrics"] == streamed["metrics"]


# ------------------------------------------------------------------ command line


def test_cli_matrix(folder, first, tmp_path, probe_cli, caplog):
    out, _ = first
    caplog.set_level(logging.INFO)
    options = "--models linear,mlp --seeds 1 --epochs 2 --lr 3e-3 --patience 2"
    options += " --scheduler-patience 1 --threads 1 --quiet"
    args = ["matrix", "--features", folder, *options.split()]
    args += ["--cache", out / "cache", "--out", out]  # the last stays --out (see below)
    code, stdout, stderr = probe_cli([*args, "--print"])
    assert code == 0, stderr
    # Same settings as the library run: everything comes from the cache.
    assert "trained 0 cells, 17 from the cache" in caplog.text
    assert stdout.strip().splitlines()[-1] == str(out / "matrix.md")
    assert stdout.startswith((out / "matrix.md").read_text())
    code, stdout, stderr = probe_cli(["matrix", "--features", tmp_path, "--out", tmp_path / "r"])
    assert code == 2 and stdout == ""
    assert stderr.strip().count("\n") == 0 and "no feature files" in stderr
    code, _, stderr = probe_cli([*args[:-1], tmp_path / "r", "--models", "nope"])
    assert code == 2 and "--models" in stderr and stderr.strip().count("\n") == 0


def test_cli_score(folder, tmp_path, probe_cli):
    path = folder / "mystery.h5"
    code, stdout, _ = probe_cli(
        ["score", "--features", path, "--methods", "logme,knn", "--out", tmp_path / "s.json"]
    )
    assert code == 0
    expected = score_feature_file(path, 0, ["logme", "knn"])
    assert json.loads((tmp_path / "s.json").read_text())["scores"] == expected
    assert stdout.splitlines()[0].split() == ["logme", f"{expected['logme']:.6f}"]
    code, _, stderr = probe_cli(["score", "--features", path, "--split", "5"])
    assert code == 2 and "split 5" in stderr and stderr.strip().count("\n") == 0
    code, _, stderr = probe_cli(["score", "--features", tmp_path / "no.h5"])
    assert code == 2 and "not found" in stderr


def test_cli_import_trailers12k(tmp_path, probe_cli):
    store = zarr.open_group(str(tmp_path / "trailers_k_toy.zarr"), mode="w", zarr_format=3)
    rng = np.random.default_rng(0)
    rows = [["mid", "action", "drama", "split0", "split1", "split2"]]
    for i in range(9):
        store.create_array(f"tt{i:07d}", data=rng.normal(size=(2 + i % 3, 4)).astype(np.float16))
        rows.append([f"tt{i:07d}", i % 2, (i + 1) % 2, i % 3, (i + 1) % 3, (i + 2) % 3])
    labels = tmp_path / "mtgc.csv"
    with labels.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    out, zarr_path = tmp_path / "toy.h5", tmp_path / "trailers_k_toy.zarr"
    command = ["import-trailers12k", "--labels", labels, "--out", out]
    naming = "--backbone toy3d --pretrain k400 --family toy --quiet".split()
    code, stdout, stderr = probe_cli([*command, "--features", zarr_path, *naming])
    assert code == 0, stderr
    assert stdout.strip() == f"wrote {out}"
    with FeatureFile(out) as f:
        m = f.meta
        assert (m.backbone, m.family, m.pretrain, m.kind) == ("toy3d", "toy", "k400", "video")
        assert f.n_videos == 9
    code, _, stderr = probe_cli([*command, "--features", tmp_path / "none.zarr"])
    assert code == 2 and stderr.strip().count("\n") == 0
    code, _, stderr = probe_cli([*command, "--features", zarr_path, "--kind", "audio"])
    assert code == 2 and "--kind" in stderr


# ------------------------------------------------------------------ checked before training


def test_rows_that_cannot_be_built_are_left_out_and_the_rest_written(tmp_path, caplog):
    """A fusion pair whose clips differ and a file with a NaN cannot make rows: they are
    reported (stderr, matrix.md, matrix.json) before any training, and nothing of them trains,
    while every other row is trained and written."""
    root = tmp_path / "features"
    image = synthetic(root / "fam" / "img.h5", "img", dim=6, seed=1)
    # the same videos and labels, other clip counts
    video = synthetic(root / "fam" / "vid.h5", "vid", dim=8, seed=2, kind="video", clips=(15, 20))
    with_meta(image, family="fam", pretrain="in1k")
    with_meta(video, family="fam", pretrain="k400")
    broken = synthetic(root / "nan.h5", "nanny", dim=5, seed=3)
    with h5py.File(broken, "r+") as h5:
        h5["clips/features"][7, 2] = np.nan
    caplog.set_level(logging.WARNING)
    cache = Cache(tmp_path / "cache")
    result = run_matrix(
        [root], tmp_path / "out", ["linear"], [0], [0], FAST, [], progress=False, cache=cache
    )
    assert [r.name for r in result.rows] == ["img", "vid"]
    assert set(result.left_out) == {"img + vid (late fusion)", "nanny"}
    assert "disagree on clips" in result.left_out["img + vid (late fusion)"]
    assert "non-finite" in result.left_out["nanny"] and "nan.h5" in result.left_out["nanny"]
    assert result.runs_trained == 2  # img and vid, linear, split 0, seed 0
    markdown = (tmp_path / "out" / "matrix.md").read_text()
    assert "## Rows left out" in markdown and "nanny: " in markdown
    left = json.loads((tmp_path / "out" / "matrix.json").read_text())["left_out"]
    assert {x["row"] for x in left} == set(result.left_out)
    assert "left out" in caplog.text and "nanny" in caplog.text


def test_an_unusable_split_stops_before_any_training(tmp_path):
    path = write_synthetic_features(tmp_path / "f.h5", feature_dim=4, backbone="b", **COMMON)
    with h5py.File(path, "r+") as h5:  # split 1 loses its validation videos
        splits = h5["splits"][:]
        splits[splits[:, 1] == 1, 1] = 0
        h5["splits"][...] = splits
    cache = Cache(tmp_path / "cache")
    with pytest.raises(UserError, match="split 1 has no val videos"):
        run_matrix(
            [path], tmp_path / "out", ["linear"], "all", [0], FAST, [], progress=False, cache=cache
        )
    records = [json.loads(p.read_text()) for p in cache.folder.rglob("*.json")]
    assert all(r["kind"] == "check" for r in records)  # files read through; nothing trained


def test_files_of_two_manifests_are_refused_before_any_training(tmp_path):
    """Two files with as many videos, labels and splits, whose videos are labelled otherwise
    (two collections with the same ids, or the labels corrected between extractions): one line
    naming both files and a video, before any training; before, the matrix compared backbones
    each on its own labels."""
    write_synthetic_features(tmp_path / "a.h5", n_videos=30, clips=(2, 4), backbone="a")
    write_synthetic_features(
        tmp_path / "b.h5", n_videos=30, clips=(2, 4), backbone="b", dataset_seed=1
    )
    with pytest.raises(UserError, match=r"give video 'v\d+' other labels or splits") as info:
        run_matrix([tmp_path], tmp_path / "report", models=["linear"], cache=Cache(tmp_path / "c"))
    assert "a.h5" in str(info.value) and "b.h5" in str(info.value)
    assert not (tmp_path / "c").exists()


def test_a_cached_result_that_is_no_record_is_computed_again(tmp_path):
    """A cached task file holding JSON that is no record (a list, a number: a damaged or foreign
    file) counts as absent, as unparsable JSON does (before, a TypeError ended the report)."""
    cache = Cache(tmp_path / "cache")
    key = "ab" + "0" * 62
    for text in ("[1, 2]", "3", "not json", '{"key": 1}'):
        cache.path(key).parent.mkdir(parents=True, exist_ok=True)
        cache.path(key).write_text(text)
        assert cache.get(key) is None


def test_names_with_table_and_formula_characters(tmp_path):
    """A backbone named with a `|` and a line break keeps every row of matrix.md lined up with
    its header (before, the row split in two and gained a column); one with an unbalanced `$`
    is drawn as text (before, matplotlib's mathtext failed the report after the training)."""
    synthetic(tmp_path / "f" / "a.h5", "a|b\nc", dim=6, seed=1, signal=0.4)
    synthetic(tmp_path / "f" / "b.h5", "cost $\\frac{$", dim=6, seed=2, signal=0.8)
    out = tmp_path / "report"
    run_matrix(
        [tmp_path / "f"],
        out,
        ["linear"],
        [0],
        [0],
        FAST,
        [],
        progress=False,
        cache=Cache(tmp_path / "cache"),
    )
    lines = next(
        b for b in (out / "matrix.md").read_text().split("\n\n") if b.startswith("|")
    ).splitlines()
    pipes = {line.replace("\\|", "").count("|") for line in lines}
    assert len(pipes) == 1 and len(lines) == 4, lines  # header, rule and one row per backbone
    assert any(line.startswith("| a\\|b c |") for line in lines), lines
    assert (out / "matrix.png").stat().st_size > 0
    assert {r["backbone"] for r in read_csv(out / "matrix.csv")} == {"a|b\nc", "cost $\\frac{$"}


def test_a_file_naming_a_label_twice_is_refused(tmp_path):
    """Each label's AP is reported under its name: a file naming one twice (written by other
    tools than ours, whose writer refuses it) is one line, not a per-label table short of one."""
    path = synthetic(tmp_path / "dup.h5", "x", dim=4, seed=1)
    with h5py.File(path, "r+") as h5:
        h5["labels"].attrs["names"] = np.array(["same", "same", "other"], dtype=object)
    with pytest.raises(UserError, match=r"dup.h5: /labels names the label 'same' twice"):
        FeatureFile(path)
    with FeatureFile(synthetic(tmp_path / "ok.h5", "x", dim=4, seed=1)) as f:
        meta = f.meta
    with pytest.raises(ValueError, match="label names repeat"):
        FeatureWriter(tmp_path / "w.h5", meta, ["same", "same"], 1)


def without(path, dst, drop):
    """A copy of a feature file without the videos `drop` (they failed with this backbone)."""
    with FeatureFile(path) as f:
        with FeatureWriter(dst, f.meta, f.label_names, f.splits.shape[1]) as w:
            for i, video_id in enumerate(f.video_ids):
                if video_id not in drop:
                    w.add(f.video(i))
    path.unlink()
    return dst


def test_files_missing_other_videos_are_compared_on_the_videos_all_hold(tmp_path, caplog):
    """An image file lacking one video and a video file lacking another (each failed with one
    backbone): every row, the fusion and every score see the 38 videos both hold. Before, each
    row was trained and tested on its own file's videos, the paired marks compared runs on
    different test sets, and files with unequal counts stopped the matrix."""
    root = tmp_path / "features"
    image = synthetic(tmp_path / "img.h5", "img", dim=6, seed=1, signal=0.6)
    video = synthetic(tmp_path / "vid.h5", "vid", dim=8, seed=2, kind="video", signal=0.9)
    with_meta(image, family="fam", pretrain="in1k")
    with_meta(video, family="fam", pretrain="k400")
    (root / "fam").mkdir(parents=True)
    image = without(image, root / "fam" / "img.h5", {"v00003"})
    video = without(video, root / "fam" / "vid.h5", {"v00007"})
    caplog.set_level(logging.WARNING)
    cache = Cache(tmp_path / "cache")
    result = run_matrix(
        [root], tmp_path / "out", ["linear"], [0], [0], FAST, ["logme"], progress=False,
        cache=cache,
    )  # fmt: skip
    assert result.videos_left_out == ("v00007", "v00003")
    assert not result.left_out  # the fusion row too
    assert "2 videos left out: not in every feature file" in caplog.text
    assert "img.h5 holds the fewest, 39" in caplog.text
    left_out = ("v00003", "v00007")
    with FeatureFile(image) as f:
        tests = {v for v, s in zip(f.video_ids, f.splits[:, 0], strict=True) if s == 2}
    with FeatureFile(video) as f:
        assert tests - set(left_out) == {
            v for v, s in zip(f.video_ids, f.splits[:, 0], strict=True) if s == 2
        } - set(left_out)
    kept = dataclasses.replace(FAST, model="linear", exclude_videos=left_out)
    rows = {"img": [image], "vid": [video], "img + vid (late fusion)": [image, video]}
    for row, files in rows.items():
        cell = next(c for c in result.cells if c.row.name == row and c.kind == "probe")
        expected = train_probe(files, kept, progress=False)
        assert expected["videos"]["test"] == len(tests - set(left_out))  # one test set
        assert cell.result["summary"]["test"]["uap"]["mean"] == pytest.approx(
            expected["metrics"]["test"]["uap"], abs=1e-9
        ), row
    score = next(c for c in result.cells if c.row.name == "img" and c.kind == "score")
    assert score.result["score"]["mean"] == pytest.approx(
        score_feature_file(image, 0, ["logme"], exclude=left_out)["logme"]
    )
    report = json.loads((tmp_path / "out" / "matrix.json").read_text())
    assert report["videos_left_out"] == ["v00007", "v00003"]
    assert "2 videos left out everywhere" in (tmp_path / "out" / "matrix.md").read_text()


def test_a_file_of_constant_features_is_left_out_and_a_score_without_verdict_is_said(
    tmp_path, probe_cli, caplog
):
    """A file whose clips all hold one vector (an export that wrote zeros) is a row left out:
    before, its probes' tied scores rated above chance (the trapezoidal PR-AUC of a tie is
    (1 + p) / 2) and ranked it above real features, and LogME's refusal of it ended the whole
    matrix after training. `probe score` says so in one line; a score these features defeat
    is left out with its reason while the others are printed."""
    root = tmp_path / "features"
    synthetic(root / "good.h5", "good", dim=6, seed=1)
    zeros = synthetic(root / "zeros.h5", "zeros", dim=5, seed=2)
    with h5py.File(zeros, "r+") as h5:
        h5["clips/features"][...] = 0
    result = run_matrix(
        [root], tmp_path / "out", ["linear"], [0], [0], FAST, ["logme"], progress=False,
        cache=Cache(tmp_path / "cache"),
    )  # fmt: skip
    assert [r.name for r in result.rows] == ["good"]
    assert "every clip has the same features (all 0)" in result.left_out["zeros"]
    code, _, stderr = probe_cli(["score", "--features", zeros])
    assert code == 2 and stderr.count("\n") == 1 and "every clip has the same features" in stderr

    # Lite0's 6 dims on 28 train videos of the matrix's files: Ledoit-Wolf shrinkage 1, no
    # H-score; LogME is still computed and printed, and the JSON names what failed.
    lite0 = synthetic(tmp_path / "lite0.h5", "lite0", dim=6, seed=1, signal=0.4)
    code, stdout, stderr = probe_cli(
        ["score", "--features", lite0, "--methods", "logme,hscore", "--out", tmp_path / "s.json"]
    )
    assert code == 0 and stdout.split()[0] == "logme" and "hscore" not in stdout
    assert "hscore left out: Ledoit-Wolf shrinkage is 1" in caplog.text
    record = json.loads((tmp_path / "s.json").read_text())
    assert list(record["scores"]) == ["logme"] and "shrinkage is 1" in record["failed"]["hscore"]


def test_a_row_left_out_does_not_shrink_the_others_videos(tmp_path):
    """A file holding 30 of the 40 videos and a NaN, and one holding none: their rows are left
    out, and the other rows keep all 40 videos (before, they were cut to the 30 of a file that
    could not be probed, and the empty file stopped the matrix: "share no video")."""
    root = tmp_path / "features"
    root.mkdir()
    synthetic(root / "good.h5", "good", dim=6, seed=1)
    few = synthetic(tmp_path / "few.h5", "few", dim=5, seed=2)
    few = without(few, root / "few.h5", {f"v{i:05d}" for i in range(10)})
    with h5py.File(few, "r+") as h5:
        h5["clips/features"][3, 1] = np.nan
    empty = synthetic(tmp_path / "empty.h5", "empty", dim=4, seed=3)  # every video failed
    without(empty, root / "empty.h5", {f"v{i:05d}" for i in range(40)})
    result = run_matrix(
        [root], tmp_path / "out", ["linear"], [0], [0], FAST, ["logme"], progress=False,
        cache=Cache(tmp_path / "cache"),
    )  # fmt: skip
    assert list(result.left_out) == ["empty", "few"] and result.videos_left_out == ()
    assert result.left_out["empty"].endswith("holds no videos (every one failed?)")
    cell = next(c for c in result.cells if c.row.name == "good" and c.kind == "probe")
    alone = train_probe(
        [root / "good.h5"], dataclasses.replace(FAST, model="linear"), progress=False
    )
    assert cell.result["summary"]["test"]["uap"]["mean"] == pytest.approx(
        alone["metrics"]["test"]["uap"], abs=1e-9
    )


def test_a_scores_new_revision_is_computed_again_and_the_others_kept():
    """H-score changed (no value where the shrinkage is 1, where it was 0): its cached results
    have other keys, so a matrix computes them again; LogME's keys are as before."""
    from probe.catalogue import FileInfo
    from probe.tasks import score_task

    info = FileInfo(Path("f.h5"), "b", "f", "p", "image", 4, "0", 10, 20, 1, ("a",), 1, 2)
    options = {"max_videos": None, "knn_k": 10}
    assert ["revision", 2] in [list(s) for s in score_task(info, "hscore", 0, options).settings]
    assert not any(s[0] == "revision" for s in score_task(info, "logme", 0, options).settings)
