"""Every backbone's preprocessing equals its weights' own config (issue 23): the mean, std,
interpolation, resize and crop that torchvision's ``weights.transforms()`` or timm's
``pretrained_cfg`` give, except where the papers' protocol says otherwise (asserted here too).

A wrong mean/std or interpolation is invisible to every shape and equation test and costs
EfficientNet-Lite0 6-10 points of ImageNet top-1 (benchmarks/backbone_accuracy.py)."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm

from featx.backbones import get_backbone
from featx.images import ViewSpec, normalize_pixels

TORCHVISION = {"alexnet": tvm.AlexNet_Weights.IMAGENET1K_V1,
               "vgg16": tvm.VGG16_Weights.IMAGENET1K_V1,
               "resnet50": tvm.ResNet50_Weights.IMAGENET1K_V2}
# the papers' protocol: AlexNet takes Caffe's 227 crop, where torchvision's transforms crop 224
PAPER_INPUT = {"alexnet": 227}


def _timm_cfg(name: str) -> dict:
    timm = pytest.importorskip("timm")
    return timm.models.get_pretrained_cfg(name).to_dict()


def _expected_torchvision(weights) -> dict:
    t = weights.transforms()
    return {"mean": tuple(t.mean), "std": tuple(t.std), "interpolation": t.interpolation.value,
            "input_size": t.crop_size[0], "jitter_size": t.resize_size[0]}


def _expected_timm(cfg: dict) -> dict:
    size = cfg["input_size"][-1]
    return {"mean": tuple(cfg["mean"]), "std": tuple(cfg["std"]),
            "interpolation": cfg["interpolation"], "input_size": size,
            "jitter_size": round(size / cfg["crop_pct"])}


def _actual(name: str) -> dict:
    bb = get_backbone(name)
    return {"mean": bb.mean, "std": bb.std, "interpolation": bb.interpolation,
            "input_size": bb.input_size, "jitter_size": bb.jitter_size}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_curated_torchvision_backbones_take_their_weights_transforms(name):
    want = _expected_torchvision(TORCHVISION[name])
    if name in PAPER_INPUT:
        assert want["input_size"] != PAPER_INPUT[name]  # a real exception, kept on purpose
        want["input_size"] = PAPER_INPUT[name]
    assert _actual(name) == want


def test_efficientnet_lite0_takes_the_tensorflow_weights_config():
    # the shipped weights are TensorFlow's Lite0 (timm's tf_efficientnet_lite0): mean = std =
    # 0.5 and bicubic, not ImageNet's mean/std and bilinear (timm's own efficientnet_lite0)
    want = _expected_timm(_timm_cfg("tf_efficientnet_lite0"))
    assert _actual("efficientnet_lite0") == want
    assert want["mean"] == (0.5, 0.5, 0.5) and want["interpolation"] == "bicubic"


def test_caffe_alexnet_keeps_caffes_protocol():
    bb = get_backbone("alexnet_caffe")
    assert bb.bgr and bb.input_size == 227 and bb.jitter_size == 256
    assert [round(m * 255, 3) for m in bb.mean] == [123.68, 116.779, 103.939]
    assert bb.std == (1 / 255,) * 3


@pytest.mark.parametrize("name", ["timm:resnet18", "timm:tf_efficientnet_lite0",
                                  "timm:vit_tiny_patch16_224"])
def test_named_timm_models_take_their_pretrained_cfg(name):
    assert _actual(name) == _expected_timm(_timm_cfg(name.split(":")[1]))


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "convnext_tiny"])
def test_named_torchvision_models_take_their_weights_transforms(name):
    weights = tvm.get_model_weights(name).DEFAULT
    assert _actual(f"torchvision:{name}") == _expected_torchvision(weights)


def test_the_centre_view_equals_torchvisions_transforms_on_a_square_photo():
    """On a square image (aspect kept either way) featx's centre view, normalised, is the
    tensor torchvision's own transforms make: resize, centre crop, mean/std."""
    bb = get_backbone("resnet50")  # resize 232, crop 224: an odd margin
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (300, 300, 3), dtype=torch.uint8, generator=g)
    ours = normalize_pixels(ViewSpec.parse("centre").render(img, bb.input_size, bb.jitter_size,
                                                     bb.interpolation), bb.mean, bb.std)
    theirs = TORCHVISION["resnet50"].transforms()(img.permute(2, 0, 1))
    assert ours.shape == (1, *theirs.shape)
    # the same resize of uint8 pixels: equal to one grey level in 255 (std ~0.225 -> 0.018)
    assert (ours[0] - theirs).abs().max().item() < 0.02


def test_featx_layers_says_the_preprocessing_on_stderr(cli):
    res = cli("layers", "efficientnet_lite0")
    assert "preprocessing: mean 0.5, 0.5, 0.5, std 0.5, 0.5, 0.5, bicubic, resize 256 -> " \
           "input 224 (timm pretrained_cfg of tf_efficientnet_lite0)" in res.stderr
    assert "preprocessing" not in res.stdout  # stdout stays the list of layers
