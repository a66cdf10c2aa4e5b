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
