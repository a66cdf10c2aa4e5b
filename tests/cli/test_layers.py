"""featx layers."""


def test_lists_backbones_and_layer_shapes(cli):
    names = [line.split("\t")[0] for line in cli("layers").stdout.splitlines()]
    assert names == ["alexnet", "alexnet_caffe", "vgg16", "resnet50", "efficientnet_lite0"]
    out = cli("layers", "alexnet").stdout
    assert "conv4\t256x13x13 (cross-layer default: local)" in out
    assert "conv5\t256x13x13 (cross-layer default: guidance)" in out and "fc7\t4096" in out
    assert "conv1\t64x55x55" in cli("layers", "alexnet", "--input-size", "224").stdout


def test_unknown_backbone(cli):
    res = cli("layers", "lenet", ok=False)
    assert res.exit_code == 1 and "unknown backbone 'lenet'" in res.stderr
