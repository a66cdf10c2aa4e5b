"""A classifier bundle (``featx export``): one HDF5 file that takes a photo to a label.

It holds the recipe -- the extraction (backbone, weights' source, layers, views, input size,
pyramid, preprocessing, storage dtype) and the encoding (methods, views, normalisation,
quantisation) the SVM's training encodings were made with, in the attribute ``recipe`` --
and, byte for byte, the model files the recipe reads: ``files/svm`` always, ``files/pca``,
``files/gmm``, ``files/guidance`` and ``files/project`` (extract --project's PCA) where it
uses them. Each file's SHA-256 prefix (:func:`featx.digest.file_digest`) is recorded beside
it and checked when the bundle is read, so a damaged bundle is refused, and the files
unpacked are the very files the chain was trained with (same digests: every provenance check
of the stages holds). See docs/shards.md, "Classifier bundles".
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featx.errors import DiskFullError, InputError
from featx.io.h5 import FORMAT_VERSION, TMP_SUFFIX, file_size_limit, read_attrs, why
from featx.io.h5 import write_attrs

KIND = "classifier"
ROLES = ("svm", "pca", "gmm", "guidance", "project")  # the model files a bundle may carry
# what the recipe records (the reader refuses a bundle without one)
RECIPE_KEYS = ("backbone", "weights", "weights_arg", "weights_sha256", "seed", "extraction",
               "encode", "classes", "multilabel", "probability")


@dataclass(frozen=True)
class Bundle:
    """A read bundle: its path, attributes (``recipe`` among them) and files by role."""

    path: Path
    attrs: dict[str, Any]
    files: dict[str, bytes]

    @property
    def recipe(self) -> dict[str, Any]:
        return self.attrs["recipe"]

    @property
    def classes(self) -> list[str]:
        return list(self.recipe["classes"])

    def unpack(self, folder: str | Path) -> dict[str, Path]:
        """Write each file into ``folder`` (``svm.h5``, ``pca.h5``, ...): {role: path}."""
        out = {}
        for role, data in self.files.items():
            target = Path(folder) / f"{role}.h5"
            target.write_bytes(data)
            out[role] = target
        return out


def save_bundle(path: str | Path, recipe: Mapping[str, Any], files: Mapping[str, str | Path],
                attrs: Mapping[str, Any]) -> Path:
    """Write a bundle of ``recipe`` and the model ``files`` ({role: path}) atomically;
    ``attrs``: its provenance."""
    unknown = set(files) - set(ROLES)
    if unknown or "svm" not in files:
        raise ValueError(f"bundle files {sorted(files)}: need svm, may have {ROLES}")
    path = Path(path)
    blobs = {role: Path(p).read_bytes() for role, p in files.items()}
    need, limit = sum(len(b) for b in blobs.values()) * 1.02 + (256 << 10), file_size_limit()
    if limit is not None and need > limit:
        raise DiskFullError(f"{path} needs about {need / 2**20:.1f} MiB, more than this "
                            "process's file-size limit (ulimit -f); raise the limit and rerun")
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with h5py.File(tmp, "w") as f:
            digests = {role: _digest(b) for role, b in blobs.items()}
            write_attrs(f, {"featx_format": FORMAT_VERSION, "kind": KIND, **attrs,
                            "recipe": dict(recipe), "files": digests})
            for role, data in blobs.items():
                f.create_dataset(f"files/{role}", data=np.frombuffer(data, np.uint8),
                                 chunks=True if data else None, fletcher32=bool(data))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_bundle(path: str | Path) -> Bundle:
    """The bundle at ``path``, refusing what is not one, one of a newer format, an incomplete
    recipe, and a file whose bytes are not the ones recorded."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no classifier bundle {path}" if not p.exists() else
                         f"{path} is a folder; name a classifier bundle (featx export)")
    try:
        with h5py.File(p, "r") as f:
            attrs = read_attrs(f)
            if attrs.get("kind") != KIND:
                raise InputError(f"{path} is not a classifier bundle (kind="
                                 f"{attrs.get('kind')!r}); make one with featx export")
            version = attrs.get("featx_format")
            if not isinstance(version, int) or isinstance(version, bool) or \
                    version > FORMAT_VERSION:
                raise InputError(f"{path} is of featx format {version!r}, not one this featx "
                                 f"reads (up to {FORMAT_VERSION}); upgrade featx")
            recipe, digests = attrs.get("recipe"), attrs.get("files")
            if not isinstance(recipe, dict) or not isinstance(digests, dict) or \
                    "svm" not in digests:
                raise InputError(f"{path} is a corrupt classifier bundle: it has no recipe or "
                                 "no SVM; export it again")
            lacking = [k for k in RECIPE_KEYS if k not in recipe]
            if lacking:
                raise InputError(f"{path} is a corrupt classifier bundle: its recipe has no "
                                 f"{lacking[0]}; export it again")
            files = {}
            for role, want in digests.items():
                if role not in ROLES or f"files/{role}" not in f:
                    raise InputError(f"{path} is a corrupt classifier bundle: it lists a file "
                                     f"{role!r} it does not hold; export it again")
                files[role] = f[f"files/{role}"][()].tobytes()
                if _digest(files[role]) != want:
                    raise InputError(f"{path} is a corrupt classifier bundle: its {role} file "
                                     "is not the one exported (digest differs); export it again")
    except OSError as exc:
        raise InputError(f"cannot read classifier bundle {path}: {why(exc)}") from None
    except (ValueError, KeyError, RuntimeError) as exc:  # damaged attributes or checksums
        raise InputError(f"{path} is a corrupt classifier bundle: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                         "export it again") from None
    return Bundle(p, attrs, files)


def _digest(data: bytes) -> str:
    """:func:`featx.digest.file_digest` of bytes in memory (the same 16 hex digits)."""
    return hashlib.sha256(data).hexdigest()[:16]

