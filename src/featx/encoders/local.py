"""Local features of a layer's activations.

- ``subarray:MxN``: every m x n x C subarray of a conv map that fits inside it (boundary units
  omitted), flattened channel-major as (c, i, j) — the local features of cross-convolutional-
  layer pooling (Liu et al., CVPR 2015, §3.2): 11 x 11 = 121 of them on AlexNet's 13 x 13 conv4
  map with 3 x 3 subarrays, 2,304-d with torchvision's AlexNet. The ordering matches
  ``F.unfold`` and conv2d weights, so a PCA of them applies as a convolution
  (:meth:`featx.fit.PCA.as_conv`).
- ``dense``: every spatial vector of a map (C-d), e.g. the dense fc7 maps of the pyramid view
  (Yoo et al. §2.2); an FC layer's single vector counts as a 1 x 1 map.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from featx.errors import InputError

_LOCAL_RE = re.compile(r"^(dense|subarray:(\d+)x(\d+))$")


@dataclass(frozen=True)
class LocalSpec:
    kind: str  # "subarray" or "dense"
    size: tuple[int, int] = (1, 1)

    @classmethod
    def parse(cls, text: str) -> LocalSpec:
        m = _LOCAL_RE.match(text.strip())
        if not m:
            raise InputError(f"unknown local features {text!r}; valid: dense, subarray:MxN")
        if m.group(1) == "dense":
            return cls("dense")
        size = (int(m.group(2)), int(m.group(3)))
        if min(size) < 1:
            raise InputError(f"subarray size must be at least 1x1, got {text!r}")
        return cls("subarray", size)

    def __str__(self) -> str:
        return "dense" if self.kind == "dense" else f"subarray:{self.size[0]}x{self.size[1]}"

    def dim(self, channels: int) -> int:
        return channels * self.size[0] * self.size[1]

    def extract(self, acts: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) or (B, C) activations -> (B, L, D) local features."""
        if acts.ndim == 2:
            acts = acts[:, :, None, None]
        b, c, h, w = acts.shape
        if self.kind == "dense":
            return acts.flatten(2).transpose(1, 2)
        m, n = self.size
        if m > h or n > w:
            raise InputError(f"{self} subarrays do not fit a {h}x{w} map")
        return F.unfold(acts, (m, n)).transpose(1, 2)
