"""Fitted models (PCA, GMM, SVM) as HDF5 files with provenance, written atomically.

A model file holds its arrays as datasets and the same kind of provenance attributes as the
shards (``featx_format``, ``kind``, backbone, weights, layer, view, local features, featx
version, command line, and the fitting parameters).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from featx.errors import InputError, OutputExistsError
from featx.fit import PCA, GaussianMixture
from featx.io.h5 import FORMAT_VERSION, TMP_SUFFIX, read_attrs, write_attrs


def check_model_output(path: str | Path, overwrite: bool) -> Path:
    """Refuse an existing model file unless ``overwrite``; create the folder it goes in."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _save(path: str | Path, kind: str, arrays: Mapping[str, Any], attrs: Mapping[str, Any]
          ) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with h5py.File(tmp, "w") as f:
            write_attrs(f, {"featx_format": FORMAT_VERSION, "kind": kind, **attrs})
            for name, value in arrays.items():
                if isinstance(value, torch.Tensor):
                    value = value.detach().cpu().numpy()
                f.create_dataset(name, data=np.asarray(value))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _load(path: str | Path, kind: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
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
    return _save(path, "pca", {
        "components": pca.components_, "mean": pca.mean_,
        "explained_variance": pca.explained_variance_,
        "explained_variance_ratio": pca.explained_variance_ratio_,
    }, {"whiten": pca.whiten, "n_samples": pca.n_samples_, **attrs})


def load_pca(path, device: torch.device | str = "cpu") -> tuple[PCA, dict[str, Any]]:
    arrays, attrs = _load(path, "pca")
    pca = PCA(n_components=arrays["components"].shape[0], whiten=bool(attrs["whiten"]),
              device=str(device))
    for name in ("components", "mean", "explained_variance", "explained_variance_ratio"):
        setattr(pca, name + "_", torch.from_numpy(arrays[name]).to(device))
    pca.n_samples_ = attrs["n_samples"]
    pca.n_features_in_ = arrays["components"].shape[1]
    return pca, attrs


def save_gmm(path, gmm: GaussianMixture, attrs: Mapping[str, Any]) -> Path:
    return _save(path, "gmm", {
        "means": gmm.means_, "variances": gmm.variances_, "priors": gmm.priors_,
        "history": np.asarray(gmm.history_),
    }, {"converged": gmm.converged_, "n_iter": gmm.n_iter_, "lower_bound": gmm.lower_bound_,
        "var_floor_abs": gmm.var_floor_, **attrs})


def load_gmm(path, device: torch.device | str = "cpu") -> tuple[GaussianMixture, dict[str, Any]]:
    arrays, attrs = _load(path, "gmm")
    gmm = GaussianMixture(n_components=arrays["means"].shape[0], device=str(device))
    for name in ("means", "variances", "priors"):
        setattr(gmm, name + "_", torch.from_numpy(arrays[name]).to(device))
    gmm.history_ = arrays["history"].tolist()
    gmm.converged_, gmm.n_iter_ = bool(attrs["converged"]), attrs["n_iter"]
    gmm.lower_bound_, gmm.var_floor_ = attrs["lower_bound"], attrs["var_floor_abs"]
    gmm.n_features_in_ = arrays["means"].shape[1]
    return gmm, attrs


def save_svm(path, weights: np.ndarray, biases: np.ndarray, attrs: Mapping[str, Any]) -> Path:
    return _save(path, "svm", {"weights": weights, "biases": biases}, attrs)


def load_svm(path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Weights (C, dim), biases (C,) and attributes of an SVM model file."""
    arrays, attrs = _load(path, "svm")
    return arrays["weights"], arrays["biases"], attrs
