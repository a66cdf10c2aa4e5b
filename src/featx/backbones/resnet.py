"""ResNet-50 (torchvision): stage outputs as layers."""

from __future__ import annotations

import torchvision.models as tvm
from torch import nn

from featx.backbones.registry import backbone, torchvision_preprocessing, torchvision_weights


@backbone(
    "resnet50",
    **torchvision_preprocessing(tvm.ResNet50_Weights.IMAGENET1K_V2),  # resize 232, not 256
    preprocessing="torchvision ResNet50_Weights.IMAGENET1K_V2.transforms()",
    layers={"layer1": "layer1", "layer2": "layer2", "layer3": "layer3", "layer4": "layer4",
            "pool": "avgpool", "logits": "fc"},
    # A stage's first bottleneck has a 3x3 conv (stride 2 from layer2 on).
    kernels={"layer1": 3, "layer2": 3, "layer3": 3, "layer4": 3},
    imagenet=torchvision_weights(tvm.ResNet50_Weights.IMAGENET1K_V2),
    cross_layer=("layer3", "layer4"),
    fc_conv=("layer4", {"logits": ("fc", 2048, 1, False)}),  # pooling + linear: dense logits
)
def _resnet50() -> nn.Module:
    return tvm.resnet50()
