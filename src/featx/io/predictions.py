"""Predictions shards (featx predict): each photo's ``scores`` (N, classes) and ``paths``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from featx.errors import InputError
from featx.io.h5 import decode_strings
from featx.io.shard import Shard, _ShardWriter


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
