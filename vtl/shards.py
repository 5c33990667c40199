"""Which share of the work this process does: one of N shards, from the CLI, torchrun or a SLURM
array (videos to extract, or probe runs to train).

No scheduler of our own: torchrun or SLURM launches the processes; each works out its share
from the same deterministic assignment, so shards need no communication.
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vtl.errors import UserError


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    source: str = "single"  # "--shard", "torchrun", "slurm" or "single"

    @property
    def tag(self) -> str:
        return f"part-{self.index}-of-{self.count}"


def resolve_shard(option: str | None = None, env: Mapping[str, str] = os.environ) -> Shard:
    """The shard of this process: `--shard i/n`, else torchrun's RANK/WORLD_SIZE, else a SLURM
    array's SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT (minus SLURM_ARRAY_TASK_MIN), else 0/1.
    """
    if option:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", option)
        if not match:
            raise UserError(f"--shard {option!r}: expected i/n, e.g. 0/4")
        return _checked(int(match[1]), int(match[2]), "--shard")
    if "WORLD_SIZE" in env and "RANK" in env:
        return _checked(int(env["RANK"]), int(env["WORLD_SIZE"]), "torchrun")
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        index = int(env["SLURM_ARRAY_TASK_ID"]) - first
        return _checked(index, int(env["SLURM_ARRAY_TASK_COUNT"]), "slurm")
    return Shard(0, 1)


def _checked(index: int, count: int, source: str) -> Shard:
    if count < 1 or not 0 <= index < count:
        raise UserError(f"shard {index}/{count} from {source}: need 0 <= i < n")
    return Shard(index, count, source if count > 1 else "single")


def assign_shards(lengths: Sequence[float], count: int) -> list[int]:
    """Shard of each video, balancing total frames (longest first onto the lightest shard).

    Deterministic: ties break on manifest position and shard index, so every process computes
    the same assignment on its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    loads = [(0, shard) for shard in range(count)]
    heapq.heapify(loads)
    assignment = [0] * len(lengths)
    for i in order:
        load, shard = heapq.heappop(loads)
        assignment[i] = shard
        heapq.heappush(loads, (load + max(1, lengths[i]), shard))
    return assignment
