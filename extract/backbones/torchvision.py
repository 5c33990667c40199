"""torchvision's backbones: ImageNet-1k image models (embedded per frame) and Kinetics-400
video models (embedded per clip), each with the input recipe of its torchvision weights."""

from __future__ import annotations

import functools
from typing import Any

import torch
import torchvision.models as tvm
import torchvision.models.video as tvv
from torch import nn

from extract.backbones.registry import BackboneSpec, register_backbone, replace_head
from extract.weights import torchvision_source


def _torchvision_preset(weights_enum: Any) -> dict[str, Any]:
    """Input size, resize, mean/std and checkpoint of a torchvision weights enum member, read
    from the enum's own transforms so that they cannot drift from torchvision's recipe."""
    preset = weights_enum.transforms()
    # Video recipes resize to a fixed (H, W) such as (128, 171); we keep the aspect ratio and
    # resize the shorter side to H.
    return {
        "input_size": int(preset.crop_size[0]),
        "resize_size": int(min(preset.resize_size)),
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


# --- image backbones, ImageNet-1k (embedded per frame) ------------------------------------------

register_backbone(
    BackboneSpec(
        name="resnet18",
        family="resnet",
        families=("resnet",),
        kind="image",
        pretrain="in1k",
        feature_dim=512,
        num_frames=1,
        description="ResNet-18, torchvision IMAGENET1K_V1; the 2D half of the `resnet` family",
        build=functools.partial(tvm.resnet18, weights=None),
        split_head=replace_head("fc"),
        **_torchvision_preset(tvm.ResNet18_Weights.IMAGENET1K_V1),
    )
)

register_backbone(
    BackboneSpec(
        name="resnet50",
        family="resnet",
        kind="image",
        pretrain="in1k",
        feature_dim=2048,
        num_frames=1,
        description="ResNet-50, torchvision IMAGENET1K_V2 (its default); not in a family pair",
        build=functools.partial(tvm.resnet50, weights=None),
        split_head=replace_head("fc"),
        **_torchvision_preset(tvm.ResNet50_Weights.IMAGENET1K_V2),
    )
)

register_backbone(
    BackboneSpec(
        name="shufflenet_v2_x2_0",
        family="shufflenet",
        families=("shufflenet",),
        kind="image",
        pretrain="in1k",
        feature_dim=2048,
        num_frames=1,
        description="ShuffleNetV2 2.0x, torchvision IMAGENET1K_V1; 2D half of `shufflenet`",
        build=functools.partial(tvm.shufflenet_v2_x2_0, weights=None),
        split_head=replace_head("fc"),
        **_torchvision_preset(tvm.ShuffleNet_V2_X2_0_Weights.IMAGENET1K_V1),
    )
)

register_backbone(
    BackboneSpec(
        name="swin_t",
        family="swin",
        families=("swin",),
        kind="image",
        pretrain="in1k",
        feature_dim=768,
        num_frames=1,
        description="Swin-T, torchvision IMAGENET1K_V1; the 2D half of the `swin` family",
        build=functools.partial(tvm.swin_t, weights=None),
        split_head=replace_head("head"),
        **_torchvision_preset(tvm.Swin_T_Weights.IMAGENET1K_V1),
    )
)

# --- video backbones, Kinetics-400 (embedded per clip) ------------------------------------------

register_backbone(
    BackboneSpec(
        name="r2plus1d_18",
        family="resnet",
        families=("resnet",),
        kind="video",
        pretrain="k400",
        feature_dim=512,
        num_frames=24,  # fully convolutional with adaptive pooling: takes the clip as it is
        description="R(2+1)D-18, torchvision KINETICS400_V1 (112 crop); 3D half of `resnet`",
        build=functools.partial(tvv.r2plus1d_18, weights=None),
        split_head=replace_head("fc"),
        **_torchvision_preset(tvv.R2Plus1D_18_Weights.KINETICS400_V1),
    )
)

register_backbone(
    BackboneSpec(
        name="swin3d_t",
        family="swin",
        families=("swin",),
        kind="video",
        pretrain="k400",
        feature_dim=768,
        num_frames=24,  # shifted windows pad time: takes the clip as it is
        description="Video Swin-T, torchvision KINETICS400_V1; the 3D half of the `swin` family",
        build=functools.partial(tvv.swin3d_t, weights=None),
        split_head=replace_head("head"),
        **_torchvision_preset(tvv.Swin3D_T_Weights.KINETICS400_V1),
    )
)

register_backbone(
    BackboneSpec(
        name="mvit_v2_s",
        family="mvit",
        families=("mvit",),
        kind="video",
        pretrain="k400",
        feature_dim=768,
        num_frames=16,  # positional layout is fixed at 16 x 224 x 224
        description="MViTv2-S, torchvision KINETICS400_V1; class-token embedding, 16 frames",
        build=functools.partial(tvv.mvit_v2_s, weights=None),
        split_head=replace_head("head"),
        **_torchvision_preset(tvv.MViT_V2_S_Weights.KINETICS400_V1),
    )
)

register_backbone(
    BackboneSpec(
        name="s3d",
        family="s3d",
        kind="video",
        pretrain="k400",
        feature_dim=1024,
        num_frames=24,  # needs at least 14 frames; takes the clip as it is
        description="S3D, torchvision KINETICS400_V1",
        build=functools.partial(tvv.s3d, weights=None),
        split_head=_split_s3d_head,
        **_torchvision_preset(tvv.S3D_Weights.KINETICS400_V1),
    )
)
