"""``featx.ImageFeatures``: featx's encodings as a scikit-learn transformer on image paths.

    pipe = Pipeline([("f", ImageFeatures(method="cross-layer", dim=64, cache="work/cache")),
                     ("clf", LogisticRegression(max_iter=1000))])
    GridSearchCV(pipe, {"f__dim": [32, 64]}, cv=3).fit(paths, labels)

``fit(paths)`` extracts the backbone's activations of the photos and fits the PCA the method
needs on them (:func:`featx.fit_pca`); ``transform(paths)`` extracts and encodes
(:func:`featx.encode`) and returns the (N, d) float32 encodings in the order of ``paths``.
Every step is featx's own stage, so the numbers are the command line's. With ``cache`` (a
folder) the activations of a list of photos, the PCAs and the encodings are kept under a
digest of what made them: a grid search over ``dim`` or ``C`` extracts each fold's photos
once. Without it each call works in a scratch folder of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from featx import api
from featx.errors import InputError


class ImageFeatures(TransformerMixin, BaseEstimator):
    """Image paths -> featx encodings (see the module doc). ``method``: encode methods that
    need at most a PCA (cross-layer, cross-layer's local poolings, the fc baselines);
    ``dim`` the PCA's size (None: the backbone's); the rest as :func:`featx.extract`,
    :func:`featx.fit_pca` and :func:`featx.encode` take them."""

    def __init__(self, backbone: str = "efficientnet_lite0", layers: Any = None,
                 views: Any = "whole", method: Any = "cross-layer", dim: int | None = None,
                 per_image: int = 100, weights: str = "imagenet",
                 input_size: int | None = None, cache: str | None = None,
                 device: str = "auto", batch_size: int = 64, workers: int | None = None,
                 seed: int = 0, verbose: bool = False):
        self.backbone, self.layers, self.views, self.method = backbone, layers, views, method
        self.dim, self.per_image, self.weights, self.input_size = dim, per_image, weights, \
            input_size
        self.cache, self.device, self.batch_size, self.workers = cache, device, batch_size, \
            workers
        self.seed, self.verbose = seed, verbose

    # --- scikit-learn ----------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> ImageFeatures:
        from featx.methods import get_methods

        paths = _paths(X)
        methods = get_methods(api._split(self.method) or ())
        needs = set().union(*(m.needs for m in methods))
        if needs - {"pca"}:
            raise InputError(f"ImageFeatures takes methods that need at most a PCA; "
                             f"{', '.join(m.name for m in methods if m.needs - {'pca'})} "
                             "needs a GMM or a guidance: run featx's stages for it")
        work = self._work()
        acts = self._activations(paths, work)
        self.pca_ = None
        if "pca" in needs:
            layers = api._split(self.layers)
            key = _key(acts, self.dim, layers[0] if layers else None, self.per_image, self.seed)
            target = work / f"pca-{key}.h5"  # a model file is whole or absent: reused
            self.pca_ = str(target if target.is_file() else api.fit_pca(
                acts, target, layer=layers[0] if layers else None, dim=self.dim,
                per_image=self.per_image, seed=self.seed, device=self.device,
                verbose=self.verbose))
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "pca_")
        paths = _paths(X)
        work = self._work()
        acts = self._activations(paths, work)
        key = _key(acts, self.pca_ and Path(self.pca_).name, self.method, self.views)
        enc = api.encode(acts, work / f"enc-{key}", method=self.method, views=self.views,
                         pca=self.pca_, device=self.device, verbose=self.verbose)
        return _rows(acts, enc, paths)

    # --- the work --------------------------------------------------------------------------
    def _work(self) -> Path:
        """The cache folder, or a scratch folder of this estimator's own."""
        if self.cache is not None:
            Path(self.cache).mkdir(parents=True, exist_ok=True)
            return Path(self.cache)
        if getattr(self, "_scratch", None) is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="featx-features-")
        return Path(self._scratch.name)

    def _activations(self, paths: list[str], work: Path) -> list[Path]:
        settings = dict(backbone=self.backbone, layers=self.layers, views=self.views,
                        weights=self.weights, input_size=self.input_size, seed=self.seed)
        key = _key(settings, [os.path.abspath(p) for p in paths])
        return api.extract(paths, work / f"acts-{key}", batch_size=self.batch_size,
                           device=self.device, workers=self.workers, verbose=self.verbose,
                           **{k: v for k, v in settings.items() if v is not None})

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_scratch", None)  # a scratch folder is this process's
        return state


def _paths(X: Any) -> list[str]:
    """The image paths of ``X``: a list, tuple or 1-d array of str / os.PathLike."""
    if isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise InputError(f"X must be image paths (one a row), got an array of shape {X.shape}")
        X = list(X)
    if isinstance(X, (str, os.PathLike)) or not isinstance(X, (list, tuple)):
        raise InputError(f"X must be a list of image paths, got {type(X).__name__}")
    bad = next((x for x in X if not isinstance(x, (str, os.PathLike)) or isinstance(x, bytes)),
               None)
    if bad is not None or not X:
        raise InputError(f"X must be a non-empty list of image paths; it holds {bad!r}"
                         if X else "X is empty")
    return [str(x) for x in X]


def _key(*parts: Any) -> str:
    """A digest of what made an output (its folder's name in the cache)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _rows(acts: list[Path], enc: list[Path], paths: list[str]) -> np.ndarray:
    """The encodings of ``paths``, in their order (each encoding shard holds the images of
    the activation shard of its name, which records their files)."""
    from featx.io import ActivationShard, EncodingShard

    by_path: dict[str, np.ndarray] = {}
    names = {p.name: p for p in enc}
    for a in acts:
        with ActivationShard(a) as shard:
            files, ids = shard.paths, shard.ids
        with EncodingShard(names[a.name]) as shard:
            rows = dict(zip(shard.ids, shard.encodings()))
        by_path.update((f, rows[i]) for f, i in zip(files, ids))
    return np.stack([by_path[os.path.abspath(p)] for p in paths])
