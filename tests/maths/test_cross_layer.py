"""featx.encoders.cross_layer: subarray geometry and the cross-layer encoding against a naive reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featx.encoders import CrossLayerGrid, cross_layer_pool, project_subarrays
from featx.errors import InputError
from featx.fit import PCA


def identity_pca(dim: int) -> PCA:
    pca = PCA(n_components=dim)
    pca.components_, pca.mean_ = torch.eye(dim), torch.zeros(dim)
    pca.explained_variance_ = torch.ones(dim)
    return pca


def raw_subarrays(x: torch.Tensor, g: CrossLayerGrid, m: int) -> torch.Tensor:
    w, b = identity_pca(x.shape[1] * m * m).as_conv(x.shape[1], m, m)
    return project_subarrays(x, w, b, g)


def test_alexnet_grid_gives_121_subarrays_equal_to_manual_slicing():
    g = CrossLayerGrid.of((13, 13), (13, 13), (3, 3))
    assert g.rows == g.cols and g.positions == 121
    assert (g.rows.stride, g.rows.first, g.rows.start, g.rows.count) == (1, 1, 0, 11)
    x = torch.randn(2, 5, 13, 13)
    out = raw_subarrays(x, g, 3)  # (2, 45, 11, 11)
    assert out.shape == (2, 45, 11, 11)
    for i in range(11):
        for j in range(11):
            # the subarray centred on unit (i + 1, j + 1): boundary units are never centres
            manual = x[:, :, i:i + 3, j:j + 3].reshape(2, -1)
            torch.testing.assert_close(out[:, :, i, j], manual, rtol=0, atol=1e-5)


def test_pair_on_different_grids_centres_subarrays_on_the_coarse_units():
    g = CrossLayerGrid.of((14, 14), (7, 7), (3, 3))  # ResNet layer3 -> layer4: stride 2
    r = g.rows
    assert (r.stride, r.first, r.count) == (2, 1, 6)
    x = torch.randn(1, 2, 14, 14)
    out = raw_subarrays(x, g, 3)
    assert out.shape == (1, 18, 6, 6)
    for p in range(r.first, r.first + r.count):
        for q in range(r.first, r.first + r.count):
            c, d = 2 * p, 2 * q  # unit (p, q) of the coarse grid sits over (2p, 2q)
            manual = x[0, :, c - 1:c + 2, d - 1:d + 2].reshape(-1)
            torch.testing.assert_close(out[0, :, p - 1, q - 1], manual, rtol=0, atol=1e-5)
    g5 = CrossLayerGrid.of((14, 14), (14, 14), (5, 5)).rows  # EfficientNet-Lite0 stage4 -> 5
    assert (g5.first, g5.count) == (2, 10)
    with pytest.raises(InputError, match="integer stride"):
        CrossLayerGrid.of((13, 13), (7, 7), (3, 3))


def test_projection_as_convolution_equals_unfold_then_pca(make_images):
    rng = np.random.default_rng(0)
    x = torch.from_numpy(np.maximum(rng.normal(size=(3, 16, 13, 13)), 0).astype(np.float32))
    samples = torch.nn.functional.unfold(x, 3).transpose(1, 2).reshape(-1, 144)
    pca = PCA(n_components=10, whiten=True, device="cpu").fit(samples)
    g = CrossLayerGrid.of((13, 13), (13, 13), (3, 3))
    out = project_subarrays(x, *pca.as_conv(16, 3, 3), g)  # (3, 10, 11, 11)
    ref = pca.transform(samples).view(3, 11, 11, 10).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def _loo(local, guide, w, i):
    """The score without position i, spelled out."""
    from featx.encoders import normalize

    keep = [j for j in range(local.shape[1]) if j != i]
    return (normalize(cross_layer_pool(local[:, keep], guide[:, keep])) @ w)[0]


def test_score_contributions_sum_to_the_svm_score_and_agree_with_leaving_regions_out():
    """Issue 27.3: the contributions and the interaction term add up to w . normalise(P)
    exactly, and each contribution has the sign of removing its position (leave-one-region
    -out) for >= 95% of the positions, where the unnormalised linear shares x_i' W a_i do not
    (on random PCA-like features: mixed signs, ReLU guidance, 121 positions)."""
    from featx.encoders import contributions, normalize, score_contributions

    torch.manual_seed(0)
    new, old = [], []
    for _ in range(4):
        x = torch.randn(1, 121, 32, dtype=torch.float64)
        a = torch.relu(torch.randn(1, 121, 16, dtype=torch.float64))
        w = torch.randn(2, 16 * 32, dtype=torch.float64)
        c, rest = score_contributions(x, a, w)
        score = normalize(cross_layer_pool(x, a)) @ w.T  # (1, 2)
        torch.testing.assert_close(c.sum(1) + rest, score, rtol=0, atol=1e-12)
        full = score[0, 0]
        loo = torch.stack([full - _loo(x, a, w[0], i) for i in range(121)])
        new.append(((c[0, :, 0] > 0) == (loo > 0)).double().mean().item())
        old.append(((contributions(x, a, w[0])[0] > 0) == (loo > 0)).double().mean().item())
    assert min(new) >= 0.95, new
    assert sum(old) / len(old) < 0.9, old  # what the former maps showed


def test_score_contributions_without_the_power_transform_are_the_linear_shares():
    from featx.encoders import contributions, score_contributions

    torch.manual_seed(1)
    x = torch.randn(2, 20, 8, dtype=torch.float64)
    a = torch.relu(torch.randn(2, 20, 4, dtype=torch.float64))
    w = torch.randn(3, 32, dtype=torch.float64)
    c, rest = score_contributions(x, a, w, power=False)
    norm = cross_layer_pool(x, a).norm(dim=1)
    for k in range(3):
        torch.testing.assert_close(c[..., k], contributions(x, a, w[k]) / norm[:, None])
    torch.testing.assert_close(rest, torch.zeros_like(rest), rtol=0, atol=1e-12)
