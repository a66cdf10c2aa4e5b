"""The evaluate stage: score encoding shards with an SVM model; the metrics as a dict
(VOC07 11-point and all-point AP for multi-label data, accuracies for single-label)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from featx import metrics, plots, svm
from featx.dist import SINGLE, Group
from featx.errors import InputError, ProvenanceError
from featx.digest import file_digest
from featx.io import load_svm, load_svm_extras, require_fit, save_csv, save_json, shard_paths
from featx.io.encodings import EncodingSet
from featx.io.provenance import ENCODING_KEYS
from featx.configs import EvaluateConfig  # noqa: F401 (re-exported)
from featx.stages import OPTIONAL_FILE, Output, Stage

log = logging.getLogger(__name__)



class Evaluate(Stage):
    """The metrics of encodings under an SVM; written as JSON (with provenance) when given an
    output, and kept in :attr:`result` either way."""

    name, output, polls, distributed = "evaluate", OPTIONAL_FILE, False, True

    def plan(self, inputs: Sequence[str]):
        cfg = self.cfg
        weights, biases, mattrs = load_svm(cfg.model)
        enc = EncodingSet(shard_paths(inputs), ENCODING_KEYS)
        attrs = enc.attrs
        require_fit(attrs, {k: mattrs.get(k) for k in ENCODING_KEYS}, "these encodings",
                    f"{cfg.model} was trained on other encodings")
        if attrs.get("classes") != mattrs["classes"]:
            raise ProvenanceError(f"{cfg.model} was trained on classes {mattrs['classes']}; "
                                  f"these encodings have classes {attrs.get('classes')}")
        if cfg.dataset in ("voc07", "h3d") and enc.labels.ndim != 2:
            raise InputError(f"--dataset {cfg.dataset} expects multi-label (1/-1/0) labels; "
                             "these are single")
        if weights.ndim != 2 or weights.shape[1] != enc.dim or biases.shape != weights.shape[:1]:
            raise InputError(f"{cfg.model} holds weights of shape {weights.shape} for "
                             f"{enc.dim}-d encodings; train it again")
        if attrs.get("split") and attrs.get("split") == mattrs.get("train_split"):
            log.warning("these encodings are of split %r, the split %s was trained on: the "
                        "metrics say how well it fits, not how well it generalises",
                        attrs["split"], cfg.model)
        mattrs = {**mattrs, **load_svm_extras(cfg.model)}
        return enc, weights, biases, mattrs

    def inputs_of(self, plan) -> list[Path]:
        return [*plan[0].paths, Path(self.cfg.model)]

    def work(self, plan, out: Output) -> Iterator[Path]:
        with ExitStack() as stack:  # --scores held (checked, locked) before any scoring
            held = stack.enter_context(out.hold_file(self.cfg.scores, self.inputs_of(plan))) \
                if self.cfg.scores and self.group.leader else None
            yield from self._work(plan, out, held)

    def _work(self, plan, out: Output, scores_file: Path | None) -> Iterator[Path]:
        cfg, (enc, weights, biases, mattrs) = self.cfg, plan
        scores, digests = scores_of(enc, weights, biases, cfg.memory_gb, self.group)
        if not self.group.leader:
            self.result = None
            return  # rank 0 has every score: the metrics are its
        split = enc.attrs.get("split")
        if not split or split != mattrs.get("train_split"):  # else the plan said it already
            warn_copies(digests, mattrs, cfg.model)
        prob = probabilities_of(scores, mattrs)
        result = metrics_of(enc, scores, mattrs, cfg, prob)
        self.result = result
        result["provenance"] = out.provenance(model_sha256=file_digest(cfg.model),
                                              shards=[str(p) for p in enc.paths])
        paths = []
        if scores_file is not None:  # one row an image: id, label(s), every class's score
            paths.append(save_csv(scores_file, *score_rows(enc, scores, prob,
                                                           result["classes"])))
            result["scores"] = str(scores_file)
        if cfg.plots:  # drawn first, so the metrics list them (class by class)
            with out.hold_folder(cfg.plots) as folder:
                drawn = draw(result, scores, enc.labels, folder)
            result["plots"] = [str(p) for p in drawn]
            paths += drawn
        if out.path is not None:
            yield save_json(out.path, result)
        yield from paths


def scores_of(enc: EncodingSet, weights, biases, memory_gb: float, group: Group = SINGLE
              ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(N, C) decision values of every encoding, scored a block at a time (memory bounded by
    the block, not the split), and the digests of its rows (:func:`featx.svm.row_digests`).
    Under torchrun rank r scores shards r, r + world, ... and rank 0 gathers them (the
    others get None, None)."""
    rows = enc.block_rows(memory_gb * 2**30)
    world = group.world
    mine = list(range(group.rank, len(enc.paths), world))
    scored = [(svm.scores(x, weights, biases), svm.row_digests(x))
              for _, x in enc.blocks(rows, mine)]
    s = np.concatenate([a for a, _ in scored] or [np.zeros((0, len(biases)), np.float32)])
    d = np.concatenate([b for _, b in scored] or [np.zeros(0, np.uint64)])
    if world == 1:
        return s, d
    parts = group.objects((enc.places(mine), s, d))
    if not group.leader:
        return None, None
    every = np.zeros((len(enc), len(biases)), np.float32)
    digests = np.zeros(len(enc), np.uint64)
    for where, part, dig in parts:
        every[where], digests[where] = part, dig
    return every, digests


def warn_copies(digests: np.ndarray, mattrs: dict, model: str) -> int:
    """How many of these images have the encoding of one the model was trained on (a test
    split that copies training photos), said in a warning when any do."""
    train = mattrs.get("train_digests")
    if train is None or not len(digests):
        return 0
    copies = int(np.isin(digests, train).sum())
    if copies:
        log.warning("%d of %d images here have the encoding of a training image of %s (copies "
                    "of training photos?): the metrics say how well it fits them, not how "
                    "well it generalises", copies, len(digests), model)
    return copies


def probabilities_of(scores: np.ndarray, mattrs: dict) -> np.ndarray | None:
    """The class probabilities of the model's scores, or None when it carries none
    (:func:`featx.svm.model_probabilities`)."""
    return svm.model_probabilities(scores, mattrs)


def score_rows(enc: EncodingSet, scores: np.ndarray, prob: np.ndarray | None,
               classes: list[str]) -> tuple[list[str], list[list]]:
    """The header and rows of ``--scores``: id, the true label(s) (a multi-label image's
    positive classes joined by ';', its difficult ones after a '?'), each class's decision
    value, and each class's probability when the model has them."""
    labels = enc.labels
    header = ["id", "label", *(f"score:{c}" for c in classes)]
    if prob is not None:
        header += [f"p:{c}" for c in classes]
    rows = []
    for i, image in enumerate(enc.ids):
        if labels.ndim == 2:
            truth = ";".join(c for c, v in zip(classes, labels[i]) if v > 0)
            hard = ";".join(c for c, v in zip(classes, labels[i]) if v == 0)
            truth += f"?{hard}" if hard else ""
        else:
            truth = classes[int(labels[i])]
        rows.append([image, truth, *(f"{v:.9g}" for v in scores[i]),
                     *((f"{v:.9g}" for v in prob[i]) if prob is not None else ())])
    return header, rows


def metrics_of(enc: EncodingSet, s: np.ndarray, mattrs: dict, cfg: EvaluateConfig,
               prob: np.ndarray | None = None) -> dict[str, Any]:
    """The metrics of the scores ``s`` of ``enc`` under the model, JSON-ready; with the
    model's probabilities ``prob``, their log-loss and Brier score too."""
    ids, labels, attrs = enc.ids, enc.labels, enc.attrs
    classes = mattrs["classes"] or [str(i) for i in range(s.shape[1])]
    result = {"model": str(cfg.model), "split": attrs.get("split", ""), "n_images": len(ids),
              "classes": classes}
    if labels.ndim == 2:
        ap11 = metrics.voc07_ap(s, labels)
        apall = metrics.average_precision(s, labels)
        absent = [c for c, v in zip(classes, ap11) if np.isnan(v)]
        if absent:
            log.warning("no positive test image for %s: no AP (null), left out of the mAP",
                        ", ".join(absent))
        scored = ~np.isnan(ap11)
        result.update({"metric": "voc07 11-point AP",
                       "mAP": float(ap11[scored].mean()) if scored.any() else None,
                       "AP": _nulls(ap11),
                       "mAP_all_point": float(apall[scored].mean()) if scored.any() else None,
                       "AP_all_point": _nulls(apall), "classes_without_positives": absent,
                       **metrics.precision_recall_f1_multilabel(s, labels)})
    else:
        top1, per_class = metrics.accuracy(s.argmax(1), labels, len(classes))
        result.update({"metric": "accuracy", "top1": top1,
                       "mean_class_accuracy": float(np.nanmean(per_class)),
                       "class_accuracy": _nulls(per_class),
                       **metrics.precision_recall_f1(s.argmax(1), labels, len(classes))})
        if len(classes) >= 5:
            result["top5"] = metrics.top_k_accuracy(s, labels, 5)
    if prob is not None:
        result.update({"probability": mattrs["probability"],
                       "log_loss": metrics.log_loss(prob, labels),
                       "brier": metrics.brier(prob, labels)})
    return result


def draw(result: dict[str, Any], scores: np.ndarray, labels: np.ndarray, folder: Path
         ) -> list[Path]:
    """One PNG per class of its precision-recall curve (multi-label; ``pr-NNN-name.png``, NNN
    the class index, so no two classes share a file), or the confusion matrix (single-label),
    in ``folder``."""
    classes = result["classes"]
    if labels.ndim == 2:
        out = []
        for c, name in enumerate(classes):
            rec, prec = metrics.precision_recall(scores[:, c], labels[:, c])
            label = (f"{name}: AP {100 * result['AP'][c]:.1f} (11-pt), "
                     f"{100 * result['AP_all_point'][c]:.1f} (all-pt)"
                     if result["AP"][c] is not None else f"{name}: no positive test image")
            out.append(plots.pr_curve(rec, prec, label, folder / f"pr-{c:03d}-{_safe(name)}.png",
                                      title=f"precision-recall, {result['split'] or 'scores'}"))
        return out
    m = metrics.confusion(scores.argmax(1), labels, len(classes))
    return [plots.confusion(m, classes, folder / "confusion.png",
                            title=f"top-1 {100 * result['top1']:.1f}% on {len(labels)} images")]


def _nulls(values: np.ndarray) -> list[float | None]:
    """Per-class numbers for JSON: NaN (a class with no test image, or no positive) as null."""
    return [None if np.isnan(v) else float(v) for v in values]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def run(inputs: Sequence[str], out: str | Path | None, cfg: EvaluateConfig, **kw) -> list[Path]:
    """:meth:`Evaluate.run`: the metrics of ``inputs`` written to ``out`` (JSON) if given, and
    the plots; the metrics themselves are ``Evaluate(cfg).result`` after a run."""
    return Evaluate(cfg).run(inputs, out, **kw)
