"""fit-gmm fits what the pure GaussianMixture fits on the same PCA-projected sample."""

from __future__ import annotations

import numpy as np

from featx.encoders import LocalSpec
from featx.fit import GaussianMixture
from featx.io import load_gmm, load_pca
from featx.sampling import sample_local_features
from featx.stages import fit_gmm as gmm_stage
from featx.stages.fit_gmm import FitGMMConfig


def test_fit_gmm_is_the_gmm_of_the_projected_sample(labelled, tmp_path):
    [path] = gmm_stage.run(labelled.pyr, tmp_path / "gmm.h5", FitGMMConfig(
        pca=str(labelled.pyr_pca), components=3, per_image=25, device="cpu"))
    got, attrs = load_gmm(path)
    pca, _ = load_pca(labelled.pyr_pca)
    x = sample_local_features(labelled.pyr, "fc7", "pyramid", LocalSpec.parse("dense"), 25, 0,
                              transform=pca.transform)
    want = GaussianMixture(n_components=3, random_state=0, device="cpu").fit(x)
    assert attrs["n_samples"] == x.shape[0] and got.n_iter_ == want.n_iter_
    for name in ("means_", "variances_", "priors_"):
        np.testing.assert_allclose(np.asarray(getattr(got, name)),
                                   np.asarray(getattr(want, name)), rtol=1e-5, atol=1e-6)
