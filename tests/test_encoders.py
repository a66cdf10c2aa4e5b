"""featx.encoders against naive reference implementations."""

from __future__ import annotations

import numpy as np
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


def test_cross_layer_pool_equals_the_double_loop():
    rng = np.random.default_rng(0)
    local = rng.normal(size=(3, 121, 20)).astype(np.float32)
    guide = np.maximum(rng.normal(size=(3, 121, 7)), 0).astype(np.float32)  # post-ReLU
    ours = encoders.cross_layer_pool(torch.from_numpy(local), torch.from_numpy(guide)).numpy()
    ref = naive_cross_layer(local.astype(np.float64), guide.astype(np.float64))
    assert ours.shape == (3, 7 * 20)
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


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 41)),
              elements=st.sampled_from([-2.5, -1.0, 0.0, 0.0, 0.5, 3.0])))
def test_sign_pack_round_trip(x):
    packed = encoders.pack_sign(x)
    assert packed.dtype == np.uint8 and packed.shape == (x.shape[0], -(-x.shape[1] // 4))
    np.testing.assert_array_equal(encoders.unpack_sign(packed, x.shape[1]), np.sign(x))


def test_sign_codes_take_two_bits_per_dimension():
    x = np.random.default_rng(1).normal(size=(2, 128_000)).astype(np.float32)
    packed = encoders.pack_sign(x)
    assert packed.nbytes == 2 * 32_000
    assert encoders.pack_sign(np.array([[1.0, -1.0, 0.0, 1.0]])).tolist() == [[0b01_00_10_01]]
