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

# the entries register on import, in the order `featx layers` lists them
from featx.backbones import alexnet, vgg, resnet, efficientnet_lite  # noqa: F401, I001
from featx.backbones.features import ActivationExtractor, DenseFC, dense_shapes, layer_shapes
from featx.backbones.named import FAMILIES, list_models
from featx.backbones.catalog import get_backbone
from featx.backbones.registry import BACKBONES, Backbone, backbone
from featx.backbones.weights import load_model

__all__ = ["BACKBONES", "FAMILIES", "ActivationExtractor", "Backbone", "DenseFC", "backbone",
           "dense_shapes", "get_backbone", "layer_shapes", "list_models", "load_model"]
