"""Provenance: what every output records about how it was made, and the checks built on it.

Every shard and model file carries :func:`provenance` attributes (featx version, command line,
and the parameters of its stage). Later stages compare them with :func:`require_fit`, whose
messages all read "WHAT has KEY=FOUND, this run needs KEY=EXPECTED", and a rerun keeps an
existing output only through :func:`resume_or_refuse`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import featx
from featx.errors import OutputExistsError, ProvenanceError
from featx.io.shard import read_header

# what identifies one extraction: activations, and every model fitted on them, must agree here
EXTRACTION_KEYS = ("backbone", "weights", "input_size")
# what an activation shard records of how it was extracted (featx.extraction.plan's
# signature): a rerun resumes only over these, and an encoding records them (featx export)
EXTRACTION_SIGNATURE = ("kind", "backbone", "layers", "views", "input_size", "dtype",
                        "shard_size", "mean", "std", "bgr", "jitter_size", "interpolation",
                        "pyramid_sizes", "projected", "sample", "compute")
# what an SVM model shares with the encodings it scores
# (``normalisation`` is what each block went through, whatever --power-norm said)
ENCODING_KEYS = EXTRACTION_KEYS + ("methods", "views", "normalisation", "l2", "quantize",
                                   "pca_sha256", "gmm_sha256", "guidance_sha256", "dim")


def provenance(*, command: str, **params: Any) -> dict[str, Any]:
    """The attributes every output records: featx's version, the command line, ``params``."""
    return {"featx_version": featx.__version__, "command": command, **params}


def require_fit(found: Mapping[str, Any], expected: Mapping[str, Any], what: str,
                hint: str = "") -> None:
    """Raise naming the first key of ``expected`` that ``found`` (``what``'s attributes) holds
    differently; ``hint`` says how to fix it."""
    # "these encodings have", "work/pca.h5 has": a plural noun, not a file's name
    verb = "have" if what.endswith("s") and "." not in what and "/" not in what else "has"
    for key, value in expected.items():
        if found.get(key) != value:
            raise ProvenanceError(f"{what} {verb} {key}={found.get(key)!r}, this run needs "
                                  f"{key}={value!r}" + (f"; {hint}" if hint else ""))


def resume_or_refuse(target: Path, signature: Mapping[str, Any], ids: Collection[str]
                     ) -> dict[str, Any] | None:
    """The header of ``target`` when it is a complete output of these settings for these
    images (keep it), None when there is none; refuses any other existing file."""
    if not target.exists():
        return None
    head = read_header(target)
    fix = "pass --overwrite to replace it, or use another -o"
    try:
        require_fit(head, signature, f"existing {target}", fix)
    except ProvenanceError as exc:
        raise OutputExistsError(str(exc)) from None
    if set(head["ids"]) | set(head["skipped_ids"]) != set(ids):
        raise OutputExistsError(f"existing {target} holds other images than this run puts there "
                                f"(did the input change?); {fix}")
    return head
