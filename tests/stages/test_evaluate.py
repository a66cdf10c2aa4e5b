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
    # with an output, the same metrics and their provenance, written whole
    [path] = evaluate.run(labelled.enc, tmp_path / "m.json",
                          EvaluateConfig(model=str(trained), command="test"))
    saved = json.loads(path.read_text())
    assert saved["top1"] == top1 and saved["provenance"]["command"] == "test"
    assert saved["provenance"]["model_sha256"] and not list(tmp_path.glob("*.partial"))
