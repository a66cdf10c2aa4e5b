"""Activation shards (featx extract): ``acts/<view>/<layer>`` (N, V, ...) for the grid views,
``acts/pyramid/<layer>/s<i>`` (N, vectors, C) per pyramid scale, one image a chunk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featx.errors import InputError
from featx.io.h5 import decode_strings, write_attrs
from featx.io.shard import Shard, _ShardWriter


def _acts(view: str, layer: str) -> str:
    return f"acts/{view}/{layer}"


def _pyramid(layer: str, scale: int) -> str:
    return f"acts/pyramid/{layer}/s{scale}"


class ActivationWriter(_ShardWriter):
    """An activation shard: grid views as ``(view, layer)`` arrays (B, V, ...), pyramid scales
    as ``(layer, scale)`` arrays (B, vectors, C)."""

    def __init__(self, path, attrs, *, label_kind, num_classes=0,
                 view_attrs: Mapping[str, Mapping[str, Any]] = {}, index: int = -1):
        super().__init__(path, {"kind": "activations", **attrs}, label_kind=label_kind,
                         num_classes=num_classes)
        self.index = index  # the caller's shard number
        for view, group_attrs in view_attrs.items():
            write_attrs(self.file.require_group(f"acts/{view}"), group_attrs)

    def append(self, ids: Sequence[str], grid: Mapping[tuple[str, str], np.ndarray],
               pyramid: Mapping[tuple[str, int], np.ndarray], labels=None,
               paths: Sequence[str] | None = None) -> None:
        """A batch of images: their ids, activations, labels, and the image files they were
        decoded from (absolute paths; what featx maps draws on)."""
        arrays = {_acts(v, layer): a for (v, layer), a in grid.items()}
        arrays.update({_pyramid(layer, s): a for (layer, s), a in pyramid.items()})
        if paths is not None:
            arrays["paths"] = list(paths)
        self._append(ids, arrays, labels)


class ActivationShard(Shard):
    def __init__(self, path: str | Path):
        super().__init__(path, "activations")

    def has(self, view: str, layer: str) -> bool:
        return _acts(view, layer) in self.file

    def image_bytes(self, view: str, layer: str) -> int:
        """Bytes of one image's ``view``/``layer`` activations once read (float32)."""
        if view == "pyramid":
            group = self.file.get(_acts("pyramid", layer))
            shapes = [group[s].shape[1:] for s in group] if group is not None else []
        else:
            ds = self.file.get(_acts(view, layer))
            shapes = [ds.shape[1:]] if ds is not None else []
        return 4 * sum(int(np.prod(s)) for s in shapes)

    @property
    def paths(self) -> list[str] | None:
        """The image file of each id as extract read it (None in shards written before featx
        recorded them)."""
        return decode_strings(self.file["paths"]) if "paths" in self.file else None

    def read(self, view: str, layer: str, rows: slice = slice(None)) -> np.ndarray:
        """float32 (n, V, ...) activations of a grid view's inputs."""
        if not self.has(view, layer):
            raise InputError(f"{self.path} has no {view} {layer}; extract with --views {view} "
                             f"and --layers including {layer}")
        return self._checked(_acts(view, layer), rows)

    def pyramid(self, layer: str, rows: slice = slice(None)) -> list[np.ndarray]:
        """float32 (n, vectors_s, C) per pyramid scale."""
        if _acts("pyramid", layer) not in self.file:
            raise InputError(f"{self.path} has no pyramid of {layer}; extract with "
                             f"--views pyramid --layers {layer}")
        scales = len(self.file[_acts("pyramid", layer)])
        return [self._checked(_pyramid(layer, s), rows) for s in range(scales)]
