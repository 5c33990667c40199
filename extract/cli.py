"""`extract`: the command line of the extraction stage (thin over the library)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from vtl.cli import run_app, shared_options
from vtl.defaults import CLIP_FPS, FRAMES_PER_CLIP, SEGMENTATION, SHOT_FRAMES, SHOT_THRESHOLD
from vtl.errors import UserError

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Decode videos once, detect shots, embed clips with frozen backbones, write HDF5.",
)


# Options `run` and `study` share, declared once.
ManifestOption = Annotated[Path, typer.Option("--manifest", "-m", help="Manifest CSV.")]
BackboneOption = Annotated[
    list[str],
    typer.Option(
        "--backbone",
        "-b",
        help=(
            "Backbones or families, comma-separated or repeated (`extract backbones` lists "
            "them); also any "
            "timm model as timm/<model>.<tag> (e.g. timm/vit_base_patch16_clip_224.openai) and "
            "a Hugging Face video model as hf/<org>/<repository> (e.g. hf/MCG-NJU/videomae-base)."
        ),
    ),
]
ThresholdOption = Annotated[float, typer.Option(help="TransNetV2 transition threshold.")]
ShotFramesOption = Annotated[int, typer.Option(help="Shot length for --segmentation fixed.")]
MinTailOption = Annotated[
    int, typer.Option(help="Frames a shot's last partial clip needs to be kept.")
]
ImageFramesOption = Annotated[
    int,
    typer.Option(help="Image backbones: embed only N evenly spaced frames per clip (CPU speed)."),
]
BatchSizeOption = Annotated[int, typer.Option(help="Clips per embedding call.")]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
AmpOption = Annotated[bool, typer.Option(help="Mixed precision on CUDA.")]
VideoTimeoutOption = Annotated[
    float,
    typer.Option(
        help=(
            "Seconds a video may spend decoding before it fails (default: 120 s + 0.25 s "
            "per frame, or 120 s without progress)."
        )
    ),
]
StrictDecodeOption = Annotated[
    bool,
    typer.Option(
        "--strict-decode",
        help="Fail a video at its first undecodable frame (default: conceal a few, see README).",
    ),
]
WaitOption = Annotated[
    bool, typer.Option("--wait", help="Wait for another run writing the same output to end.")
]
LogitsOption = Annotated[
    bool,
    typer.Option(
        "--logits",
        help=(
            "Also store each clip's source-head class logits (ImageNet-1k or Kinetics classes) "
            "and the class names (/clips/logits)."
        ),
    ),
]
WeightsOption = Annotated[
    list[str],
    typer.Option(
        help=(
            "Checkpoint PATH, or NAME=PATH per backbone (repeatable); for timm/ and hf/ models "
            "PATH may be a folder holding the hub repository's files."
        )
    ),
]
CacheDirOption = Annotated[
    Path, typer.Option(help="Weights cache (default: $VTL_WEIGHTS_DIR or torch hub).")
]
ShardOption = Annotated[str, typer.Option(help="Run shard i/n (default: from torchrun or SLURM).")]
MergeOption = Annotated[bool, typer.Option(help="The last shard to finish merges the parts.")]
AllowFailuresOption = Annotated[bool, typer.Option(help="Exit 0 even if some videos failed.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]

# The options `run` and `study` share, declared once: name -> (annotation, default).
SHARED = {
    "threshold": (ThresholdOption, SHOT_THRESHOLD),
    "shot_frames": (ShotFramesOption, SHOT_FRAMES),
    "min_tail": (MinTailOption, None),
    "image_frames": (ImageFramesOption, None),
    "batch_size": (BatchSizeOption, 16),
    "device": (DeviceOption, "auto"),
    "amp": (AmpOption, True),
    "video_timeout": (VideoTimeoutOption, None),
    "strict_decode": (StrictDecodeOption, False),
    "wait": (WaitOption, False),
    "logits": (LogitsOption, False),
    "weights": (WeightsOption, None),
    "cache_dir": (CacheDirOption, None),
    "shard": (ShardOption, None),
    "merge": (MergeOption, True),
    "allow_failures": (AllowFailuresOption, False),
    "quiet": (QuietOption, False),
}


def _extract_config(shared: dict, **cutting):
    """The ExtractConfig of a command's shared options that are its fields (same names) and the
    `cutting` fields it takes as single values (`run`; `study` takes lists)."""
    import dataclasses

    from extract.config import ExtractConfig

    fields = {f.name for f in dataclasses.fields(ExtractConfig)}
    return ExtractConfig(**{k: v for k, v in shared.items() if k in fields}, **cutting)


def _run_options(shared: dict) -> dict:
    """The options of the extraction run itself (`extract.pipeline.extract_targets`'s)."""
    return {
        "weights": _weights_option(shared["weights"]),
        "cache_dir": shared["cache_dir"],
        "shard": shared["shard"],
        "merge": shared["merge"],
        "progress": not shared["quiet"],
    }


@app.command()
@shared_options(SHARED, SHARED)
def run(
    manifest: ManifestOption,
    backbone: BackboneOption,
    out: Path = typer.Option(Path("features"), "--out", "-o", help="Output folder."),
    segmentation: str = typer.Option(SEGMENTATION, help="Shots: transnetv2 or fixed."),
    frames_per_clip: int = typer.Option(FRAMES_PER_CLIP, help="Frames per clip."),
    clip_fps: float = typer.Option(CLIP_FPS, help="Frame rate clips are sampled at."),
    shared: dict = None,
    sample: str = typer.Option(
        None,
        help=(
            "Extract only a sample: N videos or a fraction (0.2, 20%), stratified over the "
            "labels and splits (for `probe recommend`); a larger sample with the same seed "
            "grows it, and a later full run reuses its videos."
        ),
    ),
    sample_seed: int = typer.Option(0, help="Seed of the --sample draw."),
) -> int:
    """Extract clip features of every video in MANIFEST with each backbone."""
    from extract.pipeline import run_extraction
    from vtl.sample import parse_sample_size

    size = None if sample is None else parse_sample_size(sample)
    config = _extract_config(
        shared, segmentation=segmentation, frames_per_clip=frames_per_clip, clip_fps=clip_fps
    )
    result = run_extraction(
        manifest,
        ",".join(backbone),
        out,
        config,
        **_run_options(shared),
        sample=size,
        sample_seed=sample_seed,
    )
    for name, path in {**result.files, **result.merged}.items():
        print(f"{name}\t{path}")
    return _exit_code(result, shared["allow_failures"])


def _exit_code(result, allow_failures: bool) -> int:
    if result.interrupted:
        return 130
    if result.failures:
        print(
            f"{len(result.failures)} video(s) failed; see the .failures.csv next to each file",
            file=sys.stderr,
        )
        return 0 if allow_failures else 1
    return 0


@app.command()
@shared_options(SHARED, SHARED)
def study(
    manifest: ManifestOption,
    backbone: BackboneOption,
    out: Path = typer.Option(..., "--out", "-o", help="Study folder (variants and study.json)."),
    segmentation: str = typer.Option(
        SEGMENTATION, help="Segmentations to compare: transnetv2 and/or fixed (comma-separated)."
    ),
    clip_fps: str = typer.Option(
        f"{CLIP_FPS:g}", help="Clip frame rates to compare, e.g. 24,12,6."
    ),
    frames_per_clip: str = typer.Option(
        str(FRAMES_PER_CLIP), help="Frames per clip to compare, e.g. 16,24."
    ),
    design: str = typer.Option(
        "axis", help="axis: one axis at a time around the baseline; grid: every combination."
    ),
    reuse: list[Path] = typer.Option(
        None, help="Folder of finished feature files to use when they match (repeatable)."
    ),
    shared: dict = None,
) -> int:
    """Extract every extraction variant of a study (one decode per video) for `probe study`."""
    from extract.study import extract_study
    from vtl.study import AXES

    axes = {
        "segmentation": AXES["segmentation"].values(segmentation),
        "clip_fps": AXES["clip_fps"].values(clip_fps),
        "frames_per_clip": AXES["frames_per_clip"].values(frames_per_clip),
    }
    made = extract_study(
        manifest,
        ",".join(backbone),
        out,
        axes,
        design=design,
        config=_extract_config(shared),
        reuse=reuse or (),
        **_run_options(shared),
    )
    for extraction in made.plan.extractions:
        for name, path in extraction["files"].items():
            print(f"{extraction['name']}/{name}\t{made.plan.file(path)}")
    if not made.result.interrupted:
        print(made.path)
    return _exit_code(made.result, shared["allow_failures"])


def _weights_option(values: list[str] | None):
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return Path(values[0])
    pairs = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            raise UserError(f"--weights {value!r}: with several --weights give each as NAME=PATH")
        pairs[name.strip()] = Path(path)
    return pairs


@app.command()
def verify(
    files: list[Path] = typer.Argument(
        ..., help="Feature files to check, or folders (every *.h5 in them, e.g. a run's --out)."
    ),
) -> int:
    """Check every invariant of feature files; print a short summary of each."""
    from vtl.features import verify_features

    paths = []
    for given in files:
        found = sorted(given.rglob("*.h5")) if given.is_dir() else [given]
        if not found:
            raise UserError(f"{given}: a folder without feature files (*.h5)")
        paths += found
    for path in paths:
        s = verify_features(path)
        print(
            f"ok {s['path']}: {s['videos']} videos, {s['clips']} clips, {s['shots']} shots, "
            f"dim {s['feature_dim']}, {s['labels']} labels x {s['splits']} splits, "
            f"backbone {s['backbone']} ({s['kind']}, {s['pretrain']}), weights {s['weights']}, "
            f"{s['failures']} failed videos"
            + (f", a sample of {s['sample']} videos (--sample)" if s["sample"] is not None else "")
        )
    return 0


@app.command()
def merge(
    parts: list[Path] = typer.Argument(..., help="Part files <name>.part-<i>-of-<n>.h5."),
    out: Path = typer.Option(..., "--out", "-o", help="Merged feature file."),
    remove_parts: bool = typer.Option(False, help="Delete the parts after merging."),
) -> int:
    """Merge shard part files into one file, in manifest order."""
    from extract.merge import merge_parts
    from vtl.lock import OutputLock
    from vtl.paths import check_output_file

    check_output_file(out)
    with OutputLock(out):  # not while a finishing shard merges the same file
        print(merge_parts(parts, out, remove_parts=remove_parts))
    return 0


@app.command()
def backbones(
    cache_dir: Path = typer.Option(None, help="Weights cache to look in."),
    present: bool = typer.Option(False, "--present", help="Only backbones whose weights are here."),
    names: bool = typer.Option(False, "--names", help="Print names only, comma-separated."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> int:
    """List every registered backbone: kind, pretrain, dims, cost, weights present here."""
    from extract.backbones.listing import list_backbones  # no torch: a written-down listing

    listing = list_backbones(cache_dir)
    rows = [r for r in listing.rows if r["weights_present"] or not present]
    if names:
        print(",".join(r["name"] for r in rows))
        return 0
    if as_json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    header = f"{'name':20} {'family':12} {'kind':5} {'pretrain':13} {'dim':>5} {'params':>7}"
    header += f" {'GFLOPs/clip':>11} {'input':>9}  weights"
    print(header)
    for r in rows:
        present_here = "present" if r["weights_present"] else f"missing ({r['weights_file']})"
        frames = f"{r['num_frames']}x{r['input_size']}"
        print(
            f"{r['name']:20} {r['family']:12} {r['kind']:5} {r['pretrain']:13} "
            f"{r['feature_dim']:>5} {r['params']:>6.1f}M {r['gflops_per_clip']:>11.1f} "
            f"{frames:>9}  {present_here}"
        )
    families = listing.families.items()
    print("\nfamilies: " + "; ".join(f"{k} = {' + '.join(v)}" for k, v in families))
    print(
        "GFLOPs: FlopCounterMode FLOPs (2 per multiply-add) / 1e9 for one "
        f"{FRAMES_PER_CLIP}-frame clip."
    )
    print(
        "Also by name: timm/<model>.<tag> (any timm model with pretrained weights, e.g. "
        "timm/vit_base_patch16_clip_224.openai) and hf/<org>/<repository> (VideoMAE, "
        "TimeSformer, ViViT, V-JEPA 2 checkpoints); their weights come from the Hugging Face "
        "hub cache ($HF_HOME), fetched when missing unless HF_HUB_OFFLINE=1."
    )
    return 0


@app.command()
def shots(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="Manifest CSV."),
    out: Path = typer.Option(..., "--out", "-o", help="shots.json or shots.h5."),
    segmentation: str = typer.Option(SEGMENTATION, help="transnetv2 or fixed."),
    threshold: ThresholdOption = SHOT_THRESHOLD,
    shot_frames: ShotFramesOption = SHOT_FRAMES,
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> int:
    """Detect shots only, for every video of MANIFEST."""
    from extract.shot_export import detect_manifest_shots

    result = detect_manifest_shots(
        manifest,
        out,
        segmentation=segmentation,
        threshold=threshold,
        shot_frames=shot_frames,
        device=device,
        progress=not quiet,
    )
    print(result.path)
    return 1 if result.failures else 0


@app.command("demo-data")
def demo_data(
    out: Path = typer.Argument(Path("data/demo"), help="Folder for videos/ and manifest.csv."),
    videos: int = typer.Option(36, help="Number of videos."),
    seed: int = typer.Option(0, help="Random seed (same seed, same bytes)."),
    collection: int = typer.Option(
        1,
        help="1: the demo collection; 2: a second one (other videos, other labels) to co-train "
        "with (`probe train --co-train`).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> int:
    """Generate the offline demo collection (real footage from PyPI packages) and its manifest."""
    from extract.demo_data import COLLECTIONS, MIN_VIDEOS, make_demo_data
    from vtl.paths import check_output_dir

    if videos < MIN_VIDEOS:
        raise UserError(f"--videos must be at least {MIN_VIDEOS}, got {videos}")
    if seed < 0:
        raise UserError(f"--seed must be 0 or more, got {seed}")
    if collection not in COLLECTIONS:
        choices = ", ".join(str(c) for c in COLLECTIONS)
        raise UserError(f"--collection {collection}: choose one of {choices}")
    check_output_dir(out, "OUT")
    manifest = make_demo_data(
        out, n_videos=videos, seed=seed, progress=not quiet, collection=collection
    )
    print(manifest)
    return 0


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
