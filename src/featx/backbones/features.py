"""Reading layers out of a backbone: forward hooks that stop the pass after the last layer
wanted, FC layers run as convolutions for the pyramid view, and layer shapes probed on the
meta device (no computation)."""

from __future__ import annotations

import torch
from torch import nn

from featx.backbones.registry import Backbone
from featx.errors import LayerError


class DenseFC(nn.Module):
    """A backbone's FC layers run as convolutions (Yoo et al. §2.2; Long et al. 2015).

    ``bb.fc_conv = (trunk, {alias: (linear path, channels, kernel, relu)})``: the trunk layer's
    map feeds the first FC layer as a conv with the k x k x C kernel its weights reshape to
    (6x6x256 for AlexNet fc6 after pool5, 7x7x512 for VGG), each later one as a 1x1 conv, with
    ReLU where the classifier has one. On an input of the backbone's own size the maps are
    1x1 and equal the classifier's activations; larger inputs give dense maps of them. A head
    of global average pooling + linear runs as a 1x1 conv over the last feature map (its
    positions' mean is the model's logits). Returns ``{alias: (B, C, h, w)}``.
    """

    def __init__(self, model: nn.Module, bb: Backbone, layers: list[str]):
        super().__init__()
        if bb.fc_conv is None:
            raise LayerError(f"{bb.name} has no fully connected layers to run densely (its "
                             "head is not pooling + linear)")
        trunk, fcs = bb.fc_conv
        unknown = [x for x in layers if x not in fcs]
        if unknown or not layers:
            raise LayerError(f"the pyramid view computes {', '.join(fcs)} densely, not "
                             f"{', '.join(unknown) or 'nothing'}")
        modules = dict(model.named_modules())
        self.trunk = ActivationExtractor(model, bb, [trunk])
        self.trunk_name = trunk
        self.names = [a for a in fcs if list(fcs).index(a) <= max(map(list(fcs).index, layers))]
        self.wanted = set(layers)
        self.relu = [fcs[a][3] for a in self.names]
        convs = []
        for alias in self.names:
            path, channels, k, _ = fcs[alias]
            lin: nn.Linear = modules[path]
            conv = nn.Conv2d(channels, lin.out_features, k).to(lin.weight.device)
            with torch.no_grad():
                conv.weight.copy_(lin.weight.view(lin.out_features, channels, k, k))
                conv.bias.copy_(lin.bias)
            convs.append(conv)
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y, out = self.trunk(x)[self.trunk_name], {}
        for alias, conv, relu in zip(self.names, self.convs, self.relu):
            y = conv(y)
            if relu:
                y = torch.relu(y)
            if alias in self.wanted:
                out[alias] = y
        return out


class _Stop(Exception):
    """Raised by the last hook so the forward pass ends once every layer is read."""


class ActivationExtractor(nn.Module):
    """Runs ``model`` up to the last requested layer and returns ``{alias: activations}``.

    ``dtype`` casts each activation as it is read (the storage dtype, say), and each comes out
    NCHW-contiguous (a channels_last network's too), which costs no more than the copy the hook
    makes anyway.

    Outputs are read with forward hooks on the modules the aliases name, and the forward pass
    stops once the last of them has run, so layers past it cost nothing.
    """

    def __init__(self, model: nn.Module, bb: Backbone, layers: list[str],
                 dtype: torch.dtype | None = None):
        super().__init__()
        self.model, self.layers, self.dtype = model, bb.check_layers(layers), dtype
        self._out: dict[str, torch.Tensor] = {}
        self._active = False  # several extractors may hook one model: each reads its own pass
        modules = dict(model.named_modules())
        last = self.layers[-1]
        for alias in self.layers:
            modules[bb.layers[alias]].register_forward_hook(self._hook(alias, alias == last))

    def _hook(self, alias: str, last: bool):
        def hook(module, args, output):
            if not self._active:
                return
            # a copy (cast to the storage dtype and laid out NCHW, as stored, on the way):
            # in-place ops later in the network (ReLU(inplace)) must not alter it
            self._out[alias] = output.to(dtype=self.dtype or output.dtype, copy=True,
                                         memory_format=torch.contiguous_format)
            if last:
                raise _Stop

        return hook

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._out, self._active = {}, True
        try:
            self.model(x)
        except _Stop:
            pass
        finally:
            self._active = False
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


def meta_forward(net: nn.Module, size: int, hooks: list) -> None:
    """One forward pass of a meta-device ``net`` at ``size`` (shapes only, no arithmetic), then
    remove ``hooks`` (the handles of the hooks that watched it)."""
    try:
        with torch.no_grad():
            net(torch.empty(1, 3, size, size, device="meta"))
    finally:
        for h in hooks:
            h.remove()
