"""How the models fitted on pyramid vectors (a GMM, a guidance) meet the activations they
serve: which PCA maps the vectors into their space, whether a guidance's scales are these, and
whether extract --project's PCA is the one given. Domain checks, kept out of :mod:`featx.io`
(which reads and writes files); shared by the stages that fit, encode and draw from pyramids."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from featx.digest import file_digest
from featx.errors import ProvenanceError
from featx.io import load_pca


def pyramid_pca(head: Mapping[str, Any], fitted: Mapping[str, Any], model: str,
                pca: str | None = None, device: torch.device | str = "cpu"):
    """The one place that decides which PCA maps these activations' pyramid vectors (``head``)
    into the space ``model`` (a GMM or a guidance, attributes ``fitted``) was fitted in: None
    when extract --project did it already (with that PCA), else ``pca`` or the PCA the model
    records, checked by digest."""
    if head.get("projected"):
        if head["projected"] != fitted["pca_sha256"]:
            raise ProvenanceError(f"the activations have projected={head['projected']!r}, this "
                                  f"run needs projected={fitted['pca_sha256']!r}; {model} was "
                                  "fitted on vectors projected by another PCA")
        return None
    path = pca or fitted.get("pca") or ""
    if not path or not Path(path).is_file() or file_digest(path) != fitted["pca_sha256"]:
        raise ProvenanceError(f"{model} was fitted on features reduced by "
                              f"{fitted.get('pca') or 'a PCA'} (sha256 {fitted['pca_sha256']}); "
                              "pass that PCA with --pca")
    return load_pca(path, device)[0]


def check_projection(head: Mapping[str, Any], pca: str, digest: str) -> None:
    """Refuse ``pca`` (digest ``digest``) for activations projected by another PCA."""
    if head.get("projected") and head["projected"] != digest:
        raise ProvenanceError(f"the activations were projected (extract --project) with another "
                              f"PCA than {pca}; pass that PCA")


def check_guidance_scales(head: Mapping[str, Any], gattrs: Mapping[str, Any], path: str) -> None:
    """Refuse a guidance (attributes ``gattrs``) trained on other pyramid scales than these
    activations (``head``) hold at the scale indices it uses."""
    sizes = list(head.get("pyramid_sizes") or [])
    if [sizes[s] if s < len(sizes) else None for s in gattrs["scales"]] != \
            list(gattrs["pyramid_sizes"]):
        raise ProvenanceError(f"{path} was trained on pyramid scales of "
                              f"{gattrs['pyramid_sizes']} px; these activations have {sizes}")
