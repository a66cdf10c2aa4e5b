"""The backbone registry: a frozen :class:`Backbone` per name, filled by the :func:`backbone`
decorator around a function that builds the architecture with random weights."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from featx.configs import BACKBONES as CURATED
from featx.errors import LayerError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, eq=False)
class Backbone:
    """A registered CNN.

    ``layers`` maps each alias to the dotted path of the module whose output is that layer;
    ``kernels`` gives, for conv layers, the spatial kernel of the layer's own convolution (the
    m x n of a cross-layer subarray when this layer is the guidance, Liu et al. §3.2).
    ``mean``/``std`` apply to RGB in [0, 1]; ``bgr`` feeds channels in BGR order (Caffe).
    ``mean``, ``std``, ``interpolation``, ``jitter_size`` (the resize before a centre or
    jitter crop) and ``input_size`` come from the weights' own config (torchvision's
    ``weights.transforms()``, timm's ``pretrained_cfg``) except where the papers' protocol
    says otherwise; ``preprocessing`` says where they come from.
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
    # fully convolutional FC layers for the pyramid view: the layer whose map feeds them, then
    # alias -> (path of the nn.Linear, its input as (channels, kernel), ReLU after it)
    fc_conv: tuple[str, Mapping[str, tuple[str, int, int, bool]]] | None = None
    interpolation: str = "bilinear"  # of the resize to the input size (antialiased)
    jitter_size: int = 256
    preprocessing: str = ""
    description: str = ""
    # fit-pca's default --dim: Liu et al.'s 500 (AlexNet, VGG), or what was measured for the
    # backbone (efficientnet_lite0: 128, docs/reproduce.md "Cross-layer PCA dimension")
    pca_dim: int = 500

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

    def default_layers(self) -> list[str]:
        """What ``featx extract`` reads when no --layers are given: the cross-layer pair."""
        return list(self.cross_layer or list(self.layers)[-1:])

    def guide_for(self, local: str) -> str | None:
        """The default guidance layer (t+1) of local layer t, when this backbone has one."""
        return self.cross_layer[1] if self.cross_layer and self.cross_layer[0] == local else None

    def default_local(self, layer: str) -> str:
        """The local features fit-pca takes from ``layer``: m x m subarrays (m the guidance
        layer's kernel) for the local layer of the cross-layer pair, else dense vectors."""
        guide = self.guide_for(layer)
        if guide is None:
            return "dense"
        k = self.kernels[guide]
        return f"subarray:{k}x{k}"


BACKBONES: dict[str, Backbone] = {}


def backbone(name: str, **spec) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Register the decorated architecture builder as backbone ``name``."""

    def register(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in BACKBONES:
            raise ValueError(f"backbone {name!r} is registered twice")
        # a curated entry's description is said once, in featx.configs.BACKBONES (what
        # `featx layers` lists without loading torch; tests/test_architecture.py checks it)
        spec.setdefault("description", CURATED.get(name, (0, ""))[1])
        BACKBONES[name] = Backbone(name=name, build=build, **spec)
        return build

    return register


def torchvision_preprocessing(weights_enum) -> dict:
    """The preprocessing the torchvision weights were trained and evaluated with, from their
    own ``transforms()``: crop (input) size, resize size (the jitter/centre square), mean,
    std and interpolation, as :class:`Backbone` fields."""
    t = weights_enum.transforms()
    return {"input_size": int(t.crop_size[0]), "jitter_size": int(t.resize_size[0]),
            "mean": tuple(float(m) for m in t.mean), "std": tuple(float(s) for s in t.std),
            "interpolation": t.interpolation.value}


def timm_preprocessing(cfg: Mapping) -> dict:
    """The same from a timm ``pretrained_cfg``: input size, resize size (input / crop_pct),
    mean, std and interpolation."""
    size = int(cfg["input_size"][-1])
    return {"input_size": size, "jitter_size": round(size / cfg.get("crop_pct", 0.875)),
            "mean": tuple(float(m) for m in cfg["mean"]),
            "std": tuple(float(s) for s in cfg["std"]),
            "interpolation": cfg.get("interpolation") or "bilinear"}


def torchvision_weights(weights_enum) -> Callable[[], Mapping[str, torch.Tensor]]:
    def load() -> Mapping[str, torch.Tensor]:
        return weights_enum.get_state_dict(progress=False, check_hash=False)

    load.source = weights_enum.url  # type: ignore[attr-defined]
    return load


