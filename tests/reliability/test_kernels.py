"""The private torch op featx.linalg.bmm relies on, when a torch lacks it or it misbehaves:
the products go through torch.bmm, and come out the same."""

from __future__ import annotations

import pytest
import torch

from featx import linalg

pytestmark = pytest.mark.reliability


def _raises(*args):
    raise RuntimeError("mkldnn::_linear_pointwise: unsupported")


@pytest.mark.parametrize("op", ["missing", "raises", "wrong", "other signature"])
def test_a_missing_or_misbehaving_onednn_matmul_leaves_torch_bmm(monkeypatch, op):
    fake = {"missing": None, "raises": _raises,
            "wrong": lambda x, w, *rest: x @ w.T + 1,  # the right shape, other values
            "other signature": lambda x, w: x @ w.T}[op]
    if op == "missing":
        monkeypatch.setattr(torch.ops, "mkldnn", object())  # no _linear_pointwise attribute
    else:
        monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", fake, raising=False)
    monkeypatch.setattr(linalg, "_MATMUL", [])  # look it up again
    assert linalg._onednn_matmul() is None
    x, y = torch.randn(2, 256, 121), torch.randn(2, 500, 121).transpose(1, 2)
    assert torch.equal(linalg.bmm(x, y), torch.bmm(x, y))


def test_the_real_op_passes_the_check():
    assert linalg._checked(torch.ops.mkldnn._linear_pointwise) is not None


def test_operands_the_onednn_matmul_refuses_go_to_torch_bmm(monkeypatch):
    monkeypatch.setattr(linalg, "_MATMUL", [_raises])  # passed its check, refuses these
    x, y = torch.randn(2, 256, 121), torch.randn(2, 121, 500)
    assert torch.equal(linalg.bmm(x, y), torch.bmm(x, y))
