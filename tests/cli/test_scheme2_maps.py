"""Scheme 2 (fit-guidance, encode --guidance) and the pictures (featx maps, evaluate --plots)
through the CLI, on two generated classes with random AlexNet weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from featx.cli import main
from featx.encoders import guided_pool, normalize
from featx.fit import init_guidance
from featx.io import ActivationShard, load_guidance, load_maps, load_pca
from tests.conftest import class_folders, read_encodings


def _run(*args):
    res = CliRunner().invoke(main, ["-q", *map(str, args)], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    return res.stdout.split()


@pytest.fixture(scope="module")
def chain(tmp_path_factory, alexnet_weights):
    root = tmp_path_factory.mktemp("s2")
    class_folders(root / "ds", ("a", "b"), 6, (200, 150))
    common = ["--weights", alexnet_weights, "--workers", "0"]
    out = {"acts": _run("extract", "--dataset", "folder", "--root", root / "ds", *common,
                        "--views", "pyramid", "--scales", "2", "--layers", "fc7",
                        "-o", root / "acts")}
    out["pca"] = _run("fit-pca", *out["acts"], "--layer", "fc7", "--view", "pyramid",
                      "--local", "dense", "--dim", "6", "-o", root / "pca.h5")[0]
    out["guidance"] = _run("fit-guidance", *out["acts"], "--pca", out["pca"], "--channels", "3",
                           "--kernel", "3", "--epochs", "3", "--holdout", "0.25",
                           "-o", root / "g.h5")[0]
    out["enc"] = _run("encode", *out["acts"], "--method", "cross-layer", "--guidance",
                      out["guidance"], "-o", root / "enc")
    out["svm"] = _run("train-svm", *out["enc"], "-o", root / "svm.h5")[0]
    out["gmm"] = _run("fit-gmm", *out["acts"], "--pca", out["pca"], "--components", "2",
                      "-o", root / "gmm.h5")[0]
    out["fenc"] = _run("encode", *out["acts"], "--method", "mpp", "--gmm", out["gmm"],
                       "--pca", out["pca"], "-o", root / "fenc")
    out["fsvm"] = _run("train-svm", *out["fenc"], "-o", root / "fsvm.h5")[0]
    out["root"] = root
    return out


def test_scheme2_encoding_is_guided_pooling_of_the_projected_regions(chain):
    guidance, attrs = load_guidance(chain["guidance"])
    assert attrs["channels"] == 3 and attrs["kernel"] == 3 and attrs["scales"] == [0, 1]
    assert attrs["pyramid_sizes"] == [227, 321] and 1 <= len(attrs["curve"]) <= 3
    assert guidance.weight.shape == (3, 6, 3, 3)
    pca, _ = load_pca(chain["pca"])
    ids, x, _, eattrs = read_encodings(chain["enc"][0])
    assert eattrs["methods"] == ["cross-layer-guided"] and x.shape == (12, 18)
    with ActivationShard(chain["acts"][0]) as shard:
        assert shard.ids == ids
        scales = [pca.transform(torch.from_numpy(s).flatten(0, 1)).view(s.shape[0], s.shape[1], -1)
                  for s in shard.pyramid("fc7")]
    ref = normalize(guided_pool(scales, guidance.weight, guidance.bias))
    np.testing.assert_allclose(x, ref.numpy(), rtol=1e-4, atol=1e-5)


def test_zero_epochs_is_the_random_guidance(chain, cli, tmp_path):
    path = cli("fit-guidance", *chain["acts"], "--pca", chain["pca"], "--channels", "3",
               "--epochs", "0", "--seed", "4", "-o", tmp_path / "r.h5").stdout.split()[0]
    g, attrs = load_guidance(path)
    assert torch.equal(g.weight, init_guidance(6, 3, 1, seed=4).weight) and attrs["curve"] == []


def _pngs_open(paths):
    for p in paths:
        if p.endswith(".png"):
            with Image.open(p) as img:
                assert img.format == "PNG" and min(img.size) > 50


def test_confidence_maps(chain, cli, tmp_path):
    out = cli("maps", *chain["acts"], "--model", chain["fsvm"], "--gmm", chain["gmm"],
              "--pca", chain["pca"], "--top", "2", "--limit", "3", "-o", tmp_path / "m"
              ).stdout.split()
    assert len(out) == 4 and out[-1].endswith("maps.h5")
    _pngs_open(out)
    maps, attrs = load_maps(out[-1])
    assert attrs["kind_of_map"] == "confidence" and len(maps) == 3
    assert all(m.shape[0] == 2 and m.shape[1:] == (48, 64) for m in maps.values())  # 200x150


def test_confidence_maps_accumulate_as_yoo_with_reduce_sum(chain, cli, tmp_path):
    """--reduce sum (Yoo §4.5's accumulation) against the default mean: at every cell the sum
    is the mean times the number of windows covering it, the same count for every class."""
    common = [*chain["acts"], "--model", chain["fsvm"], "--gmm", chain["gmm"], "--pca",
              chain["pca"], "--top", "2", "--limit", "2"]
    mean, _ = load_maps(cli("maps", *common, "-o", tmp_path / "mean").stdout.split()[-1])
    total, attrs = load_maps(cli("maps", *common, "--reduce", "sum", "-o", tmp_path / "sum"
                                 ).stdout.split()[-1])
    assert attrs["reduce"] == "sum" and mean.keys() == total.keys()
    for key in mean:
        m, t = mean[key].astype(np.float64), total[key].astype(np.float64)
        covered = np.abs(m[0]) > 1e-6
        count = t[0][covered] / m[0][covered]
        np.testing.assert_allclose(count, np.round(count), rtol=1e-4)  # whole windows
        assert count.min() >= 1 and count.max() > 1  # windows overlap: not the mean again
        np.testing.assert_allclose(t[1][covered], m[1][covered] * count, rtol=1e-4,
                                   atol=1e-5)  # the same count for the second class


def test_contribution_and_channel_maps_of_scheme2(chain, cli, tmp_path):
    out = cli("maps", *chain["acts"], "--model", chain["svm"], "--guidance", chain["guidance"],
              "--pca", chain["pca"], "--classes", "b", "--limit", "2", "-o", tmp_path / "c"
              ).stdout.split()
    _pngs_open(out)
    maps, attrs = load_maps(out[-1])
    assert attrs["kind_of_map"] == "contribution" and attrs["panels"][0][0].startswith("b ")
    out = cli("maps", *chain["acts"], "--guidance", chain["guidance"], "--pca", chain["pca"],
              "--channels", "0,2", "--limit", "1", "-o", tmp_path / "g").stdout.split()
    _pngs_open(out)
    maps, attrs = load_maps(out[-1])
    assert attrs["panels"] == [["guidance channel 0", "guidance channel 2"]]


def test_contribution_maps_explain_the_score_the_svm_gives(chain, cli, tmp_path):
    """Issue 27.3: each panel is titled with the SVM's own decision value on the image's
    (normalised) encoding, and --top ranks the classes by it."""
    import re

    from featx.io import load_svm

    out = cli("maps", *chain["acts"], "--model", chain["svm"], "--guidance", chain["guidance"],
              "--pca", chain["pca"], "--top", "2", "--limit", "3", "-o", tmp_path / "c"
              ).stdout.split()
    _, attrs = load_maps(out[-1])
    weights, biases, mattrs = load_svm(chain["svm"])
    ids, x, _, _ = read_encodings(chain["enc"][0])
    decision = x @ weights.T + biases
    for image, panels in zip(attrs["ids"], attrs["panels"]):
        row = decision[ids.index(image)]
        shown = [float(re.search(r"SVM score (\S+?)\)", p).group(1)) for p in panels]
        classes = [mattrs["classes"].index(p.split(" ")[0]) for p in panels]
        assert shown == pytest.approx(row[classes], rel=6e-3, abs=1e-3)
        assert classes == list(np.argsort(-row, kind="stable")[:2])  # ranked by the score


def test_maps_find_moved_images(chain, cli, tmp_path):
    import shutil

    moved = tmp_path / "moved"
    shutil.move(chain["root"] / "ds", moved)  # the originals are gone while maps runs
    try:
        res = cli("maps", *chain["acts"], "--guidance", chain["guidance"], "--pca",
                  chain["pca"], "--limit", "1", "-o", tmp_path / "lost", ok=False)
        assert res.exit_code == 1  # without --images the moved photos are not found
        out = cli("maps", *chain["acts"], "--guidance", chain["guidance"], "--pca",
                  chain["pca"], "--images", moved, "--limit", "1", "-o", tmp_path / "g"
                  ).stdout.split()
    finally:
        shutil.move(moved, chain["root"] / "ds")
    _pngs_open(out)


def test_evaluate_plots_confusion(chain, cli, tmp_path):
    out = cli("evaluate", *chain["enc"], "--model", chain["svm"], "--plots", tmp_path / "p"
              ).stdout.split()
    assert [p.rsplit("/", 1)[1] for p in out] == ["metrics.json", "confusion.png"]
    _pngs_open(out)


def test_each_kind_of_map_is_drawn_on_its_scale_with_its_units(chain, cli, tmp_path,
                                                              monkeypatch):
    """Issue 28.8, wired: confidence and contribution maps are scores (the signed scale),
    labelled in the SVM's units, the reduction named; what is drawn is what maps.h5 holds."""
    from featx import plots

    drawn = []
    real = plots.overlays

    def spy(photo, panels, path, **kw):
        drawn.append(([m for _, m in panels], kw))
        return real(photo, panels, path, **kw)

    monkeypatch.setattr(plots, "overlays", spy)
    runs = {
        "sum": ["--model", chain["fsvm"], "--gmm", chain["gmm"], "--reduce", "sum"],
        "mean": ["--model", chain["fsvm"], "--gmm", chain["gmm"]],
        "contribution": ["--model", chain["svm"], "--guidance", chain["guidance"]],
    }
    for name, args in runs.items():
        drawn.clear()
        out = cli("maps", *chain["acts"], *args, "--pca", chain["pca"], "--limit", "1", "-o",
                  tmp_path / name).stdout.split()
        maps, _ = load_maps(out[-1])
        (panels, kw), = drawn
        assert kw["signed"] is True
        np.testing.assert_array_equal(np.stack(panels).astype(np.float32),
                                      next(iter(maps.values())))
        assert kw["label"] == {"sum": "SVM score, sum of the patches on a pixel",
                               "mean": "SVM score, mean of the patches on a pixel",
                               "contribution": "share of the SVM score (mean on a pixel)"}[name]
