"""The whole chain through the CLI: extract | fit-pca | encode | train-svm | evaluate."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image


def two_class_folder(root, n=8, seed=0):
    """Images of two kinds a CNN tells apart even with random weights: stripes vs blobs."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for cls in ("stripes", "blobs"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                if cls == "stripes":
                    period = int(rng.integers(4, 9))
                    row = (np.arange(160) // period % 2 * 255).astype(np.uint8)
                    img = np.repeat(np.repeat(row[None, :, None], 120, 0), 3, 2)
                else:
                    small = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
                    img = np.asarray(Image.fromarray(small).resize((160, 120), Image.BICUBIC))
                Image.fromarray(img).save(root / split / cls / f"{i}.png")


def test_chain_through_the_cli(cli, tmp_path, alexnet_weights):
    two_class_folder(tmp_path / "data")
    common = ["--dataset", "folder", "--root", tmp_path / "data", "--weights", alexnet_weights,
              "--layers", "conv4,conv5", "--workers", "0"]
    train = cli("extract", *common, "--split", "train", "-o", tmp_path / "acts-train").stdout
    test = cli("extract", *common, "--split", "test", "-o", tmp_path / "acts-test").stdout
    pca = cli("fit-pca", "-", "--layer", "conv4", "--dim", "16", "--per-image", "30",
              "-o", tmp_path / "pca.h5", input=train).stdout.strip()
    enc_train = cli("encode", "-", "--pca", pca, "-o", tmp_path / "enc-train", input=train).stdout
    enc_test = cli("encode", "-", "--pca", pca, "-o", tmp_path / "enc-test", input=test).stdout
    model = cli("train-svm", "-", "-o", tmp_path / "svm.h5", input=enc_train).stdout.strip()
    res = cli("evaluate", "-", "--model", model, input=enc_test)
    metrics = json.loads(res.stdout)
    assert metrics["metric"] == "accuracy" and metrics["n_images"] == 16
    assert metrics["classes"] == ["blobs", "stripes"] and metrics["split"] == "test"
    assert metrics["top1"] >= 0.9  # random conv features still separate stripes from blobs
    # --json writes the file and prints its path instead
    res = cli("evaluate", tmp_path / "enc-test", "--model", model, "--json", tmp_path / "m.json")
    assert res.stdout.strip() == str(tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["top1"] == metrics["top1"]
    # C chosen by cross-validation on the training split, recorded in the model
    auto = cli("train-svm", tmp_path / "enc-train", "--C", "auto", "--folds", "3", "-o",
               tmp_path / "auto.h5").stdout.strip()
    from featx.io import load_svm
    from featx.svm import AUTO_C

    attrs = load_svm(auto)[2]
    assert attrs["C_grid"] == list(AUTO_C) and attrs["C"] in AUTO_C and attrs["folds"] == 3
    scores = {a: b for a, b, _ in attrs["cv_scores"]}  # C, held-out score, held-out loss
    assert scores[attrs["C"]] >= max(scores.values()) - 1 / attrs["n_train"] - 1e-12
    res = cli("train-svm", tmp_path / "enc-train", "--C", "1,-2", "-o", tmp_path / "x.h5",
              ok=False)
    assert res.exit_code == 2 and "every C must be a finite number > 0" in res.stderr


def test_evaluate_refuses_other_encodings_and_voc_metric_on_single_labels(cli, tmp_path,
                                                                           alexnet_weights):
    two_class_folder(tmp_path / "data", n=4)
    common = ["--dataset", "folder", "--root", tmp_path / "data", "--weights", alexnet_weights,
              "--layers", "fc7", "--workers", "0", "--split", "train"]
    acts = cli("extract", *common, "-o", tmp_path / "acts").stdout
    g = cli("encode", "-", "--method", "global", "-o", tmp_path / "g", input=acts).stdout
    cli("train-svm", "-", "-o", tmp_path / "svm.h5", input=g)
    j = cli("encode", tmp_path / "acts", "--method", "global", "--power-norm",
            "-o", tmp_path / "j").stdout  # global's own is L2 alone: these differ
    res = cli("evaluate", "-", "--model", tmp_path / "svm.h5", input=j, ok=False)
    assert res.exit_code == 1 and "normalisation" in res.stderr
    res = cli("evaluate", "-", "--model", tmp_path / "svm.h5", "--dataset", "voc07", input=g,
              ok=False)
    assert res.exit_code == 1 and "multi-label" in res.stderr
    res = cli("train-svm", tmp_path / "acts", "-o", tmp_path / "x.h5", ok=False)
    assert res.exit_code == 1 and "not encodings" in res.stderr
