"""The train-svm and evaluate stages: encodings -> SVM model -> metrics."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import featx
from featx import metrics, svm
from featx.encode import read_encodings
from featx.errors import InputError, ProvenanceError
from featx.models import check_model_output, load_model_file, save_model
from featx.runtime import resolve_device
from featx.shards import shard_paths

log = logging.getLogger(__name__)

# encoding attributes a model must share with what it scores
ENCODING_KEYS = ("backbone", "weights", "input_size", "methods", "views", "power_norm", "l2",
                 "quantize", "pca_sha256", "gmm_sha256", "dim")


def load_encodings(inputs: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    """Every encoding shard of ``inputs`` stacked: ids, X (N, dim), labels, attributes."""
    ids, xs, labels, first = [], [], [], None
    for path in shard_paths(inputs):
        i, x, y, attrs = read_encodings(path)
        if first is None:
            first = attrs
        else:
            for key in ENCODING_KEYS + ("classes",):
                if attrs.get(key) != first.get(key):
                    raise ProvenanceError(f"{path} differs from the other shards in {key}: "
                                          f"{attrs.get(key)!r} vs {first.get(key)!r}")
        if y is None:
            raise InputError(f"{path} has no labels; extract with --dataset so labels travel "
                             "with the images")
        ids += i
        xs.append(x)
        labels.append(y)
    x = np.concatenate(xs)
    if not np.isfinite(x).all():
        raise InputError("the encodings hold NaN/Inf values")
    return ids, x, np.concatenate(labels), first


def train_svm_stage(inputs: Sequence[str], out: str | Path, *, c: float = 1.0,
                    include_difficult: bool = False, device: str = "auto",
                    overwrite: bool = False, command: str = "", progress=None) -> Path:
    out = check_model_output(out, overwrite)
    ids, x, labels, attrs = load_encodings(inputs)
    classes = attrs.get("classes") or []
    num = len(classes) if classes else int(labels.max()) + 1
    t = time.perf_counter()
    weights, biases = svm.train_ovr(x, labels, num, c=c, device=resolve_device(device),
                                    include_difficult=include_difficult, progress=progress)
    log.info("trained %d one-vs-rest SVMs on %d x %d encodings in %.1f s", num, *x.shape,
             time.perf_counter() - t)
    return save_model(out, {"weights": weights, "biases": biases}, {
        "kind": "svm", **{k: attrs.get(k) for k in ENCODING_KEYS}, "classes": classes,
        "multilabel": labels.ndim == 2, "C": c, "include_difficult": include_difficult,
        "n_train": len(ids), "train_split": attrs.get("split", ""),
        "featx_version": featx.__version__, "command": command,
    })


def evaluate_stage(inputs: Sequence[str], model_path: str | Path, dataset: str | None = None
                   ) -> dict:
    """Scores the encodings with the model; returns the metrics as a JSON-ready dict."""
    arrays, mattrs = load_model_file(model_path, "svm")
    ids, x, labels, attrs = load_encodings(inputs)
    for key in ENCODING_KEYS:
        if attrs.get(key) != mattrs.get(key):
            raise ProvenanceError(f"{model_path} was trained on encodings with {key}="
                                  f"{mattrs.get(key)!r}; these have {key}={attrs.get(key)!r}")
    classes = mattrs["classes"] or [str(i) for i in range(arrays["weights"].shape[0])]
    s = svm.scores(x, arrays["weights"], arrays["biases"])
    result = {"model": str(model_path), "split": attrs.get("split", ""), "n_images": len(ids),
              "classes": classes}
    multilabel = labels.ndim == 2
    if dataset == "voc07" and not multilabel:
        raise InputError("--dataset voc07 expects multi-label (1/-1/0) labels; these are single")
    if multilabel:
        ap11 = metrics.voc07_ap(s, labels)
        apall = metrics.average_precision(s, labels)
        result.update({"metric": "voc07 11-point AP", "mAP": float(ap11.mean()),
                       "AP": ap11.tolist(), "mAP_all_point": float(apall.mean()),
                       "AP_all_point": apall.tolist()})
    else:
        top1, per_class = metrics.accuracy(s.argmax(1), labels, len(classes))
        result.update({"metric": "accuracy", "top1": top1,
                       "mean_class_accuracy": float(np.nanmean(per_class)),
                       "class_accuracy": [None if np.isnan(v) else float(v) for v in per_class]})
    return result


def result_table(result: dict):
    """A rich table of the per-class numbers and the summary."""
    from rich.table import Table

    table = Table(title=f"{result['metric']} on {result['n_images']} images "
                        f"({result.get('split') or 'unnamed split'})")
    table.add_column("class")
    if "AP" in result:
        table.add_column("AP (11-pt)", justify="right")
        table.add_column("AP (all-pt)", justify="right")
        for name, a, b in zip(result["classes"], result["AP"], result["AP_all_point"]):
            table.add_row(name, f"{100 * a:.2f}", f"{100 * b:.2f}")
        table.add_row("[bold]mean", f"[bold]{100 * result['mAP']:.2f}",
                      f"[bold]{100 * result['mAP_all_point']:.2f}")
    else:
        table.add_column("accuracy", justify="right")
        for name, a in zip(result["classes"], result["class_accuracy"]):
            table.add_row(name, "-" if a is None else f"{100 * a:.2f}")
        table.add_row("[bold]mean class accuracy", f"[bold]{100 * result['mean_class_accuracy']:.2f}")
        table.add_row("[bold]top-1 accuracy", f"[bold]{100 * result['top1']:.2f}")
    return table


def write_json(result: dict, path: str | Path | None) -> str:
    text = json.dumps(result, indent=2)
    if path:
        Path(path).write_text(text + "\n")
    return text
