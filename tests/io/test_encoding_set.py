"""EncodingSet: encodings read in row blocks across shard boundaries, equal to loading all;
train-svm and evaluate give the same model and metrics whatever the memory budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from featx.io import EncodingWriter
from featx.io.provenance import ENCODING_KEYS
from featx.io.shards import EncodingSet, load_encodings


def write_split(folder, x, labels, sizes, split="train"):
    folder.mkdir(parents=True, exist_ok=True)
    paths, start = [], 0
    attrs = {"backbone": "b", "weights": "w", "input_size": 8, "methods": ["m"], "views": ["v"],
             "power_norm": True, "l2": True, "quantize": "none", "pca_sha256": "",
             "gmm_sha256": "", "classes": ["a", "b", "c"], "split": split}
    for k, n in enumerate(sizes):
        path = folder / f"shard-{k:05d}.h5"
        with EncodingWriter(path, attrs, label_kind="single", num_classes=3) as w:
            w.append([f"{split}{i}" for i in range(start, start + n)], x[start:start + n],
                     labels[start:start + n])
            w.commit(dim=x.shape[1])
        paths.append(path)
        start += n
    return paths


@pytest.mark.parametrize("rows", [1, 4, 5, 11, 100])
def test_blocks_cover_every_row_in_order(tmp_path, rows):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(23, 17)).astype(np.float32)
    y = rng.integers(0, 3, 23)
    paths = write_split(tmp_path, x, y, [5, 10, 8])
    enc = EncodingSet(paths, ENCODING_KEYS)
    got = list(enc.blocks(rows))
    assert all(len(b) <= rows for _, b in got)
    assert [s for s, _ in got] == list(np.cumsum([0] + [len(b) for _, b in got[:-1]]))
    np.testing.assert_array_equal(np.concatenate([b for _, b in got]), x)
    ids, xall, yall, _ = load_encodings(paths, ENCODING_KEYS)
    np.testing.assert_array_equal(xall, x)
    np.testing.assert_array_equal(yall, y)


@pytest.mark.parametrize("solver", ["dual", "primal"])
def test_train_and_evaluate_do_not_depend_on_the_memory_budget(tmp_path, cli, solver):
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 64)) * 2
    y = rng.integers(0, 3, 60)
    x = (centres[y] + rng.normal(size=(60, 64))).astype(np.float32)
    write_split(tmp_path / "train", x[:40], y[:40], [15, 25])
    write_split(tmp_path / "test", x[40:], y[40:], [20], split="test")
    results = []
    # 64-d float32 rows: 1e-5 GB holds ~20 rows, so blocks of ~20 rows are streamed
    for memory in ("2", "0.00001"):
        model = tmp_path / f"svm-{memory}.h5"
        cli("train-svm", tmp_path / "train", "--memory", memory, "--solver", solver, "-o", model)
        out = cli("evaluate", tmp_path / "test", "--model", model, "--memory", memory)
        results.append(json.loads(out.stdout))
    from featx.io import load_svm
    w1, b1, _ = load_svm(tmp_path / "svm-2.h5")
    w2, b2, _ = load_svm(tmp_path / "svm-0.00001.h5")
    np.testing.assert_allclose(w1, w2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b1, b2, rtol=1e-6, atol=1e-9)
    assert results[0]["top1"] == results[1]["top1"]
