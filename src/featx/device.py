"""Where computation runs: the device a stage resolves once, and the torchrun rank.

Stages call :func:`resolve_device` at their boundary and pass the resulting ``torch.device``
down; the maths below never looks at the environment.
"""

from __future__ import annotations

import os

import torch

from featx.errors import InputError


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present (the local rank's GPU under torchrun), else the CPU."""
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise InputError(f"unknown device {spec!r}; use auto, cpu or cuda[:N]") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {spec!r} asked for, but no CUDA GPU is visible; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {spec!r}; use auto, cpu or cuda[:N]")
    return device


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (1 outside torchrun)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_host_memory(mmap_below: int = 32 << 20, trim_above: int = 256 << 20) -> bool:
    """Let glibc keep freed host memory for reuse: blocks under ``mmap_below`` bytes come from
    the heap, and the heap returns memory to the system only past ``trim_above`` bytes free.

    The CPU kernels allocate a few MB per block of rows; by default glibc hands such blocks
    back to the system and page-faults them in afresh on the next block (2,150 faults an image
    for a Fisher vector, a quarter of its time; docs/benchmarks.md). The command line sets
    this once at start; a library user may call it. Returns False where the C library is not
    glibc (nothing changes there).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_below)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_above))
