"""Methods on a fully connected layer, the papers' baselines: CNN-Global (fc7 of the whole
image), Yoo's Alex-FC7 (fc7 of the centre crop), CNN-Jitter / AP10 (the mean fc7 over the 10
jittered inputs) and AP50 (the mean over a 5 x 5 grid of crops and their mirrors)."""

from __future__ import annotations

import torch

from featx.methods.registry import Context, method


# Yoo et al. Table 2: these representations "are finally l2-normalized" (no power transform)
@method("global", reads=("fc",), view="whole", power_default=False)
@method("jitter", reads=("fc",), view="jitter", power_default=False)
@method("centre", reads=("fc",), view="centre", power_default=False)
@method("crops", reads=("fc",), view="crops", power_default=False)
def mean_fc(ctx: Context, fc: torch.Tensor) -> torch.Tensor:
    """The fc vector averaged over the view's inputs (one input for whole and centre)."""
    return fc.flatten(2).mean(1)
