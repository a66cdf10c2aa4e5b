"""Dense products where torch's default routes are slow on some CPUs.

PyTorch's x86 wheels do float32 GEMMs with MKL, which takes its AVX2 code path on AMD CPUs:
210 GFLOP/s on this 2-core EPYC, where oneDNN (the library behind torch's CPU convolutions)
reaches 450-500 GFLOP/s on the same products written as 1x1 convolutions (docs/benchmarks.md).
:func:`addmm` is that rewrite, with no copy of the data; elsewhere (CUDA, other dtypes) it is
``torch.addmm``. :func:`bmm` gives batches of products of a few million multiply-adds each
(cross-layer pooling) to oneDNN's matmul, one product at a time: 0.09 against MKL's 0.15 ms
for one image's 256 x 121 by 121 x 500 here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def addmm(bias: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``bias + x @ w`` for x (N, C), w (C, K) and a bias (broadcast as by torch.addmm; None
    for none): (N, K).

    On the CPU in float32 the rows of x are read as the pixels of a channels_last image (the
    same memory: no copy) and w as K filters of 1x1, so oneDNN's convolution does the GEMM and
    writes its result row-major, as ``torch.addmm`` would.
    """
    n, c = x.shape
    k = w.shape[1]
    if (x.device.type != "cpu" or x.dtype != torch.float32 or not x.is_contiguous() or n == 0
            or (bias is not None and bias.numel() != k)):
        return torch.addmm(bias, x, w) if bias is not None else x @ w
    image = x.view(1, n, 1, c).permute(0, 3, 1, 2)  # (1, C, N, 1), channels_last
    out = F.conv2d(image, w.T.reshape(k, c, 1, 1),
                   None if bias is None else bias.reshape(k))  # (1, K, N, 1), channels_last
    return out.permute(0, 2, 3, 1).reshape(n, k)


# below this many multiply-adds a product, the oneDNN call's fixed cost (~11 us against MKL's
# ~1 us) outweighs its speed: they break even near 128^3 on this CPU
_ONEDNN_MIN_MACS = 1 << 22


def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.bmm(a, b)`` for a (B, M, K), b (B, K, N): (B, M, N), contiguous.

    On the CPU in float32, with no gradient wanted and M K N of at least 4M, each product goes
    to oneDNN's matmul (any strides, no copies in; the results stacked into one tensor).
    Elsewhere, where this torch has no such op, and where it refuses the operands, it is
    ``torch.bmm``.
    """
    op = _onednn_matmul()
    if (op is None or a.device.type != "cpu" or a.dtype != torch.float32
            or b.dtype != torch.float32 or a.shape[0] == 0
            or a.shape[1] * a.shape[2] * b.shape[2] < _ONEDNN_MIN_MACS
            or (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad))):
        return torch.bmm(a, b)
    try:
        return torch.stack([op(x, y.T, None, "none", [], "") for x, y in zip(a, b)])
    except RuntimeError:  # a layout the private op does not take
        return torch.bmm(a, b)


_MATMUL: list = []  # the checked op, once looked up


def _onednn_matmul():
    """torch's oneDNN matmul for dense tensors, ``torch.ops.mkldnn._linear_pointwise(x, w, ...)
    = x @ w.T`` (a private op, the one torch.compile's CPU code calls), once checked by
    :func:`_checked`; None where this torch lacks it."""
    if not _MATMUL:
        try:
            op = torch.ops.mkldnn._linear_pointwise
        except (AttributeError, RuntimeError):
            op = None
        _MATMUL.append(_checked(op))
    return _MATMUL[0]


def _checked(op):
    """``op`` if it gives x @ w.T on a small strided product (integers: exact), else None."""
    if op is None:
        return None
    x = torch.arange(12, dtype=torch.float32).view(4, 3) - 5
    w = torch.arange(6, dtype=torch.float32).view(3, 2).T - 2  # strided
    try:
        with torch.inference_mode():
            return op if torch.equal(op(x, w, None, "none", [], ""), x @ w.T) else None
    except (RuntimeError, TypeError):
        return None
