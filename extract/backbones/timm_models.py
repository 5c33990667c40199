"""Any timm image model by name (`timm/<model>.<tag>`), and the curated timm entries.

`timm/vit_base_patch16_clip_224.openai` is timm's own name for a model and its pretrained tag
(`timm.list_pretrained()` lists them; without a tag, timm's default tag for that model). Every
setting comes from timm's pretrained configuration of that name, so none can drift:

- preprocessing from `timm.data.resolve_data_config` (what `resolve_model_data_config(model)`
  reads): the shorter side resized to `floor(size / crop_pct)` with the configured
  interpolation, a `size` center crop, the configured mean/std;
- the embedding is the pooled pre-logits, `model.forward_head(model.forward_features(x),
  pre_logits=True)`; the classifier (`model.get_classifier()`) maps it to the logits;
- weights through timm's own loading (`pretrained=True`, which applies the model's checkpoint
  filter) from the file found in the Hugging Face hub cache (`extract.hub`: offline first), else
  timm's old cache (the configuration URL's file in torch hub's `checkpoints/`, where timm
  before 0.9 downloaded it; read first under `TIMM_USE_OLD_CACHE=1`, as timm does), or the file
  given with `--weights timm/<name>=PATH`.
"""

from __future__ import annotations

import difflib
import functools
import math
from pathlib import Path
from typing import Any

import timm
import timm.data
import torch
from safetensors import SafetensorError
from timm.models import get_pretrained_cfg, split_model_name_tag
from torch import nn

from extract.backbones.registry import (
    PRETRAIN_CLASS_NAMES,
    BackboneSpec,
    register_backbone,
    register_resolver,
)
from extract.hub import HubCheckpoint
from extract.weights import WeightsMismatchError, WeightsSource, checkpoint_problem, url_source
from vtl.errors import UserError

PREFIX = "timm/"


class TimmEmbedder(nn.Module):
    """A timm model whose forward returns its pooled pre-logits embedding [B, D]; the classifier
    stays inside the model (unused by forward), so parameter counts include it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def _classifier(embedder: nn.Module) -> nn.Module:
    # The module forward_head applies after the pre-logits (an Identity for models published
    # without a head, such as DINOv2 or MAE).
    return embedder.model.get_classifier()


def _close(word: str, candidates: list[str]) -> str:
    matches = difflib.get_close_matches(word, candidates, n=5, cutoff=0.6)
    return f"; close matches: {', '.join(matches)}" if matches else ""


def resolve_timm_name(name: str) -> tuple[str, dict[str, Any]]:
    """timm's full `model.tag` name and pretrained configuration for `name` (with or without
    the `timm/` prefix or a tag); a one-line UserError for a model or tag timm does not have."""
    bare = name.removeprefix(PREFIX).strip()
    arch, tag = split_model_name_tag(bare)
    if not timm.is_model(arch):
        hint = _close(arch, timm.list_models())
        raise UserError(f"unknown timm model {arch!r} in backbone {name!r}{hint}")
    try:
        cfg = get_pretrained_cfg(bare)
    except RuntimeError:  # timm: "Invalid pretrained tag"
        cfg = None
    if cfg is None or (tag and cfg.tag != tag):
        tags = timm.list_pretrained(f"{arch}.*")
        found = (
            f"its pretrained tags: {', '.join(tags)}" if tags else "it has no pretrained weights"
        )
        raise UserError(f"timm model {arch!r} has no pretrained tag {tag!r}: {found}")
    return f"{arch}.{cfg.tag}", cfg.to_dict()


def timm_preprocessing(cfg: dict[str, Any]) -> dict[str, Any]:
    """Input size, resize, interpolation and mean/std of a timm pretrained configuration, as
    `timm.data.create_transform` applies them for evaluation (center-crop mode)."""
    data = timm.data.resolve_data_config(pretrained_cfg=cfg)
    _, height, width = data["input_size"]
    if height != width or data.get("crop_mode", "center") != "center":
        raise UserError(
            f"timm model {cfg.get('architecture')}.{cfg.get('tag')} takes {height}x{width} input "
            f"with crop_mode {data.get('crop_mode')!r}: the lab prepares square center crops only"
        )
    return {
        "input_size": height,
        "resize_size": math.floor(height / data["crop_pct"]),  # as timm's eval transform
        "interpolation": data["interpolation"],
        "mean": tuple(float(v) for v in data["mean"]),
        "std": tuple(float(v) for v in data["std"]),
    }


def _safe_alternatives(filename: str) -> tuple[str, ...]:
    # The files timm's load_state_dict_from_hf tries, in its order: a safetensors twin first.
    if filename == "pytorch_model.bin":
        return ("model.safetensors", filename)
    if filename == "open_clip_pytorch_model.bin":
        return ("open_clip_model.safetensors", filename)
    if filename.endswith(".bin"):
        return (filename[: -len(".bin")] + ".safetensors", filename)
    return (filename,)


def timm_weights(cfg: dict[str, Any]) -> WeightsSource:
    """Where timm loads this pretrained configuration's weights from: its hub repository (the
    files timm tries there; where the configuration also has a URL, the file timm before 0.9
    downloaded from it into the torch hub cache, timm's old cache), else its URL (torch hub
    cache)."""
    if cfg.get("hf_hub_id"):
        files = _safe_alternatives(cfg.get("hf_hub_filename") or "pytorch_model.bin")
        checkpoint = HubCheckpoint(cfg["hf_hub_id"], files=(files,))
        old = url_source(cfg["url"]).filename if cfg.get("url") else None  # timm < 0.9's cache
        return WeightsSource(filename=files[0], url=None, hub=checkpoint, old_cache=old)
    if cfg.get("url"):
        return url_source(cfg["url"])
    raise UserError(
        f"timm model {cfg.get('architecture')}.{cfg.get('tag')} names no hub repository or URL "
        "for its weights: pass the checkpoint with --weights NAME=PATH"
    )


def _build(full_name: str) -> nn.Module:
    return TimmEmbedder(timm.create_model(full_name, pretrained=False))


def _load(full_name: str, path: Path) -> nn.Module:
    # timm's own pretrained loading from a local file: the model's checkpoint filter (e.g. the
    # OpenAI CLIP layout) and strict key matching apply as for a download. Hub files are state
    # dicts; only an original .npz goes through the model's custom loader, as its URL would.
    overlay = {"file": str(path), "custom_load": Path(path).suffix == ".npz"}
    try:
        model = timm.create_model(full_name, pretrained=True, pretrained_cfg_overlay=overlay)
    except (RuntimeError, KeyError, ValueError, OSError, SafetensorError) as error:
        raise WeightsMismatchError(
            f"cannot load {path} as timm model {full_name}: {checkpoint_problem(error)}"
        ) from error
    return TimmEmbedder(model)


def no_class_names(name: str, why: str) -> None:
    """`class_names` of a backbone whose head scores no known class list: a UserError."""
    raise UserError(f"{name}: {why}, so it has no class logits; extract it without --logits")


def _class_names(name: str, cfg: dict[str, Any]) -> Any:
    # ImageNet-1k heads number the classes in the standard (WordNet id) order; other heads
    # (CLIP's projection, ImageNet-21k/12k subsets) or none: no names.
    classes = cfg.get("num_classes") or 0
    if classes == 1000:
        return PRETRAIN_CLASS_NAMES["in1k"]
    why = f"a head of {classes} outputs, not ImageNet-1k classes" if classes else "no head"
    return functools.partial(
        no_class_names, name, f"timm {cfg['architecture']}.{cfg['tag']} has {why}"
    )


@functools.cache
def _feature_dim(full_name: str, input_size: int) -> int:
    # The width forward_head returns, read from a forward on the meta device (no compute).
    with torch.device("meta"):
        embedder = _build(full_name).eval()
    return embedder(torch.empty(1, 3, input_size, input_size, device="meta")).shape[-1]


def timm_spec(
    timm_name: str,
    name: str | None = None,
    family: str | None = None,
    pretrain: str | None = None,
    description: str | None = None,
    families: tuple[str, ...] = (),
    feature_dim: int | None = None,
) -> BackboneSpec:
    """The BackboneSpec of a timm pretrained model (`vit_base_patch16_clip_224.openai`), named
    `name` (default: `timm/` and the name as given, so that `--weights NAME=PATH` matches what
    the user wrote), family the architecture and pretrain the tag (timm's default tag when the
    name has none) unless given. `feature_dim` is read from a meta-device forward when not
    given."""
    full, cfg = resolve_timm_name(timm_name)
    prep = timm_preprocessing(cfg)
    arch, tag = full.split(".", 1)
    name = name or PREFIX + timm_name.removeprefix(PREFIX).strip()
    return BackboneSpec(
        name=name,
        family=family or arch,
        families=families,
        kind="image",
        pretrain=pretrain or tag,
        feature_dim=feature_dim or _feature_dim(full, prep["input_size"]),
        num_frames=1,
        weights=timm_weights(cfg),
        description=f"{description}; timm {full}" if description else f"timm {full}",
        build=functools.partial(_build, full),
        load=functools.partial(_load, full),
        split_head=_classifier,
        class_names=_class_names(name, cfg),
        library="timm",
        **prep,
    )


register_resolver(PREFIX, timm_spec)

# --- curated entries: one row of `timm_spec` arguments each, in the order of COLUMNS
COLUMNS = ("name", "timm_name", "family", "families", "pretrain", "feature_dim", "description")
CURATED = (
    (
        "clip_vit_b16",
        "vit_base_patch16_clip_224.openai",
        "clip",
        (),
        "openai",
        768,
        "CLIP ViT-B/16 image tower (OpenAI WIT-400M); pooled pre-projection embedding",
    ),
    (
        "siglip2_vit_b16",
        "vit_base_patch16_siglip_224.v2_webli",
        "siglip2",
        (),
        "webli",
        768,
        "SigLIP 2 ViT-B/16 image tower (WebLI), 224 px; attention-pooled embedding",
    ),
    (
        "dinov2_vit_b14",
        "vit_base_patch14_dinov2.lvd142m",
        "dinov2",
        (),
        "lvd142m",
        768,
        "DINOv2 ViT-B/14 (LVD-142M, self-supervised) at timm's 518 px: costly per frame, "
        "see --image-frames",
    ),
    (
        "vit_b16_in21k",
        "vit_base_patch16_224.orig_in21k_ft_in1k",
        "vit21k",
        ("vit21k",),
        "in21k_ft_in1k",
        768,
        "ViT-B/16 ImageNet-21k -> 1k, the checkpoint TimeSformer was initialised from; "
        "2D half of `vit21k`",
    ),
    (
        "mae_vit_b16",
        "vit_base_patch16_224.mae",
        "mae",
        ("mae",),
        "in1k",
        768,
        "MAE ViT-B/16 (ImageNet-1k, self-supervised); the 2D half of `mae` (with VideoMAE-B)",
    ),
)

for _row in CURATED:
    register_backbone(timm_spec(**dict(zip(COLUMNS, _row, strict=True))))
