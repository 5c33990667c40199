"""The backbone registry: what each backbone is (`BackboneSpec`) and the names it answers to.

Declaration files in this package (`efficientnet`, `torchvision`, `pytorchvideo`, ...,
`timm_models`, `hf_video`) each call `register_backbone(BackboneSpec(...))` next to the
backbone's default configuration, as timm declares its models; a declaration file may also
`register_resolver` a name prefix, so that any name of that form (`timm/<model>.<tag>`,
`hf/<org>/<repository>`) makes its spec on request. This module holds only the registry, its
lookups and the helpers declarations share.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from extract.weights import WeightsSource
from vtl.errors import UserError
from vtl.registry import register

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")  # torchvision InterpolationMode values

Builder = Callable[[], nn.Module]
HeadSplitter = Callable[[nn.Module], nn.Module]


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to build one backbone, prepare its input and take its embedding."""

    name: str
    family: str  # architecture family, written to feature files (`swin`, `resnet`, ...)
    kind: str  # "image" (per frame, averaged per clip) | "video" (per clip)
    pretrain: str  # "in1k" | "k400" ...
    feature_dim: int  # width of the pooled pre-classifier embedding
    input_size: int  # square crop side
    resize_size: int  # shorter side resized to this before the center crop (with resize_width:
    # the height)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_frames: int  # video: frames per clip the model takes (clips are resampled evenly); image: 1
    weights: WeightsSource
    description: str
    build: Builder  # the architecture with random init; never downloads
    # Replaces the classifier inside the model by an identity, so that model(x) returns the
    # pooled embedding; returns a module mapping that embedding to class logits (for checks).
    split_head: HeadSplitter
    families: tuple[str, ...] = ()  # family names that expand to this entry (see FAMILIES)
    library: str = ""
    interpolation: str = "bilinear"  # of the shorter-side resize (timm models: their own)
    # Resize to exactly (resize_size, resize_width), the aspect ratio not kept, as torchvision's
    # video presets do ((128, 171): Kinetics was trained squashed so); None: the shorter side.
    resize_width: int | None = None
    antialias: bool = True  # of the resize (torchvision's video presets: without)
    # The model with its checkpoint loaded from the located file, for libraries that load
    # through their own code (timm, transformers); None: `build`, then a strict state_dict load.
    load: Callable[[Path], nn.Module] | None = None
    # The classifier's class names in logit order (`--logits`); None: the names of the
    # pretraining set's classes in its standard order (`class_names`).
    class_names: Callable[[], Sequence[str]] | None = None
    # The revision of how this code turns frames into this backbone's embeddings (its
    # preparation, network and pooling): raise it with any change that alters its arrays, so
    # that finished files of the earlier revision are never reused (`extract.outputs.recipe`).
    revision: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("image", "video"):
            raise ValueError(f"{self.name}: kind must be 'image' or 'video', not {self.kind!r}")
        if self.kind == "image" and self.num_frames != 1:
            raise ValueError(f"{self.name}: image backbones take num_frames=1")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"{self.name}: interpolation must be one of {INTERPOLATIONS}")


REGISTRY: dict[str, BackboneSpec] = {}
FAMILIES: dict[str, tuple[str, ...]] = {}
# Name prefix -> the function making the spec of any name with that prefix (`timm/<model>.<tag>`,
# `hf/<org>/<repo>`): such backbones are made on request, not listed in REGISTRY.
RESOLVERS: dict[str, Callable[[str], BackboneSpec]] = {}
_RESOLVED: dict[str, BackboneSpec] = {}
NAME_FORMS = "timm/<model>.<tag> (any timm model), hf/<org>/<repository> (hub video models)"


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add `spec` to REGISTRY and to the FAMILIES it declares; returns it."""
    if spec.name in FAMILIES:
        raise ValueError(f"backbone name {spec.name!r} is already registered")
    register(REGISTRY, spec.name, spec, "backbone name")
    for family in spec.families:
        if family in REGISTRY:
            raise ValueError(f"family name {family!r} clashes with a backbone name")
        FAMILIES[family] = (*FAMILIES.get(family, ()), spec.name)
    return spec


def register_resolver(prefix: str, resolve: Callable[[str], BackboneSpec]) -> None:
    """Let `get_spec` make the spec of any name starting with `prefix` with `resolve(name)`."""
    register(RESOLVERS, prefix, resolve, "name prefix")


def replace_head(attribute: str) -> HeadSplitter:
    """Split off the classifier stored at `model.<attribute>` (the usual torchvision/timm case)."""

    def split(model: nn.Module) -> nn.Module:
        head = getattr(model, attribute)
        setattr(model, attribute, nn.Identity())
        return head

    return split


def _declared() -> None:
    # The declaration files register their entries when imported, and the package imports
    # them on first use of its names; a caller that came straight to this module gets them too.
    from extract import backbones

    backbones.load()


def _valid_names() -> str:
    return f"backbones: {', '.join(REGISTRY)}; families: {', '.join(FAMILIES)}; {NAME_FORMS}"


def get_spec(name: BackboneSpec | str) -> BackboneSpec:
    """The registry entry called `name`, or the spec a resolver makes for a prefixed name
    (`timm/...`, `hf/...`; made once per process); a one-line UserError naming the close
    matches and every valid name otherwise."""
    if isinstance(name, BackboneSpec):
        return name
    _declared()
    name = name.strip()
    if name in REGISTRY:
        return REGISTRY[name]
    if name in _RESOLVED:
        return _RESOLVED[name]
    for prefix, resolve in RESOLVERS.items():
        if name.startswith(prefix):
            _RESOLVED[name] = resolve(name)
            return _RESOLVED[name]
    close = difflib.get_close_matches(name, [*REGISTRY, *FAMILIES], n=5, cutoff=0.6)
    hint = f"close matches: {', '.join(close)}; " if close else ""
    raise UserError(f"unknown backbone {name!r}; {hint}{_valid_names()}")


def expand_backbones(names: str | Sequence[str]) -> list[BackboneSpec]:
    """Specs for comma-separated or listed backbone and family names, families expanded,
    duplicates dropped, first-mention order kept (`"swin"`, `"efficientnet_lite0,r2plus1d_18"`,
    `["x3d"]`)."""
    _declared()
    if isinstance(names, str):
        names = [names]
    tokens = [token.strip() for item in names for token in item.split(",") if token.strip()]
    if not tokens:
        raise UserError(f"no backbone given; {_valid_names()}")
    specs: list[BackboneSpec] = []
    for token in tokens:
        members = FAMILIES.get(token, (token,)) if token not in REGISTRY else (token,)
        for member in members:
            spec = get_spec(member)
            if spec not in specs:
                specs.append(spec)
    return specs


# --- building (random init: parameter and FLOP counts, checkpoints loaded by `runtime`) ---


def build_model(spec: BackboneSpec | str, device: str | torch.device = "cpu") -> nn.Module:
    """The architecture with random init and its classifier still attached, in eval mode.
    `device="meta"` builds without allocating memory (for shapes, parameter and FLOP counts)."""
    spec = get_spec(spec)
    with torch.device(device):
        return spec.build().eval()


# --- class names of the source classifiers (`extract run --logits`) ---


def _imagenet1k_names() -> tuple[str, ...]:
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _kinetics400_names() -> tuple[str, ...]:
    from torchvision.models.video import R2Plus1D_18_Weights

    return tuple(R2Plus1D_18_Weights.KINETICS400_V1.meta["categories"])


# The checkpoints declared here number these sets' classes in the standard order (ImageNet-1k
# by WordNet id, Kinetics-400 alphabetically), the order of torchvision's lists.
PRETRAIN_CLASS_NAMES: dict[str, Callable[[], Sequence[str]]] = {
    "in1k": _imagenet1k_names,
    "k400": _kinetics400_names,
}


def class_names(spec: BackboneSpec | str) -> tuple[str, ...]:
    """The names of the classes `Backbone.classify` scores, in logit order: the spec's own
    `class_names`, else its pretraining set's (`PRETRAIN_CLASS_NAMES`).

    Raises:
        UserError: no names are known for this backbone's classifier (`--logits` needs them).
    """
    spec = get_spec(spec)
    source = spec.class_names or PRETRAIN_CLASS_NAMES.get(spec.pretrain)
    if source is None:
        raise UserError(
            f"{spec.name}: no class names known for its classifier (pretrain "
            f"{spec.pretrain!r}); extract it without --logits"
        )
    return tuple(source())
