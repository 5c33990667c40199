"""`extract run --sample`: a stratified sample of the videos, recorded in the file, a larger
sample grown from it and a later full run, both taking the sample's videos instead of decoding
them again (real demo videos, real EfficientNet-Lite0 weights)."""

from __future__ import annotations

import numpy as np
import pytest

from extract.pipeline import ExtractConfig, run_extraction
from vtl.errors import FeatureFileError, UserError
from vtl.features import FeatureFile, verify_features
from vtl.manifest import read_manifest
from vtl.sample import METHOD, stratified_sample

FAST = dict(segmentation="fixed", shot_frames=40, image_frames=1, batch_size=8)
LITE0 = "efficientnet_lite0"


@pytest.fixture(scope="module")
def full_file(demo_manifest, tmp_path_factory):
    """A from-scratch full run of the demo collection: what a run after a sample must equal."""
    out = tmp_path_factory.mktemp("full")
    result = run_extraction(demo_manifest, LITE0, out, ExtractConfig(**FAST), progress=False)
    assert result.decoded == len(read_manifest(demo_manifest)) and not result.failures
    return result.files[LITE0]


def test_a_full_run_after_a_sample_decodes_only_the_other_videos(
    demo_manifest, full_file, tmp_path, assert_same_features, extract_cli
):
    manifest = read_manifest(demo_manifest)
    out = tmp_path / "features"
    sampled = run_extraction(
        demo_manifest, LITE0, out, ExtractConfig(**FAST), progress=False, sample=3, sample_seed=1
    )
    path = sampled.files[LITE0]
    assert path.relative_to(out) == full_file.relative_to(full_file.parents[1])  # where full goes
    assert sampled.decoded == 3
    picked = stratified_sample(manifest.labels, manifest.splits, 3, seed=1)
    expected_ids = [manifest.video_ids[i] for i in picked]
    with FeatureFile(path) as f:
        assert f.video_ids == expected_ids
        record = f.meta.sample
        assert f.meta.cost["videos"] == 3
    assert record["method"] == METHOD and record["requested"] == 3 and record["seed"] == 1
    assert record["n"] == 3 and record["of_videos"] == len(manifest)
    assert record["video_ids"] == expected_ids
    assert verify_features(path)["sample"] == 3
    code, stdout, _ = extract_cli(["verify", path])
    assert code == 0 and "a sample of 3 videos" in stdout
    code, by_folder, _ = extract_cli(["verify", out])  # a run's --out: every file in it
    assert code == 0 and by_folder == stdout
    (out / "empty").mkdir()
    code, _, stderr = extract_cli(["verify", out / "empty"])
    assert code == 2 and "a folder without feature files (*.h5)" in stderr

    # The same sampled command again finds its file complete and decodes nothing.
    again = run_extraction(
        demo_manifest, LITE0, out, ExtractConfig(**FAST), progress=False, sample=3, sample_seed=1
    )
    assert again.files[LITE0] == path and again.decoded == 0

    # A full run with another configuration refuses the sample, before decoding anything.
    other = ExtractConfig(**{**FAST, "shot_frames": 30})
    with pytest.raises(UserError, match="exists and was made with another configuration") as no:
        run_extraction(demo_manifest, LITE0, out, other, progress=False)
    assert "(shot detector fixed-40, this run's fixed-30; shot frames 40, this run's 30); " in str(
        no.value
    )

    # A larger sample with the same seed grows this one: its 3 videos are kept (taken from
    # its file), 2 more are drawn around them and decoded, and the record says so.
    grown = run_extraction(
        demo_manifest, LITE0, out, ExtractConfig(**FAST), progress=False, sample=5, sample_seed=1
    )
    assert grown.from_sample == 3 and grown.decoded == 2
    picked = stratified_sample(manifest.labels, manifest.splits, 5, seed=1, keep=picked)
    with FeatureFile(path) as f:
        assert f.video_ids == [manifest.video_ids[i] for i in picked]
        assert set(expected_ids) <= set(f.video_ids)
        assert f.meta.sample["grown_from"] == 3 and f.meta.sample["requested"] == 5

    # A smaller sample would replace the file and lose finished videos: refused, file kept.
    with pytest.raises(UserError, match="holds a finished sample of 5 videos .* lose them"):
        run_extraction(
            demo_manifest,
            LITE0,
            out,
            ExtractConfig(**FAST),
            progress=False,
            sample=3,
            sample_seed=1,
        )
    with FeatureFile(path) as f:
        assert f.n_videos == 5
        sampled = f.meta.cost

    # The full run: the sample's 5 videos come from its file, only the other one is decoded,
    # and the result equals a full run from scratch, features bit for bit.
    full = run_extraction(demo_manifest, LITE0, out, ExtractConfig(**FAST), progress=False)
    assert full.files[LITE0] == path
    assert full.from_sample == 5 and full.decoded == len(manifest) - 5
    assert_same_features(full_file, path)
    with FeatureFile(path) as f, FeatureFile(full_file) as scratch:
        assert f.meta.sample == {} and f.meta.cost["videos"] == len(manifest)
        assert f.meta.config == scratch.meta.config and f.meta.cost["clips"] == scratch.n_clips
        # The sample's seconds carry over with its videos; the decoded video adds its own.
        for key in ("embed_seconds", "shared_seconds"):
            assert f.meta.cost[key] > sampled[key] > 0
        np.testing.assert_array_equal(f.labels, manifest.labels)
        np.testing.assert_array_equal(f.splits, manifest.splits)
    assert not list(path.parent.glob(".*.work"))

    # A sample asked over the full file: the file already holds every video.
    over = run_extraction(
        demo_manifest, LITE0, out, ExtractConfig(**FAST), progress=False, sample=2
    )
    assert over.files[LITE0] == path and over.decoded == 0
    assert_same_features(full_file, path)


@pytest.mark.slow  # two shard processes; `make test-all` runs it
def test_shards_draw_one_sample_and_merge_it(demo_manifest, full_file, tmp_path):
    out = tmp_path / "sharded"
    config = ExtractConfig(**FAST)
    parts = [
        run_extraction(demo_manifest, LITE0, out, config, shard=shard, progress=False, sample=0.5)
        for shard in ("0/2", "1/2")
    ]
    merged = parts[1].merged[LITE0]
    assert sum(part.decoded for part in parts) == 3
    with FeatureFile(merged) as f, FeatureFile(full_file) as scratch:
        assert f.part is None and f.meta.sample["requested"] == 0.5
        assert f.video_ids == f.meta.sample["video_ids"] and f.n_videos == 3
        first = list(f.video_ids)
        for i, video_id in enumerate(f.video_ids):
            j = scratch.video_ids.index(video_id)
            np.testing.assert_array_equal(f.video(i).features, scratch.video(j).features)
            np.testing.assert_array_equal(f.video(i).shots, scratch.video(j).shots)
    assert verify_features(merged)["sample"] == 3

    # Grown under shards: each shard draws the same grown sample around the finished one.
    grown = [
        run_extraction(demo_manifest, LITE0, out, config, shard=shard, progress=False, sample=5)
        for shard in ("0/2", "1/2")
    ]
    assert sum(part.decoded for part in grown) == 2
    assert sum(part.from_sample for part in grown) == 3
    with FeatureFile(grown[1].merged[LITE0]) as f:
        assert f.n_videos == 5 and f.meta.sample["grown_from"] == 3
        assert set(first) <= set(f.video_ids)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--sample", "0"], "--sample"),
        (["--sample=-5"], "--sample"),
        (["--sample", "1.5"], "--sample"),
        (["--sample", "a few"], "--sample"),
        (["--sample", "7"], "6 videos"),
        (["--sample", "3", "--sample-seed=-1"], "--sample-seed"),
    ],
)
def test_bad_sample_options_are_one_line(demo_manifest, tmp_path, extract_cli, args, words):
    out = tmp_path / "out"
    code, _, stderr = extract_cli(["run", "-m", demo_manifest, "-b", LITE0, "-o", out, *args])
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, stderr
    assert lines[0].startswith("error:") and words in lines[0]
    assert not list(tmp_path.rglob("*.h5"))


def test_a_second_backbones_sample_holds_the_first_ones_videos(demo_manifest, tmp_path, caplog):
    """Lite0's sample of 3 (seed 1) grown to 4 holds demo_000, 002, 003 and 005; a fresh draw of
    4 with seed 1 holds 004 instead of 005. Lite1's sample of 4 in the same --out drew afresh,
    and `probe recommend` then compared the two on the 3 videos both held; now it takes the
    finished sample's videos. A smaller sample than another backbone's is refused."""
    manifest = read_manifest(demo_manifest)
    out = tmp_path / "features"
    config = ExtractConfig(**FAST)
    seeded = dict(progress=False, sample_seed=1)
    for size in (3, 4):
        run_extraction(demo_manifest, LITE0, out, config, sample=size, **seeded)
    first = stratified_sample(manifest.labels, manifest.splits, 3, seed=1)
    grown = stratified_sample(manifest.labels, manifest.splits, 4, seed=1, keep=first)
    fresh = stratified_sample(manifest.labels, manifest.splits, 4, seed=1)
    assert set(grown) != set(fresh)  # else this test could not fail
    lite1 = run_extraction(demo_manifest, "efficientnet_lite1", out, config, sample=4, **seeded)
    assert lite1.decoded == 4
    with FeatureFile(lite1.files["efficientnet_lite1"]) as f:
        assert f.video_ids == [manifest.video_ids[i] for i in grown]
    with pytest.raises(UserError, match="holds a sample of 4 videos .seed 1. of another backbone"):
        run_extraction(demo_manifest, "efficientnet_lite2", out, config, sample=3, **seeded)
    # Another seed is the user's choice, said: the comparison is then on the videos all hold.
    lite2 = dict(progress=False, sample=2, sample_seed=2)
    run_extraction(demo_manifest, "efficientnet_lite2", out, config, **lite2)
    assert "other backbones' samples of seed 1; this one draws seed 2" in caplog.text


def test_shards_of_two_draws_are_not_merged(demo_manifest, tmp_path):
    """Shard 0 of a sample, then shard 1 of a full run into the same --out: the last shard
    merged the two parts into a file holding videos twice (exit 0, `verify` failing) and
    deleted them. Now the merge is refused and both parts are kept; shard 0 run again as a full
    run is told what its part holds."""
    out = tmp_path / "sharded"
    config = ExtractConfig(**FAST)
    run_extraction(demo_manifest, LITE0, out, config, shard="0/2", progress=False, sample=3)
    with pytest.raises(
        FeatureFileError, match="its shard of a full run, .* of a sample of 3 .*delete"
    ):
        run_extraction(demo_manifest, LITE0, out, config, shard="1/2", progress=False)
    parts = sorted(out.rglob("*.part-*-of-2.h5"))
    assert len(parts) == 2 and not list(out.rglob("efficientnet_lite0.h5"))
    with pytest.raises(UserError, match=r"holds shard 0/2 of a sample of 3 videos \(seed 0\)"):
        run_extraction(demo_manifest, LITE0, out, config, shard="0/2", progress=False)

    # One draw asked two ways (a half, 3 of 6): the same videos, merged.
    same = tmp_path / "same"
    for shard, size in (("0/2", 0.5), ("1/2", 3)):
        last = run_extraction(
            demo_manifest, LITE0, same, config, shard=shard, progress=False, sample=size
        )
    with FeatureFile(last.merged[LITE0]) as f:
        assert f.n_videos == 3 and f.part is None


def test_a_repeated_backbone_option_names_every_backbone(demo_manifest, tmp_path, extract_cli):
    """`-b nope -b efficientnet_lite0` ran Lite0 alone (the last value won, the first was lost
    without a word); every value now counts, as with commas."""
    out = tmp_path / "out"
    args = ["run", "-m", demo_manifest, "-b", "nope", "-b", LITE0, "-o", out]
    code, _, stderr = extract_cli(args)
    assert code == 2 and "'nope'" in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not out.exists() or not list(out.rglob("*.h5"))


def test_a_sample_of_every_video_is_the_full_file(demo_manifest, tmp_path):
    """`--sample 100%`, then a sample of 3 with another seed: the file holds every video, so no
    sample is needed (before, it was refused as a finished sample the new one would lose)."""
    out = tmp_path / "features"
    config = ExtractConfig(**FAST)
    every = run_extraction(demo_manifest, LITE0, out, config, progress=False, sample=1.0)
    again = run_extraction(
        demo_manifest, LITE0, out, config, progress=False, sample=3, sample_seed=1
    )
    assert again.decoded == 0 and again.files[LITE0] == every.files[LITE0]
