"""The rows of `extract backbones` without importing torch or any model library.

`python -m extract.backbones --write-costs` writes `listing.json` next to this file: every
registry entry's row as `describe_backbones` makes it (parameters and FLOPs as counted), where its
weights are looked up, and the FAMILIES table. `list_backbones` reads it and checks whether each
entry's weights are here with `extract.weights.weights_status` (file-system lookups only: the
torch hub cache, the Hugging Face hub cache, a package's file), so listing the zoo costs a JSON
read instead of importing torch, torchvision, timm, pytorchvideo and transformers (seconds).

The file records what its rows depend on: the versions of those libraries and a hash of the
source files that declare the registry (`registry_sources`). When either differs, or the file is
missing, `list_backbones` makes the rows live with `describe_backbones` (slow, never wrong).

This module must stay importable without torch: it imports the model code only in the functions
that need it (the live fallback and `write_listing`). The package's `__init__` loads its
declaration files on first use, so importing this module does not.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extract.hub import HubCheckpoint
from extract.weights import PackageFile, WeightsSource, weights_status
from vtl.defaults import FRAMES_PER_CLIP

__all__ = [
    "COSTS_FILE",
    "LISTED_WITH",
    "LISTING_FILE",
    "Listing",
    "backbone_row",
    "entry_fields",
    "library_versions",
    "list_backbones",
    "read_costs",
    "read_listing",
    "registry_sources",
    "static_rows",
    "weights_lookup",
    "write_listing",
]

LISTING_FILE = Path(__file__).with_name("listing.json")
COSTS_FILE = Path(__file__).with_name("costs.json")  # `cost.write_table`'s counts
# The libraries whose versions the rows depend on (architectures, checkpoint URLs, timm
# pretrained configurations): counts and lookups made under other versions are stale.
LISTED_WITH = ("torch", "torchvision", "timm", "pytorchvideo", "transformers")

_EXTRACT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Listing:
    """What `extract backbones` prints: one row per registry entry (the keys of
    `describe_backbones`) and the FAMILIES table (family -> member names)."""

    rows: list[dict[str, Any]]
    families: dict[str, tuple[str, ...]]


@functools.cache
def read_costs() -> dict[str, dict[str, Any]]:
    """The cost table's rows (`costs.json`: name -> params, flops, activation_bytes, input);
    empty when there is none."""
    try:
        return json.loads(COSTS_FILE.read_text())["backbones"]
    except FileNotFoundError:
        return {}


def library_versions() -> dict[str, str | None]:
    """The installed version of each of LISTED_WITH (None: not installed)."""
    versions: dict[str, str | None] = {}
    for package in LISTED_WITH:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _source_files() -> Iterable[Path]:
    # Every file that declares an entry or decides its row: the package (declaration files,
    # registry, cost table), the architectures it builds, the checkpoint lookups, the defaults.
    package = _EXTRACT / "backbones"
    yield from sorted(package.glob("*.py"))
    yield package / "costs.json"
    yield from sorted((_EXTRACT / "archs").glob("*.py"))
    yield _EXTRACT / "weights.py"
    yield _EXTRACT / "hub.py"
    yield _EXTRACT.parent / "vtl" / "defaults.py"


def registry_sources() -> str:
    """sha256 over the names and contents of the source files the registry's rows depend on."""
    digest = hashlib.sha256()
    for path in _source_files():
        digest.update(path.relative_to(_EXTRACT.parent).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"(missing)")
        digest.update(b"\0")
    return digest.hexdigest()


# --- where weights are looked up -------------------------------------------------------------


def weights_lookup(source: WeightsSource) -> dict[str, Any]:
    """A `WeightsSource` as data: its cache file name, and its hub repository and files (and its
    library's old cache file) or the package that ships it, enough for
    `extract.weights.weights_status` to look for it."""
    lookup: dict[str, Any] = {"filename": source.filename}
    if source.hub is not None:
        lookup["hub"] = source.hub.repo_id
        lookup["files"] = [list(group) for group in source.hub.files]
        if source.hub.optional:
            lookup["optional"] = list(source.hub.optional)
        if source.old_cache is not None:
            lookup["old_cache"] = source.old_cache
    elif source.package_path is not None:
        package = source.package_path
        lookup["package"] = [package.module, package.attribute, package.method]
    return lookup


def _source(lookup: Mapping[str, Any]) -> WeightsSource:
    # The lookup's WeightsSource: what finding the file reads (not its URL or key mapping).
    hub = None
    if "hub" in lookup:
        files = tuple(map(tuple, lookup["files"]))
        hub = HubCheckpoint(lookup["hub"], files, tuple(lookup.get("optional", ())))
    package = PackageFile(*lookup["package"]) if "package" in lookup else None
    return WeightsSource(
        lookup["filename"], None, package_path=package, hub=hub, old_cache=lookup.get("old_cache")
    )


# --- the listing ----------------------------------------------------------------------------------


def read_listing(path: Path = LISTING_FILE) -> dict[str, Any] | None:
    """The listing at `path` when it was written for these library versions and these registry
    sources; None when it is missing, unreadable or stale."""
    try:
        listing = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(listing, dict):
        return None
    if listing.get("versions") != library_versions():
        return None
    if listing.get("registry_sources") != registry_sources():
        return None
    return listing


def backbone_row(
    entry: Mapping[str, Any],
    params: int,
    flops: int,
    clip_frames: int,
    weights: tuple[bool, Path],
) -> dict[str, Any]:
    """One row of `extract backbones` (`describe_backbones`' keys): an entry's fields
    (`entry_fields`), its counts (`model_stats`'s parameters and FLOPs of one forward: image
    backbones embed every frame of a `clip_frames`-frame clip, video backbones the clip once) and
    `weights_status`."""
    frames = clip_frames if entry["kind"] == "image" else 1
    present, weights_file = weights
    return {
        **{key: entry[key] for key in ("name", "family", "kind", "pretrain", "feature_dim")},
        "params": round(params / 1e6, 2),
        "gflops_per_clip": round(flops * frames / 1e9, 2),
        "input_size": entry["input_size"],
        "num_frames": entry["num_frames"],
        "weights_present": present,
        "weights_file": str(weights_file),
        "description": entry["description"],
    }


def entry_fields(spec: Any) -> dict[str, Any]:
    """What a row says of a registry entry (a `BackboneSpec`), as the listing writes it down."""
    fields = ("name", "family", "kind", "pretrain", "feature_dim", "input_size", "num_frames")
    return {**{key: getattr(spec, key) for key in fields}, "description": spec.description}


def static_rows(
    listing: Mapping[str, Any], cache_dir: Path | None = None, clip_frames: int = FRAMES_PER_CLIP
) -> list[dict[str, Any]]:
    """The rows of `describe_backbones(cache_dir, clip_frames)` from a listing and the cost
    table it was written with (`costs.json`), weights looked up on this machine now."""
    counts = read_costs()
    return [
        backbone_row(
            entry,
            counts[entry["name"]]["params"],
            counts[entry["name"]]["flops"],
            clip_frames,
            weights_status(_source(entry["weights"]), cache_dir),
        )
        for entry in listing["backbones"]
    ]


def list_backbones(
    cache_dir: Path | None = None,
    clip_frames: int = FRAMES_PER_CLIP,
    path: Path = LISTING_FILE,
) -> Listing:
    """The rows and families `extract backbones` prints: from the listing at `path` when it is
    current (no model library imported), else made live by `describe_backbones`."""
    listing = read_listing(path)
    if listing is not None:
        families = {name: tuple(members) for name, members in listing["families"].items()}
        return Listing(static_rows(listing, cache_dir, clip_frames), families)
    from extract.backbones import FAMILIES, describe_backbones

    return Listing(describe_backbones(cache_dir, clip_frames), dict(FAMILIES))


def write_listing(path: Path = LISTING_FILE) -> dict[str, Any]:
    """Write the listing of every registry entry for `list_backbones` (after the cost table,
    whose counts its rows read); returns it."""
    from extract.backbones import FAMILIES, REGISTRY
    from vtl.atomic import write_text

    # Counts stay in the cost table (written first): the rows read them from there.
    entries = [
        {**entry_fields(spec), "weights": weights_lookup(spec.weights)}
        for spec in REGISTRY.values()
    ]
    listing = {
        "about": "rows of `extract backbones`: python -m extract.backbones --write-costs",
        "versions": library_versions(),
        "registry_sources": registry_sources(),
        "families": {name: list(members) for name, members in FAMILIES.items()},
        "backbones": entries,
    }
    write_text(path, json.dumps(listing, indent=1) + "\n")
    return listing
