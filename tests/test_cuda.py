"""CPU-vs-CUDA equivalence: the same code path on both devices gives the same numbers.
Marked ``gpu``: skipped where no CUDA GPU is visible (conftest)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featx import encoders, svm
from featx.fit import PCA, GaussianMixture
from featx.stages import extract
from featx.stages.extract import ExtractConfig
from featx.images import folder_source
from featx.io import ActivationShard

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def test_gram_matrix():
    x = np.random.default_rng(0).normal(size=(300, 40_000)).astype(np.float32)
    np.testing.assert_allclose(svm.gram(x, CUDA), svm.gram(x, torch.device("cpu")),
                               rtol=1e-5, atol=1e-3)


def test_pca():
    x = np.random.default_rng(0).normal(size=(5000, 64)) @ np.random.default_rng(1).normal(size=(64, 64))
    cpu = PCA(n_components=16).fit(x.astype(np.float32))
    gpu = PCA(n_components=16, device="cuda").fit(x.astype(np.float32))
    np.testing.assert_allclose(gpu.explained_variance_.cpu(), cpu.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(np.abs(gpu.components_.cpu()), np.abs(cpu.components_), atol=1e-3)


def test_gmm_from_the_same_start():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(m, 1, size=(2000, 8)) for m in (-3, 0, 3)]).astype(np.float32)
    init = x[[0, 2000, 4000]]
    cpu = GaussianMixture(n_components=3, means_init=init, max_iter=20, tol=0).fit(x)
    gpu = GaussianMixture(n_components=3, means_init=init, max_iter=20, tol=0,
                          device="cuda").fit(x)
    np.testing.assert_allclose(gpu.means_.cpu(), cpu.means_, atol=1e-3)
    assert gpu.lower_bound_ == pytest.approx(cpu.lower_bound_, rel=1e-5)


@pytest.mark.parametrize("sparse", [None, True, False])  # both moment paths on the device
def test_fisher_vector(sparse):
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(4, 500, 16)).astype(np.float32))
    means = torch.from_numpy(rng.normal(size=(8, 16)).astype(np.float32))
    var = torch.from_numpy(rng.uniform(0.5, 2, size=(8, 16)).astype(np.float32))
    pri = torch.full((8,), 1 / 8)
    cpu = encoders.fisher_vector(x, means, var, pri, sparse=sparse)
    gpu = encoders.fisher_vector(*(t.to(CUDA) for t in (x, means, var, pri)), sparse=sparse)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5)


def test_extract_under_autocast(make_images, tmp_path):
    images = make_images(3)
    out = {}
    for device in ("cpu", "cuda"):
        cfg = ExtractConfig(weights="none", device=device, workers=0, dtype="float32")
        [path] = extract.run(folder_source(images), tmp_path / device, cfg)
        with ActivationShard(path) as shard:
            out[device] = shard.read("whole", "conv5")
    # autocast runs the convolutions in float16 on the GPU
    scale = np.abs(out["cpu"]).max()
    np.testing.assert_allclose(out["cuda"], out["cpu"], atol=2e-2 * scale)
