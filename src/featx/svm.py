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

from featx.configs import AUTO_C  # noqa: F401 (the --C auto grid, re-exported)
from featx.errors import InputError

log = logging.getLogger(__name__)


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


def choose_c(k: np.ndarray, labels: np.ndarray, num_classes: int, cs, folds: int = 5,
             include_difficult: bool = False, seed: int = 0) -> tuple[float, dict[float, float]]:
    """C by k-fold cross-validation on the training split's Gram matrix (no new products):
    the C with the best mean validation score — mean 11-point AP for multi-label labels,
    top-1 accuracy for single-label — ties going to the smaller C. Returns (C, {C: score})."""
    splits = cv_splits(labels, folds, seed)
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
        result[float(c)] = cv_score(decision, labels)
    return best_c(result), result


def cv_splits(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (train, validation) rows of each fold: stratified by class for single-label
    labels (in as many folds as the smallest class allows), shuffled by ``seed``."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if labels.ndim == 2:
        splitter = KFold(folds, shuffle=True, random_state=seed)
    else:
        smallest = int(np.bincount(labels).min(initial=len(labels))) if len(labels) else 0
        usable = max(2, min(folds, smallest))
        if usable < folds:
            log.warning("cross-validation in %d folds, not %d: the smallest class has %d "
                        "training image(s)", usable, folds, smallest)
        splitter = StratifiedKFold(usable, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), None if labels.ndim == 2 else labels))


def cv_score(decision: np.ndarray, labels: np.ndarray) -> float:
    """Mean 11-point AP (multi-label; a class with no positive has no AP, the mean is over
    the others, for every C alike) or top-1 accuracy of held-out decision values."""
    from featx.metrics import voc07_ap

    if labels.ndim == 2:
        ap = voc07_ap(decision, labels)
        return float(np.nanmean(ap)) if np.isfinite(ap).any() else 0.0
    return float((decision.argmax(1) == labels).mean())


def best_c(result: dict[float, float]) -> float:
    """The C of the best score, ties going to the smaller C."""
    return max(result, key=lambda c: (result[c], -c))


def scores(x: np.ndarray, weights: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """(N, C) decision values."""
    return x @ weights.T + biases.astype(np.float32)


# --- the primal solver: memory bounded by a row block, whatever n -------------------------

PRIMAL_TOL = 1e-5  # stop when each class's gradient norm is below this x its first one


class PrimalProblem:
    """L2-regularised squared-hinge SVMs of every class at once (LIBLINEAR's L2-loss SVM,
    with an unregularised bias as the dual solver has):

        f_c(w, b) = 1/2 |w|^2 + C sum_i s_ic max(0, 1 - y_ic (w . x_i + b))^2

    on this rank's rows, streamed from ``blocks()`` (a fresh iterator of (first row, float32
    (r, dim)) over rows 0..n_r-1); every product over the rows is all-reduced over ``group``,
    so the ranks together solve the problem of all rows. Memory: a block, the (C, dim)
    iterates, and the (n_r, C) margins -- never an n x n matrix."""

    def __init__(self, blocks, y: np.ndarray, s: np.ndarray, dim: int, c: float,
                 device: torch.device, group):
        self.blocks, self.dim, self.c, self.device, self.group = blocks, dim, c, device, group
        self.y = torch.from_numpy(np.asarray(y, np.float64))
        self.s = torch.from_numpy(np.asarray(s, np.float64))
        self.passes = 0

    def _pass(self, fn) -> None:
        self.passes += 1
        for start, x in self.blocks():
            fn(slice(start, start + len(x)), torch.from_numpy(x).to(self.device))

    def margins(self, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """z = X w^T + b (n_r, C) float64, from float32 products."""
        z = torch.zeros(self.y.shape, dtype=torch.float64)
        w32 = w.to(self.device, torch.float32)

        def one(rows, x):
            z[rows] = (x @ w32.T).double().cpu()
        self._pass(one)
        return z + b

    def loss_terms(self, z: torch.Tensor) -> torch.Tensor:
        """Per class, C sum_i s_i max(0, 1 - y_i z_i)^2 over this rank's rows (C,)."""
        m = (1 - self.y * z).clamp_min(0)
        return self.c * (self.s * m * m).sum(0)

    def xt(self, a: torch.Tensor) -> torch.Tensor:
        """X^T a summed over every rank: (C, dim) float64 for a (n_r, C)."""
        out = torch.zeros(a.shape[1], self.dim, dtype=torch.float64, device=self.device)
        a32 = a.to(self.device, torch.float32)

        def one(rows, x):
            out.add_((a32[rows].T @ x).double())
        self._pass(one)
        return out

    def objective(self, w, b, z) -> torch.Tensor:
        return 0.5 * (w * w).sum(1) + self.group.sum(self.loss_terms(z))

    def gradient(self, w, b, z):
        a = self.s * self.y * (1 - self.y * z).clamp_min(0)  # (n_r, C)
        both = self.group.sum(torch.cat([self.xt(a).cpu(), a.sum(0)[:, None]], 1))
        return w - 2 * self.c * both[:, :-1], -2 * self.c * both[:, -1]

    def hessian_times(self, active, vw, vb):
        """H v for each class: v + 2C X~^T (D (X~ v)), D the active rows (1 - y z > 0)."""
        u = active * (self.margins(vw, vb))  # (n_r, C), bias included
        both = self.group.sum(torch.cat([self.xt(u).cpu(), u.sum(0)[:, None]], 1))
        # a whisker on the bias keeps H positive definite when no row is active
        return vw + 2 * self.c * both[:, :-1], 2 * self.c * both[:, -1] + 1e-10 * vb


def fit_primal(problem: PrimalProblem, tol: float = PRIMAL_TOL, max_newton: int = 100,
               max_cg: int = 500) -> tuple[np.ndarray, np.ndarray, dict]:
    """Newton's method with conjugate-gradient steps and a backtracking line search (the
    line-search Newton of LIBLINEAR >= 2.40, Galli & Lin 2021), every class at once; each
    class stops when its gradient norm is below ``tol`` x its norm at w = 0. Returns weights
    (C, dim) float32, biases (C,) and counts (newton steps, CG steps, passes)."""
    k = problem.y.shape[1]
    w = torch.zeros(k, problem.dim, dtype=torch.float64)
    b = torch.zeros(k, dtype=torch.float64)
    z = torch.zeros(problem.y.shape, dtype=torch.float64)
    f = problem.objective(w, b, z)
    gw, gb = problem.gradient(w, b, z)
    norm0 = (gw.pow(2).sum(1) + gb.pow(2)).sqrt()
    newton = cg_total = 0
    for newton in range(1, max_newton + 1):
        gnorm = (gw.pow(2).sum(1) + gb.pow(2)).sqrt()
        todo = gnorm > tol * norm0
        if not todo.any():
            newton -= 1
            break
        active = problem.s * ((1 - problem.y * z) > 0)
        # conjugate gradients on H d = -g, per class to |r| <= 0.1 |g| (inexact Newton)
        dw, db = torch.zeros_like(w), torch.zeros_like(b)
        rw, rb = -gw * todo[:, None], -gb * todo
        pw, pb = rw.clone(), rb.clone()
        rr = rw.pow(2).sum(1) + rb.pow(2)
        going = todo & (rr.sqrt() > 0)
        for _ in range(max_cg):
            if not going.any():
                break
            cg_total += 1
            hw, hb = problem.hessian_times(active, pw, pb)
            php = (pw * hw).sum(1) + pb * hb
            alpha = torch.where(going & (php > 0), rr / php.clamp_min(1e-300), torch.zeros_like(rr))
            dw += alpha[:, None] * pw
            db += alpha * pb
            rw -= alpha[:, None] * hw
            rb -= alpha * hb
            rr_new = rw.pow(2).sum(1) + rb.pow(2)
            going = going & (rr_new.sqrt() > 0.1 * gnorm) & (php > 0)
            beta = torch.where(going, rr_new / rr.clamp_min(1e-300), torch.zeros_like(rr))
            pw = torch.where(going[:, None], rw + beta[:, None] * pw, pw)
            pb = torch.where(going, rb + beta * pb, pb)
            rr = rr_new
        # backtracking line search on f(w + t d), from the margins of w and of d
        zd = problem.margins(dw, db)
        slope = (gw * dw).sum(1) + gb * db
        step = torch.where(todo, torch.ones(k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64))
        for _ in range(30):
            wt, bt, zt = w + step[:, None] * dw, b + step * db, z + step * zd
            ft = problem.objective(wt, bt, zt)
            bad = todo & (ft > f + 0.01 * step * slope)
            if not bad.any():
                break
            step = torch.where(bad, step / 2, step)
        w, b, z, f = wt, bt, zt, torch.where(todo, ft, f)
        gw, gb = problem.gradient(w, b, z)
    info = {"newton": newton, "cg": cg_total, "passes": problem.passes,
            "objective": f.tolist()}
    return w.float().numpy(), b.numpy(), info


def primal_objective(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray,
                     s: np.ndarray, c: float) -> np.ndarray:
    """The squared-hinge objective of each class in float64 (a reference for the tests)."""
    z = x.astype(np.float64) @ w.astype(np.float64).T + b
    m = np.maximum(0, 1 - y * z)
    return 0.5 * (w.astype(np.float64) ** 2).sum(1) + c * (s * m * m).sum(0)


def check_both_labels(y: np.ndarray, s: np.ndarray) -> None:
    """Every class has positive and negative training rows (an SVM needs both)."""
    for cls in range(y.shape[1]):
        used = y[s[:, cls] > 0, cls]
        if not ((used > 0).any() and (used < 0).any()):
            raise InputError(f"class {cls} has {'no positive' if not (used > 0).any() else 'no negative'}"
                             " training images; an SVM needs both")


def choose_c_primal(make_problem, labels: np.ndarray, places: np.ndarray, num_classes: int,
                    cs, folds: int = 5, include_difficult: bool = False, seed: int = 0,
                    group=None) -> tuple[float, dict[float, float]]:
    """:func:`choose_c` with the primal solver: the same folds (over every rank's rows,
    ``labels``), each fold's validation rows left out of training by a zero weight;
    ``make_problem(y, s, c)`` builds this rank's :class:`PrimalProblem` (rows ``places`` of
    the whole). The decisions are gathered to score every C alike on every rank."""
    splits = cv_splits(labels, folds, seed)
    y, s = targets(labels[places], num_classes, include_difficult)
    result: dict[float, float] = {}
    for c in cs:
        decision = np.zeros((len(places), num_classes))
        for _, val in splits:
            held = np.isin(places, val)
            problem = make_problem(y, s * ~held[:, None], c)
            w, b, _ = fit_primal(problem)
            z = problem.margins(torch.from_numpy(w).double(), torch.from_numpy(b)).numpy()
            decision[held] = z[held]
        whole = np.zeros((len(labels), num_classes))
        for where, part in (group.objects((places, decision)) if group else [(places, decision)]):
            whole[where] = part
        result[float(c)] = cv_score(whole, labels)
    return best_c(result), result
