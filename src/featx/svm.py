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
             include_difficult: bool = False, seed: int = 0
             ) -> tuple[float, dict[float, tuple[float, float]], np.ndarray]:
    """C by k-fold cross-validation on the training split's Gram matrix (no new products):
    :func:`choose` on the held-out decision values of every C (hinge loss). Returns (C,
    {C: (score, held-out loss)}, the held-out decision values of that C)."""
    splits = cv_splits(labels, folds, seed)
    decisions: dict[float, np.ndarray] = {}
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
        decisions[float(c)] = decision
    c, table = choose(decisions, labels, "hinge", include_difficult)
    return c, table, decisions[c]


def fold_count(labels: np.ndarray, folds: int) -> int:
    """The folds cross-validation uses: ``folds``, or as many as the smallest class of
    single-label ``labels`` allows (2 at least)."""
    if labels.ndim == 2:
        return folds
    smallest = int(np.bincount(labels).min(initial=len(labels))) if len(labels) else 0
    return max(2, min(folds, smallest))


def cv_splits(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (train, validation) rows of each fold: stratified by class for single-label
    labels (in as many folds as the smallest class allows), shuffled by ``seed``."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if labels.ndim == 2:
        splitter = KFold(folds, shuffle=True, random_state=seed)
    else:
        smallest = int(np.bincount(labels).min(initial=len(labels))) if len(labels) else 0
        usable = fold_count(labels, folds)
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


def held_out_loss(decision: np.ndarray, labels: np.ndarray, loss: str,
                  include_difficult: bool = False) -> float:
    """The mean loss of held-out decision values (n, C) under the loss the model was trained
    with (:data:`LOSSES`): per (image, class) for the one-vs-rest losses, over the images
    a class was trained on; per image for the multinomial loss."""
    y, s = targets(labels, decision.shape[1], include_difficult)
    z = torch.from_numpy(np.asarray(decision, np.float64))
    per = LOSSES[loss].rows(torch.from_numpy(y), torch.from_numpy(s), z).numpy()
    return float(per.sum() / max(s.sum() if not LOSSES[loss].joint else len(z), 1))


def choose(decisions: dict[float, np.ndarray], labels: np.ndarray, loss: str,
           include_difficult: bool = False) -> tuple[float, dict[float, tuple[float, float]]]:
    """The C of the best held-out score (mean 11-point AP for multi-label labels, top-1
    accuracy for single-label); among the Cs within one held-out image of it (1/n of the
    score), the one of the lowest mean held-out loss (:func:`held_out_loss`), then the
    smaller C. On a flat grid the loss decides: a C so small that every score sits at the
    bias ranks as well but loses far more. Returns (C, {C: (score, loss)})."""
    table = {c: (cv_score(d, labels), held_out_loss(d, labels, loss, include_difficult))
             for c, d in decisions.items()}
    return best_c(table, len(labels)), table


def best_c(table: dict[float, tuple[float, float]], n: int) -> float:
    """The C of the best score; ties (within 1/n, one of n held-out images) to the lowest
    held-out loss, then to the smaller C."""
    top = max(score for score, _ in table.values())
    tied = [c for c, (score, _) in table.items() if score >= top - 1 / n - 1e-12]
    return min(tied, key=lambda c: (table[c][1], c))


def row_digests(x: np.ndarray) -> np.ndarray:
    """A 64-bit digest of each row of ``x`` (n, dim), of its values rounded to float16: the
    same photo extracted twice gives the same encoding, so evaluate can tell a test image
    that is a copy of a training image (train-svm records its rows' digests)."""
    import hashlib

    half = np.ascontiguousarray(x, dtype=np.float16)
    return np.array([int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(),
                                    "little") for row in half], dtype=np.uint64)


def scores(x: np.ndarray, weights: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """(N, C) decision values; a row's are the same bits whichever rows it is scored with
    (BLAS takes a single row down another path, matrix-vector, whose sums round otherwise:
    it is scored as a pair), so predict's scores of a photo are evaluate's."""
    if len(x) == 1:
        return (np.concatenate([x, x]) @ weights.T + biases.astype(np.float32))[:1]
    return x @ weights.T + biases.astype(np.float32)


# --- the losses: per (image, class) values, derivatives and curvature in the decision values

class Loss:
    """A loss of decision values z (n, C) against targets y in {1, -1} with weights s (0:
    left out), float64 tensors: ``rows`` its values (n, C) (summed: the data term of the
    objective), ``dz`` its derivative in z, ``curvature`` what :meth:`hess` needs for the
    Hessian in z times u. ``joint``: the classes share one problem (the multinomial loss);
    otherwise each class is a problem of its own."""

    joint = False

    def rows(self, y, s, z):
        raise NotImplementedError

    def dz(self, y, s, z):
        raise NotImplementedError

    def curvature(self, y, s, z):
        raise NotImplementedError

    def hess(self, curv, u):
        return curv * u


class Hinge(Loss):
    """max(0, 1 - y z): the dual solver's loss (held-out values only: libsvm trains it)."""

    def rows(self, y, s, z):
        return s * (1 - y * z).clamp_min(0)


class SquaredHinge(Loss):
    """max(0, 1 - y z)^2: LIBLINEAR's L2-loss SVM, the primal solver's SVM loss."""

    def rows(self, y, s, z):
        m = (1 - y * z).clamp_min(0)
        return s * m * m

    def dz(self, y, s, z):
        return -2 * (s * y * (1 - y * z).clamp_min(0))

    def curvature(self, y, s, z):
        return 2 * (s * ((1 - y * z) > 0))


class Logistic(Loss):
    """log(1 + exp(-y z)), each class against the rest: P(class c) = sigmoid(z_c)."""

    def rows(self, y, s, z):
        return s * torch.nn.functional.softplus(-y * z)

    def dz(self, y, s, z):
        return -s * y * torch.sigmoid(-y * z)

    def curvature(self, y, s, z):
        p = torch.sigmoid(z)
        return s * p * (1 - p)


class Multinomial(Loss):
    """-log softmax(z)_label: one problem over every class (single-label data only); an
    image's weight is its s (equal across classes). P(class c) = softmax(z)_c."""

    joint = True

    def rows(self, y, s, z):
        picked = (z * (y > 0)).sum(1, keepdim=True)
        return s[:, :1] * (torch.logsumexp(z, 1, keepdim=True) - picked)

    def dz(self, y, s, z):
        return s * (torch.softmax(z, 1) - (y > 0).double())

    def curvature(self, y, s, z):
        return s, torch.softmax(z, 1)

    def hess(self, curv, u):
        s, p = curv
        pu = p * u
        return s * (pu - p * pu.sum(1, keepdim=True))


# every loss by the name ``svm.h5`` records
LOSSES: dict[str, Loss] = {"hinge": Hinge(), "squared hinge": SquaredHinge(),
                           "logistic": Logistic(), "multinomial": Multinomial()}


# --- the primal solver: memory bounded by a row block, whatever n -------------------------

PRIMAL_TOL = 1e-5  # stop when each class's gradient norm is below this x its first one


class PrimalProblem:
    """L2-regularised linear models of every class at once, with an unregularised bias (as
    the dual solver has):

        f_c(w, b) = 1/2 |w|^2 + C sum_i s_ic loss(y_ic, w . x_i + b)

    ``loss`` (:data:`LOSSES`): ``squared hinge`` (LIBLINEAR's L2-loss SVM), ``logistic``
    (one-vs-rest) or ``multinomial`` (one problem over the classes, 1/2 |W|_F^2 + C sum_i
    -log softmax(W x_i + b)_label: scikit-learn's ``LogisticRegression``). The rows are
    this rank's, streamed from ``blocks()`` (a fresh iterator of (first row, float32 (r,
    dim)) over rows 0..n_r-1); every product over the rows is all-reduced over ``group``, so
    the ranks together solve the problem of all rows. Memory: a block, the (C, dim) iterates
    and the (n_r, C) margins -- never an n x n matrix."""

    def __init__(self, blocks, y: np.ndarray, s: np.ndarray, dim: int, c: float,
                 device: torch.device, group, loss: str = "squared hinge"):
        self.blocks, self.dim, self.c, self.device, self.group = blocks, dim, c, device, group
        self.y = torch.from_numpy(np.asarray(y, np.float64))
        self.s = torch.from_numpy(np.asarray(s, np.float64))
        self.loss = LOSSES[loss]
        self.passes = 0

    def per_class(self, t: torch.Tensor) -> torch.Tensor:
        """A per-class sum (C,) as the solver reduces it: each class's own, or, when the
        classes are one problem, their total for every class."""
        return t.sum().expand_as(t) if self.loss.joint else t

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
        """Per class, C sum_i s_i loss(y_i, z_i) over this rank's rows (C,)."""
        return self.c * self.per_class(self.loss.rows(self.y, self.s, z).sum(0))

    def xt(self, a: torch.Tensor) -> torch.Tensor:
        """X^T a summed over every rank: (C, dim) float64 for a (n_r, C)."""
        out = torch.zeros(a.shape[1], self.dim, dtype=torch.float64, device=self.device)
        a32 = a.to(self.device, torch.float32)

        def one(rows, x):
            out.add_((a32[rows].T @ x).double())
        self._pass(one)
        return out

    def dot(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The inner product of weights, row by row: (C,)."""
        return (a * b).sum(1)

    def inner(self, aw, ab, bw, bb) -> torch.Tensor:
        """<(aw, ab), (bw, bb)> of each class, weights and bias (as the solver reduces it)."""
        return self.per_class(self.dot(aw, bw) + ab * bb)

    def objective(self, w, b, z) -> torch.Tensor:
        return self.per_class(0.5 * self.dot(w, w)) + self.group.sum(self.loss_terms(z))

    def gradient(self, w, b, z):
        a = self.loss.dz(self.y, self.s, z)  # (n_r, C)
        both = self.group.sum(torch.cat([self.xt(a).cpu(), a.sum(0)[:, None]], 1))
        return w + self.c * both[:, :-1], self.c * both[:, -1]

    def curvature(self, z):
        """What :meth:`hessian_times` needs at the margins z (fixed for a Newton step)."""
        return self.loss.curvature(self.y, self.s, z)

    def hessian_times(self, curv, vw, vb):
        """H v for each class: v + C X~^T (D (X~ v)), D the loss's curvature in z."""
        u = self.loss.hess(curv, self.margins(vw, vb))  # (n_r, C), bias included
        both = self.group.sum(torch.cat([self.xt(u).cpu(), u.sum(0)[:, None]], 1))
        # a whisker on the bias keeps H positive definite when no row is active
        return vw + self.c * both[:, :-1], self.c * both[:, -1] + 1e-10 * vb


class KernelProblem(PrimalProblem):
    """:class:`PrimalProblem` in the span of the training rows: w = X^T beta, on the Gram
    matrix K = X X^T (n x n, float64) -- margins K beta + b, <v, v'> = beta^T K beta'. Newton's
    iterates never leave that span (every gradient and Hessian product lies in it), so
    :func:`fit_primal` takes the same steps as on X, each a product with K instead of a pass
    over the rows: for n << dim the fast path, as the dual is for the hinge; the weights are
    then W = beta X (:func:`primal`). Rows of weight 0 keep beta_i = 0 (they stay out)."""

    def __init__(self, k: np.ndarray, y: np.ndarray, s: np.ndarray, c: float,
                 loss: str = "logistic"):
        from featx.dist import SINGLE

        super().__init__(None, y, s, len(k), c, torch.device("cpu"), SINGLE, loss)
        self.k = torch.from_numpy(np.asarray(k, np.float64))

    def margins(self, w, b):
        self.passes += 1
        return self.k @ w.T.double() + b

    def xt(self, a):  # X^T a has coefficients a
        return a.T.double().clone()

    def dot(self, a, b):
        return ((a @ self.k) * b).sum(1)


def fit_primal(problem: PrimalProblem, tol: float = PRIMAL_TOL, max_newton: int = 100,
               max_cg: int = 500) -> tuple[np.ndarray, np.ndarray, dict]:
    """Newton's method with conjugate-gradient steps and a backtracking line search (the
    line-search Newton of LIBLINEAR >= 2.40, Galli & Lin 2021), every class at once; each
    class stops when its gradient norm is below ``tol`` x its norm at w = 0 (a joint loss's
    classes together, by the norm of the whole gradient). Returns weights
    (C, dim) float32, biases (C,) and counts (newton steps, CG steps, passes)."""
    k = problem.y.shape[1]
    w = torch.zeros(k, problem.dim, dtype=torch.float64)
    b = torch.zeros(k, dtype=torch.float64)
    z = torch.zeros(problem.y.shape, dtype=torch.float64)
    f = problem.objective(w, b, z)
    gw, gb = problem.gradient(w, b, z)
    inner = problem.inner
    norm0 = inner(gw, gb, gw, gb).sqrt()
    newton = cg_total = 0
    for newton in range(1, max_newton + 1):
        gnorm = inner(gw, gb, gw, gb).sqrt()
        todo = gnorm > tol * norm0
        if not todo.any():
            newton -= 1
            break
        curv = problem.curvature(z)
        # conjugate gradients on H d = -g, per class to |r| <= 0.1 |g| (inexact Newton)
        dw, db = torch.zeros_like(w), torch.zeros_like(b)
        rw, rb = -gw * todo[:, None], -gb * todo
        pw, pb = rw.clone(), rb.clone()
        rr = inner(rw, rb, rw, rb)
        going = todo & (rr.sqrt() > 0)
        for _ in range(max_cg):
            if not going.any():
                break
            cg_total += 1
            hw, hb = problem.hessian_times(curv, pw, pb)
            php = inner(pw, pb, hw, hb)
            alpha = torch.where(going & (php > 0), rr / php.clamp_min(1e-300), torch.zeros_like(rr))
            dw += alpha[:, None] * pw
            db += alpha * pb
            rw -= alpha[:, None] * hw
            rb -= alpha * hb
            rr_new = inner(rw, rb, rw, rb)
            going = going & (rr_new.sqrt() > 0.1 * gnorm) & (php > 0)
            beta = torch.where(going, rr_new / rr.clamp_min(1e-300), torch.zeros_like(rr))
            pw = torch.where(going[:, None], rw + beta[:, None] * pw, pw)
            pb = torch.where(going, rb + beta * pb, pb)
            rr = rr_new
        # backtracking line search on f(w + t d), from the margins of w and of d
        zd = problem.margins(dw, db)
        slope = inner(gw, gb, dw, db)
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
    gnorm = inner(gw, gb, gw, gb).sqrt()
    info = {"newton": newton, "cg": cg_total, "passes": problem.passes,
            "objective": f.tolist(), "converged": bool((gnorm <= tol * norm0).all())}
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
                    group=None, loss: str = "squared hinge"
                    ) -> tuple[float, dict[float, tuple[float, float]], np.ndarray]:
    """:func:`choose_c` with the primal solver: the same folds (over every rank's rows,
    ``labels``), each fold's validation rows left out of training by a zero weight;
    ``make_problem(y, s, c)`` builds this rank's :class:`PrimalProblem` (rows ``places`` of
    the whole) of loss ``loss``. The decisions are gathered to score every C alike on every
    rank."""
    splits = cv_splits(labels, folds, seed)
    y, s = targets(labels[places], num_classes, include_difficult)
    decisions: dict[float, np.ndarray] = {}
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
        decisions[float(c)] = whole
    c, table = choose(decisions, labels, loss, include_difficult)
    return c, table, decisions[c]


# --- probabilities: the logistic models' own, or Platt scaling of held-out SVM scores --------

def platt(decision: np.ndarray, labels: np.ndarray, include_difficult: bool = False,
          iterations: int = 100) -> np.ndarray:
    """Platt scaling of each class, (C, 2) [A, B] with P(class | z) = 1 / (1 + exp(A z + B)),
    fitted on held-out decision values (n, C) -- Platt (1999) with the targets
    (N+ + 1) / (N+ + 2) and 1 / (N- + 2), by Newton's method with backtracking (Lin, Lin &
    Weng 2007, the algorithm libsvm and scikit-learn use)."""
    y, s = targets(labels, decision.shape[1], include_difficult)
    out = np.zeros((decision.shape[1], 2))
    for cls in range(decision.shape[1]):
        used = s[:, cls] > 0
        z, pos = decision[used, cls].astype(np.float64), y[used, cls] > 0
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        t = np.where(pos, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

        def f(a, b):
            e = a * z + b  # log(1 + exp(e)) - (1 - t) e, stably
            return float((np.logaddexp(0, e) - (1 - t) * e).sum())

        a, b = 0.0, float(np.log((n_neg + 1) / (n_pos + 1)))
        fval = f(a, b)
        for _ in range(iterations):
            p = 1 / (1 + np.exp(np.clip(a * z + b, -700, 700)))  # P(positive)
            d1 = t - p  # the derivative of the loss in e is -(d1)
            d2 = p * (1 - p)
            ga, gb = float((z * d1).sum()), float(d1.sum())
            if abs(ga) < 1e-5 and abs(gb) < 1e-5:
                break
            h11, h22, h21 = float((z * z * d2).sum()) + 1e-12, float(d2.sum()) + 1e-12, \
                float((z * d2).sum())
            det = h11 * h22 - h21 * h21
            da, db = -(h22 * ga - h21 * gb) / det, -(-h21 * ga + h11 * gb) / det
            step = 1.0
            while step >= 1e-10:
                new = f(a + step * da, b + step * db)
                if new < fval + 1e-4 * step * (ga * da + gb * db):
                    a, b, fval = a + step * da, b + step * db, new
                    break
                step /= 2
            else:
                break
        out[cls] = a, b
    return out


def probabilities(decision: np.ndarray, kind: str, multilabel: bool,
                  calibration: np.ndarray | None = None) -> np.ndarray:
    """Class probabilities (n, C) of decision values: ``kind`` ``softmax`` (multinomial
    logistic), ``sigmoid`` (one-vs-rest logistic) or ``platt`` (``calibration`` (C, 2) from
    :func:`platt`). Single-label one-vs-rest probabilities are normalised to sum to 1 over
    the classes (as scikit-learn's one-vs-rest and calibrated classifiers do); multi-label
    ones are each class's own."""
    z = torch.from_numpy(np.asarray(decision, np.float64))
    if kind == "softmax":
        return torch.softmax(z, 1).numpy()
    if kind == "platt":
        cal = torch.from_numpy(np.asarray(calibration, np.float64))
        z = -(z * cal[:, 0] + cal[:, 1])
    p = torch.sigmoid(z).numpy()
    if multilabel:
        return p
    total = p.sum(1, keepdims=True)
    return np.where(total > 0, p / np.where(total > 0, total, 1), 1 / p.shape[1])


# --- standardisation: each dimension to zero mean and unit variance on the training rows ---

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
