"""Fisher vectors of local features under a diagonal GMM, and their multi-scale poolings.

**Improved Fisher vector** (Perronnin, Sanchez, Mensink, ECCV 2010), following VLFeat's
``vl_fisher``: with posteriors g_nk (below 1e-6 set to 0, as VLFeat),

    u_k = 1/(N sqrt(pi_k))   sum_n g_nk (x_n - mu_k) / sigma_k
    v_k = 1/(N sqrt(2 pi_k)) sum_n g_nk [((x_n - mu_k) / sigma_k)^2 - 1]
    FV  = [u_1 ... u_K, v_1 ... v_K]        (2KD dims), then signed square root and L2.

**Multi-scale pyramid pooling** (Yoo, Park, Lee, Kweon, arXiv 1412.1628): with G^s the plain FV
of scale s's local features, MPP (Eq. 1) = (1/|S|) sum_s G^s / ||G^s||_2; NFK (Eq. 2) = one
plain FV over all scales' features; CSF (Table 2) = the scale-wise L2-normalised FVs
concatenated; each then signed square root and L2. MPP + SP (Yoo Tables 3-6): MPP of the
vectors whose receptive-field centres fall in each of the image's whole, top, middle and bottom
thirds, the four concatenated with equal weight.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from featx.encoders.pooling import normalize
from featx.encoders.gaussian import augment, density_params
from featx.linalg import addmm

POSTERIOR_FLOOR = 1e-6  # VLFeat's vl_fisher drops posteriors below this
# F.threshold keeps values strictly above its threshold: the float32 just below the floor keeps
# exactly the posteriors >= 1e-6, as VLFeat does
_KEEP_ABOVE = torch.nextafter(torch.tensor(POSTERIOR_FLOOR), torch.tensor(0.0)).item()
# rows per E-step block: the (rows, K) posteriors of a block stay in the allocator's cache
# (one (B N, K) block for a batch of images page-faults afresh on every call)
BLOCK_ROWS = 4096
# below this fraction of posteriors kept, the moments are a sparse x dense product
SPARSE_BELOW = 0.05


def _blocks(b: int, n: int, rows: int):
    """(first image, last image + 1, first row, last row + 1) of blocks of about ``rows``
    rows: whole images where an image has fewer, else equal parts of one image."""
    if n >= rows:
        step = math.ceil(n / math.ceil(n / rows))
        for i in range(b):
            for r in range(0, n, step):
                yield i, i + 1, r, min(n, r + step)
    else:
        per = max(1, rows // n)
        for i in range(0, b, per):
            yield i, min(b, i + per), 0, n


def _block_moments(g: torch.Tensor, xx: torch.Tensor, images: int, sparse: bool | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """sum_n g_nk (images * K,) and [sum_n g_nk x_n, sum_n g_nk x_n^2] (images * K, 2D) per
    image and component, over the posteriors kept (>= 1e-6), for a block of ``images``
    images' rows (equal counts) with posteriors g (rows, K) and xx = [x, x^2]. Sparse (None:
    when few posteriors are kept, as with real descriptors): only the kept (n, k) pairs, as a
    sparse x dense product; dense: g floored in place, then one batched GEMM."""
    rows, k = g.shape
    m = rows // images
    keep = g > _KEEP_ABOVE
    if sparse is None:
        sparse = int(keep.sum()) <= SPARSE_BELOW * g.numel()
    if sparse:
        n_idx, k_idx = keep.nonzero(as_tuple=True)  # row-major, so coalesced as (row, slot)
        slot = n_idx // m * k + k_idx
        kept = g[n_idx, k_idx]
        sp = torch.sparse_coo_tensor(torch.stack([n_idx, slot]), kept, (rows, images * k),
                                     is_coalesced=True, check_invariants=False)
        return (torch.zeros(images * k, device=g.device).index_add_(0, slot, kept),
                torch.sparse.mm(sp.t(), xx))
    g = F.threshold_(g, _KEEP_ABOVE, 0.0).view(images, m, k)
    return (g.sum(1).flatten(),
            torch.bmm(g.transpose(1, 2), xx.view(images, m, -1)).view(images * k, -1))


def fisher_vector(x: torch.Tensor, means: torch.Tensor, variances: torch.Tensor,
                  priors: torch.Tensor, *, improved: bool = True,
                  sparse: bool | None = None) -> torch.Tensor:
    """Fisher vector of local features x (N, D) or (B, N, D) under a diagonal GMM (means,
    variances (K, D), priors (K,)): (2KD,) or (B, 2KD), VLFeat's layout (module docstring).

    ``improved``: signed square root then L2. Rows go in blocks of about
    :data:`BLOCK_ROWS`: one GEMM for the log-densities, a fused softmax, then the moments,
    sparse or dense as :func:`_block_moments` decides (``sparse`` forces either); nothing of
    size N x K x D is formed. The moments are combined in float64, which keeps 1e-6 agreement
    with a direct loop (s2 - 2 mu s1 + mu^2 s0 cancels).
    """
    single = x.ndim == 2
    xb = (x[None] if single else x).float()
    b, n, d = xb.shape
    k = means.shape[0]
    bias, weights = density_params(means.float(), variances.float(), priors.float().log())
    s0 = torch.zeros(b * k, device=xb.device)
    s12 = torch.zeros(b * k, 2 * d, device=xb.device)
    for i0, i1, r0, r1 in _blocks(b, n, BLOCK_ROWS):
        xx = augment(xb[i0:i1, r0:r1].reshape(-1, d))
        g = addmm(bias, xx, weights).softmax(1)
        block_s0, block_s12 = _block_moments(g, xx, i1 - i0, sparse)
        s0[i0 * k:i1 * k] += block_s0
        s12[i0 * k:i1 * k] += block_s12
    s0, s12 = s0.double().view(b, k, 1), s12.double().view(b, k, 2 * d)
    s1, s2 = s12[..., :d], s12[..., d:]
    mu, var, pi = means.double(), variances.double(), priors.double()
    u = (s1 - mu * s0) / (var.sqrt() * n * pi.sqrt()[:, None])
    v = ((s2 - 2 * mu * s1 + mu * mu * s0) / var - s0) / (n * (2 * pi).sqrt()[:, None])
    fv = torch.cat([u.flatten(1), v.flatten(1)], 1).to(torch.float32)
    if improved:
        fv = normalize(fv)
    return fv[0] if single else fv


def vlad(x: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """VLAD (Jegou et al. 2010): residuals to the nearest of K means, summed per mean,
    intra-normalised (L2 per block), then signed square root and L2. (B, N, D) -> (B, K*D)."""
    x, means = x.float(), means.float()
    flat = x.reshape(-1, x.shape[2])
    dist = torch.addmm((means * means).sum(1)[None], flat, means.T, alpha=-2)
    onehot = F.one_hot(dist.argmin(1), means.shape[0]).to(x.dtype).view(*x.shape[:2], -1)
    v = torch.bmm(onehot.transpose(1, 2), x) - means[None] * onehot.sum(1)[..., None]
    v = v / v.norm(dim=2, keepdim=True).clamp_min(1e-12)
    return normalize(v.flatten(1))


def gmm_params(gmm) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(means, variances, priors) of a fitted :class:`featx.fit.GaussianMixture` (or any object
    with ``means_``, ``variances_``, ``priors_``)."""
    return tuple(torch.as_tensor(getattr(gmm, a), dtype=torch.float32)
                 for a in ("means_", "variances_", "priors_"))


def _scale_fvs(per_scale_features: list[torch.Tensor], gmm) -> list[torch.Tensor]:
    """The plain FV G^s of each scale, L2-normalised."""
    params = gmm_params(gmm)
    out = []
    for xs in per_scale_features:
        g = fisher_vector(xs, *params, improved=False)
        out.append(g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    return out


def mpp(per_scale_features: list[torch.Tensor], gmm) -> torch.Tensor:
    """Multi-scale pyramid pooling (Yoo Eq. 1): one (B, N_s, D) tensor per scale -> (B, 2KD)."""
    return normalize(sum(_scale_fvs(per_scale_features, gmm)) / len(per_scale_features))


def nfk(per_scale_features: list[torch.Tensor], gmm) -> torch.Tensor:
    """Naive Fisher kernel (Yoo Eq. 2): one plain FV over all scales' features -> (B, 2KD)."""
    return normalize(fisher_vector(torch.cat(per_scale_features, 1), *gmm_params(gmm),
                                   improved=False))


def csf(per_scale_features: list[torch.Tensor], gmm) -> torch.Tensor:
    """Concatenated scale-wise normalised FVs (Yoo Table 2) -> (B, |S| * 2KD)."""
    return normalize(torch.cat(_scale_fvs(per_scale_features, gmm), -1))


# (top, bottom) of each spatial-pyramid region as fractions of the image height
SP_REGIONS = ((0.0, 1.0), (0.0, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 1.0))


def row_centres(sizes: list[int], rows: list[int], geometry=None) -> list[torch.Tensor]:
    """Receptive-field centres of a dense layer's map rows, as fractions of the image height,
    one tensor per scale (input ``sizes[s]`` squared giving ``rows[s]`` rows).

    ``geometry``: per scale, (centre of row 0, stride) in input pixels from the network's
    receptive-field arithmetic (:func:`featx.backbones.features.receptive_field`, recorded by
    extract as ``pyramid_geometry``): row i is at (start + stride i + 0.5) / S. Without it
    (shards of featx before it was recorded) an estimate: the stride from how the map grows,
    (S_max - S_min) / (h_max - h_min), and the windows centred on the image, row i at S/2 +
    stride (i - (h - 1)/2) -- up to 1.3% of the height off for AlexNet, 4.8% for Caffe's."""
    if geometry:
        return [(start + jump * torch.arange(h, dtype=torch.float64) + 0.5) / s
                for (start, jump), h, s in zip(geometry, rows, sizes)]
    if len(set(rows)) > 1:
        lo, hi = min(range(len(rows)), key=rows.__getitem__), max(range(len(rows)),
                                                                 key=rows.__getitem__)
        stride = (sizes[hi] - sizes[lo]) / (rows[hi] - rows[lo])
    else:
        stride = sizes[0] / rows[0]
    return [(s / 2 + stride * (torch.arange(h, dtype=torch.float64) - (h - 1) / 2)) / s
            for s, h in zip(sizes, rows)]


def region_indices(sizes: list[int], counts: list[int], top: float, bottom: float,
                   geometry=None) -> list[torch.Tensor]:
    """Per scale, the indices (row-major, square maps of ``counts[s]`` vectors) of the vectors
    whose receptive-field centre lies in rows [top, bottom) of the image (bottom = 1 included)."""
    rows = [math.isqrt(n) for n in counts]
    if any(h * h != n for h, n in zip(rows, counts)):
        raise ValueError(f"pyramid maps must be square to place them: {counts} vectors")
    out = []
    for y, h in zip(row_centres(sizes, rows, geometry), rows):
        inside = (y >= top) & ((y < bottom) | (bottom >= 1.0))
        r = inside.nonzero()[:, 0]
        out.append((r[:, None] * h + torch.arange(h)).flatten())
    return out


def mpp_sp(per_scale_features: list[torch.Tensor], gmm, sizes: list[int],
           geometry=None) -> torch.Tensor:
    """MPP + spatial pyramid: MPP of each :data:`SP_REGIONS` region's vectors (scales where
    the region holds none left out; no vector at all gives zeros), joined with equal weight:
    (B, 4 * 2KD), unit norm."""
    counts = [x.shape[1] for x in per_scale_features]
    b = per_scale_features[0].shape[0]
    k, d = torch.as_tensor(gmm.means_).shape
    blocks = []
    for top, bottom in SP_REGIONS:
        idx = region_indices(sizes, counts, top, bottom, geometry)
        subset = [x[:, i.to(x.device)] for x, i in zip(per_scale_features, idx) if len(i)]
        blocks.append(mpp(subset, gmm) if subset else
                      torch.zeros(b, 2 * k * d, device=per_scale_features[0].device))
    return torch.cat(blocks, 1) / math.sqrt(len(blocks))
