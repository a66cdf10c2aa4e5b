"""Outputs: one run owns an output at a time; --overwrite replaces old output only with
complete new output; unwritable paths and a full disk are one-line errors that lose nothing."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import featx.io.output
from featx.io import read_header
from tests.reliability.conftest import arrays_of, featx_process, wait_for
from tests.reliability.conftest import one_line_error as _one_line_error

pytestmark = pytest.mark.reliability


def test_a_run_into_a_held_output_is_refused_naming_the_holder(make_images, tmp_path):
    out = tmp_path / "acts"
    out.mkdir()
    with featx.io.output._lock(out / ".featx.lock", "featx extract (the other run)"):
        proc = featx_process("-q", "extract", make_images(2), "--weights", "none", "--workers",
                             "0", "-o", out)
        stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and stdout == ""
    assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1
    assert f"another featx run (pid {os.getpid()}" in err and "(the other run)" in err
    assert not list(out.glob("shard-*"))


def test_two_runs_started_together_leave_whole_shards(make_images, tmp_path):
    images = make_images(24)
    args = ["-q", "extract", images, "--weights", "none", "--workers", "0", "--layers", "conv5",
            "--shard-size", "6", "--batch-size", "2", "-o", tmp_path / "acts"]
    procs = [featx_process(*args), featx_process(*args)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert any(code == 0 for code, _ in results)
    for code, err in results:  # the loser is refused (or resumed after the winner)
        assert code == 0 or (code == 1 and "another featx run" in err), err
    ids = []
    for shard in sorted((tmp_path / "acts").glob("shard-*.h5")):
        head = read_header(shard)
        assert head["num_images"] == len(head["ids"]) and "" not in head["ids"]
        ids += head["ids"]
    assert sorted(ids) == sorted(p.name for p in images.iterdir())


def test_the_loser_of_a_race_leaves_the_winners_folder(tmp_path, monkeypatch):
    """Two runs start together: A creates the folder, B takes the lock first. A is refused
    and must not remove the folder it created, which B is writing into (the race behind the
    test above, made deterministic)."""
    import fcntl

    from featx.errors import OutputLockedError

    out = tmp_path / "acts"
    out.mkdir()
    (out / "shard-00000.h5.partial").write_bytes(b"B's shard in progress")
    fd = os.open(out / ".featx.lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # B holds the folder
    monkeypatch.setattr(featx.io.output, "prepare_folder", lambda folder: True)  # A "created" it
    try:
        with pytest.raises(OutputLockedError, match="another featx run"):
            with featx.io.output.output_folder(out, overwrite=False):
                pass
    finally:
        os.close(fd)
    assert (out / "shard-00000.h5.partial").read_bytes() == b"B's shard in progress"


def test_a_stale_lock_of_a_dead_run_is_taken_over(make_images, tmp_path, cli):
    images = make_images(12)
    args = ["-q", "extract", images, "--weights", "none", "--workers", "0", "--layers", "conv5",
            "--shard-size", "4", "--batch-size", "2", "-o", tmp_path / "acts"]
    proc = featx_process(*args)
    wait_for(lambda: any((tmp_path / "acts").glob("shard-*.h5")))
    proc.kill()  # kill -9: its lock file stays, its flock is gone
    proc.wait()
    assert (tmp_path / "acts" / ".featx.lock").exists()
    res = cli(*args[1:])
    assert len(res.stdout.split()) == 3


def test_a_reader_refuses_a_shard_with_missing_rows(chain, tmp_path, cli):
    bad = tmp_path / "acts"
    shutil.copytree(chain / "acts", bad)
    with h5py.File(bad / "shard-00000.h5", "a") as f:
        f.attrs["num_images"] = 50  # as the interleaved writes of two runs left it
    res = cli("encode", bad, "--pca", chain / "pca.h5", "-o", tmp_path / "enc", ok=False)
    _one_line_error(res, "shard-00000.h5 is incomplete")


def test_overwrite_that_fails_keeps_the_old_output(chain, tmp_path, cli, make_images):
    acts = tmp_path / "acts"
    shutil.copytree(chain / "acts", acts)
    before = arrays_of(acts)
    for bad in (["--weights", str(tmp_path / "missing.pt")], ["--device", "cuda:7"],
                ["--layers", "conv9"]):
        res = cli("extract", "--dataset", "folder", "--root", chain / "ds", "--workers", "0",
                  "--shard-size", "3", *bad, "--overwrite", "-o", acts, ok=False)
        assert res.exit_code == 1 and res.stderr.startswith("Error: ")
        now = arrays_of(acts)
        assert now.keys() == before.keys()
        for k in before:
            np.testing.assert_array_equal(now[k], before[k])
    # a bad image half-way: the shards written before it replace their namesakes, the rest
    # of the old output stays
    images = make_images(5)
    (images / "img004.png").write_bytes(b"broken")
    res = cli("extract", images, "--weights", "none", "--workers", "0", "--shard-size", "3",
              "--overwrite", "-o", acts, ok=False)
    assert res.exit_code == 1 and "img004.png" in res.stderr
    assert sorted(p.name for p in acts.glob("shard-*.h5")) == ["shard-00000.h5", "shard-00001.h5"]
    assert read_header(acts / "shard-00001.h5")["ids"] == read_header(chain / "acts" / "shard-00001.h5")["ids"]


def test_overwrite_removes_old_shards_only_after_success(chain, tmp_path, cli, make_images):
    acts = tmp_path / "acts"
    shutil.copytree(chain / "acts", acts)  # 2 shards
    res = cli("extract", make_images(2), "--weights", "none", "--workers", "0", "--overwrite",
              "-o", acts)
    assert res.stdout.split() == [str(acts / "shard-00000.h5")]
    assert [p.name for p in acts.glob("shard-*.h5")] == ["shard-00000.h5"]


@pytest.mark.parametrize("where", ["proc", "under-file"])
def test_unwritable_outputs_are_one_line_errors(chain, tmp_path, cli, where):
    (tmp_path / "f").write_text("")
    out = Path("/proc/featx-out") if where == "proc" else tmp_path / "f" / "out"
    res = cli("encode", chain / "acts", "--pca", chain / "pca.h5", "-o", out, ok=False)
    _one_line_error(res, "cannot")
    res = cli("fit-pca", chain / "acts", "--layer", "conv4", "--dim", "4", "-o", out / "p.h5",
              ok=False)
    _one_line_error(res, "cannot")


def test_fit_pca_onto_a_folder_is_refused_before_fitting(chain, tmp_path, cli):
    (tmp_path / "dir").mkdir()
    res = cli("fit-pca", chain / "acts", "--layer", "conv4", "--dim", "4", "-o",
              tmp_path / "dir", "--overwrite", ok=False)
    _one_line_error(res, "is a folder")


def test_a_failed_run_leaves_no_empty_output_folder(chain, tmp_path, cli):
    res = cli("encode", chain / "acts", "--pca", chain / "pca.h5", "--layers", "conv4,conv9",
              "-o", tmp_path / "new" / "enc", ok=False)
    assert res.exit_code == 1 and not (tmp_path / "new" / "enc").exists()
    res = cli("extract", tmp_path / "nothing-here", "--weights", "none", "-o", tmp_path / "x",
              ok=False)
    assert res.exit_code == 1 and not (tmp_path / "x").exists()


def test_disk_full_before_a_shard_is_refused_and_resumable(chain, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(featx.io.output, "free_bytes", lambda folder: 1000)
    res = cli("encode", chain / "acts", "--pca", chain / "pca.h5", "-o", tmp_path / "enc",
              ok=False)
    _one_line_error(res, "not enough disk space", "rerun to resume")
    assert not list((tmp_path / "enc").glob("*.h5*"))
    monkeypatch.undo()
    assert len(cli("encode", chain / "acts", "--pca", chain / "pca.h5", "-o",
                   tmp_path / "enc").stdout.split()) == 2


def test_disk_full_during_a_write_keeps_the_complete_shards(chain, tmp_path, cli, monkeypatch):
    real = h5py.Dataset.__setitem__

    def write(self, key, value):  # the disk fills up while the second shard is written
        if "shard-00001" in self.file.filename:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", write)
    res = cli("extract", "--dataset", "folder", "--root", chain / "ds", "--weights", "none",
              "--workers", "0", "--shard-size", "3", "-o", tmp_path / "acts", ok=False)
    _one_line_error(res, "disk is full")
    names = sorted(p.name for p in (tmp_path / "acts").iterdir() if not p.name.startswith("."))
    assert names == ["shard-00000.h5"]  # whole; no .partial left
    monkeypatch.undo()
    res = cli("extract", "--dataset", "folder", "--root", chain / "ds", "--weights", "none",
              "--workers", "0", "--shard-size", "3", "-o", tmp_path / "acts")
    assert len(res.stdout.split()) == 2  # the rerun resumes


def test_library_chatter_stays_off_stdout(tmp_path, cli, make_images):
    from featx.backbones import get_backbone, load_model

    bb = get_backbone("alexnet")
    state = load_model(bb, "none")[0].state_dict()

    def noisy():
        print('Downloading: "https://download.pytorch.org/models/alexnet.pth"')
        return state

    original = bb.imagenet
    object.__setattr__(bb, "imagenet", noisy)  # the registry's entries are frozen
    try:
        res = cli("extract", make_images(1), "--workers", "0", "--layers", "conv1",
                  "-o", tmp_path / "acts")
    finally:
        object.__setattr__(bb, "imagenet", original)
    assert res.stdout.split() == [str(tmp_path / "acts" / "shard-00000.h5")]
    assert "Downloading" in res.stderr


@pytest.mark.parametrize("field, value", [("interpolation", "bilinear"),
                                          ("mean", (0.485, 0.456, 0.406)),
                                          ("jitter_size", 232)])
def test_resuming_shards_made_with_other_preprocessing_is_refused(make_images, tmp_path, cli,
                                                                  monkeypatch, field, value):
    """Shards extracted with another preprocessing (as every efficientnet_lite0 shard made
    before issue 23 was: ImageNet mean/std, bilinear) are never resumed as if they were this
    run's: the rerun names the attribute that differs, and the shards stay as they were."""
    import dataclasses

    from featx.backbones import BACKBONES

    images = make_images(2)
    args = ("extract", images, "--backbone", "efficientnet_lite0", "--weights", "none",
            "--layers", "stage7", "--workers", "0", "-o", tmp_path / "acts")
    cli(*args)
    before = arrays_of(tmp_path / "acts")
    old = BACKBONES["efficientnet_lite0"]
    monkeypatch.setitem(BACKBONES, "efficientnet_lite0", dataclasses.replace(old, **{field: value}))
    _one_line_error(cli(*args, ok=False), "shard-00000.h5", field, "--overwrite")
    after = arrays_of(tmp_path / "acts")
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def _snapshot(*folders: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for f in folders for p in sorted(Path(f).rglob("*.h5"))}


def test_evaluate_json_follows_the_output_rules(chain, tmp_path, cli):
    """Issue 26.1: the metrics JSON is refused where a file exists (without --overwrite) and
    is never the model or a shard it reads, even with --overwrite; it is written whole."""
    before = _snapshot(chain)
    existing = tmp_path / "m.json"
    existing.write_text("keep me")
    res = cli("evaluate", chain / "enc", "--model", chain / "svm.h5", "--json", existing,
              ok=False)
    _one_line_error(res, "exists", "--overwrite")
    assert existing.read_text() == "keep me"
    for target in (chain / "svm.h5", chain / "enc" / "shard-00000.h5"):
        res = cli("evaluate", chain / "enc", "--model", chain / "svm.h5", "--json", target,
                  "--overwrite", ok=False)
        _one_line_error(res, "an output is never an input")
    assert _snapshot(chain) == before
    out = cli("evaluate", chain / "enc", "--model", chain / "svm.h5", "--json", existing,
              "--overwrite").stdout.split()
    assert out == [str(existing)] and "top1" in existing.read_text()
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("args", [
    ["encode", "{c}/acts", "--pca", "{c}/pca.h5", "-o", "{c}/acts", "--overwrite"],
    ["encode", "{c}/acts", "--pca", "{c}/pca.h5", "-o", "{c}", "--overwrite"],
    ["train-svm", "{c}/enc", "-o", "{c}/enc/shard-00000.h5", "--overwrite"],
    ["fit-pca", "{c}/acts", "--layer", "conv4", "-o", "{c}/acts/shard-00000.h5", "--overwrite"],
    ["join", "{c}/enc", "{c}/enc", "-o", "{c}/enc", "--overwrite"],
], ids=["encode into acts", "encode into a folder holding acts", "train-svm onto a shard",
        "fit-pca onto a shard", "join into a part"])
def test_an_output_that_is_an_input_is_refused_with_or_without_overwrite(chain, cli, args):
    """Issue 26.2: an output that is, holds or lies inside an input is refused before any
    work; every input is left as it was."""
    before = _snapshot(chain)
    res = cli(*[a.format(c=chain) for a in args], ok=False)
    _one_line_error(res, "an output is never an input")
    assert _snapshot(chain) == before


@pytest.mark.filterwarnings("ignore:Glyph .* missing from font")  # the names need not render
def test_pr_curves_of_classes_with_alike_names_get_a_file_each(tmp_path):
    """Issue 26.6: 猫 and 犬 (and 'a b' / 'a_b') slug alike; each class keeps its own PNG."""
    from featx.stages.evaluate import draw

    classes = ["猫", "犬", "a b", "a_b"]
    labels = np.array([[1, -1, 1, -1], [-1, 1, -1, 1], [1, 1, -1, -1]], np.int8)
    scores = np.random.default_rng(0).normal(size=labels.shape).astype(np.float32)
    result = {"classes": classes, "split": "test", "AP": [0.5] * 4, "AP_all_point": [0.5] * 4}
    paths = draw(result, scores, labels, tmp_path)
    assert len({p.name for p in paths}) == 4 and all(p.is_file() for p in paths)
    assert [p.name[:7] for p in paths] == ["pr-000-", "pr-001-", "pr-002-", "pr-003-"]


@pytest.mark.parametrize("stage", ["extract", "train-svm", "evaluate --json", "input"])
def test_a_name_longer_than_the_file_system_takes_is_one_line(chain, tmp_path, cli, stage):
    """Issue 26 (weak): a 300-character path component was an OSError traceback."""
    long = tmp_path / ("n" * 300)
    if stage == "extract":
        res = cli("extract", chain / "ds", "--weights", "none", "-o", long, ok=False)
    elif stage == "train-svm":
        res = cli("train-svm", chain / "enc", "-o", long / "svm.h5", ok=False)
    elif stage == "evaluate --json":
        res = cli("evaluate", chain / "enc", "--model", chain / "svm.h5", "--json",
                  long / "m.json", ok=False)
    else:
        res = cli("extract", long, "--weights", "none", "-o", tmp_path / "acts", ok=False)
    _one_line_error(res, "long" if stage != "input" else "File name too long")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_evaluate_json_into_a_new_folder_is_made_before_scoring(chain, tmp_path, cli):
    """Issue 26 (weak): `--json nodir/x.json` was a FileNotFoundError traceback after all the
    scoring; the output is now held (its folder made) before any work."""
    out = cli("evaluate", chain / "enc", "--model", chain / "svm.h5", "--json",
              tmp_path / "nodir" / "x.json").stdout.split()
    assert out == [str(tmp_path / "nodir" / "x.json")] and "top1" in Path(out[0]).read_text()


def test_offline_the_backbone_that_needs_no_network_is_named_before_the_download(
        tmp_path, make_images, monkeypatch):
    """Issue 28.6: the first run of the default backbone offline names the offline one before
    torch's "Downloading" line, and the error names it again; nothing is written."""
    import urllib.error

    from click.testing import CliRunner

    from featx.backbones import get_backbone
    from featx.cli import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))  # an empty weights cache
    bb = get_backbone("alexnet")
    url = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"

    def offline():
        print(f'Downloading: "{url}"')
        raise urllib.error.URLError("Name or service not known")

    offline.source = url
    original = bb.imagenet
    object.__setattr__(bb, "imagenet", offline)
    try:
        res = CliRunner().invoke(main, ["extract", str(make_images(1)), "--workers", "0",
                                        "-o", str(tmp_path / "acts")])
    finally:
        object.__setattr__(bb, "imagenet", original)
    lines = res.stderr.splitlines()
    hint = next(i for i, x in enumerate(lines) if "weights are not in" in x)
    download = next(i for i, x in enumerate(lines) if x.startswith("Downloading"))
    assert hint < download and "--backbone efficientnet_lite0 needs no network" in lines[hint]
    assert res.exit_code == 1 and lines[-1].startswith("Error: cannot obtain ImageNet weights")
    assert "efficientnet_lite0" in lines[-1] and not (tmp_path / "acts").exists()


_LIMITED = """
import resource, sys
import numpy as np
from featx.errors import DiskFullError
from featx.io.shards import EncodingWriter
resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    with EncodingWriter(sys.argv[1], {"dim": 4096}, label_kind=None) as w:
        for i in range(50):
            w.append([f"i{i}-{j}" for j in range(8)], np.ones((8, 4096), np.float32))
        w.commit(dim=4096)
except DiskFullError as exc:
    print(exc)
"""


def test_the_file_size_limit_is_one_line_not_a_segfault(tmp_path):
    """Issue 36.11: `ulimit -f 500; featx extract ...` gave a dozen h5py "Exception ignored"
    tracebacks and a segfault (rc 139): HDF5 reports a write past RLIMIT_FSIZE only while
    freeing objects. The writer counts its bytes and refuses the batch that would cross it,
    as a full disk: one line, nothing half-written."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", _LIMITED, str(tmp_path / "shard-00000.h5")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "file-size limit (ulimit -f)" in res.stdout and "Exception ignored" not in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_extract_under_a_file_size_limit_says_so_before_the_shard(chain, tmp_path):
    import resource
    import subprocess
    import sys

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE,
                           (500 << 10, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    res = subprocess.run([sys.executable, "-m", "featx", "-q", "extract", "--dataset", "folder",
                          "--root", str(chain / "ds"), "--weights", "none", "--workers", "0",
                          "--shard-size", "6", "-o", str(tmp_path / "acts")],
                         capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert res.returncode == 1, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "file-size limit (ulimit -f)" in lines[0], res.stderr[-2000:]
    assert not list((tmp_path / "acts").glob("*.partial")) if (tmp_path / "acts").exists() \
        else True
