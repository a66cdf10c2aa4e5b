"""The evaluate stage: score encoding shards with an SVM model; the metrics as a dict
(VOC07 11-point and all-point AP for multi-label data, accuracies for single-label)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featx import metrics, plots, svm
from featx.errors import InputError, ProvenanceError
from featx.io import load_svm, require_fit, shard_paths
from featx.io.shards import EncodingSet
from featx.io.provenance import ENCODING_KEYS

DATASETS = ("voc07", "mit67", "cub200", "flowers102", "h3d", "folder")


@dataclass(frozen=True)
class EvaluateConfig:
    """``dataset`` picks the benchmark's metric (voc07: 11-point AP); None: from the labels."""

    model: str = ""
    dataset: str | None = None
    memory_gb: float = 2.0
    plots: str | None = None  # a folder: PR curves / confusion matrix, paths in result["plots"]

    def __post_init__(self) -> None:
        if not self.model:
            raise InputError("evaluate needs --model (an SVM from featx train-svm)")
        if self.dataset is not None and self.dataset not in DATASETS:
            raise InputError(f"unknown dataset {self.dataset!r}; valid: {', '.join(DATASETS)}")


def run(inputs: Sequence[str], cfg: EvaluateConfig) -> dict[str, Any]:
    """The metrics of the encodings in ``inputs`` under the model, JSON-ready."""
    weights, biases, mattrs = load_svm(cfg.model)
    enc = EncodingSet(shard_paths(inputs), ENCODING_KEYS)
    ids, labels, attrs = enc.ids, enc.labels, enc.attrs
    require_fit(attrs, {k: mattrs.get(k) for k in ENCODING_KEYS}, "these encodings",
                f"{cfg.model} was trained on other encodings")
    if attrs.get("classes") != mattrs["classes"]:
        raise ProvenanceError(f"{cfg.model} was trained on classes {mattrs['classes']}; these "
                              f"encodings have classes {attrs.get('classes')}")
    classes = mattrs["classes"] or [str(i) for i in range(weights.shape[0])]
    multilabel = labels.ndim == 2
    if cfg.dataset in ("voc07", "h3d") and not multilabel:
        raise InputError(f"--dataset {cfg.dataset} expects multi-label (1/-1/0) labels; these "
                         "are single")
    if weights.ndim != 2 or weights.shape[1] != enc.dim or biases.shape != weights.shape[:1]:
        raise InputError(f"{cfg.model} holds weights of shape {weights.shape} for "
                         f"{enc.dim}-d encodings; train it again")
    # scored a block at a time: memory bounded by the block, not the split
    s = np.concatenate([svm.scores(x, weights, biases)
                        for _, x in enc.blocks(enc.block_rows(cfg.memory_gb * 2**30))]
                       or [np.zeros((0, len(biases)), np.float32)])
    result = {"model": str(cfg.model), "split": attrs.get("split", ""), "n_images": len(ids),
              "classes": classes}
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
    if cfg.plots:
        result["plots"] = [str(p) for p in draw(result, s, labels, cfg.plots)]
    return result


def draw(result: dict[str, Any], scores: np.ndarray, labels: np.ndarray, folder: str | Path
         ) -> list[Path]:
    """One PNG per class of its precision-recall curve (multi-label), or the confusion matrix
    (single-label), in ``folder``."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the plots folder {folder}: {exc}") from None
    classes = result["classes"]
    if labels.ndim == 2:
        out = []
        for c, name in enumerate(classes):
            rec, prec = metrics.precision_recall(scores[:, c], labels[:, c])
            label = (f"{name}: AP {100 * result['AP'][c]:.1f} (11-pt), "
                     f"{100 * result['AP_all_point'][c]:.1f} (all-pt)")
            out.append(plots.pr_curve(rec, prec, label, folder / f"pr-{_safe(name)}.png",
                                      title=f"precision-recall, {result['split'] or 'scores'}"))
        return out
    m = metrics.confusion(scores.argmax(1), labels, len(classes))
    return [plots.confusion(m, classes, folder / "confusion.png",
                            title=f"top-1 {100 * result['top1']:.1f}% on {len(labels)} images")]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def write_json(result: dict[str, Any], path: str | Path | None) -> str:
    """The metrics as JSON text, also written to ``path`` when given."""
    text = json.dumps(result, indent=2)
    if path:
        Path(path).write_text(text + "\n")
    return text
