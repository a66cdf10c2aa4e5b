"""Standardisation: each dimension to zero mean and unit variance on the training rows, folded into the weights."""

from __future__ import annotations

import numpy as np
import torch


def moments(blocks, dim: int, group=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale (dim,) float64 of the rows ``blocks()`` yields, summed over every rank
    of ``group``: the scale is the standard deviation times sqrt(dim) (1 x sqrt(dim) where a
    dimension is constant), so that a standardised row's expected squared norm is 1, as an
    L2-normalised encoding's: C means the same with or without ``--standardize`` (scikit-
    learn's ``StandardScaler`` would leave it ``dim``, and the useful Cs ``dim`` times
    smaller). Sums in float64 of encodings of unit norm: no cancellation worth a shift."""
    total = torch.zeros(2, dim, dtype=torch.float64)
    n = 0
    for _, x in blocks():
        x = torch.from_numpy(x).double()
        total[0] += x.sum(0)
        total[1] += (x * x).sum(0)
        n += len(x)
    if group is not None:
        total, n = group.sum(total), int(group.sum(torch.tensor([float(n)], dtype=torch.float64)))
    mean = total[0] / max(n, 1)
    std = (total[1] / max(n, 1) - mean * mean).clamp_min(0).sqrt()
    mean, std = mean.numpy(), std.numpy()
    std = np.where(std > 1e-12 * np.maximum(1, np.abs(mean)), std, 1.0)
    return mean, std * np.sqrt(dim)


def standardized(blocks, mean: np.ndarray, scale: np.ndarray):
    """``blocks`` with each row standardised ((x - mean) / scale, float32)."""
    m, sc = mean.astype(np.float32), scale.astype(np.float32)
    return lambda: ((i, (x - m) / sc) for i, x in blocks())


def fold_standardization(weights: np.ndarray, biases: np.ndarray, mean: np.ndarray,
                         scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The weights and biases that score raw rows as the model scores standardised ones:
    w' = w / scale, b' = b - w' . mean (so every scorer -- evaluate, maps, predict -- needs
    nothing but the weights)."""
    w = weights.astype(np.float64) / scale
    return w.astype(np.float32), biases - w @ mean
