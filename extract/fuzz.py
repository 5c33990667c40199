"""Deterministic broken and odd videos, for robustness runs of the extraction.

`make_fuzz_corpus` turns a few clean videos into many files the way real collections break:
downloads cut short or padded with zeros, bit rot in headers and payloads, containers whose boxes
were zeroed, lost or repeated blocks, segments of other sizes or codecs joined, files with the
wrong extension, and no video at all. Each clean video is first written in several containers
and codecs (H.264 MP4 with the index at the end and at the front, MPEG-TS, HEVC MP4, VP9 WebM,
10-bit ProRes MOV, MPEG-4 Part 2 in Matroska, MJPEG AVI, GIF), so that every demuxer and decoder
meets damage (`extract.encode.write_video`, encoders on one thread). The same seed gives the
same cases: the same damage to the same videos (Matroska and WebM files carry random ids, so
their bytes differ from run to run).

`bench/fuzz_extract.py` runs `extract run` over hundreds of them mixed with clean videos;
`tests/test_fuzz.py` runs a small set. Every file must be extracted or fail with a reason, and
nothing may hang, print a traceback or change the clean videos' features.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from extract.encode import write_video

FRAMES = 60  # frames of each clean video kept (2.5 s at 24 fps): more than one clip, and quick
FPS = 24  # the clean rewrites' frame rate


@dataclass(frozen=True)
class Container:
    """A container and codec the clean videos are rewritten in."""

    name: str
    suffix: str
    format: str
    codec: str
    pix_fmt: str
    options: tuple[tuple[str, str], ...] = ()
    container_options: tuple[tuple[str, str], ...] = ()


CONTAINERS = {
    c.name: c
    for c in (
        Container("mp4_h264", ".mp4", "mp4", "libx264", "yuv420p", (("threads", "1"),)),
        Container(
            "mp4_faststart",
            ".mp4",
            "mp4",
            "libx264",
            "yuv420p",
            (("threads", "1"),),
            (("movflags", "faststart"),),
        ),
        Container("ts_h264", ".ts", "mpegts", "libx264", "yuv420p", (("threads", "1"),)),
        Container(
            "mp4_hevc",
            ".mp4",
            "mp4",
            "libx265",
            "yuv420p",
            (("x265-params", "log-level=none:pools=1:frame-threads=1"),),
        ),
        Container(
            "ts_hevc",
            ".ts",
            "mpegts",
            "libx265",
            "yuv420p",
            (("x265-params", "log-level=none:pools=1:frame-threads=1"),),
        ),
        Container(
            "webm_vp9",
            ".webm",
            "webm",
            "libvpx-vp9",
            "yuv420p",
            (("deadline", "realtime"), ("cpu-used", "8"), ("threads", "1")),
        ),
        Container("mov_prores", ".mov", "mov", "prores_ks", "yuv422p10le"),
        Container("mkv_mpeg4", ".mkv", "matroska", "mpeg4", "yuv420p"),
        Container("avi_mjpeg", ".avi", "avi", "mjpeg", "yuvj420p"),
        Container("gif", ".gif", "gif", "gif", "rgb8"),
    )
}


def read_frames(path: Path, n: int = FRAMES) -> list[np.ndarray]:
    """The first `n` frames of a video, rgb24."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == n:
                break
    return frames


def write_in(path: Path, frames: list[np.ndarray], container: Container, fps: int = FPS) -> Path:
    """Encode rgb24 frames (even sizes) with `container`'s format and codec; returns `path`.
    Bit-exact (no encoder versions, dates or random Matroska UIDs), so that a corpus is the
    same from run to run."""
    write_video(
        path,
        frames,
        fps,
        format=container.format,
        codec=container.codec,
        pix_fmt=container.pix_fmt,
        options=dict(container.options),
        container_options=dict(container.container_options),
        bitexact=True,
    )
    return path


# ------------------------------------------------------------------ mutations of bytes


@dataclass(frozen=True)
class Case:
    """One generated file: where it is, what it was made from and how."""

    path: Path
    source: str  # the clean video's name
    container: str  # `CONTAINERS` key of the file it was made from
    mutation: str
    detail: str


Mutate = Callable[[bytes, np.random.Generator], tuple[bytes, str]]
MUTATIONS: dict[str, Mutate] = {}


def mutation(function: Mutate) -> Mutate:
    """Register a mutation of a file's bytes: (data, rng) -> (new data, what was done)."""
    MUTATIONS[function.__name__] = function
    return function


def _flip(data: bytes, rng: np.random.Generator, low: int, high: int, count: int) -> bytes:
    out = bytearray(data)
    for at in rng.integers(low, max(low + 1, high), size=count):
        out[at] ^= int(rng.integers(1, 256))
    return bytes(out)


def _boxes(data: bytes, start: int = 0, end: int | None = None, depth: int = 0) -> list:
    """(type, payload start, end) of the ISO-BMFF boxes (MP4 / MOV) in data[start:end], with the
    children of the container boxes that hold a video's index."""
    end = len(data) if end is None else end
    found, at = [], start
    while at + 8 <= end and depth < 6:
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        header = 8
        if size == 1 and at + 16 <= end:
            size, header = struct.unpack(">Q", data[at + 8 : at + 16])[0], 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            break
        name = kind.decode("latin-1")
        found.append((name, at + header, at + size))
        if name in ("moov", "trak", "mdia", "minf", "stbl", "edts"):
            found += _boxes(data, at + header, at + size, depth + 1)
        at += size
    return found


@mutation
def flip_header(data, rng):
    count = int(rng.integers(1, 9))
    limit = min(len(data), max(64, len(data) // 50))
    return _flip(data, rng, 0, limit, count), f"{count} bytes flipped in the first {limit} bytes"


@mutation
def flip_payload(data, rng):
    count = int(rng.integers(1, 65))
    low, high = len(data) // 10, len(data) * 9 // 10
    return _flip(data, rng, low, high, count), f"{count} bytes flipped in the middle 80%"


_INDEX_BOXES = set("stsz stco co64 stts stss stsc avcC hvcC mdhd tkhd elst".split())


@mutation
def flip_index(data, rng):
    boxes = [b for b in _boxes(data) if b[0] in _INDEX_BOXES]
    if not boxes:
        return flip_header(data, rng)
    name, low, high = boxes[int(rng.integers(len(boxes)))]
    count = int(rng.integers(1, 5))
    return _flip(data, rng, low, high, count), f"{count} bytes flipped in box {name}"


@mutation
def zero_box(data, rng):
    boxes = [b for b in _boxes(data) if b[0] not in ("mdat", "free", "ftyp")]
    if not boxes:
        start = int(rng.integers(0, max(1, len(data) - 4096)))
        out = bytearray(data)
        out[start : start + 4096] = bytes(min(4096, len(data) - start))
        return bytes(out), f"4096 bytes zeroed at {start}"
    name, low, high = boxes[int(rng.integers(len(boxes)))]
    out = bytearray(data)
    out[low:high] = bytes(high - low)
    return bytes(out), f"box {name} zeroed ({high - low} bytes)"


@mutation
def truncate(data, rng):
    at = int(len(data) * rng.uniform(0.05, 0.95))
    return data[:at], f"cut at {at} of {len(data)} bytes"


@mutation
def truncate_tiny(data, rng):
    at = int(rng.integers(1, 200))
    return data[:at], f"only the first {at} bytes"


def _span(data: bytes, rng: np.random.Generator) -> tuple[int, int]:
    size = int(rng.integers(1, 17)) * 1024
    start = int(rng.integers(len(data) // 20, max(len(data) // 20 + 1, len(data) - size)))
    return start, min(len(data), start + size)


@mutation
def drop_block(data, rng):
    a, b = _span(data, rng)
    return data[:a] + data[b:], f"bytes {a}..{b} dropped"


@mutation
def repeat_block(data, rng):
    a, b = _span(data, rng)
    return data[:b] + data[a:b] + data[b:], f"bytes {a}..{b} repeated"


@mutation
def swap_blocks(data, rng):
    a, b = _span(data, rng)
    c, d = _span(data, rng)
    if c < b:
        return data[:a] + data[b:] + data[a:b], f"bytes {a}..{b} moved to the end"
    return data[:a] + data[c:d] + data[b:c] + data[a:b] + data[d:], f"{a}..{b} <-> {c}..{d}"


@mutation
def zero_tail(data, rng):
    keep = int(len(data) * rng.uniform(0.3, 0.9))
    return data[:keep] + bytes(
        len(data) - keep
    ), f"zeros after byte {keep} (an unfinished download)"


@mutation
def garbage_append(data, rng):
    size = int(rng.integers(1, 65)) * 1024
    return data + rng.bytes(size), f"{size} random bytes appended"


@mutation
def garbage_prepend(data, rng):
    size = int(rng.integers(1, 2049))
    return rng.bytes(size) + data, f"{size} random bytes before the start"


MUTATION_NAMES = tuple(MUTATIONS)
# Files made from two videos or none, besides the byte mutations above.
WHOLE_FILE_CASES = (
    "joined_sizes",
    "joined_codecs",
    "wrong_extension",
    "header_swap",
    "random_bytes",
    "text",
)


def make_fuzz_corpus(
    sources: list[Path], out: Path, n: int, seed: int = 0
) -> tuple[list[Case], dict[str, Path]]:
    """Write `n` broken or odd files made from `sources` (clean videos) under `out`.

    Returns the cases and the clean rewrites (`<source>_<container>` -> path), which are valid
    videos of every container and codec. The same sources, `n` and seed give the same files,
    but for libx264's, which now and then encode otherwise (README, "Fuzzing").
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clean: dict[str, Path] = {}
    frames = {}
    for source in sources:
        name = Path(source).stem
        frames[name] = read_frames(Path(source))
        for key, container in CONTAINERS.items():
            path = out / f"clean_{name}_{key}{container.suffix}"
            clean[f"{name}_{key}"] = write_in(path, frames[name], container)
    names = list(frames)
    kinds = MUTATION_NAMES + WHOLE_FILE_CASES
    cases = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        kind = kinds[i % len(kinds)]  # every kind, in turn
        source = names[int(rng.integers(len(names)))]
        container = list(CONTAINERS)[int(rng.integers(len(CONTAINERS)))]
        base = clean[f"{source}_{container}"]
        suffix = ".ts" if kind.startswith("joined") else CONTAINERS[container].suffix
        path = out / f"fuzz_{i:04d}_{kind}{suffix}"
        if kind in MUTATIONS:
            data, detail = MUTATIONS[kind](base.read_bytes(), rng)
            path.write_bytes(data)
        else:
            path, container, detail = _whole_file(kind, path, source, container, clean, frames, rng)
        cases.append(Case(path, source, container, kind, detail))
    return cases, clean


def _whole_file(kind, path, source, container, clean, frames, rng) -> tuple[Path, str, str]:
    """Write one of WHOLE_FILE_CASES at `path`; return (its path, container, what it is)."""
    other = list(frames)[int(rng.integers(len(frames)))]
    if kind == "joined_sizes":  # two MPEG-TS segments of different sizes, as downloaders join
        half = [f[::2, ::2] for f in frames[other]]
        first = write_in(path.with_suffix(".a.ts"), frames[source], CONTAINERS["ts_h264"])
        second = write_in(path.with_suffix(".b.ts"), half, CONTAINERS["ts_h264"])
        path.write_bytes(first.read_bytes() + second.read_bytes())
        first.unlink()
        second.unlink()
        return path, "ts_h264", "an MPEG-TS segment at full size, then one at half size"
    if kind == "joined_codecs":  # an H.264 segment, then an HEVC one
        data = clean[f"{source}_ts_h264"].read_bytes() + clean[f"{other}_ts_hevc"].read_bytes()
        path.write_bytes(data)
        return path, "ts_h264", "an H.264 MPEG-TS segment, then an HEVC one"
    if kind == "wrong_extension":
        wrong = [".mp4", ".avi", ".mkv", ".mov", ""][int(rng.integers(5))]
        renamed = path.with_suffix(wrong)
        renamed.write_bytes(clean[f"{source}_{container}"].read_bytes())
        return renamed, container, f"a clean {container} file named {renamed.name}"
    if kind == "header_swap":  # the start of one file and the rest of another
        a = clean[f"{source}_{container}"].read_bytes()
        b = clean[f"{other}_{container}"].read_bytes()
        cut = int(min(len(a), len(b)) * rng.uniform(0.02, 0.5))
        path.write_bytes(a[:cut] + b[cut:])
        return path, container, f"the first {cut} bytes of {source}, the rest of {other}"
    if kind == "random_bytes":
        path.write_bytes(rng.bytes(int(rng.integers(1, 65)) * 1024))
        return path, container, "random bytes"
    path.write_text("these are notes, not a video\n" * int(rng.integers(1, 200)))
    return path, container, "a text file"


# ------------------------------------------------------------------ a run over a corpus


@dataclass
class FuzzReport:
    """What `extract run` made of a corpus mixed with clean videos."""

    cases: list[Case]
    extracted: list[str]  # video ids with features
    concealed: dict[str, int]  # extracted video id -> frames concealed (decoded around damage)
    failed: dict[str, str]  # video id -> reason
    unaccounted: list[str]  # neither extracted nor failed with a reason
    hang: bool  # the run passed its time limit
    tracebacks: int  # "Traceback" in its stderr
    returncode: int | None
    seconds: float
    clean_identical: bool  # the clean videos' arrays equal a run over them alone
    stderr: str

    def by_mutation(self) -> dict[str, tuple[int, int, int]]:
        """mutation -> (files, extracted, failed with a reason)."""
        out: dict[str, list[int]] = {}
        for i, case in enumerate(self.cases):
            row = out.setdefault(case.mutation, [0, 0, 0])
            row[0] += 1
            row[1] += f"fuzz{i}" in self.extracted
            row[2] += f"fuzz{i}" in self.failed
        return {k: tuple(v) for k, v in out.items()}


def run_fuzz(
    work: Path,
    sources: list[Path],
    clean: list[Path],
    n: int,
    seed: int = 0,
    timeout: float = 1800,
    options: tuple[str, ...] = (),
) -> FuzzReport:
    """Make `n` fuzz cases from `sources`, run `extract run` (the command line, in a subprocess)
    over them with the `clean` videos among them, and again over the clean videos alone, and say
    what happened (see `FuzzReport`). `options` go to both runs (backbone, segmentation, ...)."""
    import subprocess
    import sys
    import time

    from vtl.features import DATASETS, FeatureFile
    from vtl.manifest import write_manifest

    work = Path(work)
    cases, _ = make_fuzz_corpus(sources, work / "corpus", n, seed)
    ids = [f"clean{j}" for j in range(len(clean))] + [f"fuzz{i}" for i in range(len(cases))]
    paths = [str(p) for p in clean] + [str(c.path) for c in cases]
    # every third video in each subset, and a label each (the manifest must be valid)
    labels = (np.arange(len(ids))[:, None] % 2 == np.arange(2)[None, :]).astype(np.uint8)
    splits = (np.arange(len(ids)) % 3).astype(np.uint8)[:, None]
    mixed = write_manifest(work / "mixed.csv", ids, paths, ["a", "b"], labels, splits)
    alone = write_manifest(
        work / "clean.csv",
        ids[: len(clean)],
        paths[: len(clean)],
        ["a", "b"],
        labels[: len(clean)],
        splits[: len(clean)],
    )

    def extract(manifest: Path, out: Path) -> tuple[subprocess.CompletedProcess | None, float]:
        command = [
            *(sys.executable, "-m", "extract.cli", "run"),
            *("-m", str(manifest), "-o", str(out)),
            *("--quiet", "--allow-failures", *options),
        ]
        started = time.perf_counter()
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            run = None
        return run, time.perf_counter() - started

    run, seconds = extract(mixed, work / "mixed")
    reference, _ = extract(alone, work / "clean")
    files = sorted((work / "mixed").rglob("*.h5"))
    extracted, failed, concealed = [], {}, {}
    identical = False
    if run is not None and files:
        with FeatureFile(files[0]) as f:
            extracted = list(f.video_ids)
            concealed = {v: int(c) for v, c in zip(f.video_ids, f.concealed, strict=True) if c}
            failed = {x["video_id"]: x["reason"] for x in f.meta.failures if x.get("reason")}
            if reference is not None and reference.returncode == 0:
                ref_file = sorted((work / "clean").rglob("*.h5"))[0]
                with FeatureFile(ref_file) as r:
                    rows = int(f.offsets[len(clean)])
                    identical = f.video_ids[: len(clean)] == r.video_ids and all(
                        np.array_equal(_rows(f, name, len(clean), rows), r.dataset(name)[:])
                        for name in DATASETS
                        if name.startswith(("clips/", "shots/frames"))
                    )
    unaccounted = [v for v in ids if v not in extracted and v not in failed]
    stderr = run.stderr if run is not None else ""
    return FuzzReport(
        cases=cases,
        extracted=extracted,
        concealed=concealed,
        failed=failed,
        unaccounted=unaccounted,
        hang=run is None,
        tracebacks=stderr.count("Traceback"),
        returncode=None if run is None else run.returncode,
        seconds=seconds,
        clean_identical=identical,
        stderr=stderr,
    )


def _rows(f, name: str, videos: int, clips: int) -> np.ndarray:
    """The first `videos` videos' rows of a clip or shot dataset."""
    if name == "shots/frames":
        return f.dataset(name)[: int(f.shot_offsets[videos])]
    return f.dataset(name)[:clips]
