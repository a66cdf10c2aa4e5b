"""The encode stage: activation shards -> encoding shards (one per activation shard).

What each ``--method`` computes is in :mod:`featx.methods`. Local-feature methods run on each
view in ``views``; the inputs of a view are pooled together (``blocks`` = CL-45F) and several
views are concatenated (``whole,blocks`` = CL-45C). Several methods are concatenated too
(e.g. ``cross-layer,global``). Each block is normalised (signed square root, L2) before
joining, and the joined vector has unit norm.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from dataclasses import dataclass

import torch

from featx.encoding import BLOCK, DTYPES, QUANTIZE, EncodeConfig, ShardEncoder, described
from featx.encoding import encoding_plan
from featx.encoding import signature as encoding_signature
from featx.errors import InputError
from featx.io import EXTRACTION_KEYS, EXTRACTION_SIGNATURE, read_header, require_fit
from featx.io import shard_paths
from featx.io.output import OutputFolder
from featx.io.activations import ActivationShard
from featx.methods import EncodePlan
from featx.stages import Output, Stage

__all__ = ["DTYPES", "QUANTIZE", "Encode", "EncodeConfig", "run"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class EncodeRun:
    """What an encode run reads: every input shard (``every``), this rank's (``paths``) with
    their headers, and the encode plan checked against them."""

    every: list[Path]
    paths: list[Path]
    heads: list[dict]
    plan: EncodePlan


class Encode(Stage):
    """Encode every activation shard of the inputs into the output folder. Output shard i has
    the name of input shard i. A rerun keeps complete outputs made with the same settings
    (resume); others are refused unless ``overwrite``. Under torchrun, rank r encodes input
    shards r, r + world, ..."""

    name, distributed = "encode", True

    def plan(self, inputs: Sequence[str]) -> EncodeRun | None:
        cfg, device = self.cfg, self.device
        every = shard_paths(inputs)
        paths = every[self.rank::self.world]
        if not paths:
            return None
        heads = [read_header(p) for p in paths]
        for p, h in zip(paths, heads):
            if h.get("kind") != "activations":
                raise InputError(f"{p} holds {h.get('kind')!r}, not activations (featx extract)")
            require_fit(h, {k: heads[0][k] for k in EXTRACTION_KEYS}, str(p),
                        "encode shards of one extraction")
        if len({p.name for p in every}) != len(every):
            raise InputError("input shards share file names; encode one extraction folder at a "
                             "time")
        plan = encoding_plan(cfg, heads[0], device)
        return EncodeRun(every, paths, heads, plan)

    def inputs_of(self, p: EncodeRun | None) -> list[Path]:
        models = [Path(m) for m in (self.cfg.pca, self.cfg.gmm, self.cfg.guidance) if m]
        return [*(p.every if p else []), *models]

    def work(self, p: EncodeRun | None, output: Output) -> Iterator[Path]:
        if p is None:  # more ranks than shards: nothing is this rank's
            return
        cfg, device, plan = self.cfg, self.device, p.plan
        signature = encoding_signature(cfg, plan)
        attrs = output.provenance(**signature, **described(cfg, plan))
        advance = output.start("encode", sum(len(h["ids"]) for h in p.heads))
        folder = output.folder
        with torch.inference_mode():
            for path, head in zip(p.paths, p.heads):
                target = folder.path / path.name
                if output.existing(target, signature, head["ids"] + head["skipped_ids"]) is None:
                    _encode_one(path, target, plan, cfg, attrs, device, folder, advance)
                else:
                    advance(len(head["ids"]))
                yield folder.keep(target)


def run(inputs: Sequence[str], out: str | Path, cfg: EncodeConfig, **kw) -> list[Path]:
    """:meth:`Encode.run`: encodings of ``inputs``' activation shards into ``out``."""
    return Encode(cfg).run(inputs, out, **kw)


def _encode_one(path: Path, target: Path, plan: EncodePlan, cfg: EncodeConfig, attrs: dict,
                device: torch.device, folder: OutputFolder, advance) -> Path:
    with ActivationShard(path) as shard:
        head = shard.attrs
        classes = head.get("classes", [])
        encoder = ShardEncoder(target, plan, cfg, {
            **attrs, **{k: head[k] for k in EXTRACTION_KEYS}, "classes": classes,
            "split": head.get("split", ""), "source": str(path),
            # what the activations were (featx export rebuilds the chain from it)
            "extraction": {k: head[k] for k in EXTRACTION_SIGNATURE if k in head},
            "weights_arg": head.get("weights_arg", ""), "seed": head.get("seed", 0)},
            label_kind=shard.label_kind, num_classes=len(classes), images=len(shard.ids),
            device=device, folder=folder, source=str(path))
        try:
            for start_ in range(0, len(shard.ids), BLOCK):
                rows = slice(start_, start_ + BLOCK)
                acts = {(view, layer): shard.pyramid(layer, rows) if view == "pyramid"
                        else shard.read(view, layer, rows) for view, layer in plan.reads()}
                encoder.append(shard.ids[rows], acts, shard.labels(rows))
                advance(len(shard.ids[rows]))
            for sid, reason in shard.skipped:
                encoder.skip(sid, reason)
            return encoder.commit()
        except BaseException:
            encoder.abort()
            raise
