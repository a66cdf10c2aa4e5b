"""Methods on the local features of layer t: cross-layer pooling (Liu et al. §3.2; CL-45,
with ``--views blocks`` CL-45F, ``whole,blocks`` CL-45C) and the Table 7 baselines. The inputs
of one view (its blocks, say) are pooled together. Scheme 2 (Liu et al. 2016): cross-layer
pooling of dense fc region features under a trained guidance layer
(``encode --method cross-layer --guidance``)."""

from __future__ import annotations

import torch

from featx.encoders import cross_layer_pool, guide_at, guided_pool, max_pool, spp, sum_pool
from featx.methods.registry import Context, method


def _local(ctx: Context, local: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """(B, V, C, H, W) -> PCA-reduced subarray maps (B*V, D', h, w), B, V."""
    b, v = local.shape[:2]
    return ctx.project(local.flatten(0, 1)), b, v


def _features(maps: torch.Tensor, b: int) -> torch.Tensor:
    """(B*V, D', h, w) -> every input's local features of an image together: (B, V*h*w, D')."""
    return maps.flatten(2).transpose(1, 2).reshape(b, -1, maps.shape[1])


@method("cross-layer", reads=("local", "guide"), needs=("pca",))
def cross_layer(ctx: Context, local: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    maps, b, v = _local(ctx, local)
    g = guide_at(guide.flatten(0, 1), ctx.grid)
    p = cross_layer_pool(maps.flatten(2).transpose(1, 2), g.flatten(2).transpose(1, 2))
    return p.view(b, v, -1).sum(1)


@method("cross-layer-guided", reads=("region",), needs=("guidance",), view="pyramid")
def cross_layer_guided(ctx: Context, scales: list[torch.Tensor]) -> torch.Tensor:
    g = ctx.guidance
    return guided_pool(ctx.region_features(scales), g.weight, g.bias)


@method("max", reads=("local",), needs=("pca",))
def direct_max(ctx: Context, local: torch.Tensor) -> torch.Tensor:
    maps, b, _ = _local(ctx, local)
    return max_pool(_features(maps, b))


@method("sum-sqrt", reads=("local",), needs=("pca",), power=True)
def direct_sum(ctx: Context, local: torch.Tensor) -> torch.Tensor:
    maps, b, _ = _local(ctx, local)
    return sum_pool(_features(maps, b))


@method("spp", reads=("local",), needs=("pca",))
def spatial_pyramid(ctx: Context, local: torch.Tensor) -> torch.Tensor:
    maps, b, v = _local(ctx, local)
    return spp(maps).view(b, v, -1).amax(1)
