"""Studies of how features are cut and aggregated (the reference work's ablations): the axes, the
designs, and `study.json`, the plan that `extract study` writes and `probe study` reads.

An axis is one setting with several values: how videos are segmented, the frame rate clips are
sampled at, the frames a clip spans (extraction axes: each value is a feature file of its own),
the clips a probe sees per window, the temporal model, and whether the probe is co-trained with
other collections (probe axes: each value is a probe run on the same file; `cotrain`'s values
name collections, not a TrainConfig field). A study has a baseline value per axis (the
reference's default when it is among the values, else the first value given) and a design:
`axis` (the baseline, then one axis at a time changed around it) or `grid` (every combination).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vtl.defaults import CLIP_FPS, FRAMES_PER_CLIP, PROBE_MODEL, SEGMENTATION, WINDOW
from vtl.errors import UserError
from vtl.registry import register

FORMAT = "vtl-study"
VERSION = 1
DESIGNS = ("axis", "grid")


@dataclass(frozen=True)
class Axis:
    """One study axis: its setting, where it acts, its reference value and what it means."""

    name: str  # the setting (an ExtractConfig or TrainConfig field)
    option: str  # the command-line option giving its values
    stage: str  # "extract" (a feature file per value) or "probe" (a run per value)
    default: object  # the reference work's value
    parse: Callable[[str], object]
    meaning: str

    def values(self, text: str | None) -> list:
        """The values of a comma-separated option (the default alone when not given)."""
        if text is None or not text.strip():
            return [self.default]
        try:
            values = [self.parse(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            raise UserError(f"{self.option} {text!r}: not a list of {self.meaning}") from None
        if len(set(values)) != len(values):
            raise UserError(f"{self.option} {text!r}: a value is named twice")
        return values


def _segmentation(text: str) -> str:
    if text not in ("transnetv2", "fixed"):
        raise ValueError(text)
    return text


def _positive(kind: type) -> Callable[[str], object]:
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise ValueError(text)
        return value

    return parse


AXES: dict[str, Axis] = {}


def register_axis(axis: Axis) -> Axis:
    """Add a study axis to AXES (what `extract study` and `probe study` offer)."""
    return register(AXES, axis.name, axis, "axis")


register_axis(
    Axis(
        "segmentation",
        "--segmentation",
        "extract",
        SEGMENTATION,
        _segmentation,
        "segmentations (transnetv2: TransNetV2 shots; fixed: fixed-length segments)",
    )
)
register_axis(
    Axis(
        "clip_fps",
        "--clip-fps",
        "extract",
        CLIP_FPS,
        _positive(float),
        "frame rates clips are sampled at (frames per second)",
    )
)
register_axis(
    Axis(
        "frames_per_clip",
        "--frames-per-clip",
        "extract",
        FRAMES_PER_CLIP,
        _positive(int),
        "frame counts per clip (with the clip rate, the seconds a clip spans)",
    )
)
register_axis(
    Axis(
        "window",
        "--window",
        "probe",
        WINDOW,
        _positive(int),
        "clips per probe window (the reference's num_clips)",
    )
)
register_axis(
    Axis(
        "model",
        "--models",
        "probe",
        PROBE_MODEL,
        str,
        "temporal models aggregating the clips (savg, gru, divita, ...)",
    )
)
register_axis(
    Axis(
        "cotrain",
        "--co-train",
        "probe",
        "none",
        str,
        "collections co-trained with the target (none: the target alone; else the other "
        "collections' names, `probe.cotrain`)",
    )
)
EXTRACT_AXES = tuple(a.name for a in AXES.values() if a.stage == "extract")
PROBE_AXES = tuple(a.name for a in AXES.values() if a.stage == "probe")


def baseline_of(axes: dict[str, list]) -> dict:
    """Each axis's baseline: the reference's value when it is among the values, else the first."""
    return {
        name: (AXES[name].default if AXES[name].default in values else values[0])
        for name, values in axes.items()
    }


def design_variants(axes: dict[str, list], design: str = "axis") -> list[dict]:
    """The settings of every variant, the baseline first.

    `axis`: the baseline, then each axis's other values with every other axis at its baseline;
    `grid`: every combination (the baseline first, then in the order of the values).
    """
    if design not in DESIGNS:
        raise UserError(f"--design {design!r}: choose one of {', '.join(DESIGNS)}")
    base = baseline_of(axes)
    if design == "grid":
        combos = [
            dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())
        ]
        return [base] + [c for c in combos if c != base]
    variants = [base]
    for name, values in axes.items():
        variants += [{**base, name: value} for value in values if value != base[name]]
    return variants


def changed(variant: dict, baseline: dict) -> str:
    """'baseline', or the settings that differ from it as 'name=value, ...'."""
    diff = [f"{k}={_text(v)}" for k, v in variant.items() if baseline.get(k) != v]
    return ", ".join(diff) if diff else "baseline"


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def extraction_name(settings: dict) -> str:
    """The folder of an extraction variant, as the reference names its feature stores
    (`fps24_fpc24`), with the segmentation first: `transnetv2_fps24_fpc24`."""
    return (
        f"{settings['segmentation']}_fps{_text(float(settings['clip_fps']))}"
        f"_fpc{int(settings['frames_per_clip'])}"
    )


# ------------------------------------------------------------------ study.json


@dataclass
class StudyPlan:
    """What `extract study` made: the design, the extraction axes and each variant's files."""

    design: str
    axes: dict[str, list]  # extraction axes -> values
    backbones: list[str]
    manifest: str
    extractions: list[dict]  # {"name", "settings", "files": {backbone: path}}
    path: Path | None = None

    @property
    def baseline(self) -> dict:
        return baseline_of(self.axes)

    def to_json(self) -> str:
        return (
            json.dumps(
                {
                    "format": FORMAT,
                    "version": VERSION,
                    "design": self.design,
                    "axes": self.axes,
                    "baseline": self.baseline,
                    "backbones": self.backbones,
                    "manifest": self.manifest,
                    "extractions": self.extractions,
                },
                indent=2,
            )
            + "\n"
        )

    def file(self, recorded: str) -> Path:
        """A variant's file as recorded: relative to the study's folder (`extract study` records
        files inside it so), else as written (absolute; older plans: as the command was run)."""
        path = Path(recorded)
        if self.path is not None and not path.is_absolute():
            inside = Path(self.path).parent / path
            if inside.is_file() or not path.is_file():
                return inside
        return path


def read_study(path: str | Path) -> StudyPlan:
    """The plan in `path` (a study.json, or the folder holding one).

    Raises:
        UserError: missing, unreadable or not a study plan.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "study.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no study here; make one with `extract study`") from None
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: not a readable study plan ({error})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path}: not a study plan (format {data.get('format')!r})")
    if data.get("version") != VERSION:
        raise UserError(f"{path}: study plan version {data.get('version')}, this reads {VERSION}")
    return StudyPlan(
        design=data["design"],
        axes={k: list(v) for k, v in data["axes"].items()},
        backbones=list(data["backbones"]),
        manifest=data["manifest"],
        extractions=list(data["extractions"]),
        path=path,
    )


def check_axes(axes: dict[str, Sequence]) -> None:
    unknown = [name for name in axes if name not in AXES]
    if unknown:
        raise UserError(f"unknown study axes {unknown}; axes: {', '.join(AXES)}")
