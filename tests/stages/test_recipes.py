"""docs/architecture.md's two recipes, followed end to end: a method and a backbone added by
registration alone (here inside the test, removed afterwards) run through the stages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.models as tvm

from featx.backbones import BACKBONES, ActivationExtractor, get_backbone, layer_shapes
from featx.backbones.registry import backbone
from featx.images import folder_source
from featx.methods import METHODS, Context, method
from featx.stages import encode, extract, fit_pca
from featx.stages.encode import EncodeConfig
from featx.stages.extract import ExtractConfig
from featx.stages.fit_pca import FitPCAConfig
from tests.conftest import read_encodings


@pytest.fixture
def resnet18():
    @backbone("test_resnet18", input_size=96,
              layers={"layer3": "layer3", "layer4": "layer4", "pool": "avgpool", "logits": "fc"},
              kernels={"layer3": 3, "layer4": 3}, cross_layer=("layer3", "layer4"))
    def _resnet18():
        return tvm.resnet18()

    yield get_backbone("test_resnet18")
    BACKBONES.pop("test_resnet18")


@pytest.fixture
def mean_method():
    @method("test-mean", reads=("local",), needs=("pca",))
    def mean_pool(ctx: Context, local):
        maps = ctx.project(local.flatten(0, 1))
        return maps.flatten(2).mean(2).view(local.shape[0], -1, maps.shape[1]).mean(1)

    yield METHODS["test-mean"]
    METHODS.pop("test-mean")


def test_a_registered_backbone_and_method_run_through_the_stages(resnet18, mean_method,
                                                                  make_images, tmp_path):
    shapes = layer_shapes(resnet18)
    with torch.no_grad():
        real = ActivationExtractor(tvm.resnet18().eval(), resnet18, ["layer3", "layer4"])(
            torch.zeros(1, 3, 96, 96))
    assert shapes["layer3"] == tuple(real["layer3"].shape[1:]) == (256, 6, 6)
    assert shapes["layer4"] == tuple(real["layer4"].shape[1:]) == (512, 3, 3)

    acts = list(extract.run(folder_source(make_images(4)), tmp_path / "acts",
                            ExtractConfig(backbone="test_resnet18", weights="none", workers=0)))
    [pca] = fit_pca.run(acts, tmp_path / "pca.h5",
                        FitPCAConfig(layer="layer3", dim=8, per_image=4, device="cpu"))
    cfg = EncodeConfig(methods=("cross-layer", "test-mean"), pca=str(pca), device="cpu")
    [enc] = encode.run(acts, tmp_path / "enc", cfg)
    _, x, _, attrs = read_encodings(enc)
    # layer3 6x6 under layer4 3x3 (stride 2): 3x3 subarrays centred on 2x2 units
    assert [b["dim"] for b in attrs["blocks"]] == [8 * 512, 8]
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, rtol=1e-5)
