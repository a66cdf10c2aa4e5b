"""torchvision:NAME and timm:NAME backbones, offline with random weights: layer shapes equal a
real forward, the dense head equals the model's logits, the whole chain runs, bad names and
weights are refused clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featx.backbones import ActivationExtractor, DenseFC, get_backbone, layer_shapes, load_model
from featx.errors import LayerError, WeightsError

MODELS = ["torchvision:resnet18", "torchvision:mobilenet_v3_small", "timm:resnet18",
          "timm:efficientnet_b0", "timm:convnext_atto"]


@pytest.mark.parametrize("name", MODELS)
def test_layer_shapes_equal_a_real_forward(name):
    bb = get_backbone(name)
    assert bb.name == name and bb.cross_layer is not None
    model, _ = load_model(bb, "none", seed=0)
    x = torch.randn(1, 3, bb.input_size, bb.input_size)
    with torch.no_grad():
        real = ActivationExtractor(model, bb, list(bb.layers))(x)
    assert {k: tuple(v.shape[1:]) for k, v in real.items()} == layer_shapes(bb)


@pytest.mark.parametrize("name", ["torchvision:resnet18", "timm:resnet18", "timm:efficientnet_b0",
                                  "efficientnet_lite0", "resnet50"])
def test_dense_head_equals_the_logits_at_the_base_scale(name):
    bb = get_backbone(name)
    model, _ = load_model(bb, "none", seed=0)
    x = torch.randn(2, 3, bb.input_size, bb.input_size)
    with torch.no_grad():
        dense = DenseFC(model, bb, ["logits"])(x)["logits"]  # (2, 1000, h, w)
        logits = model(x)
    torch.testing.assert_close(dense.mean((2, 3)), logits, rtol=1e-4, atol=1e-4)


def test_the_default_pair_follows_the_grid_rule():
    assert get_backbone("torchvision:resnet18").cross_layer == ("layer3", "layer4")  # 14 -> 7
    assert get_backbone("timm:efficientnet_b0").cross_layer == ("blocks.4", "blocks.6")
    assert get_backbone("torchvision:vit_b_16").cross_layer is None  # tokens, not maps
    # subarray size: the guidance stage's first spatial kernel
    assert get_backbone("torchvision:resnet18").default_local("layer3") == "subarray:3x3"
    assert get_backbone("torchvision:mobilenet_v3_small").default_local("features.11") == \
        "subarray:1x1"  # its last stage has only a 1x1 convolution


def test_unknown_names_list_close_matches():
    with pytest.raises(LayerError, match=r"unknown torchvision model 'resnet81'; did you mean "
                                         r"resnet18.*featx layers --list torchvision"):
        get_backbone("torchvision:resnet81")
    with pytest.raises(LayerError, match="unknown timm model"):
        get_backbone("timm:not_a_model_at_all")


def test_weights_that_do_not_fit_name_the_first_mismatched_key(tmp_path):
    # a checkpoint of the architecture (load_model's models are BatchNorm-folded, for inference)
    torch.save(get_backbone("torchvision:resnet18").build().state_dict(), tmp_path / "r18.pt")
    with pytest.raises(WeightsError, match=r"first mismatched key 'layer1.0.conv1.weight'"):
        load_model(get_backbone("torchvision:resnet50"), str(tmp_path / "r18.pt"))
    model, desc = load_model(get_backbone("torchvision:resnet18"), str(tmp_path / "r18.pt"))
    assert desc.startswith("file ")


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_the_chain_runs_with_the_default_pair(cli, make_images, tmp_path, name):
    root = tmp_path / "ds"
    for c in ("a", "b"):
        make_images(3, folder=f"ds/{c}", seed=ord(c), sizes=((160, 120),))
    common = ["--dataset", "folder", "--root", root, "--backbone", name, "--weights", "none",
              "--workers", "0"]
    acts = cli("extract", *common, "-o", tmp_path / "acts").stdout.split()
    bb = get_backbone(name)
    pca = cli("fit-pca", *acts, "--layer", bb.cross_layer[0], "--dim", "8", "--per-image", "8",
              "-o", tmp_path / "pca.h5").stdout.split()
    enc = cli("encode", *acts, "--pca", *pca, "-o", tmp_path / "enc").stdout.split()
    svm = cli("train-svm", *enc, "-o", tmp_path / "svm.h5").stdout.split()
    res = cli("evaluate", *enc, "--model", *svm)
    assert '"top1"' in res.stdout
    from tests.conftest import read_encodings
    _, x, _, attrs = read_encodings(enc[0])
    assert attrs["backbone"] == name and x.shape[0] == 6
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, rtol=1e-5)


def test_a_transformer_is_refused_for_cross_layer_pooling(cli, make_images, tmp_path):
    acts = cli("extract", make_images(2), "--backbone", "torchvision:vit_b_16", "--weights",
               "none", "--layers", "conv_proj", "--workers", "0", "-o", tmp_path / "a").stdout.split()
    pca = cli("fit-pca", *acts, "--layer", "conv_proj", "--local", "subarray:3x3", "--dim", "4",
              "--per-image", "20", "-o", tmp_path / "p.h5").stdout.split()
    res = cli("encode", *acts, "--pca", *pca, "-o", tmp_path / "e", ok=False)
    assert res.exit_code == 1 and "token sequences, not maps" in res.stderr


def test_layers_command_for_a_named_model(cli):
    out = cli("layers", "timm:resnet18").stdout
    assert "layer3\t256x14x14 (cross-layer default: local)" in out
    assert "logits\t1000 (dense in the pyramid view)" in out
    assert "torchvision:resnet18" in cli("layers", "--list", "torchvision").stdout.split()
