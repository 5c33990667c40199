"""The reference work's 3D ShuffleNets (Efficient-3DCNNs): the architecture against the official
definition's state_dict keys and shapes (tests/data/shufflenet3d_*.json, dumped from the
authors' code at the commit named in each file), checkpoints in the authors' own layout loading
strictly through `--weights` (written by tests/checkpoints.py), and the embedding against the
authors' preprocessing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from skimage.data import chelsea
from torch import nn

from extract.archs.kinetics600 import KINETICS600_CLASSES
from extract.archs.shufflenet3d import (
    ACTIVITYNET_MEAN,
    EFFICIENT3D_MEAN,
    ShuffleNet3D,
    ShuffleNetV2_3D,
    channel_shuffle,
)
from extract.backbones import FAMILIES, build_model, create_backbone, get_spec
from extract.backbones.registry import class_names
from extract.outputs import feature_path
from extract.weights import WeightsMissingError, load_state_dict
from tests.checkpoints import write_efficient3d_checkpoint

DATA = Path(__file__).parent / "data"

# registry name -> (key list of the official definition, our module with the same arguments)
OFFICIAL = {
    "shufflenet3d_x2_0": (
        "shufflenet3d_v1_x2_0.json",
        lambda: ShuffleNet3D(groups=3, width_mult=2.0, num_classes=600),
    ),
    "shufflenetv2_3d_x2_0": (
        "shufflenet3d_v2_x2_0.json",
        lambda: ShuffleNetV2_3D(num_classes=600, sample_size=112, width_mult=2.0),
    ),
}


def _official_keys(filename: str) -> dict[str, list[int]]:
    document = json.loads((DATA / filename).read_text())
    assert document["source"]["repository"] == "https://github.com/okankop/Efficient-3DCNNs"
    assert len(document["source"]["commit"]) == 40
    return document["keys"]


def _shapes(module: nn.Module) -> dict[str, list[int]]:
    return {key: list(value.shape) for key, value in module.state_dict().items()}


def _panning_frames(count: int) -> torch.Tensor:
    """A real photograph (skimage's chelsea, 300x451) panned a few pixels per frame: uint8
    [count, 300, 400, 3]."""
    image = torch.from_numpy(chelsea())
    return torch.stack([image[:, 2 * i : 2 * i + 400] for i in range(count)])


# --- the architecture against the official definition ---------------------------------------


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_state_dict_keys_and_shapes_equal_the_official_definition(name: str):
    filename, build = OFFICIAL[name]
    official = _official_keys(filename)
    assert list(_shapes(build())) == list(official)  # same keys, same order
    assert _shapes(build()) == official
    # The registry builds exactly that module.
    assert _shapes(build_model(name)) == official


def test_checkpoint_key_counts_are_those_of_the_published_models():
    # 3 stages of 4, 8, 4 units; v1 at width 2.0 widens its stem to 48, so even the first unit's
    # 1x1 conv is grouped (3 groups): 48 -> 120 channels, weight [120, 16, 1, 1, 1].
    v1 = _official_keys("shufflenet3d_v1_x2_0.json")
    assert v1["layer1.0.conv1.weight"] == [120, 16, 1, 1, 1]
    assert v1["classifier.1.weight"] == [600, 1920]
    v2 = _official_keys("shufflenet3d_v2_x2_0.json")
    assert v2["conv_last.0.weight"] == [2048, 976, 1, 1, 1]
    assert v2["classifier.1.weight"] == [600, 2048]


def test_channel_shuffle_interleaves_the_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]


# --- loading the authors' checkpoints and embedding -------------------------------------------


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_authors_checkpoint_loads_strictly_and_embeds_like_their_preprocessing(
    name: str, tmp_path: Path
):
    spec = get_spec(name)
    _, build = OFFICIAL[name]
    checkpoint = tmp_path / spec.weights.filename
    state = write_efficient3d_checkpoint(build(), checkpoint, seed=len(name))
    assert load_state_dict(spec.weights, checkpoint).keys() == state.keys()  # prefix removed

    backbone = create_backbone(name, weights=checkpoint)
    prepared = backbone.prepare(_panning_frames(24))  # shorter side 112, center crop 112
    assert prepared.shape == (24, 3, 112, 112)
    embedded = backbone.embed(prepared[None])
    assert embedded.shape == (1, spec.feature_dim)
    assert bool(torch.isfinite(embedded).all()) and float(embedded.abs().max()) > 0

    # The authors' forward on the authors' input: 16 of the 24 frames (evenly spaced), pixels
    # in [0, 255] minus the ActivityNet mean, no division (main.py's defaults).
    reference = build().eval()
    reference.load_state_dict(state, strict=True)
    used = backbone.clip_frames(24)
    assert len(used) == 16
    mean = torch.tensor(ACTIVITYNET_MEAN).view(1, 3, 1, 1)
    x = (prepared[used].float() - mean).permute(1, 0, 2, 3)[None]  # [1, 3, 16, 112, 112]
    seen = []  # what the classifier reads: the pooled features
    reference.classifier.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    with torch.no_grad():
        logits = reference(x)
    (pooled,) = seen
    torch.testing.assert_close(embedded, pooled, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(backbone.classify(embedded), logits, atol=1e-3, rtol=1e-4)


def test_without_weights_the_message_names_the_file_and_where_to_get_it(tmp_path: Path):
    spec = get_spec("shufflenet3d_x2_0")
    with pytest.raises(WeightsMissingError) as caught:
        create_backbone(spec, cache_dir=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "kinetics_shufflenet_2.0x_G3_RGB_16_best.pth" in message
    assert "github.com/okankop/Efficient-3DCNNs" in message
    assert str(tmp_path / spec.weights.filename) in message
    assert "--weights" in message and "pip" not in message


# --- registry --------------------------------------------------------------------------------


def test_registry_entries_follow_the_authors_recipe():
    for name in OFFICIAL:
        spec = get_spec(name)
        assert spec.kind == "video" and spec.pretrain == "k600"
        assert (spec.num_frames, spec.input_size, spec.resize_size) == (16, 112, 112)
        # Our normalization (x / 255 - mean) / std is theirs, x - mean_255, on [0, 1] inputs.
        assert spec.mean == EFFICIENT3D_MEAN
        for m, s, m255 in zip(spec.mean, spec.std, ACTIVITYNET_MEAN, strict=True):
            assert m / s == pytest.approx(m255) and 1 / s == pytest.approx(255)
        assert class_names(spec) == KINETICS600_CLASSES
    assert get_spec("shufflenet3d_x2_0").feature_dim == 1920
    assert get_spec("shufflenetv2_3d_x2_0").feature_dim == 2048


def test_kinetics600_names_are_the_checkpoints_classifier_rows():
    assert len(KINETICS600_CLASSES) == len(set(KINETICS600_CLASSES)) == 600
    assert list(KINETICS600_CLASSES) == sorted(KINETICS600_CLASSES)  # the authors' label order
    assert KINETICS600_CLASSES[0] == "abseiling" and KINETICS600_CLASSES[-1] == "zumba"


def test_shufflenet_family_pairs_the_2d_and_the_3d_shufflenet(tmp_path: Path):
    assert FAMILIES["shufflenet"] == ("shufflenet_v2_x2_0", "shufflenetv2_3d_x2_0")
    assert "x3d_xs" in FAMILIES["x3d"]
    video = get_spec("shufflenetv2_3d_x2_0")
    assert feature_path(tmp_path, video, "shufflenet") == tmp_path / "shufflenet" / "k600.h5"
