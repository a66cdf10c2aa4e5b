"""A small labelled chain made through the Python stages (random AlexNet weights): grid
activations (conv4, conv5; whole and 2x2 blocks), fc7 pyramids of 2 scales, and the models the
stage tests start from."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from featx.datasets import open_dataset
from featx.stages import encode, extract, fit_pca, train_svm
from featx.stages.encode import EncodeConfig
from featx.stages.extract import ExtractConfig
from featx.stages.fit_pca import FitPCAConfig
from featx.stages.train_svm import TrainSVMConfig
from tests.conftest import class_folders


@pytest.fixture(scope="session")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    images = class_folders(root / "img", ["a", "b", "c"], 4, (80, 64))
    source = open_dataset("folder", str(images), "")  # class folders: labelled
    grid = extract.run(source, root / "acts", ExtractConfig(
        views=("whole", "blocks"), weights="none", input_size=96, workers=0, shard_size=7,
        device="cpu"))
    pyr = extract.run(source, root / "pyr", ExtractConfig(
        views=("pyramid:2",), layers=("fc7",), weights="none", workers=0, device="cpu"))
    pca = fit_pca.run(grid, root / "pca.h5", FitPCAConfig(
        layer="conv4", view="blocks", dim=16, per_image=20, device="cpu"))[0]
    pyr_pca = fit_pca.run(pyr, root / "pyr-pca.h5", FitPCAConfig(
        layer="fc7", view="pyramid", local="dense", dim=8, per_image=30, device="cpu"))[0]
    enc = encode.run(grid, root / "enc", EncodeConfig(pca=str(pca), device="cpu"))
    return SimpleNamespace(root=root, images=images, grid=grid, pyr=pyr, pca=pca,
                           pyr_pca=pyr_pca, enc=enc)


@pytest.fixture(scope="session")
def trained(labelled, tmp_path_factory):
    """An SVM of the labelled chain's encodings, C chosen from two by 2-fold CV."""
    out = tmp_path_factory.mktemp("svm") / "svm.h5"
    return train_svm.run(labelled.enc, out, TrainSVMConfig(c=(0.01, 1.0), folds=2,
                                                           device="cpu"))[0]
