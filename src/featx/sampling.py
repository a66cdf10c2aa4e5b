"""Seeded samples of local features from activation shards: what fit-pca and fit-gmm fit on.

Sampling takes ``per_image`` local features of each image (all of them if it has fewer, all
inputs of the view pooled), drawn without replacement by a generator seeded from ``seed`` and
the image id, so a sample does not depend on how images are split into shards. Shards are read
in blocks of images, so memory is bounded by the sample.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featx.encoders import LocalSpec
from featx.errors import InputError
from featx.io import EXTRACTION_KEYS, read_header, require_fit
from featx.io.activations import ActivationShard

_READ_BLOCK = 64  # images a read at most
_READ_BYTES = 256 << 20  # and about this many bytes of float32 activations


def _block(shard: ActivationShard, layer: str, view: str) -> int:
    """Images a read: a block of 64, fewer where an image's activations are large (a 7-scale
    fc7 pyramid is 72 MB an image), so reading is bounded by bytes, not images."""
    return max(1, min(_READ_BLOCK, _READ_BYTES // max(shard.image_bytes(view, layer), 1)))


def activation_header(paths: Sequence[Path], layer: str, view: str) -> dict[str, Any]:
    """The header of the first shard, after checking that every shard holds ``view``/``layer``
    from one extraction."""
    first = None
    for path in paths:
        head = read_header(path)
        if head.get("kind") != "activations":
            raise InputError(f"{path} holds {head.get('kind')!r}, not activations (featx extract)")
        if layer not in head["layers"]:
            raise InputError(f"{path} has no layer {layer!r}; it holds {', '.join(head['layers'])}")
        kinds = [v.split(":")[0] for v in head["views"]]
        if view not in kinds:
            raise InputError(f"{path} has no view {view!r}; it holds {', '.join(kinds)}")
        if first is None:
            first = head
        else:
            require_fit(head, {k: first[k] for k in EXTRACTION_KEYS}, str(path),
                        "sample shards of one extraction")
    return first


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(image_id.encode())])


def local_features(shard: ActivationShard, layer: str, view: str, spec: LocalSpec,
                   rows: slice) -> torch.Tensor:
    """All local features of each image in ``rows``, every input of the view pooled: (b, n, D)."""
    if view == "pyramid":
        return torch.cat([torch.from_numpy(s) for s in shard.pyramid(layer, rows)], 1)
    block = torch.from_numpy(shard.read(view, layer, rows))
    b, v = block.shape[:2]
    local = spec.extract(block.flatten(0, 1))  # (b*v, L, D)
    return local.reshape(b, v * local.shape[1], local.shape[2])


def sample_local_features(
    paths: Sequence[Path], layer: str, view: str, spec: LocalSpec, per_image: int, seed: int = 0,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    counts: list[int] | None = None, allow_empty: bool = False,
) -> np.ndarray | None:
    """(N, D) float32 sample of local features from activation shards (see module doc).

    ``transform`` maps (n, D) float32 tensors to their projection (a fitted PCA's transform);
    pyramids stored projected (extract --project) are not projected twice. ``counts``, when
    given, receives each shard's number of sampled rows. No images: an error, or None with
    ``allow_empty`` (a torchrun rank whose shards are empty).
    """
    if per_image < 1:
        raise InputError("--per-image must be at least 1")
    if view == "pyramid" and spec.kind != "dense":
        raise InputError("the pyramid view holds dense vectors: use --local dense")
    out: list[np.ndarray] = []
    taken = 0
    for path in paths:
        before = taken
        with ActivationShard(path) as shard:
            project = None if view == "pyramid" and shard.attrs.get("projected") else transform
            step = _block(shard, layer, view)
            for start in range(0, len(shard.ids), step):
                local = local_features(shard, layer, view, spec, slice(start, start + step))
                for j in range(local.shape[0]):
                    n = local.shape[1]
                    take = image_rng(seed, shard.ids[start + j]).choice(n, min(per_image, n),
                                                                       replace=False)
                    x = local[j, np.sort(take)]
                    out.append((project(x) if project else x).cpu().numpy())
                    taken += len(x)
        if counts is not None:
            counts.append(taken - before)
    if not out:
        if allow_empty:
            return None
        raise InputError("the shards hold no images")
    return np.concatenate(out).astype(np.float32, copy=False)


def region_features(paths: Sequence[Path], layer: str, scales: Sequence[int] | None = None,
                    transform: Callable[[torch.Tensor], torch.Tensor] | None = None
                    ) -> tuple[list[str], list[torch.Tensor], np.ndarray | None]:
    """Every image's dense pyramid vectors of ``layer`` at the pyramid scales ``scales`` (all
    when None), projected by ``transform`` unless stored projected, as float16: ids, one
    (n, N_s, D) tensor per scale, and the labels (None when unlabelled). What scheme 2's
    guidance trains on (featx fit-guidance)."""
    total = 0
    for path in paths:
        with ActivationShard(path) as shard:
            total += len(shard.ids)
    if not total:
        raise InputError("the shards hold no images")
    # filled in place, block by block: the peak is the result plus one block, not twice it
    ids: list[str] = []
    out: list[torch.Tensor] = []
    labels: list[np.ndarray] = []
    for path in paths:
        with ActivationShard(path) as shard:
            project = None if shard.attrs.get("projected") else transform
            step = _block(shard, layer, "pyramid")
            for start in range(0, len(shard.ids), step):
                rows = slice(start, start + step)
                pyr = shard.pyramid(layer, rows)
                chosen = range(len(pyr)) if scales is None else scales
                if any(s >= len(pyr) for s in chosen):
                    raise InputError(f"{path} has {len(pyr)} pyramid scales; scales "
                                     f"{', '.join(map(str, chosen))} were asked for")
                at = len(ids)
                for k, s in enumerate(chosen):
                    x = torch.from_numpy(pyr[s])
                    if project is not None:
                        x = project(x.flatten(0, 1)).view(*x.shape[:2], -1)
                    if len(out) <= k:
                        out.append(torch.empty(total, *x.shape[1:], dtype=torch.float16))
                    out[k][at:at + x.shape[0]] = x
                ids += shard.ids[rows]
                lab = shard.labels(rows)
                if lab is not None:
                    labels.append(lab)
    lab = np.concatenate(labels) if labels else None
    return ids, out, lab if lab is not None and len(lab) == total else None
