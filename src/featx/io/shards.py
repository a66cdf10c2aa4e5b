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

# the formats live in their own modules; this module names them all (as it always has)
from featx.io.activations import ActivationShard, ActivationWriter
from featx.io.encodings import EncodingSet, EncodingShard, EncodingWriter, as_stored
from featx.io.encodings import load_encodings, pack_sign, unpack_sign
from featx.io.predictions import PredictionShard, PredictionWriter
from featx.io.shard import Shard, read_header, shard_name, shard_paths

__all__ = ["ActivationShard", "ActivationWriter", "EncodingSet", "EncodingShard",
           "EncodingWriter", "PredictionShard", "PredictionWriter", "Shard", "as_stored",
           "load_encodings", "pack_sign", "read_header", "shard_name", "shard_paths",
           "unpack_sign"]
