"""Diagonal Gaussians as one GEMM: the log-densities and posteriors that the GMM's E-step
(:mod:`featx.fit.gmm`) and the Fisher vector (:mod:`featx.encoders.fisher`) share.

log N(x_n | mu_k, sigma^2_k) for all n, k is one GEMM of [x, x^2] against
[mu_k/s_k; -1/(2 s_k)] plus the bias -1/2 [D log 2pi + sum_d log s_kd + sum_d mu_kd^2/s_kd].
They live here, below both ``featx.encoders`` and ``featx.fit``, so neither imports the other
for them.
"""

from __future__ import annotations

import math

import torch

from featx.linalg import addmm


def augment(x: torch.Tensor) -> torch.Tensor:
    """[x, x**2] (N, 2D): one GEMM with it gives the log-densities (E-step) or, with the
    responsibilities, the first and second moments (M-step)."""
    return torch.cat([x, x * x], 1)


def density_params(means: torch.Tensor, variances: torch.Tensor,
                   log_priors: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(bias (K,), weights (2D, K)) such that log N(x | mu_k, diag sigma^2_k) (+ log pi_k) =
    bias_k + augment(x) @ weights[:, k]: bias = -1/2 [D log 2pi + sum_d log s_kd +
    sum_d mu_kd^2/s_kd] (+ log pi_k), weights = [mu_k/s_k; -1/(2 s_k)]."""
    prec = 1.0 / variances
    bias = -0.5 * ((means.pow(2) * prec).sum(1) + variances.log().sum(1)
                   + means.shape[1] * math.log(2 * math.pi))
    if log_priors is not None:
        bias = bias + log_priors
    return bias, torch.cat([means * prec, -0.5 * prec], 1).T.contiguous()


def log_densities(xx: torch.Tensor, means: torch.Tensor, variances: torch.Tensor,
                  log_priors: torch.Tensor | None = None) -> torch.Tensor:
    """log N(x_n | mu_k, diag sigma^2_k) (+ log pi_k) for all n, k: (N, K), as one GEMM.

    ``xx`` is :func:`augment` (x); the parameters are used in its dtype.
    """
    bias, weights = density_params(means.to(xx), variances.to(xx),
                                   None if log_priors is None else log_priors.to(xx))
    return addmm(bias, xx, weights)


def posteriors(x: torch.Tensor, means: torch.Tensor, variances: torch.Tensor,
               priors: torch.Tensor) -> torch.Tensor:
    """p(k | x_n) for (N, D) samples: (N, K)."""
    return log_densities(augment(x), means, variances, priors.log()).softmax(1)
