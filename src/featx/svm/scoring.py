"""Scoring encodings with a trained model, and the digests that name a row (evaluate's copies of training photos)."""

from __future__ import annotations

import numpy as np


def row_digests(x: np.ndarray) -> np.ndarray:
    """A 64-bit digest of each row of ``x`` (n, dim), of its values rounded to float16: the
    same photo extracted twice gives the same encoding, so evaluate can tell a test image
    that is a copy of a training image (train-svm records its rows' digests)."""
    import hashlib

    half = np.ascontiguousarray(x, dtype=np.float16)
    return np.array([int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(),
                                    "little") for row in half], dtype=np.uint64)


def scores(x: np.ndarray, weights: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """(N, C) decision values; a row's are the same bits whichever rows it is scored with
    (BLAS takes a single row down another path, matrix-vector, whose sums round otherwise:
    it is scored as a pair), so predict's scores of a photo are evaluate's."""
    if len(x) == 1:
        return (np.concatenate([x, x]) @ weights.T + biases.astype(np.float32))[:1]
    return x @ weights.T + biases.astype(np.float32)
