"""pytorchvideo's X3D backbones, Kinetics-400 video models embedded per clip."""

from __future__ import annotations

import functools
import warnings

from torch import nn

from extract.backbones.registry import BackboneSpec, Builder, register_backbone
from extract.weights import url_source

with warnings.catch_warnings():  # fvcore, imported by pytorchvideo, warns about torch.jit.script
    warnings.simplefilter("ignore", FutureWarning)
    from pytorchvideo.models import hub as pytorchvideo_hub

KINETICS_MEAN = (0.45, 0.45, 0.45)  # pytorchvideo / SlowFast models
KINETICS_STD = (0.225, 0.225, 0.225)


def _split_x3d_head(model: nn.Module) -> nn.Module:
    # pytorchvideo's X3D head: projected pool (conv 192->432, avg pool, conv 432->2048, ReLU),
    # dropout, Linear 2048->400, softmax, global average. Dropping the Linear and the softmax
    # leaves the global average of the 2048-d pooled features, which the Linear would map.
    head = model.blocks[-1]
    proj = head.proj
    head.proj, head.activation = nn.Identity(), None
    return proj


def _pytorchvideo(builder_name: str) -> Builder:
    return functools.partial(getattr(pytorchvideo_hub, builder_name), pretrained=False)


# What every X3D shares.
_X3D = {
    "family": "x3d",
    "families": ("x3d",),
    "kind": "video",
    "pretrain": "k400",
    "feature_dim": 2048,
    "mean": KINETICS_MEAN,
    "std": KINETICS_STD,
    "split_head": _split_x3d_head,
    "library": "pytorchvideo",
}

# X3D: frame counts and crop sizes as pytorchvideo's hub builders fix them (input_clip_length,
# input_crop_size); the head's average pool is sized for exactly that input.
for _name, _frames, _crop, _resize in (
    ("x3d_xs", 4, 160, 182),
    ("x3d_s", 13, 160, 182),
    ("x3d_m", 16, 224, 256),
):
    register_backbone(
        BackboneSpec(
            name=_name,
            input_size=_crop,
            resize_size=_resize,
            num_frames=_frames,
            weights=url_source(pytorchvideo_hub.x3d.checkpoint_paths[_name]),
            description=(
                f"{_name.upper().replace('_', '-')}, pytorchvideo Kinetics-400 ({_frames} frames, "
                f"{_crop} crop)"
            ),
            build=_pytorchvideo(_name),
            **_X3D,
        )
    )
