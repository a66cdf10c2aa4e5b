"""featx.ImageFeatures: a scikit-learn transformer on image paths whose numbers are the
stages' (extract -> fit-pca -> encode), that clones, takes set_params, and runs in a
Pipeline under GridSearchCV with its activations cached."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

import featx
from featx.errors import InputError
from featx.io import ActivationShard, EncodingShard
from tests.conftest import class_folders

SMALL = dict(backbone="alexnet", weights="none", input_size=96, views="whole", dim=4,
             per_image=20, workers=0, device="cpu")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = class_folders(tmp_path_factory.mktemp("photos") / "img", ["a", "b"], 6, (80, 64))
    paths = sorted(str(p) for p in root.rglob("*.png"))
    return paths, [os.path.basename(os.path.dirname(p)) for p in paths]


def _direct(paths, tmp_path, method):
    """The same features through the stages themselves, in the order of ``paths``."""
    tmp_path = tmp_path / method
    acts = featx.extract(paths, tmp_path / "acts", backbone="alexnet", weights="none",
                         input_size=96, workers=0, device="cpu", verbose=False)
    pca = featx.fit_pca(acts, tmp_path / "pca.h5", layer="conv4", dim=4, per_image=20,
                        device="cpu", verbose=False)
    enc = featx.encode(acts, tmp_path / f"enc-{method}", method=method, pca=pca, device="cpu",
                       verbose=False)
    rows = {}
    for a, e in zip(acts, enc):
        with ActivationShard(a) as sa, EncodingShard(e) as se:
            rows.update(zip(sa.paths, se.encodings()))
    return np.stack([rows[os.path.abspath(p)] for p in paths])


def test_its_features_are_the_stages(photos, tmp_path):
    paths, _ = photos
    f = featx.ImageFeatures(**SMALL, layers="conv4,conv5")
    x = f.fit(paths).transform(paths[::-1])  # any order: rows follow the paths given
    assert np.array_equal(x, _direct(paths, tmp_path, "cross-layer")[::-1])
    # a swapped method gives other numbers: the method reaches the encoding
    other = featx.ImageFeatures(**{**SMALL, "method": "max"}).fit(paths).transform(paths)
    assert not np.array_equal(other[:, :x.shape[1]] if other.shape[1] >= x.shape[1] else other,
                              x[:, :other.shape[1]])
    assert np.array_equal(other, _direct(paths, tmp_path, "max"))


def test_it_clones_and_takes_set_params(photos):
    f = featx.ImageFeatures(**SMALL)
    g = clone(f).set_params(dim=2)
    assert g.get_params()["dim"] == 2 and f.get_params()["dim"] == 4
    assert {k: v for k, v in g.get_params().items() if k != "dim"} == \
        {k: v for k, v in f.get_params().items() if k != "dim"}
    with pytest.raises(InputError, match="needs a GMM"):
        featx.ImageFeatures(**{**SMALL, "method": "fisher"}).fit(photos[0])
    with pytest.raises(InputError, match="list of image paths"):
        featx.ImageFeatures(**SMALL).fit("photos/")


def test_a_grid_search_runs_on_images_and_reuses_the_cache(photos, tmp_path):
    paths, labels = photos
    pipe = Pipeline([("f", featx.ImageFeatures(**SMALL, cache=str(tmp_path / "cache"))),
                     ("clf", LogisticRegression(max_iter=500))])
    search = GridSearchCV(pipe, {"f__dim": [2, 4]}, cv=2).fit(paths, labels)
    assert search.best_params_["f__dim"] in (2, 4)
    assert search.predict(paths).shape == (len(paths),)
    # a PCA for each dim and fold, and the refit's of the best dim
    assert len(list((tmp_path / "cache").glob("pca-*"))) == 2 * 2 + 1
    # the two folds' photo sets (each the other's held-out set) and the refit's: three
    # extractions for four grid fits, four transforms and the refit
    assert len(list((tmp_path / "cache").glob("acts-*"))) == 3
