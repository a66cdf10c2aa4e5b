"""Diagonal-covariance Gaussian mixtures, fitted by EM in torch; their log-densities and
posteriors as module functions (the Fisher vector's E-step uses the same ones).

EM for a mixture with priors pi_k, means mu_k and diagonal variances sigma^2_k. The E-step
evaluates all log N(x_n | mu_k, sigma^2_k) at once with one GEMM of [1, x, x^2] against

    -1/2 [ D log 2pi + sum_d log s_kd + sum_d mu_kd^2/s_kd ],  mu_k/s_k,  -1/(2 s_k)

and normalises with log-sum-exp; the M-step's sufficient statistics (sum_n g_nk, g^T x,
g^T x^2) come from one GEMM of the responsibilities with the same [1, x, x^2], accumulated in
float64 across batches, so N = 256,000, K = 256, D = 128 runs in bounded memory.
Initialisation is k-means++ seeding followed by Lloyd iterations (as scikit-learn's default
``init_params='kmeans'``). Variances are floored at ``var_floor`` x the largest per-dimension
variance of the data; a component whose responsibilities vanish is re-seeded on the
worst-explained sample.
"""

from __future__ import annotations

import logging
import math

import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted

from featx.errors import InputError, NonFiniteError
from featx.fit._base import as_samples, batches, seed_of
from featx.fit.kmeans import kmeans, nearest

log = logging.getLogger(__name__)

_BATCH = 65536


def augment(x: torch.Tensor) -> torch.Tensor:
    """[1, x, x**2] (N, 1 + 2D): one GEMM with it gives log-densities (E-step) or all three
    moments (M-step)."""
    return torch.cat([torch.ones_like(x[:, :1]), x, x.pow(2)], 1)


def log_densities(x1: torch.Tensor, means: torch.Tensor, variances: torch.Tensor,
                  log_priors: torch.Tensor | None = None) -> torch.Tensor:
    """log N(x_n | mu_k, diag sigma^2_k) (+ log pi_k) for all n, k: (N, K), as one GEMM.

    ``x1`` is :func:`augment` (x); the parameters are used in its dtype.
    """
    means, variances = means.to(x1), variances.to(x1)
    prec = 1.0 / variances
    const = -0.5 * ((means.pow(2) * prec).sum(1) + variances.log().sum(1)
                    + means.shape[1] * math.log(2 * math.pi))
    if log_priors is not None:
        const = const + log_priors.to(x1)
    return x1 @ torch.cat([const[:, None], means * prec, -0.5 * prec], 1).T


def posteriors(x: torch.Tensor, means: torch.Tensor, variances: torch.Tensor,
               priors: torch.Tensor) -> torch.Tensor:
    """p(k | x_n) for (N, D) samples: (N, K)."""
    return torch.softmax(log_densities(augment(x), means, variances, priors.log()), 1)


class GaussianMixture(DensityMixin, BaseEstimator):
    """Diagonal-covariance Gaussian mixture fitted by EM.

    Parameters follow scikit-learn's ``GaussianMixture(covariance_type='diag')``: ``tol`` on
    the change of the average log-likelihood, ``max_iter``, ``n_init`` (the best of several
    initialisations is kept), ``random_state``. ``var_floor`` is relative to the largest
    per-dimension variance of the data. ``means_init`` / ``variances_init`` /
    ``priors_init`` replace the k-means initialisation.

    Fitted: ``means_`` (K, D), ``variances_`` (K, D), ``priors_`` (K,), ``converged_``,
    ``n_iter_``, ``lower_bound_`` (final average log-likelihood), ``history_`` (per
    iteration), ``var_floor_`` (the absolute floor).
    """

    def __init__(self, n_components: int = 1, *, max_iter: int = 100, tol: float = 1e-3,
                 n_init: int = 1, var_floor: float = 1e-4, kmeans_iter: int = 30,
                 random_state=None, device: str = "cpu", means_init=None, variances_init=None,
                 priors_init=None):
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.var_floor = var_floor
        self.kmeans_iter = kmeans_iter
        self.random_state = random_state
        self.device = device
        self.means_init = means_init
        self.variances_init = variances_init
        self.priors_init = priors_init

    # -- the EM pieces ---------------------------------------------------------------------

    def _estep(self, x1: torch.Tensor, means, variances, priors):
        """Sufficient statistics (float64) and the average log-likelihood, batch by batch."""
        k, d = means.shape
        nk = torch.zeros(k, dtype=torch.float64, device=x1.device)
        sx = torch.zeros(k, d, dtype=torch.float64, device=x1.device)
        sxx = torch.zeros(k, d, dtype=torch.float64, device=x1.device)
        ll = 0.0
        worst = (math.inf, 0)
        log_priors = priors.log()
        for s in batches(x1.shape[0], _BATCH):
            # log-sum-exp by hand, so the one exp() also gives the responsibilities
            resp = log_densities(x1[s], means, variances, log_priors)
            top = resp.max(1, keepdim=True).values
            # exp(-80) ~ 2e-35: clamping keeps float32 out of denormals, which are ~10x slower
            total = resp.sub_(top).clamp_min_(-80.0).exp_().sum(1, keepdim=True)
            resp.div_(total)
            norm = top.squeeze(1) + total.squeeze(1).log()
            ll += norm.sum(dtype=torch.float64).item()
            moments = (resp.T @ x1[s]).double()  # [sum g, sum g x, sum g x^2]
            nk += moments[:, 0]
            sx += moments[:, 1:d + 1]
            sxx += moments[:, d + 1:]
            low, where = norm.min(0)
            if low.item() < worst[0]:
                worst = (low.item(), s.start + where.item())
        return nk, sx, sxx, ll / x1.shape[0], worst[1]

    def _mstep(self, x, nk, sx, sxx, floor, worst, data_var):
        n = x.shape[0]
        empty = nk < 10 * torch.finfo(torch.float32).eps * n
        safe = nk.clamp_min(1e-300)[:, None]
        means = sx / safe
        variances = (sxx / safe - means.pow(2)).clamp_min(floor)
        priors = nk / n
        if empty.any():
            # re-seed vanished components on the sample the mixture explains worst
            log.warning("re-seeding %d empty component(s)", int(empty.sum()))
            means[empty] = x[worst].double()
            variances[empty] = data_var.double()
            priors[empty] = 1.0 / n
            priors = priors / priors.sum()
        return means.float(), variances.float(), priors.float()

    def _init(self, x, gen, floor):
        k = self.n_components
        if self.means_init is not None:
            means = torch.as_tensor(self.means_init, dtype=torch.float32, device=x.device)
            variances = (torch.as_tensor(self.variances_init, dtype=torch.float32, device=x.device)
                         if self.variances_init is not None
                         else x.var(0, correction=0).expand(k, -1).clone())
            priors = (torch.as_tensor(self.priors_init, dtype=torch.float32, device=x.device)
                      if self.priors_init is not None else torch.full((k,), 1 / k, device=x.device))
            if means.shape != (k, x.shape[1]) or variances.shape != means.shape or priors.shape != (k,):
                raise InputError("initial means/variances/priors do not fit n_components x D")
            return means, variances.clamp_min(floor), priors / priors.sum()
        centres = kmeans(x, k, gen, self.kmeans_iter)
        # one hard-assignment M-step from the k-means partition, as scikit-learn does
        nk = torch.zeros(k, dtype=torch.float64, device=x.device)
        sx = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
        sxx = torch.zeros_like(sx)
        for s in batches(x.shape[0], _BATCH):
            lab = nearest(x[s], centres)
            nk += torch.bincount(lab, minlength=k).double()
            sx.index_add_(0, lab, x[s].double())
            sxx.index_add_(0, lab, x[s].double().pow(2))
        return self._mstep(x, nk, sx, sxx, floor, 0, x.var(0, correction=0))

    def _check_params(self) -> None:
        bad = [(name, value) for name, value, ok in (
            ("n_components", self.n_components, isinstance(self.n_components, int) and self.n_components >= 1),
            ("max_iter", self.max_iter, self.max_iter >= 1),
            ("n_init", self.n_init, self.n_init >= 1),
            ("tol", self.tol, math.isfinite(self.tol) and self.tol >= 0),
            ("var_floor", self.var_floor, math.isfinite(self.var_floor) and self.var_floor > 0),
        ) if not ok]
        if bad:
            raise InputError(f"{bad[0][0]}={bad[0][1]!r} is out of range")

    # -- public API -----------------------------------------------------------------------

    def fit(self, X, y=None) -> GaussianMixture:
        self._check_params()
        x, _ = as_samples(self, X, reset=True, min_samples=2)
        x = x.float()
        n, d = x.shape
        k = self.n_components
        if n < 2 * k:
            raise InputError(f"{n} samples are too few for {k} components (need at least "
                             f"{2 * k}); sample more (--per-image) or use fewer --components")
        data_var = x.var(0, correction=0)
        if not data_var.max() > 0:
            raise InputError("the samples have zero variance: every feature is constant")
        floor = self.var_floor * data_var.max().item()
        x1 = augment(x)  # used by every E-step
        gen = torch.Generator().manual_seed(seed_of(self.random_state))
        best = None
        for run in range(self.n_init):
            means, variances, priors = self._init(x, gen, floor)
            prev, history, converged = -math.inf, [], False
            for it in range(1, self.max_iter + 1):
                nk, sx, sxx, ll, worst = self._estep(x1, means, variances, priors)
                history.append(ll)
                log.info("EM run %d iter %3d: average log-likelihood %.6f", run + 1, it, ll)
                if abs(ll - prev) < self.tol:
                    converged = True
                    break
                prev = ll
                means, variances, priors = self._mstep(x, nk, sx, sxx, floor, worst, data_var)
            if best is None or ll > best[0]:
                best = (ll, means, variances, priors, converged, it, history)
        ll, means, variances, priors, converged, it, history = best
        if not all(torch.isfinite(t).all() for t in (means, variances, priors)):
            raise NonFiniteError("EM produced non-finite GMM parameters; the samples are "
                                 "degenerate (check them, or raise var_floor)")
        if not converged:
            log.warning("EM did not converge in %d iterations (tol %g)", self.max_iter, self.tol)
        self.means_, self.variances_, self.priors_ = means, variances, priors
        self.lower_bound_, self.converged_, self.n_iter_ = ll, converged, it
        self.history_ = history
        self.var_floor_ = floor
        return self

    def _log_prob(self, X) -> tuple[torch.Tensor, bool]:
        check_is_fitted(self)
        x, numpy_in = as_samples(self, X, reset=False)
        return log_densities(augment(x), self.means_, self.variances_, self.priors_.log()), numpy_in

    @staticmethod
    def _out(t: torch.Tensor, numpy_in: bool):
        return t.cpu().numpy() if numpy_in else t

    def score_samples(self, X):
        """Log-likelihood of each sample (N,)."""
        lp, numpy_in = self._log_prob(X)
        return self._out(torch.logsumexp(lp, 1), numpy_in)

    def score(self, X, y=None) -> float:
        """Average log-likelihood of the samples under the mixture."""
        lp, _ = self._log_prob(X)
        return torch.logsumexp(lp, 1).mean().item()

    def predict_proba(self, X):
        """Posteriors (N, K), as :func:`posteriors`."""
        lp, numpy_in = self._log_prob(X)
        return self._out(torch.softmax(lp, 1), numpy_in)

    def predict(self, X):
        """The most probable component of each sample (N,)."""
        lp, numpy_in = self._log_prob(X)
        return self._out(lp.argmax(1), numpy_in)
