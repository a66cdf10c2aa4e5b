"""Multi-process runs that go wrong: a rank killed mid-stage (the survivor stops with one
line within a bounded time; the same command, with the same or another world size, resumes
to the clean output), a rank that never comes, ranks started with different settings or
featx versions, more ranks than shards."""

from __future__ import annotations

import shutil
import signal
import time

import pytest
from click.testing import CliRunner

from featx.cli import main
from tests.conftest import class_folders
from tests.distributed.launch import digests, ranks, torchrun
from tests.reliability.conftest import wait_for

pytestmark = pytest.mark.reliability


def single(*args) -> None:
    res = CliRunner().invoke(main, ["-q", *map(str, args)], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr


def one_line_error(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert lines and lines[-1].startswith("Error: "), stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    return lines[-1]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return class_folders(tmp_path_factory.mktemp("dist-img"), ("a", "b"), 12, (96, 80))


def extract_args(images, out, shard_size=2):
    return ("extract", "--dataset", "folder", "--root", images, "--weights", "none",
            "--input-size", "96", "--workers", "0", "--batch-size", "2", "--shard-size",
            shard_size, "--device", "cpu", "-o", out)


@pytest.fixture(scope="module")
def clean(images, tmp_path_factory):
    """One process's uninterrupted extraction into ``root/acts``, kept as ``root/clean``."""
    root = tmp_path_factory.mktemp("dist-clean")
    single(*extract_args(images, root / "acts"))
    shutil.move(root / "acts", root / "clean")
    return root


def _kill_rank_one(images, out):
    """Two bare ranks extracting; rank 1 killed (-9) once it has written a shard. Returns
    rank 0's (exit code, stderr, seconds from the kill to its exit)."""
    procs = ranks(lambda r: extract_args(images, out))
    wait_for(lambda: (out / "shard-00001.h5").exists() or procs[1].poll() is not None)
    assert procs[1].poll() is None, "rank 1 finished before it could be killed"
    procs[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _, err = procs[0].communicate(timeout=60)
    procs[1].communicate()
    return procs[0].returncode, err, time.monotonic() - killed


@pytest.mark.parametrize("resume_world", [2, 1])
def test_a_killed_rank_stops_the_others_and_the_rerun_resumes(images, clean, resume_world):
    out = clean / "acts"  # where the clean run wrote: the path is in each shard's provenance
    shutil.rmtree(out, ignore_errors=True)
    code, err, seconds = _kill_rank_one(images, out)
    assert code == 1 and seconds < 60
    line = one_line_error(err)
    assert "rank 0 of 2: another rank stopped" in line and "rerun the same command" in line
    kept = digests(out)
    assert 0 < len(kept) < 12 and not list(out.glob("*.tmp"))
    args = extract_args(images, out)
    if resume_world == 2:
        res = torchrun(*args)
        assert res.returncode == 0, res.stderr[-2000:]
    else:  # another world size: shards do not depend on it, so they are kept as they are
        single(*args)
    resumed = digests(out)
    assert all(resumed[k] == v for k, v in kept.items())
    assert resumed == digests(clean / "clean")
    shutil.rmtree(out)


def test_a_rank_that_never_comes_is_an_error_in_bounded_time(images, tmp_path):
    start = time.monotonic()
    [alone] = ranks(lambda r: extract_args(images, tmp_path / "acts"), world=2, only=[0],
                    extra_env={"FEATX_DIST_TIMEOUT": "5"})
    _, err = alone.communicate(timeout=90)
    assert alone.returncode == 1 and time.monotonic() - start < 60
    assert "rank 0 could not join the other ranks at 127.0.0.1:" in one_line_error(err)
    assert not (tmp_path / "acts").exists()


def test_ranks_with_other_settings_are_refused_by_name(images, clean, tmp_path):
    procs = ranks(lambda r: ("fit-pca", clean / "clean", "--layer", "conv4", "--dim",
                             8 if r == 0 else 4, "--per-image", "10", "--device", "cpu",
                             "-o", tmp_path / "pca.h5"))
    for p in procs:
        _, err = p.communicate(timeout=90)
        assert p.returncode == 1
        assert "rank 1 runs with dim=4, rank 0 with dim=8" in one_line_error(err)
    assert not (tmp_path / "pca.h5").exists()


def test_another_featx_version_is_refused_by_name(monkeypatch):
    from featx.dist import TorchGroup
    from featx.errors import DistributedError

    group = TorchGroup.__new__(TorchGroup)
    group.rank, group.world, group.sent = 0, 2, 0
    monkeypatch.setattr(group, "objects", lambda obj: [obj, {**obj, "featx version": "9.9"}],
                        raising=False)
    with pytest.raises(DistributedError, match="rank 1 runs with featx version='9.9'"):
        group.check_same({"featx version": "0.1", "stage": "extract"})


def test_more_ranks_than_shards_leave_the_idle_rank_done(images, tmp_path):
    args = extract_args(images, tmp_path / "acts", shard_size=100)  # one shard
    single(*args)
    shutil.move(tmp_path / "acts", tmp_path / "one")
    res = torchrun(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert digests(tmp_path / "acts") == digests(tmp_path / "one")
    assert len(digests(tmp_path / "one")) == 1


@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 2]])
def test_the_primal_solver_with_c_auto_on_tiny_data(tmp_path, labels):
    """Six images, a class with one image: cross-validation folds without some classes; the
    primal solver trains (such a class's fold model is the constant -1, as the dual's) and
    chooses a C, or says why not in one line."""
    import numpy as np

    from featx.io import load_svm
    from tests.io.test_encoding_set import write_split

    rng = np.random.default_rng(0)
    y = np.asarray(labels)
    x = (rng.normal(size=(6, 8)) + 2 * np.eye(3)[y] @ rng.normal(size=(3, 8))).astype(np.float32)
    write_split(tmp_path / "enc", x, y, [3, 3])
    res = CliRunner().invoke(main, ["-q", "train-svm", str(tmp_path / "enc"), "--solver", "primal",
                                    "--C", "auto", "-o", str(tmp_path / "svm.h5")])
    assert res.exit_code == 0, res.stderr
    _, _, attrs = load_svm(tmp_path / "svm.h5")
    assert attrs["solver"] == "primal" and attrs["C"] in (0.01, 0.1, 1.0, 10.0, 100.0)


def test_stdin_under_torchrun_is_refused_naming_the_way_out(chain, tmp_path):
    """Issue 36 (weak): `ls ... | torchrun ... encode -` said the ranks' settings differ (the
    pipe reaches rank 0 only); now every rank refuses `-` before joining."""
    from click.testing import CliRunner

    from featx.cli import main

    res = CliRunner().invoke(main, ["-q", "encode", "-", "--pca", str(chain / "pca.h5"), "-o",
                                    str(tmp_path / "e")],
                             input=f"{chain / 'acts'}\n",
                             env={"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1",
                                  "MASTER_PORT": "29999"})
    assert res.exit_code == 2, res.output
    assert "stdin reaches rank 0 only under torchrun: give the paths as arguments" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "e").exists()
