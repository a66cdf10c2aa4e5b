"""Folding eval-mode BatchNorm into the convolution before it: inference only, the same
function with one memory pass less per convolution.

Pairs are found by running the architecture once on the meta device (no computation): a
BatchNorm whose input is exactly the output of a convolution, and the only module that reads
it. Then w' = w * gamma / sqrt(var + eps) per output channel, b' = (b - mean) * gamma /
sqrt(var + eps) + beta, and the BatchNorm is replaced by what follows it inside it (timm's
``BatchNormAct2d`` keeps its activation) or by an identity.

Not ``torch.nn.utils.fusion.fuse_conv_bn_weights`` for the arithmetic: it differs by rounding
(1.7e-7 of a layer's weights, benchmarks/libraries.py) and would move every committed
activation's low bits; finding the pairs, which torch does not do, is most of this module.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
from torch import nn

from featx.backbones.features import meta_forward


def _pairs(build: Callable[[], nn.Module], input_size: int) -> list[tuple[str, str]]:
    with torch.device("meta"):
        net = build().eval()
    produced: list[tuple[torch.Tensor, str]] = []  # kept alive: ids of freed tensors recur
    read: Counter = Counter()
    inputs: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(
                lambda m, a, out, name=name: produced.append((out, name))))
        if not list(module.children()) or isinstance(module, nn.BatchNorm2d):
            def pre(m, args, name=name):
                if args and isinstance(args[0], torch.Tensor):
                    read[id(args[0])] += 1
                    inputs[name] = args[0]
            hooks.append(module.register_forward_pre_hook(pre))
    meta_forward(net, input_size, hooks)
    convs = {id(t): (t, name) for t, name in produced}
    pairs = []
    for name, module in net.named_modules():
        if isinstance(module, nn.BatchNorm2d) and name in inputs:
            src = convs.get(id(inputs[name]))
            if src is not None and src[0] is inputs[name] and read[id(src[0])] == 1:
                pairs.append((src[1], name))
    return pairs


def fold_batchnorm(model: nn.Module, build: Callable[[], nn.Module], input_size: int) -> int:
    """Fold every foldable BatchNorm of ``model`` (in eval mode); returns how many."""
    modules = dict(model.named_modules())
    pairs = _pairs(build, input_size)
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            conv, bn = modules[conv_name], modules[bn_name]
            scale = (bn.weight if bn.weight is not None else 1) / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            shift = bn.bias if bn.bias is not None else 0
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter((bias - bn.running_mean) * scale + shift)
            rest = [getattr(bn, a) for a in ("drop", "act") if isinstance(getattr(bn, a, None), nn.Module)]
            parent, _, child = bn_name.rpartition(".")
            setattr(modules[parent] if parent else model, child,
                    nn.Sequential(*rest) if rest else nn.Identity())
    return len(pairs)
