"""Local features: subarrays against manual slicing; the backbones' default local features."""

from __future__ import annotations

import pytest
import torch

from featx.backbones import get_backbone
from featx.encoders import LocalSpec
from featx.errors import InputError


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
    assert get_backbone("alexnet").default_local("conv4") == "subarray:3x3"
    assert get_backbone("efficientnet_lite0").default_local("stage6") == "subarray:3x3"
    assert get_backbone("efficientnet_lite0").default_local("stage4") == "dense"
    assert get_backbone("alexnet").default_local("fc7") == "dense"
