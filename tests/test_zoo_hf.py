"""Hugging Face video models through `transformers` (VideoMAE, TimeSformer, ViViT, V-JEPA 2):
tiny checkpoints the test writes with `save_pretrained` (config.json + model.safetensors) and the
library's own processor configuration (tests/checkpoints.py), in a private Hugging Face hub cache,
load offline by hub id through the code a user runs, and embed real frames as the library's
processor and model do (the vector the video classifier reads, or the mean of the last hidden
states)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from huggingface_hub import try_to_load_from_cache
from skimage.data import chelsea

from extract import hub
from extract.backbones import REGISTRY, create_backbone, get_spec
from extract.backbones.hf_video import CURATED, derive_settings
from extract.backbones.registry import class_names
from extract.hub import repo_folder
from extract.weights import WeightsMismatchError, WeightsMissingError, require_weights
from tests.checkpoints import COMMIT, HF_FRAMES, TINY_HF_VIDEO_MODELS, hub_snapshot, publish_hf
from vtl.errors import UserError

transformers = pytest.importorskip("transformers")


def video_frames() -> np.ndarray:
    """HF_FRAMES real frames: a 4:3 window panning across the cat photo, uint8 [T, H, W, 3]."""
    photo = chelsea()
    windows = [
        photo[20 + 8 * t : 260 + 8 * t, 40 + 16 * t : 360 + 16 * t] for t in range(HF_FRAMES)
    ]
    return np.stack(windows)


def library_embedding(model, processor, frames: np.ndarray) -> torch.Tensor:
    """The library's own processor and forward: what the video classifier reads (captured at
    its input), else the mean of the base model's last hidden states."""
    if isinstance(processor, transformers.BaseVideoProcessor):
        inputs = processor(videos=[list(frames)], return_tensors="pt")
    else:  # image processors of video models take one video as its list of frames
        inputs = processor(list(frames), return_tensors="pt")
    video = next(iter(inputs.values()))  # pixel_values or pixel_values_videos
    name = "pixel_values_videos" if model.config.model_type == "vjepa2" else "pixel_values"
    with torch.no_grad():
        if hasattr(model, "classifier"):
            seen = []
            model.classifier.register_forward_hook(lambda m, args, out: seen.append(args[0]))
            model(**{name: video})
            return seen[0]
        kwargs = {"skip_predictor": True} if model.config.model_type == "vjepa2" else {}
        base = getattr(model, "videomae", model)  # VideoMAEForPreTraining keeps its encoder there
        return base(**{name: video}, **kwargs).last_hidden_state.mean(dim=1)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("kind", list(TINY_HF_VIDEO_MODELS))
def test_a_hub_video_model_loads_offline_and_embeds_as_the_library_does(hub_home, kind):
    torch.manual_seed(0)
    model, processor = TINY_HF_VIDEO_MODELS[kind]()
    model.eval()
    snapshot = publish_hf(model, processor, f"test-org/tiny-{kind}", hub_home)
    # The files are where huggingface_hub itself finds them offline.
    cached = try_to_load_from_cache(f"test-org/tiny-{kind}", "config.json", hub_home / "hub")
    assert cached == str(snapshot / "config.json")

    spec = get_spec(f"hf/test-org/tiny-{kind}")
    assert (spec.kind, spec.num_frames, spec.input_size, spec.feature_dim) == ("video", 4, 32, 32)
    assert spec.resize_size == (36 if kind.startswith("vjepa2") else 40)  # int(32 * 256 / 224)
    found = require_weights([spec])[spec.name]
    assert found.name == "model.safetensors" and COMMIT in str(found)

    backbone = create_backbone(spec)
    frames = video_frames()
    clip = backbone.prepare(torch.from_numpy(frames)).unsqueeze(0)
    ours = backbone.embed(clip)
    reference = library_embedding(model, processor, frames)
    assert ours.shape == reference.shape == (1, 32)
    assert relative(ours, reference) < 2e-2, relative(ours, reference)  # resize rounding only
    if hasattr(model, "classifier"):
        with torch.no_grad():
            logits = model.classifier(reference)
        assert backbone.classify(ours).shape == (1, 5)
        assert relative(backbone.classify(ours), logits) < 2e-2
        assert class_names(spec) == tuple(model.config.id2label[i] for i in range(5))
    else:
        with pytest.raises(UserError, match="without a classifier"):
            class_names(spec)


def test_missing_hub_files_offline_are_one_line_naming_repository_files_and_folder(hub_home):
    with pytest.raises(WeightsMissingError) as error:
        get_spec("hf/test-org/not-here")
    message = str(error.value)
    assert "\n" not in message and "test-org/not-here" in message
    assert "config.json" in message and "model.safetensors" in message
    assert str(repo_folder("test-org/not-here", hub_home / "hub") / "snapshots" / "main") in message

    spec = REGISTRY["videomae_b_k400"]
    with pytest.raises(WeightsMissingError, match="MCG-NJU/videomae-base-finetuned-kinetics"):
        require_weights([spec])
    with pytest.raises(UserError, match="hf/<org>/<repository>"):
        get_spec("hf/no-organisation")


def test_an_unresolvable_hub_name_is_said_with_every_other_missing_checkpoint(
    hub_home, demo_manifest, tmp_path
):
    """`extract run -b hf/...,swin_t` offline with neither here: one line naming both (before,
    only the hub name: the other missing checkpoint came out on the next try)."""
    from extract.config import ExtractConfig
    from extract.pipeline import run_extraction

    with pytest.raises(WeightsMissingError) as error:
        run_extraction(
            demo_manifest,
            "hf/test-org/not-here,swin_t",
            tmp_path / "out",
            ExtractConfig(),
            cache_dir=tmp_path / "cache",
            progress=False,
        )
    message = str(error.value)
    assert message.startswith("2 checkpoints are missing: ") and "\n" not in message
    assert "test-org/not-here" in message and "swin_t-704ceda3.pth" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.h5"))


def test_a_folder_named_in_a_missing_message_pastes_into_a_shell(hub_home, monkeypatch):
    """A cache under a folder with a space: the folder is quoted as a shell reads it."""
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_home / "my cache"))
    with pytest.raises(WeightsMissingError) as error:
        get_spec("hf/test-org/not-here")
    folder = repo_folder("test-org/not-here", hub_home / "my cache") / "snapshots" / "main"
    assert f"put the files in '{folder}/'" in str(error.value)


def test_missing_hub_files_without_network_are_one_line_at_once(hub_home, monkeypatch):
    """Hub not switched off, but no network: the one line says so at once (before, every
    request of huggingface_hub was retried for about 20 s, each retry a warning line)."""
    import time

    monkeypatch.delenv("HF_HUB_OFFLINE")
    for name in ("HF_ENDPOINT", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)  # (each would be another way to the hub)
    monkeypatch.setattr(hub, "HUB_HOST", "hub.invalid")  # a name that never resolves (RFC 6761)
    start = time.monotonic()
    with pytest.raises(WeightsMissingError, match=r"\[no network: hub.invalid does not resolve\]"):
        get_spec("hf/test-org/not-here")
    assert time.monotonic() - start < 5


def test_a_curated_entry_loads_a_local_snapshot_folder_and_refuses_another_model(
    hub_home, tmp_path: Path
):
    # The published TimeSformer-B K400 configuration, one layer deep: the spec's settings hold.
    config = transformers.TimesformerConfig(num_hidden_layers=1, num_labels=400)
    model = transformers.TimesformerForVideoClassification(config).eval()
    processor = transformers.TimesformerVideoProcessor(image_mean=[0.45] * 3, image_std=[0.225] * 3)
    folder = tmp_path / "timesformer-k400"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    name = "timesformer_b_k400"
    found = require_weights([REGISTRY[name]], {name: folder})[name]  # the folder's weights file
    assert found == folder / "model.safetensors"
    backbone = create_backbone(name, weights=folder)
    assert backbone.weights_info["name"] == "model.safetensors"

    tiny, tiny_processor = TINY_HF_VIDEO_MODELS["timesformer"]()
    other = tmp_path / "tiny"
    tiny.save_pretrained(other)
    tiny_processor.save_pretrained(other)
    with pytest.raises(UserError, match=f"does not match backbone {name}") as error:
        create_backbone(name, weights=other / "model.safetensors")
    assert "\n" not in str(error.value) and "num_frames 4 (spec 8)" in str(error.value)


@pytest.mark.parametrize("entry", CURATED, ids=[e["name"] for e in CURATED])
def test_curated_entries_match_the_library_defaults_they_declare(entry):
    spec = REGISTRY[entry["name"]]
    config_class = transformers.AutoConfig.for_model(entry["config"]["model_type"]).__class__
    config = {**config_class().to_dict(), **entry["config"]}
    settings = derive_settings(config, entry["processor"], entry["name"])
    assert settings["num_frames"] == spec.num_frames and settings["input_size"] == spec.input_size
    assert settings["feature_dim"] == spec.feature_dim == config["hidden_size"]
    assert spec.weights.hub.repo_id == entry["repo_id"]


@pytest.mark.slow  # VideoMAE builds its sinusoidal table in Python: seconds per build
@pytest.mark.parametrize("entry", CURATED, ids=[e["name"] for e in CURATED])
def test_curated_entries_build_from_their_config_alone(entry):
    spec = REGISTRY[entry["name"]]
    with torch.device("meta"):
        model = spec.build().eval()
    x = torch.empty(1, 3, spec.num_frames, spec.input_size, spec.input_size, device="meta")
    assert model(x).shape == (1, spec.feature_dim)


@pytest.mark.parametrize("library", ["transformers", "timm"])
def test_center_crops_start_where_each_library_starts_them(library):
    """Where the margin is odd, transformers' processors crop from margin // 2 and torchvision's
    crop (timm's and torchvision's presets) from round(margin / 2), half to even: a hub video
    model's frames are cut as its processor cuts them (before, one column off at 16:9, where
    ViViT's 455-wide frames leave 231)."""
    from transformers.image_transforms import center_crop as library_crop

    from extract.backbones.runtime import _center_crop

    for height, width in [(224, 455), (224, 519), (225, 224), (230, 231), (224, 224)]:
        image = torch.arange(3 * height * width).reshape(3, height, width)
        ours = _center_crop(image, 224, library)
        if library == "transformers":
            expected = library_crop(image.numpy(), (224, 224), input_data_format="channels_first")
            np.testing.assert_array_equal(ours.numpy(), expected)
        else:
            torch.testing.assert_close(ours, TF.center_crop(image, [224]))


def test_a_hub_checkpoint_lacking_weights_is_refused_not_filled_at_random(hub_home):
    """transformers fills weights a file lacks with random values and only warns (another
    network each run, under one recorded checksum); the lab refuses the file, naming it and the
    missing weights. A file cut short is named with what mends it."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    model, processor = TINY_HF_VIDEO_MODELS["videomae"]()
    snapshot = publish_hf(model, processor, "test-org/tiny-incomplete", hub_home)
    weights = (snapshot / "model.safetensors").resolve()  # the blob behind the link
    state = load_file(weights)
    dropped = sorted(k for k in state if k.startswith("fc_norm") or k.startswith("classifier"))
    assert dropped
    save_file({k: v for k, v in state.items() if k not in dropped}, weights, {"format": "pt"})
    with pytest.raises(WeightsMismatchError, match="lacks weights") as error:
        create_backbone("hf/test-org/tiny-incomplete")
    assert str(snapshot / "model.safetensors") in str(error.value)
    assert dropped[0] in str(error.value)

    weights.write_bytes(weights.read_bytes()[:200])  # an interrupted download
    with pytest.raises(WeightsMismatchError, match="truncated or damaged file"):
        create_backbone("hf/test-org/tiny-incomplete")


def test_a_hub_snapshot_without_its_processor_file_is_incomplete_unless_the_hub_says_so(hub_home):
    """Offline, a snapshot whose processor configuration was left out (a cache copied by hand,
    an interrupted download) cannot tell the model's mean, std and sizes: it is missing a file,
    named with the folder the lab looks in (the commit `refs/main` names), not read with the
    model class's defaults. Where huggingface_hub recorded that the repository has no such file
    (`.no_exist/<commit>/`), the class's defaults are the model's."""
    torch.manual_seed(0)
    model, processor = TINY_HF_VIDEO_MODELS["videomae"]()
    snapshot = publish_hf(model, processor, "test-org/tiny-noproc", hub_home)
    saved = ["preprocessor_config.json", "video_preprocessor_config.json"]
    for name in saved:
        (snapshot / name).unlink(missing_ok=True)
    with pytest.raises(WeightsMissingError, match="preprocessor_config.json") as error:
        get_spec("hf/test-org/tiny-noproc")
    assert f"put the files in {snapshot}/" in str(error.value)
    absent = repo_folder("test-org/tiny-noproc", hub_home / "hub") / ".no_exist" / snapshot.name
    absent.mkdir(parents=True)
    for name in saved:
        (absent / name).touch()
    spec = get_spec("hf/test-org/tiny-noproc")
    assert spec.mean == tuple(transformers.VideoMAEImageProcessor().image_mean)  # its default


def test_an_incomplete_sharded_checkpoint_is_missing_though_a_whole_bin_lies_beside_it(hub_home):
    """transformers loads model.safetensors.index.json before pytorch_model.bin: with a shard
    gone, the snapshot is incomplete (before, the lookup took the .bin and the load failed)."""
    torch.manual_seed(0)
    model, processor = TINY_HF_VIDEO_MODELS["videomae"]()

    def save(folder: Path) -> None:
        model.save_pretrained(folder, max_shard_size="20KB")
        processor.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")

    snapshot = hub_snapshot(hub_home, "test-org/tiny-sharded", save)
    shards = sorted(snapshot.glob("model-*.safetensors"))
    assert len(shards) > 1 and (snapshot / "model.safetensors.index.json").is_file()
    spec = get_spec("hf/test-org/tiny-sharded")
    assert require_weights([spec])[spec.name].name == "model.safetensors.index.json"
    shards[-1].unlink()
    with pytest.raises(WeightsMissingError, match="model.safetensors.index.json"):
        require_weights([spec])
