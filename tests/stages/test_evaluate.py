"""evaluate's metrics are featx.metrics of the model's scores, with or without an output."""

from __future__ import annotations

import json

import numpy as np

from featx import metrics, svm
from featx.io import load_svm
from featx.io.provenance import ENCODING_KEYS
from featx.io.shards import EncodingSet
from featx.stages import evaluate
from featx.stages.evaluate import Evaluate, EvaluateConfig


def test_evaluate_is_the_accuracy_of_the_models_scores(labelled, trained, tmp_path):
    stage = Evaluate(EvaluateConfig(model=str(trained)))
    assert stage.run(labelled.enc) == []  # no output asked: nothing written
    weights, biases, _ = load_svm(trained)
    enc = EncodingSet(labelled.enc, ENCODING_KEYS)
    x = np.concatenate([b for _, b in enc.blocks(len(enc))])
    top1, per_class = metrics.accuracy(svm.scores(x, weights, biases).argmax(1), enc.labels, 3)
    assert stage.result["top1"] == top1 and stage.result["n_images"] == 12
    assert stage.result["class_accuracy"] == [float(v) for v in per_class]
    # issue 38.4: precision, recall, F1 and support of the same predictions (3 classes: no
    # top-5)
    predicted = svm.scores(x, weights, biases).argmax(1)
    prf = metrics.precision_recall_f1(predicted, enc.labels, 3)
    for key in ("precision", "recall", "f1", "support", "macro", "weighted"):
        assert stage.result[key] == prf[key], key
    assert sum(stage.result["support"]) == 12 and "top5" not in stage.result
    # with an output, the same metrics and their provenance, written whole
    [path] = evaluate.run(labelled.enc, tmp_path / "m.json",
                          EvaluateConfig(model=str(trained), command="test"))
    saved = json.loads(path.read_text())
    assert saved["top1"] == top1 and saved["provenance"]["command"] == "test"
    assert saved["provenance"]["model_sha256"] and not list(tmp_path.glob("*.partial"))


def test_a_model_with_probabilities_reports_their_log_loss_and_brier(labelled, tmp_path):
    import csv

    from featx.io import load_svm_extras
    from featx.stages import train_svm
    from featx.stages.train_svm import TrainSVMConfig

    enc = EncodingSet(labelled.enc, ENCODING_KEYS)
    x = np.concatenate([b for _, b in enc.blocks(len(enc))])
    for name, settings in (("lr", {"loss": "logistic", "multiclass": "multinomial"}),
                           ("platt", {"calibrate": True}), ("svm", {})):
        model = train_svm.run(labelled.enc, tmp_path / f"{name}.h5", TrainSVMConfig(
            c=(1.0,), folds=2, device="cpu", **settings))[0]
        weights, biases, attrs = load_svm(model)
        s = svm.scores(x, weights, biases)
        stage = Evaluate(EvaluateConfig(model=str(model), scores=str(tmp_path / f"{name}.csv")))
        assert stage.run(labelled.enc) == [tmp_path / f"{name}.csv"]
        rows = list(csv.reader((tmp_path / f"{name}.csv").open()))
        assert rows[0][:5] == ["id", "label", "score:a", "score:b", "score:c"]
        assert [r[0] for r in rows[1:]] == list(enc.ids)
        assert [r[1] for r in rows[1:]] == [["a", "b", "c"][k] for k in enc.labels]
        np.testing.assert_allclose(np.array([r[2:5] for r in rows[1:]], float), s, rtol=1e-6)
        if name == "svm":  # an SVM without --calibrate has no probabilities
            assert "log_loss" not in stage.result and len(rows[0]) == 5
            continue
        prob = svm.probabilities(s, attrs["probability"], False,
                                 load_svm_extras(model).get("platt"))
        np.testing.assert_allclose(np.array([r[5:] for r in rows[1:]], float), prob, rtol=1e-6)
        assert stage.result["log_loss"] == metrics.log_loss(prob, enc.labels)
        assert stage.result["brier"] == metrics.brier(prob, enc.labels)
        assert stage.result["probability"] == {"lr": "softmax", "platt": "platt"}[name]
