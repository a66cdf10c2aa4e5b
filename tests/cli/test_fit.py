"""featx fit-pca and featx fit-gmm through the CLI, on activation shards they read back."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from featx.io import load_gmm, load_pca
from featx.io.h5 import read_attrs


@pytest.fixture
def acts(cli, make_images, alexnet_weights, tmp_path) -> Path:
    out = tmp_path / "acts"
    cli("extract", make_images(6), "-o", out, "--weights", alexnet_weights, "--workers", "0",
        "--layers", "conv4,conv5", "--shard-size", "4")
    return out


def test_fit_pca_on_conv4_subarrays(cli, acts, tmp_path):
    res = cli("fit-pca", acts, "--layer", "conv4", "--dim", "64", "--per-image", "40",
              "-o", tmp_path / "pca.h5")
    assert res.stdout.strip() == str(tmp_path / "pca.h5")
    pca, attrs = load_pca(tmp_path / "pca.h5")
    assert pca.components_.shape == (64, 2304) and pca.mean_.shape == (2304,)
    assert attrs["local"] == "subarray:3x3" and attrs["layer"] == "conv4"
    assert attrs["backbone"] == "alexnet" and attrs["n_samples"] == 6 * 40
    assert attrs["featx_format"] == 2 and "featx -q fit-pca " in attrs["command"]
    gram = pca.components_ @ pca.components_.T
    np.testing.assert_allclose(gram.numpy(), np.eye(64), atol=1e-4)
    ev = pca.explained_variance_.numpy()
    assert np.all(np.diff(ev) <= 0) and ev[-1] >= 0


def test_fit_gmm_on_pca_reduced_features_via_a_pipe(cli, acts, tmp_path):
    pca_path = cli("fit-pca", acts, "--layer", "conv5", "--dim", "4", "-o",
                   tmp_path / "pca.h5").stdout.strip()
    listing = "\n".join(str(p) for p in sorted(acts.glob("*.h5")))
    res = cli("fit-gmm", "-", "--pca", pca_path, "--components", "2", "--per-image", "1",
              "-o", tmp_path / "gmm.h5", input=listing)
    gmm, attrs = load_gmm(res.stdout.strip())
    assert gmm.means_.shape == (2, 4) and gmm.variances_.shape == (2, 4)
    assert abs(gmm.priors_.sum().item() - 1) < 1e-6
    assert attrs["layer"] == "conv5" and attrs["local"] == "dense" and attrs["n_samples"] == 6
    assert len(attrs["pca_sha256"]) == 16
    with h5py.File(tmp_path / "gmm.h5") as f:
        assert f["history"].shape == (attrs["n_iter"],)


def test_fit_gmm_refuses_activations_of_other_weights(cli, acts, make_images, tmp_path):
    cli("fit-pca", acts, "--layer", "conv5", "--dim", "4", "-o", tmp_path / "pca.h5")
    other = tmp_path / "other"
    cli("extract", make_images(3, folder="more"), "-o", other, "--weights", "none",
        "--workers", "0", "--layers", "conv5")
    res = cli("fit-gmm", other, "--pca", tmp_path / "pca.h5", "--components", "1",
              "-o", tmp_path / "gmm.h5", ok=False)
    assert res.exit_code == 1 and "weights" in res.stderr and "pca.h5 was fitted" in res.stderr


def test_fit_errors(cli, acts, tmp_path):
    res = cli("fit-pca", acts, "--layer", "conv3", "-o", tmp_path / "p.h5", ok=False)
    assert res.exit_code == 1 and "no layer 'conv3'" in res.stderr and "conv4, conv5" in res.stderr
    res = cli("fit-pca", acts, "--layer", "conv4", "--dim", "500", "--per-image", "10",
              "-o", tmp_path / "p.h5", ok=False)
    assert res.exit_code == 1 and "60 sample(s) are too few for 500 components" in res.stderr
    cli("fit-pca", acts, "--layer", "conv5", "--dim", "2", "-o", tmp_path / "p.h5")
    res = cli("fit-pca", acts, "--layer", "conv5", "--dim", "2", "-o", tmp_path / "p.h5", ok=False)
    assert res.exit_code == 1 and "exists; pass --overwrite" in res.stderr
    res = cli("fit-gmm", acts, "--pca", tmp_path / "p.h5", "--components", "256",
              "--per-image", "10", "-o", tmp_path / "g.h5", ok=False)
    assert res.exit_code == 1 and "60 samples are too few for 256 components" in res.stderr
    res = cli("fit-gmm", acts, "--pca", next(acts.glob("*.h5")), "-o", tmp_path / "g.h5",
              ok=False)
    assert res.exit_code == 1 and "is not a pca model" in res.stderr
    with h5py.File(tmp_path / "p.h5") as f:
        assert read_attrs(f)["kind"] == "pca"
