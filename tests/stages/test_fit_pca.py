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


def test_fit_pca_defaults_to_the_backbones_local_layer(labelled, tmp_path):
    """Issue 28.6: as extract and encode default to the cross-layer pair, fit-pca defaults to
    its local layer (conv4 for AlexNet): the same PCA as with --layer conv4."""
    from featx.stages import fit_pca
    from featx.stages.fit_pca import FitPCAConfig

    [path] = fit_pca.run(labelled.grid, tmp_path / "pca.h5",
                         FitPCAConfig(view="blocks", dim=16, per_image=20, device="cpu"))
    got, attrs = load_pca(path)
    want, _ = load_pca(labelled.pca)
    assert attrs["layer"] == "conv4"
    np.testing.assert_array_equal(np.asarray(got.components_), np.asarray(want.components_))
