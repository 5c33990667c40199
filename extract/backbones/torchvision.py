"""torchvision's backbones: ImageNet-1k image models (embedded per frame) and Kinetics-400
video models (embedded per clip), each with the input recipe of its torchvision weights."""

from __future__ import annotations

import functools
from typing import Any

import torch
import torchvision.models as tvm
import torchvision.models.video as tvv
from torch import nn
from torchvision.transforms._presets import VideoClassification

from extract.backbones.registry import BackboneSpec, register_backbone, replace_head
from extract.weights import torchvision_source


def _torchvision_preset(weights_enum: Any) -> dict[str, Any]:
    """Input size, resize, mean/std and checkpoint of a torchvision weights enum member, read
    from the enum's own transforms so that they cannot drift from torchvision's recipe."""
    preset = weights_enum.transforms()
    # A (H, W) resize is to that size whatever the frame's aspect (r2plus1d_18's (128, 171),
    # s3d's (256, 256): Kinetics was trained squashed so); one number is the shorter side. The
    # video presets resize without antialiasing (VideoClassification), the image ones with.
    resize = [int(v) for v in preset.resize_size]
    video = isinstance(preset, VideoClassification)
    return {
        "input_size": int(preset.crop_size[0]),
        "resize_size": resize[0],
        "resize_width": resize[1] if len(resize) == 2 else None,
        "antialias": bool(getattr(preset, "antialias", True)) and not video,
        "interpolation": preset.interpolation.value,
        "mean": tuple(preset.mean),
        "std": tuple(preset.std),
        "weights": torchvision_source(weights_enum),
        "library": "torchvision",
    }


class _PointwiseConvHead(nn.Module):
    """s3d's classifier is a 1x1x1 Conv3d; apply it to a pooled [B, D] embedding."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x[:, :, None, None, None]).flatten(1)


def _split_s3d_head(model: nn.Module) -> nn.Module:
    # s3d: features -> AvgPool3d(2, 7, 7) -> classifier -> mean over (T, H, W). Without the
    # classifier the mean pools the 1024-d features; by linearity the logits are unchanged.
    head = _PointwiseConvHead(model.classifier)
    model.classifier = nn.Identity()
    return head


def _torchvision_spec(checkpoint: Any, **fields: Any) -> BackboneSpec:
    """The spec of torchvision's model `fields["name"]` (its builder of that name) with the
    checkpoint and input recipe of `checkpoint`, a torchvision weights enum member."""
    build = functools.partial(tvm.get_model_builder(fields["name"]), weights=None)
    return BackboneSpec(build=build, **fields, **_torchvision_preset(checkpoint))


# --- declarations: one row of `_torchvision_spec` arguments per backbone, in the order of COLUMNS
COLUMNS = (
    "name",
    "family",
    "families",  # the 2D/3D family pairs it is a half of
    "feature_dim",
    "num_frames",
    "split_head",
    "checkpoint",
    "description",
)

IMAGE_BACKBONES = (  # ImageNet-1k, embedded per frame
    (
        "resnet18",
        "resnet",
        ("resnet",),
        512,
        1,
        replace_head("fc"),
        tvm.ResNet18_Weights.IMAGENET1K_V1,
        "ResNet-18, torchvision IMAGENET1K_V1; the 2D half of the `resnet` family",
    ),
    (
        "resnet50",
        "resnet",
        (),
        2048,
        1,
        replace_head("fc"),
        tvm.ResNet50_Weights.IMAGENET1K_V2,
        "ResNet-50, torchvision IMAGENET1K_V2 (its default); not in a family pair",
    ),
    (
        "shufflenet_v2_x2_0",
        "shufflenet",
        ("shufflenet",),
        2048,
        1,
        replace_head("fc"),
        tvm.ShuffleNet_V2_X2_0_Weights.IMAGENET1K_V1,
        "ShuffleNetV2 2.0x, torchvision IMAGENET1K_V1; 2D half of `shufflenet`",
    ),
    (
        "swin_t",
        "swin",
        ("swin",),
        768,
        1,
        replace_head("head"),
        tvm.Swin_T_Weights.IMAGENET1K_V1,
        "Swin-T, torchvision IMAGENET1K_V1; the 2D half of the `swin` family",
    ),
)

VIDEO_BACKBONES = (  # Kinetics-400, embedded per clip
    (
        "r2plus1d_18",
        "resnet",
        ("resnet",),
        512,
        24,  # fully convolutional with adaptive pooling: takes the clip as it is
        replace_head("fc"),
        tvv.R2Plus1D_18_Weights.KINETICS400_V1,
        "R(2+1)D-18, torchvision KINETICS400_V1 (112 crop); 3D half of `resnet`",
    ),
    (
        "swin3d_t",
        "swin",
        ("swin",),
        768,
        24,  # shifted windows pad time: takes the clip as it is
        replace_head("head"),
        tvv.Swin3D_T_Weights.KINETICS400_V1,
        "Video Swin-T, torchvision KINETICS400_V1; the 3D half of the `swin` family",
    ),
    (
        "mvit_v2_s",
        "mvit",
        ("mvit",),
        768,
        16,  # positional layout is fixed at 16 x 224 x 224
        replace_head("head"),
        tvv.MViT_V2_S_Weights.KINETICS400_V1,
        "MViTv2-S, torchvision KINETICS400_V1; class-token embedding, 16 frames",
    ),
    (
        "s3d",
        "s3d",
        (),
        1024,
        24,  # needs at least 14 frames; takes the clip as it is
        _split_s3d_head,
        tvv.S3D_Weights.KINETICS400_V1,
        "S3D, torchvision KINETICS400_V1",
    ),
)

for _kind, _pretrain, _rows in (
    ("image", "in1k", IMAGE_BACKBONES),
    ("video", "k400", VIDEO_BACKBONES),
):
    for _row in _rows:
        _fields = dict(zip(COLUMNS, _row, strict=True))
        register_backbone(_torchvision_spec(**_fields, kind=_kind, pretrain=_pretrain))
