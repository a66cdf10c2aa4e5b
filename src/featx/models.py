"""Fitted models (PCA, GMM) as HDF5 files with provenance, written atomically.

A model file holds its arrays as datasets and the same kind of provenance attributes as the
shards (``featx_format``, ``kind``, backbone, weights, layer, view, local features, featx
version, command line, and the fitting parameters).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from featx.errors import InputError, OutputExistsError
from featx.fit import PCA, GaussianMixture
from featx.shards import FORMAT_VERSION, TMP_SUFFIX, read_attrs, write_attrs


def file_digest(path: str | Path) -> str:
    """First 16 hex digits of the file's SHA-256: names a model in later provenance."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def check_model_output(path: str | Path, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save_model(path: str | Path, arrays: Mapping[str, Any], attrs: Mapping[str, Any]) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with h5py.File(tmp, "w") as f:
            write_attrs(f, {"featx_format": FORMAT_VERSION, **attrs})
            for name, value in arrays.items():
                if isinstance(value, torch.Tensor):
                    value = value.detach().cpu().numpy()
                f.create_dataset(name, data=np.asarray(value))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_model_file(path: str | Path, kind: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and attributes of a model file, refusing files of another kind."""
    try:
        with h5py.File(path, "r") as f:
            attrs = read_attrs(f)
            arrays = {name: f[name][()] for name in f if isinstance(f[name], h5py.Dataset)}
    except OSError as exc:
        raise InputError(f"cannot read model file {path}: {exc}") from exc
    if attrs.get("kind") != kind:
        raise InputError(f"{path} is not a {kind} model (kind={attrs.get('kind')!r})")
    return arrays, attrs


def save_pca(path, pca: PCA, attrs: Mapping[str, Any]) -> Path:
    return save_model(path, {
        "components": pca.components_, "mean": pca.mean_,
        "explained_variance": pca.explained_variance_,
        "explained_variance_ratio": pca.explained_variance_ratio_,
    }, {"kind": "pca", "whiten": pca.whiten, "n_samples": pca.n_samples_, **attrs})


def load_pca(path, device: str = "cpu") -> tuple[PCA, dict[str, Any]]:
    arrays, attrs = load_model_file(path, "pca")
    pca = PCA(n_components=arrays["components"].shape[0], whiten=bool(attrs["whiten"]),
              device=device)
    dev = torch.device(device)
    pca.components_ = torch.from_numpy(arrays["components"]).to(dev)
    pca.mean_ = torch.from_numpy(arrays["mean"]).to(dev)
    pca.explained_variance_ = torch.from_numpy(arrays["explained_variance"]).to(dev)
    pca.explained_variance_ratio_ = torch.from_numpy(arrays["explained_variance_ratio"]).to(dev)
    pca.n_samples_ = attrs["n_samples"]
    return pca, attrs


def save_gmm(path, gmm: GaussianMixture, attrs: Mapping[str, Any]) -> Path:
    return save_model(path, {
        "means": gmm.means_, "variances": gmm.variances_, "priors": gmm.priors_,
        "history": np.asarray(gmm.history_),
    }, {"kind": "gmm", "converged": gmm.converged_, "n_iter": gmm.n_iter_,
        "lower_bound": gmm.lower_bound_, "var_floor_abs": gmm.var_floor_, **attrs})


def load_gmm(path, device: str = "cpu") -> tuple[GaussianMixture, dict[str, Any]]:
    arrays, attrs = load_model_file(path, "gmm")
    gmm = GaussianMixture(n_components=arrays["means"].shape[0], device=device)
    dev = torch.device(device)
    gmm.means_ = torch.from_numpy(arrays["means"]).to(dev)
    gmm.variances_ = torch.from_numpy(arrays["variances"]).to(dev)
    gmm.priors_ = torch.from_numpy(arrays["priors"]).to(dev)
    gmm.history_ = arrays["history"].tolist()
    gmm.converged_, gmm.n_iter_ = bool(attrs["converged"]), attrs["n_iter"]
    gmm.lower_bound_ = attrs["lower_bound"]
    return gmm, attrs
