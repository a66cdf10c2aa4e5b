"""featx.linalg: GEMMs through oneDNN (a 1x1 convolution, its matmul) on the CPU, equal to
torch.addmm and torch.bmm."""

from __future__ import annotations

import pytest
import torch

from featx import linalg
from featx.linalg import addmm, bmm


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


@pytest.fixture
def onednn_calls(monkeypatch):
    """Counts the products bmm gives to oneDNN's matmul."""
    op = linalg._onednn_matmul()
    assert op is not None, "this torch has no torch.ops.mkldnn._linear_pointwise"
    calls = []
    monkeypatch.setattr(linalg, "_MATMUL", [lambda *a: calls.append(1) or op(*a)])
    return calls


# (batch, M, K, N): cross-layer pooling's 256 x 121 by 121 x 500; non-square, so that a
# swapped or transposed operand changes the shape or the values
@pytest.mark.parametrize("b,m,k,n", [(3, 256, 121, 500), (2, 500, 121, 256), (1, 160, 300, 90)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_bmm_equals_the_float64_product(b, m, k, n, layout, onednn_calls):
    g = torch.Generator().manual_seed(m + k + n)
    x = torch.randn(b, m, k, generator=g)
    y = torch.randn(b, k, n, generator=g) if layout == "contiguous" else \
        torch.randn(b, n, k, generator=g).transpose(1, 2)  # as cross-layer pooling's
    ref = torch.bmm(x.double(), y.double())
    got = bmm(x, y)
    assert len(onednn_calls) == b  # one oneDNN product per batch element
    assert got.shape == (b, m, n) and got.dtype == torch.float32 and got.is_contiguous()
    scale = x.abs().max() * y.abs().max() * k
    assert (got.double() - ref).abs().max() <= 1e-6 * scale


def test_bmm_takes_torchs_route_where_onednn_does_not_pay_or_apply(onednn_calls, monkeypatch):
    x, y = torch.randn(2, 64, 64), torch.randn(2, 64, 64)  # 262k multiply-adds: too small
    assert torch.equal(bmm(x, y), torch.bmm(x, y))
    big_x, big_y = torch.randn(2, 256, 121), torch.randn(2, 121, 500)
    assert torch.equal(bmm(big_x.double(), big_y.double()), torch.bmm(big_x.double(), big_y.double()))
    w = big_y.clone().requires_grad_()  # oneDNN's op has no gradient: torch's keeps it
    out = bmm(big_x, w)
    out.sum().backward()
    torch.testing.assert_close(w.grad, big_x.sum(1)[..., None].expand(2, 121, 500))
    assert onednn_calls == []
    with torch.inference_mode():  # what the stages run under
        bmm(big_x, big_y)
    assert len(onednn_calls) == 2
    assert bmm(big_x[:0], big_y[:0]).shape == (0, 256, 500)  # an empty batch
    monkeypatch.setattr(linalg, "_MATMUL", [None])  # a torch without the op
    assert torch.equal(bmm(big_x, big_y), torch.bmm(big_x, big_y))
