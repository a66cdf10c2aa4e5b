"""The dual path (Liu et al. §4.1): the Gram matrix K = X X^T (from row blocks when X does not fit), libsvm's SMO on it per class, the primal weights W = A X recovered; the targets of a one-vs-rest problem."""

from __future__ import annotations

import numpy as np
import torch

from featx.errors import InputError


def gram(x: np.ndarray, device: torch.device) -> np.ndarray:
    """K = X X^T in float64 (accumulated from float32 products of row blocks)."""
    n = x.shape[0]
    if device.type == "cpu":
        k = np.zeros((n, n))
        for s in range(0, x.shape[1], 16384):  # column blocks: SYRK, float64 sums
            blk = np.ascontiguousarray(x[:, s:s + 16384])
            k += blk @ blk.T
        return k
    xt = torch.from_numpy(x).to(device)
    k = torch.zeros(n, n, dtype=torch.float64, device=device)
    for s in range(0, x.shape[1], 16384):
        blk = xt[:, s:s + 16384]
        k += (blk @ blk.T).double()
    return k.cpu().numpy()


def gram_blocks(blocks, n: int, device: torch.device) -> np.ndarray:
    """K = X X^T in float64 from row blocks: ``blocks()`` returns a fresh iterator of
    (first row, float32 (r, dim)) covering rows 0..n-1 in order. Reads the blocks
    nb (nb + 1) / 2 times for nb blocks; one block (nb = 1) is :func:`gram`."""
    k = np.zeros((n, n))
    for i, xi in blocks():
        ri = slice(i, i + len(xi))
        for j, xj in blocks():
            if j > i:
                break
            rj = slice(j, j + len(xj))
            k[ri, rj] = gram(xi, device) if j == i else _cross(xi, xj, device)
            k[rj, ri] = k[ri, rj].T
    return k


def _cross(a: np.ndarray, b: np.ndarray, device: torch.device) -> np.ndarray:
    """A B^T in float64, summed over column blocks of float32 products (as :func:`gram`)."""
    out = np.zeros((len(a), len(b)))
    ta, tb = (torch.from_numpy(a).to(device), torch.from_numpy(b).to(device))
    for s in range(0, a.shape[1], 16384):
        out += (ta[:, s:s + 16384] @ tb[:, s:s + 16384].T).double().cpu().numpy()
    return out


def primal(coefs: np.ndarray, blocks) -> np.ndarray:
    """W = A X (C, dim) float32 from row blocks of X and dual coefficients A (C, n)."""
    w = None
    for i, x in blocks():
        part = coefs[:, i:i + len(x)].astype(np.float32) @ x
        w = part if w is None else w + part
    return w


def targets(labels: np.ndarray, num_classes: int, include_difficult: bool = False
            ) -> tuple[np.ndarray, np.ndarray]:
    """(n, C) targets in {1, -1} and (n, C) weights in {1, 0} (0: left out of that class's
    training, a difficult image) for every class at once. Multi-label labels are 1 / -1 / 0
    (0: difficult, left out unless ``include_difficult`` counts it positive); single-label,
    class c against the rest."""
    if labels.ndim == 2:
        y = labels.astype(np.int64)
        if include_difficult:
            y = np.where(y == 0, 1, y)
        return np.where(y > 0, 1.0, -1.0), (y != 0).astype(np.float64)
    y = np.where(labels[:, None] == np.arange(num_classes)[None], 1.0, -1.0)
    return y, np.ones_like(y)


def binary_targets(labels: np.ndarray, num_classes: int, include_difficult: bool = False):
    """Per class: (indices used for training, targets in {1, -1}) -- :func:`targets`, one
    class at a time."""
    y, s = targets(labels, num_classes, include_difficult)
    return [(np.nonzero(s[:, c])[0], y[s[:, c] > 0, c].astype(np.int64))
            for c in range(num_classes)]


def _fit(k: np.ndarray, idx: np.ndarray, y: np.ndarray, c: float):
    """One binary SVM on the Gram matrix rows/columns ``idx``: (support indices into idx,
    alpha_i y_i, bias)."""
    from sklearn.svm import SVC

    svm = SVC(C=c, kernel="precomputed", tol=1e-3, cache_size=64)
    svm.fit(k[np.ix_(idx, idx)], y)
    # sklearn orders classes [-1, 1]: its decision function is positive for class 1
    return svm.support_, svm.dual_coef_[0], svm.intercept_[0]


def fit_dual(k: np.ndarray, labels: np.ndarray, num_classes: int, c: float = 1.0,
             include_difficult: bool = False, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest SVMs on the Gram matrix: dual coefficients alpha_i y_i (C, n) and biases
    (C,); the weights are then W = A X (:func:`primal`)."""
    coefs = np.zeros((num_classes, len(k)))
    biases = np.zeros(num_classes)
    for cls, (idx, y) in enumerate(binary_targets(labels, num_classes, include_difficult)):
        if len(np.unique(y)) < 2:
            raise InputError(f"class {cls} has {'no positive' if (y < 0).all() else 'no negative'}"
                             " training images; an SVM needs both")
        support, alpha_y, bias = _fit(k, idx, y, c)
        coefs[cls, idx[support]] = alpha_y
        biases[cls] = bias
        if progress is not None:
            progress()
    return coefs, biases


def train_ovr(x: np.ndarray, labels: np.ndarray, num_classes: int, c: float = 1.0,
              device: torch.device | str = "cpu", include_difficult: bool = False,
              progress=None, k: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weights (C, dim) float32 and biases (C,) of one-vs-rest linear SVMs on encodings in
    memory; ``k`` is the Gram matrix of ``x`` when already computed."""
    k = gram(x, torch.device(device)) if k is None else k
    coefs, biases = fit_dual(k, labels, num_classes, c, include_difficult, progress)
    return primal(coefs, lambda: iter([(0, x)])), biases
