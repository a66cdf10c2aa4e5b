"""Cross-convolutional-layer pooling (Liu, Shen, van den Hengel, "The Treasure beneath
Convolutional Layers: Cross-convolutional-layer Pooling for Image Classification", CVPR 2015,
§3.2, Eq. 2).

With x_i the D-d (PCA-reduced) local feature at position i -- the m x n x D_t subarray of
layer t around the unit that layer t+1 computes from it -- and a_i the K = D_{t+1} activations
of layer t+1 at that unit,

    P = [P_1, ..., P_K],    P_k = sum_i x_i a_{i,k}     (P = A^T X: one GEMM per image),

flattened P_k-major (index k * D + d): 500-d local features and conv5's 256 channels give
128,000 dims; then signed square root and L2 (:func:`featx.encoders.normalize`).

**Geometry.** The PCA projection of all m x n subarrays is one convolution with the components
as filters (about 2x faster than unfold + matmul on CPU). Where layer t+1's grid is coarser than
layer t's by a stride s (ResNet stages), the subarrays are centred on the units of layer t+1:
unit p of layer t+1 sits over unit s * p of layer t; positions whose subarray would leave the
map are omitted, as on a single grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from featx.errors import InputError


def cross_layer_pool(local: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """Cross-layer pooling, unnormalised.

    local: (B, N, D) local features; guide: (B, N, K) guidance activations at the same N
    positions. Returns (B, K * D), P_k-major: out[b, k * D + d] = sum_i guide[b,i,k] local[b,i,d].
    """
    return torch.bmm(guide.transpose(1, 2), local).flatten(1)


@dataclass(frozen=True)
class _Axis:
    """Where the subarrays of layer t meet the units of layer t+1, along one axis."""

    stride: int  # s: units of layer t per unit of layer t+1
    first: int  # p0: first unit of layer t+1 whose subarray fits
    start: int  # t0 = s * p0 - m // 2: first subarray's top/left row of layer t
    count: int  # positions along the axis

    @classmethod
    def of(cls, size_t: int, size_g: int, m: int) -> _Axis:
        if size_t % size_g:
            raise InputError(f"layer grids {size_t} and {size_g} are not related by an integer "
                             "stride; choose another layer pair")
        s, half = size_t // size_g, m // 2
        p0 = math.ceil(half / s)
        t0 = s * p0 - half
        count = min((size_t - t0 - m) // s + 1, size_g - p0)
        if count < 1:
            raise InputError(f"{m}-wide subarrays do not fit a {size_t}-unit map")
        return cls(s, p0, t0, count)


@dataclass(frozen=True)
class CrossLayerGrid:
    """The positions of a cross-layer pair: m x n subarrays of a (H, W) map of layer t under
    the units of a (h, w) map of layer t+1."""

    rows: _Axis
    cols: _Axis

    @classmethod
    def of(cls, local_hw: tuple[int, int], guide_hw: tuple[int, int],
           subarray: tuple[int, int]) -> CrossLayerGrid:
        return cls(_Axis.of(local_hw[0], guide_hw[0], subarray[0]),
                   _Axis.of(local_hw[1], guide_hw[1], subarray[1]))

    @property
    def positions(self) -> int:
        return self.rows.count * self.cols.count


def project_subarrays(acts: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                      grid: CrossLayerGrid) -> torch.Tensor:
    """Projected subarrays at the grid's positions: (B, C, H, W) -> (B, D', h, w).

    ``weight``, ``bias``: a projection as conv2d parameters (:meth:`featx.fit.PCA.as_conv`).
    """
    r, c = grid.rows, grid.cols
    out = F.conv2d(acts[:, :, r.start:, c.start:], weight, bias, stride=(r.stride, c.stride))
    return out[:, :, :r.count, :c.count]


def guide_at(guide: torch.Tensor, grid: CrossLayerGrid) -> torch.Tensor:
    """Layer t+1's activations at the grid's positions: (B, K, h', w') -> (B, K, h, w)."""
    r, c = grid.rows, grid.cols
    return guide[:, :, r.first:r.first + r.count, c.first:c.first + c.count]
