"""The extract stage: run a backbone over the views of each image and write activation shards.

Decoding and view rendering run in DataLoader workers, overlapped with the forward passes; all
views of a batch of images go through the network in one forward pass that stops at the last
requested layer. Shards are written atomically and a rerun resumes: a shard whose file already
holds the same images under the same settings is kept and not recomputed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from featx import extraction
from featx.backbones import load_model
from featx.datasets import open_dataset
from featx.encoding import ShardEncoder, described, encoding_plan
from featx.encoding import signature as encoding_signature
from featx.errors import InputError
from featx.extraction import DTYPES, ExtractionPlan, nonfinite_rows  # noqa: F401 (re-exported)
from featx.images import ImageSource, open_source
from featx.io import EXTRACTION_KEYS, shard_name
from featx.stages import Output, Stage
from featx.configs import MAX_BATCH, ExtractConfig  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


def image_source(images: Sequence[str] | None = None, *, dataset: str | None = None,
                 root: str | None = None, split: str = "", crop_boxes: bool = False
                 ) -> ImageSource:
    """The images an extraction reads: folders, files and lists of paths, or a benchmark in
    its standard layout (``dataset``, ``root``, ``split``)."""
    if dataset:
        if images or not root or (not split and dataset != "folder"):
            raise InputError("--dataset takes --root and --split, and no INPUTS")
        return open_dataset(dataset, str(root), split, crop=crop_boxes)
    return open_source(list(images or []))


class Extract(Stage):
    """Extract activations of an :class:`ImageSource` into shards; a rerun resumes: shards
    already present from an earlier run with the same settings and images are kept. Under
    torchrun, rank r handles shards r, r + world, ..."""

    name, distributed = "extract", True

    def plan(self, source: ImageSource) -> ExtractionPlan:
        return extraction.plan(self.cfg, source, self.device)

    def inputs_of(self, p: ExtractionPlan) -> list[Path]:
        return [Path(r.path) for r in p.source.records] + ([Path(self.cfg.project)]
                                                          if self.cfg.project else [])

    def work(self, p: ExtractionPlan, output: Output) -> Iterator[Path]:
        cfg, device = self.cfg, self.device
        if cfg.encode is None:
            sinks, loaded = extraction.ActivationSinks(p, cfg, output), None
        else:
            # the weights are loaded first by the fused pass: its encodings depend on them
            loaded = load_model(p.bb, cfg.weights, cfg.seed)
            sinks = FusedSinks(p, cfg, output, loaded[1], device)
        yield from extraction.run(p, cfg, device, output, sinks, rank=self.rank,
                                  world=self.world, loaded=loaded)


class FusedSinks:
    """The fused pass's shards (``extract --encode``): each batch's arrays encoded in memory
    by a :class:`featx.encoding.ShardEncoder`, written as encoding shards, bitwise those of
    extract + encode."""

    def __init__(self, p: ExtractionPlan, cfg: ExtractConfig, output: Output,
                 weights_desc: str, device):
        self.p, self.cfg, self.output, self.device = p, cfg, output, device
        would_be = p.header(cfg, weights_desc)  # the activations' header: what models must fit
        self.plan = encoding_plan(cfg.encode, would_be, device)
        kinds = {v.kind for v in p.views}
        missing = [f"{v} {x}" for v, x in sorted(self.plan.reads())
                   if v not in kinds or x not in p.layers]
        if missing:
            raise InputError(f"--encode reads {missing[0]}, which this extraction does not "
                             "compute; add it to --views / --layers")
        enc_sig = encoding_signature(cfg.encode, self.plan)
        self.signature = {**enc_sig, "extraction": p.signature, "weights_arg": cfg.weights}
        self.attrs = output.provenance(
            **enc_sig, **described(cfg.encode, self.plan),
            **{k: would_be[k] for k in EXTRACTION_KEYS}, classes=would_be["classes"],
            split=would_be["split"], source=would_be["source"], extraction=p.signature,
            weights_arg=cfg.weights, seed=cfg.seed)

    def open(self, k: int, weights_desc: str) -> extraction.EncodedSink:
        p = self.p
        return extraction.EncodedSink(ShardEncoder(
            self.output.folder.path / shard_name(k), self.plan, self.cfg.encode,
            {**self.attrs, "shard_index": k, "inputs_digest": p.digests[k]},
            label_kind=p.labelled, num_classes=len(p.source.classes),
            images=len(p.chunks[k]), device=self.device, folder=self.output.folder,
            source=f"shard {k} of {p.source.description}"), k, self.plan.reads())


def run(source: ImageSource, out: str | Path, cfg: ExtractConfig = ExtractConfig(),
        **kw) -> list[Path]:
    """:meth:`Extract.run`: activations of ``source`` into shards under ``out``."""
    return Extract(cfg).run(source, out, **kw)
