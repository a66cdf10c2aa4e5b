"""The HDF5 shard format: attributes, atomic writes, discovery."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from featx.errors import InputError, OutputExistsError, ProvenanceError
from featx.shards import ShardWriter, check_provenance, prepare_output, read_attrs
from featx.shards import read_shard_header, shard_paths


def test_attrs_round_trip(tmp_path):
    attrs = {"backbone": "alexnet", "input_size": 227, "layers": ["conv4", "conv5"],
             "shapes": {"conv4": [256, 13, 13]}, "mean": [0.5, 0.25], "split": "", "x": None}
    w = ShardWriter(tmp_path / "shard-00000.h5", attrs, labelled="multi", num_classes=3)
    w.append(["a", "b"], {"acts/whole/conv5": np.ones((2, 1, 4), np.float16)},
             labels=np.array([[1, -1, 0], [0, 1, 1]]))
    w.skip("c", "cannot decode image c")
    path = w.commit()
    with h5py.File(path) as f:
        got = read_attrs(f)
        assert f["labels"][:].tolist() == [[1, -1, 0], [0, 1, 1]] and f["labels"].dtype == np.int8
        assert f["acts/whole/conv5"].chunks == (1, 1, 4)
    assert {k: got[k] for k in attrs} == attrs
    assert got["featx_format"] == 1 and got["num_images"] == 2
    head = read_shard_header(path)
    assert head["ids"] == ["a", "b"] and head["skipped_ids"] == ["c"]


def test_writes_are_atomic(tmp_path):
    w = ShardWriter(tmp_path / "shard-00000.h5", {"kind": "test"})
    w.append(["a"], {"x": np.zeros((1, 2))})
    assert not (tmp_path / "shard-00000.h5").exists()
    with pytest.raises(InputError, match="no shards found"):
        shard_paths([tmp_path])  # the temporary file is not a shard
    w.abort()
    assert list(tmp_path.iterdir()) == []
    ShardWriter(tmp_path / "shard-00001.h5", {"kind": "test"}).commit()
    assert shard_paths([tmp_path]) == [tmp_path / "shard-00001.h5"]


def test_prepare_output(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "shard-00000.h5.partial").write_bytes(b"")
    (tmp_path / "out" / "shard-00001.h5").write_bytes(b"")
    prepare_output(tmp_path / "out", overwrite=False)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["shard-00001.h5"]
    prepare_output(tmp_path / "out", overwrite=True)
    assert list((tmp_path / "out").iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputExistsError, match="not a folder"):
        prepare_output(tmp_path / "file", overwrite=False)


def test_provenance_check_names_the_attribute():
    check_provenance({"backbone": "alexnet", "layers": ["conv4"]}, {"backbone": "alexnet"}, "x")
    with pytest.raises(ProvenanceError, match="pca.h5 was made with backbone='vgg16', this run"):
        check_provenance({"backbone": "vgg16"}, {"backbone": "alexnet"}, "pca.h5")


def test_not_a_shard(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(InputError, match="not a featx shard"):
        read_shard_header(tmp_path / "other.h5")
    (tmp_path / "broken.h5").write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot read shard"):
        read_shard_header(tmp_path / "broken.h5")
