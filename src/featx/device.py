"""Where computation runs: the device a stage resolves once (the process group: featx.dist).

Stages call :func:`resolve_device` at their boundary and pass the resulting ``torch.device``
down; the maths below never looks at the environment.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from featx.errors import InputError

if TYPE_CHECKING:  # torch loads with the first device resolved, not with this module: the
    import torch   # CLI's process set-up (keep_host_memory) needs none of it


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present (the local rank's GPU under torchrun), else the CPU."""
    import torch

    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        if torch.cuda.is_available():
            from featx import environment

            return torch.device("cuda", environment.get("LOCAL_RANK"))
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


def runnable_others() -> float:
    """How many other threads want a CPU now: the larger of the 1-minute load average and the
    runnable tasks at this instant (``/proc/loadavg``), less this process."""
    try:
        fields = open("/proc/loadavg").read().split()
        return max(float(fields[0]), float(fields[3].split("/")[0])) - 1
    except (OSError, ValueError, IndexError):
        return 0.0


def wait_politely_when_busy(cpus: int | None = None, others: float | None = None) -> bool:
    """On a machine whose cores are taken, make OpenMP's idle threads sleep instead of spin
    (``OMP_WAIT_POLICY=PASSIVE``, read once when torch loads: call this first).

    By default the OpenMP threads of torch's parallel loops spin between loops; with other
    processes on every core they spin in the others' time slices and a loop waits for the
    thread that was preempted. Beside two busy processes on 2 cores the Fisher vector took
    30.6 ms an image (worst 148.8) by default, 16.4 ms (worst 21.4) waiting passively; on a
    quiet machine spinning is faster (8.9 against 13.2 ms; reports/benchmarks/fisher*.txt),
    so nothing changes there, nor when the user set the policy, nor once torch is loaded.
    Returns whether it set it."""
    import sys

    from featx import environment

    if environment.is_set("OMP_WAIT_POLICY") or "torch" in sys.modules:
        return False
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
            os.cpu_count() or 1
    others = runnable_others() if others is None else others
    if others < cpus:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_host_memory(trim_above: int = 256 << 20) -> bool:
    """Let glibc keep freed host memory for reuse: every block comes from the heap (none is
    mapped on its own, whatever its size), and the heap returns memory to the system only
    past ``trim_above`` bytes free at its top.

    By default glibc maps each block of 128 KB or more on its own and unmaps it when freed, so
    the next one page-faults in afresh, zeroed by the kernel: the few-MB blocks of a Fisher
    vector (2,150 faults an image, a quarter of its time) and the 40-50 MB input and first
    activation of a 64-image batch (21,000 faults a forward pass, 12% of AlexNet's time on
    CPU; docs/benchmarks.md). The cost: the process keeps up to ``trim_above`` bytes it freed
    (more where a live block sits above freed ones) until it exits. The command line sets this
    once at start; a library user may call it. Returns False where the C library is not
    glibc (nothing changes there).
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim_above))


def release_free_host_memory() -> bool:
    """Hand the host memory glibc keeps free (:func:`keep_host_memory`) back to the system.

    Call it before forking workers: pages the parent has freed but kept would otherwise be
    shared copy-on-write with them, and the parent's next use of each would copy it and flush
    the other cores' TLBs (an extraction run after other work in its process: 1.0-1.1 s of the
    main process's system time without this call, 0.35-0.45 s with it). Returns False where
    the C library is not glibc.
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def _glibc():
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - both exist in glibc only
    except (OSError, AttributeError):
        return None
    return libc
