"""featx export and featx predict under bad input: a bundle that is not one, damaged, of a
newer format or whose recipe this featx would extract otherwise; weights that are not the
chain's; model files replaced or gone since the chain ran. One ``Error:`` line each, no
traceback, nothing written."""

from __future__ import annotations

import json
import shutil

import h5py
import pytest
from tests.reliability.conftest import one_line_error as _one_line_error

pytestmark = pytest.mark.reliability


def _predict(cli, chain, bundle, out, *extra):
    return cli("predict", bundle, chain / "ds", "--weights", chain / "weights.pt", "--workers",
               "0", "-o", out, *extra, ok=False)


def _edited(chain, tmp_path, edit) -> str:
    """A copy of the chain's bundle with ``edit(h5py.File)`` applied."""
    path = tmp_path / "edited.h5"
    shutil.copy(chain / "bundle.h5", path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _recipe_edit(key, value):
    def edit(f):
        recipe = json.loads(f.attrs["recipe"][5:])
        section, _, name = key.partition(".")
        if name:
            recipe[section][name] = value
        else:
            recipe.pop(section)
        f.attrs["recipe"] = "json:" + json.dumps(recipe)
    return edit


def _flip_a_byte(f):
    data = f["files/pca"][()]
    data[len(data) // 2] ^= 0xFF
    del f["files/pca"]
    f.create_dataset("files/pca", data=data)


@pytest.mark.parametrize(("edit", "words"), [
    (lambda f: f.attrs.__setitem__("featx_format", 99), ["featx format 99", "upgrade featx"]),
    (lambda f: f.attrs.__setitem__("kind", "svm"), ["is not a classifier bundle"]),
    (_flip_a_byte, ["corrupt classifier bundle", "its pca file is not the one exported"]),
    (_recipe_edit("encode", None), ["corrupt classifier bundle", "no encode"]),
    (lambda f: f.attrs.__setitem__("recipe", "json:{cut"), ["corrupt classifier bundle"]),
    (_recipe_edit("extraction.mean", [0.5, 0.5, 0.5]),
     ["was trained on mean=[0.5, 0.5, 0.5]", "export it again"]),
], ids=["newer-format", "another-kind", "damaged-file", "incomplete-recipe", "cut-json",
        "other-preprocessing"])
def test_a_bundle_that_is_not_what_it_says_is_refused(chain, tmp_path, cli, edit, words):
    bundle = _edited(chain, tmp_path, edit)
    res = _predict(cli, chain, bundle, tmp_path / "out")
    _one_line_error(res, *words)
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_no_bundle_is_refused(chain, tmp_path, cli):
    (tmp_path / "b.h5").write_text("not HDF5")
    _one_line_error(_predict(cli, chain, tmp_path / "b.h5", tmp_path / "out"),
                    "cannot read classifier bundle", "not an HDF5 file")
    _one_line_error(_predict(cli, chain, chain / "svm.h5", tmp_path / "out"),
                    "is not a classifier bundle (kind='svm')")
    assert not (tmp_path / "out").exists()


def test_weights_that_are_not_the_chains_are_refused(chain, tmp_path, cli, alexnet_weights):
    other = tmp_path / "other.pt"
    other.write_bytes(alexnet_weights.read_bytes() + b"\0")  # another file, not the chain's
    res = cli("predict", chain / "bundle.h5", chain / "ds", "--workers", "0", "-o",
              tmp_path / "out", ok=False)
    _one_line_error(res, "weights from a file", "pass it with --weights")
    res = _predict(cli, chain, chain / "bundle.h5", tmp_path / "out", "--weights", other)
    _one_line_error(res, f"{other} has sha256", "trained with weights of sha256")
    assert not (tmp_path / "out").exists()


def test_top_k_beyond_the_classes_is_refused(chain, tmp_path, cli):
    res = _predict(cli, chain, chain / "bundle.h5", tmp_path / "out", "--top-k", "3")
    _one_line_error(res, "--top-k 3", "has 2 classes")


def test_the_output_is_never_the_photos_folder(chain, tmp_path, cli):
    shutil.copytree(chain / "ds", tmp_path / "ds")
    res = cli("predict", chain / "bundle.h5", tmp_path / "ds", "--weights",
              chain / "weights.pt", "--workers", "0", "-o", tmp_path / "ds" / "a", ok=False)
    _one_line_error(res, "an output is never an input")


def test_a_rerun_resumes_and_a_changed_photo_is_said(chain, tmp_path, cli):
    """The second run keeps every predictions shard and writes the same table; a photo
    changed since is refused by name, the complete shards kept."""
    shutil.copytree(chain / "ds", tmp_path / "ds")
    args = ("predict", chain / "bundle.h5", tmp_path / "ds", "--weights",
            chain / "weights.pt", "--workers", "0", "--shard-size", "3", "-o", tmp_path / "p")
    cli(*args)
    table = (tmp_path / "p" / "predictions.csv").read_text()
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "p").glob("shard-*.h5")}
    cli(*args)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "p").glob("shard-*.h5")} == stamps
    assert (tmp_path / "p" / "predictions.csv").read_text() == table
    photo = sorted((tmp_path / "ds").rglob("*.png"))[0]
    photo.write_bytes(photo.read_bytes() + b"\0")
    res = cli(*args, ok=False)
    _one_line_error(res, "have changed since", "--overwrite")


def test_export_refuses_a_chain_it_cannot_vouch_for(chain, tmp_path, cli):
    # the PCA the encodings name, moved away: export asks for it
    work = tmp_path / "chain"
    shutil.copytree(chain, work, symlinks=True)
    with h5py.File(work / "svm.h5", "r+") as f:  # the copy's encodings, not the package's
        f.attrs["encodings"] = "json:" + json.dumps([str(work / "enc")])
    for shard in (work / "enc").glob("shard-*.h5"):  # ... made with the copy's PCA
        with h5py.File(shard, "r+") as f:
            f.attrs["pca"] = str(work / "pca.h5")
    (work / "pca.h5").rename(tmp_path / "pca-moved.h5")
    res = cli("export", "--model", work / "svm.h5", "--weights", work / "weights.pt", "-o",
              tmp_path / "b.h5", ok=False)
    _one_line_error(res, "the pca file the encodings in", "is not at", "pass it with --pca")
    # given back with --pca: exported
    cli("export", "--model", work / "svm.h5", "--weights", work / "weights.pt", "--pca",
        tmp_path / "pca-moved.h5", "-o", tmp_path / "b.h5")
    assert (tmp_path / "b.h5").is_file()
    # the weights file of another digest
    other = tmp_path / "other.pt"
    other.write_bytes(b"not the chain's weights")
    res = cli("export", "--model", chain / "svm.h5", "--weights", other, "-o",
              tmp_path / "c.h5", ok=False)
    _one_line_error(res, "the chain was extracted with weights of sha256")
    # an SVM that does not record its encodings (an earlier featx's), without --encodings
    with h5py.File(work / "svm.h5", "r+") as f:
        del f.attrs["encodings"]
    res = cli("export", "--model", work / "svm.h5", "-o", tmp_path / "d.h5", ok=False)
    _one_line_error(res, "does not record the encodings", "--encodings")
    # encodings of another chain than the SVM's
    res = cli("export", "--model", work / "svm.h5", "--encodings", chain / "acts", "-o",
              tmp_path / "d.h5", ok=False)
    _one_line_error(res, "not encodings")
    for name in ("c.h5", "d.h5"):
        assert not (tmp_path / name).exists()


def test_export_refuses_joined_encodings(chain, tmp_path, cli):
    cli("join", chain / "enc", chain / "enc", "-o", tmp_path / "joined")
    cli("train-svm", tmp_path / "joined", "-o", tmp_path / "svm.h5")
    res = cli("export", "--model", tmp_path / "svm.h5", "-o", tmp_path / "b.h5", ok=False)
    _one_line_error(res, "joined encodings", "one encode run")
    assert not (tmp_path / "b.h5").exists()


def test_the_python_classifier_refuses_what_is_no_image(chain):
    import numpy as np

    import featx
    from featx.errors import InputError

    clf = featx.Classifier.load(chain / "bundle.h5", weights=str(chain / "weights.pt"),
                                workers=0)
    for bad, words in [(np.zeros((4, 4), np.float32), "uint8 (H, W, 3)"), ([3], "paths, PIL"),
                       ([], "images is empty")]:
        with pytest.raises(InputError, match=words.replace("(", r"\(").replace(")", r"\)")):
            clf.predict(bad)
    with pytest.raises(InputError, match="has no probabilities"):
        clf.predict_proba([])
    with pytest.raises(InputError, match="top_k must be"):
        featx.Classifier(chain / "bundle.h5", top_k="2")
