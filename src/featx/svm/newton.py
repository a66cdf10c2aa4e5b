"""The primal solver: Newton's method with conjugate gradients on any loss of :mod:`featx.svm.losses`, memory bounded by a row block whatever n."""

from __future__ import annotations

import numpy as np
import torch

from featx.errors import InputError
from featx.svm.losses import LOSSES


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
