"""Local features of a layer's activations, and their seeded sampling from shards.

- ``subarray:MxN``: every m x n x C subarray of a conv map that fits inside it (boundary units
  omitted), flattened channel-major as (c, i, j) — the local features of cross-convolutional-
  layer pooling (Liu et al., CVPR 2015, §3.2): 11 x 11 = 121 of them on AlexNet's 13 x 13 conv4
  map with 3 x 3 subarrays, 2,304-d with torchvision's AlexNet. The ordering matches
  ``F.unfold`` and conv2d weights, so a PCA of them can be applied as a convolution.
- ``dense``: every spatial vector of a map (C-d), e.g. the dense fc7 maps of the pyramid view
  (Yoo et al. §2.2); an FC layer's single vector counts as a 1 x 1 map.

Sampling takes ``per_image`` local features of each image (all of them if it has fewer, all
views pooled), drawn without replacement by a generator seeded from ``seed`` and the image id,
so a sample does not depend on how images are split into shards. Shards are read in blocks of
images, so memory is bounded by the sample.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from featx.errors import InputError, ProvenanceError
from featx.shards import check_provenance, read_attrs, read_shard_header

_LOCAL_RE = re.compile(r"^(dense|subarray:(\d+)x(\d+))$")
_READ_BLOCK = 64


@dataclass(frozen=True)
class LocalSpec:
    kind: str  # "subarray" or "dense"
    size: tuple[int, int] = (1, 1)

    @classmethod
    def parse(cls, text: str) -> LocalSpec:
        m = _LOCAL_RE.match(text.strip())
        if not m:
            raise InputError(f"unknown local features {text!r}; valid: dense, subarray:MxN")
        if m.group(1) == "dense":
            return cls("dense")
        size = (int(m.group(2)), int(m.group(3)))
        if min(size) < 1:
            raise InputError(f"subarray size must be at least 1x1, got {text!r}")
        return cls("subarray", size)

    def __str__(self) -> str:
        return "dense" if self.kind == "dense" else f"subarray:{self.size[0]}x{self.size[1]}"

    def dim(self, channels: int) -> int:
        return channels * self.size[0] * self.size[1]

    def extract(self, acts: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) or (B, C) activations -> (B, L, D) local features."""
        if acts.ndim == 2:
            acts = acts[:, :, None, None]
        b, c, h, w = acts.shape
        if self.kind == "dense":
            return acts.flatten(2).transpose(1, 2)
        m, n = self.size
        if m > h or n > w:
            raise InputError(f"{self} subarrays do not fit a {h}x{w} map")
        return F.unfold(acts, (m, n)).transpose(1, 2)


def default_local(backbone_name: str, layer: str) -> LocalSpec:
    """subarray:KxK for the local layer of the backbone's cross-layer pair, else dense."""
    from featx.backbones import get_backbone

    bb = get_backbone(backbone_name)
    if bb.cross_layer and layer == bb.cross_layer[0]:
        k = bb.kernels[bb.cross_layer[1]]
        return LocalSpec("subarray", (k, k))
    return LocalSpec("dense")


ACTIVATION_KEYS = ("backbone", "weights", "input_size")


def activation_headers(paths: Sequence[Path], layer: str, view: str) -> dict:
    """Check that every shard holds ``acts/<view>/<layer>`` from one extraction setting."""
    first = None
    for path in paths:
        head = read_shard_header(path)
        if head.get("kind") != "activations":
            raise InputError(f"{path} holds {head.get('kind')!r}, not activations (featx extract)")
        if layer not in head["layers"]:
            raise InputError(f"{path} has no layer {layer!r}; it holds {', '.join(head['layers'])}")
        kinds = [v.split(":")[0] for v in head["views"]]
        if view not in kinds:
            raise InputError(f"{path} has no view {view!r}; it holds {', '.join(kinds)}")
        if view == "pyramid" and not head.get("pyramid_sizes"):
            raise InputError(f"{path} has no pyramid")
        if first is None:
            first = head
        else:
            check_provenance(head, {k: first[k] for k in ACTIVATION_KEYS}, str(path))
    return first


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(image_id.encode())])


def sample_local_features(
    paths: Sequence[Path], layer: str, view: str, spec: LocalSpec, per_image: int, seed: int = 0,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """(N, D) float32 sample of local features from activation shards (see module doc).

    ``transform`` maps (n, D) float32 tensors to their projection (a fitted PCA's transform).
    """
    if per_image < 1:
        raise InputError("--per-image must be at least 1")
    if view == "pyramid" and spec.kind != "dense":
        raise InputError("the pyramid view holds dense vectors: use --local dense")
    out: list[np.ndarray] = []
    for path in paths:
        with h5py.File(path, "r") as f:
            ids = [s.decode() for s in f["ids"][:]]
            # pyramids stored with --project are already reduced: no second projection
            project = None if view == "pyramid" and read_attrs(f).get("projected") else transform
            for start in range(0, len(ids), _READ_BLOCK):
                local = _local_block(f, layer, view, spec, slice(start, start + _READ_BLOCK))
                for j in range(local.shape[0]):
                    n = local.shape[1]
                    take = image_rng(seed, ids[start + j]).choice(n, min(per_image, n),
                                                                 replace=False)
                    x = local[j, np.sort(take)]
                    out.append((project(x) if project else x).cpu().numpy())
    if not out:
        raise InputError("the shards hold no images")
    return np.concatenate(out).astype(np.float32, copy=False)


def _local_block(f: h5py.File, layer: str, view: str, spec: LocalSpec,
                 rows: slice) -> torch.Tensor:
    """All local features of each image in ``rows``, every input of the view pooled: (b, n, D)."""
    if view == "pyramid":
        return torch.cat(pyramid_features(f, layer, rows), 1)
    block = torch.from_numpy(f[f"acts/{view}/{layer}"][rows]).float()
    if not torch.isfinite(block).all():
        raise InputError(f"{f.filename} holds NaN/Inf activations in {view}/{layer}")
    b, v = block.shape[:2]
    local = spec.extract(block.flatten(0, 1))  # (b*v, L, D)
    return local.reshape(b, v * local.shape[1], local.shape[2])


def pyramid_features(f: h5py.File, layer: str, rows: slice) -> list[torch.Tensor]:
    """The dense vectors of each pyramid scale: a list of float32 (B, N_s, D)."""
    group = f[f"acts/pyramid/{layer}"]
    out = []
    for s in range(len(group)):
        block = torch.from_numpy(group[f"s{s}"][rows]).float()
        if not torch.isfinite(block).all():
            raise InputError(f"{f.filename} holds NaN/Inf activations in pyramid/{layer}")
        out.append(block)
    return out


def check_activations_fit(model_attrs: dict, head: dict, model_path: str) -> None:
    """Refuse activations whose backbone/weights/input size differ from a model's."""
    try:
        check_provenance(head, {k: model_attrs[k] for k in ACTIVATION_KEYS}, "the activations")
    except ProvenanceError as exc:
        raise ProvenanceError(f"{exc}, but {model_path} was fitted on {model_attrs['backbone']} "
                              f"activations ({', '.join(f'{k}={model_attrs[k]!r}' for k in ACTIVATION_KEYS)})") from None
