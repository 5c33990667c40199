"""The extraction stage end to end on real demo videos with real weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import decord
import h5py
import numpy as np
import pytest
import torch

from extract.backbones import create_backbone, sample_frame_indices
from extract.clips import sample_shot_clips
from extract.outputs import CLIPS_RECIPE
from extract.pipeline import ExtractConfig, feature_path, run_extraction
from extract.processor import Cutting, Output, VideoProcessor
from extract.shots import make_shot_detector
from extract.video import VideoSource
from vtl.errors import UserError
from vtl.features import FeatureFile, verify_features
from vtl.manifest import read_manifest, write_manifest

FAST = dict(segmentation="fixed", shot_frames=40, image_frames=1, batch_size=8)


def subset_manifest(manifest: Path, out: Path, n: int = 3, extra: list[tuple[str, Path]] = ()):
    """The first n demo videos (plus extra (id, path) rows) as a new manifest in `out`."""
    m = read_manifest(manifest)
    ids = m.video_ids[:n] + [e[0] for e in extra]
    paths = [str(p) for p in m.paths[:n]] + [str(e[1]) for e in extra]
    labels = np.concatenate([m.labels[:n], np.zeros((len(extra), len(m.label_names)), np.uint8)])
    splits = np.array([[0], [1], [2]] * ((len(ids) + 2) // 3), np.uint8)[: len(ids)]
    return write_manifest(out / "subset.csv", ids, paths, m.label_names, labels, splits)


def test_demo_features_are_valid(lite0_features, demo_manifest):
    summary = verify_features(lite0_features)
    manifest = read_manifest(demo_manifest)
    assert summary["videos"] == len(manifest) and summary["failures"] == 0
    with FeatureFile(lite0_features) as f:
        assert f.meta.shot_detector.startswith("transnetv2")
        assert f.meta.feature_dim == 1280 and f.meta.kind == "image"
        assert f.meta.weights["name"].startswith("efficientnet-lite0")
        assert len(f.meta.weights["sha256"]) == 64
        assert f.video_ids == manifest.video_ids
        np.testing.assert_array_equal(f.labels, manifest.labels)
        # the demo videos are cut from several shots: TransNetV2 must find more than one
        assert np.all(np.diff(f.shot_offsets) >= 2)


def test_clip_embedding_equals_mean_of_frame_embeddings(lite0_features, demo_manifest):
    """A stored clip = the average of the model's pooled embeddings of the same frames,
    decoded and prepared directly (tolerance: float16 storage, rtol/atol 4e-3)."""
    manifest = read_manifest(demo_manifest)
    backbone = create_backbone("efficientnet_lite0", image_frames=2)
    with FeatureFile(lite0_features) as f:
        video = f.video(1)
        stored = f.video_features(1)
    reader = decord.VideoReader(str(manifest.paths[1]))
    checked = 0
    for s, (first, last) in enumerate(video.shots):
        plan = sample_shot_clips(int(first), int(last), video.fps)
        rows = np.flatnonzero(video.shot == s)
        assert len(rows) == len(plan)
        for row, indices in zip(rows, plan, strict=True):
            np.testing.assert_array_equal(video.frames[row], [indices.min(), indices.max()])
            picked = indices[sample_frame_indices(len(indices), 2).numpy()]
            frames = torch.from_numpy(reader.get_batch(list(picked)).asnumpy())
            expected = backbone.embed_frames(backbone.prepare(frames)).mean(0).numpy()
            np.testing.assert_allclose(stored[row], expected, rtol=4e-3, atol=4e-3)
            checked += 1
    assert checked >= 3


def test_one_decode_many_backbones_equals_separate_runs(
    demo_manifest, tmp_path, assert_same_features
):
    manifest = subset_manifest(demo_manifest, tmp_path)
    config = ExtractConfig(**FAST)
    both = run_extraction(
        manifest, "efficientnet_lite0,efficientnet_lite1", tmp_path / "both", config, progress=False
    )
    for name in ("efficientnet_lite0", "efficientnet_lite1"):
        alone = run_extraction(manifest, name, tmp_path / name, config, progress=False)
        assert_same_features(both.files[name], alone.files[name])
    assert both.files["efficientnet_lite1"].name == "efficientnet_lite1.h5"


def write_video(path: Path, n_frames: int, size=(64, 48), fps=24) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(n_frames):
            image = np.full((size[1], size[0], 3), (i * 20) % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_bad_videos_are_listed_and_the_rest_kept(demo_manifest, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    short = write_video(tmp_path / "short.mp4", 10)
    extra = [("text", text), ("empty", empty), ("short", short)]
    manifest = subset_manifest(demo_manifest, tmp_path, n=3, extra=extra)
    result = run_extraction(
        manifest, "efficientnet_lite0", tmp_path / "out", ExtractConfig(**FAST), progress=False
    )
    reasons = {f["video_id"]: f["reason"] for f in result.failures}
    assert set(reasons) == {"text", "empty", "short"}
    assert "empty file" in reasons["empty"] and "shorter than one clip" in reasons["short"]
    path = result.files["efficientnet_lite0"]
    with FeatureFile(path) as f:
        assert f.n_videos == 3
        assert {x["video_id"] for x in f.meta.failures} == set(reasons)
    failures_csv = path.with_suffix(".failures.csv").read_text()
    assert "notes.mp4" in failures_csv and "short.mp4" in failures_csv
    verify_features(path)
    # The empty file replaced by a whole video (a download finished): the same command tries
    # it again, and only it; before, the rerun found the file complete and kept the failure.
    empty.write_bytes(read_manifest(manifest).paths[0].read_bytes())
    again = run_extraction(
        manifest, "efficientnet_lite0", tmp_path / "out", ExtractConfig(**FAST), progress=False
    )
    assert {f["video_id"] for f in again.failures} == {"text", "short"}
    assert again.videos_done == 1  # the others were taken from the finished file
    with FeatureFile(path) as f:
        assert f.video_ids == [*read_manifest(manifest).video_ids[:3], "empty"]
        np.testing.assert_array_equal(f.video_features(3), f.video_features(0))
        assert {x["video_id"] for x in f.meta.failures} == {"text", "short"}
    verify_features(path)


def test_a_rerun_brings_a_finished_files_labels_up_to_the_manifest(demo_manifest, tmp_path):
    """Labels corrected in the manifest after the extraction: the rerun finds the file complete
    and, where before it kept the old labels (which every probe then read), rewrites the labels
    and splits (the features do not depend on them); a label column added too."""
    manifest = subset_manifest(demo_manifest, tmp_path, n=3)
    first = run_extraction(
        manifest, "efficientnet_lite0", tmp_path / "out", ExtractConfig(**FAST), progress=False
    )
    path = first.files["efficientnet_lite0"]
    with FeatureFile(path) as f:
        features = f.read_features()
    m = read_manifest(manifest)
    labels = np.concatenate([1 - m.labels, np.array([[1], [0], [1]], np.uint8)], axis=1)
    splits = np.array([[2], [1], [0]], np.uint8)
    names = [*m.label_names, "added"]
    write_manifest(manifest, m.video_ids, [str(p) for p in m.paths], names, labels, splits)
    again = run_extraction(
        manifest, "efficientnet_lite0", tmp_path / "out", ExtractConfig(**FAST), progress=False
    )
    assert again.files["efficientnet_lite0"] == path
    with FeatureFile(path) as f:
        assert f.label_names == names and f.video_ids == m.video_ids
        np.testing.assert_array_equal(f.labels, labels)
        np.testing.assert_array_equal(f.splits, splits)
        np.testing.assert_array_equal(f.read_features(), features)
    verify_features(path)


def test_a_finished_file_of_an_earlier_recipe_is_not_reused(demo_manifest, tmp_path):
    """A file's arrays depend on the code that made them: a finished file records that code's
    revision (and the libraries' versions); one of an earlier recipe, or made before recipes
    were recorded, is refused by a rerun naming it, where before it was taken as done."""
    manifest = subset_manifest(demo_manifest, tmp_path, n=3)
    out = tmp_path / "out"
    path = run_extraction(
        manifest, "efficientnet_lite0", out, ExtractConfig(**FAST), progress=False
    ).files["efficientnet_lite0"]
    with FeatureFile(path) as f:
        assert f.meta.recipe == f"{CLIPS_RECIPE}.1"
        software = f.meta.software
    assert software["torch"] == torch.__version__ and software["av"] == av.__version__
    assert software["ffmpeg"] == av.ffmpeg_version_info and software["timm"]
    for recorded, said in (("0.1", "0.1"), (None, "none recorded (made before 2026-12-05)")):
        with h5py.File(path, "r+") as h5:
            if recorded is None:
                del h5.attrs["recipe"]
            else:
                h5.attrs["recipe"] = recorded
        with pytest.raises(UserError, match="exists and was made with another configuration") as e:
            run_extraction(
                manifest, "efficientnet_lite0", out, ExtractConfig(**FAST), progress=False
            )
        assert f"(recipe {said}, this run's {CLIPS_RECIPE}.1)" in str(e.value)
    # every file of the run made otherwise is named at once (before, the first alone: delete
    # it, rerun, meet the next), each on a line of its own
    other = feature_path(out, create_backbone("efficientnet_lite1").spec, "efficientnet")
    other.write_bytes(path.read_bytes())
    with pytest.raises(UserError) as e:
        run_extraction(
            manifest,
            ["efficientnet_lite0", "efficientnet_lite1"],
            out,
            ExtractConfig(**FAST),
            progress=False,
        )
    lines = str(e.value).split("\nerror: ")
    assert [line.split(" exists and was made")[0] for line in lines] == [str(path), str(other)]
    assert all(line.endswith("delete it or choose another --out") for line in lines)


def test_an_unfinished_run_is_resumed_only_by_the_same_options_and_code(tmp_path):
    """A work folder (an interrupted run's finished videos) is refused by a run with other
    options (rerun with the same ones) and by other code (whose arrays would differ: delete
    it), never mixed."""
    from extract.store import WorkStore

    made = {"backbone": "b", "config": {"shot_frames": 40}, "recipe": "1.1"}
    WorkStore(tmp_path / "work", made)
    WorkStore(tmp_path / "work", dict(made))  # the same: resumed
    with pytest.raises(UserError, match="differs in config.*rerun with the same options"):
        WorkStore(tmp_path / "work", made | {"config": {"shot_frames": 30}})
    with pytest.raises(UserError, match=r"other code .*recipe 1.1, this code's 2.1.*delete"):
        WorkStore(tmp_path / "work", made | {"recipe": "2.1"})


def test_shards_merge_to_the_single_process_file(demo_manifest, tmp_path, assert_same_features):
    manifest = subset_manifest(demo_manifest, tmp_path, n=5)
    config = ExtractConfig(**FAST)
    single = run_extraction(
        manifest, "efficientnet_lite0", tmp_path / "one", config, progress=False
    ).files["efficientnet_lite0"]
    first = run_extraction(
        manifest, "efficientnet_lite0", tmp_path / "sharded", config, shard="0/2", progress=False
    )
    assert not first.merged  # the other part is not there yet
    with h5py.File(first.files["efficientnet_lite0"], "r+") as h5:  # a shard on another machine
        h5.attrs["software"] = json.dumps({"torch": "0.0", "av": av.__version__, "extra": "1"})
    second = run_extraction(
        manifest, "efficientnet_lite0", tmp_path / "sharded", config, shard="1/2", progress=False
    )
    merged = second.merged["efficientnet_lite0"]
    assert merged == tmp_path / "sharded" / "efficientnet" / "efficientnet_lite0.h5"
    assert not list(merged.parent.glob("*.part-*"))
    assert_same_features(single, merged)
    with FeatureFile(merged) as f:  # each version the shards ran with
        assert f.meta.software["torch"] == f"0.0, {torch.__version__}"
        assert f.meta.software["av"] == av.__version__ and f.meta.software["extra"] == "1"
    # A shard run again after the merge (a SLURM array resubmitted) has nothing to do; before,
    # it extracted its share again into a new part file next to the merged one.
    again = run_extraction(
        manifest, "efficientnet_lite0", tmp_path / "sharded", config, shard="0/2", progress=False
    )
    assert again.files["efficientnet_lite0"] == merged and again.videos_done == 0
    assert not list(merged.parent.glob("*.part-*"))


def test_missing_weights_fail_fast_with_the_file_to_place(demo_manifest, tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "extract.cli",
            "run",
            "-m",
            str(demo_manifest),
            "-b",
            "swin",
            "-o",
            str(tmp_path),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "swin" in lines[0] and str(tmp_path / "cache") in lines[0]
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "swin").exists()


def test_output_names_follow_the_family(tmp_path):
    from extract.backbones import get_spec
    from extract.pipeline import output_plan

    assert feature_path(tmp_path, get_spec("swin3d_t")) == tmp_path / "swin" / "k400.h5"
    assert feature_path(tmp_path, get_spec("swin_t")) == tmp_path / "swin" / "in1k.h5"
    lite2 = feature_path(tmp_path, get_spec("efficientnet_lite2"))
    assert lite2 == tmp_path / "efficientnet" / "efficientnet_lite2.h5"
    # resnet50 is no member of the resnet pair: it must not take resnet18's in1k.h5
    assert feature_path(tmp_path, get_spec("resnet50")) == tmp_path / "resnet" / "resnet50.h5"
    # a family puts its members in its own folder, a backbone named alone goes to its spec's
    plan = output_plan("shufflenet,x3d_s")
    assert [(s.name, f) for s, f in plan] == [
        ("shufflenet_v2_x2_0", "shufflenet"),
        ("shufflenetv2_3d_x2_0", "shufflenet"),
        ("x3d_s", "x3d"),
    ]
    assert feature_path(tmp_path, plan[1][0], "shufflenet") == tmp_path / "shufflenet" / "k600.h5"


@pytest.mark.parametrize("option", ["cuda:7"])
def test_unavailable_device_is_a_user_error(option):
    from extract.pipeline import resolve_device
    from vtl.errors import UserError

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device(option)


def test_extract_shots_command_writes_json_and_h5(demo_manifest, lite0_features, tmp_path):
    """`extract shots` alone finds the same TransNetV2 shots that `extract run` stored."""
    import json

    import h5py

    manifest = subset_manifest(demo_manifest, tmp_path, n=3)
    for name in ("shots.json", "shots.h5"):
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "extract.cli",
                "shots",
                "-m",
                str(manifest),
                "-o",
                str(tmp_path / name),
                "--quiet",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr
    data = json.loads((tmp_path / "shots.json").read_text())
    assert data["shot_detector"].startswith("transnetv2")
    with FeatureFile(lite0_features) as f, h5py.File(tmp_path / "shots.h5") as h5:
        for i in range(3):
            expected = f.video(i).shots.tolist()
            assert data["videos"][f.video_ids[i]] == expected
            a, b = h5["shots/offset"][i : i + 2]
            assert h5["shots/frames"][a:b].tolist() == expected


def test_decoded_frames_equal_decord(demo_manifest):
    """Our in-order PyAV decoding gives decord's frames, pixel for pixel, and its frame count."""
    for path in read_manifest(demo_manifest).paths[:2]:
        source = VideoSource(path)
        starts, chunks, _ = zip(*source.chunks(), strict=True)
        ours = np.concatenate(chunks)
        reader = decord.VideoReader(str(path), num_threads=1)
        assert source.info.n_frames == len(reader) == len(ours)
        assert source.info.fps == pytest.approx(reader.get_avg_fps())
        assert list(starts) == list(range(0, len(ours), source.chunk_frames()))
        np.testing.assert_array_equal(ours, reader.get_batch(list(range(len(reader)))).asnumpy())


def test_held_frames_follow_the_clip_not_the_shot():
    """A video that is one shot from start to end, 240 or 2,400 frames: clips are cut while the
    shot is still open, so the frames held and the clips waiting peak at the same small counts
    (about a chunk and a clip, and a batch), and only the frames that clips use are prepared."""
    backbone = create_backbone("efficientnet_lite0", image_frames=2)
    cutting = Cutting(segmentation="fixed", shot_frames=10**6)  # one shot, however long
    detectors = {cutting.shot_key: make_shot_detector("fixed", shot_frames=10**6)}
    processor = VideoProcessor([Output("lite0", cutting, backbone)], detectors, batch_size=4)
    rng = np.random.default_rng(0)
    peaks = []
    for n_frames in (240, 2400):
        chunks = (
            (
                start,
                torch.from_numpy(
                    rng.integers(0, 256, (min(32, n_frames - start), 24, 32, 3), dtype=np.uint8)
                ),
                None,  # fixed segments need no 48x27 frames
            )
            for start in range(0, n_frames, 32)
        )
        arrays, shots = processor.run(24.0, chunks, torch.device("cpu"))
        assert len(arrays["lite0"]["features"]) == n_frames // 24
        assert shots[cutting.shot_key].tolist() == [[0, n_frames - 1]]
        assert processor.prepared == 2 * (n_frames // 24)  # 2 of every 24 frames
        peaks.append((processor.peak_frames, processor.peak_clips))
    assert peaks[0] == peaks[1]
    assert peaks[1][0] <= 2 * 32 + 4 * 2 and peaks[1][1] <= 4  # 2 chunks, a batch of clips


# Arrays the extraction wrote before the streaming rework (commit 1a7edb0), for the first 3 videos
# of the 6-video demo collection: recipe in tests/data/README.md.
REFERENCE = Path(__file__).parent / "data" / "reference_1a7edb0.npz"
COMPARED = (
    "clips/frames",
    "clips/shot",
    "shots/frames",
    "shots/offset",
    "videos/offset",
    "videos/n_frames",
)


def _assert_as_before(path: Path, name: str) -> None:
    reference = np.load(REFERENCE)
    with FeatureFile(path) as f:
        rows = int(f.offsets[3])
        assert f.video_ids[:3] == reference[f"{name}/videos/id"].tolist()
        for dataset in COMPARED:
            expected = reference[f"{name}/{dataset}"]
            got = f.dataset(dataset)[:]
            if dataset.startswith("clips/"):
                got = got[:rows]
            elif dataset.endswith("offset"):
                got = got[:4]
            elif dataset == "shots/frames":
                got = got[: int(f.shot_offsets[3])]
            else:
                got = got[:3]
            np.testing.assert_array_equal(got, expected, err_msg=f"{name} {dataset}")
        features = f.dataset("clips/features")[:rows].astype(np.float32)
    expected = reference[f"{name}/clips/features"].astype(np.float32)
    # float16 rounding of float32 results that may differ by ~1e-7 absolute (another thread
    # count sums in another order): one unit in the last place (1/1024 relative), or a few units
    # of float16's subnormal range (2^-24 each) for values below 6e-5.
    np.testing.assert_allclose(features, expected, rtol=2**-10, atol=2**-20, err_msg=name)


def test_features_equal_the_previous_pipeline(lite0_features, demo_manifest, tmp_path):
    """The streaming pipeline (clips cut in open shots, frames prepared on demand, micro-batched
    forward passes) gives the numbers of the pipeline before it: the same clips, frames and
    shots, and the same features to float16 rounding, for an image backbone on every frame and on
    2 frames per clip with TransNetV2 shots, and a video backbone with fixed segments."""
    from extract.backbones import build_model, get_spec
    from extract.weights import expected_path

    _assert_as_before(lite0_features, "lite0_transnetv2_image2")
    m = read_manifest(demo_manifest)
    paths = [str(p) for p in m.paths[:3]]
    splits = np.array([[0], [1], [2]], np.uint8)
    three = write_manifest(
        tmp_path / "three.csv", m.video_ids[:3], paths, m.label_names, m.labels[:3], splits
    )
    every = run_extraction(
        three, "efficientnet_lite0", tmp_path / "every", ExtractConfig(), progress=False
    )
    _assert_as_before(every.files["efficientnet_lite0"], "lite0_transnetv2_every_frame")
    cache = tmp_path / "cache"  # x3d_xs with seeded random weights, as the reference run had
    spec = get_spec("x3d_xs")
    weights = expected_path(spec, cache)
    weights.parent.mkdir(parents=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save(build_model(spec).state_dict(), weights)
    fixed = ExtractConfig(segmentation="fixed", shot_frames=40, batch_size=8)
    video = run_extraction(
        three, "x3d_xs", tmp_path / "x3d", fixed, cache_dir=cache, progress=False
    )
    _assert_as_before(video.files["x3d_xs"], "x3d_xs_fixed")
