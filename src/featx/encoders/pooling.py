"""Normalisation and the direct pooling baselines (Liu et al. CVPR 2015, Table 7).

Direct max pooling and sum pooling (then signed square root) of local features, and spatial
pyramid max pooling over 1x1, 2x2 and 4x4 grids of their positions. :func:`normalize` is the
signed square root ("power normalisation") and L2 that every encoding ends with.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def normalize(enc: torch.Tensor, power: bool = True, l2: bool = True) -> torch.Tensor:
    """Signed square root (``power``) then L2 normalisation (``l2``) of each row of (B, dim).

    Both together: the squared norm of sign(x) sqrt|x| is sum |x|, so each row is
    sign(x) sqrt(|x| / sum |x|), in one new tensor and four passes over it (not six passes and
    four tensors); rows whose norm would be below 1e-12 are divided by 1e-12 instead.
    """
    if power and l2:
        out = enc.abs()
        out.div_(out.sum(1, keepdim=True).clamp_min(1e-24))
        return out.sqrt_().copysign_(enc)
    if power:
        return enc.abs().sqrt_().copysign_(enc)
    if l2:
        return enc / enc.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return enc


def max_pool(local: torch.Tensor) -> torch.Tensor:
    """Direct max pooling: (B, N, D) -> (B, D)."""
    return local.amax(1)


def sum_pool(local: torch.Tensor) -> torch.Tensor:
    """Direct sum pooling: (B, N, D) -> (B, D) (the signed square root comes in :func:`normalize`)."""
    return local.sum(1)


def spp(local_map: torch.Tensor, levels: tuple[int, ...] = (1, 2, 4)) -> torch.Tensor:
    """Spatial pyramid max pooling of a map of local features.

    local_map: (B, D, H, W) -> (B, D * sum(l * l)): for each level l the map is cut into l x l
    cells (as ``adaptive_max_pool2d`` does) and each cell max-pooled; level-major, then cell
    (row-major), then D.
    """
    parts = [F.adaptive_max_pool2d(local_map, lvl).flatten(2).transpose(1, 2).flatten(1)
             for lvl in levels]
    return torch.cat(parts, 1)


def concat_normalized(blocks: list[torch.Tensor]) -> torch.Tensor:
    """Join L2-normalised blocks (B, d_i) with equal weight; the result has unit L2 norm."""
    return torch.cat(blocks, 1) / math.sqrt(len(blocks))
