"""The backbones by name: the curated entries (registered by their modules) and any
``torchvision:NAME`` / ``timm:NAME``, resolved (:mod:`featx.backbones.named`) and kept on first
use. Apart from the registry so that the registry imports none of its users."""

from __future__ import annotations

from featx.backbones.named import resolve
from featx.backbones.registry import BACKBONES, Backbone
from featx.errors import LayerError


def get_backbone(name: str) -> Backbone:
    """A curated entry by name, or ``torchvision:NAME`` / ``timm:NAME`` made on first use."""
    if name not in BACKBONES and ":" in name:
        BACKBONES[name] = resolve(name)
    try:
        return BACKBONES[name]
    except KeyError:
        curated = [n for n in BACKBONES if ":" not in n]
        raise LayerError(f"unknown backbone {name!r}; valid: {', '.join(curated)}, or "
                         "torchvision:NAME / timm:NAME for any model of those libraries") from None
