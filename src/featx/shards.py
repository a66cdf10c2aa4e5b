"""All HDF5 reading and writing: the shard format every stage shares (see docs/shards.md).

A shard is one HDF5 file holding a bounded number of images:

- ``ids`` (N,) UTF-8 strings; ``labels`` (N, C) int8 in {1, -1, 0} or (N,) int64, when known;
- ``skipped_ids`` / ``skipped_reasons``: images of this shard that could not be decoded;
- stage-specific arrays (activations: ``acts/<view>/<layer>`` of shape (N, V, ...), one image per
  chunk);
- file attributes: ``featx_format``, ``kind``, ``classes``, ``split`` and the provenance of the
  stage (backbone, weights, layers, views, input size, featx version, command line, ...).

Files are written under a temporary name in the same folder and renamed when complete, so a
reader never sees a half-written shard; :func:`shard_paths` ignores temporary files.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featx.errors import InputError, OutputExistsError, ProvenanceError

FORMAT_VERSION = 1
SHARD_GLOB = "shard-*.h5"
TMP_SUFFIX = ".partial"
_STR = h5py.string_dtype("utf-8")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


def write_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    """Store attributes; lists and dicts go in as JSON text so every reader gets them back."""
    for key, value in attrs.items():
        if isinstance(value, (list, tuple, dict)):
            obj.attrs[key] = "json:" + json.dumps(value)
        elif value is None:
            obj.attrs[key] = "json:null"
        else:
            obj.attrs[key] = value


def read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    out = {}
    for key, value in obj.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str) and value.startswith("json:"):
            value = json.loads(value[5:])
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


class ShardWriter:
    """Writes one shard to a temporary file and renames it into place on :meth:`commit`.

    Arrays are appended in batches with :meth:`append`; each named array grows along its first
    axis and is chunked one image per chunk.
    """

    def __init__(self, path: str | Path, attrs: Mapping[str, Any], *, labelled: str | None = None,
                 num_classes: int = 0, index: int = -1):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + TMP_SUFFIX)
        self.file = h5py.File(self.tmp, "w")
        write_attrs(self.file, {"featx_format": FORMAT_VERSION, **attrs})
        self.file.create_dataset("ids", (0,), dtype=_STR, maxshape=(None,), chunks=(256,))
        if labelled == "multi":
            self.file.create_dataset("labels", (0, num_classes), dtype="i1",
                                     maxshape=(None, num_classes), chunks=(256, num_classes))
        elif labelled == "single":
            self.file.create_dataset("labels", (0,), dtype="i8", maxshape=(None,), chunks=(256,))
        self.skipped: list[tuple[str, str]] = []
        self.n = 0
        self.index = index  # the caller's shard number

    def append(self, ids: Sequence[str], arrays: Mapping[str, np.ndarray],
               labels: np.ndarray | None = None) -> None:
        """Append ``len(ids)`` images; ``arrays`` maps dataset paths to (B, ...) arrays."""
        b = len(ids)
        start, self.n = self.n, self.n + b
        for name, arr in arrays.items():
            if name not in self.file:
                self.file.create_dataset(name, (0, *arr.shape[1:]), dtype=arr.dtype,
                                         maxshape=(None, *arr.shape[1:]), chunks=(1, *arr.shape[1:]))
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

    def group_attrs(self, name: str, attrs: Mapping[str, Any]) -> None:
        write_attrs(self.file.require_group(name), attrs)

    def commit(self) -> Path:
        ids = [i for i, _ in self.skipped]
        self.file.create_dataset("skipped_ids", data=np.array(ids, dtype=object), dtype=_STR)
        self.file.create_dataset("skipped_reasons",
                                 data=np.array([r for _, r in self.skipped], dtype=object),
                                 dtype=_STR)
        self.file.attrs["num_images"] = self.n
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


def stdin_paths(inputs: Sequence[str]) -> list[str]:
    """Replace a ``-`` among ``inputs`` by the paths listed on stdin (one per line)."""
    out: list[str] = []
    for item in inputs:
        out.extend(sys.stdin.read().split() if item == "-" else [item])
    return out


def read_shard_header(path: str | Path) -> dict[str, Any]:
    """A shard's attributes, its ids and skipped ids, without reading the large arrays."""
    try:
        with h5py.File(path, "r") as f:
            attrs = read_attrs(f)
            if "featx_format" not in attrs:
                raise InputError(f"{path} is not a featx shard (no featx_format attribute)")
            attrs["ids"] = [s.decode() for s in f["ids"][:]]
            attrs["skipped_ids"] = [s.decode() for s in f["skipped_ids"][:]]
            return attrs
    except OSError as exc:
        raise InputError(f"cannot read shard {path}: {exc}") from exc


def check_provenance(found: Mapping[str, Any], expected: Mapping[str, Any], where: str) -> None:
    """Raise naming the first attribute of ``expected`` that ``found`` holds differently."""
    for key, value in expected.items():
        if found.get(key) != value:
            raise ProvenanceError(
                f"{where} was made with {key}={found.get(key)!r}, this run has {key}={value!r}"
            )


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
