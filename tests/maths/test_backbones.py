"""The backbone registry, weights loading, and layer reading."""

from __future__ import annotations

import dataclasses
import urllib.error

import pytest
import torch
from torch import nn

from featx.backbones import BACKBONES, ActivationExtractor, backbone, get_backbone, layer_shapes
from featx.backbones import load_model
from featx.errors import LayerError, WeightsError


@pytest.mark.parametrize("size", [227, 224])
def test_alexnet_conv4_conv5_are_256x13x13(size):
    shapes = layer_shapes(get_backbone("alexnet"), size)
    assert shapes["conv4"] == shapes["conv5"] == (256, 13, 13)
    assert shapes["fc7"] == (4096,) and shapes["logits"] == (1000,)


def test_other_backbones_shapes():
    assert layer_shapes(get_backbone("alexnet_caffe"))["conv4"] == (384, 13, 13)
    assert layer_shapes(get_backbone("vgg16"))["conv5_3"] == (512, 14, 14)
    assert layer_shapes(get_backbone("resnet50"))["layer3"] == (1024, 14, 14)
    lite = layer_shapes(get_backbone("efficientnet_lite0"))
    assert lite["stage4"] == (80, 14, 14) and lite["stage5"] == (112, 14, 14)
    for bb in BACKBONES.values():  # every curated default pair names real conv layers
        if ":" in bb.name:  # torchvision:/timm: entries made on demand by other tests
            continue
        local, guide = bb.cross_layer
        assert local in bb.layers and guide in bb.kernels


def test_registry_refuses_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="registered twice"):
        backbone("alexnet", input_size=1, layers={})(lambda: nn.Identity())
    with pytest.raises(LayerError, match="unknown backbone 'lenet'; valid: alexnet"):
        get_backbone("lenet")
    with pytest.raises(LayerError, match=r"not in alexnet; valid: conv1, .*featx layers alexnet"):
        get_backbone("alexnet").check_layers(["conv5", "pool9"])
    assert get_backbone("alexnet").check_layers(["fc7", "conv4", "conv4"]) == ["conv4", "fc7"]


def test_random_weights_follow_the_seed():
    bb = get_backbone("alexnet")
    a, desc = load_model(bb, "none", seed=3)
    b, _ = load_model(bb, "none", seed=3)
    c, _ = load_model(bb, "none", seed=4)
    assert "seed 3" in desc
    assert torch.equal(a.features[0].weight, b.features[0].weight)
    assert not torch.equal(a.features[0].weight, c.features[0].weight)


def test_weights_file_round_trip(alexnet_weights, tmp_path):
    bb = get_backbone("alexnet")
    model, desc = load_model(bb, str(alexnet_weights))
    ref = torch.load(alexnet_weights, weights_only=True)
    assert torch.equal(model.classifier[6].bias, ref["classifier.6.bias"])
    assert "sha256" in desc and not model.training
    # a checkpoint wrapped in {"state_dict": ...} with DataParallel's "module." prefix
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.items()}}, tmp_path / "w.pth")
    model, _ = load_model(bb, str(tmp_path / "w.pth"))
    assert torch.equal(model.features[3].weight, ref["features.3.weight"])
    with pytest.raises(WeightsError, match="neither imagenet, none nor a file"):
        load_model(bb, str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        load_model(bb, str(tmp_path / "junk.pth"))


def test_offline_imagenet_weights_say_how_to_supply_them():
    def unreachable():
        raise urllib.error.URLError("Name or service not known")

    unreachable.source = "https://example.invalid/alexnet.pth"
    bb = dataclasses.replace(get_backbone("alexnet"), imagenet=unreachable)
    with pytest.raises(WeightsError) as err:
        load_model(bb, "imagenet")
    msg = str(err.value)
    assert "--weights PATH" in msg and "TORCH_HOME" in msg and "efficientnet_lite0" in msg
    assert "\n" not in msg
    with pytest.raises(WeightsError, match="--weights PATH"):
        load_model(get_backbone("alexnet_caffe"), "imagenet")


def test_extractor_matches_hooks_and_stops_early():
    bb = get_backbone("resnet50")
    model, _ = load_model(bb, "none")
    x = torch.randn(2, 3, 96, 96)
    ref = {}
    model.layer2.register_forward_hook(lambda m, a, o: ref.__setitem__("layer2", o.clone()))
    with torch.no_grad():
        model(x)
    ran = []
    model.layer4.register_forward_hook(lambda m, a, o: ran.append(True))
    with torch.no_grad():
        out = ActivationExtractor(model, bb, ["layer2", "layer1"])(x)
    assert list(out) == ["layer1", "layer2"]
    assert torch.allclose(out["layer2"], ref["layer2"], atol=1e-5)
    assert not ran  # layers past the last requested one are not computed


def test_fully_convolutional_fc7_equals_the_classifier_at_the_base_scale():
    from featx.backbones import DenseFC, dense_shapes

    bb = get_backbone("alexnet")
    model, _ = load_model(bb, "none", seed=1)
    x = torch.randn(2, 3, 227, 227)
    with torch.no_grad():
        ref = ActivationExtractor(model, bb, ["fc6", "fc7"])(x)
        dense = DenseFC(model, bb, ["fc6", "fc7"])(x)
    for layer in ("fc6", "fc7"):
        assert dense[layer].shape == (2, 4096, 1, 1)
        torch.testing.assert_close(dense[layer][:, :, 0, 0], ref[layer], rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        big = DenseFC(model, bb, ["fc7"])(torch.randn(1, 3, 321, 321))["fc7"]
    assert big.shape == (1, 4096, 4, 4)
    shapes = dense_shapes(bb, ["fc7"], [227, 321, 454, 642, 908, 1284, 1816])
    counts = [s["fc7"][0] for s in shapes]
    assert counts == [1, 16, 64, 196, 484, 1156, 2500] and sum(counts) == 4417  # ~4,400
    mobilenet = get_backbone("torchvision:mobilenet_v3_small")  # head: two linear layers
    with pytest.raises(LayerError, match="no fully connected layers to run densely"):
        DenseFC(load_model(mobilenet, "none")[0], mobilenet, ["logits"])


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet50", "timm:efficientnet_b0",
                                  "torchvision:mobilenet_v3_small"])
def test_batchnorm_folding_keeps_the_outputs(name):
    import copy

    from featx.backbones.fold import fold_batchnorm

    bb = get_backbone(name)
    torch.manual_seed(0)
    ref = bb.build().eval()
    for m in ref.modules():  # non-trivial running statistics and affine parameters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    fused = copy.deepcopy(ref)
    assert fold_batchnorm(fused, bb.build, bb.input_size) > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        want = ref(x)
        torch.testing.assert_close(fused(x), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


@pytest.mark.parametrize(("name", "layer", "size", "want"), [
    # torchvision AlexNet: conv1 11/4 pad 2 puts unit 0 at 5 - 2 = 3, stride 4; max-pool 3/2
    # adds 1 x 4 (7, stride 8); conv2 5 pad 2 adds 0; max-pool 3/2 adds 1 x 8 (15, 16);
    # conv3-5 3 pad 1 add 0; max-pool 3/2 adds 1 x 16: pool5 at 31, stride 32; fc6 as a 6 x 6
    # convolution adds 2.5 x 32 = 80: fc6/fc7 row 0 at 111
    ("alexnet", "pool5", 227, (31.0, 32.0)),
    ("alexnet", "fc7", 227, (111.0, 32.0)),
    # Caffe's: conv1 11/4 without padding starts at 5, so every later layer 2 further: 113
    ("alexnet_caffe", "fc7", 227, (113.0, 32.0)),
    # ResNet-18: every convolution padded (k - 1)/2: unit 0 stays on pixel 0, strides 2.2.2.2.2
    ("timm:resnet18", "layer4", 224, (0.0, 32.0)),
    # TF SAME padding pads the extra pixel after: the stem (3/2 at 224: 1 pixel, after) moves
    # unit 0 to 1; then stride-2 depthwise convs at 112 (3: +1 x 2), 56 (5: pads 1 before,
    # +1 x 4), 28 (3: +1 x 8), 14 (5: +1 x 16): 1 + 2 + 4 + 8 + 16 = 31, stride 32
    ("efficientnet_lite0", "logits", 224, (31.0, 32.0)),
])
def test_receptive_field_equals_the_hand_computation(name, layer, size, want):
    from featx.backbones.features import receptive_field

    assert receptive_field(get_backbone(name), layer, size) == want


def test_the_two_smallest_alexnet_scales_have_no_vector_in_the_top_or_bottom_third():
    """Yoo's spatial pyramid (MPP + SP) on the fc7 pyramid: at 227 and 321 px every dense
    vector's receptive field is centred in the middle third, so with --scales 2 the top and
    bottom regions are empty (and MPP + SP adds nothing to MPP); at 454 px they are not."""
    from featx.backbones.features import dense_shapes, receptive_field
    from featx.encoders.fisher import region_indices

    bb = get_backbone("alexnet")
    sizes = [227, 321, 454]
    counts = [d["fc7"][0] for d in dense_shapes(bb, ["fc7"], sizes)]
    geometry = [receptive_field(bb, "fc7", s) for s in sizes]
    for top, bottom in ((0.0, 1 / 3), (2 / 3, 1.0)):
        assert [len(i) for i in region_indices(sizes, counts, top, bottom, geometry)] == \
            [0, 0, 16]
