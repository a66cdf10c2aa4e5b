"""Diagonal-covariance Gaussian mixtures, fitted by EM in torch; their log-densities and
posteriors live in :mod:`featx.encoders.gaussian` (the Fisher vector's E-step uses the same
ones).

EM for a mixture with priors pi_k, means mu_k and diagonal variances sigma^2_k. The E-step
evaluates all log N(x_n | mu_k, sigma^2_k) at once with one GEMM of [x, x^2] against
[mu_k/s_k; -1/(2 s_k)] plus the bias -1/2 [D log 2pi + sum_d log s_kd + sum_d mu_kd^2/s_kd]
(:func:`density_params`); a fused softmax gives the responsibilities, and the log-likelihood
comes from two row maxima (no second exp pass). The M-step's sufficient statistics (sum_n g_nk,
g^T x, g^T x^2) come from one GEMM of the responsibilities with the same [x, x^2],
accumulated in float64 across chunks of 8,192 rows, so N = 256,000, K = 256, D = 128 runs in
bounded memory. Initialisation is k-means++ seeding followed by a few Lloyd iterations on a
subsample (as scikit-learn's default ``init_params='kmeans'``, but cheaper: 3 Lloyd steps
need no more EM iterations than 30 on the benchmark's data, docs/fit.md). Variances are
floored at ``var_floor`` x the largest per-dimension variance of the data; a component whose
responsibilities vanish is re-seeded on the worst-explained sample.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted

from featx.dist import SINGLE, Group
from featx.encoders.gaussian import augment, density_params, log_densities
from featx.errors import InputError, NonFiniteError
from featx.fit._base import as_samples, batches, seed_of
from featx.fit.kmeans import kmeans, lloyd, nearest, subsample
from featx.linalg import addmm

log = logging.getLogger(__name__)

# rows per E-step chunk: the (rows, K) log-densities and responsibilities stay small enough to be
# reused from the allocator's cache (a fresh 50,000 x 64 block per pass page-faults on every call)
_CHUNK = 8192


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
                 n_init: int = 1, var_floor: float = 1e-4, kmeans_iter: int = 3,
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

    def _estep(self, xx: torch.Tensor, means, variances, priors):
        """This rank's sufficient statistics [sum g, sum g x, sum g x^2] (K, 1 + 2D) in
        float64, the sum of its log-likelihoods, and the lowest log-likelihood with its row
        (the sample the mixture explains worst), chunk by chunk."""
        k = means.shape[0]
        bias, weights = density_params(means, variances, priors.log())
        stats = torch.zeros(k, 1 + xx.shape[1], dtype=torch.float64, device=xx.device)
        ll = torch.zeros((), dtype=torch.float64, device=xx.device)
        low, worst = math.inf, -1
        for s in batches(xx.shape[0], _CHUNK):
            lp = addmm(bias, xx[s], weights)
            resp = lp.softmax(1)
            # log sum_k exp lp_nk = max_k lp_nk - log max_k g_nk (the largest posterior is
            # >= 1/K, so its log is exact to float32): no second exp pass for the likelihood
            norm = lp.amax(1).sub_(resp.amax(1).log_())
            ll += norm.sum(dtype=torch.float64)
            stats[:, 0] += resp.sum(0).double()
            stats[:, 1:] += (resp.T @ xx[s]).double()
            value, where = norm.min(0)
            if value.item() < low:
                low, worst = value.item(), int(where) + s.start
        return stats, ll.item(), low, worst

    def _mstep(self, n, stats, floor, worst_row, data_var):
        """Means, variances and priors from the summed statistics of ``n`` samples;
        ``worst_row()`` is the sample a vanished component is re-seeded on."""
        d = data_var.shape[0]
        nk, sx, sxx = stats[:, 0], stats[:, 1:d + 1], stats[:, d + 1:]
        empty = nk < 10 * torch.finfo(torch.float32).eps * n
        safe = nk.clamp_min(1e-300)[:, None]
        means = sx / safe
        variances = (sxx / safe - means.pow(2)).clamp_min(floor)
        priors = nk / n
        if empty.any():
            # re-seed vanished components on the sample the mixture explains worst
            log.warning("re-seeding %d empty component(s)", int(empty.sum()))
            means[empty] = worst_row().to(means)
            variances[empty] = data_var.to(variances)
            priors[empty] = 1.0 / n
            priors = priors / priors.sum()
        return means.float(), variances.float(), priors.float()

    def _init(self, x, xx, gen, floor, data_var, n, group, rows):
        k = self.n_components
        if self.means_init is not None:
            means = torch.as_tensor(self.means_init, dtype=torch.float32, device=x.device)
            variances = (torch.as_tensor(self.variances_init, dtype=torch.float32, device=x.device)
                         if self.variances_init is not None
                         else data_var.float().expand(k, -1).clone())
            priors = (torch.as_tensor(self.priors_init, dtype=torch.float32, device=x.device)
                      if self.priors_init is not None else torch.full((k,), 1 / k, device=x.device))
            if means.shape != (k, x.shape[1]) or variances.shape != means.shape or priors.shape != (k,):
                raise InputError("initial means/variances/priors do not fit n_components x D")
            return means, variances.clamp_min(floor), priors / priors.sum()
        centres = self._kmeans(x, gen, n, group, rows)
        # one hard-assignment M-step from the k-means partition, as scikit-learn does
        stats = torch.zeros(k, 1 + 2 * x.shape[1], dtype=torch.float64, device=x.device)
        for s in batches(x.shape[0], _CHUNK):
            onehot = F.one_hot(nearest(x[s], centres), k).to(x.dtype)
            stats[:, 0] += onehot.sum(0, dtype=torch.float64)
            stats[:, 1:] += (onehot.T @ xx[s]).double()
        stats = group.sum(stats).to(x.device)
        first = lambda: group.share(x[0].cpu() if group.leader else None)  # noqa: E731 - row 0
        return self._mstep(n, stats, floor, first, data_var)

    def _kmeans(self, x, gen, n, group, rows):
        """k-means centres on the rows :func:`subsample` picks of the ``n`` rows of every rank
        (rank 0's generator picks them, gathers them in the single-process order and runs
        :func:`lloyd`; the centres are shared)."""
        k = self.n_components
        if group.world == 1:
            return kmeans(x, k, gen, self.kmeans_iter)
        pick = group.share(subsample(n, k, gen) if group.leader else None)
        here = torch.ones(len(rows), dtype=torch.bool) if pick is None else torch.isin(rows, pick)
        parts = group.objects((rows[here], x[here.to(x.device)].cpu()))
        centres = None
        if group.leader:
            ids = torch.cat([p[0] for p in parts])
            got = torch.cat([p[1] for p in parts])
            want = torch.arange(n) if pick is None else pick
            order = torch.argsort(want)
            at = order[torch.searchsorted(want[order], ids)]  # each gathered row's place
            sub = torch.empty(len(want), x.shape[1])
            sub[at] = got
            centres = lloyd(sub.to(x.device), k, gen, self.kmeans_iter).cpu()
        return group.share(centres).to(x.device)

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
        return self.fit_shared(x)

    def fit_shared(self, x: torch.Tensor, group: Group = SINGLE,
                   rows: torch.Tensor | None = None) -> GaussianMixture:
        """Fit on the rows of every rank of ``group``: this rank's ``x`` (N_r, D) float32
        tensor (N_r may be 0), ``rows`` their places in the order one process would see
        all of them (None: 0..N_r-1, one process). Every E-step's statistics and
        log-likelihood are all-reduced, so each rank runs the same M-steps and stops at the
        same iteration; k-means runs on rank 0 (:meth:`_kmeans`). With one process this is
        :meth:`fit`."""
        self._check_params()
        x = x.float()
        n_here, d = x.shape
        rows = torch.arange(n_here) if rows is None else rows.cpu()
        n = int(group.sum(torch.tensor([float(n_here)], dtype=torch.float64))[0].item())
        self.n_features_in_ = d
        k = self.n_components
        if n < 2 * k:
            raise InputError(f"{n} samples are too few for {k} components (need at least "
                             f"{2 * k}); sample more (--per-image) or use fewer --components")
        if group.world == 1:
            data_var = x.var(0, correction=0)
        else:  # from float64 sums over every rank of rows shifted by rank 0's first row
            shift = group.share(x[0].cpu() if group.leader else None).to(x.device)
            xc = (x - shift).double()
            moments = group.sum(torch.stack([xc.sum(0), xc.pow(2).sum(0)])).to(x.device)
            mean_c = moments[0] / n
            data_var = (moments[1] / n - mean_c.pow(2)).clamp_min(0).float()
        if not data_var.max() > 0:
            raise InputError("the samples have zero variance: every feature is constant")
        floor = self.var_floor * data_var.max().item()
        xx = augment(x)  # used by every E-step
        gen = torch.Generator().manual_seed(group.share(seed_of(self.random_state)))
        best = None
        for run in range(self.n_init):
            means, variances, priors = self._init(x, xx, gen, floor, data_var, n, group, rows)
            prev, history, converged = -math.inf, [], False
            for it in range(1, self.max_iter + 1):
                stats, ll_sum, low, worst = self._estep(xx, means, variances, priors)
                summed = group.sum(torch.cat([stats.flatten().cpu(),
                                              torch.tensor([ll_sum], dtype=torch.float64)]))
                stats, ll = summed[:-1].view_as(stats).to(x.device), summed[-1].item() / n
                history.append(ll)
                log.debug("EM run %d iter %3d: average log-likelihood %.6f", run + 1, it, ll)
                if abs(ll - prev) < self.tol:
                    converged = True
                    break
                prev = ll
                means, variances, priors = self._mstep(
                    n, stats, floor, self._worst(x, group, rows, low, worst), data_var)
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

    @staticmethod
    def _worst(x, group, rows, low, worst):
        """The function that fetches the sample explained worst over every rank (from the
        rank that holds it), called only when a component has vanished."""
        def fetch() -> torch.Tensor:
            lows = group.objects((low, int(rows[worst]) if worst >= 0 else -1))
            owner = min(range(len(lows)), key=lambda r: (lows[r][0], lows[r][1]))
            return group.share(x[worst].cpu() if group.rank == owner else None, src=owner)
        return fetch

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
