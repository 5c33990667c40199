"""How the extraction process uses memory: allocator settings and forward micro-batches.

Why both (measured on the project's 2-core machine, EfficientNet-Lite0 on 224x224 frames, see
`bench/bench_extract.py`): glibc's malloc serves every allocation above its mmap threshold with a
fresh `mmap` and returns it with `munmap` when freed. A CPU forward pass allocates a new
activation tensor per layer, so every layer of every batch faults its pages in again: with the
default 384-frame batch half of `extract run`'s CPU time was kernel time (51 M minor page faults
for 12 short videos). Two changes remove that, and neither is the user's job:

1. `tune_allocator`, once at start-up: the mmap threshold at its largest (32 MiB; glibc refuses
   more) and a trim threshold of 256 MiB, so memory freed by one layer stays in the heap for the
   next instead of going back to the kernel. Measured alone on Lite0: 14 s of kernel time left at
   a 384-frame forward, since its activations (1.7 GiB each) are far above any threshold.
2. `micro_batch`: forward passes take as many frames (or clips) as keep the largest activation of
   one pass under that threshold, so every allocation comes from the heap and is reused: 6 frames
   of Lite0 (4.6 MiB each at its widest layer). Small passes are no slower on a CPU, whose
   kernels work image by image anyway; and the activations held at once no longer grow with the
   batch. On CUDA the caching allocator already reuses memory: a pass takes a whole batch, bounded
   by the device's memory.

The largest activation of a backbone is measured once, on meta tensors (no memory, no compute),
by `largest_activation_bytes`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

log = logging.getLogger("extract")

MMAP_THRESHOLD = 32 * 2**20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit systems
TRIM_THRESHOLD = 256 * 2**20  # free memory kept at the heap's top before it is given back
# CUDA: a pass's largest activation may take this share of the device's memory.
CUDA_ACTIVATION_SHARE = 1 / 16
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


@functools.cache
def tune_allocator() -> bool:
    """Apply the allocator settings above to this process (glibc only; elsewhere a no-op).

    Returns True when glibc accepted them. Idempotent; called at the start of every extraction.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (macOS, musl): their allocators behave differently
    applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    log.debug("malloc thresholds %s", "set" if applied else "refused")
    return applied


class _LargestOutput(TorchDispatchMode):
    """Records the size in bytes of the largest tensor any operation produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self.largest = max(self.largest, value.numel() * value.element_size())
        return out


def largest_activation_bytes(model: torch.nn.Module, example: torch.Tensor) -> int:
    """The largest tensor (bytes) one forward of `model` on `example` creates; run on the meta
    device, so it costs neither memory nor compute."""
    tracker = _LargestOutput()
    with tracker, torch.no_grad():
        model(example)
    return tracker.largest


def micro_batch(per_sample_bytes: int, device: torch.device) -> int:
    """Frames (image backbones) or clips (video backbones) per forward pass on `device`, given
    the largest activation of one sample (see the module docstring)."""
    per_sample = max(1, int(per_sample_bytes))
    if device.type == "cuda":
        budget = torch.cuda.get_device_properties(device).total_memory * CUDA_ACTIVATION_SHARE
    else:
        budget = MMAP_THRESHOLD
    return max(1, int(budget // per_sample))
