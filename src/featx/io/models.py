"""Fitted models (PCA, GMM, SVM, scheme-2 guidance) as HDF5 files with provenance, written atomically.

A model file holds its arrays as datasets and the same kind of provenance attributes as the
shards (``featx_format``, ``kind``, backbone, weights, layer, view, local features, featx
version, command line, and the fitting parameters).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import torch

from featx.errors import DiskFullError, InputError
from featx.io.bundle import KIND as CLASSIFIER, read_bundle, save_bundle
from featx.io.h5 import FORMAT_VERSION, TMP_SUFFIX, file_size_limit, read_attrs, why as _why
from featx.io.h5 import write_attrs

if TYPE_CHECKING:  # featx.fit (scikit-learn) is imported when a model is read, not with featx.io
    from featx.fit import PCA, GaussianMixture, Guidance


# the attributes each kind's reader relies on (a file without one is corrupt or foreign)
_REQUIRED = {
    "pca": ("whiten", "n_samples"),
    "gmm": ("converged", "n_iter", "lower_bound", "var_floor_abs"),
    "svm": ("classes",),
    "guidance": ("layer", "scales", "pyramid_sizes", "dim", "pca_sha256"),
}


def _save(path: str | Path, kind: str, arrays: Mapping[str, Any], attrs: Mapping[str, Any]
          ) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    arrays = {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
              for k, v in arrays.items()}
    need, limit = sum(a.nbytes for a in arrays.values()) * 1.02 + (256 << 10), file_size_limit()
    if limit is not None and need > limit:  # HDF5 would fail only while freeing its objects
        raise DiskFullError(f"{path} needs about {need / 2**20:.1f} MiB, more than this "
                            f"process's file-size limit (ulimit -f) of {limit / 2**20:.1f} "
                            "MiB; raise the limit and rerun")
    try:
        with h5py.File(tmp, "w") as f:
            write_attrs(f, {"featx_format": FORMAT_VERSION, "kind": kind, **attrs})
            for name, value in arrays.items():
                if isinstance(value, torch.Tensor):
                    value = value.detach().cpu().numpy()
                value = np.asarray(value)
                # every chunk checksummed (Fletcher-32), so corruption is noticed on load
                f.create_dataset(name, data=value, chunks=True if value.size else None,
                                 fletcher32=bool(value.size))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# each kind's arrays as (name, axes): an axis is named where two arrays must agree on it
_SHAPES = {
    "pca": (("components", "kd"), ("mean", "d"), ("explained_variance", "k"),
            ("explained_variance_ratio", "k")),
    "gmm": (("means", "Kd"), ("variances", "Kd"), ("priors", "K"), ("history", "n")),
    "svm": (("weights", "Cd"), ("biases", "C")),
}
# attributes each kind's reader takes as a given type
_TYPES = {"pca": {"n_samples": int}, "gmm": {"n_iter": int, "lower_bound": (int, float),
                                              "var_floor_abs": (int, float)},
          "svm": {"classes": list}, "guidance": {"scales": list, "pyramid_sizes": list,
                                                 "dim": int}}


def _check_shapes(path: str | Path, kind: str, arrays: Mapping[str, np.ndarray],
                  attrs: Mapping[str, Any]) -> None:
    """Refuse arrays of the wrong number of axes, empty ones, ones that disagree on a shared
    axis, and required attributes of the wrong type: one line naming the file."""
    sizes: dict[str, int] = {}
    for name, axes in _SHAPES.get(kind, ()):
        a = arrays.get(name)
        if a is None:
            continue
        if a.ndim != len(axes) or (a.size == 0 and name != "history"):
            raise InputError(f"{path} is a corrupt {kind} model file: {name} has shape "
                             f"{a.shape}, not {len(axes)} non-empty axes; fit it again")
        for axis, n in zip(axes, a.shape):
            if sizes.setdefault(axis, n) != n and axis != "n":
                raise InputError(f"{path} is a corrupt {kind} model file: {name} has shape "
                                 f"{a.shape}, which disagrees with the other arrays; fit it "
                                 "again")
    for name, want in _TYPES.get(kind, {}).items():
        value = attrs.get(name)
        if not isinstance(value, want) or isinstance(value, bool):
            raise InputError(f"{path} is a corrupt {kind} model file: its attribute {name} "
                             f"is {value!r}; fit it again")
    if kind == "svm" and attrs["classes"] and len(attrs["classes"]) != sizes.get("C"):
        if not (len(attrs["classes"]) == 2 and sizes.get("C") == 1):
            raise InputError(f"{path} is a corrupt svm model file: {len(attrs['classes'])} "
                             f"classes but {sizes.get('C')} classifiers; train it again")


def _readable(path: str | Path, what: str) -> None:
    """Refuse a model path that is not a file, in plain words (not HDF5's)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"no {what} file {path}")
    if p.is_dir():
        raise InputError(f"{path} is a folder; name a {what} file")


def _load(path: str | Path, kind: str, names: tuple[str, ...], optional: tuple[str, ...] = ()
          ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays ``names`` (and those of ``optional`` the file has) and the attributes of a
    model file, refusing files of another kind, corrupt ones, ones that lack an array, and
    ones whose arrays or attributes are malformed (:func:`_check_shapes`)."""
    _readable(path, f"{kind} model")
    try:
        with h5py.File(path, "r") as f:
            attrs = read_attrs(f)
            if attrs.get("kind") != kind:
                raise InputError(f"{path} is not a {kind} model (kind={attrs.get('kind')!r})")
            version = attrs.get("featx_format")
            if not isinstance(version, int) or version > FORMAT_VERSION:
                raise InputError(f"{path} is of featx format {version!r}, not one this featx "
                                 f"reads (up to {FORMAT_VERSION}); upgrade featx or fit it again")
            lacking = [a for a in _REQUIRED.get(kind, ()) if a not in attrs]
            if lacking:
                raise InputError(f"{path} is a corrupt or foreign {kind} model file: it has no "
                                 f"{lacking[0]} attribute; fit it again")
            missing = [n for n in names if n not in f]
            if missing:
                raise InputError(f"{path} is not a complete {kind} model: it has no {missing[0]}")
            arrays = {name: f[name][()] for name in (*names, *optional) if name in f}
    except OSError as exc:
        raise InputError(f"cannot read model file {path}: {_why(exc)}") from None
    except (ValueError, KeyError, RuntimeError) as exc:  # damaged attributes or metadata
        raise InputError(f"{path} is a corrupt {kind} model file: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                         "fit it again") from None
    _check_shapes(path, kind, arrays, attrs)
    bad = [n for n, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad:
        raise InputError(f"{path} holds NaN/Inf values in {bad[0]}; fit it again")
    return arrays, attrs


def save_pca(path, pca: PCA, attrs: Mapping[str, Any]) -> Path:
    return _save(path, "pca", {
        "components": pca.components_, "mean": pca.mean_,
        "explained_variance": pca.explained_variance_,
        "explained_variance_ratio": pca.explained_variance_ratio_,
    }, {"whiten": pca.whiten, "n_samples": pca.n_samples_, **attrs})


def load_pca(path, device: torch.device | str = "cpu") -> tuple[PCA, dict[str, Any]]:
    from featx.fit import PCA

    arrays, attrs = _load(path, "pca", ("components", "mean", "explained_variance",
                                            "explained_variance_ratio"))
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
    from featx.fit import GaussianMixture

    arrays, attrs = _load(path, "gmm", ("means", "variances", "priors", "history"))
    gmm = GaussianMixture(n_components=arrays["means"].shape[0], device=str(device))
    for name in ("means", "variances", "priors"):
        setattr(gmm, name + "_", torch.from_numpy(arrays[name]).to(device))
    gmm.history_ = arrays["history"].tolist()
    gmm.converged_, gmm.n_iter_ = bool(attrs["converged"]), attrs["n_iter"]
    gmm.lower_bound_, gmm.var_floor_ = attrs["lower_bound"], attrs["var_floor_abs"]
    gmm.n_features_in_ = arrays["means"].shape[1]
    return gmm, attrs


# what an SVM file may hold beside its weights: Platt scaling (C, 2) and the standardisation
# its weights fold in (dim,) each (train-svm --calibrate, --standardize)
# and the digests of its training rows (featx.svm.row_digests, sorted: evaluate tells a test
# image that is a copy of a training one)
SVM_EXTRAS = ("platt", "standardize_mean", "standardize_scale", "train_digests")


def save_svm(path, weights: np.ndarray, biases: np.ndarray, attrs: Mapping[str, Any],
             extras: Mapping[str, np.ndarray] | None = None) -> Path:
    unknown = set(extras or {}) - set(SVM_EXTRAS)
    assert not unknown, unknown
    return _save(path, "svm", {"weights": weights, "biases": biases, **(extras or {})}, attrs)


def load_svm(path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Weights (C, dim), biases (C,) and attributes of an SVM model file."""
    arrays, attrs = _load(path, "svm", ("weights", "biases"))
    return arrays["weights"], arrays["biases"], attrs


def load_svm_extras(path) -> dict[str, np.ndarray]:
    """The arrays of :data:`SVM_EXTRAS` an SVM file holds (its calibration, its
    standardisation), checked against its weights' shape."""
    arrays, attrs = _load(path, "svm", ("weights", "biases"), SVM_EXTRAS)
    num, dim = arrays["weights"].shape
    want = {"platt": (num, 2), "standardize_mean": (dim,), "standardize_scale": (dim,),
            "train_digests": (attrs.get("n_train"),)}
    for name in SVM_EXTRAS:
        if name in arrays and arrays[name].shape != want[name]:
            raise InputError(f"{path} holds {name} of shape {arrays[name].shape}, not "
                             f"{want[name]}; train it again")
    if attrs.get("probability") == "platt" and "platt" not in arrays:
        raise InputError(f"{path} is not a complete svm model: it has no platt")
    return {name: arrays[name] for name in SVM_EXTRAS if name in arrays}


def save_guidance(path, guidance: Guidance, attrs: Mapping[str, Any]) -> Path:
    return _save(path, "guidance", {"weight": guidance.weight, "bias": guidance.bias},
                 {"curve": guidance.curve, "best_epoch": guidance.best_epoch, **attrs})


def load_guidance(path, device: torch.device | str = "cpu") -> tuple[Guidance, dict[str, Any]]:
    """The guidance layer of featx fit-guidance (weights on ``device``) and its attributes."""
    from featx.fit import Guidance

    arrays, attrs = _load(path, "guidance", ("weight", "bias"))
    w, b = (torch.from_numpy(arrays[n]).to(device) for n in ("weight", "bias"))
    if w.ndim != 4 or b.shape != w.shape[:1]:
        raise InputError(f"{path} holds a guidance of shapes {tuple(w.shape)}, {tuple(b.shape)}; "
                         "fit it again")
    return Guidance(w, b, attrs.get("curve", []), attrs.get("best_epoch", 0)), attrs


def save_maps(path, maps: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> Path:
    """featx maps' raw maps: one (panels, H, W) dataset an image, named map_NNNNN, with the
    ids and panel names in the attributes."""
    return _save(path, "maps", maps, attrs)


def load_maps(path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """{image id: (panels, H, W) maps} and the attributes of a maps.h5."""
    try:
        with h5py.File(path, "r") as f:
            attrs = read_attrs(f)
            names = sorted(k for k in f if k.startswith("map_"))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {_why(exc)}") from None
    arrays, attrs = _load(path, "maps", tuple(names))
    return {i: arrays[n] for i, n in zip(attrs["ids"], names)}, attrs


@dataclass(frozen=True)
class ModelKind:
    """One kind of model file: how it is read and written, which stage makes it, the option
    that passes it, and what it must share with the activations it serves."""

    name: str
    load: Callable[..., tuple]
    save: Callable[..., Path]
    made_by: str
    what: str
    matches: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        return f"--{self.name}"

    def needed_by(self, users: str) -> str:
        """The message when a method needs this kind and none was passed."""
        return f"method {users} needs {self.option} (a {self.what} from featx {self.made_by})"


def _load_bundle(path, device=None):
    bundle = read_bundle(path)
    return bundle, bundle.attrs


def _load_svm(path, device=None):
    weights, biases, attrs = load_svm(path)
    return (weights, biases), attrs


# Every kind of model file, registered once: encode's methods name what they need from here
# (``featx.methods.method(needs=...)``), the CLI and the API read them through it.
MODEL_KINDS: dict[str, ModelKind] = {k.name: k for k in (
    ModelKind("pca", load_pca, save_pca, "fit-pca", "PCA", ("backbone", "weights", "input_size")),
    ModelKind("gmm", load_gmm, save_gmm, "fit-gmm", "GMM", ("backbone", "weights", "input_size")),
    ModelKind("guidance", load_guidance, save_guidance, "fit-guidance", "guidance layer",
              ("backbone", "weights", "input_size")),
    ModelKind("svm", _load_svm, save_svm, "train-svm", "SVM"),
    ModelKind(CLASSIFIER, _load_bundle, save_bundle, "export", "classifier bundle"),
)}


def model_kind(path: str | Path) -> str:
    """The ``kind`` attribute of a featx model file (refusing what is not one)."""
    _readable(path, "model")
    try:
        with h5py.File(path, "r") as f:
            kind = f.attrs.get("kind")
            kind = kind.decode() if isinstance(kind, bytes) else kind
    except OSError as exc:
        raise InputError(f"cannot read model file {path}: {_why(exc)}") from None
    if kind not in MODEL_KINDS:
        raise InputError(f"{path} is not a featx model file (kind={kind!r}; models: "
                         f"{', '.join(MODEL_KINDS)})")
    return kind


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[Any, dict[str, Any]]:
    """(model, attributes) of a model file of any registered kind; an SVM is (weights,
    biases)."""
    return MODEL_KINDS[model_kind(path)].load(path, device)
