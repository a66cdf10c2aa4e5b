"""Low-level HDF5 helpers shared by shards and model files: the attribute codec and the
format version."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

# 1: the first format; 2: adds the ``label_kind`` attribute (readers infer it for 1)
FORMAT_VERSION = 2
TMP_SUFFIX = ".partial"
SHARD_GLOB = "shard-*.h5"  # a stage's complete shards (a .partial file is not one)
STR = h5py.string_dtype("utf-8")


def write_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    """Store attributes; lists and dicts go in as JSON text so every reader gets them back."""
    for key, value in attrs.items():
        if isinstance(value, (list, tuple, dict)):
            obj.attrs[key] = "json:" + json.dumps(value)
        elif value is None:
            obj.attrs[key] = "json:null"
        else:
            obj.attrs[key] = value


class MalformedAttribute(ValueError):
    """An attribute that does not decode (JSON text cut short or edited by hand)."""


def read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    out = {}
    for key, value in obj.attrs.items():
        if isinstance(value, bytes):
            try:
                value = value.decode()
            except UnicodeDecodeError:
                raise MalformedAttribute(f"its attribute {key!r} is not UTF-8 text") from None
        if isinstance(value, str) and value.startswith("json:"):
            try:
                value = json.loads(value[5:])
            except ValueError as exc:
                raise MalformedAttribute(f"its attribute {key!r} holds malformed JSON "
                                         f"({exc.msg} at character {exc.pos})") from None
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def decode_strings(ds: h5py.Dataset) -> list[str]:
    return [s.decode() for s in ds[:]]


def why(exc: OSError) -> str:
    """An HDF5 open error in one line of plain words (h5py's text spans several lines of the
    library's internals)."""
    text = str(exc)
    if "signature" in text or "truncated" in text or "file format" in text.lower():
        return "not an HDF5 file, or a truncated one"
    return exc.strerror or text.splitlines()[0] if text else type(exc).__name__


def file_size_limit() -> int | None:
    """The largest file this process may write (``ulimit -f``, RLIMIT_FSIZE), None if
    unlimited or unknown."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else int(soft)
