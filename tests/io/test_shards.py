"""The HDF5 shard format: typed writers and readers, atomic writes, discovery, the sign codec,
and files of the first format version."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from featx.errors import InputError, OutputExistsError
from featx.io import ActivationShard, ActivationWriter, EncodingShard, EncodingWriter
from featx.io import output_folder, read_header, shard_paths
from featx.io.h5 import read_attrs
from featx.io.shards import pack_sign, unpack_sign


def test_attrs_round_trip(tmp_path):
    attrs = {"backbone": "alexnet", "input_size": 227, "layers": ["conv4", "conv5"],
             "shapes": {"conv4": [256, 13, 13]}, "mean": [0.5, 0.25], "split": "", "x": None}
    w = ActivationWriter(tmp_path / "shard-00000.h5", attrs, label_kind="multi", num_classes=3,
                         view_attrs={"whole": {"count": 1}})
    w.append(["a", "b"], {("whole", "conv5"): np.ones((2, 1, 4), np.float16)},
             {("fc7", 0): np.full((2, 3, 5), 2, np.float16)},
             labels=np.array([[1, -1, 0], [0, 1, 1]]))
    w.skip("c", "cannot decode image c")
    path = w.commit()
    with h5py.File(path) as f:
        got = read_attrs(f)
        assert f["labels"][:].tolist() == [[1, -1, 0], [0, 1, 1]] and f["labels"].dtype == np.int8
        assert f["acts/whole/conv5"].chunks == (1, 1, 4)
        assert read_attrs(f["acts/whole"]) == {"count": 1}
    assert {k: got[k] for k in attrs} == attrs
    assert got["featx_format"] == 2 and got["num_images"] == 2 and got["label_kind"] == "multi"
    head = read_header(path)
    assert head["ids"] == ["a", "b"] and head["skipped_ids"] == ["c"]
    with ActivationShard(path) as shard:
        assert shard.skipped == [("c", "cannot decode image c")]
        assert shard.read("whole", "conv5", slice(1, 2)).dtype == np.float32
        np.testing.assert_array_equal(shard.read("whole", "conv5"), np.ones((2, 1, 4)))
        [s0] = shard.pyramid("fc7")
        np.testing.assert_array_equal(s0, np.full((2, 3, 5), 2))
        with pytest.raises(InputError, match="has no blocks conv4; extract with --views blocks"):
            shard.read("blocks", "conv4")


def test_readers_refuse_other_kinds_and_non_finite_values(tmp_path):
    w = ActivationWriter(tmp_path / "a.h5", {}, label_kind=None)
    w.append(["a"], {("whole", "conv5"): np.array([[[np.nan]]], np.float16)}, {})
    path = w.commit()
    with pytest.raises(InputError, match="holds 'activations', not encodings"):
        EncodingShard(path)
    with ActivationShard(path) as shard, pytest.raises(InputError, match="NaN/Inf"):
        shard.read("whole", "conv5")


@pytest.mark.parametrize("quantize", ["none", "sign", "sign-raw"])
def test_encoding_shard_round_trip(tmp_path, quantize):
    x = np.random.default_rng(0).normal(size=(3, 10)).astype(np.float32)
    with EncodingWriter(tmp_path / "e.h5", {}, label_kind="single", quantize=quantize) as w:
        w.append(["a", "b", "c"], x, np.array([0, 1, 1]))
        path = w.commit(dim=10)
    with EncodingShard(path) as shard:
        # sign codes come back at unit L2 norm, like every other encoding; sign-raw as
        # Liu's sign(P) in {-1, 0, 1}
        want = {"none": x, "sign": np.sign(x) / np.sqrt(10), "sign-raw": np.sign(x)}[quantize]
        np.testing.assert_array_equal(shard.encodings(), want)
        assert shard.label_kind == "single" and shard.labels().tolist() == [0, 1, 1]


def test_writes_are_atomic(tmp_path):
    w = ActivationWriter(tmp_path / "shard-00000.h5", {}, label_kind=None)
    w.append(["a"], {("whole", "x"): np.zeros((1, 2))}, {})
    assert not (tmp_path / "shard-00000.h5").exists()
    with pytest.raises(InputError, match="no shards found"):
        shard_paths([tmp_path])  # the temporary file is not a shard
    w.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), EncodingWriter(tmp_path / "shard-00002.h5", {},
                                                     label_kind=None):
        raise RuntimeError("a failure inside the writer aborts it")
    assert list(tmp_path.iterdir()) == []
    ActivationWriter(tmp_path / "shard-00001.h5", {}, label_kind=None).commit()
    assert shard_paths([tmp_path]) == [tmp_path / "shard-00001.h5"]


def test_format_1_shards_still_read(tmp_path):
    """The first format had no label_kind attribute: the labels' shape says it."""
    path = tmp_path / "old.h5"
    s = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        f.attrs.update({"featx_format": 1, "kind": "encodings", "dim": 4, "num_images": 2})
        f["ids"] = np.array(["a", "b"], dtype=object).astype(s)
        f["labels"] = np.array([[1, -1], [0, 1]], np.int8)
        f["enc"] = np.eye(2, 4, dtype=np.float32)
        f.create_dataset("skipped_ids", (0,), dtype=s)
        f.create_dataset("skipped_reasons", (0,), dtype=s)
    with EncodingShard(path) as shard:
        assert shard.ids == ["a", "b"] and shard.label_kind == "multi"
        np.testing.assert_array_equal(shard.encodings(), np.eye(2, 4))


def test_output_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "shard-00000.h5.partial").write_bytes(b"")
    (out / "shard-00001.h5").write_bytes(b"")
    with output_folder(out, overwrite=False) as folder:
        assert [p.name for p in folder.shards()] == ["shard-00001.h5"]  # .partial removed
    with output_folder(out, overwrite=True) as folder:
        assert (out / "shard-00001.h5").exists()  # nothing deleted before the run completes
    assert folder.shards() == []  # ... and what the new run did not write is gone after
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputExistsError, match="not a folder"):
        with output_folder(tmp_path / "file", overwrite=False):
            pass


def test_not_a_shard(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(InputError, match="not a featx shard"):
        read_header(tmp_path / "other.h5")
    (tmp_path / "broken.h5").write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot read shard"):
        read_header(tmp_path / "broken.h5")



@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 41)),
              elements=st.sampled_from([-2.5, -1.0, 0.0, 0.0, 0.5, 3.0])))
def test_sign_pack_round_trip(x):
    packed = pack_sign(x)
    assert packed.dtype == np.uint8 and packed.shape == (x.shape[0], -(-x.shape[1] // 4))
    np.testing.assert_array_equal(unpack_sign(packed, x.shape[1]), np.sign(x))


def test_sign_codes_take_two_bits_per_dimension():
    x = np.random.default_rng(1).normal(size=(2, 128_000)).astype(np.float32)
    packed = pack_sign(x)
    assert packed.nbytes == 2 * 32_000
    assert pack_sign(np.array([[1.0, -1.0, 0.0, 1.0]])).tolist() == [[0b01_00_10_01]]
