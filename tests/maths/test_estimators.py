"""featx.fit's estimators are scikit-learn estimators: check_estimator passes, random_state
takes what scikit-learn's does."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import check_estimator

from featx.fit import PCA, GaussianMixture


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
@pytest.mark.parametrize("estimator", [PCA(n_components=2, random_state=0),
                                       GaussianMixture(n_components=2, random_state=0)],
                         ids=["PCA", "GaussianMixture"])
def test_check_estimator(estimator):
    # no exclusions: every check scikit-learn runs passes (check_array_api_input skips itself
    # where array_api_compat is not installed)
    check_estimator(estimator)


def test_random_state_takes_ints_generators_and_none():
    x = np.random.default_rng(0).normal(size=(400, 3))
    a = GaussianMixture(n_components=3, random_state=5).fit(x)
    b = clone(a).fit(x)
    np.testing.assert_array_equal(a.means_.numpy(), b.means_.numpy())
    GaussianMixture(n_components=3, random_state=np.random.default_rng(1)).fit(x)
    GaussianMixture(n_components=3, random_state=None).fit(x)


def test_pca_in_a_pipeline():
    """In a Pipeline the PCA transforms as it does alone, and as scikit-learn's PCA (up to
    each component's sign): the pipeline passes the data through, nothing else."""
    from sklearn.decomposition import PCA as SkPCA

    x = np.random.default_rng(0).normal(size=(200, 6)) * [5, 4, 3, 2, 1, 0.5]
    y = make_pipeline(PCA(n_components=3)).fit_transform(x)
    alone = PCA(n_components=3).fit(x).transform(x)
    ref = SkPCA(n_components=3).fit_transform(x)
    assert y.shape == (200, 3) and y.dtype == np.float64
    np.testing.assert_allclose(y, alone, atol=1e-12)
    # featx computes in float32 (tests/maths/test_fit.py): agreement to float32 rounding
    np.testing.assert_allclose(y * np.sign(y[0]), ref * np.sign(ref[0]), atol=1e-5)
