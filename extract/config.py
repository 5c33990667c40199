"""What an extraction run is asked to do: `ExtractConfig` (its options, checked before any model
loads or video opens), the torch device it runs on, and how long a video may take to decode.
Every default is the reference work's (`vtl.defaults`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch

from extract.processor import Cutting
from extract.shots import SHOT_DETECTORS
from extract.video import VideoInfo
from vtl.defaults import CLIP_FPS, FRAMES_PER_CLIP, SEGMENTATION, SHOT_FRAMES, SHOT_THRESHOLD
from vtl.errors import UserError
from vtl.manifest import Manifest

# --video-timeout's default: the seconds the run may wait on a video's decoder, in all (a floor
# and 0.25 s a frame: a software 4K HEVC decode runs at 20+ frames/s, a 320x180 one at 2,000; and
# 0.1 s a MB of the file while its index is read), and without a single chunk once its frames
# started (a decoder spinning or blocked fails after TIMEOUT_FLOOR, whatever the video's length).
TIMEOUT_FLOOR = 120.0
TIMEOUT_PER_FRAME = 0.25
TIMEOUT_PER_MB = 0.1
# Clips sample frames at --clip-fps; past a high-speed camera's rate every source frame repeats
# in clip after clip, and a rate like 1e9 asks for more clips than memory holds.
MAX_CLIP_FPS = 1000.0


@dataclass
class ExtractConfig:
    """Everything that decides the numbers in a feature file (defaults: the reference work's),
    and `video_timeout` and `wait`, which do not."""

    segmentation: str = SEGMENTATION  # "transnetv2" or "fixed"
    threshold: float = SHOT_THRESHOLD  # TransNetV2 transition probability
    shot_frames: int = SHOT_FRAMES  # fixed segmentation only
    frames_per_clip: int = FRAMES_PER_CLIP
    clip_fps: float = CLIP_FPS
    min_tail: int | None = None  # frames a shot's last partial clip needs to be kept
    image_frames: int | None = None  # image backbones: embed this many frames per clip (CPU option)
    batch_size: int = 16  # clips per embedding call
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # autocast on CUDA
    channels_last: bool = True  # on CUDA
    video_timeout: float | None = None  # seconds of decoding per video; None: from its length
    strict_decode: bool = False  # a damaged frame fails its video (no concealment)
    wait: bool = False  # wait for another run writing the same output instead of stopping
    logits: bool = False  # store each clip's source-head class logits beside its embedding

    def validate(self) -> ExtractConfig:
        """Check every field, as `extract run` options; return self.

        Raises:
            UserError: naming the option and the bad value.
        """
        if self.segmentation not in SHOT_DETECTORS:
            raise UserError(
                f"--segmentation {self.segmentation!r}: choose one of {', '.join(SHOT_DETECTORS)}"
            )
        if not 0.0 <= _number(self.threshold, "--threshold") <= 1.0:
            raise UserError(f"--threshold must be between 0 and 1, got {self.threshold}")
        for name in ("shot_frames", "batch_size"):
            _count(getattr(self, name), name)
        _count(self.frames_per_clip, "frames_per_clip")
        if self.image_frames is not None and _count(self.image_frames, "image_frames") > int(
            self.frames_per_clip
        ):
            raise UserError(
                f"--image-frames must be at most --frames-per-clip ({self.frames_per_clip}): "
                f"a clip has no more frames to embed, got {self.image_frames}"
            )
        if not 0 < _number(self.clip_fps, "--clip-fps") <= MAX_CLIP_FPS:
            raise UserError(
                f"--clip-fps must be a frame rate above 0 and at most {MAX_CLIP_FPS:g} (a "
                f"high-speed camera's), got {self.clip_fps}"
            )
        if self.min_tail is not None and (
            isinstance(self.min_tail, bool)
            or not isinstance(self.min_tail, int)
            or not 0 <= self.min_tail <= self.frames_per_clip
        ):
            raise UserError(
                f"--min-tail must be a whole number between 0 and --frames-per-clip "
                f"({self.frames_per_clip}), got {self.min_tail!r}"
            )
        timeout = self.video_timeout
        if timeout is not None and not _number(timeout, "--video-timeout") > 0:
            raise UserError(
                f"--video-timeout must be a positive number of seconds, got {self.video_timeout}"
            )
        if not isinstance(self.logits, bool):
            raise UserError(f"--logits must be true or false, got {self.logits!r}")
        resolve_device(self.device, check=False)
        return self

    def cutting(self) -> Cutting:
        """How this configuration cuts videos into clips."""
        return Cutting(
            segmentation=self.segmentation,
            threshold=float(self.threshold),
            shot_frames=int(self.shot_frames),
            frames_per_clip=int(self.frames_per_clip),
            clip_fps=float(self.clip_fps),
            min_tail=self.min_tail,
        )

    def fingerprint(self, device: torch.device) -> dict:
        """The configuration a feature file records: what decides its numbers."""
        values = {k: v for k, v in asdict(self).items() if k not in ("video_timeout", "wait")}
        if not self.strict_decode:  # recorded only when set: files made before it stay valid
            del values["strict_decode"]
        if not self.logits:  # likewise: a file with logits is another output than one without
            del values["logits"]
        values["device"] = device.type  # shards on cuda:0 and cuda:1 compute the same numbers
        values["amp"] = self.amp and device.type == "cuda"
        values["channels_last"] = self.channels_last and device.type == "cuda"
        return values


CUTTING_FIELDS = tuple(f.name for f in fields(Cutting))


def _number(value, option: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(f"{option} must be a finite number, got {value!r}")
    return float(value)


def _count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"--{name.replace('_', '-')} must be a whole number >= 1, got {value!r}")
    return value


def resolve_device(device: str, check: bool = True) -> torch.device:
    """The torch device for `--device` (auto: CUDA when there is one)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"--device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if resolved.type not in ("cpu", "cuda"):
        raise UserError(f"--device {device!r}: use auto, cpu, cuda or cuda:N")
    if check and resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available here; use --device cpu or auto")
    return resolved


def decode_limits(config: ExtractConfig, manifest: Manifest) -> dict:
    """The Decoder's `timeout` and `stall` arguments: `--video-timeout` alone when given, else
    a total from the video's frames (its size in MB before they are counted) and a limit on time
    without progress."""

    def limit(index: int, info: VideoInfo | None) -> float:
        if config.video_timeout is not None:
            return float(config.video_timeout)
        if info is not None:
            return TIMEOUT_FLOOR + TIMEOUT_PER_FRAME * info.n_frames
        try:
            size_mb = manifest.paths[index].stat().st_size / 2**20
        except OSError:
            size_mb = 0.0
        return TIMEOUT_FLOOR + TIMEOUT_PER_MB * size_mb

    return {
        "timeout": limit,
        "stall": None if config.video_timeout is not None else TIMEOUT_FLOOR,
        "strict": config.strict_decode,
    }
