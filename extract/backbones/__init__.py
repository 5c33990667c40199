"""Frozen ImageNet image models and Kinetics video models, ready to embed, as timm organises its
models:

- `registry`: `BackboneSpec`, `REGISTRY`, `FAMILIES`, `register_backbone` and the lookups;
- declaration files, one per library (`efficientnet`, `torchvision`, `pytorchvideo`, ...;
  `timm_models`: any timm model as `timm/<model>.<tag>`; `hf_video`: `transformers` video
  models as `hf/<org>/<repository>`): each backbone is one `register_backbone(BackboneSpec(...))`
  next to its default configuration (input size, resize, mean/std, frames per clip, checkpoint);
- `runtime`: `create_backbone` and the `Backbone` that prepares frames and embeds clips;
- `cost`: parameters, FLOPs per clip and the rows of `extract backbones`;
- `listing`: those rows written down (`listing.json`), read without importing torch.

Adding backbones from another library is a new declaration file here and its name in
`DECLARATIONS`; each is imported once, in that order (the order `extract backbones` lists).

The package loads lazily: its names below (`REGISTRY`, `create_backbone`, ...) import the
declaration files, and with them torch and the model libraries, on first use (`load`), so that
`extract.backbones.listing` imports in milliseconds. Import those names from the package, as
everything here does, not from its modules: `extract.backbones.registry`'s lookups (`get_spec`,
`expand_backbones`) load the declarations too, but its `REGISTRY` dict, imported alone, holds
only the entries of the declaration files imported so far.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Each public name -> the module that defines it.
_EXPORTS = {
    **dict.fromkeys(
        ("CLIP_FRAMES", "count_params", "describe_backbones", "gflops_per_clip"),
        f"{__name__}.cost",
    ),
    **dict.fromkeys(
        (
            "FAMILIES",
            "REGISTRY",
            "BackboneSpec",
            "build_model",
            "expand_backbones",
            "get_spec",
            "register_backbone",
        ),
        f"{__name__}.registry",
    ),
    **dict.fromkeys(
        (
            "EXTREME_ASPECT",
            "Backbone",
            "EmbeddingError",
            "create_backbone",
            "sample_frame_indices",
        ),
        f"{__name__}.runtime",
    ),
    "WeightsMissingError": "extract.weights",
}


def load() -> None:
    """Import the modules behind the package's names and every declaration file, in
    DECLARATIONS order (once: later calls find them imported), so that REGISTRY and FAMILIES
    hold every entry."""
    from extract.weights import timm_old_cache_first

    timm_old_cache_first()  # a value timm cannot read is one line, not timm's ValueError
    for module in (*sorted(set(_EXPORTS.values())), *DECLARATIONS):
        importlib.import_module(module if "." in module else f"{__name__}.{module}")


def __getattr__(name: str) -> Any:
    # PEP 562: the first use of a public name loads the registry and binds the name here.
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    load()
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


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
    "load",
    "register_backbone",
    "sample_frame_indices",
]
