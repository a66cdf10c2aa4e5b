"""Encoding shards (featx encode, extract --encode, join): ``enc`` (N, dim), or ``codes``
(N, ceil(dim / 4)) uint8 for sign-quantised encodings (2 bits a dimension); and
:class:`EncodingSet`, the encodings of a split read in row blocks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featx.errors import InputError, ProvenanceError
from featx.io.shard import Shard, _ShardWriter


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
