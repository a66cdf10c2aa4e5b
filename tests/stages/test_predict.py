"""featx export + featx predict: one classifier file that takes photos to labels, scored as
evaluate scores the same photos' encodings (bitwise), runnable with nothing else present."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import featx
from featx import svm
from featx.configs import ExportConfig, PredictConfig
from featx.datasets import open_dataset
from featx.errors import ProvenanceError
from featx.io import PredictionShard, load_svm, load_svm_extras, read_bundle, shard_paths
from featx.io.provenance import ENCODING_KEYS
from featx.io.shards import EncodingSet
from featx.stages import encode, evaluate, export, extract, fit_pca, predict, train_svm
from featx.stages.encode import EncodeConfig
from featx.stages.extract import ExtractConfig
from featx.stages.fit_pca import FitPCAConfig
from featx.stages.predict import label_row
from featx.stages.train_svm import TrainSVMConfig
from tests.conftest import class_folders


def _predictions(folder: Path) -> tuple[list[str], list[str], np.ndarray]:
    """ids, paths and scores of every predictions shard in ``folder``, in shard order."""
    ids, paths, scores = [], [], []
    for path in sorted(folder.glob("shard-*.h5")):
        with PredictionShard(path) as shard:
            ids += shard.ids
            paths += shard.paths
            scores.append(shard.scores())
    return ids, paths, np.concatenate(scores)


def _evaluate_scores(enc, model):
    es = EncodingSet(shard_paths(enc), ENCODING_KEYS)
    weights, biases, _ = load_svm(model)
    return es, evaluate.scores_of(es, weights, biases, 2.0)[0]


@pytest.fixture(scope="module")
def bundle(labelled, trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "chain.featx.h5"
    return export.run(out, ExportConfig(model=str(trained)))[0]


def test_predict_scores_are_evaluates_bitwise(labelled, trained, bundle, tmp_path):
    """The photos of the training chain through the bundle: every score equals evaluate's
    score of the photo's encoding, bit for bit, and the table's top-1 is its argmax. Other
    shard sizes than the chain's (5 against 7): the scores do not depend on them."""
    source = open_dataset("folder", str(labelled.images), "")
    table = predict.run(source, tmp_path / "pred", PredictConfig(
        bundle=str(bundle), workers=0, device="cpu", shard_size=5))[0]
    ids, paths, scores = _predictions(tmp_path / "pred")
    es, want = _evaluate_scores(labelled.enc, trained)
    assert ids == es.ids and len(ids) == 12
    assert np.array_equal(scores, want)  # bitwise
    classes = read_bundle(bundle).classes
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == paths
    assert [r["label"] for r in rows] == [classes[i] for i in want.argmax(1)]
    assert [np.float32(r["score"]) for r in rows] == list(want.max(1))
    # evaluate's top-1 is the table's agreement with the labels
    top1 = np.mean([r["label"] == Path(r["path"]).parent.name for r in rows])
    es_labels = [classes[i] for i in es.labels]
    assert top1 == np.mean(np.array(es_labels) == np.array(classes)[want.argmax(1)])


def test_the_bundle_holds_the_chain_byte_for_byte(labelled, trained, bundle, tmp_path):
    b = read_bundle(bundle)
    files = b.unpack(tmp_path)
    assert sorted(files) == ["pca", "svm"]
    assert files["pca"].read_bytes() == Path(labelled.pca).read_bytes()
    assert files["svm"].read_bytes() == Path(trained).read_bytes()
    r = b.recipe
    assert r["backbone"] == "alexnet" and r["extraction"]["views"] == ["whole", "blocks:2x2"]
    assert r["encode"]["methods"] == ["cross-layer"] and r["classes"] == ["a", "b", "c"]
    assert featx.load(bundle)[0].recipe == r  # a registered model kind


def test_top_k_and_jsonl(labelled, bundle, tmp_path):
    table = predict.run(open_dataset("folder", str(labelled.images), ""), tmp_path / "p",
                        PredictConfig(bundle=str(bundle), workers=0, device="cpu", top_k=2,
                                      format="jsonl"))[0]
    assert table.name == "predictions.jsonl"
    rows = [json.loads(line) for line in table.read_text().splitlines()]
    _, paths, scores = _predictions(tmp_path / "p")
    classes = read_bundle(bundle).classes
    for row, path, s in zip(rows, paths, scores):
        order = np.argsort(-s, kind="stable")[:2]
        assert row == {"path": path, "labels": [classes[i] for i in order],
                       "scores": [float(s[i]) for i in order]}


def test_a_multilabel_row_gives_every_label_over_zero():
    row = label_row("x.jpg", np.array([0.5, -0.1, 2.0, 0.0], np.float32), None,
                    ["a", "b", "c", "d"], 1, True)
    assert row["labels"] == ["c", "a"] and row["scores"] == [2.0, 0.5]


def test_probabilities_are_evaluates(labelled, tmp_path):
    """A logistic model's bundle: the table's p column and Classifier.predict_proba are the
    probabilities evaluate gives the same scores."""
    model = train_svm.run(labelled.enc, tmp_path / "lr.h5", TrainSVMConfig(
        loss="logistic", c=(1.0,), device="cpu"))[0]
    b = export.run(tmp_path / "lr.featx.h5", ExportConfig(model=str(model)))[0]
    source = open_dataset("folder", str(labelled.images), "")
    table = predict.run(source, tmp_path / "p", PredictConfig(bundle=str(b), workers=0,
                                                              device="cpu"))[0]
    _, want = _evaluate_scores(labelled.enc, model)
    mattrs = {**load_svm(model)[2], **load_svm_extras(model)}
    prob = evaluate.probabilities_of(want, mattrs)
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [np.float32(r["p"]) for r in rows] == list(prob.max(1).astype(np.float32))
    clf = featx.Classifier.load(b, device="cpu", workers=0)
    paths = [r.path for r in source.records]
    assert np.array_equal(clf.predict_proba(paths),
                          svm.probabilities(want, mattrs["probability"], False, None))


def test_classifier_takes_paths_folders_pil_images_and_arrays(labelled, trained, bundle):
    """featx.Classifier scores paths, a folder, PIL images and uint8 arrays alike (the arrays
    written as lossless PNGs decode to the same pixels), as evaluate does."""
    clf = featx.Classifier.load(bundle, device="cpu", workers=0)
    es, want = _evaluate_scores(labelled.enc, trained)
    source = open_dataset("folder", str(labelled.images), "")
    paths = [r.path for r in source.records]
    assert list(clf.classes_) == ["a", "b", "c"]
    assert np.array_equal(clf.decision_function(paths), want)
    assert list(clf.predict(paths)) == [clf.classes_[i] for i in want.argmax(1)]
    pil = [Image.open(p) for p in paths[:3]]
    arrays = np.stack([np.asarray(im.convert("RGB")) for im in pil])
    assert np.array_equal(clf.decision_function(pil), want[:3])
    assert np.array_equal(clf.decision_function(arrays), want[:3])
    folder = labelled.images / "b"
    in_b = [i for i, p in enumerate(paths) if Path(p).parent == folder]
    assert np.array_equal(clf.decision_function(folder), want[in_b])


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """A chain of its own (random AlexNet weights, the fused-free path: extract, fit-pca,
    encode, train-svm), exported; then everything but the bundle and the photos deleted."""
    root = tmp_path_factory.mktemp("alone")
    images = class_folders(root / "img", ["x", "y"], 4, (72, 64))
    source = open_dataset("folder", str(images), "")
    acts = extract.run(source, root / "acts", ExtractConfig(
        views=("whole",), weights="none", input_size=96, workers=0, device="cpu"))
    pca = fit_pca.run(acts, root / "pca.h5", FitPCAConfig(layer="conv4", dim=4, per_image=20,
                                                          device="cpu"))[0]
    enc = encode.run(acts, root / "enc", EncodeConfig(pca=str(pca), device="cpu",
                                                      quantize="sign"))
    model = train_svm.run(enc, root / "svm.h5", TrainSVMConfig(device="cpu"))[0]
    bundle = export.run(root / "b.featx.h5", ExportConfig(model=str(model)))[0]
    _, want = _evaluate_scores(enc, model)
    for p in root.iterdir():  # activations, encodings, PCA, SVM, their lock files
        if p not in (images, bundle):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    return root, images, bundle, want


def test_a_bundle_runs_in_a_fresh_process_with_no_other_file(alone, tmp_path):
    root, images, bundle, want = alone
    assert sorted(p.name for p in root.iterdir()) == ["b.featx.h5", "img"]
    res = subprocess.run([sys.executable, "-m", "featx", "-q", "predict", str(bundle),
                          str(images), "--workers", "0", "--device", "cpu", "-o",
                          str(tmp_path / "p")], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(tmp_path / "p" / "predictions.csv")
    _, _, scores = _predictions(tmp_path / "p")
    assert np.array_equal(scores, want)  # sign-quantised encodings, scored as stored


def test_export_refuses_a_pca_replaced_since(labelled, trained, tmp_path):
    """The PCA file the encodings name replaced by another: refused, naming the file."""
    pca = tmp_path / "pca.h5"
    shutil.copy(labelled.pyr_pca, pca)  # another PCA where the chain's is said to be
    with pytest.raises(ProvenanceError, match=f"{pca} has sha256 .* replaced since"):
        export.run(tmp_path / "b.h5", ExportConfig(model=str(trained), pca=str(pca)))
    assert not (tmp_path / "b.h5").exists()
