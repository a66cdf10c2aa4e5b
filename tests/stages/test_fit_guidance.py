"""fit-guidance trains what featx.fit.fit_guidance trains on the same region features."""

from __future__ import annotations

import numpy as np

from featx.fit import fit_guidance
from featx.io import load_guidance, load_pca
from featx.sampling import region_features
from featx.stages import fit_guidance as guidance_stage
from featx.stages.fit_guidance import FitGuidanceConfig


def test_fit_guidance_is_the_guidance_trained_on_the_region_features(labelled, tmp_path):
    cfg = FitGuidanceConfig(pca=str(labelled.pyr_pca), channels=4, epochs=3, device="cpu")
    [path] = guidance_stage.run(labelled.pyr, tmp_path / "g.h5", cfg)
    got, attrs = load_guidance(path)
    pca, _ = load_pca(labelled.pyr_pca)
    ids, scales, labels = region_features(labelled.pyr, "fc7", None, pca.transform)
    want = fit_guidance(scales, labels, 3, channels=4, kernel=1, epochs=3, batch_size=32,
                        lr=1e-2, weight_decay=1e-4, holdout=0.2, patience=5, seed=0,
                        device="cpu")
    assert attrs["n_images"] == len(ids) == 12 and got.curve == want.curve
    np.testing.assert_allclose(got.weight.numpy(), want.weight.numpy(), atol=1e-6)
    np.testing.assert_allclose(got.bias.numpy(), want.bias.numpy(), atol=1e-6)
