"""Seeded sampling of local features from activation shards (featx.sampling)."""

from __future__ import annotations

import numpy as np

from featx.encoders import LocalSpec
from featx.images import folder_source
from featx.sampling import sample_local_features
from featx.stages import extract
from featx.stages.extract import ExtractConfig


def test_sampling_is_seeded_per_image_not_per_shard(make_images, tmp_path):
    images = make_images(5)
    paths = {}
    for size in (2, 10):
        cfg = ExtractConfig(weights="none", layers=["conv5"], workers=0, shard_size=size,
                            views=("whole", "blocks:2x2"))
        paths[size] = list(extract.run(folder_source(images), tmp_path / f"s{size}", cfg))
    spec = LocalSpec.parse("subarray:3x3")
    a = sample_local_features(paths[2], "conv5", "blocks", spec, 30, seed=1)
    b = sample_local_features(paths[10], "conv5", "blocks", spec, 30, seed=1)
    c = sample_local_features(paths[10], "conv5", "blocks", spec, 30, seed=2)
    assert a.shape == (5 * 30, 2304) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # more than an image has: all of its 4 blocks x 121 local features
    assert sample_local_features(paths[10], "conv5", "blocks", spec, 10_000).shape == (5 * 484, 2304)
