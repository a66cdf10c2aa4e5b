"""Corrupt, mismatched and out-of-range inputs to the later stages: one-line errors naming
the file or the option, never a traceback, never a silently wrong result."""

from __future__ import annotations

import json
import os
import shutil

import h5py
import numpy as np
import pytest

from featx.io import load_svm, read_header, save_svm
from tests.reliability.conftest import one_line_error as _one_line_error

pytestmark = pytest.mark.reliability


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage", ["truncated", "random", "flipped"])
@pytest.mark.parametrize("stage", ["train-svm", "evaluate", "encode"])
def test_damaged_shards_are_refused_by_name(chain, tmp_path, cli, damage, stage):
    folder = _copy(chain / ("acts" if stage == "encode" else "enc"), tmp_path / "in")
    shard = folder / "shard-00001.h5"
    data = bytearray(shard.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "random":
        data = bytearray(os.urandom(len(data)))
    else:  # 16 KB of random bytes in the middle: the array data, caught by the checksums
        mid = len(data) // 2
        data[mid:mid + 16384] = os.urandom(min(16384, len(data) - mid))
    shard.write_bytes(bytes(data))
    if stage == "encode":
        res = cli("encode", folder, "--pca", chain / "pca.h5", "-o", tmp_path / "e", ok=False)
    elif stage == "train-svm":
        res = cli("train-svm", folder, "-o", tmp_path / "svm.h5", ok=False)
    else:
        res = cli("evaluate", folder, "--model", chain / "svm.h5", ok=False)
    _one_line_error(res, "shard-00001.h5")


def test_the_same_shard_twice_is_refused(chain, tmp_path, cli):
    shard = chain / "enc" / "shard-00000.h5"
    res = cli("train-svm", shard, shard, "-o", tmp_path / "svm.h5", ok=False)
    _one_line_error(res, "more than one input shard")
    res = cli("evaluate", chain / "enc", shard, "--model", chain / "svm.h5", ok=False)
    _one_line_error(res, "more than one input shard")


def test_a_model_of_other_classes_is_refused(chain, tmp_path, cli):
    w, b, attrs = load_svm(chain / "svm.h5")
    save_svm(tmp_path / "other.h5", np.concatenate([w, w[:1]]), np.concatenate([b, b[:1]]),
             {**attrs, "classes": ["cat", "dog", "owl"]})
    res = cli("evaluate", chain / "enc", "--model", tmp_path / "other.h5", ok=False)
    _one_line_error(res, "['cat', 'dog', 'owl']", "['a', 'b']")


def test_a_model_with_weights_of_the_wrong_width_is_refused(chain, tmp_path, cli):
    w, b, attrs = load_svm(chain / "svm.h5")
    save_svm(tmp_path / "narrow.h5", w[:, :-5], b, attrs)
    res = cli("evaluate", chain / "enc", "--model", tmp_path / "narrow.h5", ok=False)
    _one_line_error(res, "weights of shape")


def test_a_corrupt_model_file_is_refused(chain, tmp_path, cli):
    data = bytearray((chain / "pca.h5").read_bytes())
    mid = len(data) // 2
    data[mid:mid + 4096] = os.urandom(4096)
    (tmp_path / "pca.h5").write_bytes(bytes(data))
    res = cli("encode", chain / "acts", "--pca", tmp_path / "pca.h5", "-o", tmp_path / "e",
              ok=False)
    _one_line_error(res, "pca.h5")


def test_non_finite_activations_are_refused(chain, tmp_path, cli):
    folder = _copy(chain / "acts", tmp_path / "acts")
    with h5py.File(folder / "shard-00000.h5", "a") as f:
        # rewrite the array in place (the chunk checksums are recomputed by HDF5)
        x = f["acts/whole/conv4"][:]
        x[0, 0, 0, 0, 0] = np.nan
        f["acts/whole/conv4"][:] = x
    res = cli("encode", folder, "--pca", chain / "pca.h5", "-o", tmp_path / "e", ok=False)
    _one_line_error(res, "NaN/Inf", "shard-00000.h5")


@pytest.mark.parametrize(("args", "words"), [
    (["--var-floor", "nan"], ["--var-floor"]),
    (["--var-floor", "-1"], ["--var-floor"]),
    (["--tol", "-1"], ["--tol"]),
    (["--components", "0"], ["--components"]),
])
def test_fit_gmm_option_ranges(chain, tmp_path, cli, args, words):
    res = cli("fit-gmm", chain / "acts", "--pca", chain / "pca.h5", *args, "-o",
              tmp_path / "gmm.h5", ok=False)
    assert res.exit_code in (1, 2) and "Traceback" not in res.stderr
    assert any(w in res.stderr for w in words), res.stderr
    assert not (tmp_path / "gmm.h5").exists()


@pytest.mark.parametrize(("stage", "args", "words"), [
    ("extract", ["--batch-size", "0"], ["--batch-size"]),
    ("extract", ["--shard-size", "0"], ["--shard-size"]),
    ("extract", ["--views", "blocks:0x2"], ["blocks"]),
    ("extract", ["--dtype", "int8"], ["--dtype"]),
    ("encode", ["--method", "nope"], ["unknown method 'nope'"]),
    ("encode", ["--views", "tiles"], ["unknown view 'tiles'"]),
    ("train-svm", ["--C", "0"], ["--C"]),
])
def test_bad_option_values(chain, tmp_path, cli, stage, args, words):
    if stage == "extract":
        res = cli("extract", chain / "ds", "--weights", "none", *args, "-o", tmp_path / "o",
                  ok=False)
    elif stage == "encode":
        res = cli("encode", chain / "acts", "--pca", chain / "pca.h5", *args, "-o",
                  tmp_path / "o", ok=False)
    else:
        res = cli("train-svm", chain / "enc", *args, "-o", tmp_path / "o.h5", ok=False)
    assert res.exit_code in (1, 2) and "Traceback" not in res.stderr
    assert any(w in res.stderr for w in words), res.stderr


@pytest.mark.parametrize(("case", "words"), [
    ("other-backbone", ["has backbone='alexnet', this run needs backbone='efficientnet_lite0'"]),
    ("other-layer", ["has layer='conv4', this run needs layer='conv3'"]),
    ("encodings-as-activations", ["holds 'encodings', not activations"]),
    ("activations-as-encodings", ["holds 'activations', not encodings"]),
    ("model-of-other-encodings", ["was trained on other encodings"]),
])
def test_provenance_mismatches_are_refused_by_name(chain, tmp_path, cli, make_images, case,
                                                   words):
    if case == "other-backbone":
        other = tmp_path / "other"
        cli("extract", make_images(1), "-o", other, "--backbone", "efficientnet_lite0",
            "--weights", "none", "--workers", "0")
        res = cli("encode", other, "--pca", chain / "pca.h5", "-o", tmp_path / "x", ok=False)
    elif case == "other-layer":
        res = cli("encode", chain / "acts", "--pca", chain / "pca.h5", "--layers",
                  "conv3,conv5", "-o", tmp_path / "x", ok=False)
    elif case == "encodings-as-activations":
        res = cli("encode", chain / "enc", "--pca", chain / "pca.h5", "-o", tmp_path / "x",
                  ok=False)
    elif case == "activations-as-encodings":
        res = cli("train-svm", chain / "acts", "-o", tmp_path / "x.h5", ok=False)
    else:
        g = cli("encode", chain / "acts", "--method", "max", "--pca", chain / "pca.h5", "-o",
                tmp_path / "g").stdout.split()
        res = cli("evaluate", *g, "--model", chain / "svm.h5", ok=False)
    _one_line_error(res, *words)


def test_a_subarray_pca_that_does_not_match_the_guidance_kernel_is_warned(chain, tmp_path, cli):
    pca = cli("fit-pca", chain / "acts", "--layer", "conv4", "--local", "subarray:1x1", "--dim",
              "4", "-o", tmp_path / "p.h5").stdout.split()[0]
    res = CliRunnerWithLogs(cli).run("encode", chain / "acts", "--pca", pca, "-o", tmp_path / "e")
    assert "subarray:1x1 subarrays, but conv5's kernel is 3x3" in res.stderr


class CliRunnerWithLogs:
    """The cli fixture runs with -q (errors only); this runs with the default log level."""

    def __init__(self, cli):
        from click.testing import CliRunner

        from featx.cli import main

        self.runner, self.main = CliRunner(), main

    def run(self, *args):
        res = self.runner.invoke(self.main, [*map(str, args)], catch_exceptions=False)
        assert res.exit_code == 0, res.stderr
        return res


def test_join_refuses_parts_of_other_images(tmp_path, cli):
    """Parts whose shards or images differ are refused by name, nothing written."""
    import numpy as np

    from tests.io.test_encoding_set import write_split

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 10)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    write_split(tmp_path / "a", x, y, [10])
    write_split(tmp_path / "b", x, y, [4, 6])
    write_split(tmp_path / "c", x, y, [10], split="test")  # ids test0.. instead of train0..
    r = cli("join", tmp_path / "a", tmp_path / "b", "-o", tmp_path / "ab", ok=False)
    assert r.exit_code != 0 and "holds shards" in r.output and "Traceback" not in r.output
    r = cli("join", tmp_path / "a", tmp_path / "c", "-o", tmp_path / "ac", ok=False)
    assert r.exit_code != 0 and "different images" in r.output
    r = cli("join", tmp_path / "a", "-o", tmp_path / "a1", ok=False)
    assert r.exit_code != 0 and "at least two" in r.output
    assert not (tmp_path / "ab").exists() and not (tmp_path / "ac").exists()


def test_an_unknown_maps_reduction_is_refused_by_cli_and_api(chain, tmp_path, cli):
    """maps --reduce takes sum or mean: another is a usage error at the CLI and a one-line
    InputError naming it from Python, before anything is read or written."""
    from featx.errors import InputError
    from featx.stages.maps import MapsConfig

    res = cli("maps", chain / "acts", "--layer", "conv5", "--reduce", "max", "-o",
              tmp_path / "m", ok=False)
    assert res.exit_code == 2 and "Traceback" not in res.stderr and "'max'" in res.stderr
    assert not (tmp_path / "m").exists()
    with pytest.raises(InputError, match="--reduce must be one of sum, mean, got 'max'"):
        MapsConfig(layer="conv5", reduce="max")


@pytest.mark.parametrize("split", ["val", "tset"])
def test_a_missing_split_folder_is_refused_naming_the_splits(tmp_path, cli, split):
    """Issue 26.3: no fallback to the root, whose split folders would become classes."""
    from tests.conftest import class_folders

    for s in ("train", "test"):
        class_folders(tmp_path / "ds" / s, ("a", "b"), 1, (64, 48))
    res = cli("extract", "--dataset", "folder", "--root", tmp_path / "ds", "--split", split,
              "--weights", "none", "-o", tmp_path / "acts", ok=False)
    _one_line_error(res, f"no split folder {split!r}", "test, train")
    assert not (tmp_path / "acts").exists()


def test_a_split_of_a_csv_without_a_split_column_is_refused(tmp_path, cli):
    """Issue 26.3: --split test on a CSV would record every row as "test"."""
    from PIL import Image

    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    (tmp_path / "set.csv").write_text("a.png,cat\n")
    res = cli("extract", "--dataset", "folder", "--root", tmp_path / "set.csv", "--split",
              "test", "--weights", "none", "-o", tmp_path / "acts", ok=False)
    _one_line_error(res, "no split column", "--split test")


def test_a_voc_class_without_positive_test_images_has_no_ap(tmp_path, cli):
    """Issue 26.4: its AP is null and it is left out of the mAP, said on stderr (VOCdevkit
    would divide by zero); the mAP is the mean over the classes with positives."""
    from PIL import Image

    from featx.datasets import VOC_CLASSES
    from featx.metrics import voc07_ap
    from featx.svm import scores

    voc = tmp_path / "VOCdevkit" / "VOC2007"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for i in range(8):
        Image.new("RGB", (96, 80), (i * 30, 90, 200 - i * 20)).save(voc / "JPEGImages" /
                                                                     f"{i:06d}.jpg")
    for split, ids in (("trainval", range(4)), ("test", range(4, 8))):
        for k, c in enumerate(VOC_CLASSES):
            # "dog" has no positive test image: -1 and one difficult (0)
            lab = {i: (1 if (i + k) % 2 else -1) for i in ids}
            if split == "test" and c == "dog":
                lab = {i: (0 if i == 4 else -1) for i in ids}
            (voc / "ImageSets" / "Main" / f"{c}_{split}.txt").write_text(
                "".join(f"{i:06d} {v}\n" for i, v in lab.items()))
    common = ["--dataset", "voc07", "--root", voc, "--weights", "none", "--layers", "fc7",
              "--workers", "0"]
    for split in ("trainval", "test"):
        cli("extract", *common, "--split", split, "-o", tmp_path / f"acts-{split}")
        cli("encode", tmp_path / f"acts-{split}", "--method", "global", "-o",
            tmp_path / f"enc-{split}")
    cli("train-svm", tmp_path / "enc-trainval", "-o", tmp_path / "svm.h5")
    from click.testing import CliRunner

    from featx.cli import main

    res = CliRunner().invoke(main, ["evaluate", str(tmp_path / "enc-test"), "--model",
                                    str(tmp_path / "svm.h5"), "--json", str(tmp_path / "m.json")])
    assert res.exit_code == 0 and "no positive test image for dog" in res.stderr
    import json

    from featx.api import load_encodings

    m = json.loads((tmp_path / "m.json").read_text())
    dog = VOC_CLASSES.index("dog")
    assert m["AP"][dog] is None and m["classes_without_positives"] == ["dog"]
    _, x, y, _ = load_encodings(tmp_path / "enc-test")
    (w, b), _ = __import__("featx").load(tmp_path / "svm.h5")
    ap = voc07_ap(scores(x, w, b), y)
    others = [a for c, a in enumerate(ap) if c != dog]
    assert m["mAP"] == pytest.approx(float(np.mean(others)), abs=1e-12)


def test_a_shard_or_model_of_a_newer_format_is_refused(chain, tmp_path, cli):
    """Issue 26 (weak): featx_format 99 was read without complaint."""
    enc = _copy(chain / "enc", tmp_path / "enc")
    with h5py.File(enc / "shard-00000.h5", "a") as f:
        f.attrs["featx_format"] = 99
    res = cli("evaluate", enc, "--model", chain / "svm.h5", ok=False)
    _one_line_error(res, "featx format 99", "newer than this featx reads")
    shutil.copy(chain / "svm.h5", tmp_path / "svm.h5")
    with h5py.File(tmp_path / "svm.h5", "a") as f:
        f.attrs["featx_format"] = 99
    res = cli("evaluate", chain / "enc", "--model", tmp_path / "svm.h5", ok=False)
    _one_line_error(res, "featx format 99", "upgrade featx")


def test_a_model_file_without_an_attribute_its_reader_needs_is_refused(chain, tmp_path, cli):
    """Issue 26 (weak): a PCA without `whiten` was a KeyError traceback."""
    shutil.copy(chain / "pca.h5", tmp_path / "pca.h5")
    with h5py.File(tmp_path / "pca.h5", "a") as f:
        del f.attrs["whiten"]
    res = cli("encode", chain / "acts", "--pca", tmp_path / "pca.h5", "-o", tmp_path / "e",
              ok=False)
    _one_line_error(res, "corrupt or foreign pca model file", "no whiten attribute")


def test_a_provenance_mismatch_reads_as_english():
    """Issue 26 (weak): "these encodings has dim=4096"."""
    from featx.errors import ProvenanceError
    from featx.io import require_fit

    with pytest.raises(ProvenanceError, match="these encodings have dim=1, this run needs"):
        require_fit({"dim": 1}, {"dim": 2}, "these encodings")
    with pytest.raises(ProvenanceError, match=r"work/pca\.h5 has dim=1"):
        require_fit({"dim": 1}, {"dim": 2}, "work/pca.h5")


@pytest.mark.parametrize(("args", "words"), [
    (["fit-guidance", "{c}/acts", "--scales", "0,0"], ["--scales must be distinct"]),
    (["extract", "{c}/ds", "--seed", "99999999999999999999999"], ["--seed", "range"]),
    (["extract", "{c}/ds", "--seed", "-1"], ["--seed", "range"]),
])
def test_duplicate_scales_and_out_of_range_seeds_are_refused(chain, tmp_path, cli, args,
                                                             words):
    """Issue 26 (weak): --scales 0,0 was accepted; a 23-digit seed was a ValueError
    traceback (numpy and scikit-learn take seeds in [0, 2**32))."""
    res = cli(*[a.format(c=chain) for a in args], "-o", tmp_path / "o", ok=False)
    assert res.exit_code in (1, 2) and "Traceback" not in res.stderr
    assert all(w in res.stderr for w in words), res.stderr
    assert not (tmp_path / "o").exists()


def test_a_csv_row_with_an_empty_label_is_refused_by_line(tmp_path, cli):
    """Issue 26 (weak): `a.png,` was an IndexError traceback."""
    from PIL import Image

    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    Image.new("RGB", (64, 48)).save(tmp_path / "b.png")
    (tmp_path / "set.csv").write_text("a.png,cat\nb.png, \n")
    res = cli("extract", "--dataset", "folder", "--root", tmp_path / "set.csv", "--weights",
              "none", "-o", tmp_path / "acts", ok=False)
    _one_line_error(res, "'b.png'", "needs path,label")


@pytest.mark.parametrize("stage", ["encode", "train-svm"])
def test_an_empty_pipe_says_what_came_before_failed(chain, tmp_path, cli, stage):
    """Issue 38 (a newcomer trap): a failed stage before a pipe left `Error: no shards found
    in ` with an empty name."""
    extra = ["--pca", chain / "pca.h5"] if stage == "encode" else []
    res = cli(stage, "-", *extra, "-o", tmp_path / "o", input="", ok=False)
    _one_line_error(res, "no shards given", "before the pipe fail")


def test_a_root_of_split_folders_without_split_is_refused(tmp_path, cli):
    """Issue 38 (newcomer trap): --dataset folder --root R on R/train/<class>, R/test/<class>
    without --split silently recorded the classes ["test", "train"]."""
    from tests.conftest import class_folders

    for split in ("train", "test"):
        class_folders(tmp_path / "data" / split, ("cat", "dog"), 1, (64, 48))
    res = cli("extract", "--dataset", "folder", "--root", tmp_path / "data", "--weights", "none",
              "--workers", "0", "-o", tmp_path / "acts", ok=False)
    _one_line_error(res, "look like splits (test, train)", "--split NAME", "--split none")
    assert not (tmp_path / "acts").exists()
    from featx.datasets import open_dataset

    assert open_dataset("folder", str(tmp_path / "data"), "train").classes == ["cat", "dog"]
    assert open_dataset("folder", str(tmp_path / "data"), "none").classes == ["test", "train"]
    # a class that happens to be called "train" among others is a class (VOC has one)
    class_folders(tmp_path / "vehicles", ("bus", "car", "train"), 1, (64, 48))
    assert open_dataset("folder", str(tmp_path / "vehicles"), "").classes == ["bus", "car", "train"]


@pytest.mark.parametrize("skip_bad", [False, True])
def test_a_csv_with_a_byte_order_mark_and_a_header_reads_its_header_as_one(tmp_path, skip_bad):
    """Issue 36.10: a spreadsheet's CSV (UTF-8 with a BOM, a `path,label` header) gave a
    phantom class `label` with --skip-bad (its header row an image `\ufeffpath`, skipped as
    bad) and, without, an error naming the invisible `\ufeffpath`."""
    from PIL import Image

    from featx.datasets import open_dataset

    for name in ("a.png", "b.png"):
        Image.new("RGB", (64, 48)).save(tmp_path / name)
    (tmp_path / "set.csv").write_bytes("path,label\na.png,cat\nb.png,dog\n".encode("utf-8-sig"))
    source = open_dataset("folder", str(tmp_path / "set.csv"), "")
    assert source.classes == ["cat", "dog"] and [r.id for r in source.records] == ["a.png", "b.png"]
    import featx

    acts = featx.extract(None, tmp_path / "acts", dataset="folder", root=tmp_path / "set.csv",
                         weights="none", workers=0, skip_bad=skip_bad)

    assert read_header(acts[0])["classes"] == ["cat", "dog"]


def test_files_that_are_not_images_by_name_are_counted(tmp_path, caplog):
    """Issue 26 (weak): a .heic was silently ignored."""
    import logging

    from PIL import Image

    from featx.images import folder_source

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "b.heic").write_bytes(b"\0" * 10)
    (tmp_path / "c.HEIC").write_bytes(b"\0" * 10)
    caplog.set_level(logging.WARNING, logger="featx")
    assert [r.id for r in folder_source(tmp_path).records] == ["a.png"]
    assert "2 file(s) under" in caplog.text and ".heic: 2" in caplog.text


def test_evaluating_the_training_split_and_an_undecided_c_are_said(chain, tmp_path):
    """Issue 26 (weak): evaluate on the model's own training split reported 100% without a
    word; a C grid whose every C ties chose silently."""
    from click.testing import CliRunner

    from featx.cli import main

    runner = CliRunner()
    enc = _copy(chain / "enc", tmp_path / "enc")  # the chain's, recorded as split "train"
    for shard in enc.glob("shard-*.h5"):
        with h5py.File(shard, "a") as f:
            f.attrs["split"] = "train"
    shutil.copy(chain / "svm.h5", tmp_path / "trained.h5")
    with h5py.File(tmp_path / "trained.h5", "a") as f:
        f.attrs["train_split"] = "train"
    res = runner.invoke(main, ["evaluate", str(enc), "--model", str(tmp_path / "trained.h5")])
    assert res.exit_code == 0 and json.loads(res.stdout)["split"] == "train"
    assert "the split" in res.stderr and "was trained on" in res.stderr
    res = runner.invoke(main, ["evaluate", str(chain / "enc"), "--model", str(chain / "svm.h5")])
    assert res.exit_code == 0 and "was trained on" not in res.stderr
    res = runner.invoke(main, ["train-svm", str(chain / "enc"), "--C", "1,2", "--folds", "10",
                               "-o", str(tmp_path / "svm.h5")])
    assert res.exit_code == 0 and "cross-validation in" in res.stderr and "not 10" in res.stderr


def test_a_diverging_guidance_is_an_error_not_a_model():
    """Issue 26 (weak): --lr 1e30 diverged to NaN and the model was saved with rc 0."""
    import torch

    from featx.errors import NonFiniteError
    from featx.fit import fit_guidance

    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 64, 6, generator=g)  # 60 images, an 8 x 8 map of 6-d regions
    y = (torch.arange(60) % 2).numpy()
    with pytest.raises(NonFiniteError, match="diverged at epoch 1.*lower --lr"):
        fit_guidance([x], y, 2, channels=3, epochs=5, lr=1e30, seed=0)


@pytest.mark.parametrize("damage", ["json-attribute", "1-d components", "short mean",
                                    "n_samples text"])
def test_a_malformed_model_file_is_one_line_from_encode_and_load(chain, tmp_path, cli, damage):
    """Issue 36.8: a malformed JSON attribute or a 1-d `components` was a JSONDecodeError /
    IndexError traceback from `featx encode --pca` and `featx.load`; shards with the same
    damage already got one line. Model files are now validated on load as shards are."""
    import featx
    from featx.errors import InputError

    bad = tmp_path / "pca.h5"
    shutil.copy(chain / "pca.h5", bad)
    with h5py.File(bad, "a") as f:
        if damage == "json-attribute":
            f.attrs["layer"] = "json:{bad"
        elif damage == "1-d components":
            c = f["components"][0]
            del f["components"]
            f["components"] = c
        elif damage == "short mean":
            m = f["mean"][:-1]
            del f["mean"]
            f["mean"] = m
        else:
            f.attrs["n_samples"] = "many"
    res = cli("encode", chain / "acts", "--pca", bad, "-o", tmp_path / "e", ok=False)
    _one_line_error(res, "pca.h5", "corrupt pca model file")
    assert not (tmp_path / "e").exists()
    with pytest.raises(InputError, match="corrupt pca model file") as err:
        featx.load(bad)
    assert "\n" not in str(err.value)


def test_an_svm_of_fewer_classifiers_than_classes_is_refused(chain, tmp_path, cli):
    w, b, attrs = load_svm(chain / "svm.h5")
    save_svm(tmp_path / "svm.h5", w, b, {**attrs, "classes": ["a", "b", "c"]})
    res = cli("evaluate", chain / "enc", "--model", tmp_path / "svm.h5", ok=False)
    _one_line_error(res, "corrupt svm model file", "3 classes")


@pytest.mark.parametrize("what", ["folder", "missing", "not hdf5"])
def test_load_names_a_path_that_is_no_model_file_in_plain_words(tmp_path, what):
    """Issue 36 (weak): featx.load(folder) and load("missing.h5") called the file corrupt and
    quoted HDF5's internals over several lines."""
    import featx
    from featx.errors import InputError

    path = {"folder": tmp_path, "missing": tmp_path / "missing.h5",
            "not hdf5": tmp_path / "text.h5"}[what]
    if what == "not hdf5":
        path.write_text("hello")
    words = {"folder": "is a folder; name a model file", "missing": "no model file",
             "not hdf5": "not an HDF5 file, or a truncated one"}[what]
    with pytest.raises(InputError, match=words) as err:
        featx.load(path)
    assert "\n" not in str(err.value) and "HDF5-DIAG" not in str(err.value)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_load_on_cuda_without_a_gpu_is_one_line(chain):
    """Issue 36 (weak): featx.load(device="cuda") without a GPU was torch's RuntimeError."""
    import featx
    from featx.errors import InputError

    with pytest.raises(InputError, match="no CUDA GPU is visible"):
        featx.load(chain / "pca.h5", device="cuda")


def test_a_join_carries_its_parts_quantisation_and_evaluate_checks_it(chain, tmp_path, cli):
    """Issue 36.9: `join` of a --quantize sign-raw part and a float part recorded
    quantize='none'; a model trained on [sign-raw | float] then scored [float | float]
    encodings, rc 0."""
    cli("encode", chain / "acts", "--pca", chain / "pca.h5", "--quantize", "sign-raw",
        "-o", tmp_path / "signs")
    cli("join", tmp_path / "signs", chain / "enc", "-o", tmp_path / "mixed")
    cli("join", chain / "enc", chain / "enc", "-o", tmp_path / "floats")
    mixed = read_header(next((tmp_path / "mixed").glob("shard-*.h5")))
    floats = read_header(next((tmp_path / "floats").glob("shard-*.h5")))
    assert mixed["quantize"] == ["sign-raw", "none"] and floats["quantize"] == "none"
    cli("train-svm", tmp_path / "mixed", "-o", tmp_path / "svm.h5")
    cli("evaluate", tmp_path / "mixed", "--model", tmp_path / "svm.h5")  # its own kind: fine
    res = cli("evaluate", tmp_path / "floats", "--model", tmp_path / "svm.h5", ok=False)
    _one_line_error(res, "quantize='none'", "quantize=['sign-raw', 'none']")


def test_a_test_split_that_copies_the_training_photos_is_said(tmp_path, alexnet_weights):
    """Issue 36 (weak): a test split that is a copy of the training photos scored 100% with
    no word. train-svm records the digests of its training rows; evaluate counts the images
    whose encoding is one of them, and says so."""
    from click.testing import CliRunner

    from featx.cli import main
    from tests.conftest import class_folders
    from tests.reliability.conftest import run_ok

    root = tmp_path / "ds"
    class_folders(root / "train", ("a", "b"), 3, (160, 120), name="{i}.png")
    shutil.copytree(root / "train", root / "copy")
    class_folders(root / "test", ("a", "b"), 2, (150, 110), name="t{i}.png")  # other photos
    for split in ("train", "copy", "test"):
        run_ok("extract", "--dataset", "folder", "--root", root, "--split", split,
               "--weights", alexnet_weights, "--workers", "0", "-o", tmp_path / f"acts-{split}")
    run_ok("fit-pca", tmp_path / "acts-train", "--layer", "conv4", "--dim", "6",
           "--per-image", "10", "-o", tmp_path / "pca.h5")
    for split in ("train", "copy", "test"):
        run_ok("encode", tmp_path / f"acts-{split}", "--pca", tmp_path / "pca.h5",
               "-o", tmp_path / f"enc-{split}")
    run_ok("train-svm", tmp_path / "enc-train", "-o", tmp_path / "svm.h5")
    said = {}
    for split in ("copy", "test"):
        res = CliRunner().invoke(main, ["evaluate", str(tmp_path / f"enc-{split}"), "--model",
                                        str(tmp_path / "svm.h5")])
        assert res.exit_code == 0, res.output
        said[split] = res.stderr
    assert "6 of 6 images here have the encoding of a training image" in said["copy"]
    assert "encoding of a training image" not in said["test"]


def test_the_fused_pass_hint_names_the_command_that_takes_layers(chain, tmp_path, cli,
                                                                  alexnet_weights):
    """Issue 36 (weak): `extract --encode cross-layer --pca <a conv5 PCA>` hinted `pass
    --layers conv5,GUIDE`, which extract cannot take (its --layers are what it extracts)."""
    cli("fit-pca", chain / "acts", "--layer", "conv5", "--local", "subarray:2x2", "--dim",
        "4", "--per-image", "10", "-o", tmp_path / "pca5.h5")
    res = cli("extract", "--dataset", "folder", "--root", chain / "ds", "--weights",
              alexnet_weights, "--workers", "0", "--encode", "cross-layer", "--pca",
              tmp_path / "pca5.h5", "-o", tmp_path / "enc", ok=False)
    _one_line_error(res, "no default guidance layer for conv5",
                    "pass featx encode --layers conv5,GUIDE",
                    "the fused extract --encode takes the backbone's default pair only")


def test_fit_pca_without_an_output_names_the_parameter(chain):
    """Issue 36 (weak): featx.fit_pca(acts, None) said "needs an output (out=, out)"."""
    import featx
    from featx.errors import InputError

    with pytest.raises(InputError, match=r"^out must be a path \(str or os.PathLike\), got "
                                         r"None$"):
        featx.fit_pca(chain / "acts", None, layer="conv4")
