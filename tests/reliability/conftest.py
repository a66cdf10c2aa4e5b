"""Helpers of the reliability suite: featx as a separate process (for signals and concurrent
runs), and a small AlexNet activation folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from click.testing import CliRunner

from featx.cli import main
from tests.conftest import class_folders


def featx_process(*args, **kwargs) -> subprocess.Popen:
    """``featx ARGS`` in a new process (stdout and stderr captured as text)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Ctrl-C as a terminal gives it: a suite started in the background of a non-interactive
    # shell (`cmd &`) ignores SIGINT, and a child would inherit that (and never see the Ctrl-C
    # the interrupt tests send)
    return subprocess.Popen([sys.executable, "-m", "featx", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            **kwargs)


def wait_for(predicate, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("the condition did not come true in time")
        time.sleep(0.05)


def arrays_of(folder: Path) -> dict[str, np.ndarray]:
    """Every dataset of every shard in ``folder``, by shard and name."""
    out = {}
    for shard in sorted(folder.glob("shard-*.h5")):
        with h5py.File(shard) as f:
            f.visititems(lambda name, obj: out.__setitem__(f"{shard.name}/{name}", obj[()])
                         if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_arrays(a: Path, b: Path) -> None:
    x, y = arrays_of(a), arrays_of(b)
    assert x.keys() == y.keys()
    for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def one_line_error(res, *words, code: int | None = 1) -> None:
    """``res`` (a CliRunner result) failed with exit status ``code`` (None: any non-zero) and
    one ``Error:`` line on stderr holding each of ``words``."""
    assert res.exit_code == code if code is not None else res.exit_code != 0, \
        (res.exit_code, res.stdout, res.stderr)
    err = res.stderr
    assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, err


def run_ok(*args) -> str:
    """featx ARGS in this process; asserts success and returns stdout."""
    res = CliRunner().invoke(main, ["-q", *map(str, args)], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    return res.stdout


@pytest.fixture(scope="package")
def chain(tmp_path_factory, alexnet_weights):
    """Two classes of 3 generated photos; conv4/conv5 activations in shards of 3, a PCA,
    encodings, an SVM and its classifier bundle (the weights: weights.pt)."""
    root = tmp_path_factory.mktemp("rel")
    class_folders(root / "ds", ("a", "b"), 3, (320, 240), name="{i}.png")
    run_ok("extract", "--dataset", "folder", "--root", root / "ds", "--weights", alexnet_weights,
           "--workers", "0", "--shard-size", "3", "-o", root / "acts")
    run_ok("fit-pca", root / "acts", "--layer", "conv4", "--dim", "6", "--per-image", "10",
           "-o", root / "pca.h5")
    run_ok("encode", root / "acts", "--pca", root / "pca.h5", "-o", root / "enc")
    run_ok("train-svm", root / "enc", "-o", root / "svm.h5")
    (root / "weights.pt").symlink_to(alexnet_weights)  # the chain's weights, by its side
    run_ok("export", "--model", root / "svm.h5", "--weights", root / "weights.pt", "-o",
           root / "bundle.h5")
    return root
