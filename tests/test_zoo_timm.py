"""Any timm model by name (`timm/<model>.<tag>`) and the curated timm entries: a checkpoint the
test writes as timm publishes it (`save_for_hf`: model.safetensors + config.json, written by
tests/checkpoints.py) into a private Hugging Face hub cache loads offline, through the code a user
runs, and embeds a real photo as timm's own preprocessing and forward_head(pre_logits=True) do."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import timm
import timm.data
import torch
from PIL import Image
from skimage.data import chelsea
from timm.models import save_for_hf

from extract.backbones import REGISTRY, create_backbone, expand_backbones, get_spec
from extract.backbones.cost import COSTS_FILE, measure
from extract.backbones.registry import class_names
from extract.backbones.timm_models import CURATED, TimmEmbedder
from extract.hub import repo_folder
from extract.weights import WeightsMismatchError, WeightsMissingError, require_weights
from tests.checkpoints import COMMIT, TIMM_TINY, publish_timm, tiny_timm_model
from vtl.errors import UserError


@pytest.fixture
def tiny_model() -> torch.nn.Module:
    return tiny_timm_model()


def frame() -> torch.Tensor:
    return torch.from_numpy(chelsea()).unsqueeze(0)  # uint8 [1, 300, 451, 3], a real photo


def timm_reference(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's own eval transform on the PIL photo, then forward_head(pre_logits=True)."""
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    x = transform(Image.fromarray(chelsea())).unsqueeze(0)
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        return pooled, model.get_classifier()(pooled)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_a_timm_model_by_name_loads_offline_from_the_hub_cache(hub_home, tiny_model):
    publish_timm(tiny_model, f"timm/{TIMM_TINY}", hub_home)
    # The checkpoint is where and as timm's own pretrained loading finds it offline.
    loaded = timm.create_model(TIMM_TINY, pretrained=True, cache_dir=hub_home / "hub")
    torch.testing.assert_close(loaded.state_dict(), tiny_model.state_dict(), rtol=0, atol=0)
    spec = get_spec(f"timm/{TIMM_TINY}")
    default = get_spec("timm/resnet10t")  # timm's default tag, under the name as written
    assert (default.name, default.pretrain) == ("timm/resnet10t", "c3_in1k")
    assert default.weights == spec.weights and spec.name == f"timm/{TIMM_TINY}"
    # The preprocessing is timm's pretrained configuration, as resolve_model_data_config says.
    data = timm.data.resolve_model_data_config(tiny_model)
    assert (spec.input_size, spec.interpolation) == (data["input_size"][1], data["interpolation"])
    assert spec.resize_size == math.floor(data["input_size"][1] / data["crop_pct"]) == 201
    assert (spec.mean, spec.std) == (tuple(data["mean"]), tuple(data["std"]))
    assert (spec.family, spec.pretrain, spec.feature_dim) == ("resnet10t", "c3_in1k", 512)

    found = require_weights([spec])[spec.name]  # offline: found in the cache, nothing fetched
    assert found.name == "model.safetensors" and COMMIT in str(found)
    backbone = create_backbone(spec)
    embedding = backbone.embed_frames(backbone.prepare(frame()))
    pooled, logits = timm_reference(tiny_model)
    assert embedding.shape == (1, 512)
    assert relative(embedding, pooled) < 1e-3  # only resize rounding differs (PIL vs torch)
    assert relative(backbone.classify(embedding), logits) < 1e-3
    names = class_names(spec)  # what --logits stores: ImageNet-1k in timm's order
    assert len(names) == 1000 and names[285] == "Egyptian cat"
    with pytest.raises(UserError, match="no head"):
        class_names("mae_vit_b16")  # self-supervised, published without a classifier
    with pytest.raises(UserError, match="512 outputs"):
        class_names("clip_vit_b16")  # CLIP's head is its image-text projection
    # On the same input tensor the two forwards agree exactly.
    prepared = backbone.prepare(frame())
    x = (prepared.float() / 255 - backbone._mean) / backbone._std
    with torch.no_grad():
        same = tiny_model.forward_head(tiny_model.forward_features(x), pre_logits=True)
    torch.testing.assert_close(backbone.embed_frames(prepared), same, rtol=1e-5, atol=1e-5)


def test_a_local_file_with_weights_name_path(hub_home, tiny_model, tmp_path: Path):
    path = tmp_path / "mine.pth"
    torch.save(tiny_model.state_dict(), path)
    name = f"timm/{TIMM_TINY}"
    assert require_weights([get_spec(name)], {name: path})[name] == path
    backbone = create_backbone(name, weights=path)
    assert backbone.weights_info["name"] == "mine.pth"
    pooled, _ = timm_reference(tiny_model)
    assert relative(backbone.embed_frames(backbone.prepare(frame())), pooled) < 1e-3
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(UserError, match="as timm model resnet10t.c3_in1k") as error:
        create_backbone(name, weights=wrong)
    assert "\n" not in str(error.value)
    assert 'Missing key(s) in state_dict: "conv1.0.weight"' in str(error.value)  # not cut to
    # "Error(s) in loading state_dict for ResNet:"


def test_missing_weights_offline_name_repository_file_and_folder(hub_home):
    spec = get_spec(f"timm/{TIMM_TINY}")
    with pytest.raises(WeightsMissingError) as error:
        require_weights([spec])
    message = str(error.value)
    folder = repo_folder(f"timm/{TIMM_TINY}", hub_home / "hub") / "snapshots" / "main"
    assert "\n" not in message
    assert f"timm/{TIMM_TINY}" in message and "model.safetensors" in message
    assert str(folder) in message and "HF_HUB_OFFLINE" in message
    # A file put in that folder by hand is found (no refs/main needed).
    folder.mkdir(parents=True)
    save_for_hf(tiny_timm_model(), str(folder), safe_serialization=True)
    assert require_weights([spec])[spec.name] == folder / "model.safetensors"


def test_unknown_names_list_close_matches():
    with pytest.raises(UserError, match="close matches: resnet10t"):
        get_spec("timm/resnet10x")
    with pytest.raises(UserError, match="pretrained tags: resnet10t.c3_in1k"):
        get_spec("timm/resnet10t.no_such_tag")
    with pytest.raises(UserError, match="vit_b16_in21k") as error:
        expand_backbones("vit_b16_in21")
    assert "\n" not in str(error.value)


def test_curated_entries_follow_timm_and_pair_into_families():
    for name, timm_name, *_ in CURATED:
        spec = REGISTRY[name]
        with torch.device("meta"):
            model = timm.create_model(timm_name, pretrained=False)
        data = timm.data.resolve_model_data_config(model)
        assert spec.input_size == data["input_size"][1], name
        assert spec.resize_size == math.floor(spec.input_size / data["crop_pct"]), name
        assert (spec.interpolation, spec.mean, spec.std) == (
            data["interpolation"],
            tuple(data["mean"]),
            tuple(data["std"]),
        ), name
        x = torch.empty(1, 3, spec.input_size, spec.input_size, device="meta")
        assert TimmEmbedder(model)(x).shape[-1] == spec.feature_dim, name
        assert spec.weights.hub.repo_id == f"timm/{timm_name}"
    assert [s.name for s in expand_backbones("vit21k")] == ["vit_b16_in21k", "timesformer_b_k400"]
    assert [s.name for s in expand_backbones("mae")] == ["mae_vit_b16", "videomae_b"]


def test_the_cost_table_holds_every_entry_as_a_recount_gives_it():
    # `extract backbones` reads counts from the table; an entry missing from it (or declared
    # with another input since) would be counted at every listing.
    table = json.loads(COSTS_FILE.read_text())["backbones"]
    stale = [
        spec.name
        for spec in REGISTRY.values()
        if table.get(spec.name, {}).get("input") != [spec.kind, spec.input_size, spec.num_frames]
    ]
    assert not stale, f"run `python -m extract.backbones --write-costs` (stale: {stale})"
    for name in ("efficientnet_lite0", "r2plus1d_18", "clip_vit_b16", "timesformer_b_k400"):
        row = table[name]
        assert measure(name) == (row["params"], row["flops"], row["activation_bytes"]), name


def test_help_and_listing_name_the_name_forms():
    from typer.testing import CliRunner

    from extract.cli import app

    runner = CliRunner()
    usage = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "400"}).output  # no wrapping
    assert "timm/<model>.<tag>" in usage and "hf/<org>/<repository>" in usage
    listing = runner.invoke(app, ["backbones"]).output
    assert "timm/<model>.<tag>" in listing and "hf/<org>/<repository>" in listing
    assert all(name in listing for name in REGISTRY)


def test_a_checkpoint_in_timms_old_cache_loads_offline(hub_home, monkeypatch, tmp_path):
    """timm before 0.9 downloaded a model's configuration URL into torch hub's `checkpoints/`
    (and reads it there under TIMM_USE_OLD_CACHE=1): with the hub cache empty, that file loads;
    with both, the hub's unless the variable asks for the old cache first, as timm decides. A
    file whose name carries a sha256 prefix its content does not have is not used, as timm
    does not use it; a value of the variable timm cannot read is one line."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("VTL_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("TIMM_USE_OLD_CACHE", raising=False)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    name = "timm/tinynet_e.in1k"  # its URL's file, tinynet_e.pth, carries no sha256 prefix
    spec = get_spec(name)
    old = checkpoints / "tinynet_e.pth"
    assert spec.weights.old_cache == old.name  # the URL's base name, as timm caches it
    torch.manual_seed(0)
    model = timm.create_model("tinynet_e", pretrained=False).eval()
    torch.save(model.state_dict(), old)
    assert require_weights([spec])[name] == old  # offline, the hub cache empty
    backbone = create_backbone(name)
    pooled, _ = timm_reference(model)
    assert relative(backbone.embed_frames(backbone.prepare(frame())), pooled) < 1e-3
    assert backbone.weights_info["name"] == old.name

    torch.manual_seed(1)
    other = timm.create_model("tinynet_e", pretrained=False).eval()
    snapshot = publish_timm(other, name, hub_home)
    assert require_weights([spec])[name] == snapshot / "model.safetensors"
    monkeypatch.setenv("TIMM_USE_OLD_CACHE", "1")
    assert require_weights([spec])[name] == old
    monkeypatch.setenv("TIMM_USE_OLD_CACHE", "true")
    with pytest.raises(UserError, match="TIMM_USE_OLD_CACHE='true'"):
        require_weights([spec])

    # resnet10t's file, resnet10t_176_c3-f3215ab1.pth, promises a sha256 these bytes lack
    monkeypatch.setenv("TIMM_USE_OLD_CACHE", "1")
    tiny = get_spec(f"timm/{TIMM_TINY}")
    torch.save(tiny_timm_model().state_dict(), checkpoints / tiny.weights.old_cache)
    with pytest.raises(WeightsMissingError):
        require_weights([tiny])


def test_a_timm_checkpoint_cut_short_is_one_line_naming_it_and_the_mend(hub_home, tiny_model):
    """A hub file cut short (an interrupted download or copy) fails as a bad input, naming the
    file and what mends it (before: safetensors' own error, an unexpected failure, exit 70)."""
    snapshot = publish_timm(tiny_model, f"timm/{TIMM_TINY}", hub_home)
    blob = (snapshot / "model.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])
    with pytest.raises(WeightsMismatchError, match="truncated or damaged file") as error:
        create_backbone(f"timm/{TIMM_TINY}")
    assert str(snapshot / "model.safetensors") in str(error.value)
