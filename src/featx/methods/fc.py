"""Methods on a fully connected layer: CNN-Global (fc7 of the whole image) and CNN-Jitter /
AP10 (the mean fc7 over the 10 jittered inputs), the papers' baselines."""

from __future__ import annotations

import torch

from featx.methods import Context, method


@method("global", reads=("fc",), view="whole")
def cnn_global(ctx: Context, fc: torch.Tensor) -> torch.Tensor:
    return fc.flatten(2).mean(1)


@method("jitter", reads=("fc",), view="jitter")
def cnn_jitter(ctx: Context, fc: torch.Tensor) -> torch.Tensor:
    return fc.flatten(2).mean(1)
