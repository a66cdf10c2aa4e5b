"""featx join: encodings of the same images side by side, each part at equal weight."""

from __future__ import annotations

import numpy as np

from featx.io.provenance import ENCODING_KEYS
from featx.io.shards import load_encodings
from tests.conftest import read_encodings
from tests.io.test_encoding_set import write_split


def test_join_equals_normalised_parts_concatenated(tmp_path, cli):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 12)
    a = rng.normal(size=(12, 5)).astype(np.float32)
    b = rng.normal(size=(12, 3)).astype(np.float32) * 7
    write_split(tmp_path / "a", a, y, [5, 7])
    write_split(tmp_path / "b", b, y, [5, 7])
    out = cli("join", tmp_path / "a", tmp_path / "b", "-o", tmp_path / "ab").stdout.split()
    assert [p.split("/")[-1] for p in out] == ["shard-00000.h5", "shard-00001.h5"]
    ids, x, labels, attrs = load_encodings([tmp_path / "ab" / n for n in
                                            ("shard-00000.h5", "shard-00001.h5")], ENCODING_KEYS)
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(x, np.concatenate([unit(a), unit(b)], 1) / np.sqrt(2), rtol=1e-6)
    np.testing.assert_array_equal(labels, y)
    assert attrs["dim"] == 8 and attrs["methods"] == ["m", "m"]
    assert [blk["dim"] for blk in read_encodings(out[0])[3]["blocks"]] == [5, 3]
    # rerun resumes: same files kept
    mtime = (tmp_path / "ab" / "shard-00000.h5").stat().st_mtime_ns
    cli("join", tmp_path / "a", tmp_path / "b", "-o", tmp_path / "ab")
    assert (tmp_path / "ab" / "shard-00000.h5").stat().st_mtime_ns == mtime
