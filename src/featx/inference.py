"""The inference engine: a backbone's forward pass as every stage that reads images runs it.

An :class:`Engine` is built from a backbone (its module, loaded), the layers wanted of its
grid views, the FC layers (and conv layers) wanted densely over a pyramid's scales, a
device and a compute precision. It takes pixels (float in [0, 1], NCHW, as
:mod:`featx.images` decodes them) and gives activations:

    engine = Engine(model, bb, device, layers=["conv4", "conv5"])
    acts = engine.grid(pixels)            # {layer: (N, C, H, W)} in the storage dtype
    maps = engine.pyramid(pixels)         # {layer: (N, h*w, C)} dense vectors, float32

Extraction is *source -> engine -> sink*: :mod:`featx.stages.extract` decodes the images
(its loader), runs the engine, and hands the arrays to a sink -- the activation-shard writer,
or the fused pass's :class:`featx.encoding.ShardEncoder`. The precision is explicit:
``compute`` ``"float32"`` (the CPU's, bitwise as before), or ``"float16-autocast"`` (CUDA's
autocast, as extraction on a GPU always ran); it is part of what an extraction's shards
record, so a resume never mixes the two (:func:`compute_precision`).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from featx.backbones import ActivationExtractor, Backbone, DenseFC
from featx.images import normalize_pixels

COMPUTE = ("float32", "float16-autocast")


def compute_precision(device: torch.device) -> str:
    """The precision extraction computes in on ``device``: float32 on the CPU; on CUDA,
    autocast's float16 (featx's GPU path since its first release)."""
    return "float16-autocast" if device.type == "cuda" else "float32"


class Engine:
    """A backbone's forward pass for the grid views (``layers``, cast to ``store_dtype`` as
    they are read) and the pyramid's scales (``pyramid_fc`` run densely by
    :class:`~featx.backbones.DenseFC`, ``pyramid_conv`` read as maps; each map's vectors
    projected by ``project``, a PCA, when given), on ``device`` in ``compute`` precision.
    The model is moved there in channels_last (faster for these convolutions on oneDNN and
    cuDNN)."""

    def __init__(self, model: nn.Module, bb: Backbone, device: torch.device, *,
                 layers: Sequence[str] = (), pyramid_fc: Sequence[str] = (),
                 pyramid_conv: Sequence[str] = (), store_dtype: torch.dtype | None = None,
                 compute: str | None = None, project: Any = None):
        self.bb, self.device = bb, device
        self.compute = compute or compute_precision(device)
        if self.compute not in COMPUTE:
            raise ValueError(f"compute precision {self.compute!r}; one of {', '.join(COMPUTE)}")
        self.model = model.to(device, memory_format=torch.channels_last)
        self.extractor = ActivationExtractor(self.model, bb, list(layers), store_dtype) \
            if layers else None
        self.dense = DenseFC(self.model, bb, list(pyramid_fc)).to(
            device, memory_format=torch.channels_last) if pyramid_fc else None
        self.dense_conv = ActivationExtractor(self.model, bb, list(pyramid_conv)) \
            if pyramid_conv else None
        self.project = project

    def _precision(self):
        return torch.autocast("cuda") if self.compute == "float16-autocast" else nullcontext()

    def _pixels(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_pixels(x.to(self.device, non_blocking=True), self.bb.mean, self.bb.std,
                                self.bb.bgr)

    def grid(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{layer: (N, ...)} of the N view crops ``x`` (pixels in [0, 1]), in the storage
        dtype, NCHW-contiguous."""
        if self.extractor is None:
            return {}
        x = self._pixels(x)
        with self._precision():
            return self.extractor(x)

    def pyramid(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{layer: (B, h*w, C)} float32 dense vectors of one pyramid scale ``x`` (pixels in
        [0, 1]), projected by the engine's PCA when it has one."""
        x = self._pixels(x)
        with self._precision():
            maps = self.dense(x) if self.dense is not None else {}
            if self.dense_conv is not None:
                maps.update(self.dense_conv(x))
        out = {}
        for name, t in maps.items():
            vecs = t.float().flatten(2).transpose(1, 2)  # (B, h*w, C): dense fc vectors
            if self.project is not None:
                vecs = self.project.transform(vecs.flatten(0, 1)).view(*vecs.shape[:2], -1)
            out[name] = vecs
        return out
