"""Same inputs, same machine: the same bytes. A small chain (extract with two decoding workers
and batches that straddle shards, fit-pca, encode, train-svm with C chosen by cross-validation,
evaluate) run twice into the same paths writes identical files, every one of them."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from featx.cli import main
from tests.conftest import class_folders


def _chain(root: Path) -> dict[str, str]:
    out = root / "out"
    for args in (
        ["extract", "--dataset", "folder", "--root", root / "ds", "--weights", "none",
         "--workers", "2", "--batch-size", "3", "--shard-size", "3", "--input-size", "96",
         "-o", out / "acts"],
        ["fit-pca", out / "acts", "--layer", "conv4", "--dim", "8", "--per-image", "20", "-o",
         out / "pca.h5"],
        ["encode", out / "acts", "--pca", out / "pca.h5", "-o", out / "enc"],
        ["train-svm", out / "enc", "--C", "auto", "-o", out / "svm.h5"],
        ["evaluate", out / "enc", "--model", out / "svm.h5", "--json", out / "metrics.json"],
    ):
        res = CliRunner().invoke(main, ["-q", *map(str, args)], catch_exceptions=False)
        assert res.exit_code == 0, res.stderr
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


@pytest.mark.slow
def test_a_chain_run_twice_writes_identical_files(tmp_path):
    class_folders(tmp_path / "ds", ("a", "b"), 4, (160, 120))
    first = _chain(tmp_path)
    shutil.rmtree(tmp_path / "out")
    second = _chain(tmp_path)
    assert len(first) == 9  # 3 activation shards, pca, 3 encoding shards, svm, metrics
    assert first == second, [k for k in first if first[k] != second.get(k)]
