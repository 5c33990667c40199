"""Hugging Face video models through `transformers`: VideoMAE, TimeSformer, ViViT and V-JEPA 2,
by hub repository (`hf/MCG-NJU/videomae-base`) and as curated registry entries.

Everything comes from the checkpoint's own files, read as JSON (no `transformers` import until a
model is built): frames per clip and crop size from `config.json` (`num_frames`/`image_size`;
V-JEPA 2: `frames_per_clip`/`crop_size`), resize, interpolation and mean/std from its
`preprocessor_config.json` (or `video_preprocessor_config.json`), falling back to the processor
class's defaults. A processor's rescale (`rescale_factor`, ViViT's `offset`) folds into the
mean/std our `uint8 / 255` normalization uses, so the model sees the processor's exact values.

The embedding (`HFVideoEmbedder`) is the pooled vector the checkpoint's video classifier reads,
as each `...ForVideoClassification` computes it:

- VideoMAE: `fc_norm(mean of the last hidden states)` (`use_mean_pooling`), else the first token;
- TimeSformer: the first token after the final layernorm;
- ViViT: the first token (CLS) after the final layernorm;
- V-JEPA 2: the attentive pooler's output over the encoder's last hidden states;

and, for checkpoints without a classifier (`VideoMAEModel` pretraining checkpoints, the base
`VJEPA2Model`), the mean of the last hidden states (V-JEPA 2: of the encoder, predictor skipped).
Weights load with `from_pretrained(<snapshot folder>, local_files_only=True)` from the Hugging
Face hub cache (`extract.hub`, offline first) or a folder given with `--weights NAME=DIR`.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn

from extract import hub
from extract.backbones.registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRETRAIN_CLASS_NAMES,
    BackboneSpec,
    register_backbone,
    register_resolver,
)
from extract.backbones.timm_models import no_class_names
from extract.weights import (
    WeightsMismatchError,
    WeightsMissingError,
    WeightsSource,
    checkpoint_problem,
    few_keys,
)
from vtl.errors import UserError

PREFIX = "hf/"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
PROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json")
IMAGENET_STANDARD = (0.5, 0.5, 0.5)  # transformers' IMAGENET_STANDARD_MEAN and _STD
RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL codes in processor configs


def _first_token(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    return hidden[:, 0]


def _videomae_pool(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    # VideoMAEForVideoClassification.forward
    if model.fc_norm is not None:
        return model.fc_norm(hidden.mean(dim=1))
    return hidden[:, 0]


def _vjepa2_pool(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    return model.pooler(hidden)  # VJEPA2ForVideoClassification.forward


# A processor's default normalization, (mean, std): transformers' IMAGENET_STANDARD_MEAN and
# _STD, or its IMAGENET_DEFAULT_MEAN and _STD (ours too).
STANDARD_NORMALIZATION = (IMAGENET_STANDARD, IMAGENET_STANDARD)
IMAGENET_NORMALIZATION = (IMAGENET_MEAN, IMAGENET_STD)


@dataclass(frozen=True)
class VideoArchitecture:
    """How one `transformers` model type is built, fed and pooled, and its processor defaults."""

    model_type: str  # config.json's model_type
    classes: str  # transformers' classes are <classes>Model and <classes>ForVideoClassification
    pool: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # classifier model, hidden -> pooled
    resize: int | None  # the processor's default shortest edge; None: derived from the crop
    normalization: tuple[tuple[float, float, float], tuple[float, float, float]]  # mean, std
    rescale: float = 1 / 255
    offset: bool = False  # ViViT: image * rescale - 1
    input_name: str = "pixel_values"  # the forward's video argument, [B, T, 3, H, W]
    frames_key: str = "num_frames"  # config key of the frames per clip
    size_key: str = "image_size"  # config key of the square input size
    base_kwargs: tuple[tuple[str, Any], ...] = ()

    def class_name(self, classifier: bool) -> str:
        """The model's transformers class: the ...ForVideoClassification, or the model without a
        head (checkpoints without a classifier)."""
        return f"{self.classes}ForVideoClassification" if classifier else f"{self.classes}Model"


ARCHITECTURES = {
    a.model_type: a
    for a in (
        VideoArchitecture(
            model_type="videomae",
            classes="VideoMAE",
            pool=_videomae_pool,
            resize=224,
            normalization=STANDARD_NORMALIZATION,
        ),
        VideoArchitecture(
            model_type="timesformer",
            classes="Timesformer",
            pool=_first_token,
            resize=224,
            normalization=IMAGENET_NORMALIZATION,
        ),
        VideoArchitecture(
            model_type="vivit",
            classes="Vivit",
            pool=_first_token,
            resize=256,
            normalization=STANDARD_NORMALIZATION,
            rescale=1 / 127.5,
            offset=True,
        ),
        VideoArchitecture(
            model_type="vjepa2",
            classes="VJEPA2",
            pool=_vjepa2_pool,
            resize=None,  # VJEPA2VideoProcessor: int(crop_size * 256 / 224)
            normalization=IMAGENET_NORMALIZATION,
            input_name="pixel_values_videos",
            frames_key="frames_per_clip",
            size_key="crop_size",
            base_kwargs=(("skip_predictor", True),),
        ),
    )
}


class HFVideoEmbedder(nn.Module):
    """A `transformers` video model whose forward maps [B, 3, T, S, S] clips to the pooled
    embedding [B, hidden_size] (see the module docstring for each model type)."""

    def __init__(self, model: nn.Module, architecture: VideoArchitecture, classifier: bool):
        super().__init__()
        self.model = model
        self.architecture = architecture
        self.has_classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.architecture
        base = self.model.base_model  # transformers: the model without its head
        video = x.transpose(1, 2)  # [B, T, 3, S, S], as transformers takes videos
        hidden = base(**{a.input_name: video}, **dict(a.base_kwargs)).last_hidden_state
        if self.has_classifier:
            return a.pool(self.model, hidden)
        return hidden.mean(dim=1)


def _split_classifier(embedder: nn.Module) -> nn.Module:
    return embedder.model.classifier if embedder.has_classifier else nn.Identity()


def _architecture(config: dict[str, Any], where: str) -> VideoArchitecture:
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise UserError(
            f"{where}: model_type {model_type!r} is not a video model the lab supports "
            f"({', '.join(ARCHITECTURES)})"
        )
    return ARCHITECTURES[model_type]


def _has_classifier(config: dict[str, Any]) -> bool:
    return any(name.endswith("ForVideoClassification") for name in config.get("architectures", []))


def _edge(value: Any, what: str, where: str) -> int:
    # Processor sizes: an int, {"shortest_edge": n}, or a square {"height": n, "width": n}.
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
        if value.get("height") is not None and value.get("height") == value.get("width"):
            return int(value["height"])
    raise UserError(f"{where}: {what} {value!r} is not a square size the lab can prepare")


def derive_settings(
    config: dict[str, Any], processor: dict[str, Any] | None, where: str
) -> dict[str, Any]:
    """The BackboneSpec settings a checkpoint's `config.json` and processor configuration imply:
    num_frames, input_size, resize_size, interpolation, mean, std, feature_dim (and the
    model type and whether it has a classifier)."""
    a = _architecture(config, where)
    processor = processor or {}
    size = int(config[a.size_key])
    crop = _edge(processor.get("crop_size", size), "crop_size", where)
    if a.resize is None:
        resize = int(crop * 256 / 224)
    else:
        resize = _edge(processor.get("size", a.resize), "size", where)
    # The processor computes (x * rescale - offset - mean) / std; as (x / 255 - m') / s':
    scale = 255 * float(processor.get("rescale_factor", a.rescale))
    offset = float(bool(processor.get("offset", a.offset)))
    mean = processor.get("image_mean", a.normalization[0])
    std = processor.get("image_std", a.normalization[1])
    resample = int(processor.get("resample", 2))
    if resample not in RESAMPLE:
        raise UserError(f"{where}: resample {resample} is not one the lab prepares frames with")
    return {
        "model_type": a.model_type,
        "classifier": _has_classifier(config),
        "num_frames": int(config[a.frames_key]),
        "input_size": crop,
        "resize_size": resize,
        "interpolation": RESAMPLE[resample],
        "mean": tuple(round((offset + float(m)) / scale, 9) for m in mean),
        "std": tuple(round(float(s) / scale, 9) for s in std),
        "feature_dim": int(config["hidden_size"]),
    }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path}: {type(error).__name__}: {error}") from error


def read_checkpoint_configs(folder: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """`config.json` and the processor configuration (None when there is none) of a snapshot."""
    config = _read_json(folder / "config.json")
    for name in PROCESSOR_FILES:
        if (folder / name).is_file():
            return config, _read_json(folder / name)
    return config, None


def _transformers_class(name: str) -> type:
    # transformers is imported only here: when a Hugging Face model is built or loaded.
    return getattr(importlib.import_module("transformers"), name)


def _build(model_type: str, classifier: bool, config: dict[str, Any]) -> nn.Module:
    """The architecture with random init from a config dict (no weights; meta device works)."""
    a = ARCHITECTURES[model_type]
    config_class = type(_transformers_class("AutoConfig").for_model(model_type))
    hf_config = config_class.from_dict(config)
    model_class = _transformers_class(a.class_name(classifier))
    return HFVideoEmbedder(model_class(hf_config), a, classifier)


def _load(name: str, settings: dict[str, Any], path: Path) -> nn.Module:
    """The model of the snapshot folder holding `path` (its weights file), after checking that
    the folder's configuration gives the settings the spec was declared with."""
    folder = path.parent
    config, processor = read_checkpoint_configs(folder)
    found = derive_settings(config, processor, str(folder))
    differ = [f"{k} {found[k]} (spec {v})" for k, v in settings.items() if found.get(k) != v]
    if differ:
        raise UserError(
            f"checkpoint {folder} does not match backbone {name}: {'; '.join(differ)}; "
            f"use --backbone hf/<repository> for a checkpoint of another configuration"
        )
    a = ARCHITECTURES[found["model_type"]]
    model_class = _transformers_class(a.class_name(found["classifier"]))
    importlib.import_module("transformers").utils.logging.disable_progress_bar()  # ours shows
    try:
        model, info = model_class.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32, output_loading_info=True
        )
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as error:
        raise WeightsMismatchError(
            f"cannot load {folder} as backbone {name}: {checkpoint_problem(error)}"
        ) from error
    if missing := sorted(info["missing_keys"]):
        # transformers fills what the file lacks with random values and only warns: another
        # network every run (a file of another model, or an incomplete one)
        raise WeightsMismatchError(
            f"checkpoint {path} lacks weights of {a.class_name(found['classifier'])} "
            f"({few_keys(missing)}): it is not this model's file, or an incomplete one; "
            "download the repository's files again"
        )
    return HFVideoEmbedder(model, a, found["classifier"])


def _checkpoint(repo_id: str) -> hub.HubCheckpoint:
    return hub.HubCheckpoint(
        repo_id, files=(WEIGHT_FILES, ("config.json",)), optional=PROCESSOR_FILES
    )


def _class_names(name: str, config: dict[str, Any], pretrain: str) -> Any:
    # The checkpoint's own label names (config.json id2label) when it has a classifier; a
    # curated entry declared without them: its pretraining set's standard list.
    if not _has_classifier(config):
        return functools.partial(no_class_names, name, "a checkpoint without a classifier")
    id2label = config.get("id2label") or {}
    if id2label:
        labels = tuple(id2label[str(i)] for i in range(len(id2label)))
        return lambda: labels
    if pretrain in PRETRAIN_CLASS_NAMES:
        return PRETRAIN_CLASS_NAMES[pretrain]
    return functools.partial(no_class_names, name, "no label names in its config.json")


def hf_spec(
    repo_id: str,
    config: dict[str, Any],
    processor: dict[str, Any] | None,
    name: str | None = None,
    family: str | None = None,
    pretrain: str | None = None,
    description: str | None = None,
    families: tuple[str, ...] = (),
) -> BackboneSpec:
    """The BackboneSpec of hub repository `repo_id` whose `config.json` and processor
    configuration are `config` and `processor`; named `hf/<repo_id>` unless `name` is given."""
    name = name or PREFIX + repo_id
    settings = derive_settings(config, processor, f"{name} ({repo_id})")
    model_type, classifier = settings["model_type"], settings["classifier"]
    checked = {k: v for k, v in settings.items() if k not in ("model_type",)}
    spec_fields = {k: v for k, v in checked.items() if k != "classifier"}
    pooled = "classifier's pooled input" if classifier else "mean of the last hidden states"
    pretrain = pretrain or repo_id.rsplit("/", 1)[-1]
    return BackboneSpec(
        name=name,
        family=family or model_type,
        families=families,
        kind="video",
        pretrain=pretrain,
        weights=WeightsSource(filename=WEIGHT_FILES[0], url=None, hub=_checkpoint(repo_id)),
        description=(description or f"transformers {model_type} {repo_id}") + f"; {pooled}",
        build=functools.partial(_build, model_type, classifier, config),
        load=functools.partial(_load, name, checked),
        split_head=_split_classifier,
        class_names=_class_names(name, config, pretrain),
        library="transformers",
        **spec_fields,
    )


def resolve_hub_name(name: str) -> BackboneSpec:
    """The spec of `hf/<org>/<repo>` from the configuration files in the hub cache (fetched
    when missing and the hub is reachable); a one-line UserError when they cannot be had."""
    repo_id = name.removeprefix(PREFIX).strip()
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise UserError(f"backbone {name!r}: write a hub model as hf/<org>/<repository>")
    configs = hub.HubCheckpoint(repo_id, files=(("config.json",),), optional=PROCESSOR_FILES)
    try:
        path = hub.fetch(configs, name)
    except WeightsMissingError as error:
        # Name the whole checkpoint (weights too) in the message: that is what the user needs.
        why = str(error).rsplit(" [", 1)[-1].rstrip("]")
        message = hub.missing_message(name, _checkpoint(repo_id), None, why)
        raise WeightsMissingError(message) from None
    config, processor = read_checkpoint_configs(path.parent)
    return hf_spec(repo_id, config, processor)


register_resolver(PREFIX, resolve_hub_name)

# --- curated entries: the published config.json values that the spec depends on (checked
# against the checkpoint's own files when it loads) and the preprocessor_config.json values.
_KINETICS = {"num_labels": 400}
CURATED = (
    {
        "name": "videomae_b_k400",
        "repo_id": "MCG-NJU/videomae-base-finetuned-kinetics",
        "config": {
            "model_type": "videomae",
            "architectures": ["VideoMAEForVideoClassification"],
            "use_mean_pooling": True,
            **_KINETICS,
        },
        "processor": {"image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD},
        "family": "videomae",
        "pretrain": "k400",
        "description": "VideoMAE ViT-B/16, Kinetics-400 self-supervised + fine-tuned, 16 frames",
    },
    {
        "name": "videomae_b",
        "repo_id": "MCG-NJU/videomae-base",
        "config": {
            "model_type": "videomae",
            "architectures": ["VideoMAEForPreTraining"],
            "use_mean_pooling": False,
        },
        "processor": {"image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD},
        "family": "mae",
        "families": ("mae",),
        "pretrain": "k400",
        "description": "VideoMAE ViT-B/16, Kinetics-400 self-supervised only, 16 frames; "
        "the video half of `mae`",
    },
    {
        "name": "timesformer_b_k400",
        "repo_id": "facebook/timesformer-base-finetuned-k400",
        "config": {
            "model_type": "timesformer",
            "architectures": ["TimesformerForVideoClassification"],
            **_KINETICS,
        },
        "processor": {"image_mean": (0.45, 0.45, 0.45), "image_std": (0.225, 0.225, 0.225)},
        "family": "vit21k",
        "families": ("vit21k",),
        "pretrain": "k400",
        "description": "TimeSformer-B (divided space-time), Kinetics-400, 8 frames, initialised "
        "from ViT-B/16 in21k; the video half of `vit21k`",
    },
    {
        "name": "vivit_b_k400",
        "repo_id": "google/vivit-b-16x2-kinetics400",
        "config": {
            "model_type": "vivit",
            "architectures": ["VivitForVideoClassification"],
            **_KINETICS,
        },
        "processor": {"size": {"shortest_edge": 256}, "offset": True},
        "family": "vivit",
        "pretrain": "k400",
        "description": "ViViT-B/16x2 (factorised encoder), Kinetics-400, 32 frames",
    },
    {
        "name": "vjepa2_vit_l",
        "repo_id": "facebook/vjepa2-vitl-fpc64-256",
        "config": {"model_type": "vjepa2", "architectures": ["VJEPA2Model"]},
        "processor": {"crop_size": 256},
        "family": "vjepa2",
        "pretrain": "vm22m",
        "description": "V-JEPA 2 ViT-L/16 (VideoMix22M, self-supervised), 64 frames at 256 px",
    },
)


def _published_config(entry: dict[str, Any]) -> dict[str, Any]:
    # The transformers defaults of these model types are the base checkpoints' values
    # (hidden size, frames, size); the entry adds what differs.
    return {**_DEFAULTS[entry["config"]["model_type"]], **entry["config"]}


_DEFAULTS = {
    "videomae": {"num_frames": 16, "image_size": 224, "hidden_size": 768},
    "timesformer": {"num_frames": 8, "image_size": 224, "hidden_size": 768},
    "vivit": {"num_frames": 32, "image_size": 224, "hidden_size": 768},
    "vjepa2": {"frames_per_clip": 64, "crop_size": 256, "hidden_size": 1024},
}

for _entry in CURATED:
    register_backbone(
        hf_spec(
            _entry["repo_id"],
            _published_config(_entry),
            _entry["processor"],
            name=_entry["name"],
            family=_entry["family"],
            families=_entry.get("families", ()),
            pretrain=_entry["pretrain"],
            description=f"{_entry['description']} (hub {_entry['repo_id']})",
        )
    )
