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

import errno
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from featx.errors import DiskFullError, InputError, OutputError, ProvenanceError
from featx.io.h5 import FORMAT_VERSION, SHARD_GLOB, STR, TMP_SUFFIX, decode_strings, file_size_limit
from featx.io.h5 import read_attrs, write_attrs



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


class EncodingWriter(_ShardWriter):
    """An encoding shard; ``quantize`` 'sign' or 'sign-raw' stores sign codes packed at 2 bits
    a dimension (the attribute ``quantize`` says how they are read back). A join stores
    floats and records its parts' quantisation in ``attrs`` (a list, one a part)."""

    def __init__(self, path, attrs, *, label_kind, num_classes=0, quantize: str = "none",
                 dtype: str = "float32"):
        super().__init__(path, {"kind": "encodings", "quantize": quantize, **attrs},
                         label_kind=label_kind, num_classes=num_classes)
        self.quantize, self.dtype = quantize, np.dtype(dtype)

    def append(self, ids: Sequence[str], enc: np.ndarray, labels=None) -> None:
        data = ({"codes": pack_sign(enc)} if self.quantize in ("sign", "sign-raw")
                else {"enc": enc.astype(self.dtype, copy=False)})
        self._append(ids, data, labels)


class PredictionWriter(_ShardWriter):
    """A predictions shard (``featx predict``): each image's decision values ``scores``
    (N, classes), in the dtype the SVM gave them (float32, or float64 where its weights or
    the encodings are), and its file ``paths``, with labels when the images came with them."""

    def __init__(self, path, attrs, *, label_kind, num_classes=0, index: int = -1):
        super().__init__(path, {"kind": "predictions", **attrs}, label_kind=label_kind,
                         num_classes=num_classes)
        self.index = index

    def append(self, ids: Sequence[str], scores: np.ndarray, labels=None,
               paths: Sequence[str] = ()) -> None:
        self._append(ids, {"scores": np.asarray(scores), "paths": list(paths)}, labels)


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


class EncodingShard(Shard):
    def __init__(self, path: str | Path):
        super().__init__(path, "encodings")

    def encodings(self, rows: slice = slice(None)) -> np.ndarray:
        """float32 (n, dim) of ``rows``. Sign codes (``quantize`` sign) unpacked to {-1, 0, 1}
        / sqrt(nonzeros): unit L2 norm, like every other encoding, so that an SVM's C means the
        same for them; ``quantize`` sign-raw: {-1, 0, 1} as they are (Liu et al. §4.3.3)."""
        if "codes" in self.file:
            return _signs(unpack_sign(self._read("codes", rows), self.attrs["dim"]),
                          self.attrs.get("quantize"))
        return self._read("enc", rows).astype(np.float32)


def _signs(x: np.ndarray, quantize: str | None) -> np.ndarray:
    """Unpacked sign codes as they are read: sign-raw as they are, sign at unit L2 norm."""
    if quantize == "sign-raw":
        return x
    return x / np.sqrt(np.maximum(np.count_nonzero(x, axis=1), 1))[:, None]


def as_stored(enc: np.ndarray, quantize: str = "none", dtype: str = "float32") -> np.ndarray:
    """float32 ``enc`` as an encoding shard of these settings gives it back
    (:class:`EncodingWriter` then :meth:`EncodingShard.encodings`), without the file: what
    ``featx predict`` scores, so that its scores are evaluate's."""
    if quantize in ("sign", "sign-raw"):
        return _signs(unpack_sign(pack_sign(enc), enc.shape[1]), quantize)
    return enc.astype(dtype, copy=False).astype(np.float32)


class PredictionShard(Shard):
    def __init__(self, path: str | Path):
        super().__init__(path, "predictions")

    def scores(self) -> np.ndarray:
        """(n, classes) decision values, as the SVM gave them."""
        if not len(self.ids):
            return np.zeros((0, len(self.attrs.get("classes") or [])), np.float32)
        x = self._read("scores", slice(None))
        if not np.isfinite(x).all():
            raise InputError(f"{self.path} holds NaN/Inf values in scores")
        return x

    @property
    def paths(self) -> list[str]:
        return decode_strings(self.file["paths"]) if "paths" in self.file else []


def read_header(path: str | Path) -> dict[str, Any]:
    """A shard's attributes, ``ids`` and ``skipped_ids``, without reading the large arrays."""
    with Shard(path) as shard:
        return shard.header()


class EncodingSet:
    """The encoding shards of one split, read in row blocks: memory is bounded by the block,
    not the split. Opening checks what every reader relies on -- the shards agree on the
    attributes ``same`` and their classes, every image is labelled, no image occurs twice --
    and reads ids and labels only."""

    def __init__(self, paths: Sequence[Path], same: Sequence[str]):
        self.paths = list(paths)
        ids, labels, self.counts, first = [], [], [], None
        for path in self.paths:
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
                labels.append(y)
                self.counts.append(len(shard.ids))
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            dup = next(i for i in ids if i in seen or seen.add(i))
            raise InputError(f"image {dup!r} occurs in more than one input shard (the same shard "
                             "given twice?); give each shard once")
        self.ids, self.labels, self.attrs = ids, np.concatenate(labels), first
        self.dim = int(first["dim"])

    def __len__(self) -> int:
        return len(self.ids)

    def block_rows(self, budget_bytes: int) -> int:
        """Rows of a block such that two float32 blocks fit in ``budget_bytes``."""
        return max(1, int(budget_bytes // (2 * 4 * max(self.dim, 1))))

    def blocks(self, rows: int, shards: Sequence[int] | None = None
               ) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float32 (r, dim)) blocks of at most ``rows`` rows, in order, each
        checked for NaN/Inf; of the shards numbered ``shards`` only (a torchrun rank's share,
        rows counted from 0 within it) when given."""
        chosen = range(len(self.paths)) if shards is None else shards
        start, pending, size = 0, [], 0
        for i in chosen:
            path, count = self.paths[i], self.counts[i]
            with EncodingShard(path) as shard:
                lo = 0
                while lo < count:
                    hi = min(count, lo + rows - size)
                    pending.append(shard.encodings(slice(lo, hi)))
                    size, lo = size + hi - lo, hi
                    if size == rows:
                        yield start, self._finite(np.concatenate(pending))
                        start, pending, size = start + size, [], 0
        if pending:
            yield start, self._finite(np.concatenate(pending))

    def places(self, shards: Sequence[int]) -> np.ndarray:
        """The rows (of the whole set) that the shards numbered ``shards`` hold, in order."""
        starts = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        return np.concatenate([np.arange(starts[i], starts[i + 1]) for i in shards]
                              or [np.zeros(0, np.int64)])

    @staticmethod
    def _finite(x: np.ndarray) -> np.ndarray:
        if not np.isfinite(x).all():
            raise InputError("the encodings hold NaN/Inf values")
        return x


def load_encodings(paths: Sequence[Path], same: Sequence[str]
                   ) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, Any]]:
    """Every encoding shard of ``paths`` stacked: ids, X (N, dim), labels, attributes of the
    first; the shards must agree on the attributes ``same`` and on their classes."""
    enc = EncodingSet(paths, same)
    x = np.concatenate([b for _, b in enc.blocks(max(len(enc), 1))]) if len(enc) else \
        np.zeros((0, enc.dim), np.float32)
    return enc.ids, x, enc.labels, enc.attrs
