"""One-vs-rest linear SVMs on wide encodings, trained through the linear kernel.

Encodings are wide (65k-256k dims) and training sets small (5k-10k images), so the fast path is
the Gram matrix K = X X^T -- one GEMM (SYRK on the CPU, on the GPU when present) -- and a dual
solver per class on it (Liu et al. §4.1): libsvm's SMO through scikit-learn's
``SVC(kernel='precomputed')``, which minimises the hinge loss with L2 regularisation and an
unregularised bias, exactly the linear SVM. The primal weights are then recovered as
w_c = sum_i alpha_ci y_ci x_i, so scoring new encodings is one GEMM as well.

Encodings need not fit in memory: :func:`gram_blocks` builds K from row blocks (X_i X_j^T for
every pair of blocks, block i held while blocks j <= i stream past) and :func:`primal` the
weights W = A X from one more pass, so memory is bounded by two blocks and the n x n matrix.

Neither paper gives C: :func:`choose_c` picks it by k-fold cross-validation on the training
Gram matrix (``train-svm --C auto`` or a list), which costs SVM fits only, no new products.

Multi-label (VOC): one binary problem per class from labels in {1, -1, 0}; images labelled 0
(difficult) are left out of that class's training by default. Single-label: class c against the
rest; prediction is the argmax of the scores.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from featx.errors import InputError

log = logging.getLogger(__name__)


AUTO_C = (0.01, 0.1, 1.0, 10.0, 100.0)  # --C auto: the grid cross-validation chooses from


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


def binary_targets(labels: np.ndarray, num_classes: int, include_difficult: bool = False):
    """Per class: (indices used for training, targets in {1, -1})."""
    out = []
    for c in range(num_classes):
        if labels.ndim == 2:
            y = labels[:, c].astype(np.int64)
            if include_difficult:
                y = np.where(y == 0, 1, y)
            idx = np.nonzero(y != 0)[0]
            out.append((idx, y[idx]))
        else:
            out.append((np.arange(len(labels)), np.where(labels == c, 1, -1)))
    return out


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


def choose_c(k: np.ndarray, labels: np.ndarray, num_classes: int, cs, folds: int = 5,
             include_difficult: bool = False, seed: int = 0) -> tuple[float, dict[float, float]]:
    """C by k-fold cross-validation on the training split's Gram matrix (no new products):
    the C with the best mean validation score — mean 11-point AP for multi-label labels,
    top-1 accuracy for single-label — ties going to the smaller C. Returns (C, {C: score})."""
    from sklearn.model_selection import KFold, StratifiedKFold

    from featx.metrics import voc07_ap

    multilabel = labels.ndim == 2
    if multilabel:
        splitter = KFold(folds, shuffle=True, random_state=seed)
    else:
        smallest = int(np.bincount(labels).min(initial=len(labels))) if len(labels) else 0
        usable = max(2, min(folds, smallest))
        if usable < folds:
            log.warning("cross-validation in %d folds, not %d: the smallest class has %d "
                        "training image(s)", usable, folds, smallest)
        folds = usable
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(np.zeros(len(labels)), None if multilabel else labels))
    result: dict[float, float] = {}
    for c in cs:
        decision = np.zeros((len(labels), num_classes))
        for train, val in splits:
            for cls, (idx, y) in enumerate(binary_targets(labels[train], num_classes,
                                                          include_difficult)):
                if len(np.unique(y)) < 2:  # a fold without positives (or negatives)
                    decision[val, cls] = y[0] if len(y) else -1.0
                    continue
                support, alpha_y, bias = _fit(k[np.ix_(train, train)], idx, y, c)
                decision[val, cls] = k[np.ix_(val, train[idx[support]])] @ alpha_y + bias
        # a class with no positive has no AP: the mean is over the others (for every C alike)
        ap = voc07_ap(decision, labels) if multilabel else None
        result[float(c)] = ((float(np.nanmean(ap)) if np.isfinite(ap).any() else 0.0)
                            if multilabel else float((decision.argmax(1) == labels).mean()))
    best = max(result, key=lambda c: (result[c], -c))
    return best, result


def scores(x: np.ndarray, weights: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """(N, C) decision values."""
    return x @ weights.T + biases.astype(np.float32)
