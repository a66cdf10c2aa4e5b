"""The predict stage: a classifier bundle (featx export) over new photos -> their labels.

One pass a shard of photos, as the fused ``extract --encode``: decode, the backbone's forward
pass, the bundle's encoding of each batch in memory, and the SVM's scores -- no activation or
encoding file is written. The encodings are scored as the training chain stored them
(:func:`featx.io.as_stored`: its quantisation and dtype), so a photo's scores are the ones
``featx evaluate`` gives its encoding, bitwise. Each shard of photos becomes a predictions
shard (scores, paths; resumable, split over torchrun's ranks by shard), and rank 0 writes the
table, one row a photo: ``predictions.csv`` (or ``.jsonl``) in the output folder.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featx import extraction, svm
from featx.backbones import load_model
from featx.configs import EncodeConfig, ExtractConfig, PredictConfig  # noqa: F401
from featx.digest import file_digest
from featx.encoding import ShardEncoder, encoding_plan
from featx.errors import InputError, ProvenanceError, WeightsError
from featx.images import ImageSource
from featx.io import Bundle, PredictionShard, PredictionWriter, as_stored, load_svm
from featx.io import load_svm_extras, read_bundle, save_csv, shard_name
from featx.io.output import save_text
from featx.stages import Output, Stage

log = logging.getLogger(__name__)

# what the extraction's preprocessing must be, as the bundle recorded it
_SAME = ("backbone", "layers", "views", "input_size", "dtype", "mean", "std", "bgr",
         "jitter_size", "interpolation", "pyramid_sizes", "projected")


@dataclass(frozen=True)
class PredictPlan:
    bundle: Bundle
    digest: str  # of the bundle file
    files: dict[str, Path]  # the bundle's model files, unpacked
    extract: ExtractConfig
    extraction: extraction.ExtractionPlan
    weights: np.ndarray
    biases: np.ndarray
    model: dict[str, Any]  # the SVM's attributes and extras


class Predict(Stage):
    """Label every image of an :class:`ImageSource` with a bundle's classifier."""

    name, distributed = "predict", True

    def plan(self, source: ImageSource) -> PredictPlan:
        cfg = self.cfg
        bundle = read_bundle(cfg.bundle)
        recipe = bundle.recipe
        classes = bundle.classes
        if cfg.top_k > len(classes) and not recipe["multilabel"]:
            raise InputError(f"--top-k {cfg.top_k}: {cfg.bundle} has {len(classes)} classes")
        # the bundle's files, unpacked for this run (the stage's loaders read files)
        self._unpacked = tempfile.TemporaryDirectory(prefix="featx-predict-")
        files = bundle.unpack(self._unpacked.name)
        ext, enc = recipe["extraction"], recipe["encode"]
        encode = EncodeConfig(
            methods=tuple(enc["methods"]), views=tuple(enc["views"]),
            pca=str(files["pca"]) if "pca" in files else None,
            gmm=str(files["gmm"]) if "gmm" in files else None,
            guidance=str(files["guidance"]) if "guidance" in files else None,
            layers=tuple(enc["layers"]) if enc.get("layers") else None,
            fc_layer=enc.get("fc_layer"), power_norm=enc["power_norm"], l2=enc["l2"],
            quantize=enc["quantize"], dtype=enc["dtype"], device=cfg.device)
        ecfg = ExtractConfig(
            backbone=recipe["backbone"], layers=tuple(ext["layers"]), views=tuple(ext["views"]),
            weights=_weights(recipe, cfg), input_size=ext["input_size"],
            batch_size=cfg.batch_size, device=cfg.device, workers=cfg.workers,
            shard_size=cfg.shard_size, dtype=ext["dtype"], seed=recipe["seed"],
            skip_bad=cfg.skip_bad, overwrite=cfg.overwrite, command=cfg.command,
            project=str(files["project"]) if "project" in files else None, encode=encode)
        p = extraction.plan(ecfg, source, self.device)
        for key in _SAME:
            if p.signature[key] != ext[key]:
                raise ProvenanceError(f"{cfg.bundle} was trained on {key}={ext[key]!r}; this "
                                      f"featx extracts {key}={p.signature[key]!r} (a featx "
                                      "whose preprocessing differs): export it again from "
                                      "a chain made with this featx")
        weights, biases, mattrs = load_svm(files["svm"])
        mattrs = {**mattrs, **load_svm_extras(files["svm"])}
        return PredictPlan(bundle, file_digest(cfg.bundle), files, ecfg, p, weights, biases,
                           mattrs)

    def inputs_of(self, p: PredictPlan) -> list[Path]:
        return [Path(r.path) for r in p.extraction.source.records] + [Path(self.cfg.bundle)]

    def work(self, p: PredictPlan, output: Output) -> Iterator[Path]:
        try:
            yield from self._work(p, output)
        finally:
            self._unpacked.cleanup()

    def _work(self, p: PredictPlan, output: Output) -> Iterator[Path]:
        cfg, recipe = self.cfg, p.bundle.recipe
        loaded = load_model(p.extraction.bb, p.extract.weights, p.extract.seed)
        if recipe["weights_arg"] != "file" and loaded[1] != recipe["weights"]:
            raise WeightsError(f"{cfg.bundle} was trained with the weights {recipe['weights']!r}; "
                               f"this featx loads {loaded[1]!r}")
        sinks = _ScoreSinks(p, output, loaded[1], self.device)
        for _ in extraction.run(p.extraction, p.extract, self.device, output, sinks,
                                rank=self.rank, world=self.world, loaded=loaded):
            pass  # the table lists the photos; stdout gets the table's path
        self.group.barrier()  # every rank's shards are complete
        if not self.group.leader:
            return
        every = [output.folder.path / shard_name(k) for k in range(len(p.extraction.chunks))]
        yield write_table(every, output.folder.path / f"predictions.{cfg.format}",
                          p.bundle.classes, cfg.top_k, bool(recipe["multilabel"]), p.model)


def run(source: ImageSource, out: str | Path, cfg: PredictConfig, **kw) -> list[Path]:
    """:meth:`Predict.run`: the labels of ``source``'s images in ``out``; returns the table's
    path."""
    return Predict(cfg).run(source, out, **kw)


def _weights(recipe: dict, cfg: PredictConfig) -> str:
    """The weights argument of the extraction: imagenet / none as trained, or the state-dict
    file given with --weights, checked against the digest the bundle records."""
    if recipe["weights_arg"] != "file":
        if cfg.weights:
            raise InputError(f"--weights: {cfg.bundle} runs on {recipe['weights_arg']} weights "
                             "(it names no file)")
        return recipe["weights_arg"]
    if not cfg.weights:
        raise InputError(f"{cfg.bundle} was trained with backbone weights from a file (sha256 "
                         f"{recipe['weights_sha256']}): pass it with --weights")
    found = file_digest(cfg.weights)
    if found != recipe["weights_sha256"]:
        raise ProvenanceError(f"{cfg.weights} has sha256 {found}; {cfg.bundle} was trained "
                              f"with weights of sha256 {recipe['weights_sha256']}")
    return cfg.weights


class _ScoreSinks:
    """Predictions shards: each batch encoded in memory (:class:`ShardEncoder`), its
    encodings as the chain stored them, scored by the SVM."""

    def __init__(self, p: PredictPlan, output: Output, weights_desc: str, device):
        self.p, self.output, self.device = p, output, device
        x = p.extraction
        self.plan = encoding_plan(p.extract.encode, x.header(p.extract, weights_desc), device)
        self.signature = {"kind": "predictions", "bundle_sha256": p.digest,
                          "extraction": x.signature}
        self.attrs = output.provenance(**self.signature, bundle=str(Path(p.bundle.path)),
                                       classes=p.bundle.classes, split=x.source.split,
                                       source=x.source.description, weights=weights_desc,
                                       multilabel=bool(p.bundle.recipe["multilabel"]))

    def open(self, k: int, weights_desc: str) -> extraction.EncodedSink:
        p, x = self.p, self.p.extraction
        writer = PredictionWriter(
            self.output.folder.path / shard_name(k),
            {**self.attrs, "shard_index": k, "inputs_digest": x.digests[k]},
            label_kind=x.labelled, num_classes=len(x.source.classes), index=k)
        scorer = _Scorer(writer, p)
        encoder = ShardEncoder(writer.path, self.plan, p.extract.encode, {},
                               label_kind=x.labelled, num_classes=len(x.source.classes),
                               images=len(x.chunks[k]), device=self.device,
                               folder=None, source=f"shard {k} of "
                               f"{x.source.description}", writer=scorer)
        return _PathSink(encoder, k, self.plan.reads(), scorer)


class _Scorer:
    """What :class:`ShardEncoder` writes to: encodings in, the SVM's scores out."""

    def __init__(self, writer: PredictionWriter, p: PredictPlan):
        self.writer, self.p = writer, p
        self.paths: dict[str, str] = {}
        enc = p.bundle.recipe["encode"]
        self.quantize, self.dtype = enc["quantize"], enc["dtype"]

    def append(self, ids, enc: np.ndarray, labels=None) -> None:
        x = as_stored(enc, self.quantize, self.dtype)
        scores = svm.scores(x, self.p.weights, self.p.biases)
        self.writer.append(ids, scores, labels, [self.paths.pop(i) for i in ids])

    def skip(self, image_id: str, reason: str) -> None:
        self.writer.skip(image_id, reason)

    def commit(self, **attrs) -> Path:
        return self.writer.commit(dim=attrs.get("dim", 0))

    def abort(self) -> None:
        self.writer.abort()


class _PathSink(extraction.EncodedSink):
    """An :class:`~featx.extraction.EncodedSink` that keeps each image's path for the table."""

    def __init__(self, encoder, index: int, reads, scorer: _Scorer):
        super().__init__(encoder, index, reads)
        self.scorer = scorer

    def append(self, ids, grid, pyr, labels, paths=None) -> None:
        self.scorer.paths.update(zip(ids, paths or ids))
        super().append(ids, grid, pyr, labels, paths)


def write_table(shards: list[Path], target: Path, classes: list[str], top_k: int,
                multilabel: bool, model: dict) -> Path:
    """The table of the predictions ``shards``: one row a photo, in input order."""
    rows, skipped = [], 0
    for path in shards:
        with PredictionShard(path) as shard:
            scores, paths = shard.scores(), shard.paths
            skipped += len(shard.skipped)
        prob = svm.model_probabilities(scores, {**model, "multilabel": multilabel})
        for i, image in enumerate(paths):
            rows.append(label_row(image, scores[i], None if prob is None else prob[i], classes,
                                  top_k, multilabel))
    if skipped:
        log.warning("%d image(s) could not be read and have no row (--skip-bad; the "
                    "predictions shards list them with the reason)", skipped)
    if target.suffix == ".jsonl":
        return save_text(target, "".join(json.dumps(r) + "\n" for r in rows))
    return save_csv(target, *_csv(rows, top_k, multilabel, bool(model.get("probability"))))


def label_row(path: str, scores: np.ndarray, prob: np.ndarray | None, classes: list[str],
              top_k: int, multilabel: bool) -> dict[str, Any]:
    """One photo's labels: the ``top_k`` classes by score (a multi-label model: every class
    whose score is over 0, best first), their scores and probabilities."""
    order = np.argsort(-scores, kind="stable")
    chosen = [c for c in order if scores[c] > 0] if multilabel else list(order[:top_k])
    row: dict[str, Any] = {"path": path, "labels": [classes[c] for c in chosen],
                           "scores": [float(scores[c]) for c in chosen]}
    if prob is not None:
        row["p"] = [float(prob[c]) for c in chosen]
    return row


def _csv(rows: list[dict], top_k: int, multilabel: bool, prob: bool):
    """CSV header and rows: ``path,label,score[,p]`` (top-1), numbered columns for top-k,
    ``path,labels,scores[,p]`` with ';'-joined values for a multi-label model."""
    if multilabel:
        header = ["path", "labels", "scores"] + (["p"] if prob else [])
        return header, [[r["path"], ";".join(r["labels"]),
                         ";".join(f"{s:.9g}" for s in r["scores"]),
                         *([";".join(f"{v:.9g}" for v in r["p"])] if prob else [])]
                        for r in rows]
    names = [""] if top_k == 1 else [f"_{i + 1}" for i in range(top_k)]
    header = ["path"]
    for n in names:
        header += [f"label{n}", f"score{n}"] + ([f"p{n}"] if prob else [])
    out = []
    for r in rows:
        line = [r["path"]]
        for i in range(top_k):
            line += [r["labels"][i], f"{r['scores'][i]:.9g}"] + \
                ([f"{r['p'][i]:.9g}"] if prob else [])
        out.append(line)
    return header, out
