"""The reference work's 3D ShuffleNet: Efficient-3DCNNs' 3D ShuffleNet and 3D ShuffleNetV2
(`extract.archs.shufflenet3d`, Köpüklü et al. 2019), Kinetics-600 video models embedded per clip
of 16 frames at 112x112, with their authors' checkpoints.

The reference (DIViTA, Montalvo-Lezama et al. 2023) names its video model "ShuffleNet-3D"
(features `trailers_k_shufflenet_fps24_fpc24`) without the version or width in its code; its 2D
half is ShuffleNetV2 2.0x, so the `shufflenet` family pairs that with 3D ShuffleNetV2 2.0x, and
3D ShuffleNet (v1, 3 groups) 2.0x is registered beside it. Both are the widest published
Kinetics models of each version. The reference's table marks its 3D ShuffleNet Kinetics-400, but
the authors' public Kinetics checkpoints are Kinetics-600 (600-row classifiers, their
`annotation_Kinetics/kinetics-600_*.csv`): `pretrain` says k600. The checkpoints sit on Google
Drive (linked from the authors' README), which torch hub cannot download: the file must be
placed by hand, and the missing-weights message says which and where.
"""

from __future__ import annotations

import functools

from extract.archs.kinetics600 import KINETICS600_CLASSES
from extract.archs.shufflenet3d import (
    EFFICIENT3D_MEAN,
    EFFICIENT3D_STD,
    ShuffleNet3D,
    ShuffleNetV2_3D,
)
from extract.backbones.registry import BackboneSpec, register_backbone, replace_head
from extract.weights import WeightsSource

HOMEPAGE = "https://github.com/okankop/Efficient-3DCNNs"
FRAMES = 16  # the authors' sample_duration
SIZE = 112  # their sample_size: shorter side scaled to 112, center crop 112 (main.py, validation)
KINETICS600 = 600


def _kinetics600_names() -> tuple[str, ...]:
    return KINETICS600_CLASSES


def _weights(filename: str) -> WeightsSource:
    return WeightsSource(
        filename=filename,
        url=None,
        homepage=f"the Efficient-3DCNNs pretrained models (Google Drive, linked from {HOMEPAGE})",
    )


# What both share: the authors' input recipe, Kinetics-600 and its class names.
_EFFICIENT3D = {
    "family": "shufflenet",
    "kind": "video",
    "pretrain": "k600",
    "input_size": SIZE,
    "resize_size": SIZE,
    "mean": EFFICIENT3D_MEAN,
    "std": EFFICIENT3D_STD,
    "num_frames": FRAMES,
    "split_head": replace_head("classifier"),
    "class_names": _kinetics600_names,
    "library": "efficient3d",
}

for _name, _label, _file, _dim, _families, _build in (
    (
        "shufflenet3d_x2_0",
        "3D ShuffleNet 2.0x (3 groups)",
        "kinetics_shufflenet_2.0x_G3_RGB_16_best.pth",
        1920,
        (),
        functools.partial(ShuffleNet3D, groups=3, width_mult=2.0, num_classes=KINETICS600),
    ),
    (
        "shufflenetv2_3d_x2_0",
        "3D ShuffleNetV2 2.0x",
        "kinetics_shufflenetv2_2.0x_RGB_16_best.pth",
        2048,
        ("shufflenet",),
        functools.partial(
            ShuffleNetV2_3D, num_classes=KINETICS600, sample_size=SIZE, width_mult=2.0
        ),
    ),
):
    register_backbone(
        BackboneSpec(
            name=_name,
            families=_families,
            feature_dim=_dim,
            weights=_weights(_file),
            description=(
                f"{_label}, Efficient-3DCNNs Kinetics-600 ({FRAMES} frames, {SIZE} crop; "
                "checkpoint placed by hand)"
                + (
                    "; the 3D half of `shufflenet` (the reference does not say which 3D ShuffleNet)"
                    if _families
                    else ""
                )
            ),
            build=_build,
            **_EFFICIENT3D,
        )
    )
