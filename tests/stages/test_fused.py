"""extract --encode (the fused pass) writes the encodings that extract then encode write:
the same numbers, ids, labels and skipped images, bitwise, for methods on the local, guide
and fc layers of the grid views and on the pyramid's dense vectors; no activations stored."""

from __future__ import annotations

import numpy as np
import pytest

from featx.datasets import open_dataset
from featx.encoding import EncodeConfig
from featx.io.shards import EncodingShard, read_header
from featx.stages import encode, extract, fit_gmm
from featx.stages.extract import ExtractConfig
from featx.stages.fit_gmm import FitGMMConfig


def _contents(paths):
    out = []
    for p in paths:
        with EncodingShard(p) as shard:
            out.append((p.name, shard.ids, shard.encodings(), shard.labels(), shard.skipped,
                        shard.attrs["dim"], shard.attrs["methods"], shard.attrs["normalisation"]))
    return out


def _same(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x[0] == y[0] and x[1] == y[1] and x[4] == y[4] and x[5:] == y[5:]
        np.testing.assert_array_equal(x[2], y[2])  # bitwise
        np.testing.assert_array_equal(x[3], y[3])


def test_grid_methods_equal_the_two_steps(labelled, tmp_path):
    source = open_dataset("folder", str(labelled.images), "")
    base = dict(layers=("conv4", "conv5", "fc7"), views=("whole", "blocks"), weights="none",
                input_size=96, workers=0, shard_size=5, batch_size=3, device="cpu")
    enc = EncodeConfig(methods=("cross-layer", "global"), views=("whole", "blocks"),
                       pca=str(labelled.pca), device="cpu")
    acts = extract.run(source, tmp_path / "acts", ExtractConfig(**base))
    two = encode.run(acts, tmp_path / "enc", enc)
    one = extract.run(source, tmp_path / "fused", ExtractConfig(**base, encode=enc))
    assert [p.name for p in one] == [p.name for p in two] == ["shard-00000.h5", "shard-00001.h5",
                                                              "shard-00002.h5"]
    assert read_header(one[0])["kind"] == "encodings"
    _same(_contents(one), _contents(two))


def test_pyramid_methods_equal_the_two_steps(labelled, tmp_path):
    source = open_dataset("folder", str(labelled.images), "")
    base = dict(views=("pyramid:2",), layers=("fc7",), weights="none", workers=0,
                device="cpu", shard_size=8)
    gmm = fit_gmm.run(labelled.pyr, tmp_path / "gmm.h5", FitGMMConfig(
        pca=str(labelled.pyr_pca), components=2, per_image=30, device="cpu"))[0]
    enc = EncodeConfig(methods=("fisher",), pca=str(labelled.pyr_pca), gmm=str(gmm),
                       device="cpu")
    acts = extract.run(source, tmp_path / "acts", ExtractConfig(**base))
    two = encode.run(acts, tmp_path / "enc", enc)
    one = extract.run(source, tmp_path / "fused", ExtractConfig(**base, encode=enc))
    _same(_contents(one), _contents(two))


def test_a_fused_rerun_resumes_and_other_settings_are_refused(labelled, tmp_path):
    from featx.errors import OutputExistsError

    source = open_dataset("folder", str(labelled.images), "")
    base = dict(views=("whole",), weights="none", input_size=96, workers=0, shard_size=6,
                device="cpu")
    enc = EncodeConfig(pca=str(labelled.pca), views=("whole",), device="cpu")
    first = extract.run(source, tmp_path / "f", ExtractConfig(**base, encode=enc))
    stamps = [p.stat().st_mtime_ns for p in first]
    again = extract.run(source, tmp_path / "f", ExtractConfig(**base, encode=enc))
    assert [p.stat().st_mtime_ns for p in again] == stamps  # kept, not rewritten
    other = EncodeConfig(pca=str(labelled.pca), views=("whole",), l2=False, device="cpu")
    with pytest.raises(OutputExistsError, match="l2"):
        extract.run(source, tmp_path / "f", ExtractConfig(**base, encode=other))


def test_the_fused_pass_refuses_what_the_extraction_lacks(labelled, tmp_path):
    from featx.errors import InputError

    source = open_dataset("folder", str(labelled.images), "")
    enc = EncodeConfig(pca=str(labelled.pca), views=("blocks",), device="cpu")
    with pytest.raises(InputError, match="--encode reads blocks conv4"):
        extract.run(source, tmp_path / "f", ExtractConfig(
            views=("whole",), weights="none", input_size=96, workers=0, device="cpu",
            encode=enc))
    assert not (tmp_path / "f").exists() or not list((tmp_path / "f").glob("shard-*"))
