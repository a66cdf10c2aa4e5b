"""Image encodings from local features: cross-layer pooling and the pooling baselines.

All functions are pure, work on torch tensors on any device, and are batched over images.

**Cross-convolutional-layer pooling** (Liu, Shen, van den Hengel, "The Treasure beneath
Convolutional Layers: Cross-convolutional-layer Pooling for Image Classification", CVPR 2015,
§3.2, Eq. 2). With x_i the D-d (PCA-reduced) local feature at position i -- the m x n x D_t
subarray of layer t around the unit that layer t+1 computes from it -- and a_i the K = D_{t+1}
activations of layer t+1 at that unit,

    P = [P_1, ..., P_K],    P_k = sum_i x_i a_{i,k}     (P = A^T X: one GEMM per image),

flattened P_k-major (index k * D + d): 500-d local features and conv5's 256 channels give
128,000 dims. Then signed square root and L2 (:func:`normalize`).

**Baselines** (Liu Table 7): direct max pooling and sum pooling (then signed square root) of the
same local features, and spatial pyramid max pooling over 1x1, 2x2 and 4x4 grids of their
positions. **Feature-sign quantisation** (Liu §4.3.3) keeps sign(P) in {-1, 0, 1}, stored at 2
bits per dimension (:func:`pack_sign`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def cross_layer_pool(local: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """Cross-layer pooling, unnormalised.

    local: (B, N, D) local features; guide: (B, N, K) guidance activations at the same N
    positions. Returns (B, K * D), P_k-major: out[b, k * D + d] = sum_i guide[b,i,k] local[b,i,d].
    """
    return torch.bmm(guide.transpose(1, 2), local).flatten(1)


def normalize(enc: torch.Tensor, power: bool = True, l2: bool = True) -> torch.Tensor:
    """Signed square root (``power``) then L2 normalisation (``l2``) of each row of (B, dim)."""
    if power:
        enc = enc.sign() * enc.abs().sqrt()
    if l2:
        enc = enc / enc.norm(dim=1, keepdim=True).clamp_min(1e-12)
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


def pack_sign(enc: np.ndarray) -> np.ndarray:
    """sign(enc) in {-1, 0, 1} packed at 2 bits per dimension: (B, dim) -> uint8 (B, ceil(dim/4)).

    Codes: 0 -> 0b00, +1 -> 0b01, -1 -> 0b10; dimension j sits in byte j // 4 at bits
    2 * (j % 4).
    """
    b, dim = enc.shape
    codes = np.where(enc > 0, 1, np.where(enc < 0, 2, 0)).astype(np.uint8)
    pad = (-dim) % 4
    codes = np.pad(codes, ((0, 0), (0, pad))).reshape(b, -1, 4)
    return (codes[..., 0] | codes[..., 1] << 2 | codes[..., 2] << 4 | codes[..., 3] << 6).astype(np.uint8)


def unpack_sign(packed: np.ndarray, dim: int) -> np.ndarray:
    """Inverse of :func:`pack_sign`: uint8 (B, ceil(dim/4)) -> float32 (B, dim) in {-1, 0, 1}."""
    shifts = np.array([0, 2, 4, 6], np.uint8)
    codes = (packed[..., None] >> shifts) & 3
    codes = codes.reshape(packed.shape[0], -1)[:, :dim]
    return np.where(codes == 1, 1.0, np.where(codes == 2, -1.0, 0.0)).astype(np.float32)
