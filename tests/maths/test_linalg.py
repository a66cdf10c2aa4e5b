"""featx.linalg: GEMMs through oneDNN's 1x1 convolution on the CPU, equal to torch.addmm."""

from __future__ import annotations

import pytest
import torch

from featx.linalg import addmm


@pytest.mark.parametrize("n,c,k", [(4410, 256, 256), (1, 3, 2), (7, 1, 5), (300, 17, 1)])
@pytest.mark.parametrize("bias", ["none", "row", "vector", "full"])
def test_addmm_equals_the_float64_product(n, c, k, bias):
    g = torch.Generator().manual_seed(n + c + k)
    x, w = torch.randn(n, c, generator=g), torch.randn(c, k, generator=g)
    b = {"none": None, "row": torch.randn(1, k, generator=g),
         "vector": torch.randn(k, generator=g), "full": torch.randn(n, k, generator=g)}[bias]
    ref = x.double() @ w.double() + (0 if b is None else b.double())
    got = addmm(b, x, w)
    assert got.shape == (n, k) and got.dtype == torch.float32 and got.is_contiguous()
    scale = x.abs().max() * w.abs().max() * c  # float32 rounding of sums of c products
    assert (got.double() - ref).abs().max() <= 1e-6 * scale


def test_addmm_takes_torchs_route_where_the_convolution_does_not_apply():
    x = torch.randn(6, 4, dtype=torch.float64)
    w = torch.randn(4, 3, dtype=torch.float64)
    assert torch.equal(addmm(None, x, w), x @ w)  # float64
    strided = torch.randn(4, 6).T  # not contiguous
    assert torch.equal(addmm(None, strided, w.float()), strided @ w.float())
    assert addmm(None, torch.randn(0, 4), w.float()).shape == (0, 3)
