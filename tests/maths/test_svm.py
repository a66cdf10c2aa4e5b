"""featx.svm: separable data, agreement with scikit-learn, the VOC 'difficult' rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.svm import LinearSVC

from featx.errors import InputError
from featx.svm import gram, scores, train_ovr


def test_gram_is_x_xt():
    x = np.random.default_rng(0).normal(size=(30, 40000)).astype(np.float32)
    np.testing.assert_allclose(gram(x, __import__("torch").device("cpu")),
                               x.astype(np.float64) @ x.T.astype(np.float64), rtol=1e-5,
                               atol=1e-2)


def test_separates_linearly_separable_classes():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 500)) * 3
    y = rng.integers(0, 3, 300)
    x = (centres[y] + rng.normal(size=(300, 500))).astype(np.float32)
    w, b = train_ovr(x, y, 3, c=1.0)
    assert (scores(x, w, b).argmax(1) == y).all()
    test_y = rng.integers(0, 3, 100)
    test_x = (centres[test_y] + rng.normal(size=(100, 500))).astype(np.float32)
    assert (scores(test_x, w, b).argmax(1) == test_y).mean() > 0.95


def test_ranking_matches_linearsvc():
    rng = np.random.default_rng(0)
    w_true = rng.normal(size=(2, 200))
    x = rng.normal(size=(1500, 200)).astype(np.float32)
    y = np.argmax(x @ w_true.T + rng.normal(size=(1500, 2)) * 8, 1)
    w, b = train_ovr(x, y, 2, c=0.1)
    ours = scores(x, w, b)
    for c in range(2):
        ref = LinearSVC(C=0.1, loss="hinge", dual=True, max_iter=20_000, tol=1e-5,
                        intercept_scaling=100).fit(x, np.where(y == c, 1, -1)).decision_function(x)
        assert spearmanr(ours[:, c], ref)[0] > 0.99


def test_difficult_images_are_left_out_by_default():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 30)).astype(np.float32)
    labels = rng.choice([1, -1], size=(60, 2))
    labels[:10, 0] = 0
    w, b = train_ovr(x, labels, 2)
    w_ref, b_ref = train_ovr(x[10:], labels[10:, :1], 1)
    np.testing.assert_allclose(w[0], w_ref[0], atol=1e-4)
    w_inc, _ = train_ovr(x, labels, 2, include_difficult=True)
    assert not np.allclose(w_inc[0], w[0], atol=1e-4)
    with pytest.raises(InputError, match="no positive"):
        train_ovr(x, -np.ones((60, 1), int), 1)
