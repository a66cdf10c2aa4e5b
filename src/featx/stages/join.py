"""The join stage: encodings of the same images made separately, side by side.

``featx join A B -o OUT`` writes, for each shard name of folder A, the encodings of A's shard
and B's shard of that name concatenated with equal weight (each part at unit L2 norm, the
join divided by sqrt(parts): unit norm again), as ``encode`` joins several methods. This is
how two extractions meet: CL-45C (conv maps of the whole image and its blocks) with
CNN-Jitter (fc7 of ten crops, extracted with the fc layer only), or MPP of fc7 with MPP of
pool5 (two pyramids, each with its own PCA and GMM). Parts must hold the same images in the
same order, with the same labels and backbone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from dataclasses import dataclass

import numpy as np

from featx import interrupt
from featx.errors import InputError, ProvenanceError
from featx.io import EXTRACTION_KEYS, EncodingShard, EncodingWriter, read_header, shard_paths
from featx.configs import JoinConfig  # noqa: F401 (re-exported)
from featx.stages import Output, Stage


@dataclass(frozen=True)
class JoinPlan:
    """The parts (folders as given), their shards by part (``groups``) and name, each shard's
    header, each part's first header, and the signature the joined shards record."""

    parts: Sequence[str | Path]
    groups: list[list[Path]]
    names: list[str]
    heads: list[list[dict]]
    first: list[dict]
    signature: dict


class Join(Stage):
    """Join encoding folders (or shard files) of the same images, shard by shard: each part at
    unit norm, the whole scaled to unit norm."""

    name = "join"

    def plan(self, parts: Sequence[str | Path]) -> JoinPlan:
        if len(parts) < 2:
            raise InputError("join needs at least two encoding folders")
        groups = [shard_paths([p]) for p in parts]
        names = [p.name for p in groups[0]]
        for part, group in zip(parts[1:], groups[1:]):
            if [p.name for p in group] != names:
                raise InputError(f"{part} holds shards {[p.name for p in group]}, {parts[0]} holds "
                                 f"{names}; join encodings of the same extraction's shards")
        heads = [[read_header(p) for p in group] for group in groups]
        for group, hs in zip(groups, heads):
            for path, h in zip(group, hs):
                if h.get("kind") != "encodings":
                    raise InputError(f"{path} holds {h.get('kind')!r}, not encodings (featx encode)")
                if not h.get("l2", True):
                    raise InputError(f"{path} was encoded with --no-l2; join needs unit-norm parts")
        first = [hs[0] for hs in heads]
        for part, h in zip(parts[1:], first[1:]):
            for key in (*EXTRACTION_KEYS, "classes"):
                if h.get(key) != first[0].get(key):
                    raise ProvenanceError(f"{part} has {key}={h.get(key)!r}, {parts[0]} has "
                                          f"{key}={first[0].get(key)!r}; join encodings of the same "
                                          "images and backbone")
        signature = {
            "kind": "encodings", "joined": [str(Path(p).resolve()) for p in parts],
            "methods": [m for h in first for m in h["methods"]],
            "views": [v for h in first for v in h["views"]],
            "power_norm": [h.get("power_norm") for h in first], "l2": True,
            # what each part went through before it was joined (stored as floats here): a
            # model trained on [sign-raw | float] must not score [float | float]
            "quantize": _parts_quantize(first),
            "normalisation": [n for h in first for n in h.get("normalisation") or []],
            "pca_sha256": "+".join(h["pca_sha256"] for h in first),
            "gmm_sha256": "+".join(h["gmm_sha256"] for h in first),
        }
        return JoinPlan(parts, groups, names, heads, first, signature)

    def inputs_of(self, p: JoinPlan) -> list[Path]:
        return [path for group in p.groups for path in group]

    def work(self, p: JoinPlan, output: Output) -> Iterator[Path]:
        cfg, groups, names, heads, first, signature = (self.cfg, p.groups, p.names, p.heads,
                                                       p.first, p.signature)
        attrs = output.provenance(**signature, dtype=cfg.dtype,
                                  **{k: first[0][k] for k in EXTRACTION_KEYS})
        advance = output.start("join", sum(len(h["ids"]) for h in heads[0]))
        folder = output.folder
        for k, name in enumerate(names):
            target = folder.path / name
            hs = [h[k] for h in heads]
            if any(h["ids"] != hs[0]["ids"] for h in hs[1:]):
                raise InputError(f"the {name} shards hold different images (or orders); join "
                                 "encodings of the same images")
            if output.existing(target, signature,
                               hs[0]["ids"] + hs[0]["skipped_ids"]) is None:
                interrupt.check()
                _join_one([g[k] for g in groups], target, attrs, cfg, folder)
            advance(len(hs[0]["ids"]))
            yield folder.keep(target)


def run(parts: Sequence[str | Path], out: str | Path, cfg: JoinConfig = JoinConfig(),
        **kw) -> list[Path]:
    """:meth:`Join.run`: the encodings ``parts`` joined into ``out``."""
    return Join(cfg).run(parts, out, **kw)


def _join_one(paths: list[Path], target: Path, attrs: dict, cfg: JoinConfig, folder) -> None:
    encs, blocks, labels = [], [], None
    for path in paths:
        with EncodingShard(path) as shard:
            x = shard.encodings()
            y = shard.labels()
            if labels is None:
                labels, ids, skipped, head = y, shard.ids, shard.skipped, shard.attrs
            elif (y is None) != (labels is None) or (y is not None and not np.array_equal(y, labels)):
                raise InputError(f"{path} labels its images differently from {paths[0]}")
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            encs.append(x / np.maximum(norms, 1e-12))
            blocks += _blocks(shard.attrs)
    x = np.concatenate(encs, 1) / np.sqrt(len(encs))
    folder.require_space(x.shape[0] * x.shape[1] * np.dtype(cfg.dtype).itemsize + (1 << 20))
    classes = head.get("classes", [])
    with EncodingWriter(target, {**attrs, "classes": classes, "split": head.get("split", ""),
                                 "source": [str(p) for p in paths]},
                        label_kind="multi" if labels is not None and labels.ndim == 2 else
                        "single" if labels is not None else None,
                        num_classes=len(classes), dtype=cfg.dtype) as writer:
        if len(ids):
            writer.append(ids, x, labels)
        for sid, reason in skipped:
            writer.skip(sid, reason)
        writer.commit(dim=int(x.shape[1]), blocks=blocks)


def _blocks(attrs: dict) -> list:
    """The ``blocks`` a shard records (method, view, dim), or one block of the whole."""
    return list(attrs.get("blocks") or [{"method": "+".join(attrs.get("methods", [])),
                                         "view": "", "dim": attrs.get("dim")}])


def _parts_quantize(heads: Sequence[dict]) -> str | list:
    """A join's ``quantize``: "none" when no part was quantised, else each part's (a part
    that is itself a join gives its own list), so the parts' quantisation stays in the
    provenance train-svm records and evaluate compares."""
    each = [h.get("quantize", "none") for h in heads]
    return "none" if all(q == "none" for q in each) else each
