"""VGG-16 (torchvision)."""

from __future__ import annotations

import torchvision.models as tvm
from torch import nn

from featx.backbones.registry import backbone, torchvision_preprocessing, torchvision_weights


@backbone(
    "vgg16",
    **torchvision_preprocessing(tvm.VGG16_Weights.IMAGENET1K_V1),
    preprocessing="torchvision VGG16_Weights.IMAGENET1K_V1.transforms()",
    layers={
        "conv4_3": "features.22", "conv5_1": "features.25", "conv5_2": "features.27",
        "conv5_3": "features.29", "pool5": "features.30", "fc6": "classifier.1", "fc7": "classifier.4",
        "logits": "classifier.6",
    },
    kernels={"conv4_3": 3, "conv5_1": 3, "conv5_2": 3, "conv5_3": 3},
    imagenet=torchvision_weights(tvm.VGG16_Weights.IMAGENET1K_V1),
    cross_layer=("conv5_2", "conv5_3"),
    fc_conv=("pool5", {"fc6": ("classifier.0", 512, 7, True), "fc7": ("classifier.3", 4096, 1, True)}),
)
def _vgg16() -> nn.Module:
    return tvm.vgg16()
