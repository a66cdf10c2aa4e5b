"""Where in the image a score comes from: the maths of ``featx maps`` (drawing is in
:mod:`featx.plots`).

**Object confidence maps** (Yoo et al. §4.5): "to trace the weight of each patch, we compute
our final representation per patch using the corresponding single activation vector only and
compute the score from the pre-trained SVM classifiers". For the Fisher family (fisher, MPP,
NFK: with one vector, each is the improved FV of that vector) the patch score of class c is
w_c . FV(x_i) + b_c (:func:`patch_fisher_scores`). Each patch is a window of the backbone's
input size at its scale (what a dense fc vector sees; for a convolutional layer's map, two of
its units' strides, :func:`patch_window`), centred where :func:`row_centres` places it; a
pixel's confidence is the **mean** score of the windows (of every scale) that cover it (:func:`accumulate`; a sum would favour the centre, which more windows cover).

**Cross-layer contribution maps**: before normalisation the cross-layer vector is linear in
each position's outer product, so class c's linear score w_c . P splits over positions as
sum_k a_ik (W_c,k . x_i) (:func:`featx.encoders.contributions`); each position is the cell
of the guidance layer's unit in the image.

**Feature-map overlays** (Liu et al. Fig. 4): a channel's map resized to the image.

Boxes are (x0, y0, x1, y1) as fractions of the image's width and height.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from featx.encoders.fisher import fisher_vector, row_centres


def patch_window(sizes: list[int], counts: list[int], input_size: int) -> float:
    """The side in pixels of what one dense vector sees: the backbone's input size for a dense
    fc layer (a 1 x 1 map at some scale: each vector is the classifier applied to one window),
    else two strides of the map (its unit's cell and half a cell around it: the centre of a
    convolutional unit's receptive field, where its weight is)."""
    rows = [math.isqrt(n) for n in counts]
    if min(rows) == 1:
        return float(input_size)
    if len(set(rows)) > 1:
        lo, hi = rows.index(min(rows)), rows.index(max(rows))
        stride = (sizes[hi] - sizes[lo]) / (rows[hi] - rows[lo])
    else:
        stride = sizes[0] / rows[0]
    return 2.0 * stride


def window_boxes(sizes: list[int], counts: list[int], window: float, geometry=None
                 ) -> list[np.ndarray]:
    """Per pyramid scale, the (N_s, 4) boxes of its dense vectors (square maps of
    ``counts[s]`` vectors, row-major) for windows of ``window`` pixels of an input of
    ``sizes[s]`` pixels, clipped to the image."""
    rows = [math.isqrt(n) for n in counts]
    if any(h * h != n for h, n in zip(rows, counts)):
        raise ValueError(f"pyramid maps must be square to place them: {counts} vectors")
    out = []
    for c, h, s in zip(row_centres(sizes, rows, geometry), rows, sizes):
        c = c.numpy()
        half = window / s / 2
        y0, x0 = np.meshgrid(c - half, c - half, indexing="ij")
        boxes = np.stack([x0.ravel(), y0.ravel(), x0.ravel() + 2 * half, y0.ravel() + 2 * half], 1)
        out.append(np.clip(boxes, 0.0, 1.0))
    return out


def cell_boxes(rows: int, cols: int, first: tuple[int, int], shape: tuple[int, int]
               ) -> np.ndarray:
    """(rows * cols, 4) boxes of the units [first[0], first[0] + rows) x [first[1], ...) of
    a map of ``shape`` units spread evenly over the image, row-major."""
    h, w = shape
    r = np.arange(first[0], first[0] + rows)
    c = np.arange(first[1], first[1] + cols)
    y, x = np.meshgrid(r, c, indexing="ij")
    return np.stack([x.ravel() / w, y.ravel() / h, (x.ravel() + 1) / w, (y.ravel() + 1) / h], 1)


def accumulate(boxes: np.ndarray, values: np.ndarray, shape: tuple[int, int],
               mean: bool = True) -> np.ndarray:
    """A (H, W[, C]) map: each cell the mean (or sum) of the ``values`` ((N,) or (N, C)) of
    the boxes that cover its centre; cells no box covers are 0."""
    h, w = shape
    values = np.asarray(values, np.float64)
    squeeze = values.ndim == 1
    values = values[:, None] if squeeze else values
    total = np.zeros((h + 1, w + 1, values.shape[1]))
    count = np.zeros((h + 1, w + 1))
    # cell (i, j) has its centre at ((j + .5) / w, (i + .5) / h): the cells a box covers
    x0 = np.ceil(boxes[:, 0] * w - 0.5).astype(int).clip(0, w)
    x1 = np.floor(boxes[:, 2] * w - 0.5).astype(int).clip(-1, w - 1) + 1
    y0 = np.ceil(boxes[:, 1] * h - 0.5).astype(int).clip(0, h)
    y1 = np.floor(boxes[:, 3] * h - 0.5).astype(int).clip(-1, h - 1) + 1
    ok = (x1 > x0) & (y1 > y0)
    for a, b, c, d, v in zip(y0[ok], y1[ok], x0[ok], x1[ok], values[ok]):
        # 2-d difference array: +v at (a, c), -v at (a, d) and (b, c), +v at (b, d)
        total[a, c] += v
        total[a, d] -= v
        total[b, c] -= v
        total[b, d] += v
        count[a, c] += 1
        count[a, d] -= 1
        count[b, c] -= 1
        count[b, d] += 1
    total = total.cumsum(0).cumsum(1)[:h, :w]
    count = count.cumsum(0).cumsum(1)[:h, :w]
    if mean:
        total = np.where(count[..., None] > 0, total / np.maximum(count, 1)[..., None], 0.0)
    return total[..., 0] if squeeze else total


def patch_fisher_scores(x: torch.Tensor, gmm_params: tuple, weights: np.ndarray,
                        biases: np.ndarray, block: int = 256) -> np.ndarray:
    """(N, C) SVM scores of each vector of x (N, D) encoded alone as an improved FV."""
    w = torch.as_tensor(weights, dtype=torch.float32, device=x.device)
    b = torch.as_tensor(biases, dtype=torch.float32, device=x.device)
    out = []
    for s in range(0, x.shape[0], block):
        fv = fisher_vector(x[s:s + block, None, :], *gmm_params)  # (n, 2KD), one vector each
        out.append((fv @ w.T + b).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(biases)), np.float32)
