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


def test_help_and_version_answer_without_loading_a_command_or_torch():
    """Issue 28.4: `featx --help` and `--version` imported torch, torchvision and timm
    (6.1 s and 930 MB here); now they load no command module and no torch."""
    import subprocess
    import sys

    code = ("import sys; from featx.cli import main\n"
            "try:\n    main(['--help'], prog_name='featx')\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'torchvision', 'timm', 'featx.cli.extract') "
            "if m in sys.modules]\nprint('LOADED', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "LOADED []" in out
    from featx.cli import COMMANDS, all_commands

    for name, cmd in all_commands().items():  # every listed command loads, with its line
        assert cmd.name == name and cmd.short_help == COMMANDS[name][2] and name in out


def test_verbosity_options_work_after_the_command_too(make_images, tmp_path):
    """Issue 28.9: `featx fit-pca ... -q` as `featx -q fit-pca ...`; -v after the command too."""
    from click.testing import CliRunner

    from featx.cli import main

    run = CliRunner().invoke
    acts = tmp_path / "acts"
    assert run(main, ["-q", "extract", str(make_images(2)), "--weights", "none", "--workers",
                      "0", "--input-size", "96", "-o", str(acts)]).exit_code == 0
    args = ["fit-pca", str(acts), "--layer", "conv4", "--dim", "2", "--per-image", "5"]
    said = run(main, [*args, "-o", str(tmp_path / "a.h5")])
    assert said.exit_code == 0 and "sampled" in said.stderr  # INFO by default
    quiet = run(main, [*args, "-o", str(tmp_path / "b.h5"), "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""
    loud = run(main, ["-q", *args, "-o", str(tmp_path / "c.h5"), "-v"])
    assert loud.exit_code == 0 and loud.stderr == ""  # -q wins, before or after


def test_layers_as_json_say_what_the_table_says(cli):
    import json

    listed = json.loads(cli("layers", "--json").stdout)
    assert [b["name"] for b in listed] == [line.split("\t")[0]
                                           for line in cli("layers").stdout.splitlines()]
    doc = json.loads(cli("layers", "alexnet", "--json").stdout)
    by = {x["alias"]: x for x in doc["layers"]}
    assert by["conv4"] == {"alias": "conv4", "shape": [256, 13, 13], "role": "local",
                           "dense_in_pyramid": False, "same_as": None}
    assert by["conv5"]["role"] == "guidance" and by["fc7"]["dense_in_pyramid"]
    assert doc["preprocessing"]["mean"] == [0.485, 0.456, 0.406] and doc["input_size"] == 227


def test_an_alias_of_an_earlier_layer_is_marked(cli):
    """timm's feature stages (stage1...) name modules already listed (act1, layer1...)."""
    import json

    out = cli("layers", "timm:resnet18").stdout
    assert "stage1\t64x112x112 (= act1, the same module)" in out
    assert "stage2\t64x56x56 (= layer1, the same module)" in out
    assert "layer1\t64x56x56\n" in out  # the first name of a module is not marked
    doc = {x["alias"]: x for x in json.loads(cli("layers", "timm:resnet18", "--json").stdout)["layers"]}
    assert doc["stage4"]["same_as"] == "layer3" and doc["layer3"]["same_as"] is None


def test_shell_completion_of_commands_loads_no_command():
    """`eval "$(_FEATX_COMPLETE=bash_source featx)"` (README): completing a command name
    answers from featx.cli.COMMANDS, importing no command module and no torch."""
    import os
    import subprocess
    import sys

    code = ("import sys\nfrom featx.cli import main\n"
            "try:\n    main(prog_name='featx')\nexcept SystemExit:\n    pass\n"
            "print('LOADED', [m for m in ('torch', 'featx.cli.fit') if m in sys.modules])")
    env = {**os.environ, "_FEATX_COMPLETE": "bash_complete", "COMP_WORDS": "featx fit",
           "COMP_CWORD": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout.splitlines()
    assert out[:3] == ["plain,fit-pca", "plain,fit-gmm", "plain,fit-guidance"]
    assert out[-1] == "LOADED []"
    env["COMP_WORDS"] = "featx train-svm --so"  # a command's options: its module, on demand
    env["COMP_CWORD"] = "2"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout.splitlines()
    assert out[0] == "plain,--solver"


def test_fit_pcas_default_dim_is_the_backbones_and_layers_says_it(tmp_path, cli):
    """Issue 38 (a newcomer trap): --dim 500 on the offline backbone gave 160,000-d encodings
    where the reproduction measured 128; the default is the backbone's now, and `featx
    layers NAME` says it."""
    import json

    from click.testing import CliRunner

    from featx.backbones import get_backbone
    from featx.cli import main
    from featx.stages.fit_pca import FitPCA, FitPCAConfig

    assert get_backbone("efficientnet_lite0").pca_dim == 128
    assert get_backbone("alexnet").pca_dim == 500
    res = CliRunner().invoke(main, ["layers", "efficientnet_lite0"])
    assert "fit-pca's default --dim for efficientnet_lite0: 128" in res.stderr
    res = CliRunner().invoke(main, ["layers", "efficientnet_lite0", "--json"])
    assert json.loads(res.stdout)["pca_dim"] == 128
    assert FitPCAConfig().dim is None  # resolved from the activations' backbone


def test_fit_pca_without_dim_fits_the_backbones_dim(tmp_path, cli, make_images):
    import featx

    images = make_images(6)  # 25 subarrays of stage6's 7x7 an image: 150 >= 128
    cli("extract", images, "--backbone", "efficientnet_lite0", "--weights", "none",
        "--layers", "stage6,stage7", "--workers", "0", "-o", tmp_path / "acts")
    cli("fit-pca", tmp_path / "acts", "--per-image", "100", "-o", tmp_path / "pca.h5")
    pca, attrs = featx.load(tmp_path / "pca.h5")
    assert pca.n_components == 128 and attrs["dim"] == 128
