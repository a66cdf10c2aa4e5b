"""fit-pca fits what the pure PCA fits on the same seeded sample of local features."""

from __future__ import annotations

import numpy as np

from featx.encoders import LocalSpec
from featx.fit import PCA
from featx.io import load_pca
from featx.sampling import sample_local_features


def test_fit_pca_is_the_pca_of_the_seeded_sample(labelled):
    got, attrs = load_pca(labelled.pca)
    x = sample_local_features(labelled.grid, "conv4", "blocks", LocalSpec.parse("subarray:3x3"),
                              20, 0)
    want = PCA(n_components=16, device="cpu").fit(x)
    assert attrs["local"] == "subarray:3x3" and attrs["input_dim"] == x.shape[1]
    np.testing.assert_allclose(np.asarray(got.mean_), np.asarray(want.mean_), atol=1e-6)
    np.testing.assert_allclose(np.asarray(got.components_), np.asarray(want.components_),
                               atol=1e-5)
