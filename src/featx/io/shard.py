"""One shard file: the writer every format's writer builds on (a temporary name renamed
when complete, one image a chunk, checksums, the file-size limit), the reader that checks a
shard is whole, and the naming and listing of shards. The formats: :mod:`featx.io.activations`,
:mod:`featx.io.encodings`, :mod:`featx.io.predictions`; the schema: :mod:`featx.io.shards`."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from featx.errors import DiskFullError, InputError, OutputError
from featx.io.h5 import FORMAT_VERSION, SHARD_GLOB, STR, TMP_SUFFIX, decode_strings, file_size_limit
from featx.io.h5 import read_attrs, write_attrs


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


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
        try:
            self.file = h5py.File(self.tmp, "w")
        except OSError as exc:
            raise OutputError(f"cannot write {self.tmp}: {exc}") from None
        write_attrs(self.file, {"featx_format": FORMAT_VERSION, **attrs,
                                "label_kind": label_kind or "none"})
        self._create("ids", (0,), STR, (256,))
        if label_kind == "multi":
            self._create("labels", (0, num_classes), "i1", (256, num_classes))
        elif label_kind == "single":
            self._create("labels", (0,), "i8", (256,))
        self.skipped: list[tuple[str, str]] = []
        self.n = 0
        # ulimit -f: HDF5 reports a write beyond it only while freeing objects ("Exception
        # ignored", then a crash at exit), never to the caller; so the bytes are counted and
        # a batch that would cross it is refused before it is written
        self.limit, self.bytes = file_size_limit(), 0

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def _create(self, name: str, shape: tuple, dtype, chunks: tuple) -> None:
        """A growable dataset; numeric ones carry a Fletcher-32 checksum in every chunk, so
        that a reader notices corrupted bytes (HDF5 allows no filter on variable-length
        strings)."""
        self.file.create_dataset(name, shape, dtype=dtype, maxshape=(None, *shape[1:]),
                                 chunks=chunks, fletcher32=dtype is not STR)

    def _append(self, ids: Sequence[str], arrays: Mapping[str, np.ndarray],
                labels: np.ndarray | None) -> None:
        start, n = self.n, self.n + len(ids)
        columns = {**arrays, "ids": list(ids)}
        if labels is not None and "labels" in self.file:
            columns["labels"] = labels
        self._within_limit(sum(a.nbytes if isinstance(a, np.ndarray) else
                               sum(len(str(s)) + 16 for s in a) for a in columns.values()))
        try:
            for name, arr in columns.items():
                if name not in self.file and isinstance(arr, list):  # strings (paths)
                    self._create(name, (0,), STR, (256,))
                elif name not in self.file:
                    self._create(name, (0, *arr.shape[1:]), arr.dtype, (1, *arr.shape[1:]))
                ds = self.file[name]
                ds.resize(n, axis=0)
                ds[start:] = arr
        except OSError as exc:
            self._failed(exc)
        self.n = n

    def _within_limit(self, incoming: int) -> None:
        """Refuse a batch that would take the file past the file-size limit (with room for
        HDF5's metadata and checksums), before a byte of it is written."""
        self.bytes += incoming
        if self.limit is not None and self.bytes * 1.02 + (256 << 10) > self.limit:
            self._failed(OSError(errno.EFBIG, "File too large"))

    def _failed(self, exc: OSError):
        """Abort on a write error; a full disk and the file-size limit get their own
        message (one line: HDF5's spans several)."""
        self.abort(broken=True)
        code, text = getattr(exc, "errno", None), str(exc)
        if code == errno.ENOSPC or "No space left" in text:
            raise DiskFullError(f"the disk is full: {self.path} was not written (the complete "
                                "shards beside it are kept); free space and rerun to resume"
                                ) from None
        if code == errno.EFBIG or "errno = 27" in text or "File too large" in text:
            raise DiskFullError(f"{self.path} outgrew this process's file-size limit (ulimit "
                                "-f) and was not written (the complete shards beside it are "
                                "kept); raise the limit or pass a smaller --shard-size, and "
                                "rerun to resume") from None
        raise OutputError(f"cannot write {self.path}: {text.splitlines()[0]}") from None

    def skip(self, image_id: str, reason: str) -> None:
        self.skipped.append((image_id, reason))

    def commit(self, **attrs: Any) -> Path:
        """Record the skipped images and ``attrs``, close, and rename into place."""
        try:
            for name, column in (("skipped_ids", 0), ("skipped_reasons", 1)):
                self._create(name, (len(self.skipped),), STR, (256,))
                self.file[name][:] = [s[column] for s in self.skipped]
            write_attrs(self.file, {**attrs, "num_images": self.n})
            self.file.close()
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self._failed(exc)
        return self.path

    def abort(self, broken: bool = False) -> None:
        """Close and delete the temporary file (the shard is not written). ``broken``: a
        write failed (a full disk, the file-size limit): HDF5 flushes on close and would fail
        again -- each failure an "Exception ignored" traceback, then a crash at exit -- so
        its file descriptor is pointed at /dev/null first and the flush goes nowhere."""
        try:
            if self.file:  # still open
                if broken:
                    _discard_writes(self.file)
                self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def _discard_writes(file: h5py.File) -> None:
    """Point ``file``'s descriptor (HDF5's sec2 driver) at /dev/null: what it still writes
    is dropped, so closing a file whose writes failed cannot fail again."""
    try:
        fd = file.id.get_vfd_handle()
        null = os.open(os.devnull, os.O_RDWR)
    except (OSError, ValueError, RuntimeError, TypeError):
        return
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


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
    if not inputs:  # `-` read nothing: the stage before the pipe wrote no paths
        raise InputError("no shards given: no paths as arguments or on stdin (did the command "
                         "before the pipe fail?)")
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
            raise InputError(f"cannot read shard {path}: {exc}") from None
        try:
            self._open(kind)
        except InputError:
            self.close()
            raise
        except (OSError, KeyError, RuntimeError, ValueError) as exc:  # damaged HDF5 metadata
            self.close()
            raise self._corrupt("its header", exc) from None
        except BaseException:
            self.close()
            raise

    def _open(self, kind: str | None) -> None:
        self.attrs = read_attrs(self.file)
        if "featx_format" not in self.attrs:
            raise InputError(f"{self.path} is not a featx shard (no featx_format attribute)")
        if not isinstance(self.attrs["featx_format"], int) or \
                self.attrs["featx_format"] > FORMAT_VERSION:
            raise InputError(f"{self.path} is of featx format {self.attrs['featx_format']!r}, "
                             f"newer than this featx reads ({FORMAT_VERSION}); upgrade featx")
        if kind is not None and self.attrs.get("kind") != kind:
            made_by = {"activations": "featx extract", "encodings": "featx encode",
                       "predictions": "featx predict"}[kind]
            raise InputError(f"{self.path} holds {self.attrs.get('kind')!r}, not {kind} "
                             f"({made_by})")
        self.ids = decode_strings(self.file["ids"])
        self.skipped = list(zip(decode_strings(self.file["skipped_ids"]),
                                decode_strings(self.file["skipped_reasons"])))
        rows = {name: self.file[name].shape[0] for name in self._row_datasets()}
        short = {name: n for name, n in rows.items() if n != len(self.ids)}
        if self.attrs.get("num_images") != len(self.ids) or short:
            raise InputError(f"{self.path} is incomplete: it says {self.attrs.get('num_images')} "
                             f"images, holds {len(self.ids)} ids"
                             + (f" and {short}" if short else "") + "; write it again")

    def _row_datasets(self) -> list[str]:
        """Every dataset with one row per image."""
        out: list[str] = []
        self.file.visititems(lambda name, obj: out.append(name) if isinstance(obj, h5py.Dataset)
                             and name not in ("ids", "skipped_ids", "skipped_reasons") else None)
        return out

    def _corrupt(self, what: str, exc: Exception) -> InputError:
        return InputError(f"{self.path} is corrupt: reading {what} failed ({exc}); write it "
                          "again (extract / encode with --overwrite)")

    def _read(self, name: str, rows=slice(None)) -> np.ndarray:
        try:
            return self.file[name][rows]
        except OSError as exc:  # a Fletcher-32 mismatch, a truncated file
            raise self._corrupt(name, exc) from None

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
        return self._read("labels", rows) if "labels" in self.file else None

    def header(self) -> dict[str, Any]:
        return {**self.attrs, "ids": self.ids, "skipped_ids": [i for i, _ in self.skipped]}

    def _checked(self, name: str, rows) -> np.ndarray:
        # torch widens float16 with vector instructions, several times faster than numpy
        block = torch.from_numpy(self._read(name, rows)).float()
        # a sum is non-finite iff an element is (finite activations do not overflow it): one
        # cheap pass, the element-wise test only to confirm
        if not torch.isfinite(block.sum()) and not torch.isfinite(block).all():
            raise InputError(f"{self.path} holds NaN/Inf values in {name}")
        return block.numpy()


def read_header(path: str | Path) -> dict[str, Any]:
    """A shard's attributes, ``ids`` and ``skipped_ids``, without reading the large arrays."""
    with Shard(path) as shard:
        return shard.header()
