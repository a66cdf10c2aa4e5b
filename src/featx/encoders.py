"""Image encodings from local features: cross-layer pooling and the pooling baselines.

All functions are pure, work on torch tensors on any device, and are batched over images.

**Cross-convolutional-layer pooling** (Liu, Shen, van den Hengel, "The Treasure beneath
Convolutional Layers: Cross-convolutional-layer Pooling for Image Classification", CVPR 2015,
§3.2, Eq. 2). With x_i the D-d (PCA-reduced) local feature at position i -- the m x n x D_t
subarray of layer t around the unit that layer t+1 computes from it -- and a_i the K = D_{t+1}
activations of layer t+1 at that unit,

    P = [P_1, ..., P_K],    P_k = sum_i x_i a_{i,k}     (P = A^T X: one GEMM per image),

flattened P_k-major (index k * D + d): 500-d local features and conv5's 256 channels give
128,000 dims. Then signed square root and L2 (:func:`normalize`).

**Baselines** (Liu Table 7): direct max pooling and sum pooling (then signed square root) of the
same local features, and spatial pyramid max pooling over 1x1, 2x2 and 4x4 grids of their
positions. **Feature-sign quantisation** (Liu §4.3.3) keeps sign(P) in {-1, 0, 1}, stored at 2
bits per dimension (:func:`pack_sign`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def cross_layer_pool(local: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """Cross-layer pooling, unnormalised.

    local: (B, N, D) local features; guide: (B, N, K) guidance activations at the same N
    positions. Returns (B, K * D), P_k-major: out[b, k * D + d] = sum_i guide[b,i,k] local[b,i,d].
    """
    return torch.bmm(guide.transpose(1, 2), local).flatten(1)


def normalize(enc: torch.Tensor, power: bool = True, l2: bool = True) -> torch.Tensor:
    """Signed square root (``power``) then L2 normalisation (``l2``) of each row of (B, dim)."""
    if power:
        enc = enc.sign() * enc.abs().sqrt()
    if l2:
        enc = enc / enc.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return enc


def max_pool(local: torch.Tensor) -> torch.Tensor:
    """Direct max pooling: (B, N, D) -> (B, D)."""
    return local.amax(1)


def sum_pool(local: torch.Tensor) -> torch.Tensor:
    """Direct sum pooling: (B, N, D) -> (B, D) (the signed square root comes in :func:`normalize`)."""
    return local.sum(1)


def spp(local_map: torch.Tensor, levels: tuple[int, ...] = (1, 2, 4)) -> torch.Tensor:
    """Spatial pyramid max pooling of a map of local features.

    local_map: (B, D, H, W) -> (B, D * sum(l * l)): for each level l the map is cut into l x l
    cells (as ``adaptive_max_pool2d`` does) and each cell max-pooled; level-major, then cell
    (row-major), then D.
    """
    parts = [F.adaptive_max_pool2d(local_map, lvl).flatten(2).transpose(1, 2).flatten(1)
             for lvl in levels]
    return torch.cat(parts, 1)


def concat_normalized(blocks: list[torch.Tensor]) -> torch.Tensor:
    """Join L2-normalised blocks (B, d_i) with equal weight; the result has unit L2 norm."""
    return torch.cat(blocks, 1) / math.sqrt(len(blocks))


def pack_sign(enc: np.ndarray) -> np.ndarray:
    """sign(enc) in {-1, 0, 1} packed at 2 bits per dimension: (B, dim) -> uint8 (B, ceil(dim/4)).

    Codes: 0 -> 0b00, +1 -> 0b01, -1 -> 0b10; dimension j sits in byte j // 4 at bits
    2 * (j % 4).
    """
    b, dim = enc.shape
    codes = np.where(enc > 0, 1, np.where(enc < 0, 2, 0)).astype(np.uint8)
    pad = (-dim) % 4
    codes = np.pad(codes, ((0, 0), (0, pad))).reshape(b, -1, 4)
    return (codes[..., 0] | codes[..., 1] << 2 | codes[..., 2] << 4 | codes[..., 3] << 6).astype(np.uint8)


def unpack_sign(packed: np.ndarray, dim: int) -> np.ndarray:
    """Inverse of :func:`pack_sign`: uint8 (B, ceil(dim/4)) -> float32 (B, dim) in {-1, 0, 1}."""
    shifts = np.array([0, 2, 4, 6], np.uint8)
    codes = (packed[..., None] >> shifts) & 3
    codes = codes.reshape(packed.shape[0], -1)[:, :dim]
    return np.where(codes == 1, 1.0, np.where(codes == 2, -1.0, 0.0)).astype(np.float32)


# --- Fisher vectors and their multi-scale poolings ----------------------------------------

POSTERIOR_FLOOR = 1e-6  # VLFeat's vl_fisher drops posteriors below this


def _moments(x: torch.Tensor, means: torch.Tensor, variances: torch.Tensor, priors: torch.Tensor,
             vlad: bool = False):
    """Per image: S0 = sum_n g_nk (B, K), S1 = g^T x (B, K, D), S2 = g^T x^2 (B, K, D).

    g are the GMM posteriors (below 1e-6 set to 0, as VLFeat) or, with ``vlad``, the hard
    assignment to the nearest mean. x: (B, N, D).
    """
    from featx.fit import _augment, _log_gauss

    b, n, d = x.shape
    flat = x.reshape(b * n, d)
    if vlad:
        dist = torch.addmm((means * means).sum(1)[None], flat, means.T, alpha=-2)
        g = F.one_hot(dist.argmin(1), means.shape[0]).to(x.dtype)
    else:
        g = torch.softmax(_log_gauss(_augment(flat), means, variances, priors.log()), 1)
        g = g.masked_fill_(g < POSTERIOR_FLOOR, 0.0)
    g = g.view(b, n, -1).transpose(1, 2)  # (B, K, N)
    return g.sum(2), torch.bmm(g, x), torch.bmm(g, x * x)


def fisher_vector(x: torch.Tensor, means: torch.Tensor, variances: torch.Tensor,
                  priors: torch.Tensor, *, improved: bool = True) -> torch.Tensor:
    """Fisher vector of local features under a diagonal GMM, following VLFeat's ``vl_fisher``.

    x: (N, D) or (B, N, D); means, variances: (K, D); priors: (K,). Returns (2KD,) or
    (B, 2KD), all mean blocks first, then all variance blocks:

        u_k = 1/(N sqrt(pi_k))   sum_n g_nk (x_n - mu_k) / sigma_k
        v_k = 1/(N sqrt(2 pi_k)) sum_n g_nk [((x_n - mu_k) / sigma_k)^2 - 1]

    with posteriors g_nk < 1e-6 dropped. ``improved``: signed square root then L2 (Perronnin,
    Sanchez, Mensink, ECCV 2010). Moments come from batched GEMMs; nothing of size N x K x D is
    formed. They are combined in float64, which keeps 1e-6 agreement with a direct loop.
    """
    single = x.ndim == 2
    xb = (x[None] if single else x).float()
    n = xb.shape[1]
    s0, s1, s2 = (t.double() for t in _moments(xb, means.float(), variances.float(), priors.float()))
    mu, var, pi = means.double(), variances.double(), priors.double()
    sigma = var.sqrt()
    u = (s1 - mu * s0[..., None]) / (sigma * n * pi.sqrt()[:, None])
    v = ((s2 - 2 * mu * s1 + mu * mu * s0[..., None]) / var - s0[..., None]) / (
        n * (2 * pi).sqrt()[:, None])
    fv = torch.cat([u.flatten(1), v.flatten(1)], 1).to(torch.float32)
    if improved:
        fv = normalize(fv)
    return fv[0] if single else fv


def vlad(x: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """VLAD (Jegou et al. 2010): residuals to the nearest of K means, summed per mean,
    intra-normalised (L2 per block), then signed square root and L2. (B, N, D) -> (B, K*D)."""
    s0, s1, _ = _moments(x.float(), means.float(), None, None, vlad=True)
    v = s1 - means[None] * s0[..., None]
    v = v / v.norm(dim=2, keepdim=True).clamp_min(1e-12)
    return normalize(v.flatten(1))


def _gmm_params(gmm) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(means, variances, priors) of a fitted :class:`featx.fit.GaussianMixture` (or any object
    with ``means_``, ``variances_``, ``priors_``)."""
    return tuple(torch.as_tensor(getattr(gmm, a), dtype=torch.float32)
                 for a in ("means_", "variances_", "priors_"))


def mpp(per_scale_features: list[torch.Tensor], gmm) -> torch.Tensor:
    """Multi-scale pyramid pooling (Yoo et al., arXiv 1412.1628, Eq. 1).

    per_scale_features: one (B, N_s, D) tensor per scale; gmm: a fitted diagonal GMM.
    G = (1/|S|) sum_s G^s / ||G^s||_2 over the plain FVs G^s of each scale, then signed square
    root and L2. Returns (B, 2KD).
    """
    params = _gmm_params(gmm)
    acc = 0
    for xs in per_scale_features:
        g = fisher_vector(xs, *params, improved=False)
        acc = acc + g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return normalize(acc / len(per_scale_features))


def nfk(per_scale_features: list[torch.Tensor], gmm) -> torch.Tensor:
    """Naive Fisher kernel (Yoo Eq. 2): one plain FV over all scales' features, then signed
    square root and L2."""
    return normalize(fisher_vector(torch.cat(per_scale_features, 1), *_gmm_params(gmm),
                                   improved=False))


def csf(per_scale_features: list[torch.Tensor], gmm) -> torch.Tensor:
    """Concatenation of the scale-wise L2-normalised plain FVs (Yoo Table 2), then signed
    square root and L2. (B, |S| * 2KD)."""
    params = _gmm_params(gmm)
    parts = []
    for xs in per_scale_features:
        g = fisher_vector(xs, *params, improved=False)
        parts.append(g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    return normalize(torch.cat(parts, -1))
