"""Dense products where torch's default routes are slow on some CPUs.

PyTorch's x86 wheels do float32 GEMMs with MKL, which takes its AVX2 code path on AMD CPUs:
210 GFLOP/s on this 2-core EPYC, where oneDNN (the library behind torch's CPU convolutions)
reaches 450-500 GFLOP/s on the same products written as 1x1 convolutions (docs/benchmarks.md).
:func:`addmm` is that rewrite, with no copy of the data; elsewhere (CUDA, other dtypes) it is
``torch.addmm``.
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
