"""The pyramid view and the Fisher family, through the CLI: extract -> fit -> encode."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from tests.conftest import read_encodings
from featx.io import load_pca
from featx.io.h5 import read_attrs
from tests.conftest import build_chain


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory, alexnet_weights):
    root = tmp_path_factory.mktemp("pyr")
    common = ["--weights", alexnet_weights, "--views", "pyramid", "--scales", "2",
              "--layers", "fc7", "--workers", "0"]
    return build_chain(root, 4, (320, 260), [
        ["extract", root / "img", "-o", root / "raw", *common],
        ["fit-pca", root / "raw", "--layer", "fc7", "--view", "pyramid", "--local", "dense",
         "--dim", "8", "-o", root / "pca.h5"],
        ["extract", root / "img", "-o", root / "proj", *common, "--project", root / "pca.h5"],
        ["fit-gmm", root / "proj", "--pca", root / "pca.h5", "--components", "3",
         "-o", root / "gmm.h5"],
    ])


def test_pyramid_layout(pyramid):
    with h5py.File(pyramid / "raw" / "shard-00000.h5") as f:
        attrs = read_attrs(f)
        assert attrs["pyramid_sizes"] == [227, 321]
        assert attrs["pyramid_shapes"] == [{"fc7": [1, 4096]}, {"fc7": [16, 4096]}]
        assert f["acts/pyramid/fc7/s0"].shape == (4, 1, 4096)
        assert f["acts/pyramid/fc7/s1"].shape == (4, 16, 4096)


def test_project_equals_projecting_the_stored_vectors(pyramid):
    pca, _ = load_pca(pyramid / "pca.h5")
    with h5py.File(pyramid / "raw" / "shard-00000.h5") as raw, \
            h5py.File(pyramid / "proj" / "shard-00000.h5") as proj:
        assert read_attrs(proj)["projected"]
        for s in ("s0", "s1"):
            x = raw[f"acts/pyramid/fc7/{s}"][:].astype(np.float32)
            # the raw file holds float16 roundings of what --project projected
            ref = pca.transform(x.reshape(-1, 4096)).reshape(x.shape[0], x.shape[1], 8)
            got = proj[f"acts/pyramid/fc7/{s}"][:].astype(np.float32)
            np.testing.assert_allclose(got, ref, rtol=2e-2, atol=2e-2 * np.abs(ref).max())


@pytest.mark.parametrize(("method", "dim"), [("fisher", 48), ("mpp", 48), ("nfk", 48),
                                             ("csf", 96), ("vlad", 24)])
def test_fisher_family_encodings(cli, pyramid, tmp_path, method, dim):
    res = cli("encode", pyramid / "proj", "--gmm", pyramid / "gmm.h5", "--method", method,
              "-o", tmp_path / method)
    ids, x, _, attrs = read_encodings(res.stdout.split()[0])
    assert x.shape == (4, dim) and attrs["dim"] == dim  # 2 K D = 2 * 3 * 8
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, rtol=1e-5)


def test_unprojected_shards_are_projected_at_encode_time(cli, pyramid, tmp_path):
    a = cli("encode", pyramid / "proj", "--gmm", pyramid / "gmm.h5", "--method", "mpp",
            "-o", tmp_path / "a").stdout.split()[0]
    b = cli("encode", pyramid / "raw", "--gmm", pyramid / "gmm.h5", "--method", "mpp",
            "-o", tmp_path / "b").stdout.split()[0]
    np.testing.assert_allclose(read_encodings(a)[1], read_encodings(b)[1], atol=3e-2)
    res = cli("encode", pyramid / "raw", "--method", "mpp", "-o", tmp_path / "c", ok=False)
    assert res.exit_code == 1 and "needs --gmm" in res.stderr


def test_pyramid_errors(cli, make_images, tmp_path, pyramid):
    res = cli("extract", make_images(1), "-o", tmp_path / "x", "--weights", "none",
              "--views", "pyramid", "--layers", "logits", ok=False)
    assert res.exit_code == 1 and "logits is neither" in res.stderr
    res = cli("extract", make_images(1), "-o", tmp_path / "y", "--weights", "none",
              "--views", "whole", "--project", pyramid / "pca.h5", ok=False)
    assert res.exit_code == 1 and "--views pyramid" in res.stderr


def test_pyramid_batches_are_bounded_by_pixels(cli, make_images, tmp_path, monkeypatch):
    """A pyramid image counts as the backbone-sized inputs of its pixels (2 scales of 227 and
    321: ceil((227² + 321²) / 227²) = 3), so --batch-size 6 forwards 2 images a batch and
    --batch-size 64 no more than 21 — not 64 images of every scale at once."""
    from featx.backbones import DenseFC  # the class the engine runs

    seen: list[int] = []
    forward = DenseFC.forward

    def spy(self, x):
        if not x.is_meta:  # not the shape probe
            seen.append(x.shape[0])
        return forward(self, x)

    monkeypatch.setattr(DenseFC, "forward", spy)
    images = make_images(5)
    for batch, most in ((6, 2), (64, 21)):
        seen.clear()
        cli("extract", images, "-o", tmp_path / f"b{batch}", "--weights", "none", "--views",
            "pyramid", "--scales", "2", "--layers", "fc7", "--workers", "0",
            "--batch-size", batch)
        assert max(seen) == min(most, 5) and sum(seen) == 2 * 5  # every image at both scales
