"""featx.encoders against naive reference implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from featx import encoders


def naive_cross_layer(local: np.ndarray, guide: np.ndarray) -> np.ndarray:
    """Liu et al. Eq. 2 as written: P_k = sum_i x_i a_ik, concatenated over k."""
    b, n, d = local.shape
    k = guide.shape[2]
    out = np.zeros((b, k * d))
    for img in range(b):
        for kk in range(k):
            pk = np.zeros(d)
            for i in range(n):
                pk += local[img, i] * guide[img, i, kk]
            out[img, kk * d:(kk + 1) * d] = pk
    return out


# small, and AlexNet's conv4/conv5 size (500-d local features): its products go to oneDNN
@pytest.mark.parametrize("b,d,k", [(3, 20, 7), (2, 500, 256)])
def test_cross_layer_pool_equals_the_double_loop(b, d, k):
    rng = np.random.default_rng(0)
    local = rng.normal(size=(b, 121, d)).astype(np.float32)
    guide = np.maximum(rng.normal(size=(b, 121, k)), 0).astype(np.float32)  # post-ReLU
    ours = encoders.cross_layer_pool(torch.from_numpy(local), torch.from_numpy(guide)).numpy()
    ref = naive_cross_layer(local.astype(np.float64), guide.astype(np.float64))
    assert ours.shape == (b, k * d)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 300)),
              elements=st.floats(-1e3, 1e3, width=32, allow_subnormal=False)), st.booleans())
def test_normalized_rows_have_unit_norm(x, power):
    out = encoders.normalize(torch.from_numpy(x), power=power)
    norms = out.norm(dim=1).numpy()
    # contract: rows of norm >= 1e-12 come out with unit norm; all-zero rows stay zero
    big = np.linalg.norm(x.astype(np.float64), axis=1) > 1e-6
    np.testing.assert_allclose(norms[big], 1.0, rtol=1e-5)
    assert np.all(out.numpy()[np.abs(x).max(1) == 0] == 0)
    assert np.all(np.sign(out.numpy()) == np.sign(x))  # signed square root keeps signs


@pytest.mark.parametrize("power,l2", [(True, True), (True, False), (False, True)])
def test_normalize_equals_the_textbook_formula(power, l2):
    x = torch.randn(5, 1000, dtype=torch.float64) * torch.logspace(-3, 3, 5, dtype=torch.float64)[:, None]
    x[2, ::3] = 0
    ref = x.sign() * x.abs().sqrt() if power else x.clone()
    if l2:
        ref = ref / ref.norm(dim=1, keepdim=True)
    got = encoders.normalize(x.float(), power=power, l2=l2).double()
    assert (got - ref).abs().max() < 1e-6 * ref.abs().max()  # float32 rounding


def test_power_norm_is_the_signed_square_root():
    x = torch.tensor([[4.0, -9.0, 0.0]])
    assert torch.equal(encoders.normalize(x, l2=False), torch.tensor([[2.0, -3.0, 0.0]]))


def test_direct_pooling_and_spp_by_hand():
    local = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [-1.0, 5.0]]])  # B=1, N=3, D=2
    assert encoders.max_pool(local).tolist() == [[3.0, 5.0]]
    assert encoders.sum_pool(local).tolist() == [[3.0, 3.0]]
    m = torch.arange(16.0).view(1, 1, 4, 4)  # D=1 on a 4x4 grid
    out = encoders.spp(m, levels=(1, 2, 4)).tolist()[0]
    assert out[0] == 15.0  # 1x1: max of all
    assert out[1:5] == [5.0, 7.0, 13.0, 15.0]  # 2x2 cells, row-major
    assert out[5:] == list(np.arange(16.0))  # 4x4: every unit
    two = torch.stack([m[0], -m[0]], 1)  # D=2: level-major, then cell, then D
    assert encoders.spp(two, levels=(1,)).tolist() == [[15.0, 0.0]]


def test_concat_of_normalized_blocks_has_unit_norm():
    a = encoders.normalize(torch.randn(4, 10))
    b = encoders.normalize(torch.randn(4, 3))
    out = encoders.concat_normalized([a, b])
    assert out.shape == (4, 13) and torch.allclose(out.norm(dim=1), torch.ones(4))


# --- Fisher vectors ------------------------------------------------------------------------

def gmm_params(k=6, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(k, d)), rng.uniform(0.4, 2.0, (k, d)), rng.dirichlet(np.full(k, 3.0)))


def naive_fisher(x, means, variances, priors, improved):
    """VLFeat's vl_fisher written as loops (posteriors < 1e-6 dropped, no renormalisation)."""
    n, d = x.shape
    k = len(priors)
    logp = np.zeros((n, k))
    for i in range(n):
        for c in range(k):
            logp[i, c] = (np.log(priors[c]) - 0.5 * np.sum(np.log(2 * np.pi * variances[c]))
                          - 0.5 * np.sum((x[i] - means[c]) ** 2 / variances[c]))
    post = np.exp(logp - logp.max(1, keepdims=True))
    post /= post.sum(1, keepdims=True)
    u, v = np.zeros((k, d)), np.zeros((k, d))
    for c in range(k):
        for i in range(n):
            if post[i, c] < 1e-6:
                continue
            z = (x[i] - means[c]) / np.sqrt(variances[c])
            u[c] += post[i, c] * z
            v[c] += post[i, c] * (z * z - 1)
        u[c] /= n * np.sqrt(priors[c])
        v[c] /= n * np.sqrt(2 * priors[c])
    fv = np.concatenate([u.ravel(), v.ravel()])
    if improved:
        fv = np.sign(fv) * np.sqrt(np.abs(fv))
        fv /= np.linalg.norm(fv)
    return fv


def t32(*arrays):
    return [torch.tensor(a, dtype=torch.float32) for a in arrays]


def test_fisher_vector_equals_the_loop():
    means, variances, priors = gmm_params()
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(2, 150, 4)) * 1.4).astype(np.float32)
    for improved in (False, True):
        ours = encoders.fisher_vector(*t32(x, means, variances, priors), improved=improved).numpy()
        assert ours.shape == (2, 2 * 6 * 4)
        for b in range(2):
            ref = naive_fisher(x[b].astype(np.float64), means, variances, priors, improved)
            np.testing.assert_allclose(ours[b], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    single = encoders.fisher_vector(*t32(x[0], means, variances, priors))
    assert single.shape == (48,)


@pytest.mark.parametrize("block_rows", [4096, 300, 64])  # several images a block; 2+1; parts
@pytest.mark.parametrize("sparse", [None, True, False])
@pytest.mark.parametrize("spread", [3.0, 0.3])  # peaked posteriors (one kept a row); diffuse
def test_fisher_vector_blocks_and_moment_paths_equal_the_loop(monkeypatch, block_rows, sparse,
                                                             spread):
    from featx.encoders import fisher
    monkeypatch.setattr(fisher, "BLOCK_ROWS", block_rows)
    means, variances, priors = gmm_params(k=32, d=16, seed=3)
    means = means * spread
    rng = np.random.default_rng(4)
    z = rng.choice(32, size=(3, 150), p=priors)
    x = (means[z] + np.sqrt(variances[z]) * rng.normal(size=(3, 150, 16))).astype(np.float32)
    ours = fisher.fisher_vector(*t32(x, means, variances, priors), improved=False,
                                sparse=sparse).numpy()
    kept = []
    for b in range(3):
        ref = naive_fisher(x[b].astype(np.float64), means, variances, priors, False)
        np.testing.assert_allclose(ours[b], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
        post = encoders_posteriors(x[b], means, variances, priors)
        kept.append((post >= 1e-6).mean())
    # the data are what they claim to be, so sparse=None takes each path once
    assert (np.mean(kept) < fisher.SPARSE_BELOW) == (spread == 3.0)


def encoders_posteriors(x, means, variances, priors):
    from featx.fit import posteriors
    return posteriors(*t32(x, means, variances, priors)).numpy()


def test_mpp_of_one_scale_is_the_improved_fv_and_nfk_csf_by_definition():
    from types import SimpleNamespace

    p = t32(*gmm_params())
    gmm = SimpleNamespace(means_=p[0], variances_=p[1], priors_=p[2])
    rng = np.random.default_rng(2)
    s1, s2 = (torch.tensor(rng.normal(size=(3, n, 4)), dtype=torch.float32) for n in (20, 60))
    improved = encoders.fisher_vector(s1, *p)
    torch.testing.assert_close(encoders.mpp([s1], gmm), improved, rtol=1e-5, atol=1e-6)
    nfk = encoders.nfk([s1, s2], gmm)
    torch.testing.assert_close(nfk, encoders.fisher_vector(torch.cat([s1, s2], 1), *p),
                               rtol=1e-5, atol=1e-6)
    g1, g2 = (encoders.fisher_vector(s, *p, improved=False) for s in (s1, s2))
    mean = (g1 / g1.norm(dim=1, keepdim=True) + g2 / g2.norm(dim=1, keepdim=True)) / 2
    torch.testing.assert_close(encoders.mpp([s1, s2], gmm), encoders.normalize(mean))
    both = torch.cat([g1 / g1.norm(dim=1, keepdim=True), g2 / g2.norm(dim=1, keepdim=True)], 1)
    torch.testing.assert_close(encoders.csf([s1, s2], gmm), encoders.normalize(both))


def test_vlad_equals_the_loop():
    means = np.random.default_rng(3).normal(size=(5, 3))
    x = np.random.default_rng(4).normal(size=(1, 80, 3))
    ref = np.zeros((5, 3))
    for xi in x[0]:
        c = np.argmin(((means - xi) ** 2).sum(1))
        ref[c] += xi - means[c]
    ref /= np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    ref = np.sign(ref) * np.sqrt(np.abs(ref))
    ref = ref.ravel() / np.linalg.norm(ref)
    ours = encoders.vlad(*t32(x, means))[0].numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_spatial_pyramid_regions_are_the_hand_computed_rows():
    """AlexNet fc7 maps over scales 227, 321, 454 are 1, 3 and 8 rows; the stride estimate is
    (454 - 227) / (8 - 1) = 32.43 and row i of an 8-row map sits at 227 + 32.43 (i - 3.5),
    i.e. at 0.250, 0.321, 0.393, ... 0.750 of the height."""
    from featx.encoders.fisher import region_indices, row_centres

    sizes, counts = [227, 321, 454], [1, 9, 64]
    ys = row_centres(sizes, [1, 3, 8])
    np.testing.assert_allclose(ys[2].numpy(), (227 + 227 / 7 * (np.arange(8) - 3.5)) / 454)
    rows = lambda t, b: [sorted({int(i) // h for i in idx})  # noqa: E731
                         for idx, h in zip(region_indices(sizes, counts, t, b), [1, 3, 8])]
    assert rows(0, 1) == [[0], [0, 1, 2], list(range(8))]
    assert rows(0, 1 / 3) == [[], [], [0, 1]]
    assert rows(1 / 3, 2 / 3) == [[0], [0, 1, 2], [2, 3, 4, 5]]
    assert rows(2 / 3, 1) == [[], [], [6, 7]]
    # whole rows: every column of a chosen row
    assert len(region_indices(sizes, counts, 0, 1 / 3)[2]) == 16


def test_mpp_sp_is_four_mpps_on_the_region_subsets():
    from types import SimpleNamespace

    from featx.encoders import mpp, mpp_sp

    g = torch.Generator().manual_seed(0)
    gmm = SimpleNamespace(means_=torch.randn(3, 4, generator=g),
                          variances_=torch.rand(3, 4, generator=g) + 0.5,
                          priors_=torch.tensor([0.2, 0.3, 0.5]))
    scales = [torch.randn(2, n, 4, generator=g) for n in (1, 9, 64)]
    got = mpp_sp(scales, gmm, [227, 321, 454])
    top = [scales[2][:, :16]]  # rows 0-1 of the 8x8 map
    middle = [scales[0], scales[1], scales[2][:, 16:48]]  # 1x1, 3x3 whole, rows 2-5
    bottom = [scales[2][:, 48:]]
    want = torch.cat([mpp(scales, gmm), mpp(top, gmm), mpp(middle, gmm), mpp(bottom, gmm)], 1) / 2
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert got.shape == (2, 4 * 2 * 3 * 4)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(2))
