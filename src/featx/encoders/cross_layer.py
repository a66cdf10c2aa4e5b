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
from featx.encoders.pooling import normalize
from featx.linalg import bmm


def cross_layer_pool(local: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """Cross-layer pooling, unnormalised.

    local: (B, N, D) local features; guide: (B, N, K) guidance activations at the same N
    positions. Returns (B, K * D), P_k-major: out[b, k * D + d] = sum_i guide[b,i,k] local[b,i,d].
    """
    return bmm(guide.transpose(1, 2), local).flatten(1)


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
    # channels_last: oneDNN convolves (B, H, W, C) memory without reordering it to its blocked
    # layout, 15-20% faster here, and the result's (B, h, w, D') memory is the (B, N, D') the
    # pooling GEMM reads (docs/benchmarks.md)
    x = acts[:, :, r.start:, c.start:].contiguous(memory_format=torch.channels_last)
    out = F.conv2d(x, weight.contiguous(memory_format=torch.channels_last), bias,
                   stride=(r.stride, c.stride))
    return out[:, :, :r.count, :c.count]


def guide_at(guide: torch.Tensor, grid: CrossLayerGrid) -> torch.Tensor:
    """Layer t+1's activations at the grid's positions: (B, K, h', w') -> (B, K, h, w)."""
    r, c = grid.rows, grid.cols
    return guide[:, :, r.first:r.first + r.count, c.first:c.first + c.count]


# --- scheme 2 (Liu, Shen, van den Hengel 2016): a trained guidance layer on region features ---

def vectors_as_map(x: torch.Tensor) -> torch.Tensor:
    """Dense pyramid vectors of one scale, (B, h*w, D) row-major on a square map, as a
    (B, D, h, w) feature map."""
    b, n, d = x.shape
    h = math.isqrt(n)
    if h * h != n:
        raise InputError(f"{n} vectors do not form a square map; scheme 2 needs the pyramid's "
                         "square inputs")
    return x.transpose(1, 2).reshape(b, d, h, h)


def guidance_maps(local_map: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
                  ) -> torch.Tensor:
    """The guidance layer: ReLU(conv(local_map)), a K x D x k x k convolution with 'same'
    padding (k odd): (B, D, h, w) -> (B, K, h, w)."""
    return F.relu(F.conv2d(local_map, weight, bias, padding=weight.shape[-1] // 2))


def guided_pool(scales: list[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor
                ) -> torch.Tensor:
    """Cross-layer pooling scheme 2, unnormalised: the region features x_i of every scale
    ((B, N_s, D) each) pooled under the guidance a_i = ReLU(conv(x))_i they produce, summed
    over scales: (B, K * D), P_k-major as :func:`cross_layer_pool`."""
    out = 0
    for x in scales:
        a = guidance_maps(vectors_as_map(x), weight, bias)
        out = out + cross_layer_pool(x, a.flatten(2).transpose(1, 2))
    return out


def contributions(local: torch.Tensor, guide: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Each position's share of a linear score of the unnormalised pooled vector: with W the
    (K, D) view of ``w`` (K * D, P_k-major), position i contributes sum_k a_ik (W_k . x_i),
    and the contributions sum to w . cross_layer_pool(local, guide).
    local (B, N, D), guide (B, N, K) -> (B, N)."""
    k, d = guide.shape[2], local.shape[2]
    return ((local @ w.view(k, d).T) * guide).sum(2)


def score_contributions(local: torch.Tensor, guide: torch.Tensor, weights: torch.Tensor,
                        power: bool = True, l2: bool = True
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """What each position gives the score an SVM computes on the *normalised* pooled vector.

    With P = sum_i P_i (P_i = a_i x_i^T, :func:`cross_layer_pool`), s the signed square root
    (identity without ``power``) and the score w . s(P) / ||s(P)|| (without ``l2``: w . s(P)),
    position i's contribution is its leave-one-out effect on the score at the image's norm:

        c_i = w . (s(P) - s(P - P_i)) / ||s(P)||,

    and what no single position owns is the interaction term w . (s(P) - sum_i (s(P) -
    s(P - P_i))) / ||s(P)||; the contributions and the interaction sum to the score exactly.
    s is monotone, so c_i has the sign of removing position i (with s linear -- no power
    transform -- c_i is the linear share sum_k a_ik (w_k . x_i) / ||P|| and the interaction 0).
    local (B, N, D), guide (B, N, K), weights (C, K * D) P_k-major ->
    (contributions (B, N, C), interaction (B, C))."""
    b, n, d = local.shape
    k = guide.shape[2]
    p = cross_layer_pool(local, guide)  # (B, K * D)

    def s(v: torch.Tensor) -> torch.Tensor:  # the encodings' signed square root, no L2
        return normalize(v, power=power, l2=False)

    sp = s(p)
    scale = sp.norm(dim=1).clamp_min(torch.finfo(sp.dtype).tiny) if l2 else \
        torch.ones(b, dtype=sp.dtype, device=sp.device)
    w = weights.to(sp.dtype).T  # (K * D, C)
    contrib, rest = [], []
    for j in range(b):  # (N, K * D) at a time: one image's positions
        per = (guide[j, :, :, None] * local[j, :, None, :]).reshape(n, k * d)
        e = sp[j] - s(p[j] - per)
        contrib.append(e @ w / scale[j])
        rest.append((sp[j] - e.sum(0)) @ w / scale[j])
    return torch.stack(contrib), torch.stack(rest)
