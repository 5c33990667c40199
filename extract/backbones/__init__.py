"""Frozen ImageNet image models and Kinetics video models, ready to embed, as timm organises its
models:

- `registry`: `BackboneSpec`, `REGISTRY`, `FAMILIES`, `register_backbone` and the lookups;
- declaration files, one per library (`efficientnet`, `torchvision`, `pytorchvideo`, ...;
  `timm_models`: any timm model as `timm/<model>.<tag>`; `hf_video`: `transformers` video
  models as `hf/<org>/<repository>`): each backbone is one `register_backbone(BackboneSpec(...))`
  next to its default configuration (input size, resize, mean/std, frames per clip, checkpoint);
- `runtime`: `create_backbone` and the `Backbone` that prepares frames and embeds clips;
- `cost`: parameters, FLOPs per clip and the rows of `extract backbones`.

Adding backbones from another library is a new declaration file here and its name in
`DECLARATIONS`; each is imported once, in that order (the order `extract backbones` lists).
"""

from __future__ import annotations

import importlib

from extract.backbones.cost import (
    CLIP_FRAMES,
    count_params,
    describe_backbones,
    gflops_per_clip,
)
from extract.backbones.registry import (
    FAMILIES,
    REGISTRY,
    BackboneSpec,
    build_model,
    expand_backbones,
    get_spec,
    register_backbone,
)
from extract.backbones.runtime import (
    EXTREME_ASPECT,
    Backbone,
    EmbeddingError,
    create_backbone,
    sample_frame_indices,
)
from extract.weights import WeightsMissingError

DECLARATIONS = (
    "efficientnet",
    "torchvision",
    "pytorchvideo",
    "efficient3d",
    "timm_models",
    "hf_video",
)

for _module in DECLARATIONS:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "CLIP_FRAMES",
    "DECLARATIONS",
    "EXTREME_ASPECT",
    "FAMILIES",
    "REGISTRY",
    "Backbone",
    "BackboneSpec",
    "EmbeddingError",
    "WeightsMissingError",
    "build_model",
    "count_params",
    "create_backbone",
    "describe_backbones",
    "expand_backbones",
    "get_spec",
    "gflops_per_clip",
    "register_backbone",
    "sample_frame_indices",
]
