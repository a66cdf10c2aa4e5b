"""Principal component analysis, fitted in torch.

The covariance is accumulated over row batches as float32 products of data shifted by a
provisional mean, summed in float64 (numerically as good as a float64 covariance, at float32
GEMM speed), then eigendecomposed in float64. Component signs are fixed so that each
component's largest-magnitude coefficient is positive.

A PCA of m x n x C subarrays is applied to all of a map's subarrays at once as a convolution
with the components as filters (:meth:`PCA.as_conv`; Liu et al. §3.2 local features).
"""

from __future__ import annotations

import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from featx.dist import SINGLE, Group
from featx.errors import InputError
from featx.fit._base import as_samples, batches

_PCA_BATCH = 16384  # rows per float32 SYRK: relative rounding ~1e-7 (tested)


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


class PCA(TransformerMixin, BaseEstimator):
    """Principal component analysis of (N, D) samples, optionally whitened.

    ``n_components`` None keeps min(N - 1, D). ``random_state`` is accepted for scikit-learn
    compatibility; the exact solver does not use it.

    Fitted: ``mean_`` (D,), ``components_`` (k, D) orthonormal rows, ``explained_variance_``
    (k,), ``explained_variance_ratio_`` (k,), ``n_samples_``, ``n_features_in_`` (float32
    tensors on ``device``).
    """

    def __init__(self, n_components: int | None = None, *, whiten: bool = False,
                 device: str = "cpu", random_state=None):
        self.n_components = n_components
        self.whiten = whiten
        self.device = device
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def fit(self, X, y=None) -> PCA:
        x, _ = as_samples(self, X, reset=True, min_samples=2)
        return self.fit_shared(x)

    def fit_shared(self, x: torch.Tensor | None, group: Group = SINGLE) -> PCA:
        """Fit on the rows of every rank of ``group``: this rank's ``x`` (N_r, D) float32
        tensor (None: no rows here). Each rank sums its rows' shifted Σx and Σxxᵀ (the shift
        is rank 0's provisional mean), one all-reduce adds them, and every rank decomposes
        the same float64 covariance. With one process this is :meth:`fit`."""
        x = None if x is None else x.float()
        # the shift: rank 0's provisional mean (rank 0 holds the first rows)
        shift = group.share(x[: min(len(x), 4096)].mean(0).cpu() if x is not None and len(x)
                            else None)
        if shift is None:
            raise InputError("the first rank's samples are empty: every rank needs images")
        d = shift.shape[0]
        if x is None:
            x = torch.zeros(0, d)
        dev = x.device
        shift = shift.to(dev)
        total = torch.zeros(d, dtype=torch.float64, device=dev)
        scatter = torch.zeros(d, d, dtype=torch.float64, device=dev)
        for s in batches(x.shape[0], _PCA_BATCH):  # short float32 sums: their rounding stays ~1e-6
            xc = x[s] - shift
            total += xc.sum(0).double()
            if dev.type == "cpu":  # numpy turns xc.T @ xc into a SYRK: half the work of a GEMM
                xn = xc.numpy()
                scatter += torch.from_numpy(xn.T @ xn)
            else:
                scatter += (xc.T @ xc).double()
        n = x.shape[0]
        if group.world > 1:
            summed = group.sum(torch.cat([torch.tensor([float(n)], dtype=torch.float64),
                                          total.cpu(), scatter.cpu().flatten()]))
            n = int(summed[0].item())
            total, scatter = summed[1:d + 1].to(dev), summed[d + 1:].view(d, d).to(dev)
        self.n_features_in_ = d
        k = self.n_components if self.n_components is not None else min(n - 1, d)
        if not 0 < k <= d:
            raise InputError(f"n_components={k} does not fit data of {d} feature(s)")
        if n <= k:
            raise InputError(f"{n} sample(s) are too few for {k} components; sample more "
                             "(--per-image) or lower --dim")
        mean_c = total / n
        cov = (scatter - n * torch.outer(mean_c, mean_c)) / (n - 1)
        total_var = torch.trace(cov)
        if not total_var > 0:
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

    def transform(self, X):
        """(N, D) -> (N, k): arrays stay arrays (float64 kept), tensors stay tensors."""
        check_is_fitted(self)
        x, numpy_in = as_samples(self, X, reset=False)
        comps, mean = self.components_.to(x), self.mean_.to(x)
        y = (x - mean) @ comps.T
        if self.whiten:
            y = y / self.explained_variance_.to(x).sqrt()
        return y.cpu().numpy() if numpy_in else y

    def inverse_transform(self, X):
        check_is_fitted(self)
        y = torch.as_tensor(X)
        numpy_in = not isinstance(X, torch.Tensor)
        y = y.to(self.components_.device, torch.float64 if y.dtype == torch.float64 else
                 torch.float32)
        if self.whiten:
            y = y * self.explained_variance_.to(y).sqrt()
        x = y @ self.components_.to(y) + self.mean_.to(y)
        return x.cpu().numpy() if numpy_in else x

    def as_conv(self, channels: int, m: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This PCA of m x n x C subarrays (flattened (c, i, j), as ``F.unfold``) as conv2d
        weights (k, C, m, n) (channels_last, as :func:`featx.encoders.project_subarrays` runs
        the convolution) and bias (k,): one convolution projects every subarray of a map."""
        check_is_fitted(self)
        if channels * m * n != self.components_.shape[1]:
            raise InputError(f"a PCA of {self.components_.shape[1]}-d features cannot project "
                             f"{m}x{n} subarrays of {channels} channels")
        w = self.components_.reshape(-1, channels, m, n)
        b = -(self.components_ @ self.mean_)
        if self.whiten:
            scale = self.explained_variance_.sqrt()
            w, b = w / scale[:, None, None, None], b / scale
        return w.contiguous(memory_format=torch.channels_last), b
