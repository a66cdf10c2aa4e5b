"""Wiring: for every registered encode method, the encode stage's output equals the pure
functions of featx.encoders applied by hand to the same activations. Swapping two methods in
the registry (mpp and nfk, say) fails here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featx import encoders
from featx.encoders import LocalSpec
from featx.fit import init_guidance
from featx.io import ActivationShard, load_gmm, load_guidance, load_pca, read_header
from featx.io import save_guidance
from featx.methods import METHODS
from featx.stages import encode
from featx.stages.encode import EncodeConfig
from tests.conftest import build_chain, read_encodings


@pytest.fixture(scope="module")
def acts(tmp_path_factory, alexnet_weights):
    root = tmp_path_factory.mktemp("methods")
    common = ["--weights", alexnet_weights, "--workers", "0"]
    return build_chain(root, 3, (300, 260), [
        ["extract", root / "img", "-o", root / "grid", *common, "--views",
         "whole,jitter,centre,crops:2", "--layers", "conv4,conv5,fc7"],
        ["fit-pca", root / "grid", "--layer", "conv4", "--dim", "6", "--per-image", "20",
         "-o", root / "pca.h5"],
        ["extract", root / "img", "-o", root / "pyr", *common, "--views", "pyramid",
         "--scales", "3", "--layers", "fc7"],
        ["fit-pca", root / "pyr", "--layer", "fc7", "--view", "pyramid", "--local", "dense",
         "--dim", "5", "-o", root / "pca-fc7.h5"],
        ["fit-gmm", root / "pyr", "--pca", root / "pca-fc7.h5", "--components", "2",
         "-o", root / "gmm.h5"],
    ])


@pytest.fixture(scope="module")
def guidance(acts):
    """A seeded (untrained) 3x3 guidance of 4 channels over the 5-d pyramid vectors, with the
    provenance fit-guidance would record (the GMM's, which was fitted on the same vectors)."""
    _, attrs = load_gmm(acts / "gmm.h5")
    with ActivationShard(acts / "pyr" / "shard-00000.h5") as shard:
        sizes = list(shard.attrs["pyramid_sizes"])
    return save_guidance(acts / "guidance.h5", init_guidance(5, 4, 3, seed=2),
                         {**{k: v for k, v in attrs.items() if k != "kind"},
                          "scales": list(range(len(sizes))), "pyramid_sizes": sizes,
                          "channels": 4, "kernel": 3})


def _local(root):
    """PCA-reduced 3x3 conv4 subarrays (B, 121, 6), by unfold + PCA.transform, and conv5 at
    their centres (B, 121, 256)."""
    with ActivationShard(root / "grid" / "shard-00000.h5") as shard:
        conv4 = torch.from_numpy(shard.read("whole", "conv4"))[:, 0]
        conv5 = torch.from_numpy(shard.read("whole", "conv5"))[:, 0]
    pca, _ = load_pca(root / "pca.h5")
    sub = LocalSpec.parse("subarray:3x3").extract(conv4)  # (B, 121, 2304)
    x = pca.transform(sub.flatten(0, 1)).view(sub.shape[0], 121, -1)
    return x, conv5[:, :, 1:12, 1:12].flatten(2).transpose(1, 2)


def _fc7(root, view):
    with ActivationShard(root / "grid" / "shard-00000.h5") as shard:
        return torch.from_numpy(shard.read(view, "fc7"))


def _scales(root):
    with ActivationShard(root / "pyr" / "shard-00000.h5") as shard:
        raw = [torch.from_numpy(s) for s in shard.pyramid("fc7")]
    pca, _ = load_pca(root / "pca-fc7.h5")
    gmm, _ = load_gmm(root / "gmm.h5")
    return [pca.transform(s.flatten(0, 1)).view(*s.shape[:2], -1) for s in raw], gmm


def _guided(root):
    scales, _ = _scales(root)
    g, _ = load_guidance(root / "guidance.h5")
    return encoders.guided_pool(scales, g.weight, g.bias)


def _fv(root, fn):
    scales, gmm = _scales(root)
    return fn(scales, gmm)


N = encoders.normalize
EXPECTED = {  # the pure functions, applied by hand
    "cross-layer": lambda r: N(encoders.cross_layer_pool(*_local(r))),
    "max": lambda r: N(encoders.max_pool(_local(r)[0])),
    "sum-sqrt": lambda r: N(encoders.sum_pool(_local(r)[0])),
    "spp": lambda r: N(encoders.spp(_local(r)[0].transpose(1, 2).reshape(-1, 6, 11, 11))),
    # the fc baselines: the L2-normalised mean, no power transform (Yoo et al. Table 2)
    "global": lambda r: N(_fc7(r, "whole").mean(1), power=False),
    "jitter": lambda r: N(_fc7(r, "jitter").mean(1), power=False),
    "centre": lambda r: N(_fc7(r, "centre").mean(1), power=False),
    "crops": lambda r: N(_fc7(r, "crops").mean(1), power=False),
    "mpp-sp": lambda r: _fv(r, lambda s, g: encoders.mpp_sp(s, g, [227, 321, 454])),
    "fisher": lambda r: _fv(r, lambda s, g: encoders.fisher_vector(
        torch.cat(s, 1), g.means_, g.variances_, g.priors_)),
    "vlad": lambda r: _fv(r, lambda s, g: encoders.vlad(torch.cat(s, 1), g.means_)),
    "mpp": lambda r: _fv(r, encoders.mpp),
    "nfk": lambda r: _fv(r, encoders.nfk),
    "csf": lambda r: _fv(r, encoders.csf),
    "cross-layer-guided": lambda r: N(_guided(r)),
}


def test_every_registered_method_is_checked_here():
    assert set(EXPECTED) == set(METHODS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_stage_output_equals_the_pure_function(acts, guidance, tmp_path, name):
    pyramid = METHODS[name].view == "pyramid"
    guided = "guidance" in METHODS[name].needs
    cfg = EncodeConfig(methods=("cross-layer" if guided else name,), device="cpu",
                       pca=str(acts / ("pca-fc7.h5" if pyramid else "pca.h5")),
                       gmm=str(acts / "gmm.h5") if pyramid and not guided else None,
                       guidance=str(guidance) if guided else None)
    [path] = encode.run([acts / ("pyr" if pyramid else "grid")], tmp_path / "enc", cfg)
    ids, got, _, attrs = read_encodings(path)
    want = EXPECTED[name](acts).numpy()
    assert got.shape == want.shape and attrs["dim"] == want.shape[1]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_the_checks_tell_mpp_nfk_and_csf_apart(acts):
    """The comparison above could not catch a swap if two methods gave the same numbers."""
    mpp, nfk = EXPECTED["mpp"](acts), EXPECTED["nfk"](acts)
    assert (mpp - nfk).abs().max() > 1e-3
    g, j = EXPECTED["global"](acts), EXPECTED["jitter"](acts)
    assert (g - j).abs().max() > 1e-3


def test_mpp_sp_places_vectors_by_the_recorded_receptive_fields(acts, tmp_path):
    """extract records each pyramid vector's receptive-field geometry; encode's MPP + SP
    places vectors by it. With the geometry rewritten (row 0 at pixel 0, stride 80: rows move
    between thirds), the stage's output is mpp_sp of that geometry, not of the estimate."""
    import json
    import shutil

    import h5py

    from featx.backbones import get_backbone
    from featx.backbones.features import receptive_field

    head = read_header(acts / "pyr" / "shard-00000.h5")
    sizes = list(head["pyramid_sizes"])
    bb = get_backbone("alexnet")
    assert head["pyramid_geometry"]["fc7"] == [list(receptive_field(bb, "fc7", s))
                                               for s in sizes]
    moved = [[0.0, 80.0]] * len(sizes)
    shutil.copytree(acts / "pyr", tmp_path / "pyr")
    with h5py.File(tmp_path / "pyr" / "shard-00000.h5", "a") as f:
        f.attrs["pyramid_geometry"] = "json:" + json.dumps({"fc7": moved})
    cfg = EncodeConfig(methods=("mpp-sp",), device="cpu", pca=str(acts / "pca-fc7.h5"),
                       gmm=str(acts / "gmm.h5"))
    [path] = encode.run([tmp_path / "pyr"], tmp_path / "enc", cfg)
    got = read_encodings(path)[1]
    want = _fv(acts, lambda s, g: encoders.mpp_sp(s, g, sizes, moved)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    estimate = _fv(acts, lambda s, g: encoders.mpp_sp(s, g, sizes)).numpy()
    assert np.abs(got - estimate).max() > 1e-3
