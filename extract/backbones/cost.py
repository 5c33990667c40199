"""What a backbone costs: parameters and FLOPs per clip, and the rows of `extract backbones`.

FLOPs: `gflops_per_clip` counts with `torch.utils.flop_counter.FlopCounterMode`, which counts 2
FLOPs per multiply-add (torchvision's docs quote multiply-adds as "GFLOPS", half our figure), on
meta-device tensors so no real compute runs.

The counts of every registry entry are kept in `costs.json` next to this file (with the library
versions they were counted with), so `extract backbones` lists them without building a model;
names not in it (`timm/...`, `hf/...`, an entry whose input changed) are counted on demand, once
per process. `python -m extract.backbones --write-costs` recounts the table and rewrites the
listing `extract backbones` reads without importing torch (`listing`).
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from extract.backbones.listing import (
    COSTS_FILE,
    LISTING_FILE,
    backbone_row,
    entry_fields,
    library_versions,
    read_costs,
    write_listing,
)
from extract.backbones.registry import REGISTRY, BackboneSpec, build_model, get_spec
from extract.memory import largest_activation_bytes
from extract.weights import weights_status
from vtl.atomic import write_text
from vtl.defaults import FRAMES_PER_CLIP

CLIP_FRAMES = FRAMES_PER_CLIP  # the clip length of FLOPs rows: the reference's


def _input_key(spec: BackboneSpec) -> list:
    # What the counts depend on besides the architecture: a table row whose key differs from
    # the spec's is stale and counted again.
    return [spec.kind, spec.input_size, spec.num_frames]


def measure(spec: BackboneSpec | str) -> tuple[int, int, int]:
    """Count (parameters, FLOPs, largest activation bytes) of a backbone now, on the meta
    device (see `model_stats`)."""
    spec = get_spec(spec)
    model = build_model(spec, "meta").requires_grad_(False)  # no autograd hooks in counting
    params = sum(p.numel() for p in model.parameters())
    spec.split_head(model)
    frames = (spec.num_frames,) if spec.kind == "video" else ()
    x = torch.empty(1, 3, *frames, spec.input_size, spec.input_size, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return params, counter.get_total_flops(), largest_activation_bytes(model, x)


@functools.cache
def model_stats(name: str) -> tuple[int, int, int]:
    """(parameters of the whole model, FLOPs of one embedding forward at batch 1: one frame for
    image backbones, one resampled clip for video ones, and the largest activation of that
    forward in bytes): from the table when it holds this entry as it is, else counted."""
    spec = get_spec(name)
    row = read_costs().get(spec.name)
    if row is not None and row["input"] == _input_key(spec):
        return row["params"], row["flops"], row["activation_bytes"]
    return measure(spec)


def write_table(path: Path = COSTS_FILE) -> dict[str, Any]:
    """Count every registry entry and write the table `model_stats` reads; returns it."""
    rows = {}
    for spec in REGISTRY.values():
        params, flops, activation = measure(spec)
        rows[spec.name] = {
            "params": params,
            "flops": flops,
            "activation_bytes": activation,
            "input": _input_key(spec),
        }
    table = {
        "about": "model_stats of every registry entry: python -m extract.backbones --write-costs",
        "versions": library_versions(),
        "backbones": rows,
    }
    write_text(path, json.dumps(table, indent=1) + "\n")
    read_costs.cache_clear()
    model_stats.cache_clear()
    return table


def count_params(spec: BackboneSpec | str) -> int:
    """Parameters of the whole model (classifier included, as published)."""
    return model_stats(get_spec(spec).name)[0]


def gflops_per_clip(spec: BackboneSpec | str, clip_frames: int = CLIP_FRAMES) -> float:
    """FLOPs / 1e9 to embed one clip of `clip_frames` frames (2 FLOPs per multiply-add; image
    backbones count every frame they embed, video backbones one forward at num_frames)."""
    spec = get_spec(spec)
    flops = model_stats(spec.name)[1]
    return flops * (clip_frames if spec.kind == "image" else 1) / 1e9


def describe_backbones(
    cache_dir: Path | None = None, clip_frames: int = CLIP_FRAMES
) -> list[dict[str, Any]]:
    """One row per registry entry for `extract backbones`: name, family, kind, pretrain,
    feature_dim, params (millions), gflops_per_clip (FLOPs/1e9 per `clip_frames`-frame clip,
    2 per multiply-add), input_size, num_frames, weights_present, weights_file, description."""
    rows = []
    for spec in REGISTRY.values():
        params, flops, _ = model_stats(spec.name)
        weights = weights_status(spec, cache_dir)
        rows.append(backbone_row(entry_fields(spec), params, flops, clip_frames, weights))
    return rows


def main(argv: list[str] | None = None) -> None:
    """`python -m extract.backbones --write-costs`: recount the table of every registry entry
    and rewrite the listing of `extract backbones`."""
    parser = argparse.ArgumentParser(prog="python -m extract.backbones", description=main.__doc__)
    parser.add_argument(
        "--write-costs", action="store_true", help=f"rewrite {COSTS_FILE} and {LISTING_FILE}"
    )
    if parser.parse_args(argv).write_costs:
        table = write_table()
        print(f"wrote {len(table['backbones'])} entries to {COSTS_FILE}")
        listing = write_listing()
        print(f"wrote {len(listing['backbones'])} entries to {LISTING_FILE}")
    else:
        parser.print_help()
