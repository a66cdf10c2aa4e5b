"""Methods on the dense pyramid vectors (Yoo et al.): the improved Fisher vector of all scales'
vectors as one set, VLAD, and the multi-scale poolings MPP (Eq. 1), NFK (Eq. 2), CSF, and MPP
over the spatial pyramid of whole / top / middle / bottom thirds (MPP + SP)."""

from __future__ import annotations

import torch

from featx import encoders
from featx.methods.registry import Context, method


def _all(ctx: Context, scales: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(ctx.fisher_features(scales), 1)


@method("fisher", reads=("fisher",), needs=("gmm",), view="pyramid", normalised=True)
def fisher(ctx: Context, scales: list[torch.Tensor]) -> torch.Tensor:
    g = ctx.gmm
    return encoders.fisher_vector(_all(ctx, scales), g.means_, g.variances_, g.priors_)


@method("vlad", reads=("fisher",), needs=("gmm",), view="pyramid", normalised=True)
def vlad(ctx: Context, scales: list[torch.Tensor]) -> torch.Tensor:
    return encoders.vlad(_all(ctx, scales), ctx.gmm.means_)


@method("mpp", reads=("fisher",), needs=("gmm",), view="pyramid", normalised=True)
def mpp(ctx: Context, scales: list[torch.Tensor]) -> torch.Tensor:
    return encoders.mpp(ctx.fisher_features(scales), ctx.gmm)


@method("nfk", reads=("fisher",), needs=("gmm",), view="pyramid", normalised=True)
def nfk(ctx: Context, scales: list[torch.Tensor]) -> torch.Tensor:
    return encoders.nfk(ctx.fisher_features(scales), ctx.gmm)


@method("csf", reads=("fisher",), needs=("gmm",), view="pyramid", normalised=True)
def csf(ctx: Context, scales: list[torch.Tensor]) -> torch.Tensor:
    return encoders.csf(ctx.fisher_features(scales), ctx.gmm)


@method("mpp-sp", reads=("fisher",), needs=("gmm",), view="pyramid", normalised=True)
def mpp_sp(ctx: Context, scales: list[torch.Tensor]) -> torch.Tensor:
    return encoders.mpp_sp(ctx.fisher_features(scales), ctx.gmm, list(ctx.pyramid_sizes),
                           ctx.pyramid_geometry)
