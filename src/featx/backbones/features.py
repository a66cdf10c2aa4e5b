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
    stops once the last of them has run, so layers past it cost nothing. (As fast as
    torchvision's create_feature_extractor and timm's forward_intermediates, with the same
    numbers, and one mechanism for every family, the meta device included; timm's reaches only
    its feature levels: benchmarks/libraries.py, docs/architecture.md.)
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


_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


def _pair0(v) -> int:
    return int(v[0] if isinstance(v, (tuple, list)) else v)


def receptive_field(bb: Backbone, layer: str, size: int) -> tuple[float, float]:
    """(centre of row 0, stride), in input pixels (pixel i's centre at i), of ``layer``'s map on
    a ``size`` x ``size`` input: the receptive-field arithmetic of every convolution and pooling
    on the way (kernel, stride, dilation, padding; TensorFlow SAME padding, which timm's ``tf_``
    models compute per input size, pads the extra pixel after), and the dense fc layers as
    convolutions over their trunk (:class:`DenseFC`). Row i of the map is centred at
    ``start + stride * i``.

    The chain follows the map: a module is on it when its input has the map's current height
    (a ResNet's 1x1 downsampling shortcut, which reads the block's input, and a
    squeeze-excitation's 1x1 convolutions are not)."""
    return receptive_fields(bb, layer, [size])[0]


@torch.no_grad()
def receptive_fields(bb: Backbone, layer: str, sizes: list[int]) -> list[tuple[float, float]]:
    """:func:`receptive_field` at each of ``sizes`` (a pyramid's), the network built once."""
    fcs = bb.fc_conv[1] if bb.fc_conv else {}
    trunk = bb.fc_conv[0] if layer in fcs else layer
    state: dict = {}

    def hook(module, args, output):
        h_in = args[0].shape[-2]
        if output.dim() != 4 or h_in != state["h"]:
            return
        k = _pair0(module.kernel_size)
        s = _pair0(module.stride if module.stride is not None else module.kernel_size)
        d = _pair0(getattr(module, "dilation", 1))
        span = (k - 1) * d + 1
        if type(module).__name__.endswith("Same"):  # timm's dynamic TF SAME padding
            before = max((-(-h_in // s) - 1) * s + span - h_in, 0) // 2
        else:
            before = _pair0(module.padding)
        state["start"] += ((span - 1) / 2 - before) * state["jump"]
        state["jump"] *= s
        state["h"] = output.shape[-2]

    with torch.device("meta"):
        model = bb.build().eval()
    # before the extractor's: its hook on the trunk ends the pass, and the trunk's own
    # stride (a pooling, say) must be counted first
    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _SPATIAL)]
    extractor = ActivationExtractor(model, bb, [trunk])
    out = []
    try:
        for size in sizes:
            state.update(h=size, start=0.0, jump=1.0)
            extractor(torch.empty(1, 3, size, size, device="meta"))
            start, jump = state["start"], state["jump"]
            for alias in (a for a in fcs if layer in fcs):
                k = fcs[alias][2]  # the first dense fc layer is k x k, the others 1 x 1
                start += (k - 1) / 2 * jump
                if alias == layer:
                    break
            out.append((start, jump))
    finally:
        for h in hooks:
            h.remove()
    return out
