"""featx encode through the CLI: dimensions, normalisation, quantisation, provenance."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import read_encodings
from featx.io import load_pca
from tests.conftest import build_chain


@pytest.fixture(scope="module")
def chain(tmp_path_factory, alexnet_weights):
    """Activations (whole, blocks, jitter; conv4, conv5, fc7) of 5 images and a 32-d PCA."""
    root = tmp_path_factory.mktemp("chain")
    return build_chain(root, 5, (300, 240), [
        ["extract", root / "img", "-o", root / "acts", "--weights", alexnet_weights,
         "--views", "whole,blocks,jitter", "--layers", "conv4,conv5,fc7", "--workers", "0",
         "--shard-size", "3"],
        ["fit-pca", root / "acts", "--layer", "conv4", "--dim", "32", "--per-image", "50",
         "-o", root / "pca.h5"],
    ])


def encode(cli, chain, out, *args):
    res = cli("encode", chain / "acts", "--pca", chain / "pca.h5", "-o", out, *args)
    return [read_encodings(p) for p in res.stdout.split()]


def naive_cl45(chain: Path, view: str) -> dict[str, np.ndarray]:
    """Cross-layer pooling spelled out: unfold conv4, PCA, guidance = conv5 at the centres."""
    pca, _ = load_pca(chain / "pca.h5")
    out = {}
    for shard in sorted((chain / "acts").glob("*.h5")):
        with h5py.File(shard) as f:
            ids = [s.decode() for s in f["ids"][:]]
            c4 = torch.from_numpy(f[f"acts/{view}/conv4"][:]).float()
            c5 = torch.from_numpy(f[f"acts/{view}/conv5"][:]).float()
        for i, image_id in enumerate(ids):
            total = 0
            for v in range(c4.shape[1]):  # the view's inputs pooled together
                x = pca.transform(F.unfold(c4[i, v][None], 3)[0].T)  # (121, 32)
                a = c5[i, v, :, 1:12, 1:12].reshape(256, -1).T  # (121, 256) centre units
                total = total + np.einsum("nd,nk->kd", x.numpy(), a.numpy()).reshape(-1)
            p = np.sign(total) * np.sqrt(np.abs(total))
            out[image_id] = p / np.linalg.norm(p)
    return out


def test_cl45_cl45f_cl45c(cli, chain, tmp_path):
    [a, b] = encode(cli, chain, tmp_path / "whole")
    ids = a[0] + b[0]
    x = np.concatenate([a[1], b[1]])
    assert x.shape == (5, 32 * 256) and a[3]["dim"] == 8192
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, rtol=1e-5)
    ref = naive_cl45(chain, "whole")
    np.testing.assert_allclose(x, np.stack([ref[i] for i in ids]), atol=1e-5)

    f = np.concatenate([s[1] for s in encode(cli, chain, tmp_path / "blocks", "--views", "blocks")])
    ref = naive_cl45(chain, "blocks")
    np.testing.assert_allclose(f, np.stack([ref[i] for i in ids]), atol=1e-5)

    c = encode(cli, chain, tmp_path / "both", "--views", "whole,blocks")
    cx = np.concatenate([s[1] for s in c])
    assert cx.shape == (5, 2 * 8192)
    np.testing.assert_allclose(cx, np.concatenate([x, f], 1) / np.sqrt(2), atol=1e-6)
    assert [blk["view"] for blk in c[0][3]["blocks"]] == ["whole", "blocks"]


def test_global_jitter_and_concat(cli, chain, tmp_path):
    out = encode(cli, chain, tmp_path / "gj", "--method", "global,jitter")
    with h5py.File(chain / "acts" / "shard-00000.h5") as f:
        fc7 = f["acts/whole/fc7"][:, 0].astype(np.float64)
        jit = f["acts/jitter/fc7"][:].astype(np.float64).mean(1)
    def norm(v, power=False):
        v = np.sqrt(v) if power else v  # post-ReLU: the signed square root is the square root
        return v / np.linalg.norm(v, axis=1, keepdims=True)
    # the fc baselines' own normalisation: L2 of the mean fc7, no power transform (Yoo T2)
    expect = np.concatenate([norm(fc7), norm(jit)], 1) / np.sqrt(2)
    np.testing.assert_allclose(out[0][1], expect, atol=1e-6)
    assert out[0][3]["normalisation"] == ["l2", "l2"]
    forced = encode(cli, chain, tmp_path / "gjp", "--method", "global,jitter", "--power-norm")
    expect = np.concatenate([norm(fc7, True), norm(jit, True)], 1) / np.sqrt(2)
    np.testing.assert_allclose(forced[0][1], expect, atol=1e-6)
    assert forced[0][3]["normalisation"] == ["sqrt+l2", "sqrt+l2"]
    cl_g = encode(cli, chain, tmp_path / "clg", "--method", "cross-layer,global", "--no-power-norm")
    assert cl_g[0][1].shape[1] == 8192 + 4096
    np.testing.assert_allclose(np.linalg.norm(cl_g[0][1], axis=1), 1, rtol=1e-5)


def test_direct_pooling_baselines(cli, chain, tmp_path):
    out = encode(cli, chain, tmp_path / "base", "--method", "max,sum-sqrt,spp", "--no-l2",
                 "--no-power-norm")
    pca, _ = load_pca(chain / "pca.h5")
    with h5py.File(chain / "acts" / "shard-00000.h5") as f:
        c4 = torch.from_numpy(f["acts/whole/conv4"][:1, 0]).float()
    local = pca.transform(F.unfold(c4, 3)[0].T)  # (121, 32)
    x = out[0][1][0]
    np.testing.assert_allclose(x[:32], local.max(0).values, atol=1e-4)  # max
    s = local.sum(0).numpy()
    np.testing.assert_allclose(x[32:64], np.sign(s) * np.sqrt(np.abs(s)), rtol=1e-4, atol=1e-4)
    grid = local.T.reshape(32, 11, 11)
    assert x.shape == (64 + 32 * 21,)
    np.testing.assert_allclose(x[64:96], grid.amax((1, 2)), atol=1e-4)  # spp level 1
    np.testing.assert_allclose(x[96:128], grid[:, :6, :6].amax((1, 2)), atol=1e-4)  # 2x2 cell 0


def test_sign_quantisation_is_stored_at_two_bits(cli, chain, tmp_path):
    plain = encode(cli, chain, tmp_path / "plain")
    res = cli("encode", chain / "acts", "--pca", chain / "pca.h5", "-o", tmp_path / "q",
              "--quantize", "sign")
    path = res.stdout.split()[0]
    with h5py.File(path) as f:
        assert "enc" not in f and f["codes"].dtype == np.uint8
        assert f["codes"].shape == (3, 8192 // 4)
    ids, x, _, attrs = read_encodings(path)
    assert attrs["quantize"] == "sign" and attrs["dim"] == 8192
    signs = np.sign(plain[0][1])  # read back at unit norm: sign / sqrt(non-zeros)
    np.testing.assert_allclose(x, signs / np.sqrt((signs != 0).sum(1, keepdims=True)), rtol=1e-6)
    raw = cli("encode", chain / "acts", "--pca", chain / "pca.h5", "-o", tmp_path / "r",
              "--quantize", "sign-raw").stdout.split()[0]
    with h5py.File(raw) as f, h5py.File(path) as g:  # the same 2-bit codes
        np.testing.assert_array_equal(f["codes"][:], g["codes"][:])
    _, x, _, attrs = read_encodings(raw)
    assert attrs["quantize"] == "sign-raw"
    np.testing.assert_array_equal(x, signs)  # Liu's sign(P), read as it is


def test_resume_and_refusals(cli, chain, tmp_path, make_images):
    first = cli("encode", chain / "acts", "--pca", chain / "pca.h5", "-o", tmp_path / "e").stdout
    mtime = (tmp_path / "e" / "shard-00000.h5").stat().st_mtime_ns
    again = cli("encode", chain / "acts", "--pca", chain / "pca.h5", "-o", tmp_path / "e").stdout
    assert first == again and (tmp_path / "e" / "shard-00000.h5").stat().st_mtime_ns == mtime
    res = cli("encode", chain / "acts", "--pca", chain / "pca.h5", "-o", tmp_path / "e",
              "--method", "global", ok=False)
    assert res.exit_code == 1 and "methods" in res.stderr and "--overwrite" in res.stderr

    res = cli("encode", chain / "acts", "--pca", chain / "pca.h5", "--layers", "conv3,conv5",
              "-o", tmp_path / "x", ok=False)
    assert res.exit_code == 1 and "has layer='conv4', this run needs layer='conv3'" in res.stderr

    res = cli("encode", chain / "acts", "-o", tmp_path / "x", ok=False)
    assert res.exit_code == 1 and "needs --pca" in res.stderr

    other = tmp_path / "other"  # activations of another backbone
    cli("extract", make_images(1), "-o", other, "--backbone", "efficientnet_lite0",
        "--weights", "none", "--workers", "0")
    res = cli("encode", other, "--pca", chain / "pca.h5", "-o", tmp_path / "x", ok=False)
    assert res.exit_code == 1 and "pca.h5 has backbone='alexnet', this run needs backbone='efficientnet_lite0'" in res.stderr


def test_progress_off_a_terminal_is_plain_lines(chain, tmp_path, monkeypatch):
    """stderr not a terminal (CI, make, a log file): a line when a task starts, every
    FEATX_PROGRESS_EVERY seconds and when it completes; log lines neither padded nor wrapped."""
    from click.testing import CliRunner

    from featx.cli import main

    def cli(*args):
        res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert res.exit_code == 0, res.stderr
        return res

    monkeypatch.setenv("FEATX_PROGRESS_EVERY", "0")  # a line at every step
    res = cli("encode", chain / "acts", "--pca", chain / "pca.h5", "-o", tmp_path / "e" / ("x" * 90))
    lines = res.stderr.splitlines()
    progress = [x for x in lines if x.startswith("encode: ")]
    assert progress[0] == "encode: started, 5 img"
    assert [x.split(",")[0] for x in progress[1:]] == ["encode: 3/5 img (60%)",
                                                        "encode: 5/5 img (100%)"]
    assert "\x1b[" not in res.stderr and "━" not in res.stderr  # no bar, no escape codes
    monkeypatch.setenv("FEATX_PROGRESS_EVERY", "3600")  # only the start and the end
    res = cli("-v", "encode", chain / "acts", "--pca", chain / "pca.h5", "-o", tmp_path / "f")
    progress = [x for x in res.stderr.splitlines() if x.startswith("encode: ")]
    assert len(progress) == 2 and progress[1].startswith("encode: 5/5 img (100%)")
    # a log line longer than 80 columns (the resumed folder's long name) stays one line
    out = tmp_path / ("y" * 100)
    args = ("extract", chain / "img", "--weights", "none", "--workers", "0", "-o", out)
    cli(*args)
    lines = cli(*args).stderr.splitlines()
    said = [x for x in lines if "resuming" in x]
    assert len(said) == 1 and said[0].startswith("INFO     resuming: 1 of 1 shards")
    assert said[0].endswith(str(out)) and not any(x.endswith(" ") for x in lines)
