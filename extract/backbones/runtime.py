"""Backbones ready to embed: `create_backbone(name)` builds the architecture with its owning
library, loads the checkpoint through `extract.weights`, removes the classifier and returns a
`Backbone` whose `embed` maps prepared clips to pooled pre-classifier embeddings:

    frames uint8 [T, H, W, 3] --prepare--> uint8 [T, 3, S, S]   (once per decoded frame)
    clips  uint8 [B, T, 3, S, S] --embed--> float32 [B, feature_dim]

Image backbones embed every frame of a clip (or `image_frames` evenly spaced ones) and average;
video backbones resample the clip evenly to the frame count they were trained with.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from torch import nn

from extract.backbones.cost import model_stats
from extract.backbones.registry import BackboneSpec, build_model, get_spec
from extract.memory import micro_batch
from extract.video import VideoError
from extract.weights import checkpoint_sha256, load_into, locate_weights, require_weights
from vtl.errors import UserError


def sample_frame_indices(num_in: int, num_out: int) -> torch.Tensor:
    """`num_out` evenly spaced indices into `num_in` frames (segment centres, TSN style):
    the identity when the counts match, the middle frame for one, repeats when upsampling."""
    if num_in < 1 or num_out < 1:
        raise ValueError(f"frame counts must be positive, got {num_in} -> {num_out}")
    positions = (torch.arange(num_out, dtype=torch.float64) + 0.5) * num_in / num_out
    return positions.floor().long().clamp_(max=num_in - 1)


PREPARE_FRAMES = 16  # frames resized at once by Backbone.prepare
EXTREME_ASPECT = 4.0  # longer / shorter side beyond which `prepare` crops before resizing


def _resize(
    images: torch.Tensor, size: list[int], interpolation: str, antialias: bool = True
) -> torch.Tensor:
    mode = TF.InterpolationMode(interpolation)
    return TF.resize(images, size, interpolation=mode, antialias=antialias)


def crop_start(margin: int, library: str) -> int:
    """Where a center crop starts when `margin` pixels are left over, as the backbone's library
    places it: transformers' processors at margin // 2 (`image_transforms.center_crop`),
    torchvision's crop (timm's and torchvision's presets) at round(margin / 2), half to even."""
    return margin // 2 if library == "transformers" else int(round(margin / 2.0))


def _center_crop(images: torch.Tensor, size: int, library: str) -> torch.Tensor:
    height, width = images.shape[-2:]
    if height < size or width < size:  # torchvision pads what is smaller
        return TF.center_crop(images, [size])
    top, left = crop_start(height - size, library), crop_start(width - size, library)
    return images[..., top : top + size, left : left + size]


def _resize_kept_region(
    images: torch.Tensor,
    resize: int,
    size: int,
    interpolation: str = "bilinear",
    library: str = "",
    antialias: bool = True,
) -> torch.Tensor:
    """What resizing [..., H, W] images' shorter side to `resize` and center-cropping `size`
    keeps, made from only that part of the source (plus a margin for the resize filter), at the
    same scale and position to a fraction of a pixel."""
    height, width = images.shape[-2:]
    short, long = min(height, width), max(height, width)
    resized_long = int(resize * long / short)  # as TF.resize computes it
    scale = long / resized_long  # source pixels per resized pixel along the longer side
    kept = min(size, resized_long)
    first = crop_start(resized_long - kept, library)
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
        part = _resize(images[..., :, a:b], [resize, out_long], interpolation, antialias)
        return part[..., :, offset : offset + kept]
    part = _resize(images[..., a:b, :], [out_long, resize], interpolation, antialias)
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
        self.micro_batch = micro_batch(model_stats(spec.name)[2], device)
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
    def prepare_key(self) -> tuple:
        """Backbones with equal keys take the same prepared frames: (resize_size, input_size),
        the interpolation when it is not the default bilinear, and the library where its crop
        starts elsewhere (`crop_start`)."""
        spec = self.spec
        key = (spec.resize_size, spec.input_size)
        if spec.interpolation != "bilinear":
            key += (spec.interpolation,)
        if spec.resize_width is not None:
            key += (f"to {spec.resize_size}x{spec.resize_width}",)
        if not spec.antialias:
            key += ("no antialias",)
        return key + (("transformers",) if spec.library == "transformers" else ())

    def __repr__(self) -> str:
        return f"Backbone({self.spec.name}, weights={self.weights_info['name']}, {self.device})"

    def prepare(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [T, H, W, 3] (any device) -> uint8 [T, 3, input_size, input_size]: the shorter
        side resized to resize_size (antialiased, with the spec's interpolation: bilinear
        unless the model's own configuration says otherwise), then a center crop."""
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
        interpolation = self.spec.interpolation
        height, width = images.shape[-2:]
        library, antialias = self.spec.library, self.spec.antialias
        if self.spec.resize_width is not None:  # a fixed size: nothing is cropped away first
            images = _resize(images, [resize, self.spec.resize_width], interpolation, antialias)
        elif max(height, width) > EXTREME_ASPECT * min(height, width):
            # e.g. 4000x20: resizing it whole would make a 51200-wide image only to crop it.
            images = _resize_kept_region(images, resize, size, interpolation, library, antialias)
        else:
            images = _resize(images, [resize], interpolation, antialias)
        return _center_crop(images, size, library).contiguous()

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
        """Source-head class logits [B, classes] (ImageNet-1k, Kinetics-400/600: names in
        `registry.class_names`) of pooled embeddings [B, feature_dim], in float32 on the CPU.

        An image backbone's clip embedding is the mean of its frames' embeddings, so its clip
        logits are the classifier on that mean; for the linear (affine) heads of these
        backbones that equals the mean of the frames' logits."""
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
    if spec.load is not None:  # timm and transformers load through their own code
        model = spec.load(path).eval()
    else:
        model = build_model(spec, "cpu")
        load_into(model, spec.weights, path, spec.name)
    classifier = spec.split_head(model)
    device = torch.device(device)
    model.requires_grad_(False).to(device).eval()
    classifier.requires_grad_(False).to(device).eval()
    info = {"name": path.name, "sha256": checkpoint_sha256(path)}
    return Backbone(spec, model, classifier, info, device, image_frames, amp, channels_last)
