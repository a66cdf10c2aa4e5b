"""PCA and diagonal-covariance Gaussian mixtures, fitted in torch (on the GPU when present).

Both follow scikit-learn's conventions: keyword-only ``__init__``, ``fit`` returns ``self``,
fitted state ends in ``_``. Inputs are (N, D) numpy arrays or torch tensors.

**PCA.** The covariance is accumulated over row batches as float32 GEMMs of data shifted by a
provisional mean, summed in float64 (numerically as good as a float64 covariance, at float32
GEMM speed), then eigendecomposed in float64. Component signs are fixed so that each
component's largest-magnitude coefficient is positive.

**GMM.** EM for a mixture with priors pi_k, means mu_k and diagonal variances sigma^2_k. The
E-step evaluates all log N(x_n | mu_k, sigma^2_k) at once with GEMMs,

    -1/2 [ D log 2pi + sum_d log s_kd + x^2 . (1/s_k) - 2 x . (mu_k/s_k) + sum_d mu_kd^2/s_kd ],

and normalises with log-sum-exp; the M-step's sufficient statistics (sum_n g_nk, g^T x,
g^T x^2) are GEMMs too, accumulated in float64 across batches, so N = 256,000, K = 256,
D = 128 runs in bounded memory. Initialisation is k-means++ seeding followed by Lloyd
iterations (as scikit-learn's default ``init_params='kmeans'``). Variances are floored at
``var_floor`` x the largest per-dimension variance of the data; a component whose
responsibilities vanish is re-seeded on the worst-explained sample.
"""

from __future__ import annotations

import logging
import math

import torch

from featx.errors import InputError
from featx.runtime import resolve_device

log = logging.getLogger(__name__)

_BATCH = 65536
_PCA_BATCH = 16384  # rows per float32 SYRK: relative rounding ~1e-7 (tested)


def _as_tensor(x, device: torch.device, check: bool = True) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise InputError(f"expected a 2-d array of samples x features, got shape {tuple(t.shape)}")
    t = t.to(device=device, dtype=torch.float32)
    if check:
        _check_finite(t)
    return t


def _check_finite(t: torch.Tensor) -> None:
    if not torch.isfinite(t).all():
        raise InputError("the samples contain NaN or Inf values")


def _batches(n: int, size: int = _BATCH):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _top_eigh(cov: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest eigenpairs of a symmetric float64 matrix, in decreasing order.

    On the CPU, LAPACK's ``syevr`` computes only the k wanted (4,096-d fc7 to 128-d: ~10x less
    work than a full decomposition); on the GPU a full ``eigh`` is fast anyway.
    """
    d = cov.shape[0]
    if cov.device.type == "cpu" and k < d:
        import scipy.linalg

        w, v = scipy.linalg.eigh(cov.numpy(), subset_by_index=[d - k, d - 1], driver="evr")
        w, v = torch.from_numpy(w), torch.from_numpy(v)
    else:
        w, v = torch.linalg.eigh(cov)
        w, v = w[d - k:], v[:, d - k:]
    return w.flip(0).clamp_min(0), v.flip(1)


class PCA:
    """Principal component analysis of (N, D) samples, optionally whitened.

    Fitted: ``mean_`` (D,), ``components_`` (k, D) orthonormal rows, ``explained_variance_``
    (k,), ``explained_variance_ratio_`` (k,), ``n_samples_``.
    """

    def __init__(self, *, n_components: int, whiten: bool = False, device: str = "auto"):
        self.n_components = n_components
        self.whiten = whiten
        self.device = device

    def fit(self, x) -> PCA:
        dev = resolve_device(self.device)
        x = _as_tensor(x, dev, check=False)  # NaN/Inf would reach the sums: checked there
        n, d = x.shape
        if not 0 < self.n_components <= d:
            raise InputError(f"cannot keep {self.n_components} components of {d}-d features")
        if n <= self.n_components:
            raise InputError(f"{n} samples are too few for {self.n_components} components; "
                             "sample more (--per-image) or lower --dim")
        shift = x[: min(n, 4096)].mean(0)
        total = torch.zeros(d, dtype=torch.float64, device=dev)
        scatter = torch.zeros(d, d, dtype=torch.float64, device=dev)
        for s in _batches(n, _PCA_BATCH):  # short float32 sums: their rounding stays ~1e-6
            xc = x[s] - shift
            total += xc.sum(0).double()
            if dev.type == "cpu":  # numpy turns xc.T @ xc into a SYRK: half the work of a GEMM
                xn = xc.numpy()
                scatter += torch.from_numpy(xn.T @ xn)
            else:
                scatter += (xc.T @ xc).double()
        _check_finite(torch.cat([total, scatter.diagonal()]))
        mean_c = total / n
        cov = (scatter - n * torch.outer(mean_c, mean_c)) / (n - 1)
        k = self.n_components
        total_var = torch.trace(cov)
        if total_var <= 0:
            raise InputError("the samples have zero variance: every feature is constant")
        evals, evecs = _top_eigh(cov, k)
        comps = evecs.T
        signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
        self.components_ = (comps * signs).float()
        self.mean_ = (mean_c + shift.double()).float()
        self.explained_variance_ = evals.float()
        self.explained_variance_ratio_ = (evals / total_var).float()
        self.n_samples_ = n
        return self

    def transform(self, x) -> torch.Tensor:
        x = torch.as_tensor(x).to(self.components_.device, torch.float32)
        y = (x - self.mean_) @ self.components_.T
        return y / self.explained_variance_.sqrt() if self.whiten else y

    def inverse_transform(self, y) -> torch.Tensor:
        y = torch.as_tensor(y).to(self.components_.device, torch.float32)
        if self.whiten:
            y = y * self.explained_variance_.sqrt()
        return y @ self.components_ + self.mean_


def _log_gauss(x1: torch.Tensor, means: torch.Tensor, variances: torch.Tensor,
               log_priors: torch.Tensor | None = None) -> torch.Tensor:
    """log N(x_n | mu_k, diag sigma^2_k) (+ log pi_k) for all n, k: (N, K), as one GEMM.

    ``x1`` is [1, x, x**2] (N, 1 + 2D) (:func:`_augment`), so the constant and both
    data-dependent terms come from one product.
    """
    prec = 1.0 / variances
    const = -0.5 * ((means.pow(2) * prec).sum(1) + variances.log().sum(1)
                    + means.shape[1] * math.log(2 * math.pi))
    if log_priors is not None:
        const = const + log_priors
    return x1 @ torch.cat([const[:, None], means * prec, -0.5 * prec], 1).T


def _augment(x: torch.Tensor) -> torch.Tensor:
    """[1, x, x**2]: one GEMM with it gives log-densities (E-step) or all moments (M-step)."""
    return torch.cat([torch.ones_like(x[:, :1]), x, x.pow(2)], 1)


def kmeans_pp(x: torch.Tensor, k: int, gen: torch.Generator, trials: int | None = None) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; 2 + log k trials per centre)."""
    n = x.shape[0]
    trials = trials or 2 + int(math.log(k))
    sq = x.pow(2).sum(1)
    first = torch.randint(n, (1,), generator=gen, device="cpu").item()
    centres = [x[first]]
    closest = (sq - 2 * x @ x[first] + sq[first]).clamp_min(0)
    for _ in range(1, k):
        pot = closest.sum()
        probs = closest / pot if pot > 0 else torch.full_like(closest, 1 / n)
        cand = torch.multinomial(probs.cpu(), trials, replacement=True, generator=gen).to(x.device)
        d = (sq[None] - 2 * x[cand] @ x.T + sq[cand, None]).clamp_min(0)
        new = torch.minimum(closest[None], d)
        best = new.sum(1).argmin()
        closest = new[best]
        centres.append(x[cand[best]])
    return torch.stack(centres)


def kmeans(x: torch.Tensor, k: int, gen: torch.Generator, iters: int = 100,
           tol: float = 1e-4) -> torch.Tensor:
    """k-means++ seeding (on up to 100 k samples), then Lloyd iterations on all samples until
    the centres move less than ``tol`` x the mean variance (scikit-learn's criterion);
    returns (k, D) centres."""
    seed_n = min(x.shape[0], max(100 * k, 100_000))
    idx = torch.randperm(x.shape[0], generator=gen)[:seed_n].to(x.device)
    centres = kmeans_pp(x[idx], k, gen)
    tol_abs = tol * x.var(0).mean().item()
    for _ in range(iters):
        sums = torch.zeros_like(centres, dtype=torch.float64)
        counts = torch.zeros(k, dtype=torch.float64, device=x.device)
        csq = centres.pow(2).sum(1)
        for s in _batches(x.shape[0]):
            # |c|^2 - 2 x.c ranks centres as |x - c|^2 does
            lab = torch.addmm(csq[None], x[s], centres.T, alpha=-2).argmin(1)
            sums += torch.zeros_like(centres).index_add_(0, lab, x[s]).double()
            counts += torch.bincount(lab, minlength=k).double()
        empty = counts == 0
        new = torch.where(empty[:, None], centres, (sums / counts.clamp_min(1)[:, None]).float())
        shift, centres = (new - centres).pow(2).sum().item(), new
        if shift <= tol_abs:
            break
    return centres


class GaussianMixture:
    """Diagonal-covariance Gaussian mixture fitted by EM.

    Parameters follow scikit-learn's ``GaussianMixture(covariance_type='diag')``: ``tol`` on
    the change of the average log-likelihood, ``max_iter``, ``n_init`` (the best of several
    initialisations is kept). ``var_floor`` is relative to the largest per-dimension variance
    of the data. ``means_init`` / ``variances_init`` / ``priors_init`` replace the k-means
    initialisation.

    Fitted: ``means_`` (K, D), ``variances_`` (K, D), ``priors_`` (K,), ``converged_``,
    ``n_iter_``, ``lower_bound_`` (final average log-likelihood), ``history_`` (per iteration).
    """

    def __init__(self, *, n_components: int, max_iter: int = 100, tol: float = 1e-3,
                 n_init: int = 1, var_floor: float = 1e-4, kmeans_iter: int = 30,
                 seed: int = 0, device: str = "auto", means_init=None, variances_init=None,
                 priors_init=None):
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.var_floor = var_floor
        self.kmeans_iter = kmeans_iter
        self.seed = seed
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
        for s in _batches(x1.shape[0]):
            # log-sum-exp by hand, so the one exp() also gives the responsibilities
            resp = _log_gauss(x1[s], means, variances, log_priors)
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
                         if self.variances_init is not None else x.var(0, correction=0).expand(k, -1).clone())
            priors = (torch.as_tensor(self.priors_init, dtype=torch.float32, device=x.device)
                      if self.priors_init is not None else torch.full((k,), 1 / k, device=x.device))
            if means.shape != (k, x.shape[1]) or variances.shape != means.shape or priors.shape != (k,):
                raise InputError("initial means/variances/priors do not fit n_components x D")
            return means, variances.clamp_min(floor), priors / priors.sum()
        centres = kmeans(x, k, gen, self.kmeans_iter)
        # one hard-assignment M-step from the k-means partition, as scikit-learn does
        csq = centres.pow(2).sum(1)
        nk = torch.zeros(k, dtype=torch.float64, device=x.device)
        sx = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
        sxx = torch.zeros_like(sx)
        for s in _batches(x.shape[0]):
            lab = torch.addmm(csq[None], x[s], centres.T, alpha=-2).argmin(1)
            nk += torch.bincount(lab, minlength=k).double()
            sx.index_add_(0, lab, x[s].double())
            sxx.index_add_(0, lab, x[s].double().pow(2))
        data_var = x.var(0, correction=0)
        means, variances, priors = self._mstep(x, nk, sx, sxx, floor, 0, data_var)
        return means, variances, priors

    # -- public API -----------------------------------------------------------------------

    def fit(self, x) -> GaussianMixture:
        dev = resolve_device(self.device)
        x = _as_tensor(x, dev)
        n, d = x.shape
        k = self.n_components
        if k < 1:
            raise InputError("n_components must be at least 1")
        if n < 2 * k:
            raise InputError(f"{n} samples are too few for {k} components (need at least "
                             f"{2 * k}); sample more (--per-image) or use fewer --components")
        data_var = x.var(0, correction=0)
        if data_var.max() <= 0:
            raise InputError("the samples have zero variance: every feature is constant")
        floor = self.var_floor * data_var.max().item()
        x1 = _augment(x)  # used by every E-step
        gen = torch.Generator().manual_seed(self.seed)
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
        if not converged:
            log.warning("EM did not converge in %d iterations (tol %g)", self.max_iter, self.tol)
        self.means_, self.variances_, self.priors_ = means, variances, priors
        self.lower_bound_, self.converged_, self.n_iter_ = ll, converged, it
        self.history_ = history
        self.var_floor_ = floor
        return self

    def _log_prob(self, x) -> torch.Tensor:
        x = torch.as_tensor(x).to(self.means_.device, torch.float32)
        return _log_gauss(_augment(x), self.means_, self.variances_, self.priors_.log())

    def score(self, x) -> float:
        """Average log-likelihood of the samples under the mixture."""
        return torch.logsumexp(self._log_prob(x), 1).mean().item()

    def predict_proba(self, x) -> torch.Tensor:
        """Posteriors (N, K)."""
        return torch.softmax(self._log_prob(x), 1)
