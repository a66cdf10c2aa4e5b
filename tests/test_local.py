"""Local features: subarrays against manual slicing, and seeded sampling from shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featx.errors import InputError
from featx.extract import ExtractConfig, extract_shards
from featx.images import folder_source
from featx.local import LocalSpec, default_local, sample_local_features


def test_subarrays_equal_manual_slicing_on_alexnet_maps():
    x = torch.randn(2, 256, 13, 13)
    local = LocalSpec.parse("subarray:3x3").extract(x)
    assert local.shape == (2, 121, 2304)  # 11 x 11 positions, boundary units omitted
    for b in range(2):
        for i in range(11):
            for j in range(11):
                manual = x[b, :, i:i + 3, j:j + 3].reshape(-1)  # channel-major (c, di, dj)
                assert torch.equal(local[b, i * 11 + j], manual)


def test_rectangular_subarrays_and_dense():
    x = torch.randn(1, 4, 5, 7)
    local = LocalSpec.parse("subarray:2x3").extract(x)
    assert local.shape == (1, 4 * 5, 24)
    assert torch.equal(local[0, 1 * 5 + 2], x[0, :, 1:3, 2:5].reshape(-1))
    dense = LocalSpec.parse("dense").extract(x)
    assert dense.shape == (1, 35, 4) and torch.equal(dense[0, 7 + 3], x[0, :, 1, 3])
    assert LocalSpec.parse("dense").extract(torch.randn(3, 10)).shape == (3, 1, 10)
    with pytest.raises(InputError, match="do not fit a 5x7 map"):
        LocalSpec.parse("subarray:6x6").extract(x)
    with pytest.raises(InputError, match="unknown local features"):
        LocalSpec.parse("patches")


def test_default_local_follows_the_cross_layer_pair():
    assert str(default_local("alexnet", "conv4")) == "subarray:3x3"
    assert str(default_local("efficientnet_lite0", "stage4")) == "subarray:5x5"
    assert str(default_local("alexnet", "fc7")) == "dense"


def test_sampling_is_seeded_per_image_not_per_shard(make_images, tmp_path):
    images = make_images(5)
    paths = {}
    for size in (2, 10):
        cfg = ExtractConfig(weights="none", layers=["conv5"], workers=0, shard_size=size,
                            show_progress=False, views=["whole", "blocks:2x2"])
        paths[size] = extract_shards(folder_source(images), tmp_path / f"s{size}", cfg)
    spec = LocalSpec.parse("subarray:3x3")
    a = sample_local_features(paths[2], "conv5", "blocks", spec, 30, seed=1)
    b = sample_local_features(paths[10], "conv5", "blocks", spec, 30, seed=1)
    c = sample_local_features(paths[10], "conv5", "blocks", spec, 30, seed=2)
    assert a.shape == (5 * 30, 2304) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # more than an image has: all of its 4 blocks x 121 local features
    assert sample_local_features(paths[10], "conv5", "blocks", spec, 10_000).shape == (5 * 484, 2304)
