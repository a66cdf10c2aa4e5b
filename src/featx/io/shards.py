"""Shards: the HDF5 files every stage reads and writes (see docs/shards.md).

A shard holds a bounded number of images:

- ``ids`` (N,) UTF-8 strings; ``labels`` (N, C) int8 in {1, -1, 0} (``label_kind`` multi) or
  (N,) int64 (single), when known; ``skipped_ids`` / ``skipped_reasons``: images of this shard
  that could not be decoded;
- activation shards: ``acts/<view>/<layer>`` (N, V, ...) for the grid views, and
  ``acts/pyramid/<layer>/s<i>`` (N, vectors, C) per pyramid scale, one image per chunk;
- encoding shards: ``enc`` (N, dim), or ``codes`` (N, ceil(dim / 4)) uint8 for sign-quantised
  encodings (2 bits per dimension, :func:`pack_sign`);
- file attributes: ``featx_format``, ``kind``, ``label_kind``, ``classes``, ``split`` and the
  provenance of the stage (:mod:`featx.io.provenance`).

Writers write under a temporary name in the same folder and rename when complete, so a reader
never sees a half-written shard; :func:`shard_paths` ignores temporary files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featx.errors import InputError, OutputExistsError, ProvenanceError
from featx.io.h5 import FORMAT_VERSION, STR, TMP_SUFFIX, decode_strings, read_attrs, write_attrs

SHARD_GLOB = "shard-*.h5"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


def _acts(view: str, layer: str) -> str:
    return f"acts/{view}/{layer}"


def _pyramid(layer: str, scale: int) -> str:
    return f"acts/pyramid/{layer}/s{scale}"


# --- the sign codec of quantised encodings (Liu et al. §4.3.3) ------------------------------

def pack_sign(enc: np.ndarray) -> np.ndarray:
    """sign(enc) in {-1, 0, 1} packed at 2 bits per dimension: (B, dim) -> uint8 (B, ceil(dim/4)).

    Codes: 0 -> 0b00, +1 -> 0b01, -1 -> 0b10; dimension j sits in byte j // 4 at bits
    2 * (j % 4).
    """
    b, dim = enc.shape
    codes = np.where(enc > 0, 1, np.where(enc < 0, 2, 0)).astype(np.uint8)
    codes = np.pad(codes, ((0, 0), (0, (-dim) % 4))).reshape(b, -1, 4)
    return (codes[..., 0] | codes[..., 1] << 2 | codes[..., 2] << 4 | codes[..., 3] << 6).astype(np.uint8)


def unpack_sign(packed: np.ndarray, dim: int) -> np.ndarray:
    """Inverse of :func:`pack_sign`: uint8 (B, ceil(dim/4)) -> float32 (B, dim) in {-1, 0, 1}."""
    codes = (packed[..., None] >> np.array([0, 2, 4, 6], np.uint8)) & 3
    codes = codes.reshape(packed.shape[0], -1)[:, :dim]
    return np.where(codes == 1, 1.0, np.where(codes == 2, -1.0, 0.0)).astype(np.float32)


# --- writing ---------------------------------------------------------------------------------

class _ShardWriter:
    """One shard written to a temporary file and renamed into place by :meth:`commit`.

    Arrays grow along their first axis as batches are appended, chunked one image per chunk.
    Used as a context manager, an exception inside aborts (deletes the temporary file).
    """

    def __init__(self, path: str | Path, attrs: Mapping[str, Any], *, label_kind: str | None,
                 num_classes: int = 0):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + TMP_SUFFIX)
        self.file = h5py.File(self.tmp, "w")
        write_attrs(self.file, {"featx_format": FORMAT_VERSION, **attrs,
                                "label_kind": label_kind or "none"})
        self.file.create_dataset("ids", (0,), dtype=STR, maxshape=(None,), chunks=(256,))
        if label_kind == "multi":
            self.file.create_dataset("labels", (0, num_classes), dtype="i1",
                                     maxshape=(None, num_classes), chunks=(256, num_classes))
        elif label_kind == "single":
            self.file.create_dataset("labels", (0,), dtype="i8", maxshape=(None,), chunks=(256,))
        self.skipped: list[tuple[str, str]] = []
        self.n = 0

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def _append(self, ids: Sequence[str], arrays: Mapping[str, np.ndarray],
                labels: np.ndarray | None) -> None:
        start, self.n = self.n, self.n + len(ids)
        for name, arr in arrays.items():
            if name not in self.file:
                self.file.create_dataset(name, (0, *arr.shape[1:]), dtype=arr.dtype,
                                         maxshape=(None, *arr.shape[1:]),
                                         chunks=(1, *arr.shape[1:]))
            ds = self.file[name]
            ds.resize(self.n, axis=0)
            ds[start:] = arr
        self.file["ids"].resize(self.n, axis=0)
        self.file["ids"][start:] = list(ids)
        if labels is not None and "labels" in self.file:
            self.file["labels"].resize(self.n, axis=0)
            self.file["labels"][start:] = labels

    def skip(self, image_id: str, reason: str) -> None:
        self.skipped.append((image_id, reason))

    def commit(self, **attrs: Any) -> Path:
        """Record the skipped images and ``attrs``, close, and rename into place."""
        for name, column in (("skipped_ids", 0), ("skipped_reasons", 1)):
            self.file.create_dataset(name, data=np.array([s[column] for s in self.skipped],
                                                         dtype=object), dtype=STR)
        write_attrs(self.file, {**attrs, "num_images": self.n})
        self.file.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file (the shard is not written)."""
        try:
            if self.file:  # still open
                self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)


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
               pyramid: Mapping[tuple[str, int], np.ndarray], labels=None) -> None:
        arrays = {_acts(v, layer): a for (v, layer), a in grid.items()}
        arrays.update({_pyramid(layer, s): a for (layer, s), a in pyramid.items()})
        self._append(ids, arrays, labels)


class EncodingWriter(_ShardWriter):
    """An encoding shard; ``quantize='sign'`` stores sign codes packed at 2 bits a dimension."""

    def __init__(self, path, attrs, *, label_kind, num_classes=0, quantize: str = "none",
                 dtype: str = "float32"):
        super().__init__(path, {"kind": "encodings", **attrs}, label_kind=label_kind,
                         num_classes=num_classes)
        self.quantize, self.dtype = quantize, np.dtype(dtype)

    def append(self, ids: Sequence[str], enc: np.ndarray, labels=None) -> None:
        data = ({"codes": pack_sign(enc)} if self.quantize == "sign"
                else {"enc": enc.astype(self.dtype, copy=False)})
        self._append(ids, data, labels)


def prepare_output(out: str | Path, overwrite: bool) -> Path:
    """Create the output folder; with ``overwrite`` delete the shards it holds.

    Temporary files of an interrupted run are always removed: they are never complete.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(SHARD_GLOB + TMP_SUFFIX):
        tmp.unlink()
    if overwrite:
        for old in out.glob(SHARD_GLOB):
            old.unlink()
    return out


# --- reading ---------------------------------------------------------------------------------

def shard_paths(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand files and folders of shards into a sorted list of complete shard files."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths.extend(sorted(p.glob(SHARD_GLOB)))
        elif p.is_file():
            paths.append(p)
        else:
            raise InputError(f"shard input {str(item)!r} does not exist")
    if not paths:
        raise InputError(f"no shards found in {', '.join(map(str, inputs))}")
    return paths


class Shard:
    """An open shard: its attributes, ids and skipped images decoded once, arrays on demand.

    ``kind`` (``activations``/``encodings``) refuses a shard of another kind by name.
    """

    def __init__(self, path: str | Path, kind: str | None = None):
        self.path = Path(path)
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as exc:
            raise InputError(f"cannot read shard {path}: {exc}") from exc
        self.attrs = read_attrs(self.file)
        if "featx_format" not in self.attrs:
            self.close()
            raise InputError(f"{path} is not a featx shard (no featx_format attribute)")
        if kind is not None and self.attrs.get("kind") != kind:
            self.close()
            made_by = {"activations": "featx extract", "encodings": "featx encode"}[kind]
            raise InputError(f"{path} holds {self.attrs.get('kind')!r}, not {kind} ({made_by})")
        self.ids = decode_strings(self.file["ids"])
        self.skipped = list(zip(decode_strings(self.file["skipped_ids"]),
                                decode_strings(self.file["skipped_reasons"])))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    @property
    def label_kind(self) -> str | None:
        """``multi``, ``single`` or None; format-1 shards say it by their labels' shape."""
        kind = self.attrs.get("label_kind")
        if kind is None and "labels" in self.file:
            kind = "multi" if self.file["labels"].ndim == 2 else "single"
        return None if kind in (None, "none") else kind

    def labels(self, rows: slice = slice(None)) -> np.ndarray | None:
        return self.file["labels"][rows] if "labels" in self.file else None

    def header(self) -> dict[str, Any]:
        return {**self.attrs, "ids": self.ids, "skipped_ids": [i for i, _ in self.skipped]}

    def _checked(self, name: str, rows) -> np.ndarray:
        block = self.file[name][rows].astype(np.float32, copy=False)
        if not np.isfinite(block).all():
            raise InputError(f"{self.path} holds NaN/Inf values in {name}")
        return block


class ActivationShard(Shard):
    def __init__(self, path: str | Path):
        super().__init__(path, "activations")

    def has(self, view: str, layer: str) -> bool:
        return _acts(view, layer) in self.file

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


class EncodingShard(Shard):
    def __init__(self, path: str | Path):
        super().__init__(path, "encodings")

    def encodings(self) -> np.ndarray:
        """float32 (N, dim); sign codes unpacked to {-1, 0, 1}."""
        if "codes" in self.file:
            return unpack_sign(self.file["codes"][:], self.attrs["dim"])
        return self.file["enc"][:].astype(np.float32)


def read_header(path: str | Path) -> dict[str, Any]:
    """A shard's attributes, ``ids`` and ``skipped_ids``, without reading the large arrays."""
    with Shard(path) as shard:
        return shard.header()


def load_encodings(paths: Sequence[Path], same: Sequence[str]
                   ) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, Any]]:
    """Every encoding shard of ``paths`` stacked: ids, X (N, dim), labels, attributes of the
    first; the shards must agree on the attributes ``same`` and on their classes."""
    ids, xs, labels, first = [], [], [], None
    for path in paths:
        with EncodingShard(path) as shard:
            if first is None:
                first = shard.attrs
            else:
                for key in (*same, "classes"):
                    if shard.attrs.get(key) != first.get(key):
                        raise ProvenanceError(
                            f"{path} has {key}={shard.attrs.get(key)!r}, the other shards "
                            f"{key}={first.get(key)!r}")
            y = shard.labels()
            if y is None:
                raise InputError(f"{path} has no labels; extract with --dataset so labels "
                                 "travel with the images")
            ids += shard.ids
            xs.append(shard.encodings())
            labels.append(y)
    x = np.concatenate(xs)
    if not np.isfinite(x).all():
        raise InputError("the encodings hold NaN/Inf values")
    return ids, x, np.concatenate(labels), first
