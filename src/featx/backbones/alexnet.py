"""AlexNet: torchvision's (the "one weird trick" variant, conv4 256 channels) and the Caffe
network of the papers (conv4 384 channels, grouped convolutions, LRN, BGR input)."""

from __future__ import annotations

import torch
import torchvision.models as tvm
from torch import nn

from featx.backbones.registry import backbone, torchvision_preprocessing, torchvision_weights


_ALEXNET_LAYERS = {
    "conv1": "features.1", "conv2": "features.4", "conv3": "features.7",
    "conv4": "features.9", "conv5": "features.11", "pool5": "features.12",
    "fc6": "classifier.2", "fc7": "classifier.5",
    "logits": "classifier.6",
}
_ALEXNET_KERNELS = {"conv1": 11, "conv2": 5, "conv3": 3, "conv4": 3, "conv5": 3}


@backbone(
    "alexnet",
    layers=_ALEXNET_LAYERS,
    kernels=_ALEXNET_KERNELS,
    imagenet=torchvision_weights(tvm.AlexNet_Weights.IMAGENET1K_V1),
    # mean, std, interpolation and the 256 resize from the weights' transforms(); the input is
    # the papers' 227 (Caffe's crop of 256), not torchvision's 224: both give 13x13 conv maps
    **{**torchvision_preprocessing(tvm.AlexNet_Weights.IMAGENET1K_V1), "input_size": 227},
    preprocessing="torchvision AlexNet_Weights.IMAGENET1K_V1.transforms(), input 227 as in the "
                  "papers (torchvision: 224)",
    cross_layer=("conv4", "conv5"),
    fc_conv=("pool5", {"fc6": ("classifier.1", 256, 6, True), "fc7": ("classifier.4", 4096, 1, True)}),
)
def _alexnet() -> nn.Module:
    return tvm.alexnet()


class CaffeAlexNet(nn.Module):
    """The Caffe AlexNet of the papers (grouped conv2/4/5, LRN); weights come from a file.

    Module names match torchvision's AlexNet where the layers correspond, so the layer aliases
    are the same; ``features.*`` indices shift because of the two LRN layers.
    """

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(inplace=True), lrn(), nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(inplace=True), lrn(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@backbone(
    "alexnet_caffe",
    input_size=227,
    layers={
        "conv1": "features.1", "conv2": "features.5", "conv3": "features.9",
        "conv4": "features.11", "conv5": "features.13", "pool5": "features.14", "fc6": "classifier.2",
        "fc7": "classifier.5", "logits": "classifier.6",
    },
    kernels=_ALEXNET_KERNELS,
    # Caffe's preprocessing: BGR, 0..255, minus the ImageNet mean pixel.
    mean=(123.68 / 255, 116.779 / 255, 103.939 / 255),
    std=(1 / 255, 1 / 255, 1 / 255),
    bgr=True,
    preprocessing="Caffe's (the papers'): BGR, 0..255 minus the mean pixel, 227 crop of 256",
    cross_layer=("conv4", "conv5"),
    fc_conv=("pool5", {"fc6": ("classifier.1", 256, 6, True), "fc7": ("classifier.4", 4096, 1, True)}),
)
def _alexnet_caffe() -> nn.Module:
    return CaffeAlexNet()
