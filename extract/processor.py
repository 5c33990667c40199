"""One video's work: its decoded chunks in, the clip features of every output out.

An output (a feature file being built) is a backbone and a way of cutting clips (`Cutting`: the
segmentation and the clip sampling). A run may build several outputs from one decode of each
video: several backbones, and several cuttings for a study. Per chunk:

    chunk --> FrameStore (decoded frames, prepared on demand per input size)
          --> shot streams, one per segmentation in use (TransNetV2 runs once however many
              outputs use its shots; it sees the chunk's 48x27 frames, which the decoder
              makes as the TransNetV2 package does: `needs_small`)
          --> clip cutters, one per cutting: clips final as soon as their frames are known to
              be in their shot (clips are anchored at the shot's first frame)
          --> each output's clips, prepared frames only --> batches per backbone --> features

Memory follows a clip, a batch and the shot detector's delay, not a shot or the video: frames
no clip can use any more are released after every chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from extract.backbones import Backbone, EmbeddingError
from extract.clips import ClipCutter
from extract.frames import RAW_BUDGET_CPU, RAW_BUDGET_CUDA, FrameStore
from vtl.defaults import CLIP_FPS, FRAMES_PER_CLIP, SEGMENTATION, SHOT_FRAMES, SHOT_THRESHOLD

FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class Cutting:
    """How an output cuts a video into clips (the reference's defaults)."""

    segmentation: str = SEGMENTATION  # "transnetv2" or "fixed"
    threshold: float = SHOT_THRESHOLD  # TransNetV2 transition probability
    shot_frames: int = SHOT_FRAMES  # fixed segmentation only
    frames_per_clip: int = FRAMES_PER_CLIP
    clip_fps: float = CLIP_FPS
    min_tail: int | None = None

    @property
    def shot_key(self) -> tuple:
        """Outputs with the same key share one shot stream per video."""
        if self.segmentation == "transnetv2":
            return ("transnetv2", self.threshold)
        return ("fixed", self.shot_frames)


@dataclass(frozen=True)
class Output:
    """One feature file being built: its key, how it cuts clips, its backbone, and whether it
    stores each clip's source-head class logits too (`Backbone.classify` of the clip's
    embedding)."""

    key: str
    cutting: Cutting
    backbone: Backbone
    logits: bool = False


class VideoProcessor:
    """Turns one video's decoded chunks into clip features for each output.

    Args:
        outputs: what to build.
        detectors: shot key -> shot detector (`extract.shots`), built once per run.
        batch_size: clips per embedding call of a backbone (clips of several outputs sharing
            a backbone share its batches).
        interrupt: called between forward passes and chunks; raises to stop the work.
    """

    def __init__(
        self,
        outputs: list[Output],
        detectors: dict,
        batch_size: int = 16,
        interrupt: Callable[[], None] | None = None,
    ) -> None:
        self.outputs = outputs
        self.detectors = detectors
        # whether the chunks must carry 48x27 frames (the decoder's `small`)
        self.needs_small = any(d.needs_frames for d in detectors.values())
        self.batch_size = batch_size
        self.interrupt = interrupt
        self.backbones = list({id(o.backbone): o.backbone for o in outputs}.values())
        # Backbones with the same input size share prepared frames: each frame prepared once.
        self.preparers: dict = {}
        for backbone in self.backbones:
            self.preparers.setdefault(backbone.prepare_key, backbone)
        # Positions in a clip of the frames each output's backbone embeds.
        self.used = {
            o.key: o.backbone.clip_frames(o.cutting.frames_per_clip).numpy() for o in outputs
        }
        # What bounds this stage's memory, from the last video (tests and benchmarks read it).
        self.peak_frames = self.peak_clips = self.prepared = 0

    def run(
        self,
        fps: float,
        chunks: Iterable[tuple[int, torch.Tensor, torch.Tensor | None]],
        device: torch.device,
    ) -> tuple[dict[str, dict[str, np.ndarray]], dict[tuple, np.ndarray]]:
        """Process a whole video from its chunks: (first frame, uint8 [T, H, W, 3] frames, their
        uint8 [T, 27, 48, 3] ones, None unless `needs_small`).

        Returns:
            (output key -> {"features" (C, D) float16, "frames" (C, 2), "shot" (C,),
            "shots" (S, 2), "embed_seconds", and for outputs with `logits` "logits"
            (C, classes) float16}, shot key -> (S, 2) shots).

        Raises:
            EmbeddingError: embeddings (or logits) that are not finite or exceed float16's
                range.
        """
        streams = {key: detector.stream() for key, detector in self.detectors.items()}
        cuttings = list(dict.fromkeys(o.cutting for o in self.outputs))
        cutters = {c: ClipCutter(fps, c.frames_per_clip, c.clip_fps, c.min_tail) for c in cuttings}
        budget = RAW_BUDGET_CUDA if device.type == "cuda" else RAW_BUDGET_CPU
        store = FrameStore(self.preparers, budget)
        # backbone -> [(output key, clip frames it uses)] not embedded yet
        pending: dict[int, list[tuple[str, torch.Tensor]]] = {id(b): [] for b in self.backbones}
        rows: dict[str, list[torch.Tensor]] = {o.key: [] for o in self.outputs}
        seconds = dict.fromkeys(rows, 0.0)
        scores: dict[str, list[torch.Tensor]] = {o.key: [] for o in self.outputs if o.logits}
        self.peak_clips = 0

        def cut(cutting: Cutting, clips: list[np.ndarray]) -> None:
            for clip in clips:
                for o in self.outputs:
                    if o.cutting == cutting:
                        frames = store.get(o.backbone.prepare_key, clip[self.used[o.key]])
                        pending[id(o.backbone)].append((o.key, frames))
            self.peak_clips = max([self.peak_clips, *(len(p) for p in pending.values())])

        def embed(everything: bool = False) -> None:
            for backbone in self.backbones:
                waiting = pending[id(backbone)]
                while len(waiting) >= self.batch_size or (everything and waiting):
                    batch, waiting[:] = waiting[: self.batch_size], waiting[self.batch_size :]
                    started = time.perf_counter()
                    out = backbone.embed_used([clip for _, clip in batch], self.interrupt)
                    spent = time.perf_counter() - started
                    total = sum(len(clip) for _, clip in batch)
                    scored = backbone.classify(out) if any(k in scores for k, _ in batch) else out
                    for (key, clip), row, score in zip(batch, out, scored, strict=True):
                        rows[key].append(row)
                        seconds[key] += spent * len(clip) / total
                        if key in scores:
                            scores[key].append(score)

        closed: dict[tuple, list] = {}
        found: dict[tuple, list] = {key: [] for key in streams}
        for start, frames, small in chunks:
            if self.interrupt is not None:
                self.interrupt()
            frames = frames.to(device, non_blocking=True)
            store.add(start, frames)
            if small is None and self.needs_small:
                raise ValueError("the shot detector needs the chunks' 48x27 frames (small=True)")
            small = None if small is None else small.to(device, non_blocking=True)
            for key, stream in streams.items():
                closed[key] = stream.push(small if self.detectors[key].needs_frames else frames)
                found[key] += closed[key]
            for cutting, cutter in cutters.items():
                stream = streams[cutting.shot_key]
                cut(cutting, cutter.update(closed[cutting.shot_key], stream.open_shot()))
            embed()
            # Frames before the first one a clip still to be cut may use are never needed again.
            low = start + len(frames)
            for cutting, cutter in cutters.items():
                low = min(low, cutter.next_frame(streams[cutting.shot_key].pending_from()))
            store.release_before(low)
        for key, stream in streams.items():
            closed[key] = stream.finish()
            found[key] += closed[key]
        for cutting, cutter in cutters.items():
            cut(cutting, cutter.update(closed[cutting.shot_key], None))
        embed(everything=True)
        self.peak_frames, self.prepared = store.peak_frames, store.prepared_count

        results = {}
        for o in self.outputs:
            cutter = cutters[o.cutting]
            plan = cutter.plan()
            features = torch.stack(rows[o.key]).numpy()
            largest = float(np.abs(features).max()) if features.size else 0.0
            if largest > FLOAT16_MAX:
                raise EmbeddingError(
                    f"{o.backbone.spec.name} gives embedding values up to {largest:.4g}, beyond "
                    f"float16's range ({FLOAT16_MAX:g}) in which features are stored"
                )
            results[o.key] = {
                "features": features.astype(np.float16),
                "frames": plan.frames,
                "shot": plan.shot,
                "shots": np.array(cutter.shots, np.int64).reshape(-1, 2),
                "embed_seconds": np.array(seconds[o.key]),
            }
            if o.logits:
                results[o.key]["logits"] = _logits_array(o.backbone, scores[o.key])
        shots = {key: np.array(v, np.int64).reshape(-1, 2) for key, v in found.items()}
        return results, shots


def _logits_array(backbone: Backbone, scores: list[torch.Tensor]) -> np.ndarray:
    """A video's (clips, classes) logits as stored: float16, checked like the embeddings."""
    logits = torch.stack(scores).numpy()
    if not np.isfinite(logits).all() or (logits.size and np.abs(logits).max() > FLOAT16_MAX):
        raise EmbeddingError(
            f"{backbone.spec.name} gives class logits that are not finite or beyond float16's "
            f"range ({FLOAT16_MAX:g}) in which they are stored"
        )
    return logits.astype(np.float16)
